//! What identifies a connection in a file.

use crate::{CtConnEvent, CtTuple, Event, ZoneDir};

/// What identifies a connection in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKey {
    /// The connection id (`tracking.conn`).
    Id(u64),
    /// Events without a connection id: the original tuple and zone.
    Tuple {
        /// The original tuple.
        orig: CtTuple,
        /// The zone id.
        zone_id: u16,
        /// Which directions the zone applies to.
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
pub(super) fn event_conn(event: &Event) -> Option<&CtConnEvent> {
    event
        .ct
        .as_ref()?
        .base
        .as_ref()
        .filter(|base| !base.is_template())
}
