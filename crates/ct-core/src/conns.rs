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
//! - **Drops**: events that are drops ([`Event::is_drop`](crate::Event::is_drop): a `drop` section, or, in files
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
//!
//! One file per job: `key` (which connection an event belongs to), `nat` (NAT from the
//! tuples), `fold` (events into [`Connections`]), `summary` (what it finds), `text` and
//! `json` (the two output forms).

use std::fmt;
use std::io;

use crate::output::{write_items, write_items_io};
use crate::Format;

mod fold;
mod json;
mod key;
mod nat;
mod summary;
#[cfg(test)]
mod tests;
mod text;

pub use fold::connections;
pub use key::ConnKey;
pub use nat::{Endpoint, Nat, NatChange};
pub use summary::{Connection, Connections, NftDrop, PacketCounts, ParentConn, Transition};
pub use text::write_duration;

/// The probe whose events are drops.
pub const DROP_PROBE: &str = "skb:kfree_skb";

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
