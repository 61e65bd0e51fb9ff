//! What the folding finds: one summary per connection, and the nftables drops no
//! connection can be charged with.

use std::sync::Arc;

use serde::Serialize;

use super::{ConnKey, Nat};
use crate::{CtConnEvent, CtState, NftTrace, ProbeInfo, SctpState, TcpState};

/// Where a state was first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition<S> {
    /// The state.
    pub state: S,
    /// When it was first seen, if the event had a timestamp.
    pub timestamp: Option<u64>,
    /// The probe of the event it was first seen in.
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

/// One connection over its life; see [`connections`](crate::connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// What the events of this connection have in common.
    pub key: ConnKey,
    /// The entry as the last event saw it: tuples, status, zone, mark, labels, helper,
    /// states, timeout.
    pub entry: CtConnEvent,
    /// Derived from `entry` by [`Nat::from_conn`].
    pub nat: Nat,
    /// The parent (master) connection of a RELATED flow.
    pub parent: Option<ParentConn>,
    /// Timestamp of the first event.
    pub first_seen: Option<u64>,
    /// Timestamp of the last event.
    pub last_seen: Option<u64>,
    /// Number of events of this connection.
    pub events: u64,
    /// Distinct packets per direction.
    pub packets: PacketCounts,
    /// Drop events ([`Event::is_drop`](crate::Event::is_drop)).
    pub drops: u64,
    /// Drops per reason, in order of first appearance; drops without one are not here.
    pub drop_reasons: Vec<(Arc<str>, u64)>,
    /// ctinfo states in order of first appearance.
    pub ct_states: Vec<Transition<CtState>>,
    /// TCP states in order of first appearance.
    pub tcp_states: Vec<Transition<TcpState>>,
    /// SCTP states in order of first appearance.
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

/// What [`connections`](crate::conns::connections) finds in a file.
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
