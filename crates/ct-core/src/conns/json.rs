//! The JSON object of a connection (keys as the module docs list them).

use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::{Connection, Entry, Nat, NftDrop, PacketCounts, Transition};
use crate::{CtState, CtTuple, NftTraceKind, SctpState, TcpState, ZoneDir};

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

/// nftables drops as a JSON array (see [`connections`](crate::connections)).
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
