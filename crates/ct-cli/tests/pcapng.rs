//! `ct-cli pcap` read back with stock tshark: the records captured from a real kernel
//! (`fixtures/raw/*.bin`), decoded with their header bytes as `collect --raw-headers`
//! writes them, become a capture whose every packet tshark decodes to the event's JSON
//! packet section, with the event's text as its comment. No kernel needed; tshark from apt
//! (without it the test skips, or fails under CT_REQUIRE_KERNEL_TESTS=1).

#[path = "support/cli.rs"]
mod cli;
#[path = "support/tshark.rs"]
mod tshark;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use cli::*;
use ct_core::{write_event_json, CtState, Event, ProbeInfo, ProbeKind};
use ct_lab::Scratch;

/// Every captured record decoded with its header bytes, in file-name order.
fn captured_events() -> Vec<Event> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/raw");
    let mut bins: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    bins.sort();
    let probes = (0..256)
        .map(|_| ProbeInfo {
            kind: ProbeKind::Tp,
            name: Arc::from("net:net_dev_start_xmit"),
        })
        .collect();
    let decoder = ct_bpf::Decoder::new(probes).with_headers(true);
    bins.iter()
        .map(|bin| {
            decoder
                .decode(&std::fs::read(bin).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
        })
        .collect()
}

/// `ct-cli pcap FILES -o CAPTURE MORE`.
fn pcap(files: &[&Path], capture: &Path, more: &[&str]) -> Output {
    let mut args = vec!["pcap"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend(["-o", capture.to_str().unwrap()]);
    args.extend_from_slice(more);
    ct_cli(&args)
}

fn write_events(path: &Path, events: &[Event]) {
    let mut out = Vec::new();
    for e in events {
        write_event_json(e, &mut out).unwrap();
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn tshark_decodes_every_packet_as_its_json_says() {
    if !tshark::available() {
        return;
    }
    let scratch = Scratch::new("pcapng-fixtures");
    let events = captured_events();
    let file = scratch.path("events.json");
    write_events(&file, &events);
    let capture = scratch.path("events.pcapng");
    let out = pcap(&[&file], &capture, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = events
        .iter()
        .filter(|e| e.packet.as_ref().is_some_and(|p| p.ip.is_some()))
        .count();
    assert!(
        written >= 14,
        "the fixtures hold 14 IP packets, {written} here"
    );
    assert_eq!(
        events.len() - written,
        1,
        "only not_ip.bin has no IP header"
    );
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "ct-cli: {written} packets written to {} (1 event not written: 1 without an IP \
             header)",
            capture.display(),
        )
    );
    tshark::assert_matches(&capture, &events, 0);

    // The comparison notices a field that differs.
    let first = &tshark::read(&capture, "")[0];
    let mut wrong = events[0].clone();
    if let Some(ip) = wrong.packet.as_mut().and_then(|p| p.ip.as_mut()) {
        ip.ttl ^= 1;
    }
    let diffs = tshark::differences(first, &wrong, 0);
    assert!(diffs.iter().any(|d| d.starts_with("ttl")), "{diffs:?}");

    // The comment filter selects exactly the events of one conntrack state.
    for (state, name) in [
        (CtState::New, "NEW"),
        (CtState::Established, "ESTABLISHED"),
        (CtState::Untracked, "UNTRACKED"),
    ] {
        let selected = tshark::read(
            &capture,
            &format!("frame.comment contains \"ct_state {name}\""),
        );
        let expected = events
            .iter()
            .filter(|e| e.packet.as_ref().is_some_and(|p| p.ip.is_some()))
            .filter(|e| e.ct.as_ref().is_some_and(|ct| ct.state == state))
            .count();
        assert!(expected > 0, "the fixtures have {name} packets");
        assert_eq!(selected.len(), expected, "ct_state {name}");
    }
}

#[test]
fn files_without_header_bytes_are_refused_and_bad_input_reported() {
    let scratch = Scratch::new("pcapng-refuse");
    let mut events = captured_events();
    for e in &mut events {
        if let Some(p) = &mut e.packet {
            p.headers = None;
        }
    }
    let file = scratch.path("plain.json");
    write_events(&file, &events);
    let capture = scratch.path("plain.pcapng");
    let out = pcap(&[&file], &capture, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("collect with --raw-headers"),
        "{}",
        stderr(&out)
    );
    assert!(!capture.exists(), "no empty capture left behind");

    // An existing output is refused without --force, and kept.
    std::fs::write(&capture, "keep").unwrap();
    let out = pcap(&[&file], &capture, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&capture).unwrap(), b"keep");

    // Bad lines and bad hex are reported by file and line; the good events are written.
    let good = scratch.path("good.json");
    write_events(&good, &captured_events()[..3]);
    let bad = scratch.path("bad.json");
    let mut f = std::fs::File::create(&bad).unwrap();
    writeln!(f, "{{\"packet\": {{\"len\": 1, \"headers\": \"4\"}}}}").unwrap();
    writeln!(f, "not json").unwrap();
    drop(f);
    let out = pcap(&[&good, &bad], &capture, &["--force"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("ct-cli: {}: line 1: ", bad.display())),
        "{err}"
    );
    assert!(err.contains("pairs of hex digits"), "{err}");
    assert!(
        err.contains(&format!("ct-cli: {}: line 2: ", bad.display())),
        "{err}"
    );
    assert!(
        err.contains("ct-cli: 2 files: 2 bad lines, 3 events read"),
        "{err}"
    );
    assert!(err.contains("3 packets written"), "{err}");

    // Missing input: refused before the output is touched.
    let out = pcap(&[Path::new("/nonexistent/x.json")], &capture, &["--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot open /nonexistent/x.json"),
        "{}",
        stderr(&out)
    );
}
