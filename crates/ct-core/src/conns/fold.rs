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
/// counted as unattributed.
///
/// [`connections`] folds the events of a file into one [`Connection`] per conntrack entry:
/// its tuples, the NAT it does spelled out ([`Nat`]), its zone, mark, labels, helper and
/// parent, and the timeline of what its packets saw.
///
/// # Which events, which connection
///
/// Every event with a ct section that names a connection (`ct.base`, not a CT template)
/// counts. Events are grouped by [`Tracking::conn`](crate::Tracking) (one id per conntrack
/// entry); an event without that id is grouped by its original tuple and zone instead
/// ([`ConnKey::Tuple`]). Events are taken in time order (a stable sort by timestamp, events
/// without one last, in file order), and connections are listed in the order of their first
/// event.
///
/// - **Tuples, status, zone, mark, labels, helper, timeout** are those of the last event
///   (NAT sets the reply tuple up while the first packet passes the NAT hooks; after that it
///   stays).
/// - **NAT** is derived from the last tuples (see [`Nat::from_conn`]): SNAT when the reply
///   destination differs from the original source, DNAT when the reply source differs from
///   the original destination, in address or port (ICMP: echo id for SNAT); the
///   `IPS_SRC_NAT`/`IPS_DST_NAT` status bits are reported beside, and the text says so when
///   they disagree with the tuples.
/// - **Parent**: the parent connection id (`tracking.parent_conn`) and its entry as a RELATED
///   event carried it (`ct.parent`), or else as the parent's own events in the file show it.
/// - **Timeline**: first and last timestamp; each `ct_state`, `tcp_state` and `sctp_state`
///   value once, in order of first appearance, with the timestamp and probe where it was
///   first seen (`ct_state` alternates between ESTABLISHED and REPLY for the whole life of a
///   connection: listing every change would drown the ones that matter).
/// - **Packets** per direction: original = ct_state NEW, ESTABLISHED or RELATED; reply =
///   REPLY or RELATED_REPLY. Distinct packets are counted by `tracking.skb` (one packet seen
///   at five probes counts once); events without tracking ids count one each.
/// - **Drops**: events that are drops ([`Event::is_drop`](crate::Event::is_drop): a `drop` section, or, in files
///   written before there was one, the `skb:kfree_skb` probe), counted per reason
///   (`drop.reason`) in order of first appearance; drops without a reason are counted in
///   the total only.
/// - **nftables drops**: `drop` verdicts of nftables' trace (events with an `nft` section,
///   `collect --nft`) are charged to the connection their `tracking.conn` names, grouped by
///   rule (or chain policy) and by the ctinfo state the packet had: the state the first
///   event with a ct section of the same packet (same `tracking.skb`) showed, left out when
///   none had one. They are not counted in `events`, `packets` or `drops`, which count what
///   the BPF probes saw (the same packet dropped also reaches `skb:kfree_skb`, with reason
///   `NETFILTER_DROP`). An nft drop whose packet names no connection of the file (no
///   `tracking.conn`, because the trace could not be joined to a BPF event of the packet or
///   the packet had no conntrack entry, or a connection id without any event with a ct
///   section) is counted in [`Connections::unattributed_nft_drops`], never dropped silently.
///
/// The work is one sort and one hash map pass: `O(n log n)` for `n` events.
///
/// # Text
///
/// Multi-line ([`Format::Text`](crate::Format::Text)`(Layout::MultiLine)`), connections separated by a blank line; timeline
/// times are relative to the connection's first event:
///
/// ```text
/// conn a1
///   tcp (TIME_WAIT) orig [10.0.1.100.54321 > 93.184.216.34.80]
///       reply [93.184.216.34.80 > 203.0.113.50.54321] mark 0x0
///   status 0x1be (SEEN_REPLY|ASSURED|CONFIRMED|SRC_NAT|SRC_NAT_DONE|DST_NAT_DONE)
///   nat snat 10.0.1.100 -> 203.0.113.50
///   first 1000 last 9000 (8.000us) events 12
///   packets orig 5 reply 4 drops 1 (NETFILTER_DROP 1)
///   ct_state  NEW         +0ns     [tp] net:netif_receive_skb
///             REPLY       +2.000us [tp] net:netif_receive_skb
///             ESTABLISHED +4.000us [tp] net:netif_receive_skb
///   tcp_state SYN_SENT    +0ns     [tp] net:netif_receive_skb
///             ...
/// ```
///
/// The drop count is followed by the count of each reason in parentheses when the drops
/// had any (`drops 3 (NETFILTER_DROP 2, NO_SOCKET 1)`). Each nftables rule or policy that
/// dropped packets of the connection has a line of its own after that one:
/// `dropped by inet f in handle 3: tcp dport 81 drop, ct state NEW`
/// (`dropped by inet f in policy` for a chain's policy; the rule text when known; the ct
/// state when known), ending with ` (N packets)` when it dropped more than one.
///
/// nftables drops that no connection can be charged with come last, as one more entry:
///
/// ```text
/// unattributed nft drops (no connection in this file)
///   dropped by inet f in handle 3: tcp dport 81 drop (2 packets)
/// ```
///
/// Single-line ([`Format::Text`](crate::Format::Text)`(Layout::SingleLine)`): the same parts on one line per connection (and
/// for the unattributed nft drops), each timeline as `STATE (+time [type] probe) -> STATE
/// (...)`. A time or probe that is not known is left out.
///
/// # JSON
///
/// [`Format::Json`](crate::Format::Json) writes one object per connection and line. Every key is always present
/// (`null` when unknown), in this order:
///
/// | key | value |
/// |-----|-------|
/// | `conn` | connection id (`tracking.conn`), or `null` when grouped by tuple |
/// | `zone_id`, `zone_dir` | as in the events' ct section |
/// | `orig`, `reply` | tuples, as in the events' ct section |
/// | `tcp_state`, `sctp_state` | last state, or `null` |
/// | `status` | last `ct_status`, the kernel's integer |
/// | `mark` | integer or `null` |
/// | `labels` | `"0x…"` hex string (as in the events) or `null` |
/// | `helper` | helper name or `null` |
/// | `timeout` | seconds left at the last event, or `null` |
/// | `nat` | `{"snat": T, "dnat": T, "status_snat": bool, "status_dnat": bool}`; `T` is `null` or `{"from": E, "to": E}`, `E` is `{"addr": "10.0.0.5", "port": 40000}` (`port`: the tcp/udp/sctp port, the ICMP echo id for SNAT of icmp/icmpv6, else `null`) |
/// | `parent` | `null` or `{"conn": id or null, "orig": tuple or null, "reply": tuple or null}` |
/// | `first_seen`, `last_seen` | timestamps (ns) or `null` |
/// | `events` | number of events |
/// | `packets` | `{"orig": n, "reply": n}` |
/// | `drops` | number of drop events |
/// | `drop_reasons` | `{"NETFILTER_DROP": n, ...}`: drops per reason, in order of first appearance (`{}` when none had one) |
/// | `nft_drops` | array of nftables drops, one per rule or policy and ct state, in order of first appearance: `{"family": "inet", "table": T, "chain": C, "type": "rule" or "policy", "handle": n or null, "rule": text or null, "ct_state": S or null, "packets": n}` |
/// | `ct_states`, `tcp_states`, `sctp_states` | arrays of `{"state": S, "timestamp": ns or null, "probe": {"type": "tp", "name": "..."} or null}`, in order of first appearance; `S` as in the events (`"new"`, `"SYN_SENT"`) |
///
/// When there are unattributed nftables drops, one more line follows the connections:
/// `{"unattributed_nft_drops": [...]}`, the array as `nft_drops` above.
///
/// # Example
///
/// ```
/// use ct_core::{connections, write_conns, CtConnEvent, CtEvent, CtIp, CtProto, CtState};
/// use ct_core::{CtStatus, CtTuple, Event, Format, Layout, Tracking, ZoneDir};
///
/// let tuple = |src: &str, dst: &str, sport, dport| CtTuple {
///     ip: CtIp::new(src.parse().unwrap(), dst.parse().unwrap()),
///     proto: CtProto::Udp { sport, dport },
/// };
/// let event = Event {
///     timestamp: Some(1000),
///     tracking: Some(Tracking { skb: 7, conn: Some(0xa1), parent_conn: None }),
///     ct: Some(CtEvent {
///         state: CtState::New,
///         base: Some(CtConnEvent {
///             zone_id: 0,
///             zone_dir: ZoneDir::None,
///             orig: tuple("10.0.0.5", "8.8.8.8", 40000, 53),
///             reply: tuple("8.8.8.8", "203.0.113.50", 53, 40000),
///             tcp_state: None,
///             mark: None,
///             labels: None,
///             ct_status: CtStatus::CONFIRMED | CtStatus::SRC_NAT | CtStatus::SRC_NAT_DONE,
///             sctp_state: None,
///             helper: None,
///             timeout: None,
///         }),
///         parent: None,
///     }),
///     ..Event::default()
/// };
/// let conns = connections(&[event]);
/// assert_eq!(conns.conns.len(), 1);
/// assert_eq!(conns.conns[0].nat.to_string(), "snat 10.0.0.5 -> 203.0.113.50");
///
/// let mut line = String::new();
/// write_conns(&mut line, &conns, Format::Text(Layout::SingleLine)).unwrap();
/// assert!(line.starts_with("conn a1 udp orig [10.0.0.5.40000 > 8.8.8.8.53]"));
/// ```
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
