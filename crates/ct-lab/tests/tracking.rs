//! Issue 8 on real traffic: packet ids hold across probes and NAT, and a TCP connection
//! through the lab's NAT router folds into one connection with its NAT spelled out and its
//! whole TCP timeline.

mod scenarios;

use ct_core::ConnKey;
use ct_core::{connections, group_packets, Event, TcpState};
use ct_lab::{CLIENT4, ROUTER_C4, ROUTER_S4, SERVER4};
use scenarios::*;

#[test]
fn tcp_through_nat_is_one_connection_with_its_timeline() {
    if !ct_lab::kernel_available() {
        return;
    }
    let (run, (sport, _)) = tcp_dnat_snat();
    if std::env::var_os("CT_DEBUG_TRACK").is_some() {
        for c in &run.events {
            eprintln!(
                "{} {:?} head-ts {} hdr {:02x?}",
                c.probe(),
                c.ifname(),
                c.raw.skb_first_ts,
                &c.raw.hdr[..40.min(c.raw.hdr_len as usize)]
            );
        }
    }
    let d = run.dump();
    let events: Vec<Event> = run.events.iter().map(|c| c.event.clone()).collect();

    // One connection for the client's flow, with its NAT spelled out.
    let conns = connections(&events).conns;
    let ours: Vec<_> = conns
        .iter()
        .filter(|c| {
            c.entry.orig.ip.src == std::net::IpAddr::from(CLIENT4)
                && c.entry.orig.proto.ports() == Some((sport, 8080))
        })
        .collect();
    assert_eq!(ours.len(), 1, "expected one connection, got {ours:#?}\n{d}");
    let conn = ours[0];
    assert!(
        matches!(conn.key, ConnKey::Id(_)),
        "keyed by the kernel entry"
    );
    let nat = conn.nat.to_string();
    assert!(
        nat.contains(&format!("dnat {ROUTER_C4}:8080 -> {SERVER4}:80")),
        "{nat}"
    );
    assert!(nat.contains(&format!("snat {CLIENT4}")), "{nat}");
    assert!(nat.contains(&format!("-> {ROUTER_S4}")), "{nat}");

    // SYN_SENT -> ... -> ESTABLISHED -> ... -> TIME_WAIT, in that order.
    let tcp: Vec<TcpState> = conn.tcp_states.iter().map(|t| t.state).collect();
    let at = |s: TcpState| tcp.iter().position(|&x| x == s);
    let (syn, est, tw) = (
        at(TcpState::SynSent),
        at(TcpState::Established),
        at(TcpState::TimeWait),
    );
    assert!(
        syn.is_some() && est.is_some() && tw.is_some(),
        "timeline {tcp:?}\n{d}"
    );
    assert!(syn < est && est < tw, "timeline out of order: {tcp:?}");
    assert!(conn.packets.orig > 0 && conn.packets.reply > 0);
    assert_eq!(conn.drops, 0);
    assert!(
        conn.tcp_states
            .iter()
            .all(|t| t.probe.is_some() && t.timestamp.is_some()),
        "each change names the probe and time it was first seen"
    );

    // Packet ids: the client's SYN received on rc (before NAT) and sent on rs (after
    // DNAT and SNAT) is one packet.
    let groups = group_packets(&events);
    let syn_group = groups
        .iter()
        .find(|g| {
            g.events.iter().any(|e| {
                e.probe.as_ref().is_some_and(|p| &*p.name == RECEIVE)
                    && e.packet
                        .as_ref()
                        .and_then(|p| p.ip.as_ref())
                        .is_some_and(|ip| ip.src == std::net::IpAddr::from(CLIENT4))
                    && matches!(
                        e.packet.as_ref().and_then(|p| p.l4),
                        Some(ct_core::PacketL4::Tcp { flags: 0x02, .. })
                    )
            })
        })
        .unwrap_or_else(|| panic!("no SYN received from the client\n{d}"));
    let rewritten = syn_group.events.iter().any(|e| {
        e.probe.as_ref().is_some_and(|p| &*p.name == XMIT)
            && e.packet
                .as_ref()
                .and_then(|p| p.ip.as_ref())
                .is_some_and(|ip| {
                    ip.src == std::net::IpAddr::from(ROUTER_S4)
                        && ip.dst == std::net::IpAddr::from(SERVER4)
                })
    });
    assert!(
        rewritten,
        "the SYN's group should hold its NATed transmission: {:#?}",
        syn_group.events
    );
    // And no two packets of the connection share a group: each TCP packet is received
    // once on the router. (Identical packets a link repeats within 50 ms, such as multicast
    // listener reports, can share one when their first copy's free is not seen: the
    // fingerprint cannot tell them apart.)
    let tcp_groups = groups.iter().filter(|g| {
        matches!(
            g.first_packet().and_then(|p| p.l4),
            Some(ct_core::PacketL4::Tcp { .. })
        )
    });
    for g in tcp_groups {
        let receives = g
            .events
            .iter()
            .filter(|e| e.probe.as_ref().is_some_and(|p| &*p.name == RECEIVE))
            .count();
        assert!(
            receives <= 1,
            "two packets merged into one group: {:#?}",
            g.events
        );
    }
}
