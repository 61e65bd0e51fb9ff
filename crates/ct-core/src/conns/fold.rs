//! Folding a file's events into connections.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::key::event_conn;
use super::{ConnKey, Connection, Connections, Nat, NftDrop, PacketCounts, ParentConn, Transition};
use crate::sort::time_ordered;
use crate::{CtConnEvent, CtEvent, CtState, Event, NftTrace, SctpState, TcpState};

/// Counts one more drop by `by` with `ct_state` in `drops`.
fn count_nft_drop(drops: &mut Vec<NftDrop>, by: &NftTrace, ct_state: Option<CtState>) {
    match drops
        .iter_mut()
        .find(|d| d.by == *by && d.ct_state == ct_state)
    {
        Some(drop) => drop.packets += 1,
        None => drops.push(NftDrop {
            by: by.clone(),
            ct_state,
            packets: 1,
        }),
    }
}

/// A connection being folded.
struct Acc<'a> {
    key: ConnKey,
    entry: &'a CtConnEvent,
    parent_id: Option<u64>,
    parent_entry: Option<&'a CtConnEvent>,
    first_seen: Option<u64>,
    last_seen: Option<u64>,
    events: u64,
    orig_skbs: HashSet<u64>,
    reply_skbs: HashSet<u64>,
    untracked: PacketCounts,
    drops: u64,
    drop_reasons: Vec<(Arc<str>, u64)>,
    ct_states: Vec<Transition<CtState>>,
    tcp_states: Vec<Transition<TcpState>>,
    sctp_states: Vec<Transition<SctpState>>,
    nft_drops: Vec<NftDrop>,
}

/// Adds `state` where `event` saw it, unless it was seen before.
fn note<S: PartialEq>(list: &mut Vec<Transition<S>>, state: S, event: &Event) {
    if !list.iter().any(|t| t.state == state) {
        list.push(Transition {
            state,
            timestamp: event.timestamp,
            probe: event.probe.clone(),
        });
    }
}

impl<'a> Acc<'a> {
    fn new(key: ConnKey, entry: &'a CtConnEvent) -> Self {
        Acc {
            key,
            entry,
            parent_id: None,
            parent_entry: None,
            first_seen: None,
            last_seen: None,
            events: 0,
            orig_skbs: HashSet::new(),
            reply_skbs: HashSet::new(),
            untracked: PacketCounts::default(),
            drops: 0,
            drop_reasons: Vec::new(),
            ct_states: Vec::new(),
            tcp_states: Vec::new(),
            sctp_states: Vec::new(),
            nft_drops: Vec::new(),
        }
    }

    fn add(&mut self, event: &'a Event, ct: &'a CtEvent, base: &'a CtConnEvent) {
        self.entry = base;
        self.events += 1;
        if let Some(ts) = event.timestamp {
            self.first_seen.get_or_insert(ts);
            self.last_seen = Some(ts);
        }
        if let Some(id) = event.tracking.and_then(|t| t.parent_conn) {
            self.parent_id = Some(id);
        }
        if let Some(parent) = ct.parent.as_ref().filter(|p| !p.is_template()) {
            self.parent_entry = Some(parent);
        }
        let direction = match ct.state {
            CtState::New | CtState::Established | CtState::Related => {
                Some((&mut self.orig_skbs, &mut self.untracked.orig))
            }
            CtState::Reply | CtState::RelatedReply => {
                Some((&mut self.reply_skbs, &mut self.untracked.reply))
            }
            CtState::Untracked => None,
        };
        if let Some((skbs, untracked)) = direction {
            match event.tracking {
                Some(t) => {
                    skbs.insert(t.skb);
                }
                None => *untracked += 1,
            }
        }
        if event.is_drop() {
            self.drops += 1;
            if let Some(reason) = event.drop.as_ref().and_then(|d| d.reason.as_ref()) {
                match self.drop_reasons.iter_mut().find(|(r, _)| r == reason) {
                    Some((_, n)) => *n += 1,
                    None => self.drop_reasons.push((Arc::clone(reason), 1)),
                }
            }
        }
        note(&mut self.ct_states, ct.state, event);
        if let Some(state) = base.tcp_state {
            note(&mut self.tcp_states, state, event);
        }
        if let Some(state) = base.sctp_state {
            note(&mut self.sctp_states, state, event);
        }
    }

    fn finish(self, by_id: &HashMap<u64, CtConnEvent>) -> Connection {
        let parent =
            (self.parent_id.is_some() || self.parent_entry.is_some()).then(|| ParentConn {
                conn: self.parent_id,
                entry: self
                    .parent_entry
                    .cloned()
                    .or_else(|| by_id.get(&self.parent_id?).cloned()),
            });
        Connection {
            key: self.key,
            entry: self.entry.clone(),
            nat: Nat::from_conn(self.entry),
            parent,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            events: self.events,
            packets: PacketCounts {
                orig: self.orig_skbs.len() as u64 + self.untracked.orig,
                reply: self.reply_skbs.len() as u64 + self.untracked.reply,
            },
            drops: self.drops,
            drop_reasons: self.drop_reasons,
            ct_states: self.ct_states,
            tcp_states: self.tcp_states,
            sctp_states: self.sctp_states,
            nft_drops: self.nft_drops,
        }
    }
}

/// Folds events into one [`Connection`] per conntrack entry, in the order of their first
/// event; events that name no connection are left out, except nftables drops, which are
/// counted as unattributed. See the [module docs](crate::conns).
pub fn connections<'a, I>(events: I) -> Connections
where
    I: IntoIterator<Item = &'a Event>,
{
    let events = time_ordered(events);
    let mut accs: Vec<Acc<'a>> = Vec::new();
    let mut index: HashMap<ConnKey, usize> = HashMap::new();
    // The ct state each packet first showed, for the nftables drops of the packet.
    let mut packet_states: HashMap<u64, CtState> = HashMap::new();
    let mut nft_drops: Vec<&'a Event> = Vec::new();
    for &event in &events {
        if event.nft.as_ref().is_some_and(NftTrace::is_drop) {
            nft_drops.push(event);
        }
        if let (Some(tracking), Some(ct)) = (event.tracking, &event.ct) {
            packet_states.entry(tracking.skb).or_insert(ct.state);
        }
        let (Some(ct), Some(key)) = (event.ct.as_ref(), ConnKey::of(event)) else {
            continue;
        };
        let Some(base) = event_conn(event) else {
            continue;
        };
        let i = *index.entry(key).or_insert_with(|| {
            accs.push(Acc::new(key, base));
            accs.len() - 1
        });
        accs[i].add(event, ct, base);
    }
    let mut unattributed_nft_drops = Vec::new();
    for event in nft_drops {
        let Some(by) = &event.nft else { continue };
        let ct_state = event
            .tracking
            .and_then(|t| packet_states.get(&t.skb).copied());
        let acc = event
            .tracking
            .and_then(|t| index.get(&ConnKey::Id(t.conn?)))
            .map(|&i| &mut accs[i]);
        match acc {
            Some(acc) => count_nft_drop(&mut acc.nft_drops, by, ct_state),
            None => count_nft_drop(&mut unattributed_nft_drops, by, ct_state),
        }
    }
    // Parents known only through their own events.
    let by_id: HashMap<u64, CtConnEvent> = accs
        .iter()
        .filter_map(|a| Some((a.key.id()?, a.entry.clone())))
        .collect();
    Connections {
        conns: accs.into_iter().map(|a| a.finish(&by_id)).collect(),
        unattributed_nft_drops,
    }
}
