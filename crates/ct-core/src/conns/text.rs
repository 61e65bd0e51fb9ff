//! The text layouts of a connection.

use std::fmt::{self, Write};

use super::{Connection, Entry, NftDrop, Transition};
use crate::render::{conn_body, write_name, Layout, LayoutParts, Render, SECTION_INDENT};
use crate::{NftTraceKind, ProbeInfo};

/// `dropped by inet f in handle 3: tcp dport 81 drop, ct state NEW (2 packets)`.
fn write_nft_drop<W: Write + ?Sized>(w: &mut W, drop: &NftDrop) -> fmt::Result {
    let by = &drop.by;
    write!(w, "dropped by {} ", by.family)?;
    write_name(w, &by.table)?;
    w.write_char(' ')?;
    write_name(w, &by.chain)?;
    if let Some(handle) = by.handle {
        write!(w, " handle {handle}")?;
    }
    if by.kind == NftTraceKind::Policy {
        w.write_str(" policy")?;
    }
    if let Some(rule) = &by.rule {
        w.write_str(": ")?;
        write_name(w, rule)?;
    }
    if let Some(state) = drop.ct_state {
        write!(w, ", ct state {}", <&str>::from(state))?;
    }
    if drop.packets > 1 {
        write!(w, " ({} packets)", drop.packets)?;
    }
    Ok(())
}

/// A duration in ns with a readable unit: `850ns`, `1.250us`, `3.000ms`, `12.345s`.
pub fn write_duration<W: Write + ?Sized>(w: &mut W, ns: u64) -> fmt::Result {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    match ns {
        0..US => write!(w, "{ns}ns"),
        US..MS => write!(w, "{}.{:03}us", ns / US, ns % US),
        MS..S => write!(w, "{}.{:03}ms", ns / MS, ns % MS / US),
        _ => write!(w, "{}.{:03}s", ns / S, ns % S / MS),
    }
}

/// `+1.250us` after `start`; empty when either time is unknown.
fn offset_text(at: Option<u64>, start: Option<u64>) -> Result<String, fmt::Error> {
    let mut s = String::new();
    if let (Some(at), Some(start)) = (at, start) {
        s.push('+');
        write_duration(&mut s, at.saturating_sub(start))?;
    }
    Ok(s)
}

/// `[tp] net:netif_receive_skb`; empty when the probe is unknown.
fn probe_text(probe: Option<&ProbeInfo>) -> Result<String, fmt::Error> {
    let mut s = String::new();
    if let Some(p) = probe {
        write!(s, "[{}] ", p.kind)?;
        write_name(&mut s, &p.name)?;
    }
    Ok(s)
}

/// Column widths shared by the timelines of one connection (multi-line layout).
#[derive(Default)]
struct Columns {
    label: usize,
    state: usize,
    offset: usize,
}

impl Columns {
    fn fit<S: fmt::Display>(
        &mut self,
        label: &str,
        list: &[Transition<S>],
        start: Option<u64>,
    ) -> fmt::Result {
        if !list.is_empty() {
            self.label = self.label.max(label.len());
        }
        for t in list {
            self.state = self.state.max(t.state.to_string().chars().count());
            self.offset = self.offset.max(offset_text(t.timestamp, start)?.len());
        }
        Ok(())
    }
}

/// One timeline: in the multi-line layout `ct_state  NEW   +0ns     [tp] net:...` and one
/// line per further state, columns aligned; in the single-line layout
/// `ct_state NEW (+0ns [tp] net:...) -> REPLY (...)`. Writes nothing for an empty timeline.
fn write_timeline<W: Write + ?Sized, S: fmt::Display>(
    w: &mut W,
    parts: &mut LayoutParts,
    label: &str,
    list: &[Transition<S>],
    start: Option<u64>,
    columns: &Columns,
    indent: usize,
) -> fmt::Result {
    for (i, t) in list.iter().enumerate() {
        let offset = offset_text(t.timestamp, start)?;
        let probe = probe_text(t.probe.as_ref())?;
        match parts.layout() {
            Layout::SingleLine => {
                if i == 0 {
                    parts.begin(w, indent)?;
                    write!(w, "{label} ")?;
                } else {
                    w.write_str(" -> ")?;
                }
                write!(w, "{}", t.state)?;
                match (offset.is_empty(), probe.is_empty()) {
                    (true, true) => {}
                    (false, true) => write!(w, " ({offset})")?,
                    (true, false) => write!(w, " ({probe})")?,
                    (false, false) => write!(w, " ({offset} {probe})")?,
                }
            }
            Layout::MultiLine => {
                parts.begin(w, indent)?;
                let label = if i == 0 { label } else { "" };
                let row = format!(
                    "{label:<lw$} {state:<sw$} {offset:<ow$} {probe}",
                    state = t.state.to_string(),
                    lw = columns.label,
                    sw = columns.state,
                    ow = columns.offset
                );
                w.write_str(row.trim_end())?;
            }
        }
    }
    Ok(())
}

impl Render for Connection {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        let inner = indent + SECTION_INDENT;
        let mut parts = LayoutParts::new(layout);
        parts.begin(w, indent)?;
        match self.key.id() {
            Some(id) => write!(w, "conn {id:x}")?,
            None => w.write_str("conn (no id)")?,
        }
        parts.begin(w, inner)?;
        conn_body(w, &self.entry, layout, inner)?;
        parts.begin(w, inner)?;
        write!(w, "status {:#x}", self.entry.ct_status.bits())?;
        if layout == Layout::MultiLine && !self.entry.ct_status.is_empty() {
            write!(w, " ({})", self.entry.ct_status)?;
        }
        parts.begin(w, inner)?;
        write!(w, "nat {}", self.nat)?;
        if let Some(parent) = &self.parent {
            parts.begin(w, inner)?;
            w.write_str("parent")?;
            if let Some(id) = parent.conn {
                write!(w, " conn {id:x}")?;
            }
            match &parent.entry {
                Some(entry) => {
                    w.write_str(" [")?;
                    conn_body(w, entry, layout, inner)?;
                    w.write_char(']')?;
                }
                None => w.write_str(" (not in this file)")?,
            }
        }
        parts.begin(w, inner)?;
        match (self.first_seen, self.last_seen) {
            (Some(first), Some(last)) => {
                write!(w, "first {first} last {last} (")?;
                write_duration(w, last.saturating_sub(first))?;
                w.write_str(") ")?;
            }
            _ => w.write_str("no timestamps, ")?,
        }
        write!(w, "events {}", self.events)?;
        parts.begin(w, inner)?;
        write!(
            w,
            "packets orig {} reply {} drops {}",
            self.packets.orig, self.packets.reply, self.drops
        )?;
        for (i, (reason, n)) in self.drop_reasons.iter().enumerate() {
            w.write_str(if i == 0 { " (" } else { ", " })?;
            write_name(w, reason)?;
            write!(w, " {n}")?;
        }
        if !self.drop_reasons.is_empty() {
            w.write_char(')')?;
        }
        for drop in &self.nft_drops {
            parts.begin(w, inner)?;
            write_nft_drop(w, drop)?;
        }
        let start = self.first_seen;
        let mut columns = Columns::default();
        if layout == Layout::MultiLine {
            columns.fit("ct_state", &self.ct_states, start)?;
            columns.fit("tcp_state", &self.tcp_states, start)?;
            columns.fit("sctp_state", &self.sctp_states, start)?;
        }
        let (c, p) = (&columns, &mut parts);
        write_timeline(w, p, "ct_state", &self.ct_states, start, c, inner)?;
        write_timeline(w, p, "tcp_state", &self.tcp_states, start, c, inner)?;
        write_timeline(w, p, "sctp_state", &self.sctp_states, start, c, inner)?;
        Ok(())
    }
}

impl Render for Entry<'_> {
    fn render<W: Write + ?Sized>(&self, w: &mut W, layout: Layout, indent: usize) -> fmt::Result {
        match self {
            Entry::Conn(conn) => conn.render(w, layout, indent),
            Entry::Unattributed(drops) => {
                let mut parts = LayoutParts::new(layout);
                parts.begin(w, indent)?;
                w.write_str("unattributed nft drops (no connection in this file)")?;
                for drop in *drops {
                    parts.begin(w, indent + SECTION_INDENT)?;
                    write_nft_drop(w, drop)?;
                }
                Ok(())
            }
        }
    }
}
