//! `ct-cli print`, `sort` and `conns` with `--follow` on a file: a filter that matches a
//! packet at one event keeps the packet whole, and with `conn` its connection.
//!
//! `fixtures/events/dnat.jsonl` is a real capture (this repository's lab, `collect -f 'tcp
//! port 8080' --follow conn -p tp:net:netif_receive_skb -p tp:net:net_dev_start_xmit`):
//! one TCP exchange from the client `10.0.1.2` to `10.0.1.1:8080`, which the router DNATs
//! to the server's `10.0.2.2:80` and masquerades as `10.0.2.1`. Every hit of every packet
//! of the connection is in it, before and after NAT. A filter on the pre-NAT destination
//! (`dst host 10.0.1.1`) matches the client's packets at their first hits only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use ct_core::{read_events, Event};

const FIXTURE: &str = "dnat.jsonl";
const PRE_NAT: &str = "dst host 10.0.1.1 and dst port 8080";

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ct-cli"));
    command
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/events"));
    let Some(input) = stdin else {
        return command.output().expect("ct-cli runs");
    };
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ct-cli runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().expect("ct-cli ends")
}

fn ok(args: &[&str]) -> String {
    ok_with(args, None)
}

fn ok_with(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn events(json: &str) -> Vec<Event> {
    read_events(json.as_bytes())
        .collect::<Result<_, _>>()
        .expect("JSON Lines out")
}

fn print(filter: &str, follow: &str) -> Vec<Event> {
    events(&ok(&[
        "print", "--format", "json", "-f", filter, "--follow", follow, FIXTURE,
    ]))
}

fn all() -> Vec<Event> {
    events(&ok(&["print", "--format", "json", FIXTURE]))
}

fn skb(e: &Event) -> u64 {
    e.tracking.expect("tracking ids").skb
}

fn dst(e: &Event) -> IpAddr {
    e.packet
        .as_ref()
        .and_then(|p| p.ip)
        .expect("an IP packet")
        .dst
}

/// The events of `events` whose packet is one of `packets`, in file order.
fn of_packets(events: &[Event], packets: &BTreeSet<u64>) -> Vec<Event> {
    events
        .iter()
        .filter(|e| packets.contains(&skb(e)))
        .cloned()
        .collect()
}

#[test]
fn the_fixture_is_one_connection_through_the_dnat() {
    let all = all();
    assert_eq!(all.len(), 35);
    let conns: BTreeSet<u64> = all
        .iter()
        .filter_map(|e| e.tracking.and_then(|t| t.conn))
        .collect();
    assert_eq!(conns.len(), 1);
    // Client packets go to 10.0.1.1 before the DNAT and to 10.0.2.2 after it.
    let dsts: BTreeSet<String> = all.iter().map(|e| dst(e).to_string()).collect();
    assert_eq!(
        dsts,
        ["10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.2.2"]
            .map(String::from)
            .into()
    );
}

#[test]
fn a_pre_nat_filter_follows_the_packet_through_the_dnat() {
    let all = all();
    let none = print(PRE_NAT, "none");
    assert!(!none.is_empty());
    assert!(none.iter().all(|e| dst(e).to_string() == "10.0.1.1"));
    // The client's packets: each matched at its first hits only.
    let client: BTreeSet<u64> = none.iter().map(skb).collect();
    assert_eq!(client.len(), 6, "SYN, ACK, data, ACK, FIN, ACK");
    let packet = print(PRE_NAT, "packet");
    assert_eq!(packet, of_packets(&all, &client));
    assert!(packet.len() > none.len());
    // After the DNAT: the same packets, to the server.
    assert!(packet.iter().any(|e| dst(e).to_string() == "10.0.2.2"));
    // The default is packet.
    assert_eq!(
        events(&ok(&["print", "--format", "json", "-f", PRE_NAT, FIXTURE])),
        packet
    );
    // conn: the server's replies too, before the router un-NATs them (to 10.0.2.1).
    let conn = print(PRE_NAT, "conn");
    assert_eq!(conn, all);
    assert!(conn.iter().any(|e| dst(e).to_string() == "10.0.2.1"));
}

#[test]
fn a_post_nat_filter_reaches_back_to_the_hits_before_the_dnat() {
    let all = all();
    // Matches the client's packets after the DNAT only: later events than their first.
    let post = "dst host 10.0.2.2";
    let none = print(post, "none");
    let client: BTreeSet<u64> = none.iter().map(skb).collect();
    assert_eq!(client.len(), 6);
    let packet = print(post, "packet");
    assert_eq!(packet, of_packets(&all, &client));
    assert!(packet.iter().any(|e| dst(e).to_string() == "10.0.1.1"));
}

#[test]
fn a_packet_matched_once_is_kept_whole_in_any_line_order() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/events/dnat.jsonl");
    let text = std::fs::read_to_string(file).unwrap();
    let reversed: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
    for follow in ["packet", "conn"] {
        let args = [
            "print", "--format", "json", "-f", PRE_NAT, "--follow", follow, "-",
        ];
        let mut backwards = events(&ok_with(&args, Some(reversed.as_bytes())));
        backwards.reverse();
        assert_eq!(backwards, print(PRE_NAT, follow), "--follow {follow}");
    }
}

#[test]
fn sort_keeps_every_packet_whole() {
    let groups = |follow: &str| -> BTreeMap<u64, usize> {
        ok(&[
            "sort", "--format", "json", "-f", PRE_NAT, "--follow", follow, FIXTURE,
        ])
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["skb"].as_u64().unwrap(),
                v["events"].as_array().unwrap().len(),
            )
        })
        .collect()
    };
    let whole = groups("conn");
    assert_eq!(whole.len(), 10, "every packet of the connection");
    let packet = groups("packet");
    assert_eq!(packet.len(), 6);
    for (skb, n) in &packet {
        assert_eq!(whole[skb], *n, "packet {skb:x} is whole");
    }
    let none = groups("none");
    assert_eq!(
        none.keys().collect::<Vec<_>>(),
        packet.keys().collect::<Vec<_>>()
    );
    assert!(none.iter().all(|(skb, n)| *n < packet[skb]));
}

#[test]
fn conns_follow_conn_keeps_the_connection_whole() {
    let unfiltered = ok(&["conns", "--format", "json", FIXTURE]);
    let conns = |follow: &str, filter: &str| -> serde_json::Value {
        let out = ok(&[
            "conns", "--format", "json", "-f", filter, "--follow", follow, FIXTURE,
        ]);
        serde_json::from_str(out.lines().next().expect("one connection")).unwrap()
    };
    let unfiltered: serde_json::Value = serde_json::from_str(&unfiltered).unwrap();
    assert_eq!(conns("conn", PRE_NAT), unfiltered);
    // The server's replies before the router un-NATs them: the same connection, whole.
    let replies = "src host 10.0.2.2 and dst host 10.0.2.1";
    assert_eq!(conns("conn", replies), unfiltered);
    // packet: the packets matched only, one direction each.
    let client = conns("packet", PRE_NAT);
    assert_eq!(
        (&client["packets"]["orig"], &client["packets"]["reply"]),
        (&6.into(), &0.into())
    );
    let server = conns("packet", replies);
    assert_eq!(
        (&server["packets"]["orig"], &server["packets"]["reply"]),
        (&0.into(), &4.into())
    );
}

#[test]
fn drops_are_judged_on_every_event() {
    // nft.jsonl's dropped packets: --drops keeps the drop events alone, whatever --follow.
    let drops = |follow: &str| {
        events(&ok(&[
            "print",
            "--format",
            "json",
            "--drops",
            "-f",
            "dst port 81",
            "--follow",
            follow,
            "nft.jsonl",
        ]))
    };
    let none = drops("none");
    assert!(!none.is_empty() && none.iter().all(Event::is_drop));
    assert_eq!(drops("packet"), none);
    assert_eq!(drops("conn"), none);
}

#[test]
fn the_bounds_say_what_they_cost() {
    let out = run(
        &[
            "print",
            "--format",
            "json",
            "-f",
            PRE_NAT,
            "--max-open",
            "1",
            FIXTURE,
        ],
        None,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--follow:")
            && stderr.contains("forgotten")
            && stderr.contains("raise --max-open"),
        "{stderr}"
    );
}

#[test]
fn print_follow_packet_text() {
    insta::assert_snapshot!(
        "print_follow_packet_singleline",
        ok(&["print", "--format", "singleline", "-f", PRE_NAT, FIXTURE])
    );
}

#[test]
fn bad_follow_values_are_refused() {
    let out = run(&["print", "--follow", "connection", FIXTURE], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--follow") && stderr.contains("conn"),
        "{stderr}"
    );
}
