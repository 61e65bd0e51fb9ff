//! `ct-cli print` with filters, `ct-cli sort` and `ct-cli conns` on the fixture events
//! files: the same filter language as `collect`, evaluated in user space.

use std::path::PathBuf;
use std::process::{Command, Output};

use ct_core::{read_events, Event};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ct-cli"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/events"))
        .output()
        .expect("ct-cli runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: exit {:?}, stderr: {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn events(json: &str) -> Vec<Event> {
    read_events(json.as_bytes())
        .collect::<Result<_, _>>()
        .expect("JSON Lines out")
}

#[test]
fn print_filters_narrow_the_file() {
    let all = events(&ok(&["print", "--format", "json", "sample.jsonl"]));
    let tcp = events(&ok(&[
        "print",
        "--format",
        "json",
        "-f",
        "tcp",
        "sample.jsonl",
    ]));
    assert!(!tcp.is_empty() && tcp.len() < all.len());
    let expected: Vec<Event> = all
        .iter()
        .filter(|e| {
            e.packet
                .as_ref()
                .and_then(|p| p.ip.as_ref())
                .is_some_and(|ip| ip.proto == 6)
        })
        .cloned()
        .collect();
    assert_eq!(tcp, expected);

    let related = events(&ok(&[
        "print",
        "--format",
        "json",
        "--ct-state",
        "related",
        "sample.jsonl",
    ]));
    assert!(!related.is_empty());
    assert!(related.iter().all(|e| e
        .ct
        .as_ref()
        .is_some_and(|c| c.state == ct_core::CtState::Related)));

    let none = ok(&["print", "-f", "udp and port 9999", "sample.jsonl"]);
    assert_eq!(none, "");
    insta::assert_snapshot!(
        "print_filtered_singleline",
        ok(&[
            "print",
            "--format",
            "singleline",
            "-f",
            "ip6 or tcp",
            "--ct-mark",
            "0x0/0xff",
            "sample.jsonl"
        ])
    );
}

#[test]
fn a_bad_filter_points_at_the_column() {
    let out = run(&["print", "-f", "tcp prot 80", "sample.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("column 5"), "{err}");
    assert!(err.contains("  tcp prot 80\n      ^"), "{err}");
    let out = run(&["print", "--ct-state", "new,bogus", "sample.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown ct state \"bogus\""));
    let out = run(&["print", "--ct-status", "src_natt", "sample.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["collect", "-m", "sk_buff.dev.name < 'x'"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("strings compare only with == or !="));
}

#[test]
fn sort_groups_by_packet() {
    insta::assert_snapshot!("sort_multiline", ok(&["sort", "sample.jsonl"]));
    let json = ok(&["sort", "--format", "json", "sample.jsonl"]);
    let groups: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per group"))
        .collect();
    let total: usize = groups
        .iter()
        .map(|g| g["events"].as_array().unwrap().len())
        .sum();
    let all = events(&ok(&["print", "--format", "json", "sample.jsonl"]));
    assert_eq!(total, all.len(), "sort neither loses nor duplicates events");
}

#[test]
fn conns_summarise_connections() {
    insta::assert_snapshot!("conns_multiline", ok(&["conns", "sample.jsonl"]));
    insta::assert_snapshot!(
        "conns_singleline",
        ok(&["conns", "--format", "singleline", "sample.jsonl"])
    );
    let json = ok(&["conns", "--format", "json", "sample.jsonl"]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one object per line");
        assert!(v.get("nat").is_some(), "{line}");
    }
}

#[test]
fn sort_and_conns_report_bad_lines_and_go_on() {
    let out = run(&["conns", "bad_lines.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 2:"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["sort", "bad_lines.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stdout.is_empty());
}

/// nftables trace steps (`collect --nft`) in a file: `nft.jsonl`, made by ct-core's
/// `nft_scenario()` (its JSON test holds the two equal).
#[test]
fn nft_events_in_print_sort_and_conns() {
    let all = events(&ok(&["print", "--format", "json", "nft.jsonl"]));
    // --drops: the kernel's drops and the nftables drop verdicts.
    let drops = events(&ok(&["print", "--format", "json", "--drops", "nft.jsonl"]));
    let expected: Vec<Event> = all.iter().filter(|e| e.is_drop()).cloned().collect();
    assert_eq!(drops, expected);
    assert_eq!(
        (
            drops.iter().filter(|e| e.nft.is_some()).count(),
            drops.iter().filter(|e| e.drop.is_some()).count()
        ),
        (4, 2)
    );
    // --drop-reason: kernel reasons only.
    let reason = events(&ok(&[
        "print",
        "--format",
        "json",
        "--drop-reason",
        "netfilter_drop",
        "nft.jsonl",
    ]));
    assert!(reason.len() == 2 && reason.iter().all(|e| e.nft.is_none()));
    // -f: the packet section of the trace.
    let port_81 = events(&ok(&[
        "print",
        "--format",
        "json",
        "-f",
        "dst port 81",
        "nft.jsonl",
    ]));
    assert_eq!(port_81.iter().filter(|e| e.nft.is_some()).count(), 2);

    let text = ok(&["print", "--format", "singleline", "nft.jsonl"]);
    assert!(text.contains(
        "1009000 [swapper/0] 0 nft inet f in handle 3 drop (tcp dport 81 drop) iif veth-client \
         #skb 71 conn e5 netns 4026531840 if 3"
    ));
    let sorted = ok(&["sort", "nft.jsonl"]);
    assert!(sorted.contains("packet #skb 71 (3 events, first seen 1000000)"));
    let conns = ok(&["conns", "nft.jsonl"]);
    assert!(conns.contains(
        "  dropped by inet f in handle 3: tcp dport 81 drop, ct state NEW (2 packets)\n"
    ));
    assert!(conns.contains(
        "unattributed nft drops (no connection in this file)\n  dropped by inet f in policy\n"
    ));
}

/// A filter longer than the kernel program holds is for collect to refuse; the file
/// commands evaluate it in user space.
#[test]
fn print_takes_filters_the_kernel_could_not_hold() {
    let many = (1..=40)
        .map(|p| format!("port {p}"))
        .chain(["tcp".to_owned()])
        .collect::<Vec<_>>()
        .join(" or ");
    let out = ok(&["print", "--format", "json", "-f", &many, "sample.jsonl"]);
    let tcp = ok(&["print", "--format", "json", "-f", "tcp", "sample.jsonl"]);
    assert!(!tcp.is_empty());
    assert!(events(&out).len() >= events(&tcp).len());
}
