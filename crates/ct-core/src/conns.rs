//! Follow a connection: one summary per conntrack entry over its life (`ct-cli conns`).
//!
//! [`connections`] folds the events of a file into one [`Connection`] per conntrack entry:
//! its tuples, the NAT it does spelled out ([`Nat`]), its zone, mark, labels, helper and
//! parent, and the timeline of what its packets saw.
//!
//! # Which events, which connection
//!
//! Every event with a ct section that names a connection (`ct.base`, not a CT template)
//! counts. Events are grouped by [`Tracking::conn`](crate::Tracking) (one id per conntrack
//! entry); an event without that id is grouped by its original tuple and zone instead
//! ([`ConnKey::Tuple`]). Events are taken in time order (a stable sort by timestamp, events
//! without one last, in file order), and connections are listed in the order of their first
//! event.
//!
//! - **Tuples, status, zone, mark, labels, helper, timeout** are those of the last event
//!   (NAT sets the reply tuple up while the first packet passes the NAT hooks; after that it
//!   stays).
//! - **NAT** is derived from the last tuples (see [`Nat::from_conn`]): SNAT when the reply
//!   destination differs from the original source, DNAT when the reply source differs from
//!   the original destination, in address or port (ICMP: echo id for SNAT); the
//!   `IPS_SRC_NAT`/`IPS_DST_NAT` status bits are reported beside, and the text says so when
//!   they disagree with the tuples.
//! - **Parent**: the parent connection id (`tracking.parent_conn`) and its entry as a RELATED
//!   event carried it (`ct.parent`), or else as the parent's own events in the file show it.
//! - **Timeline**: first and last timestamp; each `ct_state`, `tcp_state` and `sctp_state`
//!   value once, in order of first appearance, with the timestamp and probe where it was
//!   first seen (`ct_state` alternates between ESTABLISHED and REPLY for the whole life of a
//!   connection: listing every change would drown the ones that matter).
//! - **Packets** per direction: original = ct_state NEW, ESTABLISHED or RELATED; reply =
//!   REPLY or RELATED_REPLY. Distinct packets are counted by `tracking.skb` (one packet seen
//!   at five probes counts once); events without tracking ids count one each.
//! - **Drops**: events that are drops ([`Event::is_drop`]: a `drop` section, or, in files
//!   written before there was one, the `skb:kfree_skb` probe), counted per reason
//!   (`drop.reason`) in order of first appearance; drops without a reason are counted in
//!   the total only.
//! - **nftables drops**: `drop` verdicts of nftables' trace (events with an `nft` section,
//!   `collect --nft`) are charged to the connection their `tracking.conn` names, grouped by
//!   rule (or chain policy) and by the ctinfo state the packet had: the state the first
//!   event with a ct section of the same packet (same `tracking.skb`) showed, left out when
//!   none had one. They are not counted in `events`, `packets` or `drops`, which count what
//!   the BPF probes saw (the same packet dropped also reaches `skb:kfree_skb`, with reason
//!   `NETFILTER_DROP`). An nft drop whose packet names no connection of the file (no
//!   `tracking.conn`, because the trace could not be joined to a BPF event of the packet or
//!   the packet had no conntrack entry, or a connection id without any event with a ct
//!   section) is counted in [`Connections::unattributed_nft_drops`], never dropped silently.
//!
//! The work is one sort and one hash map pass: `O(n log n)` for `n` events.
//!
//! # Text
//!
//! Multi-line ([`Format::Multiline`]), connections separated by a blank line; timeline
//! times are relative to the connection's first event:
//!
//! ```text
//! conn a1
//!   tcp (TIME_WAIT) orig [10.0.1.100.54321 > 93.184.216.34.80]
//!       reply [93.184.216.34.80 > 203.0.113.50.54321] mark 0x0
//!   status 0x1be (SEEN_REPLY|ASSURED|CONFIRMED|SRC_NAT|SRC_NAT_DONE|DST_NAT_DONE)
//!   nat snat 10.0.1.100 -> 203.0.113.50
//!   first 1000 last 9000 (8.000us) events 12
//!   packets orig 5 reply 4 drops 1 (NETFILTER_DROP 1)
//!   ct_state  NEW         +0ns     [tp] net:netif_receive_skb
//!             REPLY       +2.000us [tp] net:netif_receive_skb
//!             ESTABLISHED +4.000us [tp] net:netif_receive_skb
//!   tcp_state SYN_SENT    +0ns     [tp] net:netif_receive_skb
//!             ...
//! ```
//!
//! The drop count is followed by the count of each reason in parentheses when the drops
//! had any (`drops 3 (NETFILTER_DROP 2, NO_SOCKET 1)`). Each nftables rule or policy that
//! dropped packets of the connection has a line of its own after that one:
//! `dropped by inet f in handle 3: tcp dport 81 drop, ct state NEW`
//! (`dropped by inet f in policy` for a chain's policy; the rule text when known; the ct
//! state when known), ending with ` (N packets)` when it dropped more than one.
//!
//! nftables drops that no connection can be charged with come last, as one more entry:
//!
//! ```text
//! unattributed nft drops (no connection in this file)
//!   dropped by inet f in handle 3: tcp dport 81 drop (2 packets)
//! ```
//!
//! Single-line ([`Format::Singleline`]): the same parts on one line per connection (and
//! for the unattributed nft drops), each timeline as `STATE (+time [type] probe) -> STATE
//! (...)`. A time or probe that is not known is left out.
//!
//! # JSON
//!
//! [`Format::Json`] writes one object per connection and line. Every key is always present
//! (`null` when unknown), in this order:
//!
//! | key | value |
//! |-----|-------|
//! | `conn` | connection id (`tracking.conn`), or `null` when grouped by tuple |
//! | `zone_id`, `zone_dir` | as in the events' ct section |
//! | `orig`, `reply` | tuples, as in the events' ct section |
//! | `tcp_state`, `sctp_state` | last state, or `null` |
//! | `status` | last `ct_status`, the kernel's integer |
//! | `mark` | integer or `null` |
//! | `labels` | `"0x…"` hex string (as in the events) or `null` |
//! | `helper` | helper name or `null` |
//! | `timeout` | seconds left at the last event, or `null` |
//! | `nat` | `{"snat": T, "dnat": T, "status_snat": bool, "status_dnat": bool}`; `T` is `null` or `{"from": E, "to": E}`, `E` is `{"addr": "10.0.0.5", "port": 40000}` (`port`: the tcp/udp/sctp port, the ICMP echo id for SNAT of icmp/icmpv6, else `null`) |
//! | `parent` | `null` or `{"conn": id or null, "orig": tuple or null, "reply": tuple or null}` |
//! | `first_seen`, `last_seen` | timestamps (ns) or `null` |
//! | `events` | number of events |
//! | `packets` | `{"orig": n, "reply": n}` |
//! | `drops` | number of drop events |
//! | `drop_reasons` | `{"NETFILTER_DROP": n, ...}`: drops per reason, in order of first appearance (`{}` when none had one) |
//! | `nft_drops` | array of nftables drops, one per rule or policy and ct state, in order of first appearance: `{"family": "inet", "table": T, "chain": C, "type": "rule" or "policy", "handle": n or null, "rule": text or null, "ct_state": S or null, "packets": n}` |
//! | `ct_states`, `tcp_states`, `sctp_states` | arrays of `{"state": S, "timestamp": ns or null, "probe": {"type": "tp", "name": "..."} or null}`, in order of first appearance; `S` as in the events (`"new"`, `"SYN_SENT"`) |
//!
//! When there are unattributed nftables drops, one more line follows the connections:
//! `{"unattributed_nft_drops": [...]}`, the array as `nft_drops` above.
//!
//! # Example
//!
//! ```
//! use ct_core::conns::{connections, write_conns};
//! use ct_core::{CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, Event};
//! use ct_core::{Format, Tracking, ZoneDir};
//!
//! let tuple = |src: &str, dst: &str, sport, dport| CtTuple {
//!     ip: CtIp::new(src.parse().unwrap(), dst.parse().unwrap()),
//!     proto: CtProto::Udp { sport, dport },
//! };
//! let event = Event {
//!     timestamp: Some(1000),
//!     tracking: Some(Tracking { skb: 7, conn: Some(0xa1), parent_conn: None }),
//!     ct: Some(CtEvent {
//!         state: CtState::New,
//!         base: Some(CtConnEvent {
//!             zone_id: 0,
//!             zone_dir: ZoneDir::None,
//!             orig: tuple("10.0.0.5", "8.8.8.8", 40000, 53),
//!             reply: tuple("8.8.8.8", "203.0.113.50", 53, 40000),
//!             tcp_state: None,
//!             mark: None,
//!             labels: None,
//!             ct_status: CtStatus::CONFIRMED | CtStatus::SRC_NAT | CtStatus::SRC_NAT_DONE,
//!             sctp_state: None,
//!             helper: None,
//!             timeout: None,
//!         }),
//!         parent: None,
//!     }),
//!     ..Event::default()
//! };
//! let conns = connections(&[event]);
//! assert_eq!(conns.conns.len(), 1);
//! assert_eq!(conns.conns[0].nat.to_string(), "snat 10.0.0.5 -> 203.0.113.50");
//!
//! let mut line = String::new();
//! write_conns(&mut line, &conns, Format::Singleline).unwrap();
//! assert!(line.starts_with("conn a1 udp orig [10.0.0.5.40000 > 8.8.8.8.53]"));
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::output::{write_items, write_items_io};
use crate::render::{conn_body, Layout, Render};
use crate::sort::time_ordered;
use crate::{
    CtConnEvent, CtEvent, CtProto, CtState, CtStatus, CtTuple, Event, Format, NftTrace,
    NftTraceKind, ProbeInfo, SctpState, TcpState, ZoneDir,
};

/// The probe whose events are drops.
pub const DROP_PROBE: &str = "skb:kfree_skb";

/// What identifies a connection in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKey {
    /// The connection id (`tracking.conn`).
    Id(u64),
    /// Events without a connection id: the original tuple and zone.
    Tuple {
        orig: CtTuple,
        zone_id: u16,
        zone_dir: ZoneDir,
    },
}

impl ConnKey {
    /// The key of an event's connection, `None` when the event names no connection (no ct
    /// section, untracked, or a CT template).
    pub fn of(event: &Event) -> Option<ConnKey> {
        let base = event_conn(event)?;
        Some(match event.tracking.and_then(|t| t.conn) {
            Some(id) => ConnKey::Id(id),
            None => ConnKey::Tuple {
                orig: base.orig,
                zone_id: base.zone_id,
                zone_dir: base.zone_dir,
            },
        })
    }

    /// The connection id, when there is one.
    pub fn id(&self) -> Option<u64> {
        match *self {
            ConnKey::Id(id) => Some(id),
            ConnKey::Tuple { .. } => None,
        }
    }
}

/// The connection an event belongs to, if it names one.
fn event_conn(event: &Event) -> Option<&CtConnEvent> {
    event
        .ct
        .as_ref()?
        .base
        .as_ref()
        .filter(|base| !base.is_template())
}

// ---------------------------------------------------------------------------------------
// NAT

/// One side of a translation: an address and, for protocols that have one, a port (the ICMP
/// echo id for icmp/icmpv6 source NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

/// One translation: `from` as the original tuple has it, `to` as the reply tuple shows it
/// rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct NatChange {
    pub from: Endpoint,
    pub to: Endpoint,
    /// The ports are ICMP echo ids (printed `10.0.0.5 id 7`); not in the JSON.
    #[serde(skip)]
    pub icmp_id: bool,
}

impl NatChange {
    /// The port (or ICMP id) was rewritten too.
    pub fn port_changed(&self) -> bool {
        matches!((self.from.port, self.to.port), (Some(a), Some(b)) if a != b)
    }

    fn write_endpoint<W: Write + ?Sized>(&self, w: &mut W, e: &Endpoint) -> fmt::Result {
        match (e.port, self.port_changed()) {
            (Some(port), true) if self.icmp_id => write!(w, "{} id {port}", e.addr),
            (Some(port), true) => match e.addr {
                IpAddr::V4(a) => write!(w, "{a}:{port}"),
                IpAddr::V6(a) => write!(w, "[{a}]:{port}"),
            },
            _ => write!(w, "{}", e.addr),
        }
    }
}

/// `10.0.0.5 -> 203.0.113.50`; with ports when they changed (`10.0.0.1:8080 ->
/// 10.0.2.2:80`, `[fd00::1]:80`), ICMP ids as `10.0.0.5 id 7`.
impl fmt::Display for NatChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_endpoint(f, &self.from)?;
        f.write_str(" -> ")?;
        self.write_endpoint(f, &self.to)
    }
}

/// The NAT a connection does, derived from its tuples, with its status bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Nat {
    /// Source NAT: the original source, and what the reply tuple shows it became.
    pub snat: Option<NatChange>,
    /// Destination NAT: the original destination, and what the reply tuple shows it became.
    pub dnat: Option<NatChange>,
    /// `IPS_SRC_NAT` is set.
    pub status_snat: bool,
    /// `IPS_DST_NAT` is set.
    pub status_dnat: bool,
}

/// How a protocol's tuple identifies endpoints beyond the address.
#[derive(PartialEq, Eq)]
enum PortKind {
    Ports,
    Icmp,
    None,
}

fn port_kind(proto: &CtProto) -> PortKind {
    match proto {
        CtProto::Tcp { .. } | CtProto::Udp { .. } | CtProto::Sctp { .. } => PortKind::Ports,
        CtProto::Icmp { .. } | CtProto::Icmpv6 { .. } => PortKind::Icmp,
        CtProto::Generic { .. } => PortKind::None,
    }
}

fn icmp_id(proto: &CtProto) -> Option<u16> {
    match *proto {
        CtProto::Icmp { id, .. } | CtProto::Icmpv6 { id, .. } => Some(id),
        _ => None,
    }
}

impl Nat {
    /// Derives the NAT from a connection's tuples: SNAT when `reply.dst` differs from
    /// `orig.src` (address or source port; ICMP: echo id), DNAT when `reply.src` differs from
    /// `orig.dst` (address or destination port). Ports are compared only when both tuples
    /// are of one protocol.
    pub fn from_conn(conn: &CtConnEvent) -> Nat {
        let (orig, reply) = (&conn.orig, &conn.reply);
        let kind = port_kind(&orig.proto);
        // Always true for a real entry; files can hold anything.
        let same_kind =
            orig.proto.number() == reply.proto.number() && kind == port_kind(&reply.proto);
        let (snat_ports, dnat_ports, icmp) = match kind {
            PortKind::Ports if same_kind => {
                let (osport, odport) = orig.proto.ports().unwrap_or_default();
                let (rsport, rdport) = reply.proto.ports().unwrap_or_default();
                (
                    (Some(osport), Some(rdport)),
                    (Some(odport), Some(rsport)),
                    false,
                )
            }
            PortKind::Icmp if same_kind => (
                (icmp_id(&orig.proto), icmp_id(&reply.proto)),
                (None, None),
                true,
            ),
            _ => ((None, None), (None, None), false),
        };
        let change = |from: Endpoint, to: Endpoint, icmp_id: bool| {
            let change = NatChange { from, to, icmp_id };
            (from.addr != to.addr || change.port_changed()).then_some(change)
        };
        Nat {
            snat: change(
                Endpoint {
                    addr: orig.ip.src,
                    port: snat_ports.0,
                },
                Endpoint {
                    addr: reply.ip.dst,
                    port: snat_ports.1,
                },
                icmp,
            ),
            dnat: change(
                Endpoint {
                    addr: orig.ip.dst,
                    port: dnat_ports.0,
                },
                Endpoint {
                    addr: reply.ip.src,
                    port: dnat_ports.1,
                },
                false,
            ),
            status_snat: conn.ct_status.contains(CtStatus::SRC_NAT),
            status_dnat: conn.ct_status.contains(CtStatus::DST_NAT),
        }
    }

    /// Neither the tuples nor the status bits show any NAT.
    pub fn is_none(&self) -> bool {
        self.snat.is_none() && self.dnat.is_none() && !self.status_snat && !self.status_dnat
    }
}

/// `snat 10.0.0.5 -> 203.0.113.50, dnat 10.0.0.1:8080 -> 10.0.2.2:80`, or `none`; a status
/// bit that disagrees with the tuples is noted (`snat (SRC_NAT set, tuples unchanged)`).
impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut first = true;
        let sides = [
            ("snat", self.snat, self.status_snat, "SRC_NAT"),
            ("dnat", self.dnat, self.status_dnat, "DST_NAT"),
        ];
        for (name, change, status, bit) in sides {
            if change.is_none() && !status {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match change {
                Some(change) => {
                    write!(f, "{name} {change}")?;
                    if !status {
                        write!(f, " (no {bit} status bit)")?;
                    }
                }
                None => write!(f, "{name} ({bit} set, tuples unchanged)")?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Summaries

/// Where a state was first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition<S> {
    pub state: S,
    pub timestamp: Option<u64>,
    pub probe: Option<ProbeInfo>,
}

/// Distinct packets per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PacketCounts {
    /// ct_state NEW, ESTABLISHED or RELATED.
    pub orig: u64,
    /// ct_state REPLY or RELATED_REPLY.
    pub reply: u64,
}

/// The parent (master) of a RELATED connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentConn {
    /// Its connection id (`tracking.parent_conn`), when known.
    pub conn: Option<u64>,
    /// Its entry, from the RELATED events (`ct.parent`) or else the parent's own events in
    /// the file; `None` when neither has it.
    pub entry: Option<CtConnEvent>,
}

/// One connection over its life; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub key: ConnKey,
    /// The entry as the last event saw it: tuples, status, zone, mark, labels, helper,
    /// states, timeout.
    pub entry: CtConnEvent,
    /// Derived from `entry` by [`Nat::from_conn`].
    pub nat: Nat,
    pub parent: Option<ParentConn>,
    pub first_seen: Option<u64>,
    pub last_seen: Option<u64>,
    /// Number of events of this connection.
    pub events: u64,
    pub packets: PacketCounts,
    /// Drop events ([`Event::is_drop`]).
    pub drops: u64,
    /// Drops per reason, in order of first appearance; drops without one are not here.
    pub drop_reasons: Vec<(Arc<str>, u64)>,
    pub ct_states: Vec<Transition<CtState>>,
    pub tcp_states: Vec<Transition<TcpState>>,
    pub sctp_states: Vec<Transition<SctpState>>,
    /// Packets nftables rules or chain policies dropped, in order of first appearance.
    pub nft_drops: Vec<NftDrop>,
}

/// Packets one nftables rule (or chain policy) dropped, with the ct state they had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftDrop {
    /// The trace step that dropped them (its verdict is `drop`).
    pub by: NftTrace,
    /// The ctinfo state the packets' BPF events showed; `None` when none had a ct section.
    pub ct_state: Option<CtState>,
    /// How many packets (nft drop events).
    pub packets: u64,
}

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

/// What [`connections`] finds in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connections {
    /// One per conntrack entry, in the order of their first event.
    pub conns: Vec<Connection>,
    /// nftables drops that name no connection in [`conns`](Connections::conns): without
    /// `tracking.conn`, or with a connection id no event with a ct section has.
    pub unattributed_nft_drops: Vec<NftDrop>,
}

impl Connection {
    /// The connection id, when the events had one.
    pub fn id(&self) -> Option<u64> {
        self.key.id()
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
/// counted as unattributed. See the [module docs](self).
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

/// Writes `conns` in `format`: the text layouts of the [module docs](self), or one JSON
/// object per connection and line, then the unattributed nftables drops, if any, as one
/// more entry. Every entry ends with a newline.
pub fn write_conns<W: fmt::Write + ?Sized>(
    w: &mut W,
    conns: &Connections,
    format: Format,
) -> fmt::Result {
    write_items(w, &conns.entries(), format)
}

/// [`write_conns`] into an [`io::Write`] (flushed at the end). Wrap files and pipes in a
/// `BufWriter`.
pub fn write_conns_io<W: io::Write>(out: W, conns: &Connections, format: Format) -> io::Result<()> {
    write_items_io(out, &conns.entries(), format)
}

/// One entry of the `conns` output: a connection, or the nftables drops no connection can
/// be charged with.
enum Entry<'a> {
    Conn(&'a Connection),
    Unattributed(&'a [NftDrop]),
}

impl Connections {
    /// The entries in output order: the connections, then the unattributed nft drops if any.
    fn entries(&self) -> Vec<Entry<'_>> {
        let unattributed = (!self.unattributed_nft_drops.is_empty())
            .then_some(Entry::Unattributed(&self.unattributed_nft_drops));
        self.conns
            .iter()
            .map(Entry::Conn)
            .chain(unattributed)
            .collect()
    }
}

impl Render for Entry<'_> {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        match self {
            Entry::Conn(conn) => conn.render(w, layout, indent),
            Entry::Unattributed(drops) => {
                pad(w, indent)?;
                w.write_str("unattributed nft drops (no connection in this file)")?;
                for drop in *drops {
                    match layout {
                        Layout::SingleLine => w.write_char(' ')?,
                        Layout::MultiLine => {
                            w.write_char('\n')?;
                            pad(w, indent + crate::render::SECTION_INDENT)?;
                        }
                    }
                    write_nft_drop(w, drop)?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Entry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Entry::Conn(conn) => conn.serialize(s),
            Entry::Unattributed(drops) => {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("unattributed_nft_drops", &NftDropsJson(drops))?;
                map.end()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Text

fn pad<W: Write + ?Sized>(w: &mut W, n: usize) -> fmt::Result {
    (0..n).try_for_each(|_| w.write_char(' '))
}

/// Writes a name from a file with control characters escaped (one connection never spills
/// onto extra lines).
fn write_name<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(w, "{}", c.escape_default())?;
        } else {
            w.write_char(c)?;
        }
    }
    Ok(())
}

/// `dropped by inet f in handle 3: tcp dport 81 drop, ct state NEW (2 packets)`.
fn write_nft_drop<W: Write + ?Sized>(w: &mut W, drop: &NftDrop) -> fmt::Result {
    let by = &drop.by;
    write!(w, "dropped by {} ", by.family)?;
    write_name(w, &by.table)?;
    w.write_char(' ')?;
    write_name(w, &by.chain)?;
    if let Some(handle) = by.handle {
        write!(w, " handle {handle}")?;
    }
    if by.kind == NftTraceKind::Policy {
        w.write_str(" policy")?;
    }
    if let Some(rule) = &by.rule {
        w.write_str(": ")?;
        write_name(w, rule)?;
    }
    if let Some(state) = drop.ct_state {
        write!(w, ", ct state {}", <&str>::from(state))?;
    }
    if drop.packets > 1 {
        write!(w, " ({} packets)", drop.packets)?;
    }
    Ok(())
}

/// A duration in ns with a readable unit: `850ns`, `1.250us`, `3.000ms`, `12.345s`.
pub fn write_duration<W: Write + ?Sized>(w: &mut W, ns: u64) -> fmt::Result {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    match ns {
        0..US => write!(w, "{ns}ns"),
        US..MS => write!(w, "{}.{:03}us", ns / US, ns % US),
        MS..S => write!(w, "{}.{:03}ms", ns / MS, ns % MS / US),
        _ => write!(w, "{}.{:03}s", ns / S, ns % S / MS),
    }
}

/// `+1.250us` after `start`; empty when either time is unknown.
fn offset_text(at: Option<u64>, start: Option<u64>) -> Result<String, fmt::Error> {
    let mut s = String::new();
    if let (Some(at), Some(start)) = (at, start) {
        s.push('+');
        write_duration(&mut s, at.saturating_sub(start))?;
    }
    Ok(s)
}

/// `[tp] net:netif_receive_skb`; empty when the probe is unknown.
fn probe_text(probe: Option<&ProbeInfo>) -> Result<String, fmt::Error> {
    let mut s = String::new();
    if let Some(p) = probe {
        write!(s, "[{}] ", p.kind)?;
        write_name(&mut s, &p.name)?;
    }
    Ok(s)
}

/// Column widths shared by the timelines of one connection (multi-line layout).
#[derive(Default)]
struct Columns {
    label: usize,
    state: usize,
    offset: usize,
}

impl Columns {
    fn fit<S: fmt::Display>(
        &mut self,
        label: &str,
        list: &[Transition<S>],
        start: Option<u64>,
    ) -> fmt::Result {
        if !list.is_empty() {
            self.label = self.label.max(label.len());
        }
        for t in list {
            self.state = self.state.max(t.state.to_string().chars().count());
            self.offset = self.offset.max(offset_text(t.timestamp, start)?.len());
        }
        Ok(())
    }
}

/// One timeline: in the multi-line layout `ct_state  NEW   +0ns     [tp] net:...` and one
/// line per further state, columns aligned; in the single-line layout
/// `ct_state NEW (+0ns [tp] net:...) -> REPLY (...)`. Writes nothing for an empty timeline.
fn write_timeline<W: Write + ?Sized, S: fmt::Display>(
    w: &mut W,
    label: &str,
    list: &[Transition<S>],
    start: Option<u64>,
    layout: Layout,
    columns: &Columns,
    indent: usize,
) -> fmt::Result {
    for (i, t) in list.iter().enumerate() {
        let offset = offset_text(t.timestamp, start)?;
        let probe = probe_text(t.probe.as_ref())?;
        match layout {
            Layout::SingleLine => {
                if i == 0 {
                    write!(w, " {label} ")?;
                } else {
                    w.write_str(" -> ")?;
                }
                write!(w, "{}", t.state)?;
                match (offset.is_empty(), probe.is_empty()) {
                    (true, true) => {}
                    (false, true) => write!(w, " ({offset})")?,
                    (true, false) => write!(w, " ({probe})")?,
                    (false, false) => write!(w, " ({offset} {probe})")?,
                }
            }
            Layout::MultiLine => {
                w.write_char('\n')?;
                pad(w, indent)?;
                let label = if i == 0 { label } else { "" };
                let row = format!(
                    "{label:<lw$} {state:<sw$} {offset:<ow$} {probe}",
                    state = t.state.to_string(),
                    lw = columns.label,
                    sw = columns.state,
                    ow = columns.offset
                );
                w.write_str(row.trim_end())?;
            }
        }
    }
    Ok(())
}

impl Render for Connection {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        let inner = indent + crate::render::SECTION_INDENT;
        // Starts a part: a space, or a new line at the inner indent.
        let next = |w: &mut W| -> fmt::Result {
            match layout {
                Layout::SingleLine => w.write_char(' '),
                Layout::MultiLine => {
                    w.write_char('\n')?;
                    pad(w, inner)
                }
            }
        };
        pad(w, indent)?;
        match self.key.id() {
            Some(id) => write!(w, "conn {id:x}")?,
            None => w.write_str("conn (no id)")?,
        }
        next(w)?;
        conn_body(w, &self.entry, layout, inner)?;
        next(w)?;
        write!(w, "status {:#x}", self.entry.ct_status.bits())?;
        if layout == Layout::MultiLine && !self.entry.ct_status.is_empty() {
            write!(w, " ({})", self.entry.ct_status)?;
        }
        next(w)?;
        write!(w, "nat {}", self.nat)?;
        if let Some(parent) = &self.parent {
            next(w)?;
            w.write_str("parent")?;
            if let Some(id) = parent.conn {
                write!(w, " conn {id:x}")?;
            }
            match &parent.entry {
                Some(entry) => {
                    w.write_str(" [")?;
                    conn_body(w, entry, layout, inner)?;
                    w.write_char(']')?;
                }
                None => w.write_str(" (not in this file)")?,
            }
        }
        next(w)?;
        match (self.first_seen, self.last_seen) {
            (Some(first), Some(last)) => {
                write!(w, "first {first} last {last} (")?;
                write_duration(w, last.saturating_sub(first))?;
                w.write_str(") ")?;
            }
            _ => w.write_str("no timestamps, ")?,
        }
        write!(w, "events {}", self.events)?;
        next(w)?;
        write!(
            w,
            "packets orig {} reply {} drops {}",
            self.packets.orig, self.packets.reply, self.drops
        )?;
        for (i, (reason, n)) in self.drop_reasons.iter().enumerate() {
            w.write_str(if i == 0 { " (" } else { ", " })?;
            write_name(w, reason)?;
            write!(w, " {n}")?;
        }
        if !self.drop_reasons.is_empty() {
            w.write_char(')')?;
        }
        for drop in &self.nft_drops {
            next(w)?;
            write_nft_drop(w, drop)?;
        }
        let start = self.first_seen;
        let mut columns = Columns::default();
        if layout == Layout::MultiLine {
            columns.fit("ct_state", &self.ct_states, start)?;
            columns.fit("tcp_state", &self.tcp_states, start)?;
            columns.fit("sctp_state", &self.sctp_states, start)?;
        }
        let c = &columns;
        write_timeline(w, "ct_state", &self.ct_states, start, layout, c, inner)?;
        write_timeline(w, "tcp_state", &self.tcp_states, start, layout, c, inner)?;
        write_timeline(w, "sctp_state", &self.sctp_states, start, layout, c, inner)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// JSON

/// The JSON object of a connection; keys in the documented order.
#[derive(Serialize)]
struct ConnJson<'a> {
    conn: Option<u64>,
    zone_id: u16,
    zone_dir: ZoneDir,
    orig: &'a CtTuple,
    reply: &'a CtTuple,
    tcp_state: Option<TcpState>,
    sctp_state: Option<SctpState>,
    status: u32,
    mark: Option<u32>,
    #[serde(serialize_with = "crate::labels_hex::serialize")]
    labels: Option<u128>,
    helper: Option<&'a str>,
    timeout: Option<u32>,
    nat: &'a Nat,
    parent: Option<ParentJson<'a>>,
    first_seen: Option<u64>,
    last_seen: Option<u64>,
    events: u64,
    packets: PacketCounts,
    drops: u64,
    drop_reasons: DropReasons<'a>,
    nft_drops: NftDropsJson<'a>,
    ct_states: &'a [Transition<CtState>],
    tcp_states: &'a [Transition<TcpState>],
    sctp_states: &'a [Transition<SctpState>],
}

/// Drops per reason as a JSON object, in order of first appearance.
struct DropReasons<'a>(&'a [(Arc<str>, u64)]);

impl Serialize for DropReasons<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (reason, n) in self.0 {
            map.serialize_entry(&**reason, n)?;
        }
        map.end()
    }
}

/// nftables drops as a JSON array (see the [module docs](self)).
struct NftDropsJson<'a>(&'a [NftDrop]);

/// One element of [`NftDropsJson`]: the verdict (always `drop`) and jump target (never
/// set for a drop) are left out, every other key is always present.
#[derive(Serialize)]
struct NftDropJson<'a> {
    family: crate::NftFamily,
    table: &'a str,
    chain: &'a str,
    #[serde(rename = "type")]
    kind: NftTraceKind,
    handle: Option<u64>,
    rule: Option<&'a str>,
    ct_state: Option<CtState>,
    packets: u64,
}

impl Serialize for NftDropsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|drop| NftDropJson {
            family: drop.by.family,
            table: &drop.by.table,
            chain: &drop.by.chain,
            kind: drop.by.kind,
            handle: drop.by.handle,
            rule: drop.by.rule.as_deref(),
            ct_state: drop.ct_state,
            packets: drop.packets,
        }))
    }
}

#[derive(Serialize)]
struct ParentJson<'a> {
    conn: Option<u64>,
    orig: Option<&'a CtTuple>,
    reply: Option<&'a CtTuple>,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.entry;
        ConnJson {
            conn: self.key.id(),
            zone_id: e.zone_id,
            zone_dir: e.zone_dir,
            orig: &e.orig,
            reply: &e.reply,
            tcp_state: e.tcp_state,
            sctp_state: e.sctp_state,
            status: e.ct_status.bits(),
            mark: e.mark,
            labels: e.labels,
            helper: e.helper.as_ref().map(|h| h.as_str()),
            timeout: e.timeout,
            nat: &self.nat,
            parent: self.parent.as_ref().map(|p| ParentJson {
                conn: p.conn,
                orig: p.entry.as_ref().map(|e| &e.orig),
                reply: p.entry.as_ref().map(|e| &e.reply),
            }),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            events: self.events,
            packets: self.packets,
            drops: self.drops,
            drop_reasons: DropReasons(&self.drop_reasons),
            nft_drops: NftDropsJson(&self.nft_drops),
            ct_states: &self.ct_states,
            tcp_states: &self.tcp_states,
            sctp_states: &self.sctp_states,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests;
