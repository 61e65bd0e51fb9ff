//! `conns` over a stream: each connection keeps only its summary while the events go by.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::key::event_conn;
use super::{ConnKey, Connection, Connections, Nat, NftDrop, PacketCounts, ParentConn, Transition};
use crate::limits::{order_key, Watermark};
use crate::{
    CtConnEvent, CtState, Event, NftTrace, SctpState, StreamLimits, StreamStats, TcpState,
};

/// Place of an event in the in-memory view's order ([`order_key`]).
type Key = (bool, u64, u64);

/// Each value of a state once, at its earliest sighting.
struct Firsts<S>(Vec<(Key, Transition<S>)>);

impl<S: PartialEq> Firsts<S> {
    fn note(&mut self, key: Key, state: S, event: &Event) {
        match self.0.iter_mut().find(|(_, t)| t.state == state) {
            Some((first, t)) if key < *first => {
                *first = key;
                t.timestamp = event.timestamp;
                t.probe = event.probe.clone();
            }
            Some(_) => {}
            None => self.0.push((
                key,
                Transition {
                    state,
                    timestamp: event.timestamp,
                    probe: event.probe.clone(),
                },
            )),
        }
    }

    fn into_ordered(mut self) -> Vec<Transition<S>> {
        self.0.sort_by_key(|(key, _)| *key);
        self.0.into_iter().map(|(_, t)| t).collect()
    }
}

/// A value taken from the latest event (in the view's order) that had one.
struct Latest<T>(Option<(Key, T)>);

impl<T> Latest<T> {
    fn offer(&mut self, key: Key, value: impl FnOnce() -> T) {
        if self.0.as_ref().is_none_or(|(k, _)| key > *k) {
            self.0 = Some((key, value()));
        }
    }

    fn get(&self) -> Option<&T> {
        self.0.as_ref().map(|(_, v)| v)
    }

    fn take(self) -> Option<T> {
        self.0.map(|(_, v)| v)
    }
}

/// One connection's summary while the events go by.
struct Summary {
    key: ConnKey,
    first: Key,
    entry: Latest<CtConnEvent>,
    parent_id: Latest<u64>,
    parent_entry: Latest<CtConnEvent>,
    first_seen: Option<u64>,
    last_seen: Option<u64>,
    events: u64,
    packets: PacketCounts,
    drops: u64,
    drop_reasons: Vec<(Key, Arc<str>, u64)>,
    ct_states: Firsts<CtState>,
    tcp_states: Firsts<TcpState>,
    sctp_states: Firsts<SctpState>,
    /// Whether an event of it was kept (what [`ConnFolder::whole_connections`] shows).
    kept: bool,
}

/// Which way a packet went in its connection, by its ctinfo.
fn direction(state: CtState) -> Option<bool> {
    match state {
        CtState::New | CtState::Established | CtState::Related => Some(false),
        CtState::Reply | CtState::RelatedReply => Some(true),
        CtState::Untracked => None,
    }
}

/// What is known of one packet while its events can still come: where it was counted,
/// its first ct state, and its nftables drops waiting for that state.
#[derive(Default)]
struct OpenPacket {
    last_ts: Option<u64>,
    /// (connection, reply direction) pairs this packet was counted in.
    counted: Vec<(usize, bool)>,
    first_ct: Option<(Key, CtState)>,
    nft_drops: Vec<(Key, NftTrace, Option<u64>, bool)>,
}

/// nftables drops counted by (connection id, rule, ct state, whether kept): count and
/// earliest key. A drop not kept counts only for a connection kept whole.
type NftCounts = HashMap<(Option<u64>, NftTrace, Option<CtState>, bool), (u64, Key)>;

/// [`connections`](crate::connections) for inputs of any size: events go in one at a time
/// ([`push`](ConnFolder::push)) and each connection keeps only its summary; the result,
/// from [`finish`](ConnFolder::finish), is the same as the in-memory view's. What the
/// summaries need per packet (distinct packets per direction, the ct state an nftables
/// drop's packet had) is held for the window of [`StreamLimits`] only, and never more than
/// [`StreamLimits::max_events`] records of it ([`held`](ConnFolder::held)), so memory
/// depends on the number of connections and on the limits, not on the number of events.
///
/// ```
/// use ct_core::{ConnFolder, Event, StreamLimits};
///
/// let mut folder = ConnFolder::new(StreamLimits::default());
/// folder.push(&Event::default());
/// let (conns, stats) = folder.finish();
/// assert!(conns.conns.is_empty());
/// assert_eq!(stats.events, 1);
/// ```
pub struct ConnFolder {
    limits: StreamLimits,
    /// Fold events not kept too, and show only connections with a kept event.
    whole: bool,
    window: u64,
    watermark: Watermark,
    summaries: Vec<Summary>,
    index: HashMap<ConnKey, usize>,
    packets: HashMap<u64, OpenPacket>,
    /// Packets in the order they were last seen (roughly): (time then, packet id).
    expiry: VecDeque<(u64, u64)>,
    /// Packets first seen in an event without a timestamp, oldest first: no window closes
    /// them, only the bound on what is held.
    untimed: VecDeque<u64>,
    /// Records held in the open packets: their `counted` and `nft_drops` entries.
    packet_records: usize,
    nft: NftCounts,
    stats: StreamStats,
}

impl std::fmt::Debug for ConnFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnFolder")
            .field("limits", &self.limits)
            .field("connections", &self.summaries.len())
            .field("open_packets", &self.packets.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl ConnFolder {
    /// A folder with these limits.
    pub fn new(limits: StreamLimits) -> Self {
        ConnFolder {
            limits,
            whole: false,
            window: limits.window_ns(),
            watermark: Watermark::default(),
            summaries: Vec::new(),
            index: HashMap::new(),
            packets: HashMap::new(),
            expiry: VecDeque::new(),
            untimed: VecDeque::new(),
            packet_records: 0,
            nft: HashMap::new(),
            stats: StreamStats::default(),
        }
    }

    /// A folder that keeps connections whole (`conns --follow conn`): events go in with
    /// whether they were kept ([`push_judged`](Self::push_judged)), every event is folded,
    /// and [`finish`](Self::finish) gives the connections that had at least one kept
    /// event, with all their events counted. nftables drops that no connection of the
    /// input takes are counted only when kept. Memory: a summary per connection of the
    /// input, kept or not.
    pub fn whole_connections(limits: StreamLimits) -> Self {
        ConnFolder {
            whole: true,
            ..Self::new(limits)
        }
    }

    /// Per-packet records held now (the queue entries of open packets, the connections
    /// each was counted in, its nftables drops waiting for its ct state): never more than
    /// [`StreamLimits::max_events`] between two calls.
    pub fn held(&self) -> usize {
        self.expiry.len() + self.untimed.len() + self.packet_records
    }

    /// Takes the next event of the input.
    pub fn push(&mut self, event: &Event) {
        self.push_judged(event, true);
    }

    /// Takes the next event of the input, with whether the filters kept it. A folder made
    /// by [`new`](Self::new) ignores an event not kept; one made by
    /// [`whole_connections`](Self::whole_connections) folds it.
    pub fn push_judged(&mut self, event: &Event, kept: bool) {
        if !kept && !self.whole {
            return;
        }
        let seq = self.stats.events;
        self.stats.events += 1;
        let key = order_key(event.timestamp, seq);
        if let Some(ts) = event.timestamp {
            if self.watermark.advance(ts, self.window) {
                self.stats.late += 1;
            }
        }
        let packet = event.tracking.map(|t| t.skb);
        if let Some(skb) = packet {
            let open = match self.packets.get_mut(&skb) {
                Some(open) => open,
                None => {
                    match event.timestamp {
                        Some(ts) => self.expiry.push_back((ts, skb)),
                        None => self.untimed.push_back(skb),
                    }
                    self.packets.entry(skb).or_default()
                }
            };
            if let Some(ts) = event.timestamp {
                open.last_ts = Some(open.last_ts.map_or(ts, |l| l.max(ts)));
            }
            if let Some(ct) = &event.ct {
                if open.first_ct.is_none_or(|(k, _)| key < k) {
                    open.first_ct = Some((key, ct.state));
                }
            }
            if let Some(nft) = event.nft.as_ref().filter(|n| n.is_drop()) {
                let conn = event.tracking.and_then(|t| t.conn);
                open.nft_drops.push((key, nft.clone(), conn, kept));
                self.packet_records += 1;
            }
        } else if let Some(nft) = event.nft.as_ref().filter(|n| n.is_drop()) {
            let conn = None;
            count_nft(&mut self.nft, (conn, nft.clone(), None, kept), key);
        }
        self.fold(event, key, packet, kept);
        if let Some(skb) = packet {
            let records = self
                .packets
                .get(&skb)
                .map_or(0, |p| p.counted.len() + p.nft_drops.len());
            if records >= self.limits.max_packet_events {
                // One packet id for ever (a crafted file): taken as complete, and a later
                // event of it starts a new packet.
                self.stats.forced += 1;
                self.close_packet(skb);
            }
        }
        self.expire();
    }

    /// Adds the event to its connection's summary.
    fn fold(&mut self, event: &Event, key: Key, packet: Option<u64>, kept: bool) {
        let (Some(ct), Some(conn_key)) = (event.ct.as_ref(), ConnKey::of(event)) else {
            return;
        };
        let Some(base) = event_conn(event) else {
            return;
        };
        let i = *self.index.entry(conn_key).or_insert_with(|| {
            self.summaries.push(Summary {
                key: conn_key,
                first: key,
                entry: Latest(None),
                parent_id: Latest(None),
                parent_entry: Latest(None),
                first_seen: None,
                last_seen: None,
                events: 0,
                packets: PacketCounts::default(),
                drops: 0,
                drop_reasons: Vec::new(),
                ct_states: Firsts(Vec::new()),
                tcp_states: Firsts(Vec::new()),
                sctp_states: Firsts(Vec::new()),
                kept: false,
            });
            self.summaries.len() - 1
        });
        let s = &mut self.summaries[i];
        s.kept |= kept;
        s.first = s.first.min(key);
        s.entry.offer(key, || base.clone());
        s.events += 1;
        if let Some(ts) = event.timestamp {
            s.first_seen = Some(s.first_seen.map_or(ts, |f| f.min(ts)));
            s.last_seen = Some(s.last_seen.map_or(ts, |l| l.max(ts)));
        }
        if let Some(id) = event.tracking.and_then(|t| t.parent_conn) {
            s.parent_id.offer(key, || id);
        }
        if let Some(parent) = ct.parent.as_ref().filter(|p| !p.is_template()) {
            s.parent_entry.offer(key, || parent.clone());
        }
        if let Some(reply) = direction(ct.state) {
            let new_packet = match packet.and_then(|skb| self.packets.get_mut(&skb)) {
                Some(open) if open.counted.contains(&(i, reply)) => false,
                Some(open) => {
                    open.counted.push((i, reply));
                    self.packet_records += 1;
                    true
                }
                None => true,
            };
            if new_packet {
                *(if reply {
                    &mut s.packets.reply
                } else {
                    &mut s.packets.orig
                }) += 1;
            }
        }
        if event.is_drop() {
            s.drops += 1;
            if let Some(reason) = event.drop.as_ref().and_then(|d| d.reason.as_ref()) {
                match s.drop_reasons.iter_mut().find(|(_, r, _)| r == reason) {
                    Some((first, _, n)) => {
                        *n += 1;
                        *first = (*first).min(key);
                    }
                    None => s.drop_reasons.push((key, Arc::clone(reason), 1)),
                }
            }
        }
        s.ct_states.note(key, ct.state, event);
        if let Some(state) = base.tcp_state {
            s.tcp_states.note(key, state, event);
        }
        if let Some(state) = base.sctp_state {
            s.sctp_states.note(key, state, event);
        }
    }

    /// Lets go of the packets whose window has closed, and of the oldest ones while over
    /// a bound: packets seen without a timestamp first, then those in time order.
    fn expire(&mut self) {
        while self.held() > self.limits.max_events {
            let Some(skb) = self.untimed.pop_front() else {
                break;
            };
            if self.packets.contains_key(&skb) {
                self.stats.forced += 1;
                self.close_packet(skb);
            }
        }
        while let Some(&(seen, skb)) = self.expiry.front() {
            let last = self
                .packets
                .get(&skb)
                .and_then(|p| p.last_ts)
                .unwrap_or(seen);
            let over =
                self.packets.len() > self.limits.max_open || self.held() > self.limits.max_events;
            if !over && !self.watermark.closes(seen, self.window) {
                break;
            }
            self.expiry.pop_front();
            if last > seen && !over && !self.watermark.closes(last, self.window) {
                // Seen again since: back in the queue at its last sighting.
                self.expiry.push_back((last, skb));
                continue;
            }
            if self.packets.contains_key(&skb) && !self.watermark.closes(last, self.window) {
                self.stats.forced += 1;
            }
            self.close_packet(skb);
        }
    }

    /// Charges a packet's nftables drops with its ct state, and forgets it.
    fn close_packet(&mut self, skb: u64) {
        if let Some(open) = self.packets.remove(&skb) {
            self.packet_records -= open.counted.len() + open.nft_drops.len();
            let state = open.first_ct.map(|(_, s)| s);
            for (key, nft, conn, kept) in open.nft_drops {
                count_nft(&mut self.nft, (conn, nft, state, kept), key);
            }
        }
    }

    /// Ends the input: the connections, in the order of their first event, and what the
    /// bounds did.
    pub fn finish(mut self) -> (Connections, StreamStats) {
        let open: Vec<u64> = self.packets.keys().copied().collect();
        for skb in open {
            self.close_packet(skb);
        }
        let mut charged: Vec<Vec<(Key, NftDrop)>> = Vec::new();
        charged.resize_with(self.summaries.len(), Vec::new);
        let mut unattributed: Vec<(Key, NftDrop)> = Vec::new();
        for ((conn, by, ct_state, kept), (packets, key)) in self.nft {
            let drops = match conn.and_then(|id| self.index.get(&ConnKey::Id(id))) {
                Some(&i) => &mut charged[i],
                None if kept => &mut unattributed,
                None => continue,
            };
            match drops
                .iter_mut()
                .find(|(_, d)| d.by == by && d.ct_state == ct_state)
            {
                Some((first, drop)) => {
                    drop.packets += packets;
                    *first = (*first).min(key);
                }
                None => drops.push((
                    key,
                    NftDrop {
                        by,
                        ct_state,
                        packets,
                    },
                )),
            }
        }
        // Parents known only through their own events.
        let by_id: HashMap<u64, CtConnEvent> = self
            .summaries
            .iter()
            .filter_map(|s| Some((s.key.id()?, s.entry.get()?.clone())))
            .collect();
        let mut conns: Vec<(Key, Connection)> = Vec::with_capacity(self.summaries.len());
        for (s, nft_drops) in self.summaries.into_iter().zip(charged) {
            let parent_id = s.parent_id.take();
            let parent_entry = s.parent_entry.take();
            let parent = (parent_id.is_some() || parent_entry.is_some()).then(|| ParentConn {
                conn: parent_id,
                entry: parent_entry.or_else(|| by_id.get(&parent_id?).cloned()),
            });
            // Every summary starts from an event with an entry.
            let Some(entry) = s.entry.take() else {
                continue;
            };
            if !s.kept {
                continue;
            }
            let mut reasons = s.drop_reasons;
            reasons.sort_by_key(|(key, _, _)| *key);
            conns.push((
                s.first,
                Connection {
                    key: s.key,
                    nat: Nat::from_conn(&entry),
                    entry,
                    parent,
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                    events: s.events,
                    packets: s.packets,
                    drops: s.drops,
                    drop_reasons: reasons.into_iter().map(|(_, r, n)| (r, n)).collect(),
                    ct_states: s.ct_states.into_ordered(),
                    tcp_states: s.tcp_states.into_ordered(),
                    sctp_states: s.sctp_states.into_ordered(),
                    nft_drops: in_order(nft_drops),
                },
            ));
        }
        conns.sort_by_key(|(key, _)| *key);
        (
            Connections {
                conns: conns.into_iter().map(|(_, c)| c).collect(),
                unattributed_nft_drops: in_order(unattributed),
            },
            self.stats,
        )
    }

    /// What the bounds did so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }
}

/// Counts one nftables drop.
fn count_nft(
    counts: &mut NftCounts,
    drop: (Option<u64>, NftTrace, Option<CtState>, bool),
    key: Key,
) {
    let count = counts.entry(drop).or_insert((0, key));
    count.0 += 1;
    count.1 = count.1.min(key);
}

/// The drops in order of first appearance.
fn in_order(mut drops: Vec<(Key, NftDrop)>) -> Vec<NftDrop> {
    drops.sort_by_key(|(key, _)| *key);
    drops.into_iter().map(|(_, d)| d).collect()
}
