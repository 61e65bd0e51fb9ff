//! The ct section: tuples, the connection of an event, and `ct` lines.

use super::*;

/// Writes one direction of a connection: `{src}.{sport} > {dst}.{dport}` for tcp/udp (sctp
/// adds ` vtag 0x..`), `{src} > {dst} type {t} code {c} id {id}` for icmp/icmpv6,
/// `{src} > {dst}` for any other protocol.
pub fn write_tuple<W: Write + ?Sized>(w: &mut W, tuple: &CtTuple) -> fmt::Result {
    buffered(w, |w| tuple_text(w, tuple))
}

pub(super) fn tuple_text<W: Write + ?Sized>(w: &mut Text<'_, W>, tuple: &CtTuple) -> fmt::Result {
    let (src, dst) = (tuple.ip.src, tuple.ip.dst);
    if let Some((icmp_type, code, id)) = tuple.proto.icmp() {
        return put!(w, src, " > ", dst, " type ", icmp_type, " code ", code, " id ", id);
    }
    match tuple.proto {
        CtProto::Tcp { sport, dport } | CtProto::Udp { sport, dport } => {
            put!(w, src, '.', sport, " > ", dst, '.', dport)
        }
        CtProto::Sctp { sport, dport, vtag } => {
            put!(w, src, '.', sport, " > ", dst, '.', dport)?;
            put!(w, " vtag ", Hex(vtag))
        }
        _ => put!(w, src, " > ", dst),
    }
}

/// The protocol word of a connection: `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `proto {num}`.
fn write_proto<W: Write + ?Sized>(w: &mut Text<'_, W>, proto: &CtProto) -> fmt::Result {
    match proto {
        CtProto::Tcp { .. } => w.write_str("tcp"),
        CtProto::Udp { .. } => w.write_str("udp"),
        CtProto::Icmp { .. } => w.write_str("icmp"),
        CtProto::Icmpv6 { .. } => w.write_str("icmpv6"),
        CtProto::Sctp { .. } => w.write_str("sctp"),
        CtProto::Generic { proto } => put!(w, "proto ", proto),
    }
}

/// The connection part without the first line's indent (continuation lines are indented
/// from `indent`).
pub(crate) fn conn_body<W: Write + ?Sized>(
    w: &mut W,
    conn: &CtConnEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    buffered(w, |w| conn_text(w, conn, layout, indent))
}

pub(super) fn conn_text<W: Write + ?Sized>(
    w: &mut Text<'_, W>,
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

/// `{proto}{ (state)} orig [..] reply [..]`.
fn conn_tuples<W: Write + ?Sized>(
    w: &mut Text<'_, W>,
    conn: &CtConnEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    write_proto(w, &conn.orig.proto)?;
    match conn.orig.proto {
        CtProto::Tcp { .. } => {
            if let Some(state) = conn.tcp_state {
                put!(w, " (", state, ')')?;
            }
        }
        CtProto::Sctp { .. } => {
            if let Some(state) = conn.sctp_state {
                put!(w, " (", state, ')')?;
            }
        }
        _ => {}
    }
    w.write_str(" orig [")?;
    tuple_text(w, &conn.orig)?;
    w.write_char(']')?;
    match layout {
        Layout::SingleLine => w.write_char(' ')?,
        Layout::MultiLine => {
            w.write_char('\n')?;
            pad(w, indent + CONTINUATION_INDENT)?;
        }
    }
    w.write_str("reply [")?;
    tuple_text(w, &conn.reply)?;
    w.write_char(']')
}

/// ` zone ..`, ` mark ..`, ` labels ..` and the optional extras, each only when known.
fn conn_extras<W: Write + ?Sized>(w: &mut Text<'_, W>, conn: &CtConnEvent) -> fmt::Result {
    match conn.zone_dir {
        ZoneDir::None => {}
        ZoneDir::Default => put!(w, " zone ", conn.zone_id)?,
        ZoneDir::Original => put!(w, " orig-zone ", conn.zone_id)?,
        ZoneDir::Reply => put!(w, " reply-zone ", conn.zone_id)?,
    }
    if let Some(mark) = conn.mark {
        put!(w, " mark ", Hex(mark))?;
    }
    if let Some(labels) = conn.labels.filter(|&l| l != 0) {
        put!(w, " labels ", Hex(labels))?;
    }
    if let Some(helper) = &conn.helper {
        w.write_str(" helper ")?;
        write_name(w, helper.as_str())?;
    }
    if let Some(timeout) = conn.timeout {
        put!(w, " timeout ", timeout, 's')?;
    }
    Ok(())
}

/// Writes the connection part:
/// `{proto}{ (state)} orig [{tuple}] reply [{tuple}]{ zone}{ mark}{ labels}{ helper}{ timeout}`,
/// split before `reply` in the multi-line layout.
pub fn write_conn<W: Write + ?Sized>(
    w: &mut W,
    conn: &CtConnEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    buffered(w, |w| {
        pad(w, indent)?;
        conn_text(w, conn, layout, indent)
    })
}

/// The ct section without the first line's indent.
pub(super) fn ct_body<W: Write + ?Sized>(
    w: &mut Text<'_, W>,
    ct: &CtEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    put!(w, "ct_state ", <&str>::from(ct.state))?;
    if let Some(base) = &ct.base {
        put!(w, " status ", Hex(base.ct_status.bits()))?;
        match layout {
            Layout::SingleLine => w.write_char(' ')?,
            Layout::MultiLine => {
                w.write_char('\n')?;
                pad(w, indent)?;
            }
        }
        conn_text(w, base, layout, indent)?;
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
        conn_text(w, parent, layout, indent)?;
        w.write_char(']')?;
    }
    Ok(())
}

/// Writes the ct section: `ct_state {STATE} status {status:#x} {connection}` and, for a
/// RELATED flow, its parent; `ct_state UNTRACKED` for an untracked packet.
pub fn write_ct<W: Write + ?Sized>(
    w: &mut W,
    ct: &CtEvent,
    layout: Layout,
    indent: usize,
) -> fmt::Result {
    buffered(w, |w| {
        pad(w, indent)?;
        ct_body(w, ct, layout, indent)
    })
}
