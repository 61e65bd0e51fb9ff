use proptest::prelude::*;

use super::*;
use crate::testing::build::{at, ct, packet, tcp, tcp_conn, tcp_l4, tuple};
use crate::testing::{self, router_scenario};
use crate::{CtState, CtStatus, StreamLimits, StreamStats, TcpState, Tracking};

fn timestamps(group: &PacketGroup<'_>) -> Vec<Option<u64>> {
    group.events.iter().map(|e| e.timestamp).collect()
}

fn skbs(groups: &[PacketGroup<'_>]) -> Vec<Option<u64>> {
    groups.iter().map(|g| g.skb).collect()
}

fn text(groups: &[PacketGroup<'_>], format: Format) -> String {
    let mut out = String::new();
    write_packets(&mut out, groups, format).unwrap();
    out
}

/// Events with a timestamp and a packet id each, from `(timestamp, packet id)`.
fn timed_packets<const N: usize>(items: [(u64, u64); N]) -> [Event; N] {
    items.map(|(ts, skb)| bare(Some(ts), Some(skb)))
}

/// The router scenario, grouped by packet, in `format`.
fn scenario_text(format: Format) -> String {
    text(&group_packets(&router_scenario()), format)
}

/// An event with only a timestamp and, optionally, a packet id.
fn bare(ts: Option<u64>, skb: Option<u64>) -> Event {
    Event {
        timestamp: ts,
        tracking: skb.map(|skb| Tracking {
            skb,
            conn: None,
            parent_conn: None,
        }),
        ..Event::default()
    }
}

// ---------------------------------------------------------------------------------------
// Grouping and order

#[test]
fn groups_by_packet_in_order_of_first_event() {
    let events = timed_packets([(50, 2), (30, 1), (10, 2), (40, 3), (20, 1)]);
    let groups = group_packets(&events);
    assert_eq!(skbs(&groups), [Some(2), Some(1), Some(3)]);
    assert_eq!(timestamps(&groups[0]), [Some(10), Some(50)]);
    assert_eq!(timestamps(&groups[1]), [Some(20), Some(30)]);
    assert_eq!(groups[0].first_seen(), Some(10));
    // Events are borrowed, not copied.
    assert!(std::ptr::eq(groups[0].events[0], &events[2]));
}

#[test]
fn equal_timestamps_keep_file_order() {
    let events = timed_packets([(5, 9), (5, 8), (5, 9)]);
    let groups = group_packets(&events);
    assert_eq!(skbs(&groups), [Some(9), Some(8)]);
    assert!(std::ptr::eq(groups[0].events[0], &events[0]));
    assert!(std::ptr::eq(groups[0].events[1], &events[2]));
}

#[test]
fn events_without_ids_are_groups_of_one_in_file_order() {
    let events = [
        bare(None, None),
        bare(Some(7), None),
        bare(None, None),
        bare(Some(7), None),
        bare(Some(3), Some(1)),
    ];
    let groups = group_packets(&events);
    assert_eq!(groups.len(), 5);
    assert!(groups.iter().all(|g| g.events.len() == 1));
    // Timed first (by time, ties in file order), then untimed in file order.
    let order: Vec<*const Event> = groups.iter().map(|g| g.events[0] as *const _).collect();
    let expected: Vec<*const Event> = [4, 1, 3, 0, 2]
        .iter()
        .map(|&i| &events[i] as *const _)
        .collect();
    assert_eq!(order, expected);
    assert_eq!(skbs(&groups), [Some(1), None, None, None, None]);
}

#[test]
fn untimed_events_of_a_packet_come_last_in_its_group() {
    let events = [
        bare(None, Some(1)),
        bare(Some(9), Some(1)),
        bare(Some(4), Some(2)),
    ];
    let groups = group_packets(&events);
    assert_eq!(skbs(&groups), [Some(2), Some(1)]);
    assert_eq!(timestamps(&groups[1]), [Some(9), None]);
    assert_eq!(groups[1].first_seen(), Some(9));
}

#[test]
fn a_file_without_timestamps_or_ids_keeps_its_order() {
    let events: Vec<Event> = (0..4)
        .map(|i| Event {
            netns: Some(i),
            ..Event::default()
        })
        .collect();
    let groups = group_packets(&events);
    let netns: Vec<_> = groups.iter().map(|g| g.events[0].netns).collect();
    assert_eq!(netns, [Some(0), Some(1), Some(2), Some(3)]);
}

#[test]
fn one_packet_across_nat_and_connections_is_one_group() {
    // The id stays with the packet when NAT rewrites it and when its conn id changes (a
    // packet can reach a second conntrack entry, e.g. in another zone).
    let events = router_scenario();
    let groups = group_packets(&events);
    let syn = groups.iter().find(|g| g.skb == Some(0x11)).unwrap();
    assert_eq!(syn.events.len(), 2);
    let sources: Vec<_> = syn
        .events
        .iter()
        .map(|e| e.packet.as_ref().unwrap().ip.unwrap().src.to_string())
        .collect();
    assert_eq!(sources, ["10.0.1.100", "203.0.113.50"]);

    let mut e1 = bare(Some(1), Some(5));
    e1.tracking.as_mut().unwrap().conn = Some(1);
    let mut e2 = bare(Some(2), Some(5));
    e2.tracking.as_mut().unwrap().conn = Some(2);
    let both = [e1, e2];
    assert_eq!(group_packets(&both).len(), 1);
}

#[test]
fn scenario_groups() {
    let events = router_scenario();
    let groups = group_packets(&events);
    assert_eq!(
        skbs(&groups),
        [
            Some(0x11),
            Some(0x21),
            Some(0x22),
            Some(0x12),
            Some(0x31),
            Some(0x13), // ties with 0x61, and comes first in the file
            Some(0x61),
            Some(0x41),
            Some(0x42),
            Some(0x51),
            Some(0x14),
            Some(0x15),
            Some(0x16),
            Some(0x17),
            None,
        ]
    );
    // The drop was written before the ingress event, but came after it.
    let late = groups.iter().find(|g| g.skb == Some(0x17)).unwrap();
    let probes: Vec<_> = late
        .events
        .iter()
        .map(|e| e.probe.as_ref().unwrap().name.to_string())
        .collect();
    assert_eq!(probes, ["net:netif_receive_skb", "skb:kfree_skb"]);
    assert_eq!(
        groups.iter().map(|g| g.events.len()).sum::<usize>(),
        events.len()
    );
}

#[test]
fn empty_input() {
    let groups = group_packets(&[]);
    assert!(groups.is_empty());
    for format in [
        Format::Text(Layout::MultiLine),
        Format::Text(Layout::SingleLine),
        Format::Json,
    ] {
        assert_eq!(text(&groups, format), "");
    }
}

// ---------------------------------------------------------------------------------------
// Output

#[test]
fn packet_line_only_where_it_changed() {
    let conn = tcp_conn(
        tuple("10.0.0.5", "10.0.0.1", tcp(40000, 80)),
        tuple("10.0.0.1", "10.0.0.5", tcp(80, 40000)),
        CtStatus::CONFIRMED,
        TcpState::SynSent,
    );
    let p = packet(2, "eth0", "10.0.0.5", "10.0.0.1", tcp_l4(40000, 80, 2));
    let mut rewritten = p.clone();
    rewritten.ip.as_mut().unwrap().src = "203.0.113.50".parse().unwrap();
    let mut events = Vec::new();
    for (i, pk) in [&p, &p, &rewritten, &rewritten].into_iter().enumerate() {
        let mut e = at(10 + i as u64, "net:net_dev_queue", 1, Some(2));
        e.packet = Some(pk.clone());
        e.ct = Some(ct(CtState::New, conn.clone()));
        events.push(e);
    }
    let groups = group_packets(&events);
    let out = text(&groups, Format::Text(Layout::MultiLine));
    // Once in the group header, once where NAT changed it.
    assert_eq!(out.matches("if 2 (eth0)").count(), 2, "{out}");
    assert_eq!(out.matches("203.0.113.50.40000 > 10.0.0.1.80").count(), 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "packet #skb 1 (4 events, first seen 10)");
    assert!(lines[1].starts_with("  if 2 (eth0) 10.0.0.5.40000 > 10.0.0.1.80 "));
    assert!(lines[2].starts_with("    10 [swapper/0] 0 [tp] net:net_dev_queue #skb 1 conn 2"));
    assert_eq!(lines[3], "      ct_state NEW status 0x8");

    let single = text(&groups, Format::Text(Layout::SingleLine));
    assert_eq!(single.lines().count(), 5);
    assert!(single.starts_with("packet #skb 1 (4 events, first seen 10): if 2 (eth0) 10.0.0.5."));
}

#[test]
fn header_of_a_group_without_id_or_time() {
    let events = [Event {
        ct: Some(crate::CtEvent::untracked()),
        ..Event::default()
    }];
    let groups = group_packets(&events);
    assert_eq!(
        text(&groups, Format::Text(Layout::MultiLine)),
        "packet without tracking id (1 event)\n    ct_state UNTRACKED\n"
    );
    assert_eq!(
        text(&groups, Format::Text(Layout::SingleLine)),
        "packet without tracking id (1 event)\n  ct_state UNTRACKED\n"
    );
}

#[test]
fn events_with_nothing_to_show_get_a_placeholder() {
    let p = packet(1, "lo", "127.0.0.1", "127.0.0.1", tcp_l4(1, 2, 0));
    let events = [
        Event::default(),
        Event {
            packet: Some(p),
            ..Event::default()
        },
    ];
    let groups = group_packets(&events);
    let out = text(&groups, Format::Text(Layout::MultiLine));
    assert_eq!(
        out,
        "packet without tracking id (1 event)\n    (empty event)\n\n\
         packet without tracking id (1 event)\n  if 1 (lo) 127.0.0.1.1 > 127.0.0.1.2 ttl 64 tos 0x0 \
         id 1 off 0 [DF] len 60 proto TCP (6) flags [none]\n    (packet as above)\n"
    );
}

#[test]
fn multiline_groups_are_separated_by_a_blank_line() {
    let events = [bare(Some(1), Some(1)), bare(Some(2), Some(2))];
    let groups = group_packets(&events);
    assert_eq!(
        text(&groups, Format::Text(Layout::MultiLine)),
        "packet #skb 1 (1 event, first seen 1)\n    1 #skb 1\n\n\
         packet #skb 2 (1 event, first seen 2)\n    2 #skb 2\n"
    );
    assert_eq!(
        text(&groups, Format::Text(Layout::SingleLine)),
        "packet #skb 1 (1 event, first seen 1)\n  1 #skb 1\n\
         packet #skb 2 (1 event, first seen 2)\n  2 #skb 2\n"
    );
}

#[test]
fn json_is_one_group_per_line_with_the_events_as_in_the_file() {
    let events = router_scenario();
    let groups = group_packets(&events);
    let json = text(&groups, Format::Json);
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), groups.len());
    for (line, group) in lines.iter().zip(&groups) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["events", "skb"]); // serde_json sorts keys in a Value
        assert_eq!(value["skb"], serde_json::json!(group.skb));
        let back: Vec<Event> = serde_json::from_value(value["events"].clone()).unwrap();
        let expected: Vec<Event> = group.events.iter().map(|&e| e.clone()).collect();
        assert_eq!(back, expected);
    }
    assert!(lines[0].starts_with(r#"{"skb":17,"events":[{"timestamp":1000000,"#));
    assert!(lines
        .last()
        .unwrap()
        .starts_with(r#"{"skb":null,"events":[{"ct":"#));
}

#[test]
fn io_writer_matches_fmt_writer() {
    let events = router_scenario();
    let groups = group_packets(&events);
    for format in [
        Format::Text(Layout::MultiLine),
        Format::Text(Layout::SingleLine),
        Format::Json,
    ] {
        let mut bytes = Vec::new();
        write_packets_io(&mut bytes, &groups, format).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), text(&groups, format));
    }
}

#[test]
fn render_indents_every_line() {
    let events = router_scenario();
    let groups = group_packets(&events);
    for layout in [Layout::MultiLine, Layout::SingleLine] {
        let mut out = String::new();
        groups[0].render(&mut out, layout, 3).unwrap();
        for line in out.lines() {
            assert!(line.starts_with("   "), "{line:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Snapshots

#[test]
fn scenario_multiline() {
    insta::assert_snapshot!(scenario_text(Format::Text(Layout::MultiLine)));
}

#[test]
fn scenario_singleline() {
    insta::assert_snapshot!(scenario_text(Format::Text(Layout::SingleLine)));
}

// ---------------------------------------------------------------------------------------
// Properties

/// Arbitrary events with few distinct packet ids and timestamps, so that groups and ties
/// are common.
fn events() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(
        (
            testing::event(),
            proptest::option::of(0u64..6),
            proptest::option::of(0u64..12),
        ),
        0..40,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .map(|(mut event, skb, ts)| {
                event.timestamp = ts;
                event.tracking = skb.map(|skb| Tracking {
                    skb,
                    conn: event.tracking.and_then(|t| t.conn),
                    parent_conn: event.tracking.and_then(|t| t.parent_conn),
                });
                event
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn grouping_never_loses_or_duplicates_events(events in events()) {
        let groups = group_packets(&events);
        let mut seen: Vec<usize> = groups
            .iter()
            .flat_map(|g| g.events.iter())
            .map(|&e| (e as *const Event as usize - events.as_ptr() as usize) / size_of::<Event>())
            .collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..events.len()).collect::<Vec<_>>());

        let mut ids = std::collections::HashSet::new();
        for group in &groups {
            prop_assert!(!group.events.is_empty());
            for e in &group.events {
                prop_assert_eq!(e.tracking.map(|t| t.skb), group.skb);
            }
            match group.skb {
                Some(id) => prop_assert!(ids.insert(id), "packet {} in two groups", id),
                None => prop_assert_eq!(group.events.len(), 1),
            }
            let keys: Vec<_> = group.events.iter().map(|e| time_key(e)).collect();
            prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        }
        let firsts: Vec<_> = groups.iter().map(|g| time_key(g.events[0])).collect();
        prop_assert!(firsts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn views_never_panic_and_keep_their_shape(events in events()) {
        let groups = group_packets(&events);
        let single = text(&groups, Format::Text(Layout::SingleLine));
        prop_assert_eq!(single.lines().count(), groups.len() + events.len());
        let multi = text(&groups, Format::Text(Layout::MultiLine));
        prop_assert!(multi.lines().count() >= groups.len() + events.len());
        let json = text(&groups, Format::Json);
        prop_assert_eq!(json.lines().count(), groups.len());
        for line in json.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            prop_assert!(value["events"].is_array());
        }
    }
}

#[test]
fn nft_events_group_under_their_packet_in_time_order() {
    let events = testing::nft_scenario();
    let groups = group_packets(&events);
    // e5's SYN (receive, kfree_skb, then the trace received from netlink), e6's query
    // (three trace steps before the transmit), the two unattributed drops, and e5's SYN
    // retransmitted a second later.
    assert_eq!(
        skbs(&groups),
        [Some(0x71), Some(0x81), None, Some(0x92), Some(0x72)]
    );
    let kinds =
        |g: &PacketGroup<'_>| -> Vec<bool> { g.events.iter().map(|e| e.nft.is_some()).collect() };
    assert_eq!(kinds(&groups[0]), [false, false, true]);
    assert_eq!(kinds(&groups[1]), [true, true, true, false]);
    insta::assert_snapshot!(format!(
        "{}\n--- single-line\n{}",
        text(&groups, Format::Text(Layout::MultiLine)),
        text(&groups, Format::Text(Layout::SingleLine))
    ));
}

// ---------------------------------------------------------------------------------------
// Streaming: the same groups as in memory

/// Groups as owned values, to compare the two sorts.
type OwnedGroups = Vec<(Option<u64>, Vec<Event>)>;

fn owned(groups: &[PacketGroup<'_>]) -> OwnedGroups {
    groups
        .iter()
        .map(|g| (g.skb, g.events.iter().map(|&e| e.clone()).collect()))
        .collect()
}

/// `events` through a [`PacketSorter`] with `limits`.
fn streamed(events: &[Event], limits: StreamLimits) -> (OwnedGroups, StreamStats) {
    let mut out = Vec::new();
    let mut sink = |g: &PacketGroup<'_>| -> Result<(), ()> {
        out.extend(owned(std::slice::from_ref(g)));
        Ok(())
    };
    let mut sorter = PacketSorter::new(limits);
    for event in events {
        sorter.push(event.clone(), &mut sink).unwrap();
    }
    let stats = sorter.finish(&mut sink).unwrap();
    (out, stats)
}

const UNBOUNDED: StreamLimits = StreamLimits::UNBOUNDED;

fn test_window() -> StreamLimits {
    StreamLimits::new(
        std::time::Duration::from_nanos(testing::TEST_WINDOW_NS),
        1024,
    )
}

#[test]
fn streaming_writes_a_group_once_its_window_has_passed() {
    let limits = test_window();
    let mut sorter = PacketSorter::new(limits);
    let mut written = Vec::new();
    let mut sink = |g: &PacketGroup<'_>| -> Result<(), ()> {
        written.push(g.skb);
        Ok(())
    };
    sorter.push(bare(Some(100), Some(1)), &mut sink).unwrap();
    sorter.push(bare(Some(1000), Some(2)), &mut sink).unwrap();
    sorter.push(bare(Some(1100), Some(1)), &mut sink).unwrap();
    sorter.push(bare(Some(2100), Some(2)), &mut sink).unwrap();
    // Packet 1's last event (1100) is not yet a window (1000) behind 2100.
    sorter.push(bare(Some(2101), Some(3)), &mut sink).unwrap();
    sorter.push(bare(Some(2102), Some(3)), &mut sink).unwrap();
    let stats = sorter.finish(&mut sink).unwrap();
    assert_eq!(written, [Some(1), Some(2), Some(3)]);
    assert!(stats.exact(), "{stats:?}");
}

#[test]
fn the_bound_on_open_groups_forces_the_oldest_out_and_says_so() {
    let events: Vec<Event> = (0..10).map(|i| bare(Some(i), Some(i))).collect();
    let limits = StreamLimits {
        max_open: 3,
        ..StreamLimits::default()
    };
    let (groups, stats) = streamed(&events, limits);
    assert_eq!(stats.forced, 7);
    assert_eq!(stats.events, 10);
    // Still every event once, and here in the same order (nothing came late).
    assert_eq!(groups, owned(&group_packets(&events)));
}

#[test]
fn late_events_are_counted() {
    let events = [bare(Some(5000), Some(1)), bare(Some(10), Some(2))];
    let (_, stats) = streamed(&events, test_window());
    assert_eq!(stats.late, 1);
    assert!(!stats.exact());
}

proptest! {
    #[test]
    fn streaming_without_bounds_is_the_in_memory_sort(events in events()) {
        let (groups, stats) = streamed(&events, UNBOUNDED);
        prop_assert_eq!(groups, owned(&group_packets(&events)));
        prop_assert_eq!(stats.forced, 0);
    }

    #[test]
    fn streaming_is_the_in_memory_sort_on_captures_that_fit_the_window(
        (events, steps) in proptest::collection::vec(testing::event(), 0..60)
            .prop_flat_map(|events| {
                let n = events.len();
                (Just(events), testing::window_steps(n))
            })
    ) {
        let events = testing::in_window(events, &steps);
        let (groups, stats) = streamed(&events, test_window());
        prop_assert!(stats.exact(), "{:?}", stats);
        let expected = owned(&group_packets(&events));
        prop_assert_eq!(groups, expected);
    }
}

#[test]
fn groups_written_one_at_a_time_are_the_view_written_at_once() {
    let events = router_scenario();
    let groups = group_packets(&events);
    for format in Format::ALL {
        let mut one_by_one = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            write_packet_io(&mut one_by_one, group, i as u64, format).unwrap();
        }
        let mut at_once = Vec::new();
        write_packets_io(&mut at_once, &groups, format).unwrap();
        assert_eq!(
            String::from_utf8(one_by_one).unwrap(),
            String::from_utf8(at_once).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Crafted streams: the bound on events held

/// The sorter's limits in these tests: 16 groups, so at most 1024 events held (the floor
/// of one full group), 1024 per group.
fn small_bound() -> StreamLimits {
    StreamLimits::new(std::time::Duration::from_millis(100), 16)
}

/// Streams `events`, checking after every push that the sorter holds no more than the
/// bound; returns the groups written and the stats.
fn streamed_within_bound(
    events: impl IntoIterator<Item = Event>,
    limits: StreamLimits,
) -> (OwnedGroups, StreamStats) {
    let mut out: OwnedGroups = Vec::new();
    let mut sink = |g: &PacketGroup<'_>| -> Result<(), ()> {
        out.push((g.skb, g.events.iter().map(|&e| e.clone()).collect()));
        Ok(())
    };
    let mut sorter = PacketSorter::new(limits);
    let mut most = 0;
    for event in events {
        sorter.push(event, &mut sink).unwrap();
        most = most.max(sorter.held_events());
    }
    assert!(
        most <= limits.max_events,
        "held {most} events, bound {}",
        limits.max_events
    );
    let stats = sorter.finish(&mut sink).unwrap();
    (out, stats)
}

#[test]
fn events_without_timestamps_are_written_early_within_the_bound() {
    let limits = small_bound();
    let n = 20_000u64;
    let events: Vec<Event> = (0..n)
        .map(|i| bare(None, (i % 3 != 0).then_some(i % 50)))
        .collect();
    let (groups, stats) = streamed_within_bound(events.clone(), limits);
    assert_eq!(stats.events, n);
    assert!(stats.untimed_early > 0, "{stats:?}");
    assert!(!stats.exact());
    // Every event once, and each packet's events in input order.
    let written: Vec<Event> = groups.iter().flat_map(|(_, e)| e.clone()).collect();
    assert_eq!(written.len() as u64, n);
    for (skb, events) in &groups {
        assert!(events.iter().all(|e| e.tracking.map(|t| t.skb) == *skb));
    }
    let mut sorted = written;
    sorted.sort_by_key(|e| e.tracking.map(|t| t.skb));
    let mut expected = events;
    expected.sort_by_key(|e| e.tracking.map(|t| t.skb));
    assert_eq!(sorted, expected);
}

#[test]
fn a_packet_id_that_never_closes_is_written_in_parts() {
    let limits = small_bound();
    let n = 10_000u64;
    // One packet, an event every microsecond: always inside the 100 ms window.
    let events: Vec<Event> = (0..n).map(|i| bare(Some(i * 1000), Some(7))).collect();
    let (groups, stats) = streamed_within_bound(events.clone(), limits);
    assert!(groups.len() >= (n as usize) / limits.max_packet_events);
    assert!(groups
        .iter()
        .all(|(skb, e)| *skb == Some(7) && e.len() <= limits.max_packet_events));
    assert_eq!(stats.forced, groups.len() as u64 - 1, "{stats:?}");
    // The parts, in order, are the input.
    let written: Vec<Event> = groups.into_iter().flat_map(|(_, e)| e).collect();
    assert_eq!(written, events);
}

#[test]
fn a_never_closing_packet_among_others_leaves_the_others_exact() {
    let limits = small_bound();
    // Packet 1 forever; packets 100.. one event each, a window apart from each other.
    let mut events = Vec::new();
    for i in 0..5_000u64 {
        events.push(bare(Some(i * 1000), Some(1)));
        if i % 100 == 0 {
            events.push(bare(Some(i * 1000), Some(100 + i)));
        }
    }
    let (groups, _) = streamed_within_bound(events.clone(), limits);
    let others: Vec<_> = groups.iter().filter(|(skb, _)| *skb != Some(1)).collect();
    let expected = owned(&group_packets(&events));
    let expected_others: Vec<_> = expected.iter().filter(|(skb, _)| *skb != Some(1)).collect();
    assert_eq!(others, expected_others);
}

proptest! {
    #[test]
    fn a_tiny_bound_holds_and_still_writes_every_event_once(events in events()) {
        let limits = StreamLimits {
            max_events: 3,
            max_packet_events: 2,
            ..StreamLimits::new(std::time::Duration::from_nanos(testing::TEST_WINDOW_NS), 2)
        };
        let (groups, stats) = streamed_within_bound(events.clone(), limits);
        prop_assert_eq!(stats.events, events.len() as u64);
        prop_assert_eq!(groups.iter().map(|(_, e)| e.len()).sum::<usize>(), events.len());
    }
}
