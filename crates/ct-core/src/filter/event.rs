//! All the filters that apply to an events file, together.

use super::{CtFilter, DropFilter, PacketFilter};

/// The filters that apply to an events file: a packet filter, conntrack filters and drop
/// filters, all of which must match (`ct-cli print -f ... --ct-state ...`).
///
/// Each event is judged on its own sections. For an nftables trace step (an event with an
/// `nft` section), that means: the packet filter applies to the packet section parsed from
/// the trace's headers; `--drops` keeps `drop` verdicts ([`Event::is_drop`](crate::Event::is_drop));
/// `--drop-reason` names the kernel's drop reasons, which only the BPF event of the packet at
/// `skb:kfree_skb` carries, so it never keeps a trace step; and conntrack filters need a ct
/// section, which a trace step has not, so any set one drops it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// `-f`: the packet filter.
    pub packet: Option<PacketFilter>,
    /// `--ct-*`: conntrack filters.
    pub ct: CtFilter,
    /// `--drops`, `--drop-reason`.
    pub drop: DropFilter,
}

impl EventFilter {
    /// Whether no filter is set (every event matches).
    pub fn is_empty(&self) -> bool {
        self.packet.is_none() && self.ct.is_empty() && self.drop.is_empty()
    }

    /// Whether `event` passes every filter that is set.
    pub fn matches(&self, event: &crate::Event) -> bool {
        self.in_scope(event) && self.selects(event)
    }

    /// Whether `event` is of the kind the drop filters ask for. As in the kernel, this is
    /// judged on every event, followed or not: it says what kind of hit, not which packet.
    pub fn in_scope(&self, event: &crate::Event) -> bool {
        self.drop.matches(event)
    }

    /// Whether the packet and conntrack filters select `event`'s packet: what
    /// `--follow` follows ([`FollowSelector`](crate::FollowSelector)).
    pub fn selects(&self, event: &crate::Event) -> bool {
        self.packet
            .as_ref()
            .is_none_or(|f| f.matches(event.packet.as_ref()))
            && self.ct.matches(event.ct.as_ref())
    }

    /// Whether no packet or conntrack filter is set: every event is selected, and there
    /// is nothing to follow.
    pub fn selects_all(&self) -> bool {
        self.packet.is_none() && self.ct.is_empty()
    }
}
