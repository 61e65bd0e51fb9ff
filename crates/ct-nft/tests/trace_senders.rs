//! Who may speak on the trace group: in a lab namespace, a process with `CAP_NET_ADMIN`
//! there (a container's root) multicasts a well-formed `NFT_MSG_TRACE` message to
//! `NFNLGRP_NFTRACE`; the tracer ignores and counts it, while the kernel's own trace of a
//! real packet still comes through.
//!
//! Not root / no tools: the test prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ct_bpf::NetnsFile;
use ct_core::NftVerdict;
use ct_lab::{Lab, Node, NFT_DROP_ECHO, SERVER4};
use ct_nft::{Marking, NftTracer, TracerEvent};

/// How many forged datagrams are sent.
const FORGED: u64 = 5;

/// A trace message the kernel sent (table `f`, chain `in`, a drop), as captured.
fn kernel_message() -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nft/rule-drop-6.18.bin");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Sends `datagram` `count` times from a user-space `NETLINK_NETFILTER` socket in `node` to
/// the group `NFNLGRP_NFTRACE` (9: bit 8 of `nl_groups`).
fn multicast_from_user_space(lab: &Lab, node: Node, datagram: &[u8], count: u64) {
    let hex: String = datagram.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import socket, sys\n\
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)\n\
        s.bind((0, 0))\n\
        for _ in range(int(sys.argv[2])):\n    s.sendto(bytes.fromhex(sys.argv[1]), (0, 1 << 8))\n";
    let out = lab
        .exec(node, &["python3", "-c", script, &hex, &count.to_string()])
        .unwrap();
    assert!(out.success(), "sending failed: {}", out.stderr);
}

#[test]
fn trace_messages_not_from_the_kernel_are_ignored_and_counted() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    lab.router_nft(NFT_DROP_ECHO).unwrap();
    let router = NetnsFile::open(&lab.netns_path(Node::Router)).unwrap();
    let tracer = NftTracer::start(Some(&router), Marking::Table(None)).unwrap();
    let counters = tracer.counters();

    multicast_from_user_space(&lab, Node::Router, &kernel_message(), FORGED);
    // Then a real packet the router's `ip lab forward` chain drops.
    lab.ping(Node::Client, SERVER4.into(), 1).unwrap();

    let mut steps = Vec::new();
    let deadline = Instant::now() + ct_lab::scaled(Duration::from_secs(10));
    let dropped = |steps: &[ct_nft::TraceStep]| {
        steps
            .iter()
            .any(|s| s.message.table == "lab" && s.message.verdict == NftVerdict::Drop)
    };
    while !dropped(&steps) && Instant::now() < deadline {
        match tracer.recv(Duration::from_millis(100)).unwrap() {
            Some(TracerEvent::Step(step)) => steps.push(*step),
            Some(other) => panic!("unexpected report {other:?}"),
            None => {}
        }
    }
    let rest = tracer.stop().unwrap();
    steps.extend(rest.into_iter().filter_map(|r| match r {
        TracerEvent::Step(step) => Some(*step),
        _ => None,
    }));
    let seen: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s.message.table.as_str(), s.message.chain.as_str()))
        .collect();
    assert!(dropped(&steps), "the kernel's trace of the ping: {seen:?}");
    assert!(
        !steps.iter().any(|s| s.message.table == "f"),
        "a forged message was read as a step: {seen:?}"
    );
    // The forged datagrams were queued before the ping's traces, so all were judged.
    assert_eq!(counters.snapshot().not_from_kernel, FORGED, "{seen:?}");
}
