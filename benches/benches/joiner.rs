//! The nftables joiner under a flood: N trace steps and N BPF events of the same packets
//! pushed through `ct_nft::Joiner` (every step joined), and N steps whose packet never
//! comes (every step waits, then goes without ids). Linear work shows as the same
//! nanoseconds per step at every N; the floor is turning the same steps into events
//! without joining (what any joiner must do), measured in the same run.
//!
//! `cargo bench -p ct-benches --bench joiner`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ct_core::{Event, IpVersion, Packet, PacketIp, Tracking};
use ct_nft::{parse_datagram, Joiner, TraceMessage, TraceStep};

const SIZES: [u32; 3] = [1_000, 10_000, 100_000];
/// One step and one event every microsecond: 300 ms of waiting is 300,000 steps, so at
/// every N here no wait is over before the end.
const GAP: Duration = Duration::from_micros(1);

/// The captured kernel trace message (IPv4, TCP, 10.99.0.1 > 10.99.0.2).
fn kernel_message() -> TraceMessage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/nft/rule-drop-6.18.bin");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_datagram(&bytes).remove(0).expect("the fixture reads")
}

/// Packet `i`: the message with its own trace id, source address and IP id.
fn step(base: &TraceMessage, i: u32) -> TraceStep {
    let mut message = base.clone();
    message.id = i;
    message.network_header[4..6].copy_from_slice(&(i as u16).to_be_bytes());
    message.network_header[12..16].copy_from_slice(&src(i).octets());
    // The header checksum is not checked by the parser.
    TraceStep::new(message, Some("tcp dport 81 drop".into()), 0)
}

fn src(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | i)
}

/// The BPF event of packet `i`, as a probe saw it.
fn event(step: &TraceStep, i: u32) -> Event {
    let packet = step.packet.as_ref().expect("the fixture's headers parse");
    let ip = packet.ip.expect("an IP header");
    Event {
        tracking: Some(Tracking {
            skb: u64::from(i),
            conn: None,
            parent_conn: None,
        }),
        packet: Some(Packet {
            ifindex: Some(2),
            ifname: None,
            len: ip.len.into(),
            ip: Some(PacketIp {
                src: IpAddr::V4(src(i)),
                version: IpVersion::V4,
                ..ip
            }),
            headers: None,
            l4: packet.l4,
        }),
        ..Event::default()
    }
}

fn bench(c: &mut Criterion) {
    let base = kernel_message();
    for n in SIZES {
        let steps: Vec<TraceStep> = (0..n).map(|i| step(&base, i)).collect();
        let events: Vec<Event> = steps.iter().zip(0..).map(|(s, i)| event(s, i)).collect();
        let mut g = c.benchmark_group("joiner");
        g.throughput(Throughput::Elements(u64::from(n)));
        g.sample_size(10);
        g.bench_with_input(BenchmarkId::new("floor", n), &steps, |b, steps| {
            b.iter_batched(
                || steps.clone(),
                |steps| {
                    for step in steps {
                        black_box(step.into_event(None, None));
                    }
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("joined", n), &steps, |b, steps| {
            b.iter_batched(
                || steps.clone(),
                |steps| {
                    let t0 = Instant::now();
                    let mut j = Joiner::new();
                    let mut joined = 0;
                    for ((step, event), i) in steps.into_iter().zip(&events).zip(0..) {
                        let now = t0 + GAP * i;
                        // Half the steps come before their packet's event.
                        if i % 2 == 0 {
                            j.observe(event, now);
                            joined += j.push(step, now).len();
                        } else {
                            joined += j.push(step, now).len();
                            j.observe(event, now);
                            joined += j.ready(now).len();
                        }
                    }
                    assert_eq!(joined, n as usize);
                    assert_eq!(j.unjoined(), 0);
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("no_packet", n), &steps, |b, steps| {
            b.iter_batched(
                || steps.clone(),
                |steps| {
                    let t0 = Instant::now();
                    let mut j = Joiner::new();
                    let mut written = 0;
                    for (step, i) in steps.into_iter().zip(0..) {
                        written += j.push(step, t0 + GAP * i).len();
                    }
                    written += j.ready(t0 + GAP * n + ct_nft::WAIT_FOR_PACKET).len();
                    assert_eq!(written, n as usize);
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
