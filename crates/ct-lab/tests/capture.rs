//! Regenerates `fixtures/raw/` from this kernel: one ring-buffer record per case
//! (`<case>.bin`, the exact bytes the BPF program wrote, kernel pointers replaced) and its
//! decoded ct section beside it (`<case>.json`). Needs root:
//!
//! ```text
//! cargo test -p ct-lab --test capture -- --ignored
//! ```
//!
//! `crates/ct-bpf/tests/fixtures.rs` decodes every `.bin` and compares with its `.json`.
//! Regenerate after a change to the raw layout (`ct_event.h` / `raw.rs`).

mod scenarios;

use std::fs;
use std::path::PathBuf;

use ct_bpf::RawCtEvent;
use ct_core::{CtState, TcpState};
use ct_lab::{Captured, SERVER4};
use scenarios::*;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/raw")
}

/// The record with its kernel addresses replaced: the packet identity by 0, the
/// connection identities by 1 (base) and 2 (parent), keeping "has a connection" visible.
fn sanitize(raw: &RawCtEvent) -> RawCtEvent {
    let mut raw = *raw;
    raw.skb_key = 0;
    if raw.base.key != 0 {
        raw.base.key = 1;
    }
    if raw.parent.key != 0 {
        raw.parent.key = 2;
    }
    raw
}

fn write(name: &str, picked: Option<&Captured>, run: &Run) {
    let picked = picked.unwrap_or_else(|| panic!("{name}: no such event\n{}", run.dump()));
    let raw = sanitize(&picked.raw);
    let bytes = raw.as_bytes();
    let ct = ct_bpf::decode_ct(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        ct.as_ref(),
        picked.ct(),
        "{name}: sanitizing changed the ct section"
    );
    let dir = fixtures_dir();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
    let json = serde_json::to_string_pretty(&ct).unwrap() + "\n";
    fs::write(dir.join(format!("{name}.json")), json).unwrap();
    println!("wrote {name}.bin ({} bytes) and {name}.json", bytes.len());
}

fn first<'a>(
    run: &'a Run,
    probe: &'a str,
    proto: u8,
    pred: impl Fn(&Captured) -> bool,
) -> Option<&'a Captured> {
    run.conn_events(probe, proto).find(|e| pred(e))
}

#[test]
#[ignore = "regenerates fixtures/raw/ (root): cargo test -p ct-lab --test capture -- --ignored"]
fn capture_fixtures() {
    if let Err(reason) = ct_lab::require_kernel() {
        panic!("capturing fixtures needs the kernel lab: {reason}");
    }

    let (run, _) = icmp_masquerade();
    let pick = first(&run, XMIT, 1, |e| {
        state(e) == CtState::New && e.base().unwrap().orig.ip.dst == std::net::IpAddr::from(SERVER4)
    });
    write("icmp", pick, &run);

    let (run, _) = tcp_dnat_snat();
    let pick = first(&run, XMIT, 6, |e| {
        state(e) == CtState::Established
            && e.base().unwrap().tcp_state == Some(TcpState::Established)
    });
    write("tcp", pick, &run);

    let (run, _) = notrack();
    let pick = first(&run, XMIT, 17, |e| state(e) == CtState::Reply);
    write("udp", pick, &run);
    let pick = run
        .events
        .iter()
        .find(|e| e.probe() == XMIT && e.ct().is_some_and(|c| c.state == CtState::Untracked));
    write("untracked", pick, &run);

    let (run, _) = udp_zone_mark_labels();
    let pick = first(&run, XMIT, 17, |e| state(e) == CtState::Reply);
    write("zone_mark_labels", pick, &run);

    let (run, _) = udp_orig_zone();
    let pick = first(&run, XMIT, 17, |e| state(e) == CtState::New);
    write("orig_zone", pick, &run);

    let (run, _) = ftp_related();
    let pick = first(&run, XMIT, 6, |e| state(e) == CtState::Related);
    write("related_parent", pick, &run);
    let pick = first(&run, XMIT, 6, |e| {
        e.base().unwrap().helper.is_some() && state(e) == CtState::Established
    });
    write("helper", pick, &run);

    let (run, _) = icmp_error_related();
    let pick = first(&run, XMIT, 17, |e| state(e) == CtState::RelatedReply);
    write("related_reply", pick, &run);

    let (run, _) = ipv6_tcp();
    let pick = first(&run, XMIT, 6, |e| state(e) == CtState::New);
    write("ipv6", pick, &run);

    let (run, _) = icmpv6_echo();
    let pick = first(&run, XMIT, 58, |e| state(e) == CtState::Reply);
    write("icmpv6", pick, &run);

    let (run, _) = sctp();
    let pick = first(&run, XMIT, 132, |e| {
        e.base().unwrap().sctp_state == Some(ct_core::SctpState::Established)
    });
    write("sctp", pick, &run);

    let (run, _) = generic_proto();
    let pick = first(&run, XMIT, 253, |e| state(e) == CtState::New);
    write("generic", pick, &run);

    let (run, _) = drop_established();
    let pick = first(&run, KFREE, 1, |e| state(e) == CtState::Established);
    write("drop", pick, &run);
}
