//! Joining trace steps to the packets the BPF probes saw.
//!
//! A trace message carries the packet's headers but nothing a BPF program can see: its
//! id is a keyed hash of kernel state. So a step is joined on header fields both sides
//! carry: addresses, protocol, ports, the IPv4 identification and the TCP flags. NAT
//! changes addresses and ports between hooks, so a BPF event is also filed under the
//! packet as its conntrack entry's tuples describe it before and after translation (the
//! identification and flags do not change). Once one step of a packet is joined, the
//! packet's other steps follow it by their trace id.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ct_core::{CtProto, CtTuple, Event, Packet, Tracking};

use crate::TraceStep;

/// How long a BPF event can be joined to: trace messages arrive within milliseconds of
/// the probe hits of the same packet.
const REMEMBER_PACKETS_FOR: Duration = Duration::from_secs(2);
/// How long a trace id stands for one packet: the kernel derives it from the buffer's
/// address, which the next packet may reuse, while one packet's steps come within
/// microseconds of each other.
const TRACE_ID_LIFETIME: Duration = Duration::from_millis(100);
/// How often the memory of packets and trace ids is swept: not on every step, which
/// would walk every packet of the last two seconds each time under a flood.
const FORGET_EVERY: Duration = Duration::from_millis(100);
/// How long a step waits for the BPF events of its packet (the ring buffer and the
/// netlink socket are read in turn) before it is written without tracking ids.
pub const WAIT_FOR_PACKET: Duration = Duration::from_millis(300);

/// The header fields a packet is recognised by on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct HeaderKey {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    /// IPv4 identification (IPv6 flow label).
    ip_id: u32,
    tcp_flags: u8,
}

/// What a step takes from the BPF events of its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    tracking: Tracking,
    netns: Option<u32>,
    at: Instant,
}

/// Joins trace steps to BPF events; see the module documentation.
#[derive(Debug, Default)]
pub struct Joiner {
    packets: HashMap<HeaderKey, Seen>,
    /// Trace id of a packet already joined.
    traces: HashMap<u32, Seen>,
    /// Steps waiting for their packet, oldest first.
    waiting: VecDeque<(Instant, TraceStep)>,
    /// Steps written without tracking ids.
    unjoined: u64,
    /// When the next sweep of `packets` and `traces` is due.
    next_forget: Option<Instant>,
}

impl Joiner {
    /// A joiner with nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files a BPF event for the steps to come.
    pub fn observe(&mut self, event: &Event, now: Instant) {
        let Some(tracking) = event.tracking else {
            return;
        };
        let Some(key) = event.packet.as_ref().and_then(packet_key) else {
            return;
        };
        let seen = Seen {
            tracking,
            netns: event.netns,
            at: now,
        };
        self.packets.insert(key, seen);
        if let Some(base) = event.ct.as_ref().and_then(|ct| ct.base.as_ref()) {
            // The packet as the entry saw it arrive, and as it leaves after translation,
            // in whichever direction it travels.
            for tuple in [&base.orig, &base.reply] {
                for (src, dst, sport, dport) in tuple_sides(tuple) {
                    self.packets.insert(
                        HeaderKey {
                            src,
                            dst,
                            sport,
                            dport,
                            ..key
                        },
                        seen,
                    );
                }
            }
        }
    }

    /// Takes a step: the events ready to write (this step if its packet is known, and
    /// earlier steps whose packet arrived or whose wait is over).
    pub fn push(&mut self, step: TraceStep, now: Instant) -> Vec<Event> {
        self.waiting.push_back((now, step));
        self.ready(now)
    }

    /// The steps that can be written now: joined, or waited for long enough.
    pub fn ready(&mut self, now: Instant) -> Vec<Event> {
        if self.next_forget.is_none_or(|due| now >= due) {
            self.forget(now);
            self.next_forget = Some(now + FORGET_EVERY);
        }
        let mut out = Vec::new();
        let mut still = VecDeque::new();
        while let Some((since, step)) = self.waiting.pop_front() {
            match self.find(&step, since) {
                Some(seen) => {
                    // Timed from this step: the packet's later steps come right after it.
                    self.traces
                        .insert(step.message.id, Seen { at: since, ..seen });
                    out.push(step.into_event(Some(seen.tracking), seen.netns));
                }
                None if now.duration_since(since) >= WAIT_FOR_PACKET => {
                    self.unjoined += 1;
                    out.push(step.into_event(None, None));
                }
                None => still.push_back((since, step)),
            }
        }
        self.waiting = still;
        out
    }

    /// Every step still waiting, joined where possible (at the end of a run).
    pub fn finish(&mut self) -> Vec<Event> {
        let far = Instant::now() + WAIT_FOR_PACKET + REMEMBER_PACKETS_FOR;
        let mut out = Vec::new();
        while let Some((since, step)) = self.waiting.pop_front() {
            match self.find(&step, since) {
                Some(seen) => out.push(step.into_event(Some(seen.tracking), seen.netns)),
                None => {
                    self.unjoined += 1;
                    out.push(step.into_event(None, None));
                }
            }
        }
        self.forget(far);
        out
    }

    /// How many steps were written without tracking ids so far.
    pub fn unjoined(&self) -> u64 {
        self.unjoined
    }

    /// The packet of a step that arrived at `since`: by its headers, else by its trace id
    /// if a step of that id was joined just before.
    fn find(&self, step: &TraceStep, since: Instant) -> Option<Seen> {
        let by_headers = step
            .packet
            .as_ref()
            .and_then(packet_key)
            .and_then(|key| self.packets.get(&key));
        let by_trace_id = || {
            self.traces
                .get(&step.message.id)
                .filter(|seen| since.saturating_duration_since(seen.at) < TRACE_ID_LIFETIME)
        };
        by_headers.or_else(by_trace_id).copied()
    }

    fn forget(&mut self, now: Instant) {
        let fresh = |seen: &Seen| now.saturating_duration_since(seen.at) < REMEMBER_PACKETS_FOR;
        self.packets.retain(|_, seen| fresh(seen));
        self.traces.retain(|_, seen| fresh(seen));
    }
}

fn packet_key(packet: &Packet) -> Option<HeaderKey> {
    let ip = packet.ip?;
    let (sport, dport, tcp_flags) = packet.l4.map_or((0, 0, 0), |l4| l4.flow_fields());
    Some(HeaderKey {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        sport,
        dport,
        ip_id: ip.id,
        tcp_flags,
    })
}

/// A tuple's addresses and ports read in both directions (ICMP tuples are left out: their
/// type differs between the directions).
fn tuple_sides(tuple: &CtTuple) -> Vec<(IpAddr, IpAddr, u16, u16)> {
    let (sport, dport) = match tuple.proto {
        CtProto::Tcp { sport, dport }
        | CtProto::Udp { sport, dport }
        | CtProto::Sctp { sport, dport, .. } => (sport, dport),
        _ => return Vec::new(),
    };
    let (src, dst) = (tuple.ip.src, tuple.ip.dst);
    vec![(src, dst, sport, dport), (dst, src, dport, sport)]
}

#[cfg(test)]
mod tests;
