//! Drop reasons on the real kernel: three ways a packet dies, each seen at skb:kfree_skb
//! with the reason the kernel gives, and each cross-checked with a counter the kernel
//! keeps independently of the probe (an nft rule counter, `conntrack -S`, /proc/net/snmp).
//!
//! The expected reason comes from the kernel under test: its BTF's `enum skb_drop_reason`.
//! Kernels without drop reasons (before 5.17) must report the drops with no reason.
//!
//! Not root / no BTF / no tools: each test prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ct_bpf::KernelFilters;
use ct_core::filter::DropFilter;
use ct_core::{Event, PacketL4};
use ct_lab::{Capture, Captured, ExpectedReason, Lab, Node, CLIENT4, NFT_DROP_ECHO, SERVER4};

const KFREE: &str = "skb:kfree_skb";

/// A fresh lab and what its kernel says about drops for `reason`; `None` when the kernel
/// lab cannot run here ([`ct_lab::kernel_available`] says why).
fn drop_lab(reason: &str) -> Option<(Lab, ExpectedReason)> {
    ct_lab::kernel_available().then(|| (Lab::new().unwrap(), ExpectedReason::of(reason)))
}

/// Asserts that `e`, an event at kfree_skb, has the drop reason this kernel gives.
fn check_reason(expected: &ExpectedReason, e: &Event, what: &str) {
    let drop = e
        .drop
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: an event at {KFREE} without a drop section"));
    expected.check(drop.reason.as_deref(), &format!("{what}: {drop:?}"));
}

fn dump(events: &[Captured]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "  {}\n",
                ct_core::Render::display(&e.event, ct_core::Layout::SingleLine)
            )
        })
        .collect()
}

/// Distinct packets (tracking ids) among `events` at kfree_skb that `pick` selects.
fn dropped_packets(
    events: &[Captured],
    pick: impl Fn(&Captured) -> bool,
) -> (BTreeSet<u64>, Vec<&Captured>) {
    let picked: Vec<&Captured> = events
        .iter()
        .filter(|e| e.probe() == KFREE && pick(e))
        .collect();
    let skbs = picked
        .iter()
        .map(|e| e.event.tracking.expect("tracking ids").skb)
        .collect();
    (skbs, picked)
}

/// The reasons `drops` carry, for the test's output.
fn reasons(drops: &[&Captured]) -> BTreeSet<String> {
    drops
        .iter()
        .map(
            |e| match e.event.drop.as_ref().and_then(|d| d.reason.as_deref()) {
                Some(r) => r.to_owned(),
                None => "(no reason)".to_owned(),
            },
        )
        .collect()
}

fn dst(e: &Captured) -> Option<IpAddr> {
    e.event.packet.as_ref()?.ip.map(|ip| ip.dst)
}

/// `counter packets N` of the one rule in the router's ruleset that counts.
fn nft_counter(lab: &Lab) -> u64 {
    let out = lab
        .exec(Node::Router, &["nft", "list", "ruleset"])
        .unwrap()
        .ok()
        .unwrap();
    let counters: Vec<u64> = out
        .stdout
        .split("counter packets ")
        .skip(1)
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("counter in {}", out.stdout))
        })
        .collect();
    assert_eq!(counters.len(), 1, "{}", out.stdout);
    counters[0]
}

/// Echo requests dropped by an nft rule in the router: NETFILTER_DROP, one per packet the
/// rule counted.
#[test]
fn nft_rule_drop_is_netfilter_drop() {
    let Some((lab, expected)) = drop_lab("NETFILTER_DROP") else {
        return;
    };
    lab.router_nft(NFT_DROP_ECHO).unwrap();
    let capture = Capture::start(lab.netns_inode(Node::Router)).unwrap();
    let out = lab.ping(Node::Client, SERVER4.into(), 3).unwrap();
    assert!(
        out.stdout.contains("3 packets transmitted, 0 received"),
        "{}",
        out.stdout
    );
    let events = capture.finish(Duration::from_millis(300));
    let d = dump(&events);

    let (skbs, drops) = dropped_packets(&events, |e| {
        dst(e) == Some(SERVER4.into())
            && matches!(
                e.event.packet.as_ref().and_then(|p| p.l4),
                Some(PacketL4::Icmp { icmp_type: 8, .. })
            )
    });
    for e in &drops {
        check_reason(&expected, &e.event, &d);
    }
    let counted = nft_counter(&lab);
    assert_eq!(counted, 3, "the rule counted\n{d}");
    assert_eq!(
        skbs.len() as u64,
        counted,
        "one drop per packet the rule dropped\n{d}"
    );
    println!(
        "nft rule drop: {} events, reasons {:?}, expected {expected:?}",
        drops.len(),
        reasons(&drops)
    );

    // The user-space filter picks exactly these drops by reason.
    if let ExpectedReason::Named(name) = &expected {
        let filter = DropFilter {
            only_drops: false,
            reasons: Some(vec![name.clone()]),
        };
        let mine: Vec<&Captured> = events.iter().filter(|e| filter.matches(&e.event)).collect();
        assert!(mine.len() >= drops.len(), "{d}");
        assert!(mine.iter().all(|e| e.probe() == KFREE), "{d}");
    }
}

/// The same drops with the kernel's filter, on raw tracepoints: `--drop-reason
/// NETFILTER_DROP` where the kernel has reasons, `--drops` elsewhere. Only drops reach user space, and every one of
/// the rule's.
#[test]
fn kernel_drop_filter_reports_only_those_drops() {
    let Some((lab, expected)) = drop_lab("NETFILTER_DROP") else {
        return;
    };
    lab.router_nft(NFT_DROP_ECHO).unwrap();
    let drop = DropFilter {
        only_drops: true,
        reasons: match &expected {
            ExpectedReason::Named(name) => Some(vec![name.clone()]),
            _ => None,
        },
    };
    let filters = KernelFilters {
        drop: drop.clone(),
        ..Default::default()
    };
    // Raw tracepoints here (the other tests use BTF tracepoints): the reason is read
    // from the other program's context as well.
    let capture = Capture::start_configured(lab.netns_inode(Node::Router), |b| {
        b.filters(filters).raw_tracepoints(true)
    })
    .unwrap();
    lab.ping(Node::Client, SERVER4.into(), 3).unwrap();
    // Traffic that is not dropped, which the filter must keep out.
    lab.ping(Node::Client, ct_lab::ROUTER_C4.into(), 2).unwrap();
    let events = capture.finish(Duration::from_millis(300));
    let d = dump(&events);
    assert!(!events.is_empty(), "no drop reported");
    for e in &events {
        assert_eq!(e.probe(), KFREE, "{d}");
        assert!(drop.matches(&e.event), "the kernel let through\n{d}");
        if dst(e) == Some(SERVER4.into()) {
            check_reason(&expected, &e.event, &d);
        }
    }
    let (skbs, _) = dropped_packets(&events, |e| dst(e) == Some(SERVER4.into()));
    assert_eq!(skbs.len() as u64, nft_counter(&lab), "{d}");
}

/// `invalid=` summed over `conntrack -S`'s per-CPU lines in the router.
fn conntrack_invalid(lab: &Lab) -> u64 {
    let out = lab
        .exec(Node::Router, &["conntrack", "-S"])
        .unwrap()
        .ok()
        .unwrap();
    out.stdout
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("invalid="))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// ACKs of no connection with `nf_conntrack_tcp_loose=0` are invalid to conntrack, and
/// `ct state invalid drop` drops them: the reason is the kernel's for an nft drop.
#[test]
fn ct_state_invalid_drop() {
    let Some((lab, expected)) = drop_lab("NETFILTER_DROP") else {
        return;
    };
    lab.router_drops_invalid().unwrap();
    let invalid_before = conntrack_invalid(&lab);
    let capture = Capture::start(lab.netns_inode(Node::Router)).unwrap();
    let out = lab.bare_acks(Node::Client, SERVER4.into(), 80, 3).unwrap();
    assert!(out.stdout.contains("sent 3"), "{out:?}");
    let events = capture.finish(Duration::from_millis(300));
    let d = dump(&events);
    let invalid = conntrack_invalid(&lab) - invalid_before;

    let (skbs, drops) = dropped_packets(&events, |e| {
        dst(e) == Some(SERVER4.into())
            && matches!(
                e.event.packet.as_ref().and_then(|p| p.l4),
                Some(PacketL4::Tcp {
                    dport: 80,
                    flags: 0x10,
                    ..
                })
            )
    });
    for e in &drops {
        check_reason(&expected, &e.event, &d);
        assert!(
            e.ct().is_none(),
            "an invalid packet carries no connection\n{d}"
        );
    }
    let counted = nft_counter(&lab);
    assert_eq!(counted, 3, "the invalid rule counted\n{d}");
    assert_eq!(skbs.len() as u64, counted, "one drop per packet\n{d}");
    assert!(
        invalid >= counted,
        "conntrack -S invalid grew by {invalid}\n{d}"
    );
    println!(
        "ct state invalid drop: {} events, reasons {:?}, expected {expected:?}",
        drops.len(),
        reasons(&drops)
    );
}

/// `Udp: ... NoPorts ...` of /proc/net/snmp in `node`.
fn udp_no_ports(lab: &Lab, node: Node) -> u64 {
    let out = lab
        .exec(node, &["cat", "/proc/net/snmp"])
        .unwrap()
        .ok()
        .unwrap();
    let mut udp = out.stdout.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// UDP to a port nobody listens on in the server: dropped for lack of a socket.
#[test]
fn udp_to_a_closed_port_is_no_socket() {
    let Some((lab, expected)) = drop_lab("NO_SOCKET") else {
        return;
    };
    let before = udp_no_ports(&lab, Node::Server);
    let capture = Capture::start(lab.netns_inode(Node::Server)).unwrap();
    let client = lab
        .udp_client(
            Node::Client,
            SERVER4.into(),
            9999,
            3,
            Duration::from_millis(500),
        )
        .unwrap();
    let events = capture.finish(Duration::from_millis(300));
    let d = dump(&events);
    let no_ports = udp_no_ports(&lab, Node::Server) - before;

    let (skbs, drops) = dropped_packets(&events, |e| {
        dst(e) == Some(SERVER4.into())
            && e.event.packet.as_ref().and_then(|p| p.ip).map(|ip| ip.src) == Some(CLIENT4.into())
            && matches!(
                e.event.packet.as_ref().and_then(|p| p.l4),
                Some(PacketL4::Udp { dport: 9999, .. })
            )
    });
    for e in &drops {
        check_reason(&expected, &e.event, &d);
    }
    assert_eq!(no_ports, 3, "NoPorts grew by {no_ports} ({client:?})\n{d}");
    assert_eq!(skbs.len() as u64, no_ports, "one drop per datagram\n{d}");
    println!(
        "udp no socket: {} events, reasons {:?}, expected {expected:?}",
        drops.len(),
        reasons(&drops)
    );
}
