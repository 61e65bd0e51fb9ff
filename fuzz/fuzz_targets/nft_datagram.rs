//! Netlink datagrams from an untrusted source (whatever arrives on the trace group):
//! `parse_datagram` gives messages or errors, never panics; every step it reads goes
//! through the joiner, with BPF events synthesized from some steps' own packets (before
//! or after the step, and for a few a second packet under the same headers), and comes
//! out exactly once; a step is joined only when an event was filed. A table or chain name
//! that passes `is_plain_identifier` holds nothing that could end or quote an nft command.
#![no_main]

use std::time::{Duration, Instant};

use ct_core::{Event, Tracking};
use ct_nft::{is_plain_identifier, parse_datagram, Joiner, TraceStep};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: how the steps are spaced in time and which get an event.
    let (control, bytes) = match data.split_first() {
        Some((&b, rest)) => (b, rest),
        None => (0, data),
    };
    let gap = Duration::from_micros(u64::from(control & 0x0f) * 25_000);
    let messages = parse_datagram(bytes);
    assert!(messages.len() <= bytes.len() / 16 + 1);

    let t0 = Instant::now();
    let mut joiner = Joiner::new();
    let mut pushed = 0u64;
    let mut written = Vec::new();
    let mut observed = 0u64;
    for (i, message) in messages.into_iter().enumerate() {
        let Ok(message) = message else { continue };
        for name in [&message.table, &message.chain] {
            if is_plain_identifier(name) {
                assert!(!name.is_empty() && !name.starts_with('-'));
                assert!(!name
                    .bytes()
                    .any(|b| matches!(b, b';' | b' ' | b'"' | b'\'' | b'\n' | b'$' | b'#' | b'@')));
            }
        }
        let now = t0 + gap * i as u32;
        let step = TraceStep::new(message, None, i as u64);
        let event = step.packet.clone().map(|packet| Event {
            tracking: Some(Tracking {
                skb: i as u64,
                conn: None,
                parent_conn: None,
            }),
            packet: Some(packet),
            ..Event::default()
        });
        let mode = (control >> 4).wrapping_add(i as u8) % 4;
        if let (Some(event), 1) = (&event, mode) {
            joiner.observe(event, now);
            observed += 1;
        }
        written.extend(joiner.push(step, now));
        pushed += 1;
        if let (Some(event), 2 | 3) = (&event, mode) {
            joiner.observe(event, now);
            observed += 1;
            if mode == 3 {
                joiner.observe(event, now + gap);
            }
        }
        written.extend(joiner.ready(now));
    }
    written.extend(joiner.ready(t0 + gap * (pushed as u32 + 1) + ct_nft::WAIT_FOR_PACKET));
    written.extend(joiner.finish());
    assert_eq!(written.len() as u64, pushed);
    let joined = written.iter().filter(|e| e.tracking.is_some()).count() as u64;
    assert_eq!(joined + joiner.unjoined(), pushed);
    if observed == 0 {
        assert_eq!(joined, 0);
    }
    assert!(written.iter().all(|e| e.nft.is_some()));
});
