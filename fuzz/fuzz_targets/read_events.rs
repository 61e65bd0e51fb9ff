//! Events files from elsewhere: `read_events` over arbitrary bytes yields one result per
//! non-blank line, never panics, and does not depend on how the bytes arrive. Every event
//! it accepts goes through what `ct-cli print`, `sort` and `conns` do with it, and through
//! the streaming `sort` and `conns`: without bounds they are the in-memory views, with
//! small ones they still place every event once.
#![no_main]

use std::io::{BufReader, Cursor};

use ct_core::{
    connections, group_packets, read_events, write_conns, write_event_json, write_packets,
    ConnFolder, Event, EventWriter, Format, PacketGroup, PacketSorter, StreamLimits,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the line limit and the read size, so short limits and lines split across
    // reads get exercised as well.
    let (limit, capacity, bytes) = match data.split_first() {
        Some((&b, rest)) if b & 0x80 != 0 => {
            (usize::from(b & 0x7f) * 16, usize::from(b & 0x0f) + 1, rest)
        }
        _ => (ct_core::DEFAULT_MAX_LINE_BYTES, 8192, data),
    };
    let whole: Vec<_> = read_events(bytes).with_max_line_bytes(limit).collect();
    let trickled: Vec<_> = read_events(BufReader::with_capacity(capacity, Cursor::new(bytes)))
        .with_max_line_bytes(limit)
        .collect();
    assert_eq!(whole.len(), trickled.len());
    let lines = bytes.split(|&b| b == b'\n').count() as u64;
    let mut last = 0;
    let mut events: Vec<Event> = Vec::new();
    for (a, b) in whole.into_iter().zip(trickled) {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b);
                events.push(a);
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.line, b.line);
                assert_eq!(a.to_string(), b.to_string());
                assert!(
                    a.line > last && a.line <= lines,
                    "line {} of {lines}",
                    a.line
                );
                last = a.line;
                assert!(a.to_string().starts_with(&format!("line {}: ", a.line)));
            }
            (a, b) => panic!("read whole: {a:?}, read in pieces: {b:?}"),
        }
    }

    for event in &events {
        let mut line = Vec::new();
        write_event_json(event, &mut line).expect("an event read serializes");
        let again: Vec<_> = read_events(&line[..]).collect();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].as_ref().expect("written JSON reads back"), event);
    }
    for format in Format::ALL {
        let mut out = EventWriter::new(Vec::new(), format);
        for event in &events {
            out.write(event).expect("writing to memory");
        }
        let groups = group_packets(&events);
        assert_eq!(
            groups.iter().map(|g| g.events.len()).sum::<usize>(),
            events.len()
        );
        let mut text = String::new();
        write_packets(&mut text, &groups, format).expect("writing to a String");
        let conns = connections(&events);
        text.clear();
        write_conns(&mut text, &conns, format).expect("writing to a String");
    }

    // The streaming views: without bounds, the in-memory ones; with tight bounds, every
    // event once all the same.
    let unbounded = StreamLimits::UNBOUNDED;
    let tight = StreamLimits {
        max_events: 4,
        max_packet_events: 2,
        ..StreamLimits::new(std::time::Duration::from_nanos(2), 2)
    };
    for limits in [unbounded, tight] {
        let mut streamed: Vec<(Option<u64>, Vec<Event>)> = Vec::new();
        let mut sink = |g: &PacketGroup<'_>| -> Result<(), ()> {
            streamed.push((g.skb, g.events.iter().map(|&e| e.clone()).collect()));
            Ok(())
        };
        let mut sorter = PacketSorter::new(limits);
        let mut folder = ConnFolder::new(limits);
        for event in &events {
            sorter.push(event.clone(), &mut sink).expect("the sink never fails");
            folder.push(event);
        }
        let sort_stats = sorter.finish(&mut sink).expect("the sink never fails");
        let (conns, conn_stats) = folder.finish();
        assert_eq!(sort_stats.events, events.len() as u64);
        assert_eq!(conn_stats.events, events.len() as u64);
        assert_eq!(
            streamed.iter().map(|(_, e)| e.len()).sum::<usize>(),
            events.len()
        );
        if limits == unbounded {
            let expected: Vec<(Option<u64>, Vec<Event>)> = group_packets(&events)
                .iter()
                .map(|g| (g.skb, g.events.iter().map(|&e| e.clone()).collect()))
                .collect();
            assert_eq!(streamed, expected);
            assert_eq!(conns, connections(&events));
        }
    }
});
