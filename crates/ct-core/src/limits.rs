//! How far the streaming views (`sort`, `conns`) look back: a time window and a bound on
//! what they hold open, so that their memory depends on these and not on the file size.

use std::time::Duration;

/// Bounds of the streaming views, [`PacketSorter`](crate::PacketSorter) and
/// [`ConnFolder`](crate::ConnFolder).
///
/// A packet's events are close together in time: a group (a packet, for `sort`; a
/// packet's events within a connection, for `conns`' packet counts) is complete once the
/// events read have reached `window` past its last event. Output is exactly that of the
/// in-memory views ([`group_packets`](crate::group_packets),
/// [`connections`](crate::connections)) when every event is at most `window` older than the
/// newest one read before it and no packet's consecutive events are more than `window`
/// apart. `max_open` caps what is held open at once: past it, the oldest group is taken as
/// complete early, and [`StreamStats::forced`] counts how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// How long after its last event a group can still take more events.
    pub window: Duration,
    /// Most groups held open at once.
    pub max_open: usize,
}

impl StreamLimits {
    /// The default window. A packet crosses a host in microseconds and events reach the
    /// file in time order but for microseconds between CPUs; in a `ping -f` capture
    /// through a NAT router (750k events) the longest gap between two events of one packet
    /// was 25 ms and the latest event 26 us late.
    pub const DEFAULT_WINDOW: Duration = Duration::from_millis(100);
    /// The default bound on open groups: at about four events per packet and 700 bytes per
    /// event held, about 45 MB of events for `sort`. A flood of 400k events a second has
    /// about 10k packets in the default window.
    pub const DEFAULT_MAX_OPEN: usize = 16384;

    /// The window in nanoseconds (the unit of event timestamps), saturating.
    pub(crate) fn window_ns(&self) -> u64 {
        u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            window: Self::DEFAULT_WINDOW,
            max_open: Self::DEFAULT_MAX_OPEN,
        }
    }
}

/// What a streaming view had to do that the in-memory one would not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Events read.
    pub events: u64,
    /// Times the bound on open groups took a group as complete before its window closed
    /// (output may differ from the in-memory view if more events of it came later).
    pub forced: u64,
    /// Events more than the window older than the newest event read before them (they
    /// may be placed differently from the in-memory view).
    pub late: u64,
}

impl StreamStats {
    /// Whether the output is certainly that of the in-memory view.
    pub fn exact(&self) -> bool {
        self.forced == 0 && self.late == 0
    }
}

/// Where an event falls in the in-memory views' order: a stable sort by timestamp, events
/// without one last. `seq` is the event's place in the input.
pub(crate) fn order_key(timestamp: Option<u64>, seq: u64) -> (bool, u64, u64) {
    match timestamp {
        Some(ts) => (false, ts, seq),
        None => (true, 0, seq),
    }
}

/// The newest timestamp read so far, and whether a timestamp is late against it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Watermark {
    newest: Option<u64>,
}

impl Watermark {
    /// Takes `ts` in; true when it is more than `window` older than the newest before it.
    pub(crate) fn advance(&mut self, ts: u64, window: u64) -> bool {
        let late = self.newest.is_some_and(|n| ts.saturating_add(window) < n);
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        late
    }

    /// Whether a group whose last event is at `last` can take no more events.
    pub(crate) fn closes(&self, last: u64, window: u64) -> bool {
        self.newest.is_some_and(|n| last.saturating_add(window) < n)
    }
}
