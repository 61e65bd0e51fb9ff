//! The text writers as they were before the fast path (every field through `write!`), kept
//! as the oracle the current writers are held to: for any event, in both layouts and at
//! any indent, [`super`] must write exactly the bytes this module writes.
//!
//! Frozen copy: do not change it to match the writers; change it only if the layouts are
//! meant to change, together with the snapshots.

use std::fmt::{self, Write};

use proptest::prelude::*;

use super::{Layout, CONTINUATION_INDENT, SECTION_INDENT};
use crate::testing;
use crate::{
    ip_proto_name, CtConnEvent, CtEvent, CtProto, CtTuple, Event, IpVersion, NftTrace,
    NftTraceKind, NftVerdict, Packet, PacketIp, PacketL4, ProbeInfo, Task, Tracking, ZoneDir,
};

fn pad<W: Write + ?Sized>(w: &mut W, n: usize) -> fmt::Result {
    const SPACES: &str = "                                ";
    let mut left = n;
    while left > 0 {
        let k = left.min(SPACES.len());
        w.write_str(&SPACES[..k])?;
        left -= k;
    }
    Ok(())
}

fn write_name<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    if !s.chars().any(char::is_control) {
        return w.write_str(s);
    }
    for c in s.chars() {
        if c.is_control() {
            write!(w, "{}", c.escape_default())?;
        } else {
            w.write_char(c)?;
        }
    }
    Ok(())
}

struct Parts<'w, W: ?Sized> {
    w: &'w mut W,
    empty: bool,
}

impl<'w, W: Write + ?Sized> Parts<'w, W> {
    fn new(w: &'w mut W) -> Self {
        Parts { w, empty: true }
    }

    fn next(&mut self) -> Result<&mut W, fmt::Error> {
        if !self.empty {
            self.w.write_char(' ')?;
        }
        self.empty = false;
        Ok(self.w)
    }
}

// ---------------------------------------------------------------------------------------
// The ct section

pub(super) fn write_tuple<W: Write + ?Sized>(w: &mut W, tuple: &CtTuple) -> fmt::Result {
    let (src, dst) = (tuple.ip.src, tuple.ip.dst);
    match tuple.proto {
        CtProto::Tcp { sport, dport } | CtProto::Udp { sport, dport } => {
            write!(w, "{src}.{sport} > {dst}.{dport}")
        }
        CtProto::Sctp { sport, dport, vtag } => {
            write!(w, "{src}.{sport} > {dst}.{dport} vtag {vtag:#x}")
        }
        CtProto::Icmp {
            icmp_type,
            code,
            id,
        }
        | CtProto::Icmpv6 {
            icmp_type,
            code,
            id,
        } => write!(w, "{src} > {dst} type {icmp_type} code {code} id {id}"),
        CtProto::Generic { .. } => write!(w, "{src} > {dst}"),
    }
}

fn write_proto<W: Write + ?Sized>(w: &mut W, proto: &CtProto) -> fmt::Result {
    match proto {
        CtProto::Tcp { .. } => w.write_str("tcp"),
        CtProto::Udp { .. } => w.write_str("udp"),
        CtProto::Icmp { .. } => w.write_str("icmp"),
        CtProto::Icmpv6 { .. } => w.write_str("icmpv6"),
        CtProto::Sctp { .. } => w.write_str("sctp"),
        CtProto::Generic { proto } => write!(w, "proto {proto}"),
    }
}

fn conn_body<W: Write + ?Sized>(
    w: &mut W,
    conn: &CtConnEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    if conn.is_template() {
        // A CT-target template carries settings (zone, helper...) but no tuples yet.
        w.write_str("template")?;
    } else {
        conn_tuples(w, conn, layout, indent)?;
    }
    conn_extras(w, conn)
}

fn conn_tuples<W: Write + ?Sized>(
    w: &mut W,
    conn: &CtConnEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    write_proto(w, &conn.orig.proto)?;
    match conn.orig.proto {
        CtProto::Tcp { .. } => {
            if let Some(state) = conn.tcp_state {
                write!(w, " ({state})")?;
            }
        }
        CtProto::Sctp { .. } => {
            if let Some(state) = conn.sctp_state {
                write!(w, " ({state})")?;
            }
        }
        _ => {}
    }
    w.write_str(" orig [")?;
    write_tuple(w, &conn.orig)?;
    w.write_char(']')?;
    match layout {
        Layout::SingleLine => w.write_char(' ')?,
        Layout::MultiLine => {
            w.write_char('\n')?;
            pad(w, indent + CONTINUATION_INDENT)?;
        }
    }
    w.write_str("reply [")?;
    write_tuple(w, &conn.reply)?;
    w.write_char(']')
}

fn conn_extras<W: Write + ?Sized>(w: &mut W, conn: &CtConnEvent) -> fmt::Result {
    match conn.zone_dir {
        ZoneDir::None => {}
        ZoneDir::Default => write!(w, " zone {}", conn.zone_id)?,
        ZoneDir::Original => write!(w, " orig-zone {}", conn.zone_id)?,
        ZoneDir::Reply => write!(w, " reply-zone {}", conn.zone_id)?,
    }
    if let Some(mark) = conn.mark {
        write!(w, " mark {mark:#x}")?;
    }
    if let Some(labels) = conn.labels.filter(|&l| l != 0) {
        write!(w, " labels {labels:#x}")?;
    }
    if let Some(helper) = &conn.helper {
        w.write_str(" helper ")?;
        write_name(w, helper.as_str())?;
    }
    if let Some(timeout) = conn.timeout {
        write!(w, " timeout {timeout}s")?;
    }
    Ok(())
}

pub(super) fn write_conn<W: Write + ?Sized>(
    w: &mut W,
    conn: &CtConnEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    pad(w, indent)?;
    conn_body(w, conn, layout, indent)
}

fn ct_body<W: Write + ?Sized>(
    w: &mut W,
    ct: &CtEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    write!(w, "ct_state {}", ct.state)?;
    if let Some(base) = &ct.base {
        write!(w, " status {:#x}", base.ct_status.bits())?;
        match layout {
            Layout::SingleLine => w.write_char(' ')?,
            Layout::MultiLine => {
                w.write_char('\n')?;
                pad(w, indent)?;
            }
        }
        conn_body(w, base, layout, indent)?;
    }
    if let Some(parent) = &ct.parent {
        match layout {
            Layout::SingleLine => w.write_str(" parent [")?,
            Layout::MultiLine => {
                w.write_char('\n')?;
                pad(w, indent)?;
                w.write_str("\\ parent [")?;
            }
        }
        conn_body(w, parent, layout, indent)?;
        w.write_char(']')?;
    }
    Ok(())
}

pub(super) fn write_ct<W: Write + ?Sized>(
    w: &mut W,
    ct: &CtEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    pad(w, indent)?;
    ct_body(w, ct, layout, indent)
}

// ---------------------------------------------------------------------------------------
// The packet section

pub(super) fn write_tcp_flags<W: Write + ?Sized>(w: &mut W, flags: u8) -> fmt::Result {
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
    w: &mut W,
    ip: &PacketIp,
    l4: Option<&PacketL4>,
) -> fmt::Result {
    match l4_ports(l4) {
        Some((sport, dport)) => write!(w, "{}.{sport} > {}.{dport}", ip.src, ip.dst)?,
        None => write!(w, "{} > {}", ip.src, ip.dst)?,
    }
    match ip.version {
        IpVersion::V4 => {
            write!(
                w,
                " ttl {} tos {:#x} id {} off {}",
                ip.ttl, ip.tos, ip.id, ip.frag_off
            )?;
            if ip.df {
                w.write_str(" [DF]")?;
            }
            if ip.mf {
                w.write_str(" [MF]")?;
            }
        }
        IpVersion::V6 => write!(w, " ttl {} tos {:#x} label {:#x}", ip.ttl, ip.tos, ip.id)?,
    }
    write!(w, " len {}", ip.len)?;
    match ip_proto_name(ip.proto) {
        Some(name) => write!(w, " proto {name} ({})", ip.proto),
        None => write!(w, " proto {}", ip.proto),
    }
}

pub(super) fn write_packet<W: Write + ?Sized>(
    w: &mut W,
    packet: &Packet,
    indent: usize,
) -> fmt::Result {
    pad(w, indent)?;
    packet_body(w, packet)
}

fn packet_body<W: Write + ?Sized>(w: &mut W, packet: &Packet) -> fmt::Result {
    let mut parts = Parts::new(w);
    if packet.ifindex.is_some() || packet.ifname.is_some() {
        let w = parts.next()?;
        w.write_str("if")?;
        if let Some(ifindex) = packet.ifindex {
            write!(w, " {ifindex}")?;
        }
        if let Some(ifname) = &packet.ifname {
            w.write_str(" (")?;
            write_name(w, ifname.as_str())?;
            w.write_char(')')?;
        }
    }
    match &packet.ip {
        Some(ip) => write_packet_ip(parts.next()?, ip, packet.l4.as_ref())?,
        None => write!(parts.next()?, "len {}", packet.len)?,
    }
    match packet.l4 {
        Some(PacketL4::Tcp { flags, .. }) => {
            let w = parts.next()?;
            w.write_str("flags ")?;
            write_tcp_flags(w, flags)?;
        }
        Some(PacketL4::Icmp { icmp_type, code } | PacketL4::Icmpv6 { icmp_type, code }) => {
            write!(parts.next()?, "type {icmp_type} code {code}")?;
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The envelope

fn has_header(event: &Event) -> bool {
    event.timestamp.is_some()
        || event.task.is_some()
        || event.probe.is_some()
        || event.netns.is_some()
        || event.tracking.is_some()
        || event.drop.is_some()
        || event.nft.is_some()
}

fn write_nft<W: Write + ?Sized>(w: &mut W, nft: &NftTrace) -> fmt::Result {
    write!(w, "nft {} ", nft.family)?;
    write_name(w, &nft.table)?;
    w.write_char(' ')?;
    write_name(w, &nft.chain)?;
    if let Some(handle) = nft.handle {
        write!(w, " handle {handle}")?;
    }
    match nft.kind {
        NftTraceKind::Rule => write!(w, " {}", nft.verdict)?,
        NftTraceKind::Policy => write!(w, " policy {}", nft.verdict)?,
        NftTraceKind::Return if nft.verdict == NftVerdict::Return => w.write_str(" return")?,
        NftTraceKind::Return => write!(w, " return {}", nft.verdict)?,
    }
    if let Some(target) = &nft.target {
        w.write_char(' ')?;
        write_name(w, target)?;
    }
    if let Some(rule) = &nft.rule {
        w.write_str(" (")?;
        write_name(w, rule)?;
        w.write_char(')')?;
    }
    Ok(())
}

fn write_task<W: Write + ?Sized>(w: &mut W, task: &Task) -> fmt::Result {
    w.write_char('[')?;
    write_name(w, task.comm.as_str())?;
    write!(w, "] {}", task.tgid)?;
    if task.pid != task.tgid {
        write!(w, "/{}", task.pid)?;
    }
    Ok(())
}

fn write_probe<W: Write + ?Sized>(w: &mut W, probe: &ProbeInfo) -> fmt::Result {
    write!(w, "[{}] ", probe.kind)?;
    write_name(w, &probe.name)
}

fn write_tracking<W: Write + ?Sized>(w: &mut W, tracking: &Tracking) -> fmt::Result {
    write!(w, "#skb {:x}", tracking.skb)?;
    if let Some(conn) = tracking.conn {
        write!(w, " conn {conn:x}")?;
    }
    if let Some(parent) = tracking.parent_conn {
        write!(w, " parent-conn {parent:x}")?;
    }
    Ok(())
}

fn header_body<W: Write + ?Sized>(w: &mut W, event: &Event) -> fmt::Result {
    let mut parts = Parts::new(w);
    if let Some(ts) = event.timestamp {
        write!(parts.next()?, "{ts}")?;
    }
    if let Some(task) = &event.task {
        write_task(parts.next()?, task)?;
    }
    if let Some(probe) = &event.probe {
        write_probe(parts.next()?, probe)?;
    }
    if let Some(nft) = &event.nft {
        write_nft(parts.next()?, nft)?;
    }
    if let Some(tracking) = &event.tracking {
        write_tracking(parts.next()?, tracking)?;
    }
    if let Some(netns) = event.netns {
        write!(parts.next()?, "netns {netns}")?;
    }
    if let Some(drop) = &event.drop {
        let w = parts.next()?;
        w.write_str("drop")?;
        if let Some(reason) = &drop.reason {
            w.write_str(" (")?;
            write_name(w, reason)?;
            w.write_char(')')?;
        }
    }
    Ok(())
}

pub(super) fn write_header<W: Write + ?Sized>(
    w: &mut W,
    event: &Event,
    indent: usize,
) -> fmt::Result {
    pad(w, indent)?;
    header_body(w, event)
}

pub(super) fn write_event<W: Write + ?Sized>(
    w: &mut W,
    event: &Event,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    let header = has_header(event);
    let section_indent = if header {
        indent + SECTION_INDENT
    } else {
        indent
    };
    let mut started = false;
    // Begins a part: the indent for the first, otherwise a space or a new indented line.
    let mut begin = |w: &mut W, part_indent: usize| -> fmt::Result {
        if !started {
            started = true;
            pad(w, part_indent)
        } else {
            match layout {
                Layout::SingleLine => w.write_char(' '),
                Layout::MultiLine => {
                    w.write_char('\n')?;
                    pad(w, part_indent)
                }
            }
        }
    };
    if header {
        begin(w, indent)?;
        header_body(w, event)?;
    }
    if let Some(packet) = &event.packet {
        begin(w, section_indent)?;
        packet_body(w, packet)?;
    }
    if let Some(ct) = &event.ct {
        begin(w, section_indent)?;
        ct_body(w, ct, layout, section_indent)?;
    }
    Ok(())
}

fn both<F, G>(new: F, old: G) -> (String, String)
where
    F: FnOnce(&mut String) -> fmt::Result,
    G: FnOnce(&mut String) -> fmt::Result,
{
    let (mut a, mut b) = (String::new(), String::new());
    new(&mut a).unwrap();
    old(&mut b).unwrap();
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn events_print_exactly_as_before(event in testing::event(), indent in 0usize..6) {
        for layout in [Layout::SingleLine, Layout::MultiLine] {
            let (new, old) = both(
                |w| super::write_event(w, &event, layout, indent),
                |w| write_event(w, &event, layout, indent),
            );
            prop_assert_eq!(new, old);
            let (new, old) = both(
                |w| super::write_header(w, &event, indent),
                |w| write_header(w, &event, indent),
            );
            prop_assert_eq!(new, old);
        }
    }

    #[test]
    fn sections_print_exactly_as_before(
        ct in testing::ct_event(),
        packet in testing::packet(),
        tuple in testing::ct_tuple(),
        flags in any::<u8>(),
        indent in 0usize..6,
    ) {
        for layout in [Layout::SingleLine, Layout::MultiLine] {
            let (new, old) = both(
                |w| super::write_ct(w, &ct, layout, indent),
                |w| write_ct(w, &ct, layout, indent),
            );
            prop_assert_eq!(new, old);
            if let Some(base) = &ct.base {
                let (new, old) = both(
                    |w| super::write_conn(w, base, layout, indent),
                    |w| write_conn(w, base, layout, indent),
                );
                prop_assert_eq!(new, old);
            }
        }
        let (new, old) = both(
            |w| super::write_packet(w, &packet, indent),
            |w| write_packet(w, &packet, indent),
        );
        prop_assert_eq!(new, old);
        let (new, old) = both(|w| super::write_tuple(w, &tuple), |w| write_tuple(w, &tuple));
        prop_assert_eq!(new, old);
        let (new, old) = both(
            |w| super::write_tcp_flags(w, flags),
            |w| write_tcp_flags(w, flags),
        );
        prop_assert_eq!(new, old);
    }
}
