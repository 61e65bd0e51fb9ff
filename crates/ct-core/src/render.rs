//! Text layouts of events, written straight into a sink; the layouts are described on
//! [`Layout`].

use std::fmt::{self, Write};
use std::io;

use crate::fast::{printable_ascii, put, BareHex, FmtSink, Hex, Out};
use crate::IoSink;
use crate::{
    ip_proto_name, CtConnEvent, CtEvent, CtProto, CtTuple, DropInfo, Event, IpVersion, NftTrace,
    NftTraceKind, NftVerdict, Packet, PacketIp, PacketL4, ProbeInfo, Task, Tracking, ZoneDir,
};

/// How an event is laid out as text.
///
/// Every writer (`write_event`, `write_ct`, ...) takes any [`fmt::Write`] (a `String`, a `fmt::Formatter`, or an
/// [`io::Write`] through [`IoSink`]). A writer gathers its text in a stack buffer
/// (`Text`) and hands it to the sink in one piece (more only for a line longer than the
/// buffer); numbers and addresses are written into that buffer by `put!`, the crate's fast
/// path, byte for byte what `write!` would print, without the cost of `core::fmt`. Nothing
/// is formatted into a heap string, so printing an event allocates nothing.
///
/// Writers never add a trailing newline; the caller ends the line (see
/// [`EventWriter`](crate::EventWriter), which also separates multi-line events by a blank line).
///
/// # Layouts
///
/// The connection part is
/// `{proto}{ (state)} orig [{tuple}] reply [{tuple}]{ zone}{ mark}{ labels}{ helper}{ timeout}`.
///
/// [`Layout::SingleLine`] puts everything on one line:
///
/// ```text
/// ct_state NEW status 0x8 udp orig [10.0.1.100.45678 > 8.8.8.8.53] reply [8.8.8.8.53 > 10.0.1.100.45678] orig-zone 100 mark 0x2a labels 0x1
/// ```
///
/// [`Layout::MultiLine`] puts the state on its own line, splits each connection before
/// `reply` (continuation indented [`CONTINUATION_INDENT`] spaces) and the parent on its own
/// line:
///
/// ```text
/// ct_state RELATED status 0x8
/// tcp (SYN_SENT) orig [10.0.1.100.50000 > 93.184.216.34.20]
///     reply [93.184.216.34.20 > 10.0.1.100.50000]
/// \ parent [tcp (ESTABLISHED) orig [10.0.1.100.54321 > 93.184.216.34.21]
///     reply [93.184.216.34.21 > 10.0.1.100.54321]]
/// ```
///
/// # Indent
///
/// `indent` spaces start every line a writer begins. In the single-line layout that is only
/// the first; in the multi-line layout continuation lines get `indent + 4`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
    strum::VariantNames,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Layout {
    /// Header line, then one section per line, connections split before `reply`.
    #[default]
    MultiLine,
    /// Every part on one line, separated by single spaces.
    SingleLine,
}

/// Spaces a multi-line continuation (`reply [...]`) is indented by, relative to its section.
pub const CONTINUATION_INDENT: usize = 4;

/// Spaces the sections of an event are indented by under its header line.
pub const SECTION_INDENT: usize = 2;

/// Bytes of the stack buffer a writer gathers its text in: a single-line event of IPv4
/// flows fits.
const TEXT_BUF: usize = 512;

/// The stack buffer every writer below writes into, on its way to the caller's sink.
type Text<'w, W> = Out<FmtSink<'w, W>, TEXT_BUF>;

/// Runs `body` on a [`Text`] buffer in front of `w`, then hands `w` the rest.
#[inline]
fn buffered<W, F>(w: &mut W, body: F) -> fmt::Result
where
    W: Write + ?Sized,
    F: FnOnce(&mut Text<'_, W>) -> fmt::Result,
{
    let mut text = Out::new(FmtSink(w));
    let result = body(&mut text);
    let flushed = text.finish();
    result.and(flushed)
}

/// Writes `n` spaces.
pub(crate) fn pad<W: Write + ?Sized>(w: &mut W, n: usize) -> fmt::Result {
    const SPACES: &str = "                                ";
    let mut left = n;
    while left > 0 {
        let k = left.min(SPACES.len());
        w.write_str(&SPACES[..k])?;
        left -= k;
    }
    Ok(())
}

/// Writes a name that came from the kernel or a file (comm, interface, probe, helper, rule)
/// with control and bidirectional format characters escaped, so that one event never
/// spills onto extra lines nor reads as something else.
pub(crate) fn write_name<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    // Printable ASCII (the usual name) has nothing to escape.
    if printable_ascii(s) {
        return w.write_str(s);
    }
    crate::escape::write_escaped(w, s)
}

/// Joins parts with single spaces.
struct Parts<'w, W: ?Sized> {
    w: &'w mut W,
    empty: bool,
}

impl<'w, W: Write + ?Sized> Parts<'w, W> {
    fn new(w: &'w mut W) -> Self {
        Parts { w, empty: true }
    }

    /// Starts a new part: a space unless it is the first.
    fn next(&mut self) -> Result<&mut W, fmt::Error> {
        if !self.empty {
            self.w.write_char(' ')?;
        }
        self.empty = false;
        Ok(self.w)
    }
}

/// Separates the parts of a layout that may go on lines of their own (an event's header
/// and sections, a connection's lines): the first part starts at its indent; each later
/// one after a space in the single-line layout, on a new line at its indent in the
/// multi-line one.
pub(crate) struct LayoutParts {
    layout: Layout,
    started: bool,
}

impl LayoutParts {
    pub(crate) fn new(layout: Layout) -> Self {
        LayoutParts {
            layout,
            started: false,
        }
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Starts a part that begins a line at `indent` in the multi-line layout.
    pub(crate) fn begin<W: Write + ?Sized>(&mut self, w: &mut W, indent: usize) -> fmt::Result {
        if !self.started {
            self.started = true;
            return pad(w, indent);
        }
        match self.layout {
            Layout::SingleLine => w.write_char(' '),
            Layout::MultiLine => {
                w.write_char('\n')?;
                pad(w, indent)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The packet section

/// TCP flags in tcpdump's letters and order (`[S.]`; `[none]` when no flag is set).
pub fn write_tcp_flags<W: Write + ?Sized>(w: &mut W, flags: u8) -> fmt::Result {
    const LETTERS: [(u8, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ];
    w.write_char('[')?;
    if flags == 0 {
        w.write_str("none")?;
    }
    for (bit, letter) in LETTERS {
        if flags & bit != 0 {
            w.write_char(letter)?;
        }
    }
    w.write_char(']')
}

fn l4_ports(l4: Option<&PacketL4>) -> Option<(u16, u16)> {
    match *l4? {
        PacketL4::Tcp { sport, dport, .. }
        | PacketL4::Udp { sport, dport }
        | PacketL4::Sctp { sport, dport } => Some((sport, dport)),
        PacketL4::Icmp { .. } | PacketL4::Icmpv6 { .. } => None,
    }
}

fn write_packet_ip<W: Write + ?Sized>(
    w: &mut Text<'_, W>,
    ip: &PacketIp,
    l4: Option<&PacketL4>,
) -> fmt::Result {
    match l4_ports(l4) {
        Some((sport, dport)) => put!(w, ip.src, '.', sport, " > ", ip.dst, '.', dport)?,
        None => put!(w, ip.src, " > ", ip.dst)?,
    }
    match ip.version {
        IpVersion::V4 => {
            put!(
                w,
                " ttl ",
                ip.ttl,
                " tos ",
                Hex(ip.tos),
                " id ",
                ip.id,
                " off ",
                ip.frag_off
            )?;
            if ip.df {
                w.write_str(" [DF]")?;
            }
            if ip.mf {
                w.write_str(" [MF]")?;
            }
        }
        IpVersion::V6 => put!(
            w,
            " ttl ",
            ip.ttl,
            " tos ",
            Hex(ip.tos),
            " label ",
            Hex(ip.id)
        )?,
    }
    put!(w, " len ", ip.len)?;
    match ip_proto_name(ip.proto) {
        Some(name) => put!(w, " proto ", name, " (", ip.proto, ')'),
        None => put!(w, " proto ", ip.proto),
    }
}

/// Writes the packet summary, tcpdump-like:
/// `if 2 (eth0) 192.168.1.100.54321 > 203.0.113.10.443 ttl 64 tos 0x0 id 12345 off 0 [DF] len 60 proto TCP (6) flags [S]`.
///
/// IPv6 prints `ttl {hop limit} tos {traffic class} label {flow label}` instead of
/// `ttl/tos/id/off`; ports appear for tcp/udp/sctp, ` type T code C` for icmp/icmpv6; without a
/// network header only the skb length (`len N`) is known.
pub fn write_packet<W: Write + ?Sized>(w: &mut W, packet: &Packet, indent: usize) -> fmt::Result {
    buffered(w, |w| {
        pad(w, indent)?;
        packet_body(w, packet)
    })
}

fn packet_body<W: Write + ?Sized>(w: &mut Text<'_, W>, packet: &Packet) -> fmt::Result {
    let mut parts = Parts::new(w);
    if packet.ifindex.is_some() || packet.ifname.is_some() {
        let w = parts.next()?;
        w.write_str("if")?;
        if let Some(ifindex) = packet.ifindex {
            put!(w, ' ', ifindex)?;
        }
        if let Some(ifname) = &packet.ifname {
            w.write_str(" (")?;
            write_name(w, ifname.as_str())?;
            w.write_char(')')?;
        }
    }
    match &packet.ip {
        Some(ip) => write_packet_ip(parts.next()?, ip, packet.l4.as_ref())?,
        None => put!(parts.next()?, "len ", packet.len)?,
    }
    match packet.l4 {
        Some(PacketL4::Tcp { flags, .. }) => {
            let w = parts.next()?;
            w.write_str("flags ")?;
            write_tcp_flags(w, flags)?;
        }
        Some(PacketL4::Icmp { icmp_type, code } | PacketL4::Icmpv6 { icmp_type, code }) => {
            put!(parts.next()?, "type ", icmp_type, " code ", code)?;
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The envelope

/// Whether the event has any field of the header line.
pub(crate) fn has_header(event: &Event) -> bool {
    event.timestamp.is_some()
        || event.task.is_some()
        || event.probe.is_some()
        || event.netns.is_some()
        || event.tracking.is_some()
        || event.drop.is_some()
        || event.nft.is_some()
}

fn write_task<W: Write + ?Sized>(w: &mut Text<'_, W>, task: &Task) -> fmt::Result {
    w.write_char('[')?;
    write_name(w, task.comm.as_str())?;
    put!(w, "] ", task.tgid)?;
    if task.pid != task.tgid {
        put!(w, '/', task.pid)?;
    }
    Ok(())
}

fn write_probe<W: Write + ?Sized>(w: &mut Text<'_, W>, probe: &ProbeInfo) -> fmt::Result {
    put!(w, '[', <&str>::from(probe.kind), "] ")?;
    write_name(w, &probe.name)
}

fn write_tracking<W: Write + ?Sized>(w: &mut Text<'_, W>, tracking: &Tracking) -> fmt::Result {
    put!(w, "#skb ", BareHex(tracking.skb))?;
    if let Some(conn) = tracking.conn {
        put!(w, " conn ", BareHex(conn))?;
    }
    if let Some(parent) = tracking.parent_conn {
        put!(w, " parent-conn ", BareHex(parent))?;
    }
    Ok(())
}

/// An nftables trace step, where a probe name would be:
/// `nft {family} {table} {chain}{ handle H} {what}{ target}{ (rule text)}`, where `what` is
/// the verdict of a rule (`drop`, `jump`), `policy {verdict}` for a base chain's policy, and
/// `return` for the end of a regular chain (`return {verdict}` if the kernel reported
/// another verdict than `return` there); then ` iif {device}` and ` oif {device}` where the
/// hook had them, each by name, or by index where the name is not known.
pub fn write_nft<W: Write + ?Sized>(w: &mut W, nft: &NftTrace) -> fmt::Result {
    buffered(w, |w| nft_text(w, nft))
}

fn nft_text<W: Write + ?Sized>(w: &mut Text<'_, W>, nft: &NftTrace) -> fmt::Result {
    put!(w, "nft ", <&str>::from(nft.family), ' ')?;
    write_name(w, &nft.table)?;
    w.write_char(' ')?;
    write_name(w, &nft.chain)?;
    if let Some(handle) = nft.handle {
        put!(w, " handle ", handle)?;
    }
    let verdict = <&str>::from(nft.verdict);
    match nft.kind {
        NftTraceKind::Rule => put!(w, ' ', verdict)?,
        NftTraceKind::Policy => put!(w, " policy ", verdict)?,
        NftTraceKind::Return if nft.verdict == NftVerdict::Return => w.write_str(" return")?,
        NftTraceKind::Return => put!(w, " return ", verdict)?,
    }
    if let Some(target) = &nft.target {
        w.write_char(' ')?;
        write_name(w, target)?;
    }
    if let Some(rule) = &nft.rule {
        write_in_parens(w, rule)?;
    }
    for (label, device) in [(" iif ", &nft.iif), (" oif ", &nft.oif)] {
        if let Some(device) = device {
            w.write_str(label)?;
            match &device.ifname {
                Some(name) => write_name(w, name.as_str())?,
                None => put!(w, device.ifindex)?,
            }
        }
    }
    Ok(())
}

/// `drop`, then ` ({reason})` when the kernel gave one.
fn write_drop<W: Write + ?Sized>(w: &mut Text<'_, W>, drop: &DropInfo) -> fmt::Result {
    w.write_str("drop")?;
    match &drop.reason {
        Some(reason) => write_in_parens(w, reason),
        None => Ok(()),
    }
}

/// ` ({name})`: a rule's text or a drop reason after what it explains.
fn write_in_parens<W: Write + ?Sized>(w: &mut Text<'_, W>, name: &str) -> fmt::Result {
    w.write_str(" (")?;
    write_name(w, name)?;
    w.write_char(')')
}

/// The header line without indent; writes nothing when the event has no header field.
fn header_body<W: Write + ?Sized>(w: &mut Text<'_, W>, event: &Event) -> fmt::Result {
    let mut parts = Parts::new(w);
    if let Some(ts) = event.timestamp {
        put!(parts.next()?, ts)?;
    }
    if let Some(task) = &event.task {
        write_task(parts.next()?, task)?;
    }
    if let Some(probe) = &event.probe {
        write_probe(parts.next()?, probe)?;
    }
    if let Some(nft) = &event.nft {
        nft_text(parts.next()?, nft)?;
    }
    if let Some(tracking) = &event.tracking {
        write_tracking(parts.next()?, tracking)?;
    }
    if let Some(netns) = event.netns {
        put!(parts.next()?, "netns ", netns)?;
    }
    if let Some(drop) = &event.drop {
        write_drop(parts.next()?, drop)?;
    }
    Ok(())
}

/// Writes the header line: `{timestamp} [{comm}] {tgid}[/{pid}] [{probe type}] {probe name}`
/// (for an nftables verdict, the trace step in place of the probe: see [`write_nft`]), then the tracking ids (`#skb {id:x} conn {id:x}`), `netns {inode}` and, for a packet
/// dropped, `drop ({reason})` (`drop` alone where the kernel gives no reason) when known.
/// Missing fields are left out; an event without any writes only the indent.
pub fn write_header<W: Write + ?Sized>(w: &mut W, event: &Event, indent: usize) -> fmt::Result {
    buffered(w, |w| {
        pad(w, indent)?;
        header_body(w, event)
    })
}

/// Writes a whole event: the header, then the packet and ct sections.
///
/// Multi-line: one line each, sections indented [`SECTION_INDENT`] spaces under the header
/// (an event without header fields starts with its first section at `indent`). Single-line:
/// all parts on one line separated by single spaces. A missing section is left out; an event
/// with nothing in it writes nothing.
pub fn write_event<W: Write + ?Sized>(
    w: &mut W,
    event: &Event,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    write_event_showing(w, event, event.packet.as_ref(), layout, indent)
}

/// [`write_event`] with `packet` in place of the event's packet section (`sort` leaves out
/// a packet line that its group already shows).
pub(crate) fn write_event_showing<W: Write + ?Sized>(
    w: &mut W,
    event: &Event,
    packet: Option<&Packet>,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    buffered(w, |w| {
        let header = has_header(event);
        let section_indent = if header {
            indent + SECTION_INDENT
        } else {
            indent
        };
        let mut parts = LayoutParts::new(layout);
        if header {
            parts.begin(w, indent)?;
            header_body(w, event)?;
        }
        if let Some(packet) = packet {
            parts.begin(w, section_indent)?;
            packet_body(w, packet)?;
        }
        if let Some(ct) = &event.ct {
            parts.begin(w, section_indent)?;
            ct_body(w, ct, layout, section_indent)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Generic entry points

/// Something with a text layout.
pub trait Render {
    /// Writes `self` in `layout`, starting each line it begins with `indent` spaces (in the
    /// single-line layout only the first), without a trailing newline.
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result;

    /// A value whose `Display` is this layout (`println!("{}", ct.display(Layout::SingleLine))`).
    fn display(&self, layout: Layout) -> Rendered<'_, Self>
    where
        Self: Sized,
    {
        Rendered {
            item: self,
            layout,
            indent: 0,
        }
    }
}

impl Render for Event {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        write_event(w, self, layout, indent)
    }
}

impl Render for CtEvent {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        write_ct(w, self, layout, indent)
    }
}

impl Render for CtConnEvent {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        write_conn(w, self, layout, indent)
    }
}

/// A packet is always one line; the layout does not change it.
impl Render for Packet {
    fn render<W: Write + ?Sized>(&self, w: &mut W, _layout: Layout, indent: usize) -> fmt::Result {
        write_packet(w, self, indent)
    }
}

/// A tuple is always one line; the layout does not change it.
impl Render for CtTuple {
    fn render<W: Write + ?Sized>(&self, w: &mut W, _layout: Layout, indent: usize) -> fmt::Result {
        buffered(w, |w| {
            pad(w, indent)?;
            tuple_text(w, self)
        })
    }
}

/// `Display` adapter returned by [`Render::display`].
#[derive(Debug, Clone, Copy)]
pub struct Rendered<'a, T> {
    item: &'a T,
    layout: Layout,
    indent: usize,
}

impl<T> Rendered<'_, T> {
    /// Indents by `indent` spaces (see [`Render::render`]).
    pub fn indent(mut self, indent: usize) -> Self {
        self.indent = indent;
        self
    }
}

impl<T: Render> fmt::Display for Rendered<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.item.render(f, self.layout, self.indent)
    }
}

// ---------------------------------------------------------------------------------------
// io::Write

/// Renders `item` into an [`io::Write`] (no trailing newline).
pub fn write_io<T: Render + ?Sized, W: io::Write>(
    out: W,
    item: &T,
    layout: Layout,
    indent: usize,
) -> io::Result<()> {
    let mut sink = IoSink::new(out);
    let result = item.render(&mut sink, layout, indent);
    sink.finish(result)
}

mod ct;
#[cfg(test)]
mod tests;

pub(crate) use ct::conn_body;
use ct::{ct_body, tuple_text};
pub use ct::{write_conn, write_ct, write_tuple};
