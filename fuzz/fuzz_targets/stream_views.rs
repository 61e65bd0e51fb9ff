//! Crafted events files into the streaming `sort` and `conns` under small limits: after
//! every event taken in, neither holds more than `StreamLimits::max_events` (the memory
//! bound `limits.rs` documents), and every event is still written or counted once.
//!
//! The first two bytes choose the limits, so tight and loose bounds both get exercised;
//! the rest is JSON Lines. Each event read is also taken in again many times over with
//! growing timestamps, untimed, and under one packet id, the shapes that once kept
//! groups and packets open for ever.
#![no_main]

use std::time::Duration;

use ct_core::{read_events, ConnFolder, Event, PacketGroup, PacketSorter, StreamLimits, Tracking};
use libfuzzer_sys::fuzz_target;

/// How many times each event read is taken in again, reshaped.
const REPEATS: u64 = 64;

fuzz_target!(|data: &[u8]| {
    let (limits, bytes) = match data {
        [open, per_packet, rest @ ..] => {
            let max_open = usize::from(*open % 32) + 1;
            let limits = StreamLimits {
                max_events: usize::from(*open % 64) + 1,
                max_packet_events: usize::from(*per_packet % 16) + 1,
                ..StreamLimits::new(Duration::from_nanos(u64::from(*per_packet) * 10), max_open)
            };
            (limits, rest)
        }
        _ => return,
    };
    let read: Vec<Event> = read_events(bytes).filter_map(Result::ok).collect();
    let mut events: Vec<Event> = Vec::new();
    for (i, event) in read.iter().enumerate() {
        events.push(event.clone());
        for n in 0..REPEATS {
            let mut again = event.clone();
            match n % 3 {
                // One packet id for ever, timestamps growing.
                0 => {
                    again.timestamp = Some(event.timestamp.unwrap_or(0).saturating_add(n));
                    again.tracking = Some(Tracking {
                        skb: 1,
                        conn: event.tracking.and_then(|t| t.conn),
                        parent_conn: None,
                    });
                }
                // No timestamp.
                1 => again.timestamp = None,
                // A new packet id each time.
                _ => {
                    again.tracking = Some(Tracking {
                        skb: (i as u64) << 8 | n,
                        conn: event.tracking.and_then(|t| t.conn),
                        parent_conn: event.tracking.and_then(|t| t.parent_conn),
                    })
                }
            }
            events.push(again);
        }
    }

    let mut written = 0usize;
    let mut sink = |g: &PacketGroup<'_>| -> Result<(), ()> {
        written += g.events.len();
        Ok(())
    };
    let mut sorter = PacketSorter::new(limits);
    let mut folder = ConnFolder::new(limits);
    for event in &events {
        sorter.push(event.clone(), &mut sink).expect("the sink never fails");
        folder.push(event);
        assert!(
            sorter.held_events() <= limits.max_events,
            "sort holds {} events, bound {}",
            sorter.held_events(),
            limits.max_events
        );
        assert!(
            folder.held() <= limits.max_events,
            "conns holds {} records, bound {}",
            folder.held(),
            limits.max_events
        );
    }
    let sort_stats = sorter.finish(&mut sink).expect("the sink never fails");
    let (_, conn_stats) = folder.finish();
    assert_eq!(written, events.len());
    assert_eq!(sort_stats.events, events.len() as u64);
    assert_eq!(conn_stats.events, events.len() as u64);
});
