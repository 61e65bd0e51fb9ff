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
/// not on the input: events without a timestamp, which the order puts last, are the
/// exception and are held to the end.
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
            stats: StreamStats::default(),
        }
    }

    /// Takes the next event of the input; gives `sink` every group that is now complete.
    pub fn push<E>(
        &mut self,
        event: Event,
        sink: &mut impl FnMut(&PacketGroup<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let seq = self.stats.events;
        self.stats.events += 1;
        let Some(ts) = event.timestamp else {
            self.untimed.push((seq, event));
            return Ok(());
        };
        if self.watermark.advance(ts, self.window) {
            self.stats.late += 1;
        }
        let key = order_key(Some(ts), seq);
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
        self.write_complete(sink)
    }

    /// Writes the groups at the head of the order that are complete, and more while over
    /// the bound on open groups.
    fn write_complete<E>(
        &mut self,
        sink: &mut impl FnMut(&PacketGroup<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some((_, head)) = self.order.first_key_value() {
            let last = match head {
                Slot::Alone(event) => event.timestamp.unwrap_or(0),
                Slot::Packet(skb) => self.open.get(skb).map_or(0, |g| g.last_ts),
            };
            if !self.watermark.closes(last, self.window) {
                if self.order.len() <= self.limits.max_open {
                    break;
                }
                self.stats.forced += 1;
            }
            if let Some((_, slot)) = self.order.pop_first() {
                self.write_slot(slot, Vec::new(), sink)?;
            }
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
            Slot::Alone(event) => sink(&PacketGroup {
                skb: None,
                events: vec![&*event],
            }),
            Slot::Packet(skb) => {
                let Some(mut group) = self.open.remove(&skb) else {
                    return Ok(());
                };
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
        let mut own: Vec<(Option<u64>, Vec<&Event>)> = Vec::new();
        let mut own_index: HashMap<u64, usize> = HashMap::new();
        for (_, event) in &untimed {
            match event.tracking.map(|t| t.skb) {
                Some(skb) if self.open.contains_key(&skb) => {
                    joining.entry(skb).or_default().push(event);
                }
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
