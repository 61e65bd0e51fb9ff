use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::render::{Layout, Render};
use crate::testing::build::{at, conn, ct, tcp, tcp_conn, tuple, udp};
use crate::testing::{self, router_scenario};
use crate::{
    CtProto, CtState, CtStatus as St, CtTuple, Event, FixedStr, NftTrace, NftTraceKind, ProbeInfo,
    ProbeKind, TcpState, Tracking, ZoneDir,
};

fn text(conns: &Connections, format: Format) -> String {
    let mut out = String::new();
    write_conns(&mut out, conns, format).unwrap();
    out
}

fn find(conns: &[Connection], id: u64) -> &Connection {
    conns
        .iter()
        .find(|c| c.id() == Some(id))
        .unwrap_or_else(|| panic!("no conn {id:x}"))
}

fn nat(orig: CtTuple, reply: CtTuple, status: St) -> Nat {
    Nat::from_conn(&conn(orig, reply, status))
}

const SNAT: St = St::SRC_NAT;
const DNAT: St = St::DST_NAT;

// ---------------------------------------------------------------------------------------
// NAT derivation

#[test]
fn nat_none() {
    let n = nat(
        tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
        tuple("10.0.0.1", "10.0.0.5", tcp(80, 40000)),
        St::CONFIRMED,
    );
    assert_eq!((n.snat, n.dnat), (None, None));
    assert!(n.is_none());
    assert_eq!(n.to_string(), "none");
}

#[test]
fn nat_snat_address_only() {
    let n = nat(
        tuple("10.0.0.5", "93.184.216.34", tcp(40000, 80)),
        tuple("93.184.216.34", "203.0.113.50", tcp(80, 40000)),
        SNAT,
    );
    assert_eq!(n.dnat, None);
    let snat = n.snat.unwrap();
    assert!(!snat.port_changed());
    assert_eq!(snat.from.port, Some(40000));
    assert_eq!(snat.to.addr, "203.0.113.50".parse::<IpAddr>().unwrap());
    assert_eq!(n.to_string(), "snat 10.0.0.5 -> 203.0.113.50");
}

#[test]
fn nat_snat_with_port() {
    let n = nat(
        tuple("10.0.0.5", "93.184.216.34", udp(40000, 53)),
        tuple("93.184.216.34", "203.0.113.50", udp(53, 40001)),
        SNAT,
    );
    assert_eq!(n.to_string(), "snat 10.0.0.5:40000 -> 203.0.113.50:40001");
}

#[test]
fn nat_port_only_changes() {
    // Source port rewritten, address kept (a clash on the same address).
    let n = nat(
        tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
        tuple("10.0.0.1", "10.0.0.5", tcp(80, 40001)),
        SNAT,
    );
    assert_eq!(n.to_string(), "snat 10.0.0.5:40000 -> 10.0.0.5:40001");
    // Destination port redirected on the same address (`redirect to :8080`).
    let n = nat(
        tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
        tuple("10.0.0.1", "10.0.0.5", tcp(8080, 40000)),
        DNAT,
    );
    assert_eq!(n.to_string(), "dnat 10.0.0.1:80 -> 10.0.0.1:8080");
    assert_eq!(n.snat, None);
}

#[test]
fn nat_dnat() {
    let n = nat(
        tuple("198.51.100.7", "10.0.0.1", tcp(50000, 8080)),
        tuple("10.0.2.2", "198.51.100.7", tcp(80, 50000)),
        DNAT,
    );
    assert_eq!(n.snat, None);
    assert_eq!(n.to_string(), "dnat 10.0.0.1:8080 -> 10.0.2.2:80");
    // Address only.
    let n = nat(
        tuple("198.51.100.7", "10.0.0.1", tcp(50000, 80)),
        tuple("10.0.2.2", "198.51.100.7", tcp(80, 50000)),
        DNAT,
    );
    assert_eq!(n.to_string(), "dnat 10.0.0.1 -> 10.0.2.2");
}

#[test]
fn nat_both() {
    let n = nat(
        tuple("10.0.1.100", "203.0.113.50", tcp(40000, 8080)),
        tuple("10.0.2.2", "10.0.2.1", tcp(80, 61000)),
        SNAT | DNAT,
    );
    assert_eq!(
        n.to_string(),
        "snat 10.0.1.100:40000 -> 10.0.2.1:61000, dnat 203.0.113.50:8080 -> 10.0.2.2:80"
    );
}

#[test]
fn nat_ipv6_brackets_ports() {
    let n = nat(
        tuple("2001:db8::7", "fd00::1", tcp(50000, 8080)),
        tuple("fd00:0:0:0:0:0:0:2", "2001:db8::7", tcp(80, 50000)),
        DNAT,
    );
    assert_eq!(n.to_string(), "dnat [fd00::1]:8080 -> [fd00::2]:80");
    // NPTv6-like address-only change: no brackets without ports.
    let n = nat(
        tuple("fd00::5", "2001:db8::1", udp(5353, 53)),
        tuple("2001:db8::1", "2001:db8:ffff::5", udp(53, 5353)),
        SNAT,
    );
    assert_eq!(n.to_string(), "snat fd00::5 -> 2001:db8:ffff::5");
}

#[test]
fn nat_icmp_uses_the_echo_id() {
    let echo = |id| CtProto::Icmp {
        icmp_type: 8,
        code: 0,
        id,
    };
    let reply = |id| CtProto::Icmp {
        icmp_type: 0,
        code: 0,
        id,
    };
    let n = nat(
        tuple("10.0.0.5", "8.8.8.8", echo(7)),
        tuple("8.8.8.8", "203.0.113.50", reply(7)),
        SNAT,
    );
    assert_eq!(n.to_string(), "snat 10.0.0.5 -> 203.0.113.50");
    let n = nat(
        tuple("10.0.0.5", "8.8.8.8", echo(7)),
        tuple("8.8.8.8", "203.0.113.50", reply(9)),
        SNAT,
    );
    assert_eq!(n.to_string(), "snat 10.0.0.5 id 7 -> 203.0.113.50 id 9");
}

#[test]
fn nat_generic_protocol_compares_addresses() {
    let gre = CtProto::Generic { proto: 47 };
    let n = nat(
        tuple("10.0.0.5", "192.0.2.1", gre),
        tuple("192.0.2.1", "203.0.113.50", gre),
        SNAT,
    );
    assert_eq!(n.to_string(), "snat 10.0.0.5 -> 203.0.113.50");
    assert_eq!(n.snat.unwrap().from.port, None);
}

#[test]
fn nat_status_bits_that_disagree_are_noted() {
    let n = nat(
        tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
        tuple("10.0.0.1", "10.0.0.5", tcp(80, 40000)),
        SNAT,
    );
    assert!(!n.is_none());
    assert_eq!(n.to_string(), "snat (SRC_NAT set, tuples unchanged)");
    let n = nat(
        tuple("198.51.100.7", "10.0.0.1", tcp(50000, 80)),
        tuple("10.0.2.2", "198.51.100.7", tcp(80, 50000)),
        St::CONFIRMED,
    );
    assert_eq!(
        n.to_string(),
        "dnat 10.0.0.1 -> 10.0.2.2 (no DST_NAT status bit)"
    );
}

#[test]
fn nat_done_bits_alone_are_no_nat() {
    // Null bindings set the *_DONE bits on every connection that passed the NAT hooks.
    let n = nat(
        tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
        tuple("10.0.0.1", "10.0.0.5", tcp(80, 40000)),
        St::CONFIRMED | St::SRC_NAT_DONE | St::DST_NAT_DONE,
    );
    assert_eq!(n.to_string(), "none");
}

#[test]
fn nat_mismatched_protocols_compare_addresses_only() {
    let n = nat(
        tuple("10.0.0.5", "10.0.0.1", tcp(1, 2)),
        tuple("10.0.0.1", "10.0.0.5", udp(3, 4)),
        St::empty(),
    );
    assert!(n.is_none());
}

// ---------------------------------------------------------------------------------------
// Folding events into connections

#[test]
fn scenario_connections() {
    let events = router_scenario();
    let report = connections(&events);
    let conns = &report.conns;
    // By first seen; the untracked packet and events without ct are left out.
    let ids: Vec<_> = conns.iter().map(|c| c.id()).collect();
    assert_eq!(
        ids,
        [
            Some(0xa1),
            Some(0xb2),
            Some(0xc3),
            Some(0xf6),
            Some(0xd4),
            None
        ]
    );

    let a = find(conns, 0xa1);
    assert_eq!(a.nat.to_string(), "snat 10.0.1.100 -> 203.0.113.50");
    assert_eq!(a.events, 7);
    assert_eq!(
        (a.first_seen, a.last_seen),
        (Some(1_400_000), Some(13_000_300))
    );
    assert_eq!(a.packets, PacketCounts { orig: 4, reply: 3 });
    assert_eq!(a.drops, 1);
    assert_eq!(a.entry.tcp_state, Some(TcpState::TimeWait));
    let states: Vec<_> = a.ct_states.iter().map(|t| t.state).collect();
    assert_eq!(states, [CtState::New, CtState::Reply, CtState::Established]);
    let tcp_states: Vec<_> = a.tcp_states.iter().map(|t| t.state.to_string()).collect();
    assert_eq!(
        tcp_states,
        [
            "SYN_SENT",
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT",
            "LAST_ACK",
            "TIME_WAIT"
        ]
    );
    // Where each change was first seen.
    let reply = &a.ct_states[1];
    assert_eq!(reply.timestamp, Some(3_400_000));
    let probe = reply.probe.as_ref().unwrap();
    assert_eq!(
        (probe.kind, &*probe.name),
        (ProbeKind::Tp, "net:net_dev_start_xmit")
    );
    assert!(a.parent.is_none());

    let b = find(conns, 0xb2);
    assert_eq!(b.nat.to_string(), "dnat 203.0.113.50:8080 -> 10.0.2.2:80");
    assert_eq!(b.packets, PacketCounts { orig: 1, reply: 1 });
    assert_eq!(
        (b.entry.zone_id, b.entry.mark, b.entry.labels),
        (5, Some(0x2a), Some(1))
    );
    // The last event's status.
    assert!(b.entry.ct_status.contains(St::SEEN_REPLY));

    let c = find(conns, 0xc3);
    assert!(c.nat.is_none());
    assert_eq!(c.entry.orig.ip.src, "fd00::1".parse::<IpAddr>().unwrap());

    let d = find(conns, 0xd4);
    let parent = d.parent.as_ref().unwrap();
    assert_eq!(parent.conn, Some(0xf6));
    let parent_entry = parent.entry.as_ref().unwrap();
    assert_eq!(parent_entry.helper, Some(FixedStr::new("ftp")));
    assert_eq!(d.packets, PacketCounts { orig: 1, reply: 1 });
    let states: Vec<_> = d.ct_states.iter().map(|t| t.state).collect();
    assert_eq!(states, [CtState::Related, CtState::RelatedReply]);

    let f = find(conns, 0xf6);
    assert_eq!(f.entry.helper, Some(FixedStr::new("ftp")));

    // The ct-only line: grouped by tuple, no timestamps.
    let last = conns.last().unwrap();
    assert!(matches!(last.key, ConnKey::Tuple { zone_id: 0, .. }));
    assert_eq!((last.first_seen, last.events), (None, 1));
    assert_eq!(last.packets, PacketCounts { orig: 1, reply: 0 });
}

#[test]
fn one_packet_at_many_probes_counts_once() {
    let base = conn(
        tuple("10.0.0.5", "10.0.0.1", udp(1000, 53)),
        tuple("10.0.0.1", "10.0.0.5", udp(53, 1000)),
        St::CONFIRMED,
    );
    let mut events = Vec::new();
    for (i, (skb, state)) in [
        (1, CtState::New),
        (1, CtState::New),
        (1, CtState::New),
        (2, CtState::Reply),
        (2, CtState::Reply),
        (3, CtState::Established),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = at(i as u64, "net:netif_receive_skb", skb, Some(9));
        e.ct = Some(ct(state, base.clone()));
        events.push(e);
    }
    // Without tracking ids every event counts.
    for _ in 0..2 {
        events.push(Event {
            tracking: None,
            ..events[0].clone()
        });
    }
    let report = connections(&events);
    let conns = &report.conns;
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].packets, PacketCounts { orig: 2, reply: 1 });
    assert_eq!(conns[0].events, 6);
    assert_eq!(conns[1].packets, PacketCounts { orig: 2, reply: 0 });
    assert_eq!(conns[1].key.id(), None);
}

#[test]
fn ids_keep_connections_apart_even_with_one_tuple() {
    // A closed connection reopened on the same tuple is a new conntrack entry.
    let entry = |state| {
        tcp_conn(
            tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
            tuple("10.0.0.1", "10.0.0.5", tcp(80, 40000)),
            St::CONFIRMED,
            state,
        )
    };
    let mut e1 = at(10, "net:net_dev_queue", 1, Some(0x100));
    e1.ct = Some(ct(CtState::Established, entry(TcpState::TimeWait)));
    let mut e2 = at(20, "net:net_dev_queue", 2, Some(0x200));
    e2.ct = Some(ct(CtState::New, entry(TcpState::SynSent)));
    let mut e3 = at(30, "net:net_dev_queue", 3, Some(0x100));
    e3.ct = Some(ct(CtState::Established, entry(TcpState::TimeWait)));
    let events = [e3, e2, e1];
    let report = connections(&events);
    let conns = &report.conns;
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].id(), Some(0x100));
    assert_eq!(conns[0].events, 2);
    assert_eq!(
        (conns[0].first_seen, conns[0].last_seen),
        (Some(10), Some(30))
    );
    assert_eq!(conns[1].id(), Some(0x200));
}

#[test]
fn without_ids_zone_separates_connections() {
    let mut entry = conn(
        tuple("10.0.0.5", "10.0.0.1", udp(1, 2)),
        tuple("10.0.0.1", "10.0.0.5", udp(2, 1)),
        St::CONFIRMED,
    );
    let mut events = vec![Event {
        ct: Some(ct(CtState::New, entry.clone())),
        ..Event::default()
    }];
    entry.zone_id = 1;
    entry.zone_dir = ZoneDir::Default;
    events.push(Event {
        ct: Some(ct(CtState::New, entry.clone())),
        ..Event::default()
    });
    events.push(events[1].clone());
    let report = connections(&events);
    let conns = &report.conns;
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[1].events, 2);
}

#[test]
fn templates_untracked_and_events_without_ct_are_left_out() {
    let mut template = conn(
        tuple("0.0.0.0", "0.0.0.0", CtProto::Generic { proto: 0 }),
        tuple("0.0.0.0", "0.0.0.0", CtProto::Generic { proto: 0 }),
        St::TEMPLATE,
    );
    template.zone_id = 3;
    let events = [
        Event {
            ct: Some(ct(CtState::New, template)),
            ..Event::default()
        },
        Event {
            ct: Some(crate::CtEvent::untracked()),
            ..Event::default()
        },
        at(1, "net:netif_receive_skb", 1, Some(5)),
    ];
    assert!(connections(&events).conns.is_empty());
    assert_eq!(
        text(&Connections::default(), Format::Text(Layout::MultiLine)),
        ""
    );
}

#[test]
fn parent_found_elsewhere_in_the_file_or_not_at_all() {
    let master = tcp_conn(
        tuple("10.0.0.5", "10.0.0.1", tcp(40021, 21)),
        tuple("10.0.0.1", "10.0.0.5", tcp(21, 40021)),
        St::CONFIRMED,
        TcpState::Established,
    );
    let child = tcp_conn(
        tuple("10.0.0.1", "10.0.0.5", tcp(20, 50000)),
        tuple("10.0.0.5", "10.0.0.1", tcp(50000, 20)),
        St::CONFIRMED | St::EXPECTED,
        TcpState::SynSent,
    );
    let mut m = at(1, "net:net_dev_queue", 1, Some(0xaa));
    m.ct = Some(ct(CtState::Established, master.clone()));
    let related = |skb, parent| {
        let mut e = at(2, "net:net_dev_queue", skb, Some(skb * 0x100));
        e.tracking.as_mut().unwrap().parent_conn = Some(parent);
        e.ct = Some(ct(CtState::Related, child.clone()));
        e
    };
    let events = [m, related(2, 0xaa), related(3, 0xbb)];
    let report = connections(&events);
    let conns = &report.conns;
    let found = find(conns, 0x200).parent.as_ref().unwrap();
    assert_eq!(found.conn, Some(0xaa));
    assert_eq!(found.entry.as_ref(), Some(&master));
    let missing = find(conns, 0x300).parent.as_ref().unwrap();
    assert_eq!((missing.conn, missing.entry.as_ref()), (Some(0xbb), None));
    let out = text(&report, Format::Text(Layout::SingleLine));
    assert!(out.contains(" parent conn aa [tcp (ESTABLISHED) orig [10.0.0.5.40021 > 10.0.0.1.21] reply [10.0.0.1.21 > 10.0.0.5.40021]] "), "{out}");
    assert!(out.contains(" parent conn bb (not in this file) "), "{out}");
}

#[test]
fn events_without_timestamps_come_after_in_file_order() {
    let entry = |port| {
        conn(
            tuple("10.0.0.5", "10.0.0.1", udp(port, 53)),
            tuple("10.0.0.1", "10.0.0.5", udp(53, port)),
            St::CONFIRMED,
        )
    };
    let untimed = |port| Event {
        ct: Some(ct(CtState::New, entry(port))),
        ..Event::default()
    };
    let mut timed = at(100, "net:netif_receive_skb", 1, Some(1));
    timed.ct = Some(ct(CtState::New, entry(3)));
    let events = [untimed(1), untimed(2), timed];
    let ports: Vec<_> = connections(&events)
        .conns
        .iter()
        .map(|c| c.entry.orig.proto.ports().unwrap().0)
        .collect();
    assert_eq!(ports, [3, 1, 2]);
}

#[test]
fn durations() {
    let d = |ns| {
        let mut s = String::new();
        write_duration(&mut s, ns).unwrap();
        s
    };
    assert_eq!(d(0), "0ns");
    assert_eq!(d(999), "999ns");
    assert_eq!(d(1_000), "1.000us");
    assert_eq!(d(1_250), "1.250us");
    assert_eq!(d(3_000_999), "3.000ms");
    assert_eq!(d(12_345_678_901), "12.345s");
    assert_eq!(d(u64::MAX), "18446744073.709s");
}

// ---------------------------------------------------------------------------------------
// Output

#[test]
fn json_has_every_key_in_order() {
    let events = router_scenario();
    let report = connections(&events);
    let conns = &report.conns;
    let json = text(&report, Format::Json);
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), conns.len());
    const KEYS: [&str; 27] = [
        "conn",
        "zone_id",
        "zone_dir",
        "orig",
        "reply",
        "tcp_state",
        "sctp_state",
        "status",
        "mark",
        "labels",
        "helper",
        "timeout",
        "nat",
        "parent",
        "first_seen",
        "last_seen",
        "events",
        "packets",
        "drops",
        "drop_reasons",
        "nft_drops",
        "ct_states",
        "tcp_states",
        "sctp_states",
        // nested, checked below
        "snat",
        "dnat",
        "status_snat",
    ];
    for line in &lines {
        // Top-level keys in the documented order (serde_json keeps the order in the text).
        let mut at = 0;
        for key in &KEYS[..24] {
            let needle = format!("\"{key}\":");
            let found = line[at..]
                .find(&needle)
                .unwrap_or_else(|| panic!("{key} missing or out of order in {line}"));
            at += found + needle.len();
        }
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value.as_object().unwrap().len(), 24);
        for key in &KEYS[24..] {
            assert!(value["nat"].get(key).is_some(), "nat.{key} in {line}");
        }
    }
    let a: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(a["conn"], 0xa1);
    assert_eq!(a["orig"]["ip"]["src"], "10.0.1.100");
    assert_eq!(a["tcp_state"], "TIME_WAIT");
    assert_eq!(a["status"], 0x19e);
    assert_eq!(
        a["nat"],
        serde_json::json!({
            "snat": {"from": {"addr": "10.0.1.100", "port": 54321},
                     "to": {"addr": "203.0.113.50", "port": 54321}},
            "dnat": null,
            "status_snat": true,
            "status_dnat": false,
        })
    );
    assert_eq!(a["parent"], serde_json::Value::Null);
    assert_eq!(a["packets"], serde_json::json!({"orig": 4, "reply": 3}));
    assert_eq!(a["drops"], 1);
    assert_eq!(a["drop_reasons"], serde_json::json!({"NETFILTER_DROP": 1}));
    assert_eq!(
        a["ct_states"][0],
        serde_json::json!({
            "state": "new",
            "timestamp": 1_400_000,
            "probe": {"type": "tp", "name": "net:net_dev_start_xmit"}
        })
    );
    assert_eq!(a["tcp_states"][5]["state"], "TIME_WAIT");
    assert_eq!(a["sctp_states"], serde_json::json!([]));

    let b: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(b["labels"], "0x0000000000000001");
    assert_eq!(
        (b["zone_id"].clone(), b["zone_dir"].clone()),
        (5.into(), "default".into())
    );
    let d: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
    assert_eq!(d["parent"]["conn"], 0xf6);
    assert_eq!(d["parent"]["orig"]["proto"]["tcp"]["dport"], 21);
    let f: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(f["helper"], "ftp");
    let last: serde_json::Value = serde_json::from_str(lines[5]).unwrap();
    assert_eq!(last["conn"], serde_json::Value::Null);
    assert_eq!(last["first_seen"], serde_json::Value::Null);
    assert_eq!(last["ct_states"][0]["probe"], serde_json::Value::Null);
}

#[test]
fn io_writer_matches_fmt_writer() {
    let events = router_scenario();
    let report = connections(&events);
    for format in [
        Format::Text(Layout::MultiLine),
        Format::Text(Layout::SingleLine),
        Format::Json,
    ] {
        let mut bytes = Vec::new();
        write_conns_io(&mut bytes, &report, format).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), text(&report, format));
    }
}

#[test]
fn singleline_is_one_line_per_connection() {
    let events = router_scenario();
    let report = connections(&events);
    let conns = &report.conns;
    let out = text(&report, Format::Text(Layout::SingleLine));
    assert_eq!(out.lines().count(), conns.len());
    let first = out.lines().next().unwrap();
    assert!(first.starts_with(
        "conn a1 tcp (TIME_WAIT) orig [10.0.1.100.54321 > 93.184.216.34.80] \
         reply [93.184.216.34.80 > 203.0.113.50.54321] status 0x19e \
         nat snat 10.0.1.100 -> 203.0.113.50 first 1400000 last 13000300 (11.600ms) events 7 \
         packets orig 4 reply 3 drops 1 (NETFILTER_DROP 1) \
         ct_state NEW (+0ns [tp] net:net_dev_start_xmit) -> REPLY (+2.000ms [tp] net:net_dev_start_xmit)"
    ), "{first}");
}

#[test]
fn names_with_control_characters_stay_on_their_line() {
    let mut e = at(1, "evil\nprobe", 1, Some(1));
    let mut entry = conn(
        tuple("10.0.0.5", "10.0.0.1", udp(1, 2)),
        tuple("10.0.0.1", "10.0.0.5", udp(2, 1)),
        St::CONFIRMED,
    );
    entry.helper = Some(FixedStr::new("a\nb"));
    e.ct = Some(ct(CtState::New, entry));
    let report = connections(&[e]);
    let out = text(&report, Format::Text(Layout::SingleLine));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("evil\\nprobe"));
}

#[test]
fn render_indents_every_line() {
    let events = router_scenario();
    let report = connections(&events);
    let conns = &report.conns;
    for layout in [Layout::MultiLine, Layout::SingleLine] {
        for c in conns {
            let mut out = String::new();
            c.render(&mut out, layout, 3).unwrap();
            for line in out.lines() {
                assert!(line.starts_with("   "), "{line:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Snapshots

#[test]
fn scenario_multiline() {
    let events = router_scenario();
    insta::assert_snapshot!(text(&connections(&events), Format::Text(Layout::MultiLine)));
}

#[test]
fn scenario_singleline() {
    let events = router_scenario();
    insta::assert_snapshot!(text(
        &connections(&events),
        Format::Text(Layout::SingleLine)
    ));
}

/// Every NAT shape and the corner cases of the timeline, in both layouts.
#[test]
fn nat_shapes_and_sparse_events() {
    let mut events = Vec::new();
    let shapes = [
        (
            "none",
            tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
            tuple("10.0.0.1", "10.0.0.5", tcp(80, 40000)),
            St::CONFIRMED,
        ),
        (
            "both",
            tuple("10.0.1.100", "203.0.113.50", tcp(40000, 8080)),
            tuple("10.0.2.2", "10.0.2.1", tcp(80, 61000)),
            St::CONFIRMED | SNAT | DNAT,
        ),
        (
            "ipv6",
            tuple("2001:db8::7", "fd00::1", udp(50000, 8080)),
            tuple("fd00::2", "2001:db8::7", udp(80, 50000)),
            St::CONFIRMED | DNAT,
        ),
        (
            "bit only",
            tuple("10.0.0.5", "10.0.0.1", udp(1, 2)),
            tuple("10.0.0.1", "10.0.0.5", udp(2, 1)),
            St::CONFIRMED | SNAT,
        ),
    ];
    for (i, (_, orig, reply, status)) in shapes.into_iter().enumerate() {
        let mut e = at(
            1_000 * i as u64,
            "net:netif_receive_skb",
            i as u64,
            Some(i as u64),
        );
        e.ct = Some(ct(CtState::New, conn(orig, reply, status)));
        events.push(e);
    }
    // No timestamp, no probe, no task: a bare ct line with tracking ids.
    let mut bare = Event {
        tracking: Some(Tracking {
            skb: 9,
            conn: Some(9),
            parent_conn: Some(0x77),
        }),
        ..Event::default()
    };
    bare.ct = Some(ct(
        CtState::Related,
        conn(
            tuple("10.0.0.5", "10.0.0.1", udp(7, 8)),
            tuple("10.0.0.1", "10.0.0.5", udp(8, 7)),
            St::empty(),
        ),
    ));
    events.push(bare);
    let report = connections(&events);
    let out = format!(
        "--- multi-line\n{}--- single-line\n{}",
        text(&report, Format::Text(Layout::MultiLine)),
        text(&report, Format::Text(Layout::SingleLine))
    );
    insta::assert_snapshot!(out);
}

// ---------------------------------------------------------------------------------------
// Properties

/// An nftables drop by one of a few rules or policies.
fn nft_drop() -> impl Strategy<Value = NftTrace> {
    (0u64..3, any::<bool>()).prop_map(|(handle, policy)| NftTrace {
        family: crate::NftFamily::Inet,
        table: "f".into(),
        chain: "in".into(),
        kind: if policy {
            NftTraceKind::Policy
        } else {
            NftTraceKind::Rule
        },
        handle: (!policy).then_some(handle),
        rule: (!policy).then(|| format!("tcp dport {handle} drop").into()),
        verdict: crate::NftVerdict::Drop,
        target: None,
        iif: None,
        oif: None,
    })
}

/// Arbitrary events with few distinct ids and timestamps.
fn events() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(
        (
            testing::event(),
            proptest::option::of(0u64..6),
            proptest::option::of(proptest::option::of(0u64..4)),
            proptest::option::of(0u64..12),
            proptest::bool::weighted(0.2),
            proptest::option::weighted(0.2, nft_drop()),
        ),
        0..40,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .map(|(mut event, skb, conn, ts, drop, nft_drop)| {
                if let Some(nft) = nft_drop {
                    // As `collect --nft` writes them: no probe, no ct section.
                    event = Event {
                        nft: Some(nft),
                        probe: None,
                        ct: None,
                        ..event
                    };
                }
                event.timestamp = ts;
                event.tracking = skb.map(|skb| Tracking {
                    skb,
                    conn: conn.flatten(),
                    parent_conn: event.tracking.and_then(|t| t.parent_conn),
                });
                if drop {
                    event.probe = Some(ProbeInfo {
                        kind: ProbeKind::Tp,
                        name: DROP_PROBE.into(),
                    });
                }
                event
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn folding_never_loses_or_duplicates_events(events in events()) {
        let report = connections(&events);
    let conns = &report.conns;
        let counted = events.iter().filter(|e| ConnKey::of(e).is_some()).count() as u64;
        prop_assert_eq!(conns.iter().map(|c| c.events).sum::<u64>(), counted);
        // Every nftables drop is counted once: under a connection or as unattributed.
        let nft_drops = events.iter().filter(|e| e.nft.as_ref().is_some_and(NftTrace::is_drop));
        let charged = conns.iter().flat_map(|c| &c.nft_drops)
            .chain(&report.unattributed_nft_drops)
            .map(|d| d.packets)
            .sum::<u64>();
        prop_assert_eq!(charged, nft_drops.count() as u64);
        let keys: std::collections::HashSet<_> = conns.iter().map(|c| c.key).collect();
        prop_assert_eq!(keys.len(), conns.len());
        for c in conns {
            prop_assert!(c.events >= 1);
            prop_assert!(c.packets.orig + c.packets.reply <= c.events);
            prop_assert!(c.drops <= c.events);
            prop_assert!(c.drop_reasons.iter().map(|(_, n)| n).sum::<u64>() <= c.drops);
            prop_assert!(c.first_seen <= c.last_seen);
            prop_assert_eq!(c.nat, Nat::from_conn(&c.entry));
        }
    }

    #[test]
    fn views_never_panic_and_keep_their_shape(events in events()) {
        let report = connections(&events);
    let conns = &report.conns;
        let entries = conns.len() + usize::from(!report.unattributed_nft_drops.is_empty());
        let single = text(&report, Format::Text(Layout::SingleLine));
        prop_assert_eq!(single.lines().count(), entries);
        let multi = text(&report, Format::Text(Layout::MultiLine));
        prop_assert!(multi.lines().count() >= conns.len() * 5);
        let json = text(&report, Format::Json);
        prop_assert_eq!(json.lines().count(), entries);
        for (i, line) in json.lines().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys = if i < conns.len() { 24 } else { 1 };
            prop_assert_eq!(value.as_object().unwrap().len(), keys);
        }
    }

    #[test]
    fn nat_of_arbitrary_connections_never_panics(entry in testing::ct_conn()) {
        let nat = Nat::from_conn(&entry);
        let text = nat.to_string();
        prop_assert!(!text.is_empty() && !text.contains('\n'));
        prop_assert_eq!(nat.is_none(), text == "none");
    }
}

#[test]
fn nft_drops_are_charged_to_their_connection_with_the_packets_ct_state() {
    let events = testing::nft_scenario();
    let report = connections(&events);
    let e5 = find(&report.conns, 0xe5);
    assert_eq!(e5.nft_drops.len(), 1);
    let drop = &e5.nft_drops[0];
    assert_eq!(drop.by.handle, Some(3));
    assert_eq!(drop.ct_state, Some(CtState::New));
    assert_eq!(drop.packets, 2);
    // The kernel's drops of the same packets are counted as before, apart.
    assert_eq!(e5.drops, 2);
    assert!(find(&report.conns, 0xe6).nft_drops.is_empty());
    // No conn id, and a conn id without ct events: unattributed, never lost.
    let unattributed: Vec<_> = report
        .unattributed_nft_drops
        .iter()
        .map(|d| (d.by.kind, d.by.handle, d.ct_state, d.packets))
        .collect();
    assert_eq!(
        unattributed,
        [
            (NftTraceKind::Policy, None, None, 1),
            (NftTraceKind::Rule, Some(3), None, 1)
        ]
    );
}

#[test]
fn nft_drops_without_ct_state_or_rule_text() {
    let mut events = testing::nft_scenario();
    // Only the trace of the second SYN, and its kfree_skb without a ct section.
    for event in &mut events {
        if event.tracking.is_some_and(|t| t.skb == 0x72) {
            event.ct = None;
            if let Some(nft) = &mut event.nft {
                nft.rule = None;
            }
        }
    }
    let report = connections(&events);
    let lines: Vec<String> = text(&report, Format::Text(Layout::MultiLine))
        .lines()
        .filter(|l| l.contains("dropped by"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            "  dropped by inet f in handle 3: tcp dport 81 drop, ct state NEW",
            "  dropped by inet f in handle 3",
            "  dropped by inet f in policy",
            "  dropped by inet f in handle 3: tcp dport 81 drop",
        ]
    );
}

#[test]
fn nft_scenario_views() {
    let report = connections(&testing::nft_scenario());
    insta::assert_snapshot!(format!(
        "{}\n--- single-line\n{}--- json\n{}",
        text(&report, Format::Text(Layout::MultiLine)),
        text(&report, Format::Text(Layout::SingleLine)),
        text(&report, Format::Json)
    ));
}

// ---------------------------------------------------------------------------------------
// Streaming: the same summaries as in memory

fn folded(events: &[Event], limits: crate::StreamLimits) -> (Connections, crate::StreamStats) {
    let mut folder = ConnFolder::new(limits);
    for event in events {
        folder.push(event);
    }
    folder.finish()
}

const UNBOUNDED: crate::StreamLimits = crate::StreamLimits::UNBOUNDED;

#[test]
fn streaming_forgets_packets_once_their_window_has_passed() {
    let limits = crate::StreamLimits::new(std::time::Duration::from_nanos(20), 4);
    // One DNS query a packet, all of one connection.
    let query = conn(
        tuple("10.0.0.5", "10.0.0.1", udp(1, 53)),
        tuple("10.0.0.1", "10.0.0.5", udp(53, 1)),
        St::CONFIRMED,
    );
    let events: Vec<Event> = (0..1000u64)
        .map(|i| Event {
            ct: Some(ct(CtState::New, query.clone())),
            ..at(i * 10, "net:netif_receive_skb", i, Some(1))
        })
        .collect();
    let (conns, stats) = folded(&events, limits);
    assert!(stats.exact(), "{stats:?}");
    assert_eq!(conns, connections(&events));
    assert_eq!(conns.conns[0].packets.orig, 1000);
}

proptest! {
    #[test]
    fn streaming_without_bounds_is_the_in_memory_fold(events in events()) {
        let (conns, stats) = folded(&events, UNBOUNDED);
        prop_assert_eq!(conns, connections(&events));
        prop_assert_eq!(stats.forced, 0);
    }

    #[test]
    fn streaming_is_the_in_memory_fold_on_captures_that_fit_the_window(
        (events, steps) in proptest::collection::vec(events(), 1..3)
            .prop_map(|chunks| chunks.concat())
            .prop_flat_map(|events| {
                let n = events.len();
                (Just(events), testing::window_steps(n))
            })
    ) {
        let events = testing::in_window(events, &steps);
        let limits = crate::StreamLimits::new(std::time::Duration::from_nanos(testing::TEST_WINDOW_NS), 1024);
        let (conns, stats) = folded(&events, limits);
        prop_assert!(stats.exact(), "{:?}", stats);
        prop_assert_eq!(conns, connections(&events));
    }
}

// ---------------------------------------------------------------------------------------
// Crafted streams: the bound on what the folder holds

/// 16 packets open, so at most 1024 records held, 1024 per packet.
fn small_bound() -> crate::StreamLimits {
    crate::StreamLimits::new(std::time::Duration::from_millis(100), 16)
}

/// Folds `events`, checking after every push that the folder holds no more than the bound.
fn folded_within_bound(
    events: &[Event],
    limits: crate::StreamLimits,
) -> (Connections, crate::StreamStats) {
    let mut folder = ConnFolder::new(limits);
    let mut most = 0;
    for event in events {
        folder.push(event);
        most = most.max(folder.held());
    }
    assert!(
        most <= limits.max_events,
        "held {most} records, bound {}",
        limits.max_events
    );
    folder.finish()
}

fn dns_query() -> crate::CtConnEvent {
    conn(
        tuple("10.0.0.5", "10.0.0.1", udp(1, 53)),
        tuple("10.0.0.1", "10.0.0.5", udp(53, 1)),
        St::CONFIRMED,
    )
}

fn nft_policy_drop() -> NftTrace {
    NftTrace {
        family: crate::NftFamily::Inet,
        table: "f".into(),
        chain: "in".into(),
        kind: NftTraceKind::Policy,
        handle: None,
        rule: None,
        verdict: crate::NftVerdict::Drop,
        target: None,
        iif: None,
        oif: None,
    }
}

#[test]
fn packets_without_timestamps_are_let_go_within_the_bound() {
    // Each event its own packet, none timed: nothing closes them but the bound.
    let events: Vec<Event> = (0..20_000u64)
        .map(|i| Event {
            timestamp: None,
            ct: Some(ct(CtState::New, dns_query())),
            ..at(0, "net:netif_receive_skb", i, Some(1))
        })
        .collect();
    let (conns, stats) = folded_within_bound(&events, small_bound());
    assert!(stats.forced > 0, "{stats:?}");
    // Distinct packets: letting them go early changes nothing.
    assert_eq!(conns, connections(&events));
    assert_eq!(conns.conns[0].packets.orig, 20_000);
}

#[test]
fn endless_nft_drops_of_one_packet_stay_within_the_bound() {
    // One packet id, dropped by the policy over and over, always within the window.
    let events: Vec<Event> = (0..20_000u64)
        .map(|i| Event {
            nft: Some(nft_policy_drop()),
            probe: None,
            ct: None,
            ..at(i * 1000, "net:netif_receive_skb", 9, Some(1))
        })
        .collect();
    let (conns, stats) = folded_within_bound(&events, small_bound());
    assert!(stats.forced > 0, "{stats:?}");
    // Without a ct state to charge them with, the counts are the in-memory view's.
    assert_eq!(conns, connections(&events));
    assert_eq!(conns.unattributed_nft_drops[0].packets, 20_000);
}

#[test]
fn endless_untimed_nft_drops_stay_within_the_bound() {
    let events: Vec<Event> = (0..20_000u64)
        .map(|i| Event {
            timestamp: None,
            nft: Some(nft_policy_drop()),
            probe: None,
            ct: None,
            ..at(0, "net:netif_receive_skb", i % 3, Some(1))
        })
        .collect();
    let (conns, _) = folded_within_bound(&events, small_bound());
    assert_eq!(conns, connections(&events));
}

#[test]
fn one_packet_id_counted_in_ever_more_connections_stays_within_the_bound() {
    // A crafted file: one packet id in 5,000 connections, each seen once.
    let events: Vec<Event> = (0..5_000u64)
        .map(|i| Event {
            ct: Some(ct(CtState::New, dns_query())),
            ..at(i * 1000, "net:netif_receive_skb", 3, Some(i))
        })
        .collect();
    let (conns, stats) = folded_within_bound(&events, small_bound());
    assert!(stats.forced > 0, "{stats:?}");
    assert_eq!(conns.conns.len(), 5_000);
    assert!(conns.conns.iter().all(|c| c.packets.orig == 1));
}

proptest! {
    #[test]
    fn a_tiny_bound_holds_and_still_counts_every_event(events in events()) {
        let limits = crate::StreamLimits {
            max_events: 3,
            max_packet_events: 2,
            ..crate::StreamLimits::new(std::time::Duration::from_nanos(testing::TEST_WINDOW_NS), 2)
        };
        let (conns, stats) = folded_within_bound(&events, limits);
        prop_assert_eq!(stats.events, events.len() as u64);
        let expected = connections(&events);
        prop_assert_eq!(conns.conns.len(), expected.conns.len());
        prop_assert_eq!(
            conns.conns.iter().map(|c| c.events).sum::<u64>(),
            expected.conns.iter().map(|c| c.events).sum::<u64>()
        );
    }
}

/// `conns --follow conn`: one kept event keeps its connection whole, every event of it
/// counted, and nothing else.
#[test]
fn whole_connections_keep_every_event_of_a_kept_one() {
    let events = router_scenario();
    let all = connections(&events);
    // One reply event of a1 is kept (the late drop at skb:kfree_skb), nothing else.
    let kept = |e: &Event| e.is_drop() && e.tracking.and_then(|t| t.conn) == Some(0xa1);
    assert_eq!(events.iter().filter(|e| kept(e)).count(), 1);
    let mut folder = ConnFolder::whole_connections(crate::StreamLimits::default());
    for event in &events {
        folder.push_judged(event, kept(event));
    }
    let (whole, stats) = folder.finish();
    assert!(stats.exact());
    assert_eq!(whole.conns, vec![find(&all.conns, 0xa1).clone()]);
    // The usual folder counts the kept event alone.
    let mut folder = ConnFolder::new(crate::StreamLimits::default());
    for event in &events {
        folder.push_judged(event, kept(event));
    }
    let (one, _) = folder.finish();
    assert_eq!(one.conns.len(), 1);
    assert_eq!(one.conns[0].events, 1);
    assert!(find(&all.conns, 0xa1).events > 1);
}

/// nftables drops: a kept connection takes all of its own; drops no connection takes
/// count only when kept.
#[test]
fn whole_connections_count_nft_drops_of_kept_connections_only() {
    let events = testing::nft_scenario();
    let all = connections(&events);
    let mut folder = ConnFolder::whole_connections(crate::StreamLimits::default());
    for event in &events {
        folder.push_judged(event, false);
    }
    let (none, _) = folder.finish();
    assert!(none.conns.is_empty() && none.unattributed_nft_drops.is_empty());
    let mut folder = ConnFolder::whole_connections(crate::StreamLimits::default());
    for event in &events {
        folder.push_judged(event, true);
    }
    assert_eq!(folder.finish().0, all);
}
