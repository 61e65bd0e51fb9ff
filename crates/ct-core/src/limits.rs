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
///
/// The memory bound: a crafted file can keep a group open forever (one packet id whose
/// events keep getting newer timestamps) or carry events without a timestamp (which the
/// order puts last), so groups alone do not bound memory. `max_events` bounds what a view
/// holds, counted in events (for `conns`, in the per-packet records it keeps: one per open
/// packet, one per connection and direction it was counted in, one per nftables drop
/// waiting for its ct state): after every event taken in, at most `max_events` are held,
/// and no group holds more than `max_packet_events`. Past either, groups are taken as
/// complete early (counted in [`StreamStats::forced`]), and `sort` writes its events
/// without a timestamp before the end ([`StreamStats::untimed_early`]). At about 700 bytes
/// per event held, the default bounds `sort` at about 45 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// How long after its last event a group can still take more events.
    pub window: Duration,
    /// Most groups held open at once.
    pub max_open: usize,
    /// Most events held at once, over every group and the events without a timestamp.
    pub max_events: usize,
    /// Most events one group holds before it is written (in parts, each counted in
    /// [`StreamStats::forced`]).
    pub max_packet_events: usize,
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
    /// Events held per open group, on average, that [`new`](Self::new) allows for: a
    /// packet's usual four (received, forwarded after NAT, received and consumed at the
    /// far end).
    pub const EVENTS_PER_OPEN: usize = 4;
    /// The default bound on one group's events: a packet crossing a host is seen a
    /// handful of times; a thousand events for one packet id is a crafted or broken file.
    pub const DEFAULT_MAX_PACKET_EVENTS: usize = 1024;
    /// No bound at all: the streaming views hold what the in-memory ones would.
    pub const UNBOUNDED: StreamLimits = StreamLimits {
        window: Duration::MAX,
        max_open: usize::MAX,
        max_events: usize::MAX,
        max_packet_events: usize::MAX,
    };

    /// `window` and `max_open` as given; the bound on events held follows from
    /// `max_open` ([`EVENTS_PER_OPEN`](Self::EVENTS_PER_OPEN) events per open group, and
    /// at least one full group), the bound per group is the default.
    pub fn new(window: Duration, max_open: usize) -> Self {
        StreamLimits {
            window,
            max_open,
            max_events: max_open
                .saturating_mul(Self::EVENTS_PER_OPEN)
                .max(Self::DEFAULT_MAX_PACKET_EVENTS),
            max_packet_events: Self::DEFAULT_MAX_PACKET_EVENTS,
        }
    }

    /// The window in nanoseconds (the unit of event timestamps), saturating.
    pub(crate) fn window_ns(&self) -> u64 {
        u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self::new(Self::DEFAULT_WINDOW, Self::DEFAULT_MAX_OPEN)
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
    /// Events without a timestamp written before the end of the input because the bound
    /// on events held ([`StreamLimits::max_events`]) was reached: the in-memory view puts
    /// them last, joined to their packet's group.
    pub untimed_early: u64,
}

impl StreamStats {
    /// Whether the output is certainly that of the in-memory view.
    pub fn exact(&self) -> bool {
        self.forced == 0 && self.late == 0 && self.untimed_early == 0
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

    /// The newest timestamp read so far.
    pub(crate) fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// Whether a group whose last event is at `last` can take no more events.
    pub(crate) fn closes(&self, last: u64, window: u64) -> bool {
        self.newest.is_some_and(|n| last.saturating_add(window) < n)
    }
}
