//! The packet of each hook evaluation, for the steps the kernel sends without it.
//!
//! nftables copies the packet's devices and headers into the first trace message of each
//! evaluation of a base chain only (`packet_dumped` in `net/netfilter/nf_tables_trace.c`,
//! reset for every hook the packet goes through). The evaluation's later messages (the
//! second jump, the policy that ends it) carry the trace id alone. Without their packet,
//! those steps could be joined by trace id only, and a packet filter (`-f`) could not
//! judge them. The messages of one evaluation come in order on the reader's socket, so the
//! reader gives each message without a packet the packet of the last message with the
//! same trace id that had one: the packet as the evaluation's first step saw it.

use std::collections::{HashMap, VecDeque};

use crate::message::TraceMessage;

/// Most trace ids remembered: evaluations in flight at once, per namespace. Beyond, the
/// oldest is forgotten ([`HookPackets::forgotten`]); its later steps keep no packet.
pub(crate) const MAX_EVALUATIONS: usize = 4096;

/// What the kernel dumps once per evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HookPacket {
    nfproto: Option<u8>,
    iif: Option<u32>,
    oif: Option<u32>,
    network_header: Vec<u8>,
    transport_header: Vec<u8>,
}

impl HookPacket {
    fn of(m: &TraceMessage) -> Option<HookPacket> {
        let dumped = m.iif.is_some() || m.oif.is_some() || !m.network_header.is_empty();
        dumped.then(|| HookPacket {
            nfproto: m.nfproto,
            iif: m.iif,
            oif: m.oif,
            network_header: m.network_header.clone(),
            transport_header: m.transport_header.clone(),
        })
    }
}

/// The last packet dumped for each trace id; see the module documentation.
#[derive(Debug)]
pub(crate) struct HookPackets {
    /// The packet of each id, with the number of its filing.
    by_id: HashMap<u32, (u64, HookPacket)>,
    /// Filings in order (an id refiled since is there more than once: only its last
    /// filing, the number in `by_id`, removes it).
    order: VecDeque<(u64, u32)>,
    filed: u64,
    bound: usize,
    forgotten: u64,
}

impl Default for HookPackets {
    fn default() -> Self {
        Self::with_bound(MAX_EVALUATIONS)
    }
}

impl HookPackets {
    pub(crate) fn with_bound(bound: usize) -> Self {
        HookPackets {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            filed: 0,
            bound: bound.max(1),
            forgotten: 0,
        }
    }

    /// Files the packet of a message that has one; gives one without it the packet of its
    /// evaluation, when known. Returns whether the packet was filled in.
    pub(crate) fn fill(&mut self, m: &mut TraceMessage) -> bool {
        if let Some(packet) = HookPacket::of(m) {
            self.file(m.id, packet);
            return false;
        }
        let Some((_, packet)) = self.by_id.get(&m.id) else {
            return false;
        };
        // The protocol is in every message; the evaluation's is the one its headers have.
        m.nfproto = m.nfproto.or(packet.nfproto);
        m.iif = packet.iif;
        m.oif = packet.oif;
        m.network_header.clone_from(&packet.network_header);
        m.transport_header.clone_from(&packet.transport_header);
        true
    }

    fn file(&mut self, id: u32, packet: HookPacket) {
        self.filed += 1;
        self.by_id.insert(id, (self.filed, packet));
        self.order.push_back((self.filed, id));
        while self.by_id.len() > self.bound || self.order.len() > 2 * self.bound {
            let Some((filing, oldest)) = self.order.pop_front() else {
                break;
            };
            if self
                .by_id
                .get(&oldest)
                .is_some_and(|(last, _)| *last == filing)
            {
                self.by_id.remove(&oldest);
                self.forgotten += 1;
            }
        }
    }

    /// Evaluations forgotten before their last step because more were in flight.
    #[cfg(test)]
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;
    use ct_core::{NftTraceKind, NftVerdict};

    fn first(id: u32, iif: u32, header: &[u8]) -> TraceMessage {
        TraceMessage {
            id,
            iif: Some(iif),
            oif: None,
            network_header: header.to_vec(),
            transport_header: vec![1, 2],
            ..sample()
        }
    }

    fn later(id: u32) -> TraceMessage {
        TraceMessage {
            id,
            kind: NftTraceKind::Policy,
            verdict: NftVerdict::Drop,
            handle: None,
            iif: None,
            oif: None,
            nfproto: None,
            network_header: Vec::new(),
            transport_header: Vec::new(),
            ..sample()
        }
    }

    #[test]
    fn later_steps_get_their_evaluations_packet() {
        let mut hooks = HookPackets::default();
        let mut a = first(7, 3, &[0x45, 1]);
        assert!(!hooks.fill(&mut a));
        let mut b = later(7);
        assert!(hooks.fill(&mut b));
        assert_eq!(
            (b.iif, b.oif, &b.network_header, &b.transport_header),
            (Some(3), None, &vec![0x45, 1], &vec![1, 2])
        );
        assert_eq!(b.nfproto, a.nfproto);
        // The verdict and the kind are the message's own.
        assert_eq!(
            (b.kind, b.verdict),
            (NftTraceKind::Policy, NftVerdict::Drop)
        );
    }

    #[test]
    fn a_new_evaluation_replaces_the_packet_and_other_ids_get_nothing() {
        let mut hooks = HookPackets::default();
        hooks.fill(&mut first(7, 3, &[1]));
        // The same packet at the next hook: a new first message (another device).
        hooks.fill(&mut first(7, 4, &[2]));
        let mut b = later(7);
        hooks.fill(&mut b);
        assert_eq!((b.iif, b.network_header), (Some(4), vec![2]));
        let mut other = later(8);
        assert!(!hooks.fill(&mut other));
        assert_eq!((other.iif, other.network_header.len()), (None, 0));
    }

    #[test]
    fn the_bound_forgets_the_oldest_evaluation() {
        let mut hooks = HookPackets::with_bound(2);
        for id in 1..=3 {
            hooks.fill(&mut first(id, id, &[id as u8]));
        }
        assert_eq!(hooks.forgotten(), 1);
        assert!(!hooks.fill(&mut later(1)));
        assert!(hooks.fill(&mut later(3)));
        // Refiling one id many times keeps the bookkeeping bounded.
        for _ in 0..100 {
            hooks.fill(&mut first(3, 3, &[3]));
        }
        assert!(hooks.order.len() <= 4 && hooks.by_id.len() <= 2);
        assert!(hooks.fill(&mut later(3)));
    }
}
