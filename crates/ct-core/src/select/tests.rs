use std::collections::HashSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::filter::EventFilter;
use crate::testing::build::at;
use crate::testing::router_scenario;
use crate::Tracking;

/// Every event the selector lets out, with its verdict, and its stats.
fn run(
    follow: Follow,
    limits: StreamLimits,
    input: &[(Event, bool)],
) -> (Vec<(Event, bool)>, FollowStats) {
    let mut selector = FollowSelector::new(follow, limits);
    let mut out = Vec::new();
    let mut sink = |e: Event, keep: bool| -> Result<(), ()> {
        out.push((e, keep));
        Ok(())
    };
    for (event, matched) in input {
        selector.push(event.clone(), *matched, &mut sink).unwrap();
        assert!(selector.held_events() <= limits.max_events);
    }
    let stats = selector.finish(&mut sink).unwrap();
    (out, stats)
}

/// The events kept.
fn kept(follow: Follow, limits: StreamLimits, input: &[(Event, bool)]) -> Vec<Event> {
    let (out, _) = run(follow, limits, input);
    out.into_iter()
        .filter(|(_, k)| *k)
        .map(|(e, _)| e)
        .collect()
}

fn filtered(filter: &str, events: Vec<Event>) -> Vec<(Event, bool)> {
    let filter = EventFilter {
        packet: Some(filter.parse().unwrap()),
        ..EventFilter::default()
    };
    events
        .into_iter()
        .map(|e| {
            let matched = filter.matches(&e);
            (e, matched)
        })
        .collect()
}

/// The whole-input rule, read all at once: kept when matched, or when a kept event has
/// the same packet id (and with `conn`, the same connection id), to a fixed point.
fn whole_input_rule(follow: Follow, input: &[(Event, bool)]) -> Vec<bool> {
    let mut keep: Vec<bool> = input.iter().map(|(_, m)| *m).collect();
    if !follow.follows() {
        return keep;
    }
    let ids = |e: &Event| {
        let t = e.tracking;
        (
            t.map(|t| t.skb),
            t.and_then(|t| t.conn).filter(|_| follow == Follow::Conn),
        )
    };
    loop {
        let mut packets = HashSet::new();
        let mut conns = HashSet::new();
        for ((e, _), _) in input.iter().zip(&keep).filter(|(_, k)| **k) {
            let (skb, conn) = ids(e);
            packets.extend(skb);
            conns.extend(conn);
        }
        let next: Vec<bool> = input
            .iter()
            .zip(&keep)
            .map(|((e, _), &k)| {
                let (skb, conn) = ids(e);
                k || skb.is_some_and(|s| packets.contains(&s))
                    || conn.is_some_and(|c| conns.contains(&c))
            })
            .collect();
        if next == keep {
            return keep;
        }
        keep = next;
    }
}

fn event(ts: Option<u64>, skb: Option<u64>, conn: Option<u64>) -> Event {
    Event {
        timestamp: ts,
        tracking: skb.map(|skb| Tracking {
            skb,
            conn,
            parent_conn: None,
        }),
        ..Event::default()
    }
}

#[test]
fn a_pre_nat_filter_keeps_its_packets_after_nat() {
    // Client packets match before SNAT only (src 10.0.1.100 at ingress).
    let input = filtered("src host 10.0.1.100", router_scenario());
    let none = kept(Follow::None, StreamLimits::default(), &input);
    let packet = kept(Follow::Packet, StreamLimits::default(), &input);
    let conn = kept(Follow::Conn, StreamLimits::default(), &input);
    let probes = |events: &[Event]| -> Vec<(u64, String)> {
        events
            .iter()
            .map(|e| {
                let skb = e.tracking.unwrap().skb;
                (skb, e.probe.as_ref().unwrap().name.to_string())
            })
            .collect()
    };
    // None: the ingress hits alone.
    assert!(none.iter().all(|e| e.ct.is_none()));
    assert_eq!(none.len(), 4);
    // Packet: both hits of each client packet, the egress one after SNAT.
    let rx = "net:netif_receive_skb".to_owned();
    let tx = "net:net_dev_start_xmit".to_owned();
    let mut expected = Vec::new();
    for skb in [0x11, 0x13, 0x14, 0x16] {
        expected.push((skb, rx.clone()));
        expected.push((skb, tx.clone()));
    }
    assert_eq!(probes(&packet), expected);
    let egress = packet.iter().find(|e| e.ct.is_some()).unwrap();
    assert_eq!(
        egress.packet.as_ref().unwrap().ip.unwrap().src.to_string(),
        "203.0.113.50"
    );
    // Conn: every event of conn a1, both directions, replies before un-NAT included,
    // and the ingress hits of the replies, which carry no connection id yet.
    let a1: HashSet<u64> = router_scenario()
        .iter()
        .filter(|e| e.tracking.and_then(|t| t.conn) == Some(0xa1))
        .map(|e| e.tracking.unwrap().skb)
        .collect();
    let all_a1: Vec<Event> = router_scenario()
        .into_iter()
        .filter(|e| e.tracking.is_some_and(|t| a1.contains(&t.skb)))
        .collect();
    assert_eq!(conn, all_a1);
    assert!(conn
        .iter()
        .any(|e| e.packet.as_ref().unwrap().ip.unwrap().dst.to_string() == "203.0.113.50"));
}

#[test]
fn a_post_nat_filter_reaches_back_to_the_earlier_hits() {
    // Matches at egress only (after SNAT): the ingress hit before it is kept too.
    let input = filtered("src host 203.0.113.50", router_scenario());
    let packet: Vec<Event> = kept(Follow::Packet, StreamLimits::default(), &input)
        .into_iter()
        .filter(|e| e.tracking.and_then(|t| t.conn) != Some(0xb2))
        .collect();
    assert_eq!(packet.len(), 8);
    for pair in packet.chunks(2) {
        assert_eq!(pair[0].tracking.unwrap().skb, pair[1].tracking.unwrap().skb);
        assert!(pair[0].ct.is_none() && pair[1].ct.is_some());
    }
}

#[test]
fn a_packet_id_unseen_for_the_window_is_a_new_packet() {
    let limits = StreamLimits::new(Duration::from_nanos(100), 16);
    let input = [
        (event(Some(10), Some(1), None), true),
        (event(Some(50), Some(1), None), false),
        // 200 ns later: the id was reused by another packet.
        (event(Some(250), Some(1), None), false),
        (event(Some(260), Some(2), None), false),
    ];
    let (out, stats) = run(Follow::Packet, limits, &input);
    let verdicts: Vec<bool> = out.iter().map(|(_, k)| *k).collect();
    assert_eq!(verdicts, [true, true, false, false]);
    assert!(stats.exact());
    // And a match of the reused id does not reach back to the old packet.
    let input = [
        (event(Some(10), Some(1), None), false),
        (event(Some(250), Some(1), None), true),
    ];
    let (out, _) = run(Follow::Packet, limits, &input);
    assert_eq!(
        out.iter().map(|(_, k)| *k).collect::<Vec<_>>(),
        [false, true]
    );
}

#[test]
fn events_without_ids_or_timestamps_are_judged_alone() {
    let input = [
        (event(None, None, None), true),
        (event(Some(5), None, None), false),
        (event(None, Some(3), None), false),
        (event(Some(6), Some(3), None), true),
        (event(None, None, None), false),
    ];
    let (out, stats) = run(Follow::Packet, StreamLimits::default(), &input);
    let verdicts: Vec<bool> = out.iter().map(|(_, k)| *k).collect();
    assert_eq!(verdicts, [true, false, true, true, false]);
    assert_eq!((stats.events, stats.kept), (5, 3));
}

#[test]
fn memory_stays_bounded_under_many_ids() {
    let limits = StreamLimits::new(Duration::from_secs(1), 64);
    let mut selector = FollowSelector::new(Follow::Conn, limits);
    let mut kept = 0u64;
    let mut sink = |_: Event, keep: bool| -> Result<(), ()> {
        kept += u64::from(keep);
        Ok(())
    };
    // 200k packets of 100k connections within one window: every other one matches.
    for i in 0..200_000u64 {
        let e = event(Some(i), Some(i), Some(i / 2));
        selector.push(e, i % 4 == 0, &mut sink).unwrap();
        assert!(selector.held_events() <= limits.max_events);
        let (packets, conns) = selector.remembered_ids();
        assert!(packets <= limits.max_open + 1, "{packets} packets");
        assert!(
            conns <= limits.max_open + limits.max_events,
            "{conns} conns"
        );
        assert!(selector.conn_uses.len() <= 2 * limits.max_open.max(512) + 1);
    }
    let stats = selector.finish(&mut sink).unwrap();
    assert!(!stats.exact());
    assert!(stats.decided_early > 0 && stats.conns_forgotten > 0);
    assert_eq!(stats.kept, kept);
    // Each matched packet keeps at least itself and the other packet of its connection
    // when that one is still held.
    assert!(kept >= 50_000, "{kept}");
}

#[test]
fn a_forgotten_connection_is_counted() {
    let limits = StreamLimits {
        window: Duration::from_nanos(10),
        max_open: 1,
        max_events: 1024,
        max_packet_events: 1024,
    };
    let input = [
        (event(Some(0), Some(1), Some(7)), true),
        (event(Some(100), Some(2), Some(8)), true),
        // Conn 7 was pushed out by conn 8.
        (event(Some(200), Some(3), Some(7)), false),
        (event(Some(300), Some(4), Some(8)), false),
    ];
    let (out, stats) = run(Follow::Conn, limits, &input);
    assert_eq!(
        out.iter().map(|(_, k)| *k).collect::<Vec<_>>(),
        [true, true, false, true]
    );
    assert_eq!(stats.conns_forgotten, 1);
}

/// Events of a few packets and connections within one window, with random matches.
fn capture() -> impl Strategy<Value = Vec<(Event, bool)>> {
    proptest::collection::vec(
        (
            0u64..50,
            proptest::option::weighted(0.9, 0u64..6),
            proptest::option::of(0u64..4),
            proptest::bool::weighted(0.15),
            proptest::bool::weighted(0.05),
        ),
        0..60,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .map(|(ts, skb, conn, matched, untimed)| {
                (event((!untimed).then_some(1000 + ts), skb, conn), matched)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn within_the_window_the_whole_input_rule_holds(
        input in capture(),
        follow in prop_oneof![Just(Follow::None), Just(Follow::Packet), Just(Follow::Conn)],
    ) {
        let (out, stats) = run(follow, StreamLimits::default(), &input);
        // Every event once, in input order.
        let events: Vec<&Event> = out.iter().map(|(e, _)| e).collect();
        prop_assert_eq!(events, input.iter().map(|(e, _)| e).collect::<Vec<_>>());
        let verdicts: Vec<bool> = out.iter().map(|(_, k)| *k).collect();
        prop_assert_eq!(&verdicts, &whole_input_rule(follow, &input));
        prop_assert!(stats.exact());
        prop_assert_eq!(stats.kept, verdicts.iter().filter(|k| **k).count() as u64);
        if follow == Follow::None {
            // Today's rule: a judgement per event.
            let matched: Vec<bool> = input.iter().map(|(_, m)| *m).collect();
            prop_assert_eq!(verdicts, matched);
        }
    }

    #[test]
    fn a_packet_matched_at_any_event_is_kept_whole_in_any_order(
        order in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle(),
        matched_at in 0..12usize,
    ) {
        // Three packets of four events each, written in any order.
        let input: Vec<(Event, bool)> = order
            .iter()
            .map(|&i| (event(Some(1000 + i as u64), Some(i as u64 % 3), None), i == matched_at))
            .collect();
        let (out, _) = run(Follow::Packet, StreamLimits::default(), &input);
        for (e, keep) in out {
            prop_assert_eq!(keep, e.tracking.unwrap().skb == matched_at as u64 % 3);
        }
    }

    #[test]
    fn bounds_hold_and_every_event_comes_out_once(input in capture(), max_open in 1usize..4) {
        let limits = StreamLimits {
            window: Duration::from_nanos(5),
            max_open,
            max_events: 3,
            max_packet_events: 3,
        };
        let (out, stats) = run(Follow::Conn, limits, &input);
        prop_assert_eq!(out.len(), input.len());
        // What matched is always kept.
        for ((_, keep), (_, matched)) in out.iter().zip(&input) {
            prop_assert!(*keep || !*matched);
        }
        prop_assert_eq!(stats.events, input.len() as u64);
    }
}

#[test]
fn the_scenario_at_timestamps_keeps_the_rx_tx_pairs() {
    // A built event with probe and ids, as the sort tests use them.
    let input = [
        (at(10, "net:netif_receive_skb", 1, None), false),
        (at(20, "net:net_dev_start_xmit", 1, Some(9)), true),
    ];
    assert_eq!(
        kept(Follow::Packet, StreamLimits::default(), &input).len(),
        2
    );
    assert_eq!(kept(Follow::None, StreamLimits::default(), &input).len(), 1);
}
