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
        let raw = ct_bpf::raw::RawCtEvent::read(&bytes)
            .unwrap_or_else(|| panic!("{}: short record", path.display()));
        assert!(raw.skb_key == 0, "{}: skb_key", path.display());
        assert!(
            raw.base.key <= 2 && raw.parent.key <= 2,
            "{}",
            path.display()
        );
    }
}
