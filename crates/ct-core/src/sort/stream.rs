//! `sort` over a stream: packet groups written as soon as no event can join them.

use std::collections::{BTreeMap, HashMap};

use super::PacketGroup;
use crate::limits::{order_key, Watermark};
use crate::{Event, StreamLimits, StreamStats};

/// Place of a group in the output: the order key of its earliest event.
type GroupKey = (bool, u64, u64);

/// A packet's events read so far, each with its place in the input.
#[derive(Debug)]
struct OpenGroup {
    first: GroupKey,
    last_ts: u64,
    events: Vec<(u64, Event)>,
}

/// What waits in output order: a packet's group, or an event without tracking ids (a
/// group of its own, which nothing can join).
#[derive(Debug)]
enum Slot {
    Packet(u64),
    Alone(Box<Event>),
}

/// [`group_packets`](crate::group_packets) for inputs of any size: events go in one at a
/// time ([`push`](PacketSorter::push)) and each [`PacketGroup`] comes out, in the same
/// order and with the same events, once the window ([`StreamLimits`]) says no event can
/// join it; [`finish`](PacketSorter::finish) writes the rest. Memory depends on the limits,
/// not on the input: at most [`StreamLimits::max_events`] events are held
/// ([`held_events`](PacketSorter::held_events)). Events without a timestamp, which the
/// order puts last, are held to the end while they fit that bound; past it they are
/// written early ([`StreamStats::untimed_early`]).
///
/// ```
/// use ct_core::{Event, PacketSorter, StreamLimits, Tracking};
///
/// let at = |timestamp, skb| Event {
///     timestamp: Some(timestamp),
///     tracking: Some(Tracking { skb, conn: None, parent_conn: None }),
///     ..Event::default()
/// };
/// let mut sorter = PacketSorter::new(StreamLimits::default());
/// let mut firsts = Vec::new();
/// let mut sink = |g: &ct_core::PacketGroup<'_>| -> Result<(), ()> {
///     firsts.push((g.skb, g.events.len()));
///     Ok(())
/// };
/// for event in [at(30, 2), at(10, 1), at(20, 2), at(40, 1)] {
///     sorter.push(event, &mut sink).unwrap();
/// }
/// let stats = sorter.finish(&mut sink).unwrap();
/// assert_eq!(firsts, [(Some(1), 2), (Some(2), 2)]);
/// assert!(stats.exact());
/// ```
#[derive(Debug)]
pub struct PacketSorter {
    limits: StreamLimits,
    window: u64,
    watermark: Watermark,
    order: BTreeMap<GroupKey, Slot>,
    open: HashMap<u64, OpenGroup>,
    /// Events without a timestamp, in input order.
    untimed: Vec<(u64, Event)>,
    /// Events held: in open groups, alone in the order, and without a timestamp.
    held: usize,
    stats: StreamStats,
}

impl PacketSorter {
    /// A sorter with these limits.
    pub fn new(limits: StreamLimits) -> Self {
        PacketSorter {
            limits,
            window: limits.window_ns(),
            watermark: Watermark::default(),
            order: BTreeMap::new(),
            open: HashMap::new(),
            untimed: Vec::new(),
            held: 0,
            stats: StreamStats::default(),
        }
    }

    /// Events held now, waiting to be written: never more than
    /// [`StreamLimits::max_events`] between two calls.
    pub fn held_events(&self) -> usize {
        self.held
    }

    /// Takes the next event of the input; gives `sink` every group that is now complete.
    pub fn push<E>(
        &mut self,
        event: Event,
        sink: &mut impl FnMut(&PacketGroup<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let seq = self.stats.events;
        self.stats.events += 1;
        self.held += 1;
        let Some(ts) = event.timestamp else {
            self.untimed.push((seq, event));
            return self.write_complete(None, sink);
        };
        if self.watermark.advance(ts, self.window) {
            self.stats.late += 1;
        }
        let key = order_key(Some(ts), seq);
        let mut overfull = None;
        match event.tracking.map(|t| t.skb) {
            None => {
                self.order.insert(key, Slot::Alone(Box::new(event)));
            }
            Some(skb) => match self.open.get_mut(&skb) {
                Some(group) => {
                    if key < group.first {
                        self.order.remove(&group.first);
                        self.order.insert(key, Slot::Packet(skb));
                        group.first = key;
                    }
                    group.last_ts = group.last_ts.max(ts);
                    group.events.push((seq, event));
                    if group.events.len() >= self.limits.max_packet_events {
                        overfull = Some(skb);
                    }
                }
                None => {
                    self.order.insert(key, Slot::Packet(skb));
                    self.open.insert(
                        skb,
                        OpenGroup {
                            first: key,
                            last_ts: ts,
                            events: vec![(seq, event)],
                        },
                    );
                }
            },
        }
        self.write_complete(overfull, sink)
    }

    /// Writes the groups at the head of the order that are complete, and more while over
    /// a bound: open groups, events held, or `overfull`'s events (a group that reached
    /// the bound per group, written with every group before it). Past the bound on
    /// events held with mostly events without a timestamp, those are written.
    fn write_complete<E>(
        &mut self,
        overfull: Option<u64>,
        sink: &mut impl FnMut(&PacketGroup<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some((_, head)) = self.order.first_key_value() {
            let last = match head {
                Slot::Alone(event) => event.timestamp.unwrap_or(0),
                Slot::Packet(skb) => self.open.get(skb).map_or(0, |g| g.last_ts),
            };
            if !self.watermark.closes(last, self.window) {
                let over = self.order.len() > self.limits.max_open
                    || overfull.is_some_and(|skb| self.open.contains_key(&skb))
                    || (self.held > self.limits.max_events
                        && self.untimed.len().saturating_mul(2) < self.held);
                if !over {
                    break;
                }
                self.stats.forced += 1;
            }
            if let Some((_, slot)) = self.order.pop_first() {
                self.write_slot(slot, Vec::new(), sink)?;
            }
        }
        if self.held > self.limits.max_events {
            self.write_untimed(sink)?;
        }
        Ok(())
    }

    /// Writes the events without a timestamp held so far, grouped by packet in input
    /// order (as [`finish`](Self::finish) writes those whose packet has no open group).
    fn write_untimed<E>(
        &mut self,
        sink: &mut impl FnMut(&PacketGroup<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let untimed = std::mem::take(&mut self.untimed);
        self.held -= untimed.len();
        self.stats.untimed_early += untimed.len() as u64;
        for (skb, events) in untimed_groups(untimed.iter().map(|(_, e)| e)) {
            sink(&PacketGroup { skb, events })?;
        }
        Ok(())
    }

    /// Writes one group, with `later` (events without a timestamp) after its own.
    fn write_slot<E>(
        &mut self,
        slot: Slot,
        later: Vec<&Event>,
        sink: &mut impl FnMut(&PacketGroup<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        match slot {
            Slot::Alone(event) => {
                self.held -= 1;
                sink(&PacketGroup {
                    skb: None,
                    events: vec![&*event],
                })
            }
            Slot::Packet(skb) => {
                let Some(mut group) = self.open.remove(&skb) else {
                    return Ok(());
                };
                self.held -= group.events.len();
                group
                    .events
                    .sort_by_key(|(seq, e)| order_key(e.timestamp, *seq));
                let mut events: Vec<&Event> = group.events.iter().map(|(_, e)| e).collect();
                events.extend(later);
                sink(&PacketGroup {
                    skb: Some(skb),
                    events,
                })
            }
        }
    }

    /// Ends the input: writes every group still open, then those of events without a
    /// timestamp, and says what the bounds did.
    pub fn finish<E>(
        mut self,
        sink: &mut impl FnMut(&PacketGroup<'_>) -> Result<(), E>,
    ) -> Result<StreamStats, E> {
        let untimed = std::mem::take(&mut self.untimed);
        // Untimed events join the open group of their packet, else groups of their own
        // after every timed one, in input order.
        let mut joining: HashMap<u64, Vec<&Event>> = HashMap::new();
        let mut own: Vec<&Event> = Vec::new();
        for (_, event) in &untimed {
            match event.tracking.map(|t| t.skb) {
                Some(skb) if self.open.contains_key(&skb) => {
                    joining.entry(skb).or_default().push(event);
                }
                _ => own.push(event),
            }
        }
        let own = untimed_groups(own);
        while let Some((_, slot)) = self.order.pop_first() {
            let later = match &slot {
                Slot::Packet(skb) => joining.remove(skb).unwrap_or_default(),
                Slot::Alone(_) => Vec::new(),
            };
            self.write_slot(slot, later, sink)?;
        }
        for (skb, events) in own {
            sink(&PacketGroup { skb, events })?;
        }
        Ok(self.stats)
    }

    /// What the bounds did so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }
}

/// Events without a timestamp in groups of their own: by packet, in input order of each
/// packet's first one; each event without tracking ids alone.
fn untimed_groups<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> Vec<(Option<u64>, Vec<&'a Event>)> {
    let mut own: Vec<(Option<u64>, Vec<&Event>)> = Vec::new();
    let mut own_index: HashMap<u64, usize> = HashMap::new();
    for event in events {
        match event.tracking.map(|t| t.skb) {
            Some(skb) => {
                let i = *own_index.entry(skb).or_insert_with(|| {
                    own.push((Some(skb), Vec::new()));
                    own.len() - 1
                });
                own[i].1.push(event);
            }
            None => own.push((None, vec![event])),
        }
    }
    own
}
