//! `--follow` on files: which events a filter's match keeps (`ct-cli print`, `sort`,
//! `conns`), documented on [`FollowSelector`].

use std::collections::{HashMap, VecDeque};

use crate::filter::Follow;
use crate::limits::Watermark;
use crate::{Event, StreamLimits};

/// One event waiting for its window to pass before it is let out.
#[derive(Debug)]
struct Held {
    event: Event,
    keep: bool,
    /// When it may be let out: its timestamp, or for an event without one the newest
    /// timestamp read before it.
    release: u64,
    /// Its packet id and the packet's generation (the same id unseen for longer than the
    /// window starts a new packet).
    packet: Option<(u64, u64)>,
    /// Its connection id, with `--follow conn` only.
    conn: Option<u64>,
}

/// What is known of one packet id.
#[derive(Debug)]
struct PacketState {
    generation: u64,
    /// Release time of its latest event.
    last: u64,
    selected: bool,
    /// Held events of this generation not kept yet, oldest first, by sequence number.
    pending: VecDeque<u64>,
}

/// What is known of one connection id (`--follow conn`).
#[derive(Debug, Default)]
struct ConnState {
    selected: bool,
    /// When it was last used, on the selector's own clock (for the LRU bound).
    used: u64,
    /// Held events of this connection not kept yet, oldest first.
    pending: VecDeque<u64>,
}

/// What a selection reaches: a packet (id and generation) or a connection.
#[derive(Debug, Clone, Copy)]
enum Reach {
    Packet(u64, u64),
    Conn(u64),
}

/// What [`FollowSelector`] did, and what its bounds cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// Events taken in.
    pub events: u64,
    /// Events kept: matched, or of a selected packet or connection.
    pub kept: u64,
    /// Events more than the window older than the newest before them: a match of their
    /// packet among events let out already could not reach back to those.
    pub late: u64,
    /// Events let out not kept before their window had passed, to hold at most
    /// [`StreamLimits::max_events`]: a later match of their packet would have kept them.
    pub decided_early: u64,
    /// Selected packets forgotten within their window, to hold at most
    /// [`StreamLimits::max_open`] packets: later events of them were judged on their own.
    pub packets_forgotten: u64,
    /// Selected connections forgotten (the least recently seen), to follow at most
    /// [`StreamLimits::max_open`]: later events of them were judged on their own.
    pub conns_forgotten: u64,
}

impl FollowStats {
    /// Whether every event was judged as reading the whole input first would judge it.
    pub fn exact(&self) -> bool {
        self.late == 0
            && self.decided_early == 0
            && self.packets_forgotten == 0
            && self.conns_forgotten == 0
    }
}

/// Applies `--follow` to events read from files: an event is kept when it matches the
/// filters, or when another event of the same packet (`tracking.skb`) matched, before or
/// after it, and with [`Follow::Conn`] when an event of the same connection
/// (`tracking.conn`) was kept. [`Follow::None`] keeps exactly the events that match, each
/// as soon as it is taken in.
///
/// A packet is what `sort` groups: the events of one packet id, none more than the
/// window of [`StreamLimits`] after the one before (a packet id unseen for longer is a
/// new packet, as the collector's tracking ids are reused once a packet is freed).
///
/// The input is read once, in bounded memory, and the events come out in input order,
/// each with its verdict ([`push`](Self::push)). To reach back to the earlier events of
/// a packet matched later (a filter on the post-NAT address matches at the second hit of
/// a packet), each event is held until the events read are the window past it; at most
/// [`StreamLimits::max_events`] are held, and past that the oldest is let out early
/// ([`FollowStats::decided_early`]). Forward, a selected packet is followed until it
/// ends, at most [`StreamLimits::max_open`] packets at once; a selected connection is
/// followed to the end of the input, at most `max_open` connections at once (the least
/// recently seen is forgotten first). With connections that means: every packet of the
/// connection from the window before its first selected event on; `conns`, which holds
/// a summary per connection anyway, keeps connections whole.
///
/// ```
/// use ct_core::filter::Follow;
/// use ct_core::{Event, FollowSelector, StreamLimits, Tracking};
///
/// let at = |timestamp, skb| Event {
///     timestamp: Some(timestamp),
///     tracking: Some(Tracking { skb, conn: None, parent_conn: None }),
///     ..Event::default()
/// };
/// let mut selector = FollowSelector::new(Follow::Packet, StreamLimits::default());
/// let mut kept = Vec::new();
/// let mut sink = |e: Event, keep: bool| -> Result<(), ()> {
///     if keep {
///         kept.push(e.timestamp);
///     }
///     Ok(())
/// };
/// // Packet 1 matches at its second event only; packet 2 never.
/// for (event, matched) in [(at(10, 1), false), (at(11, 2), false), (at(12, 1), true)] {
///     selector.push(event, matched, &mut sink).unwrap();
/// }
/// let stats = selector.finish(&mut sink).unwrap();
/// assert_eq!(kept, [Some(10), Some(12)]);
/// assert!(stats.exact());
/// ```
#[derive(Debug)]
pub struct FollowSelector {
    follow: Follow,
    limits: StreamLimits,
    window: u64,
    watermark: Watermark,
    held: VecDeque<Held>,
    /// Sequence number of the front of `held`.
    base: u64,
    packets: HashMap<u64, PacketState>,
    /// One entry per packet state: (release time when queued, packet id), oldest first.
    packet_expiry: VecDeque<(u64, u64)>,
    generations: u64,
    conns: HashMap<u64, ConnState>,
    /// Uses of selected connections, oldest first: (clock then, id); stale entries are
    /// skipped, and the queue is compacted when they pile up.
    conn_uses: VecDeque<(u64, u64)>,
    selected_conns: usize,
    clock: u64,
    stats: FollowStats,
}

impl FollowSelector {
    /// A selector for `follow` with these bounds.
    pub fn new(follow: Follow, limits: StreamLimits) -> Self {
        FollowSelector {
            follow,
            limits,
            window: limits.window_ns(),
            watermark: Watermark::default(),
            held: VecDeque::new(),
            base: 0,
            packets: HashMap::new(),
            packet_expiry: VecDeque::new(),
            generations: 0,
            conns: HashMap::new(),
            conn_uses: VecDeque::new(),
            selected_conns: 0,
            clock: 0,
            stats: FollowStats::default(),
        }
    }

    /// Events held now: never more than [`StreamLimits::max_events`] between two calls.
    pub fn held_events(&self) -> usize {
        self.held.len()
    }

    /// Packet and connection ids remembered now: at most [`StreamLimits::max_open`]
    /// packets and `max_open` selected connections, besides the connections of events
    /// held.
    pub fn remembered_ids(&self) -> (usize, usize) {
        (self.packets.len(), self.conns.len())
    }

    /// Takes the next event of the input, with whether it matches the filters; gives
    /// `sink` every event whose verdict is final, in input order, with the verdict.
    pub fn push<E>(
        &mut self,
        event: Event,
        matched: bool,
        sink: &mut impl FnMut(Event, bool) -> Result<(), E>,
    ) -> Result<(), E> {
        self.stats.events += 1;
        if !self.follow.follows() {
            self.stats.kept += u64::from(matched);
            return sink(event, matched);
        }
        if let Some(ts) = event.timestamp {
            if self.watermark.advance(ts, self.window) {
                self.stats.late += 1;
            }
        }
        let release = event.timestamp.or(self.watermark.newest()).unwrap_or(0);
        let seq = self.base + self.held.len() as u64;
        let mut keep = matched;
        let packet = event.tracking.map(|t| t.skb).map(|skb| {
            let (generation, selected) = self.packet_seen(skb, event.timestamp, release);
            keep |= selected;
            (skb, generation)
        });
        let conn = event
            .tracking
            .and_then(|t| t.conn)
            .filter(|_| self.follow == Follow::Conn);
        if let Some(id) = conn {
            if self.conns.get(&id).is_some_and(|c| c.selected) {
                keep = true;
                self.use_conn(id);
            }
        }
        self.held.push_back(Held {
            event,
            keep,
            release,
            packet,
            conn,
        });
        if keep {
            self.select(packet.map(|(s, g)| Reach::Packet(s, g)), conn);
        } else {
            if let Some(state) = packet.and_then(|(skb, _)| self.packets.get_mut(&skb)) {
                state.pending.push_back(seq);
            }
            if let Some(id) = conn {
                self.conns.entry(id).or_default().pending.push_back(seq);
            }
        }
        self.let_out(sink)?;
        self.forget_packets();
        self.forget_conns();
        Ok(())
    }

    /// Ends the input: lets every held event out, and says what the bounds did.
    pub fn finish<E>(
        mut self,
        sink: &mut impl FnMut(Event, bool) -> Result<(), E>,
    ) -> Result<FollowStats, E> {
        while let Some(held) = self.held.pop_front() {
            self.stats.kept += u64::from(held.keep);
            sink(held.event, held.keep)?;
        }
        Ok(self.stats)
    }

    /// What the bounds did so far.
    pub fn stats(&self) -> FollowStats {
        self.stats
    }

    /// Notes an event of packet `skb`: its generation, and whether it is selected.
    fn packet_seen(&mut self, skb: u64, timestamp: Option<u64>, release: u64) -> (u64, bool) {
        let window = self.window;
        let generations = &mut self.generations;
        let state = self.packets.entry(skb).or_insert_with(|| {
            self.packet_expiry.push_back((release, skb));
            *generations += 1;
            PacketState {
                generation: *generations,
                last: release,
                selected: false,
                pending: VecDeque::new(),
            }
        });
        if timestamp.is_some_and(|ts| ts > state.last.saturating_add(window)) {
            // Unseen for longer than the window: a new packet with the same id.
            *generations += 1;
            state.generation = *generations;
            state.selected = false;
            state.pending.clear();
        }
        state.last = state.last.max(release);
        (state.generation, state.selected)
    }

    /// Marks a connection selected as used now.
    fn use_conn(&mut self, id: u64) {
        self.clock += 1;
        if let Some(state) = self.conns.get_mut(&id) {
            state.used = self.clock;
            self.conn_uses.push_back((self.clock, id));
        }
    }

    /// Selects the packet and connection of a kept event, and whatever the held events
    /// of those reach in turn (their other packets and connections).
    fn select(&mut self, packet: Option<Reach>, conn: Option<u64>) {
        let mut work: Vec<Reach> = packet.into_iter().collect();
        work.extend(conn.map(Reach::Conn));
        while let Some(reach) = work.pop() {
            let pending = match reach {
                Reach::Packet(skb, generation) => match self.packets.get_mut(&skb) {
                    Some(state) if state.generation == generation && !state.selected => {
                        state.selected = true;
                        std::mem::take(&mut state.pending)
                    }
                    _ => continue,
                },
                Reach::Conn(id) => {
                    let state = self.conns.entry(id).or_default();
                    if state.selected {
                        continue;
                    }
                    state.selected = true;
                    self.selected_conns += 1;
                    let pending = std::mem::take(&mut state.pending);
                    self.use_conn(id);
                    pending
                }
            };
            for seq in pending {
                let Some(held) = seq
                    .checked_sub(self.base)
                    .and_then(|i| self.held.get_mut(i as usize))
                else {
                    continue;
                };
                if !held.keep {
                    held.keep = true;
                    work.extend(held.packet.map(|(s, g)| Reach::Packet(s, g)));
                    work.extend(held.conn.map(Reach::Conn));
                }
            }
        }
    }

    /// Lets out the held events whose window has passed, and the oldest while over the
    /// bound on events held.
    fn let_out<E>(&mut self, sink: &mut impl FnMut(Event, bool) -> Result<(), E>) -> Result<(), E> {
        while let Some(front) = self.held.front() {
            if !self.watermark.closes(front.release, self.window) {
                if self.held.len() <= self.limits.max_events {
                    break;
                }
                self.stats.decided_early += u64::from(!front.keep);
            }
            let Some(held) = self.held.pop_front() else {
                break;
            };
            let seq = self.base;
            self.base += 1;
            if let Some(state) = held.packet.and_then(|(skb, _)| self.packets.get_mut(&skb)) {
                if state.pending.front() == Some(&seq) {
                    state.pending.pop_front();
                }
            }
            if let Some(id) = held.conn {
                if let Some(state) = self.conns.get_mut(&id) {
                    if state.pending.front() == Some(&seq) {
                        state.pending.pop_front();
                    }
                    if !state.selected && state.pending.is_empty() {
                        self.conns.remove(&id);
                    }
                }
            }
            self.stats.kept += u64::from(held.keep);
            sink(held.event, held.keep)?;
        }
        Ok(())
    }

    /// Forgets the packets that ended (unseen for the window), and the oldest while over
    /// the bound on packets.
    fn forget_packets(&mut self) {
        while let Some(&(queued, skb)) = self.packet_expiry.front() {
            let over = self.packets.len() > self.limits.max_open;
            if !over && !self.watermark.closes(queued, self.window) {
                break;
            }
            self.packet_expiry.pop_front();
            let last = self.packets.get(&skb).map_or(queued, |s| s.last);
            if last > queued && !over && !self.watermark.closes(last, self.window) {
                // Seen again since: back in the queue at its last sighting.
                self.packet_expiry.push_back((last, skb));
                continue;
            }
            if let Some(state) = self.packets.remove(&skb) {
                if state.selected && !self.watermark.closes(state.last, self.window) {
                    self.stats.packets_forgotten += 1;
                }
            }
        }
    }

    /// Forgets the least recently seen selected connections while over the bound.
    fn forget_conns(&mut self) {
        while self.selected_conns > self.limits.max_open {
            let Some((used, id)) = self.conn_uses.pop_front() else {
                break;
            };
            let Some(state) = self.conns.get_mut(&id) else {
                continue;
            };
            if !state.selected || state.used != used {
                continue;
            }
            state.selected = false;
            self.selected_conns -= 1;
            self.stats.conns_forgotten += 1;
            if state.pending.is_empty() {
                self.conns.remove(&id);
            }
        }
        if self.conn_uses.len() > self.selected_conns.saturating_mul(2).max(1024) {
            // Most entries are stale: keep one per selected connection.
            let mut uses: Vec<(u64, u64)> = self
                .conns
                .iter()
                .filter(|(_, s)| s.selected)
                .map(|(&id, s)| (s.used, id))
                .collect();
            uses.sort_unstable();
            self.conn_uses = uses.into();
        }
    }
}

#[cfg(test)]
mod tests;
