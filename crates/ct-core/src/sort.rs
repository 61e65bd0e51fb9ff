//! Follow a packet: events grouped by packet tracking id (`ct-cli sort`), documented on
//! [`group_packets`].

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::io;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::output::{write_items, write_items_io};
use crate::render::{has_header, pad, write_event_showing, write_packet, Layout, Render};
use crate::IoSink;
use crate::{Event, Format, Packet};

/// Spaces the packet line of a group is indented by under the group header.
const PACKET_INDENT: usize = 2;
/// Spaces the events of a group are indented by under the group header: under the packet
/// line in the multi-line layout, directly under the header in the single-line one.
const fn event_indent(layout: Layout) -> usize {
    match layout {
        Layout::MultiLine => 4,
        Layout::SingleLine => 2,
    }
}

/// All events of one packet, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketGroup<'a> {
    /// The packet tracking id; `None` for an event without tracking ids (a group of one).
    pub skb: Option<u64>,
    /// Never empty.
    pub events: Vec<&'a Event>,
}

impl<'a> PacketGroup<'a> {
    /// Timestamp of the first event, if it has one.
    pub fn first_seen(&self) -> Option<u64> {
        self.events.first().and_then(|e| e.timestamp)
    }

    /// The packet as its earliest event with a packet section saw it.
    pub fn first_packet(&self) -> Option<&'a Packet> {
        self.events.iter().find_map(|e| e.packet.as_ref())
    }
}

/// Sort key putting timed events first, in time order, then untimed ones.
pub(crate) fn time_key(event: &Event) -> (bool, u64) {
    match event.timestamp {
        Some(ts) => (false, ts),
        None => (true, 0),
    }
}

/// `events` in time order: a stable sort by timestamp, events without one last.
pub(crate) fn time_ordered<'a, I>(events: I) -> Vec<&'a Event>
where
    I: IntoIterator<Item = &'a Event>,
{
    let mut sorted: Vec<&Event> = events.into_iter().collect();
    sorted.sort_by_key(|e| time_key(e));
    sorted
}

/// Groups events by packet: all events of one packet (same [`Tracking::skb`](crate::Tracking),
/// which stays the same across probes, clones and NAT rewrites) into one [`PacketGroup`]:
///
/// - events within a group are in time order;
/// - groups are in the order of their first event;
/// - an event without tracking ids is a group of its own;
/// - nftables trace steps (`collect --nft`) are events like the others: those joined to
///   the BPF events of their packet carry its `tracking.skb` and group with them;
/// - events without a timestamp come after those with one, in file order (the sort is
///   stable: events with equal timestamps, and files without any, keep their file order).
///
/// Every event is in exactly one group, and no group is empty.
///
/// The work is one hash map pass and one sort: `O(n log n)` for `n` events.
///
/// # Output
///
/// [`write_packets`] (any [`fmt::Write`]) and [`write_packets_io`] (any [`io::Write`]) write
/// the groups in one [`Format`]. The text layouts show the packet once, as a header line and
/// the packet line of its first event, then its events under it. An event's packet line is
/// written only where it prints differently from the last one shown (that is where NAT or
/// another rewrite changed the packet):
///
/// ```text
/// packet #skb 1f (3 events, first seen 1000)
///   if 3 (veth-client) 10.0.1.100.54321 > 93.184.216.34.80 ttl 64 tos 0x0 id 1 off 0 [DF] len 60 proto TCP (6) flags [S]
///     1000 [curl] 4242 [tp] net:netif_receive_skb #skb 1f conn a1 netns 4026531840
///       ct_state NEW status 0x8
///       tcp (SYN_SENT) orig [10.0.1.100.54321 > 93.184.216.34.80]
///           reply [93.184.216.34.80 > 10.0.1.100.54321]
///     1200 [curl] 4242 [tp] net:net_dev_start_xmit #skb 1f conn a1 netns 4026531840
///       if 2 (eth0) 203.0.113.50.54321 > 93.184.216.34.80 ttl 63 tos 0x0 id 1 off 0 [DF] len 60 proto TCP (6) flags [S]
///       ct_state NEW status 0x1b8
///       ...
/// ```
///
/// Multi-line groups are separated by a blank line. The single-line layout puts the header
/// and packet on one line (`packet #skb 1f (3 events, first seen 1000): if 3 ...`) and
/// each event on one line under it, indented by 2.
///
/// JSON writes one object per group and line: `{"skb": 31, "events": [...]}`, with
/// `"skb": null` for an event without tracking ids; each event is the same object as in the
/// events file.
///
/// # Example
///
/// ```
/// use ct_core::{group_packets, write_packets, Event, Format, Tracking};
///
/// let at = |timestamp, skb| Event {
///     timestamp: Some(timestamp),
///     tracking: Some(Tracking { skb, conn: None, parent_conn: None }),
///     ..Event::default()
/// };
/// let events = [at(30, 2), at(10, 1), at(20, 2), at(40, 1)];
/// let groups = group_packets(&events);
/// assert_eq!(groups.len(), 2);
/// assert_eq!(groups[0].skb, Some(1)); // first seen at 10
/// assert_eq!(groups[1].events[0].timestamp, Some(20));
///
/// let mut json = String::new();
/// write_packets(&mut json, &groups, Format::Json).unwrap();
/// assert!(json.starts_with(r#"{"skb":1,"events":[{"timestamp":10,"#));
/// ```
pub fn group_packets<'a, I>(events: I) -> Vec<PacketGroup<'a>>
where
    I: IntoIterator<Item = &'a Event>,
{
    let mut groups: Vec<PacketGroup<'a>> = Vec::new();
    let mut by_skb: HashMap<u64, usize> = HashMap::new();
    for event in time_ordered(events) {
        let skb = event.tracking.map(|t| t.skb);
        let index = match skb {
            Some(id) => *by_skb.entry(id).or_insert_with(|| {
                groups.push(PacketGroup {
                    skb,
                    events: Vec::new(),
                });
                groups.len() - 1
            }),
            None => {
                groups.push(PacketGroup {
                    skb: None,
                    events: Vec::new(),
                });
                groups.len() - 1
            }
        };
        groups[index].events.push(event);
    }
    groups
}

/// Writes `groups` in `format`: text layouts as in [`group_packets`], JSON one group
/// per line. Every group ends with a newline.
pub fn write_packets<W: fmt::Write + ?Sized>(
    w: &mut W,
    groups: &[PacketGroup<'_>],
    format: Format,
) -> fmt::Result {
    write_items(w, groups, format)
}

/// [`write_packets`] into an [`io::Write`] (flushed at the end). Wrap files and pipes in a
/// `BufWriter`.
pub fn write_packets_io<W: io::Write>(
    out: W,
    groups: &[PacketGroup<'_>],
    format: Format,
) -> io::Result<()> {
    write_items_io(out, groups, format)
}

/// Writes one group of a stream (from [`PacketSorter`]) as [`write_packets_io`] writes it
/// among the others: `index` is its place in the output (0 for the first), which decides
/// the separator. Not flushed: wrap files and pipes in a `BufWriter`.
pub fn write_packet_io<W: io::Write>(
    out: &mut W,
    group: &PacketGroup<'_>,
    index: u64,
    format: Format,
) -> io::Result<()> {
    if index > 0 && format == Format::Text(Layout::MultiLine) {
        out.write_all(b"\n")?;
    }
    let mut sink = IoSink::new(out);
    let result = write_items(&mut sink, std::slice::from_ref(group), format);
    sink.finish(result)
}

/// `packet #skb {id:x} ({n} events, first seen {ts})`.
fn write_group_header<W: Write + ?Sized>(w: &mut W, group: &PacketGroup<'_>) -> fmt::Result {
    match group.skb {
        Some(id) => write!(w, "packet #skb {id:x}")?,
        None => w.write_str("packet without tracking id")?,
    }
    let n = group.events.len();
    write!(w, " ({n} event{}", if n == 1 { "" } else { "s" })?;
    if let Some(ts) = group.first_seen() {
        write!(w, ", first seen {ts}")?;
    }
    w.write_char(')')
}

/// One event of a group: the event layout, without its packet line where `shown_packet`
/// already prints the same.
fn write_group_event<'a, W: Write + ?Sized>(
    w: &mut W,
    event: &'a Event,
    shown_packet: &mut Option<&'a Packet>,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    let packet = event
        .packet
        .as_ref()
        .filter(|&packet| !shown_packet.is_some_and(|shown| prints_the_same(shown, packet)));
    if !has_header(event) && packet.is_none() && event.ct.is_none() {
        pad(w, indent)?;
        return w.write_str(if event.packet.is_some() {
            "(packet as above)"
        } else {
            "(empty event)"
        });
    }
    if packet.is_some() {
        *shown_packet = packet;
    }
    write_event_showing(w, event, packet, layout, indent)
}

impl Render for PacketGroup<'_> {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        pad(w, indent)?;
        write_group_header(w, self)?;
        let mut shown = self.first_packet();
        if let Some(packet) = shown {
            match layout {
                Layout::SingleLine => w.write_str(": ")?,
                Layout::MultiLine => {
                    w.write_char('\n')?;
                    pad(w, indent + PACKET_INDENT)?;
                }
            }
            write_packet(w, packet, 0)?;
        }
        for event in &self.events {
            w.write_char('\n')?;
            write_group_event(w, event, &mut shown, layout, indent + event_indent(layout))?;
        }
        Ok(())
    }
}

/// Whether two packet sections print the same line: equal, or differing only in the skb
/// length where both have a network header (the line then shows the header's length, and
/// an nftables trace, which does not know the skb length, reports 0).
fn prints_the_same(a: &Packet, b: &Packet) -> bool {
    // Header bytes are not printed (and differ wherever a field the line shows does).
    let a = Packet {
        headers: b.headers.clone(),
        ..a.clone()
    };
    a == *b || (a.ip.is_some() && b.ip.is_some() && Packet { len: b.len, ..a } == *b)
}

/// `{"skb": id or null, "events": [...]}`.
impl Serialize for PacketGroup<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("PacketGroup", 2)?;
        st.serialize_field("skb", &self.skb)?;
        st.serialize_field("events", &self.events)?;
        st.end()
    }
}

mod stream;
#[cfg(test)]
mod tests;

pub use stream::PacketSorter;
