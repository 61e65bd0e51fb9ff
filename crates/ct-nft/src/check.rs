//! The `nft verdicts` line of `ct-cli check`.

use std::time::Duration;

use ct_bpf::{CheckItem, Verdict};

use crate::nft_program::{NftProgram, NFT_PROGRAM};
use crate::socket::TraceSocket;

/// Whether `collect --nft` can work here: nf_tables present, its trace group readable, and
/// the `nft` program there for rule texts and the trace table.
pub fn check() -> CheckItem {
    let item = |verdict, detail: String, remedy: Option<&str>| CheckItem {
        name: "nft verdicts",
        verdict,
        detail,
        remedy: remedy.map(str::to_owned),
    };
    if nf_tables_present() == Some(false) {
        return item(
            Verdict::Degraded,
            "nf_tables is not loaded: no nftables ruleset to report on".into(),
            Some("load a ruleset (nft -f FILE) or modprobe nf_tables before collect --nft"),
        );
    }
    if let Err(err) = TraceSocket::open(Duration::from_millis(1)) {
        return item(
            Verdict::Degraded,
            format!("cannot listen to nftables traces (NFNLGRP_NFTRACE): {err}"),
            Some("run as root (CAP_NET_ADMIN)"),
        );
    }
    let version = NftProgram::system()
        .and_then(|nft| nft.run(&["--version"], None))
        .ok()
        .map(|out| out.trim().to_owned());
    match version {
        Some(version) => item(
            Verdict::Ok,
            format!("collect --nft reads nftables traces; rule texts from {version}"),
            None,
        ),
        None => item(
            Verdict::Degraded,
            format!(
                "nftables traces readable, but no working `{NFT_PROGRAM}` program in \
                 /usr/sbin, /sbin, /usr/bin or /bin: no rule texts, and \
                 --allow-system-changes cannot install its trace table"
            ),
            Some("install nftables"),
        ),
    }
}

/// Whether nf_tables is in the kernel: loaded as a module or built in; `None` when the
/// kernel's configuration cannot be read to tell.
fn nf_tables_present() -> Option<bool> {
    let loaded = std::fs::read_to_string("/proc/modules").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().next() == Some("nf_tables"))
    });
    if loaded {
        return Some(true);
    }
    let config = ct_bpf::KernelConfig::read()?;
    Some(config.get("CONFIG_NF_TABLES") == Some("y"))
}
