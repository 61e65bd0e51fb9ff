//! Whole nftables traces: on a ruleset with sub-chains, a goto, a verdict map and a set,
//! every step `collect --nft` writes is held, step for step (chain, rule handle, verdict,
//! type), against `nft monitor trace` reading the same netlink group beside it; and each
//! step carries its packet's task and its hook's device names.
//!
//! Not root / no BTF / no tools: the test prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ct_core::{Event, PacketL4};
use ct_lab::{Lab, Node, Scratch, SERVER4};
use support::{kernel_tests_can_run, read_file, start_collect, NftMonitor};

/// The server's ruleset. A ping from an address in `allowed` is counted (`continue`),
/// jumps to two empty chains, goes to `from_peer` (set lookup, goto), on to `by_proto`
/// (goto), whose verdict map jumps to `icmp_in`, which accepts it; its reply leaves by
/// the output chain's policy. Once `allowed` is empty, the same ping jumps to the empty
/// chains and ends in the input chain's `policy drop`.
const RULESET: &str = r#"
table inet steps {
    set allowed {
        type ipv4_addr
        elements = { 10.0.1.2 }
    }
    chain empty1 {
    }
    chain empty2 {
    }
    chain icmp_in {
        icmp type echo-request counter accept
    }
    chain by_proto {
        ip protocol vmap { icmp : jump icmp_in, tcp : drop }
    }
    chain from_peer {
        goto by_proto
    }
    chain input {
        type filter hook input priority filter; policy drop;
        meta l4proto icmp counter
        jump empty1
        jump empty2
        ip saddr @allowed goto from_peer
    }
    chain output {
        type filter hook output priority filter; policy accept;
    }
}
"#;
const TABLE: &str = "steps";

/// One step as both sides can tell it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Step {
    chain: String,
    kind: String,
    handle: Option<u64>,
    /// The verdict, and the target chain of a jump or goto.
    verdict: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.chain, self.kind)?;
        if let Some(handle) = self.handle {
            write!(f, " handle {handle}")?;
        }
        write!(f, " {}", self.verdict)
    }
}

/// A packet as both sides show it: source, destination, IP id, ICMP type.
type PacketKey = (String, String, u32, u8);

/// `nft -a monitor trace` in a lab namespace: the independent witness.
struct Monitor(NftMonitor);

impl Monitor {
    fn start(lab: &Lab, node: Node) -> Monitor {
        Monitor(NftMonitor::start(lab.name(node), true))
    }

    /// Waits until `done` holds for what it printed, or the time is over; then stops it.
    fn finish(self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.0.finish(done)
    }
}

/// The word after `key` in `text`.
fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split(key).nth(1)?.split_whitespace().next()
}

/// The packet of a monitor `packet:` line.
fn monitor_packet(line: &str) -> Option<PacketKey> {
    let icmp = match after(line, " icmp type ")? {
        "echo-request" => 8,
        "echo-reply" => 0,
        other => panic!("unexpected ICMP type {other} in {line}"),
    };
    Some((
        after(line, " ip saddr ")?.to_owned(),
        after(line, " ip daddr ")?.to_owned(),
        after(line, " ip id ")?.parse().ok()?,
        icmp,
    ))
}

/// A monitor line about a step: `trace id ID FAMILY TABLE CHAIN rule TEXT # handle N
/// (verdict V)`, `... unknown rule handle N (verdict V)`, `... policy V`, or a return
/// (`... verdict V`).
fn monitor_step(chain: &str, rest: &str) -> Step {
    let verdict = || {
        rest.rsplit_once("(verdict ")
            .and_then(|(_, v)| v.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no verdict in {rest}"))
            .to_owned()
    };
    let handle = after(rest, "# handle ")
        .or_else(|| after(rest, "unknown rule handle "))
        .map(|h| h.parse().unwrap());
    let (kind, verdict) = if let Some(policy) = rest.strip_prefix("policy ") {
        ("policy", policy.trim().to_owned())
    } else if let Some(returned) = rest.strip_prefix("verdict ") {
        // A regular chain that ran out of rules, where the kernel reports it as a return
        // (5.10 does; 6.x reports a rule step without a rule, which the monitor does not
        // print and collect counts as a chain end).
        ("return", returned.trim().to_owned())
    } else if rest.starts_with("rule ") || rest.starts_with("unknown rule ") {
        ("rule", verdict())
    } else {
        ("return", verdict())
    };
    Step {
        chain: chain.to_owned(),
        kind: kind.to_owned(),
        handle,
        verdict,
    }
}

/// The monitor's steps in `table`, by packet in the order printed: each step belongs to
/// the packet of the last `packet:` line of its trace id (the kernel copies the packet
/// into the first message of each hook evaluation).
fn monitor_steps(lines: &[String], table: &str) -> BTreeMap<PacketKey, Vec<Step>> {
    let mut packet_of: BTreeMap<String, PacketKey> = BTreeMap::new();
    let mut steps: BTreeMap<PacketKey, Vec<Step>> = BTreeMap::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("trace id ") else {
            continue;
        };
        let mut words = rest.splitn(5, ' ');
        let (Some(id), Some(_family), Some(tab), Some(chain), Some(rest)) = (
            words.next(),
            words.next(),
            words.next(),
            words.next(),
            words.next(),
        ) else {
            continue;
        };
        if rest.starts_with("packet: ") {
            if let Some(key) = monitor_packet(rest) {
                packet_of.insert(id.to_owned(), key);
            }
            continue;
        }
        if tab != table {
            continue;
        }
        let key = packet_of
            .get(id)
            .unwrap_or_else(|| panic!("no packet line before {line}"))
            .clone();
        steps
            .entry(key)
            .or_default()
            .push(monitor_step(chain, rest));
    }
    steps
}

fn event_packet(e: &Event) -> Option<PacketKey> {
    let p = e.packet.as_ref()?;
    let ip = p.ip?;
    let Some(PacketL4::Icmp { icmp_type, .. }) = p.l4 else {
        return None;
    };
    Some((ip.src.to_string(), ip.dst.to_string(), ip.id, icmp_type))
}

/// collect's steps in `table`, by packet in the order written.
fn collect_steps(events: &[Event], table: &str) -> BTreeMap<PacketKey, Vec<Step>> {
    let mut steps: BTreeMap<PacketKey, Vec<Step>> = BTreeMap::new();
    for e in events {
        let Some(n) = e.nft.as_ref().filter(|n| &*n.table == table) else {
            continue;
        };
        let key = event_packet(e).unwrap_or_else(|| panic!("step without its packet: {e:?}"));
        let verdict = match &n.target {
            Some(target) => format!("{} {target}", <&str>::from(n.verdict)),
            None => <&str>::from(n.verdict).to_owned(),
        };
        steps.entry(key).or_default().push(Step {
            chain: n.chain.to_string(),
            kind: <&str>::from(n.kind).to_owned(),
            handle: n.handle,
            verdict,
        });
    }
    steps
}

#[test]
fn every_step_of_a_multi_chain_trace_as_nft_monitor_shows_it() {
    if !kernel_tests_can_run() {
        return;
    }
    let lab = Lab::new().unwrap();
    lab.nft(Node::Server, RULESET).unwrap();
    let dir = Scratch::new("nft-steps");
    let out = dir.path("events.json");
    let mut collect = start_collect(&[
        "--netns",
        lab.name(Node::Server),
        "--nft",
        "--allow-system-changes",
        "-f",
        "icmp",
        "-o",
        out.to_str().unwrap(),
    ]);
    collect.wait_ready();
    let monitor = Monitor::start(&lab, Node::Server);

    // Accepted in a sub-chain, after a goto and a verdict map; the reply goes out.
    lab.ping(Node::Client, SERVER4.into(), 1).unwrap();
    // Not in the set any more: the empty chains, then the input chain's policy drop.
    lab.exec(
        Node::Server,
        &["nft", "flush", "set", "inet", TABLE, "allowed"],
    )
    .unwrap();
    lab.ping(Node::Client, SERVER4.into(), 1).unwrap();

    let wanted = format!(" {TABLE} input policy drop");
    let lines = monitor.finish(|lines| lines.iter().any(|l| l.contains(&wanted)));
    collect.wait_for_signal_handlers();
    collect.signal(libc::SIGINT);
    let (status, _, stderr) = collect.finish(Duration::from_secs(20));
    let stderr = stderr.join("\n");
    assert!(status.success(), "{status}: {stderr}");
    let events = read_file(&out);

    let witness = monitor_steps(&lines, TABLE);
    let written = collect_steps(&events, TABLE);
    // The comparison, for the record.
    println!("step-for-step: nft monitor trace | collect --nft");
    for (key, steps) in &witness {
        println!(
            "packet {} > {} id {} icmp type {}",
            key.0, key.1, key.2, key.3
        );
        let mine = written.get(key).map_or(&[][..], Vec::as_slice);
        for i in 0..steps.len().max(mine.len()) {
            let show = |s: Option<&Step>| s.map_or("-".to_owned(), ToString::to_string);
            println!("  {:<40} | {}", show(steps.get(i)), show(mine.get(i)));
        }
    }
    println!("collect: {}", stderr.lines().last().unwrap_or(""));
    let all = lines.join("\n");
    assert_eq!(written, witness, "monitor:\n{all}\nstderr:\n{stderr}");

    // The ruleset did what the test is about (read from the witness): three packets (two
    // requests, a reply), a goto, a verdict map's jump, an accept in a sub-chain, a
    // `continue`, and a policy drop after the jumps to the empty chains.
    let flat: Vec<&Step> = witness.values().flatten().collect();
    assert_eq!(witness.len(), 3, "{all}");
    let has = |chain: &str, kind: &str, verdict: &str| {
        flat.iter()
            .any(|s| s.chain == chain && s.kind == kind && s.verdict == verdict)
    };
    assert!(has("input", "rule", "goto from_peer"), "{all}");
    assert!(has("by_proto", "rule", "jump icmp_in"), "{all}");
    assert!(has("icmp_in", "rule", "accept"), "{all}");
    assert!(has("input", "rule", "continue"), "{all}");
    assert!(has("input", "policy", "drop"), "{all}");
    assert!(has("output", "policy", "accept"), "{all}");

    // Who and where: each step is joined to its packet, carries the task of that packet's
    // events, and names its hook's device as the packet's events on it do.
    let steps: Vec<&Event> = events.iter().filter(|e| e.nft.is_some()).collect();
    for step in &steps {
        let skb = step
            .tracking
            .unwrap_or_else(|| panic!("not joined: {step:?}"))
            .skb;
        let packet_events: Vec<&Event> = events
            .iter()
            .filter(|e| e.probe.is_some() && e.tracking.is_some_and(|t| t.skb == skb))
            .collect();
        assert!(!packet_events.is_empty(), "no events of packet {skb:x}");
        if packet_events.iter().any(|e| e.task.is_some()) {
            assert!(step.task.is_some(), "no task: {step:?}");
        }
        let nft = step.nft.as_ref().unwrap();
        let device = nft
            .iif
            .or(nft.oif)
            .unwrap_or_else(|| panic!("no device: {step:?}"));
        for e in &packet_events {
            let p = e.packet.as_ref().unwrap();
            if p.ifindex == Some(device.ifindex) && p.ifname.is_some() {
                assert_eq!(device.ifname, p.ifname, "{step:?}\n{e:?}");
            }
        }
        assert!(device.ifname.is_some(), "device not named: {step:?}");
    }
    println!(
        "{} steps, each with a task and a named device, as their packets' events",
        steps.len()
    );
}
