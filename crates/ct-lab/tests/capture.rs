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

/// A fixture's name, the scenario that makes its traffic, and which event it is: the
/// first at a probe of a connection of an IP protocol in a ct state.
type FirstInState = (&'static str, fn() -> Run, &'static str, u8, CtState);

/// Writes the first event at `probe` of a `proto` connection in ct state `wanted`.
fn write_first(name: &str, run: &Run, probe: &str, proto: u8, wanted: CtState) {
    write(name, first(run, probe, proto, |e| state(e) == wanted), run);
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
    write_first("udp", &run, XMIT, 17, CtState::Reply);
    let pick = run
        .events
        .iter()
        .find(|e| e.probe() == XMIT && e.ct().is_some_and(|c| c.state == CtState::Untracked));
    write("untracked", pick, &run);

    let (run, _) = ftp_related();
    let pick = first(&run, XMIT, 6, |e| state(e) == CtState::Related);
    write("related_parent", pick, &run);
    let pick = first(&run, XMIT, 6, |e| {
        e.base().unwrap().helper.is_some() && state(e) == CtState::Established
    });
    write("helper", pick, &run);

    let (run, _) = sctp();
    let pick = first(&run, XMIT, 132, |e| {
        e.base().unwrap().sctp_state == Some(ct_core::SctpState::Established)
    });
    write("sctp", pick, &run);

    // One event in a given ct state, of the first connection of its protocol at its probe.
    #[rustfmt::skip] // a table: one fixture a line
    let cases: [FirstInState; 7] = [
        ("zone_mark_labels", || udp_zone_mark_labels().0, XMIT, 17, CtState::Reply),
        ("orig_zone", || udp_orig_zone().0, XMIT, 17, CtState::New),
        ("related_reply", || icmp_error_related().0, XMIT, 17, CtState::RelatedReply),
        ("ipv6", || ipv6_tcp().0, XMIT, 6, CtState::New),
        ("icmpv6", || icmpv6_echo().0, XMIT, 58, CtState::Reply),
        ("generic", || generic_proto().0, XMIT, 253, CtState::New),
        ("drop", || drop_established().0, KFREE, 1, CtState::Established),
    ];
    for (name, scenario, probe, proto, wanted) in cases {
        write_first(name, &scenario(), probe, proto, wanted);
    }
}
