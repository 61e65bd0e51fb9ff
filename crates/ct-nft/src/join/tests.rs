use std::net::Ipv4Addr;

use ct_core::{
    CtConnEvent, CtEvent, CtIp, CtState, CtStatus, FixedStr, IpVersion, NftDevice, NftVerdict,
    PacketIp, PacketL4, ZoneDir,
};

use super::*;
use crate::message::tests::sample;
use crate::TraceMessage;

const CLIENT: [u8; 4] = [10, 0, 1, 2];
const SERVICE: [u8; 4] = [10, 0, 9, 9];
const BACKEND: [u8; 4] = [10, 0, 2, 2];

fn ip(a: [u8; 4]) -> IpAddr {
    Ipv4Addr::from(a).into()
}

/// IPv4 + TCP headers as the kernel copies them into a trace message.
fn headers(
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    sport: u16,
    dport: u16,
    flags: u8,
) -> (Vec<u8>, Vec<u8>) {
    let mut net = vec![0x45, 0, 0, 40];
    net.extend(id.to_be_bytes());
    net.extend([0x40, 0, 64, 6, 0, 0]);
    net.extend(src);
    net.extend(dst);
    let sum = !net
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .fold(0u32, |a, b| {
            let s = a + b;
            (s & 0xffff) + (s >> 16)
        }) as u16;
    net[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut tcp = Vec::new();
    tcp.extend(sport.to_be_bytes());
    tcp.extend(dport.to_be_bytes());
    tcp.extend([0; 8]);
    tcp.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    (net, tcp)
}

fn step(trace_id: u32, (network_header, transport_header): (Vec<u8>, Vec<u8>)) -> TraceStep {
    let message = TraceMessage {
        id: trace_id,
        network_header,
        transport_header,
        ..sample()
    };
    TraceStep::new(message, Some("tcp dport 81 drop".into()), 1000)
}

/// Step `trace_id` for the client's SYN to the service with IP id `ip_id`.
fn syn_step(trace_id: u32, ip_id: u16) -> TraceStep {
    step(trace_id, headers(CLIENT, SERVICE, ip_id, 40000, 80, 0x02))
}

/// A BPF event for the client's SYN CLIENT:40000 > SERVICE:80 with IP id `id`, with its
/// DNAT entry (translated to BACKEND:8080) when `ct` is set.
fn bpf_event(skb: u64, id: u32, ct: bool) -> Event {
    let base = CtConnEvent {
        zone_id: 0,
        zone_dir: ZoneDir::Default,
        orig: ct_core::CtTuple {
            ip: CtIp::new(ip(CLIENT), ip(SERVICE)),
            proto: CtProto::Tcp {
                sport: 40000,
                dport: 80,
            },
        },
        reply: ct_core::CtTuple {
            ip: CtIp::new(ip(BACKEND), ip(CLIENT)),
            proto: CtProto::Tcp {
                sport: 8080,
                dport: 40000,
            },
        },
        tcp_state: None,
        mark: None,
        labels: None,
        ct_status: CtStatus::DST_NAT,
        sctp_state: None,
        helper: None,
        timeout: None,
    };
    Event {
        netns: Some(4026531840),
        tracking: Some(Tracking {
            skb,
            conn: ct.then_some(77),
            parent_conn: None,
        }),
        packet: Some(Packet {
            ifindex: Some(2),
            ifname: None,
            len: 40,
            ip: Some(PacketIp {
                src: ip(CLIENT),
                dst: ip(SERVICE),
                version: IpVersion::V4,
                ttl: 64,
                tos: 0,
                id,
                frag_off: 0,
                df: true,
                mf: false,
                len: 40,
                proto: 6,
            }),
            headers: None,
            l4: Some(PacketL4::Tcp {
                sport: 40000,
                dport: 80,
                flags: 0x02,
            }),
        }),
        ct: ct.then_some(CtEvent {
            state: CtState::New,
            base: Some(base),
            parent: None,
        }),
        ..Event::default()
    }
}

/// A joiner that has seen the BPF event of packet `skb`, the client's SYN with IP id
/// `ip_id` (no conntrack entry).
fn joiner_seeing(skb: u64, ip_id: u32, now: Instant) -> Joiner {
    let mut j = Joiner::new();
    j.observe(&bpf_event(skb, ip_id, false), now);
    j
}

/// A joiner holding steps 1 and 2, the client's SYNs with IP ids `ip_ids`, whose packets
/// no probe has seen yet (so nothing is ready).
fn joiner_waiting(ip_ids: [u16; 2], now: Instant) -> Joiner {
    let mut j = Joiner::new();
    for (trace_id, ip_id) in (1..).zip(ip_ids) {
        assert!(j.push(syn_step(trace_id, ip_id), now).is_empty());
    }
    j
}

fn tracking(events: &[Event]) -> Vec<Option<u64>> {
    events.iter().map(|e| e.tracking.map(|t| t.skb)).collect()
}

#[test]
fn a_step_takes_the_ids_of_the_packet_with_its_headers() {
    let now = Instant::now();
    let mut j = joiner_seeing(5, 1234, now);
    let out = j.push(syn_step(1, 1234), now);
    assert_eq!(tracking(&out), [Some(5)]);
    assert_eq!(out[0].netns, Some(4026531840));
    let nft = out[0].nft.as_ref().unwrap();
    assert_eq!(
        (&*nft.table, nft.handle, nft.verdict),
        ("f", Some(3), NftVerdict::Drop)
    );
    assert_eq!(nft.rule.as_deref(), Some("tcp dport 81 drop"));
    assert_eq!(out[0].packet.as_ref().unwrap().ip.unwrap().id, 1234);
}

#[test]
fn other_ip_ids_and_flags_are_other_packets() {
    let now = Instant::now();
    let mut j = joiner_seeing(5, 1234, now);
    assert!(j.push(syn_step(1, 1235), now).is_empty());
    assert!(j
        .push(
            step(2, headers(CLIENT, SERVICE, 1234, 40000, 80, 0x10)),
            now
        )
        .is_empty());
    let later = now + WAIT_FOR_PACKET;
    assert_eq!(tracking(&j.ready(later)), [None, None]);
    assert_eq!(j.unjoined(), 2);
}

#[test]
fn translated_headers_find_the_packet_through_its_conntrack_tuples() {
    let now = Instant::now();
    let mut j = Joiner::new();
    // The probe saw the packet before DNAT; nftables' input chain sees it after.
    j.observe(&bpf_event(9, 77, true), now);
    let out = j.push(
        step(1, headers(CLIENT, BACKEND, 77, 40000, 8080, 0x02)),
        now,
    );
    assert_eq!(tracking(&out), [Some(9)]);
    assert_eq!(out[0].tracking.unwrap().conn, Some(77));
}

#[test]
fn a_step_waits_for_its_packet_then_goes_without_ids() {
    let now = Instant::now();
    let mut j = joiner_waiting([1, 2], now);
    // The first one's packet arrives in time.
    j.observe(&bpf_event(5, 1, false), now);
    assert_eq!(tracking(&j.ready(now)), [Some(5)]);
    assert!(j.ready(now + WAIT_FOR_PACKET / 2).is_empty());
    assert_eq!(tracking(&j.ready(now + WAIT_FOR_PACKET)), [None]);
    assert_eq!(j.unjoined(), 1);
    assert!(j.finish().is_empty());
}

#[test]
fn later_steps_follow_their_trace_id() {
    let now = Instant::now();
    let mut j = joiner_seeing(5, 1, now);
    assert_eq!(tracking(&j.push(syn_step(42, 1), now)), [Some(5)]);
    // Rewritten in a way no probe saw (no conntrack entry to tell): the trace id still says.
    let rewritten = step(42, headers(CLIENT, [10, 0, 3, 3], 1, 40000, 80, 2));
    assert_eq!(tracking(&j.push(rewritten, now)), [Some(5)]);
}

#[test]
fn a_trace_id_seen_again_later_is_another_packet() {
    let now = Instant::now();
    let mut j = joiner_seeing(5, 1, now);
    j.push(syn_step(42, 1), now);
    // The kernel reused the buffer: same trace id, another packet no probe saw.
    let later = now + TRACE_ID_LIFETIME;
    let other = step(42, headers(CLIENT, [10, 0, 3, 3], 2, 40000, 80, 2));
    assert!(j.push(other, later).is_empty());
    assert_eq!(tracking(&j.ready(later + WAIT_FOR_PACKET)), [None]);
}

#[test]
fn finish_writes_every_waiting_step() {
    let now = Instant::now();
    let mut j = joiner_waiting([1, 3], now);
    // The first one's packet arrives, then the run ends before anything else is read.
    j.observe(&bpf_event(5, 1, false), now);
    assert_eq!(tracking(&j.finish()), [Some(5), None]);
    assert_eq!(j.unjoined(), 1);
}

#[test]
fn old_packets_are_forgotten() {
    let now = Instant::now();
    let mut j = joiner_seeing(5, 1, now);
    let much_later = now + REMEMBER_PACKETS_FOR + WAIT_FOR_PACKET;
    j.push(syn_step(1, 1), much_later);
    assert_eq!(tracking(&j.ready(much_later + WAIT_FOR_PACKET)), [None]);
}

/// Steps whose packet no probe saw, one every `gap`, with IP ids from `ip_id`; returns
/// how many events came out (pushes, then a `ready` once every wait is over).
fn flood_without_packets(j: &mut Joiner, n: u32, gap: Duration, ip_id: impl Fn(u32) -> u16) -> u64 {
    let t0 = Instant::now();
    let mut written = 0;
    for i in 0..n {
        let now = t0 + gap * i;
        written += j.push(syn_step(i, ip_id(i)), now).len() as u64;
    }
    written + j.ready(t0 + gap * n + WAIT_FOR_PACKET).len() as u64
}

/// The cost of a step may not grow with the number waiting: 100,000 steps arriving for
/// a second with no packet (some 30,000 waiting at any time) cost a few operations each,
/// where looking at every waiting step per push costs billions.
#[test]
fn a_flood_of_steps_without_packets_costs_linear_work() {
    let n = 100_000;
    let gap = Duration::from_micros(10);
    let distinct: fn(u32) -> u16 = |i| i as u16;
    let same: fn(u32) -> u16 = |_| 7;
    for (name, ip_id) in [("distinct packets", distinct), ("one header key", same)] {
        let mut j = Joiner::new();
        assert_eq!(
            flood_without_packets(&mut j, n, gap, ip_id),
            u64::from(n),
            "{name}"
        );
        assert_eq!(j.unjoined(), u64::from(n), "{name}");
        assert_eq!(j.overflowed(), 0, "{name}");
        println!("{name}: {} operations for {n} steps", j.work);
        assert!(
            j.work <= 8 * u64::from(n),
            "{name}: {} operations for {n} steps",
            j.work
        );
        // Nothing is left behind in the indexes.
        assert!(
            j.by_key.is_empty() && j.by_trace.is_empty() && j.waiting.is_empty(),
            "{name}"
        );
    }
}

/// Packets and their steps interleaved, the steps sometimes before their packet: every
/// step joined, at a constant cost each.
#[test]
fn a_flood_of_joined_steps_costs_linear_work() {
    let n: u32 = 100_000;
    let t0 = Instant::now();
    let mut j = Joiner::new();
    let mut joined = 0;
    for i in 0..n {
        let now = t0 + Duration::from_micros(u64::from(i));
        let id = i as u16;
        let event = bpf_event(u64::from(i), u32::from(id), i % 3 == 0);
        let out = if i % 2 == 0 {
            j.observe(&event, now);
            j.push(syn_step(i, id), now)
        } else {
            let mut out = j.push(syn_step(i, id), now);
            j.observe(&event, now);
            out.extend(j.ready(now));
            out
        };
        joined += out.iter().filter(|e| e.tracking.is_some()).count();
    }
    assert_eq!(joined, n as usize);
    assert_eq!(j.unjoined(), 0);
    println!("{} operations for {n} steps and packets", j.work);
    assert!(j.work <= 16 * u64::from(n), "{} operations", j.work);
}

/// More steps waiting than the bound: the oldest are written at once (counted), so the
/// queue never holds more than the bound.
#[test]
fn waiting_steps_are_bounded() {
    let n = MAX_WAITING_STEPS as u32 + 1000;
    let mut j = Joiner::new();
    let t0 = Instant::now();
    let mut written = 0;
    for i in 0..n {
        written += j.push(syn_step(i, i as u16), t0).len();
        assert!(j.live <= MAX_WAITING_STEPS);
    }
    assert_eq!(written, 1000);
    assert_eq!(j.overflowed(), 1000);
    assert_eq!(j.finish().len(), MAX_WAITING_STEPS);
    assert_eq!(j.unjoined(), u64::from(n));
}

/// More header keys than the bound within two seconds: the oldest are forgotten early
/// (counted); the newest still join.
#[test]
fn remembered_packets_are_bounded() {
    let mut j = Joiner::new();
    let t0 = Instant::now();
    let n = MAX_PACKET_KEYS as u32 + 500;
    for i in 0..n {
        // IP ids repeat every 65,536 packets: the skb number makes each a new filing.
        let mut event = bpf_event(u64::from(i), i & 0xffff, false);
        if let Some(ip) = event.packet.as_mut().and_then(|p| p.ip.as_mut()) {
            ip.src = ip4(i).into();
        }
        j.observe(&event, t0);
        assert!(j.packets.map.len() <= MAX_PACKET_KEYS);
        assert!(j.packets.order.len() <= 2 * MAX_PACKET_KEYS);
    }
    assert_eq!(j.forgotten_early(), 500);
    let last = n - 1;
    let newest = step(
        1,
        headers(
            ip4(last).octets(),
            SERVICE,
            (last & 0xffff) as u16,
            40000,
            80,
            2,
        ),
    );
    assert_eq!(tracking(&j.push(newest, t0)), [Some(u64::from(last))]);
}

fn ip4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | i)
}

/// The client's SYN seen by `ping`'s task on device 2, `veth0`.
fn bpf_event_with_task(skb: u64, ip_id: u32) -> Event {
    let mut event = bpf_event(skb, ip_id, false);
    event.task = Some(ct_core::Task {
        pid: 10,
        tgid: 9,
        comm: FixedStr::new("ping"),
    });
    event.packet.as_mut().unwrap().ifname = Some(FixedStr::new("veth0"));
    event
}

fn device(ifindex: u32, name: Option<&str>) -> Option<NftDevice> {
    Some(NftDevice {
        ifindex,
        ifname: name.map(FixedStr::new),
    })
}

#[test]
fn a_joined_step_carries_its_packets_task_and_device_name() {
    let now = Instant::now();
    let mut j = Joiner::new();
    j.observe(&bpf_event_with_task(5, 1), now);
    // The reader could not name device 2 (gone by then): the packet's event on it does.
    let out = j.push(syn_step(1, 1), now);
    assert_eq!(tracking(&out), [Some(5)]);
    let task = out[0].task.as_ref().expect("the packet event's task");
    assert_eq!((task.pid, task.tgid, task.comm.as_str()), (10, 9, "ping"));
    let nft = out[0].nft.as_ref().unwrap();
    assert_eq!((nft.iif, nft.oif), (device(2, Some("veth0")), None));
    let packet = out[0].packet.as_ref().unwrap();
    assert_eq!(
        (packet.ifindex, packet.ifname.map(|n| n.to_string())),
        (Some(2), Some("veth0".into()))
    );
}

#[test]
fn the_namespaces_names_stand_and_other_devices_keep_their_index() {
    let now = Instant::now();
    let mut j = Joiner::new();
    j.observe(&bpf_event_with_task(5, 1), now);
    let mut forwarded = syn_step(1, 1);
    forwarded.message.oif = Some(5);
    // As the reader named them in the traced namespace when the step came.
    forwarded.iif_name = Some(FixedStr::new("veth0-renamed"));
    let out = j.push(forwarded, now);
    let nft = out[0].nft.as_ref().unwrap();
    // Device 5 has no name: neither the namespace nor the packet's event gave one.
    assert_eq!(
        (nft.iif, nft.oif),
        (device(2, Some("veth0-renamed")), device(5, None))
    );
}

#[test]
fn an_unjoined_step_has_no_task_and_only_the_namespaces_names() {
    let now = Instant::now();
    let mut j = Joiner::new();
    let mut step = syn_step(1, 1);
    step.iif_name = Some(FixedStr::new("eth0"));
    assert!(j.push(step, now).is_empty());
    let out = j.ready(now + WAIT_FOR_PACKET);
    assert_eq!(tracking(&out), [None]);
    assert_eq!(out[0].task, None);
    assert_eq!(out[0].nft.as_ref().unwrap().iif, device(2, Some("eth0")));
}

/// A hook evaluation as the kernel reports it: its first step with the packet, the later
/// ones (a second jump, the policy) with the trace id alone; each, given its packet by
/// the reader, is joined by its headers even after the trace id's time is over.
#[test]
fn every_step_of_an_evaluation_is_joined_by_its_packet() {
    let now = Instant::now();
    let mut j = joiner_seeing(5, 1, now);
    let mut hooks = crate::hook_packet::HookPackets::default();
    let first = syn_step(42, 1).message;
    let mut later = TraceMessage {
        handle: None,
        kind: ct_core::NftTraceKind::Policy,
        iif: None,
        nfproto: None,
        network_header: Vec::new(),
        transport_header: Vec::new(),
        ..first.clone()
    };
    hooks.fill(&mut first.clone());
    assert!(hooks.fill(&mut later));
    let step = TraceStep::new(later, None, 1000);
    // Long after the first step: by trace id alone it would not be joined.
    let out = j.push(step, now + TRACE_ID_LIFETIME * 2);
    assert_eq!(tracking(&out), [Some(5)]);
    assert_eq!(out[0].nft.as_ref().unwrap().iif, device(2, None));
}
