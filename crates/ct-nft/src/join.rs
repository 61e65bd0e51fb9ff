//! Joining trace steps to the packets the BPF probes saw.
//!
//! A trace message carries the packet's headers but nothing a BPF program can see: its
//! id is a keyed hash of kernel state. So a step is joined on header fields both sides
//! carry: addresses, protocol, ports, the IPv4 identification and the TCP flags. NAT
//! changes addresses and ports between hooks, so a BPF event is also filed under the
//! packet as its conntrack entry's tuples describe it before and after translation (the
//! identification and flags do not change). Once one step of a packet is joined, the
//! packet's other steps follow it by their trace id.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ct_core::{CtProto, CtTuple, Event, FixedStr, NftDevice, Packet, Task, Tracking};

use crate::{TraceStep, NFT_TIMEOUT};

/// How long a BPF event can be joined to. Trace messages are read within milliseconds of
/// the probe hits of the same packet, but a step reaches the joiner only once the reader
/// has looked up its rule's text, which runs `nft` (up to [`NFT_TIMEOUT`]): in an
/// emulated VM beside another one that took over 3 s, and steps read meanwhile wait
/// behind it. The bound on keys ([`MAX_PACKET_KEYS`]) holds memory under floods.
const REMEMBER_PACKETS_FOR: Duration = Duration::from_secs(NFT_TIMEOUT.as_secs() + 2);
/// How long a trace id stands for one packet: the kernel derives it from the buffer's
/// address, which the next packet may reuse, while one packet's steps come within
/// microseconds of each other.
const TRACE_ID_LIFETIME: Duration = Duration::from_millis(100);
/// How long a step waits for the BPF events of its packet (the ring buffer and the
/// netlink socket are read in turn) before it is written without tracking ids.
pub const WAIT_FOR_PACKET: Duration = Duration::from_millis(300);
/// Most header keys remembered (up to five per BPF event, for twelve seconds): beyond, the
/// oldest are forgotten early ([`Joiner::forgotten_early`]). About 40 MB at the bound.
pub const MAX_PACKET_KEYS: usize = 1 << 18;
/// Most trace ids of joined packets remembered; beyond, the oldest are forgotten early.
pub const MAX_TRACE_IDS: usize = 1 << 16;
/// Most steps waiting for their packet (the tracer's own queue holds as many): beyond,
/// the oldest is written at once, joined if its packet is known and without tracking ids
/// otherwise ([`Joiner::overflowed`]).
pub const MAX_WAITING_STEPS: usize = 1 << 16;

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

/// What a step takes from the BPF events of its packet (the latest filed under a key).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    tracking: Tracking,
    netns: Option<u32>,
    /// The task the probe fired in.
    task: Option<Task>,
    /// The packet's device there: index and name.
    device: Option<(u32, FixedStr)>,
    at: Instant,
}

impl Seen {
    /// `step` as an event joined to this packet: its ids, namespace and task, and the
    /// name of a device of the step that the reader could not name (gone by then) when
    /// the packet's event was on a device of that index.
    fn join(&self, step: TraceStep) -> Event {
        let mut event = step.into_event(Some(self.tracking), self.netns);
        event.task = self.task.clone();
        if let (Some(nft), Some((ifindex, ifname))) = (&mut event.nft, self.device) {
            for device in [&mut nft.iif, &mut nft.oif].into_iter().flatten() {
                name_from_packet(device, ifindex, ifname);
            }
        }
        if let (Some(packet), Some((ifindex, ifname))) = (&mut event.packet, self.device) {
            if packet.ifname.is_none() && packet.ifindex == Some(ifindex) {
                packet.ifname = Some(ifname);
            }
        }
        event
    }
}

fn name_from_packet(device: &mut NftDevice, ifindex: u32, ifname: FixedStr) {
    if device.ifname.is_none() && device.ifindex == ifindex {
        device.ifname = Some(ifname);
    }
}

/// A map whose entries are forgotten oldest first, in time or over a bound, without
/// walking the map: the order of insertion is kept beside it.
#[derive(Debug)]
struct Remembered<K> {
    map: HashMap<K, Seen>,
    /// Keys as inserted; an entry refreshed since (its `at` differs) is skipped.
    order: VecDeque<(Instant, K)>,
    bound: usize,
    /// Entries forgotten before their time because of the bound.
    forgotten_early: u64,
}

impl<K: Copy + Eq + Hash> Remembered<K> {
    fn new(bound: usize) -> Self {
        Remembered {
            map: HashMap::new(),
            order: VecDeque::new(),
            bound,
            forgotten_early: 0,
        }
    }

    fn insert(&mut self, key: K, seen: Seen, work: &mut u64) {
        self.order.push_back((seen.at, key));
        self.map.insert(key, seen);
        // The order may hold a key several times (refreshed): it is bounded too.
        while !self.order.is_empty()
            && (self.map.len() > self.bound || self.order.len() > 2 * self.bound)
        {
            if self.pop_oldest(work) {
                self.forgotten_early += 1;
            }
        }
    }

    /// Forgets what was filed `age` or longer before `now`.
    fn forget(&mut self, now: Instant, age: Duration, work: &mut u64) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= age)
        {
            self.pop_oldest(work);
        }
    }

    /// Drops the oldest filing; whether it removed a live entry.
    fn pop_oldest(&mut self, work: &mut u64) -> bool {
        *work += 1;
        let Some((at, key)) = self.order.pop_front() else {
            return false;
        };
        if self.map.get(&key).is_some_and(|seen| seen.at == at) {
            self.map.remove(&key);
            return true;
        }
        false
    }

    fn get(&self, key: &K) -> Option<&Seen> {
        self.map.get(key)
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

/// A step waiting for its packet.
#[derive(Debug)]
struct Waiting {
    since: Instant,
    key: Option<HeaderKey>,
    step: TraceStep,
}

/// Why a waiting step is looked at again: which index it was taken out of (to put it back
/// there if it still cannot be joined).
#[derive(Debug, Clone, Copy, Default)]
struct Recheck {
    /// Just pushed: in both indexes already.
    new: bool,
    /// Its header key arrived.
    by_key: bool,
    /// A step of its trace id was joined.
    by_trace: bool,
}

/// Joins trace steps to BPF events; see the module documentation.
///
/// Every operation touches only what it can join: a BPF event looks up the steps waiting
/// with its header keys, a joined step those with its trace id, and waiting steps expire
/// from the front of their time-ordered queue. The maps are bounded
/// ([`MAX_PACKET_KEYS`], [`MAX_TRACE_IDS`], [`MAX_WAITING_STEPS`]).
#[derive(Debug)]
pub struct Joiner {
    packets: Remembered<HeaderKey>,
    /// Trace id of a packet already joined.
    traces: Remembered<u32>,
    /// Steps waiting for their packet, oldest first; `None` once written (a step joined
    /// out of order leaves a hole until the front reaches it).
    waiting: VecDeque<Option<Waiting>>,
    /// Sequence number of `waiting[0]`: a step's number stays the same while it waits.
    first_seq: u64,
    /// Steps in `waiting` that are not written yet.
    live: usize,
    /// Waiting steps by header key and by trace id (may hold steps written since: those
    /// are skipped, and dropped from the front of their list whenever one is written).
    by_key: HashMap<HeaderKey, VecDeque<u64>>,
    by_trace: HashMap<u32, VecDeque<u64>>,
    /// Waiting steps to look at on the next [`ready`](Self::ready).
    recheck: BTreeMap<u64, Recheck>,
    /// Steps written without tracking ids.
    unjoined: u64,
    /// Steps written before their wait was over because too many waited.
    overflowed: u64,
    /// Steps, keys and entries looked at: what the flood tests count.
    work: u64,
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner {
            packets: Remembered::new(MAX_PACKET_KEYS),
            traces: Remembered::new(MAX_TRACE_IDS),
            waiting: VecDeque::new(),
            first_seq: 0,
            live: 0,
            by_key: HashMap::new(),
            by_trace: HashMap::new(),
            recheck: BTreeMap::new(),
            unjoined: 0,
            overflowed: 0,
            work: 0,
        }
    }
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
        let device = event
            .packet
            .as_ref()
            .and_then(|p| Some((p.ifindex?, p.ifname?)));
        let seen = Seen {
            tracking,
            netns: event.netns,
            task: event.task.clone(),
            device,
            at: now,
        };
        self.file_packet(key, seen.clone());
        if let Some(base) = event.ct.as_ref().and_then(|ct| ct.base.as_ref()) {
            // The packet as the entry saw it arrive, and as it leaves after translation,
            // in whichever direction it travels.
            for tuple in [&base.orig, &base.reply] {
                for (src, dst, sport, dport) in tuple_sides(tuple) {
                    let translated = HeaderKey {
                        src,
                        dst,
                        sport,
                        dport,
                        ..key
                    };
                    self.file_packet(translated, seen.clone());
                }
            }
        }
    }

    fn file_packet(&mut self, key: HeaderKey, seen: Seen) {
        self.packets.insert(key, seen, &mut self.work);
        if let Some(steps) = self.by_key.remove(&key) {
            for seq in steps {
                self.work += 1;
                self.recheck.entry(seq).or_default().by_key = true;
            }
        }
    }

    /// Takes a step: the events ready to write (this step if its packet is known, and
    /// earlier steps whose packet arrived or whose wait is over).
    pub fn push(&mut self, step: TraceStep, now: Instant) -> Vec<Event> {
        let key = step.packet.as_ref().and_then(packet_key);
        let seq = self.first_seq + self.waiting.len() as u64;
        if let Some(key) = key {
            self.by_key.entry(key).or_default().push_back(seq);
        }
        self.by_trace
            .entry(step.message.id)
            .or_default()
            .push_back(seq);
        self.recheck.entry(seq).or_default().new = true;
        self.waiting.push_back(Some(Waiting {
            since: now,
            key,
            step,
        }));
        self.live += 1;
        let mut out = Vec::new();
        while self.live > MAX_WAITING_STEPS {
            let Some(oldest) = self.take_front() else {
                break;
            };
            self.overflowed += 1;
            out.push(self.write(oldest).1);
        }
        out.extend(self.ready(now));
        out
    }

    /// The steps that can be written now: joined, or waited for long enough.
    pub fn ready(&mut self, now: Instant) -> Vec<Event> {
        self.packets
            .forget(now, REMEMBER_PACKETS_FOR, &mut self.work);
        self.traces
            .forget(now, REMEMBER_PACKETS_FOR, &mut self.work);
        let mut out: Vec<(u64, Event)> = Vec::new();
        while let Some((seq, why)) = self.recheck.pop_first() {
            self.work += 1;
            let Some(waiting) = self.slot(seq) else {
                continue;
            };
            if self.find(&waiting.step, waiting.since).is_none() {
                self.index_again(seq, why);
                continue;
            }
            let waiting = self.take(seq).expect("the slot was just read");
            out.push(self.write(waiting));
        }
        while let Some(front) = self.front() {
            if now.saturating_duration_since(front.since) < WAIT_FOR_PACKET {
                break;
            }
            let waiting = self.take_front().expect("the front was just read");
            out.push(self.write(waiting));
        }
        // In the order the steps came, as if each waiting step were looked at in turn.
        out.sort_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, event)| event).collect()
    }

    /// Every step still waiting, joined where possible (at the end of a run).
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.first_seq += self.waiting.len() as u64;
        while let Some(slot) = self.waiting.pop_front() {
            let Some(waiting) = slot else { continue };
            match self.find(&waiting.step, waiting.since) {
                Some(seen) => out.push(seen.join(waiting.step)),
                None => {
                    self.unjoined += 1;
                    out.push(waiting.step.into_event(None, None));
                }
            }
        }
        self.live = 0;
        self.by_key.clear();
        self.by_trace.clear();
        self.recheck.clear();
        self.packets.clear();
        self.traces.clear();
        out
    }

    /// How many steps were written without tracking ids so far.
    pub fn unjoined(&self) -> u64 {
        self.unjoined
    }

    /// How many steps were written before their wait was over, because more than
    /// [`MAX_WAITING_STEPS`] waited.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// How many packets' header keys and trace ids were forgotten before their time,
    /// because more than [`MAX_PACKET_KEYS`] or [`MAX_TRACE_IDS`] were remembered.
    pub fn forgotten_early(&self) -> u64 {
        self.packets.forgotten_early + self.traces.forgotten_early
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
        by_headers.or_else(by_trace_id).cloned()
    }

    /// Writes a step taken out of the queue: joined if its packet is known (then its
    /// trace id is remembered, and the steps waiting with that id are looked at again);
    /// without tracking ids otherwise. Returns the step's number with the event.
    fn write(&mut self, (seq, waiting): (u64, Waiting)) -> (u64, Event) {
        self.live -= 1;
        self.prune(&waiting);
        let Waiting { since, step, .. } = waiting;
        let event_trace_id = step.message.id;
        let event = match self.find(&step, since) {
            Some(seen) => {
                let event = seen.join(step);
                self.remember_trace(event_trace_id, Seen { at: since, ..seen });
                event
            }
            None => {
                self.unjoined += 1;
                step.into_event(None, None)
            }
        };
        (seq, event)
    }

    /// Timed from the joined step: the packet's later steps come right after it.
    fn remember_trace(&mut self, id: u32, seen: Seen) {
        self.traces.insert(id, seen, &mut self.work);
        if let Some(steps) = self.by_trace.remove(&id) {
            for seq in steps {
                self.work += 1;
                self.recheck.entry(seq).or_default().by_trace = true;
            }
        }
    }

    /// Puts a step that still cannot be joined back into the indexes it was taken out of.
    fn index_again(&mut self, seq: u64, why: Recheck) {
        let Some(waiting) = self.slot(seq) else {
            return;
        };
        let (key, id) = (waiting.key, waiting.step.message.id);
        if let (true, Some(key)) = (why.by_key, key) {
            self.by_key.entry(key).or_default().push_back(seq);
        }
        if why.by_trace {
            self.by_trace.entry(id).or_default().push_back(seq);
        }
    }

    /// Drops the written steps from the front of the index lists of `written` (itself
    /// among them once taken out of the queue), and lists left empty: each entry is
    /// dropped once, so the indexes cost no more than the steps pushed.
    fn prune(&mut self, written: &Waiting) {
        let (first_seq, waiting) = (self.first_seq, &self.waiting);
        let gone = |seq: &u64| {
            seq.checked_sub(first_seq)
                .and_then(|i| waiting.get(i as usize))
                .is_none_or(Option::is_none)
        };
        let work = &mut self.work;
        if let Some(key) = written.key {
            prune_list(&mut self.by_key, key, gone, work);
        }
        prune_list(&mut self.by_trace, written.step.message.id, gone, work);
    }

    fn slot(&self, seq: u64) -> Option<&Waiting> {
        let index = seq.checked_sub(self.first_seq)?;
        self.waiting.get(index as usize)?.as_ref()
    }

    /// Takes step `seq` out of the queue, leaving a hole (the front is trimmed).
    fn take(&mut self, seq: u64) -> Option<(u64, Waiting)> {
        let index = seq.checked_sub(self.first_seq)?;
        let waiting = self.waiting.get_mut(index as usize)?.take()?;
        self.trim_front();
        Some((seq, waiting))
    }

    /// The oldest step still waiting.
    fn front(&mut self) -> Option<&Waiting> {
        self.trim_front();
        self.waiting.front()?.as_ref()
    }

    fn take_front(&mut self) -> Option<(u64, Waiting)> {
        self.trim_front();
        self.take(self.first_seq)
    }

    /// Drops the holes at the front of the queue.
    fn trim_front(&mut self) {
        while self.waiting.front().is_some_and(Option::is_none) {
            self.work += 1;
            self.waiting.pop_front();
            self.first_seq += 1;
        }
    }
}

/// Drops the entries of `map[key]` that `gone` says were written, from the front, and
/// the list if nothing is left.
fn prune_list<K: Eq + Hash>(
    map: &mut HashMap<K, VecDeque<u64>>,
    key: K,
    gone: impl Fn(&u64) -> bool,
    work: &mut u64,
) {
    let Some(list) = map.get_mut(&key) else {
        return;
    };
    while list.front().is_some_and(&gone) {
        *work += 1;
        list.pop_front();
    }
    if list.is_empty() {
        map.remove(&key);
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
