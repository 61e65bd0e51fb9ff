//! Records captured from a real kernel (`fixtures/raw/<case>.bin`, written by
//! `cargo test -p ct-lab --test capture -- --ignored`) decode to the ct section recorded
//! beside them (`<case>.json`).

use std::fs;
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/raw")
}

#[test]
fn every_captured_record_decodes_to_its_json() {
    let dir = fixtures_dir();
    let mut bins: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    bins.sort();
    assert!(
        !bins.is_empty(),
        "no fixtures in {}: capture them with `cargo test -p ct-lab --test capture -- --ignored`",
        dir.display()
    );
    let mut failures = Vec::new();
    for bin in &bins {
        let bytes = fs::read(bin).unwrap();
        let json_path = bin.with_extension("json");
        let expected: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(&json_path)
                .unwrap_or_else(|e| panic!("{}: {e}", json_path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
        match ct_bpf::decode_ct(&bytes) {
            Ok(ct) => {
                let got = serde_json::to_value(&ct).unwrap();
                if got != expected {
                    failures.push(format!(
                        "{}: decoded\n{}\nexpected\n{}",
                        bin.display(),
                        serde_json::to_string_pretty(&got).unwrap(),
                        serde_json::to_string_pretty(&expected).unwrap()
                    ));
                }
            }
            Err(e) => failures.push(format!(
                "{}: {e} (if the raw layout changed, regenerate the fixtures: \
                 cargo test -p ct-lab --test capture -- --ignored)",
                bin.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The cases issue 3 asks fixtures for are all there.
#[test]
fn every_case_has_a_fixture() {
    let dir = fixtures_dir();
    for case in [
        "tcp",
        "udp",
        "icmp",
        "icmpv6",
        "ipv6",
        "sctp",
        "zone_mark_labels",
        "related_parent",
        "untracked",
    ] {
        for ext in ["bin", "json"] {
            let path = dir.join(format!("{case}.{ext}"));
            assert!(path.exists(), "missing {}", path.display());
        }
    }
}

/// No kernel address is left in a fixture: packet and connection identities are
/// replaced by small constants when captured.
#[test]
fn fixtures_hold_no_kernel_pointers() {
    let dir = fixtures_dir();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "bin") {
            continue;
        }
        let bytes = fs::read(&path).unwrap();
        let raw = ct_bpf::RawCtEvent::read(&bytes)
            .unwrap_or_else(|| panic!("{}: short record", path.display()));
        assert!(raw.skb_key == 0, "{}: skb_key", path.display());
        assert!(
            raw.base.key <= 2 && raw.parent.key <= 2,
            "{}",
            path.display()
        );
    }
}

/// A decoder for records of any of the capture's probe ids.
fn decoder() -> ct_bpf::Decoder {
    let probe = ct_core::ProbeInfo {
        kind: ct_core::ProbeKind::Tp,
        name: "captured".into(),
    };
    ct_bpf::Decoder::new(vec![probe; 8])
}

/// A buffer with `skb->protocol` unset whose bytes at the network header are no IPv4
/// header (the one seen at skb:consume_skb that printed as `0.0.0.0 > 2.0.0.0 ttl 0 ...
/// len 0 proto 0`): its packet section has no `ip` (and no `l4`).
#[test]
fn a_buffer_that_is_not_ip_has_no_ip_section() {
    let bytes = fs::read(fixtures_dir().join("not_ip.bin")).unwrap();
    let raw = ct_bpf::RawCtEvent::read(&bytes).unwrap();
    assert_eq!(raw.l3_proto, [0, 0]);
    assert_eq!(raw.hdr[0], 0x45, "the version nibble alone says IPv4");
    let event = decoder().decode(&bytes).unwrap();
    let packet = event.packet.unwrap();
    assert_eq!(packet.ip, None);
    assert_eq!(packet.l4, None);
    assert_eq!(event.drop, None);
}

/// Records captured before drops had a section (drop.bin, at skb:kfree_skb) decode
/// without one: only the program's flag makes a drop.
#[test]
fn records_without_the_drop_flag_have_no_drop_section() {
    for case in ["drop", "tcp", "udp"] {
        let bytes = fs::read(fixtures_dir().join(format!("{case}.bin"))).unwrap();
        let raw = ct_bpf::RawCtEvent::read(&bytes).unwrap();
        assert_eq!(raw.pkt_flags & ct_bpf::PKT_DROP, 0, "{case}");
        let event = decoder().decode(&bytes).unwrap();
        assert_eq!(event.drop, None, "{case}");
        assert!(event.packet.unwrap().ip.is_some(), "{case}");
    }
}
