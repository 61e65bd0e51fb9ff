//! The foreign tracer on the real kernel: `own-tracer` (its own BPF program, probe, event
//! and ring buffer, with ct-trace's record filled by `ct_fill_skb()`) watches the lab's
//! router while it drops echo requests of an established, masqueraded ICMP flow with a
//! conntrack mark. Each drop it reports must carry the conntrack entry `conntrack -L`
//! lists on the router (both tuples, so the NAT, mark, zone, status), as many drops as
//! the drop rule's own counter, and nothing of it may stay in the kernel after it exits.
//!
//! Not root / no BTF / no tools: prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead. Runs on the kernel matrix too
//! (scripts/kernels.sh, VM_TESTS).

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ct_core::{CtEvent, CtProto, CtState, CtStatus, Event};
use ct_lab::{Collect, Lab, Node, CLIENT4, ROUTER_S4, SERVER4};

const PINGS: u32 = 3;
const MARK: u32 = 0x2a;

/// Masquerade towards the server; mark every forwarded connection; drop echo requests
/// once the flow is established (the first request goes through and is answered, the
/// others are dropped in forward, after conntrack confirmed the entry, so it stays in the
/// table for `conntrack -L`).
const RULESET: &str = "table ip own {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"rs\" masquerade
    }
    chain filter_fwd {
        type filter hook forward priority filter; policy accept;
        ct mark set 0x2a
        icmp type echo-request ct state established counter drop
    }
}";

#[test]
fn drops_carry_the_conntrack_entry_conntrack_lists() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    lab.router_nft(RULESET).unwrap();

    let router_ns = lab.netns_path(Node::Router);
    let mut tracer = Collect::spawn(
        Command::new(env!("CARGO_BIN_EXE_own-tracer"))
            .arg("--netns")
            .arg(&router_ns)
            .arg("--json")
            .stdout(Stdio::piped()),
    );
    tracer.wait_ready();

    let sent = Instant::now();
    let ping = lab.ping(Node::Client, SERVER4.into(), PINGS).unwrap();
    let entries = lab.conntrack_entries(Node::Router).unwrap();
    let listed = Instant::now();
    let counted = dropped_by_rule(&lab);
    // Records reach user space within the ring's poll interval (100 ms).
    std::thread::sleep(Duration::from_millis(500));
    tracer.signal(libc::SIGTERM);
    let (status, stdout, stderr, held) = tracer.finish_held(Duration::from_secs(20));
    let what = format!(
        "ping:\n{}\nown-tracer stderr:\n{}\nstdout:\n{stdout}",
        ping.stdout,
        stderr.join("\n")
    );
    assert!(status.success(), "own-tracer failed: {status}\n{what}");
    assert!(
        !stderr.iter().any(|l| l.contains("record layout version")),
        "{what}"
    );

    let events: Vec<Event> = ct_core::read_events(stdout.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("own-tracer's JSON: {e}\n{what}"));
    let drops: Vec<&Event> = events
        .iter()
        .filter(|e| is_our_flow(e.ct.as_ref()))
        .collect();
    assert_eq!(
        drops.len() as u64,
        counted,
        "as many drops reported as the rule counted\n{what}"
    );
    assert_eq!(
        counted,
        u64::from(PINGS - 1),
        "the first request passes\n{what}"
    );

    let entry = entries
        .iter()
        .find(|e| e.proto == 1 && e.orig.src == IpAddr::from(CLIENT4))
        .unwrap_or_else(|| panic!("no ICMP entry in conntrack -L\n{entries:#?}\n{what}"));
    let hz = ct_bpf::kernel_hz();
    for event in drops {
        let ct = event.ct.as_ref().unwrap();
        let conn = ct
            .base
            .as_ref()
            .expect("a tracked packet has its connection");
        assert_eq!(ct.state, CtState::Established, "{what}");
        assert!(ct.parent.is_none(), "{what}");
        assert!(
            entry.matches(conn),
            "{}\nis not\n{conn:?}\n{what}",
            entry.line
        );
        // The masquerade is visible as the reply tuple's destination.
        assert_eq!(conn.reply.ip.dst, IpAddr::from(ROUTER_S4), "{what}");
        assert_eq!(conn.mark, Some(MARK), "{what}");
        assert_eq!(entry.mark, Some(MARK), "{}", entry.line);
        assert_eq!(conn.zone_id, entry.zone.unwrap_or(0), "{what}");
        assert_eq!(conn.labels, None, "no label was set\n{what}");
        assert_eq!(
            conn.helper.as_ref().map(|h| h.as_str()),
            entry.helper.as_deref(),
            "{what}"
        );
        let status = conn.ct_status;
        assert!(status.contains(CtStatus::CONFIRMED), "{what}");
        assert_eq!(
            status.contains(CtStatus::SEEN_REPLY),
            entry.seen_reply(),
            "{what}"
        );
        assert_eq!(status.contains(CtStatus::ASSURED), entry.assured, "{what}");
        assert!(status.contains(CtStatus::SRC_NAT), "{what}");
        // The drop refreshed the timeout just before conntrack -L read it: the event's
        // is as long or up to the time between them (and a second of rounding) longer.
        match hz {
            Some(_) => {
                let timeout = conn.timeout.expect("a timeout where CONFIG_HZ is known");
                let slack = (listed - sent).as_secs() as u32 + 1;
                assert!(
                    entry.timeout <= timeout && timeout <= entry.timeout + slack,
                    "timeout {timeout} s, conntrack -L {}\n{what}",
                    entry.timeout
                );
            }
            None => assert_eq!(conn.timeout, None, "no CONFIG_HZ, no timeout\n{what}"),
        }
        assert_eq!(event.netns, Some(lab.netns_inode(Node::Router)), "{what}");
    }
    held.assert_all_gone("own-tracer");
}

/// An event of the lab's ICMP flow from the client to the server.
fn is_our_flow(ct: Option<&CtEvent>) -> bool {
    let Some(conn) = ct.and_then(|ct| ct.base.as_ref()) else {
        return false;
    };
    matches!(conn.orig.proto, CtProto::Icmp { .. })
        && conn.orig.ip.src == IpAddr::from(CLIENT4)
        && conn.orig.ip.dst == IpAddr::from(SERVER4)
}

/// Packets the drop rule counted (`nft list table ip own`).
fn dropped_by_rule(lab: &Lab) -> u64 {
    let out = lab
        .exec(
            Node::Router,
            &["nft", "list", "chain", "ip", "own", "filter_fwd"],
        )
        .unwrap();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("drop"))
        .unwrap_or_else(|| panic!("no drop rule:\n{}", out.stdout));
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "packets")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no counter in {line:?}"))
}
