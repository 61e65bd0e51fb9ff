//! The JSON of an [`Event`], written by hand: byte for byte what `serde_json::to_writer`
//! writes for it (the derives stay the schema and the reader; the tests hold this writer to
//! them for arbitrary events), at a fraction of the cost.
//!
//! serde_json escapes every key and string value byte by byte and prints addresses through
//! `Display`; here keys are literals written with the punctuation around them, strings are
//! escaped only when they hold a byte that needs it (addresses never do), and numbers and
//! addresses go through the crate's fast path ([`crate::fast`]) into a stack buffer handed
//! to the writer in one piece (more only for an event longer than the buffer).

use std::io;

use crate::fast::Out;
use crate::{
    CtConnEvent, CtEvent, CtProto, CtState, CtTuple, DropInfo, Event, IoSink, IpVersion, NftDevice,
    NftTrace, Packet, PacketIp, PacketL4, ProbeInfo, ProbeKind, Task, Tracking, ZoneDir,
};

/// Bytes of the stack buffer: a whole event with both connections fits.
const JSON_BUF: usize = 1536;

type Json<W> = Out<IoSink<W>, JSON_BUF>;

/// Writes `event` as one JSON line (the object and `\n`).
pub(super) fn write_event_line<W: io::Write>(event: &Event, out: W) -> io::Result<()> {
    let mut json = Out::new(IoSink::new(out));
    write_event(&mut json, event);
    json.ascii(b'\n');
    json.finish()
}

fn write_event<W: io::Write>(o: &mut Json<W>, event: &Event) {
    // Every key may be absent: a comma before each but the first written.
    let first = &mut true;
    o.ascii(b'{');
    field(o, first, "\"timestamp\":", event.timestamp, |o, ts| {
        o.dec(ts)
    });
    field(o, first, "\"task\":", event.task.as_ref(), write_task);
    field(o, first, "\"probe\":", event.probe.as_ref(), write_probe);
    field(o, first, "\"netns\":", event.netns, |o, netns| {
        o.dec(netns.into())
    });
    field(
        o,
        first,
        "\"tracking\":",
        event.tracking.as_ref(),
        write_tracking,
    );
    field(o, first, "\"packet\":", event.packet.as_ref(), write_packet);
    field(o, first, "\"drop\":", event.drop.as_ref(), write_drop);
    field(o, first, "\"ct\":", event.ct.as_ref(), write_ct);
    field(o, first, "\"nft\":", event.nft.as_ref(), write_nft);
    o.ascii(b'}');
}

/// `"key":value` when there is a value, after a comma unless it is the `first` written.
#[inline]
fn field<W: io::Write, T>(
    o: &mut Json<W>,
    first: &mut bool,
    key: &'static str,
    value: Option<T>,
    write: impl FnOnce(&mut Json<W>, T),
) {
    let Some(value) = value else { return };
    if !*first {
        o.ascii(b',');
    }
    *first = false;
    o.str(key);
    write(o, value);
}

fn write_nft<W: io::Write>(o: &mut Json<W>, nft: &NftTrace) {
    // The enums' names are their serde names (both lowercase), and none needs escaping.
    o.str("{\"family\":\"");
    o.str(nft.family.into());
    o.str("\",\"table\":");
    string(o, &nft.table);
    o.str(",\"chain\":");
    string(o, &nft.chain);
    o.str(",\"type\":\"");
    o.str(nft.kind.into());
    o.ascii(b'"');
    if let Some(handle) = nft.handle {
        o.str(",\"handle\":");
        o.dec(handle);
    }
    if let Some(rule) = &nft.rule {
        o.str(",\"rule\":");
        string(o, rule);
    }
    o.str(",\"verdict\":\"");
    o.str(nft.verdict.into());
    o.ascii(b'"');
    if let Some(target) = &nft.target {
        o.str(",\"target\":");
        string(o, target);
    }
    if let Some(iif) = &nft.iif {
        o.str(",\"iif\":");
        write_nft_device(o, iif);
    }
    if let Some(oif) = &nft.oif {
        o.str(",\"oif\":");
        write_nft_device(o, oif);
    }
    o.ascii(b'}');
}

fn write_nft_device<W: io::Write>(o: &mut Json<W>, device: &NftDevice) {
    o.str("{\"ifindex\":");
    o.dec(device.ifindex.into());
    o.str(",\"ifname\":");
    match &device.ifname {
        Some(name) => string(o, name.as_str()),
        None => o.str("null"),
    }
    o.ascii(b'}');
}

fn write_drop<W: io::Write>(o: &mut Json<W>, drop: &DropInfo) {
    match &drop.reason {
        Some(reason) => {
            o.str("{\"reason\":");
            string(o, reason);
            o.ascii(b'}');
        }
        None => o.str("{}"),
    }
}

fn write_task<W: io::Write>(o: &mut Json<W>, task: &Task) {
    o.str("{\"pid\":");
    o.dec(task.pid.into());
    o.str(",\"tgid\":");
    o.dec(task.tgid.into());
    o.str(",\"comm\":");
    string(o, task.comm.as_str());
    o.ascii(b'}');
}

fn write_probe<W: io::Write>(o: &mut Json<W>, probe: &ProbeInfo) {
    o.str(match probe.kind {
        ProbeKind::Tp => "{\"type\":\"tp\",\"name\":",
        ProbeKind::Kp => "{\"type\":\"kp\",\"name\":",
        ProbeKind::Kr => "{\"type\":\"kr\",\"name\":",
    });
    string(o, &probe.name);
    o.ascii(b'}');
}

fn write_tracking<W: io::Write>(o: &mut Json<W>, tracking: &Tracking) {
    o.str("{\"skb\":");
    o.dec(tracking.skb);
    if let Some(conn) = tracking.conn {
        o.str(",\"conn\":");
        o.dec(conn);
    }
    if let Some(parent) = tracking.parent_conn {
        o.str(",\"parent_conn\":");
        o.dec(parent);
    }
    o.ascii(b'}');
}

fn write_packet<W: io::Write>(o: &mut Json<W>, packet: &Packet) {
    o.str("{\"ifindex\":");
    match packet.ifindex {
        Some(ifindex) => o.dec(ifindex.into()),
        None => o.str("null"),
    }
    o.str(",\"ifname\":");
    match &packet.ifname {
        Some(ifname) => string(o, ifname.as_str()),
        None => o.str("null"),
    }
    o.str(",\"len\":");
    o.dec(packet.len.into());
    if let Some(ip) = &packet.ip {
        o.str(",\"ip\":");
        write_packet_ip(o, ip);
    }
    if let Some(l4) = &packet.l4 {
        o.str(",\"l4\":");
        write_l4(o, l4);
    }
    if let Some(headers) = &packet.headers {
        o.str(",\"headers\":\"");
        for &byte in headers.as_bytes() {
            o.ascii(HEX_DIGITS[usize::from(byte >> 4)]);
            o.ascii(HEX_DIGITS[usize::from(byte & 0x0f)]);
        }
        o.ascii(b'"');
    }
    o.ascii(b'}');
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn write_packet_ip<W: io::Write>(o: &mut Json<W>, ip: &PacketIp) {
    // Addresses are strings whose text needs no escaping: the quotes go with the keys.
    o.str("{\"src\":\"");
    o.ip(ip.src);
    o.str("\",\"dst\":\"");
    o.ip(ip.dst);
    o.str(match ip.version {
        IpVersion::V4 => "\",\"version\":\"v4\",\"ttl\":",
        IpVersion::V6 => "\",\"version\":\"v6\",\"ttl\":",
    });
    o.dec8(ip.ttl);
    o.str(",\"tos\":");
    o.dec8(ip.tos);
    o.str(",\"id\":");
    o.dec(ip.id.into());
    o.str(",\"frag_off\":");
    o.dec(ip.frag_off.into());
    o.str(if ip.df {
        ",\"df\":true"
    } else {
        ",\"df\":false"
    });
    o.str(if ip.mf {
        ",\"mf\":true"
    } else {
        ",\"mf\":false"
    });
    o.str(",\"len\":");
    o.dec(ip.len.into());
    o.str(",\"proto\":");
    o.dec8(ip.proto);
    o.ascii(b'}');
}

fn write_l4<W: io::Write>(o: &mut Json<W>, l4: &PacketL4) {
    match *l4 {
        PacketL4::Tcp {
            sport,
            dport,
            flags,
        } => {
            ports(o, "{\"tcp\":{\"sport\":", sport, dport);
            o.str(",\"flags\":");
            o.dec8(flags);
        }
        PacketL4::Udp { sport, dport } => ports(o, "{\"udp\":{\"sport\":", sport, dport),
        PacketL4::Sctp { sport, dport } => ports(o, "{\"sctp\":{\"sport\":", sport, dport),
        PacketL4::Icmp { icmp_type, code } => type_code(o, "{\"icmp\":{\"type\":", icmp_type, code),
        PacketL4::Icmpv6 { icmp_type, code } => {
            type_code(o, "{\"icmpv6\":{\"type\":", icmp_type, code)
        }
    }
    o.str("}}");
}

/// `{"proto":{"sport":S,"dport":D` from the opening given.
#[inline]
fn ports<W: io::Write>(o: &mut Json<W>, open: &'static str, sport: u16, dport: u16) {
    o.str(open);
    o.dec(sport.into());
    o.str(",\"dport\":");
    o.dec(dport.into());
}

/// `{"proto":{"type":T,"code":C` from the opening given.
#[inline]
fn type_code<W: io::Write>(o: &mut Json<W>, open: &'static str, icmp_type: u8, code: u8) {
    o.str(open);
    o.dec8(icmp_type);
    o.str(",\"code\":");
    o.dec8(code);
}

/// `{"proto":{"type":T,"code":C,"id":I` from the opening given: ICMP and ICMPv6 tuples.
fn echo<W: io::Write>(o: &mut Json<W>, open: &'static str, icmp_type: u8, code: u8, id: u16) {
    type_code(o, open, icmp_type, code);
    o.str(",\"id\":");
    o.dec(id.into());
}

fn write_ct<W: io::Write>(o: &mut Json<W>, ct: &CtEvent) {
    o.str(match ct.state {
        CtState::Established => "{\"state\":\"established\",\"base\":",
        CtState::Related => "{\"state\":\"related\",\"base\":",
        CtState::New => "{\"state\":\"new\",\"base\":",
        CtState::Reply => "{\"state\":\"reply\",\"base\":",
        CtState::RelatedReply => "{\"state\":\"related_reply\",\"base\":",
        CtState::Untracked => "{\"state\":\"untracked\",\"base\":",
    });
    match &ct.base {
        Some(base) => write_conn(o, base),
        None => o.str("null"),
    }
    o.str(",\"parent\":");
    match &ct.parent {
        Some(parent) => write_conn(o, parent),
        None => o.str("null"),
    }
    o.ascii(b'}');
}

fn write_conn<W: io::Write>(o: &mut Json<W>, conn: &CtConnEvent) {
    o.str("{\"zone_id\":");
    o.dec(conn.zone_id.into());
    o.str(match conn.zone_dir {
        ZoneDir::None => ",\"zone_dir\":\"none\",\"orig\":",
        ZoneDir::Original => ",\"zone_dir\":\"original\",\"orig\":",
        ZoneDir::Reply => ",\"zone_dir\":\"reply\",\"orig\":",
        ZoneDir::Default => ",\"zone_dir\":\"default\",\"orig\":",
    });
    write_tuple(o, &conn.orig);
    o.str(",\"reply\":");
    write_tuple(o, &conn.reply);
    o.str(",\"tcp_state\":");
    match conn.tcp_state {
        Some(state) => kernel_state(o, state.name(), state.raw()),
        None => o.str("null"),
    }
    o.str(",\"mark\":");
    match conn.mark {
        Some(mark) => o.dec(mark.into()),
        None => o.str("null"),
    }
    o.str(",\"labels\":");
    match conn.labels {
        // As `labels_hex` writes them: 16 digits, 32 when the upper half is used.
        Some(labels) => {
            o.ascii(b'"');
            o.hex_prefixed(labels, if labels >> 64 == 0 { 16 } else { 32 });
            o.ascii(b'"');
        }
        None => o.str("null"),
    }
    o.str(",\"ct_status\":");
    o.dec(conn.ct_status.bits().into());
    if let Some(state) = conn.sctp_state {
        o.str(",\"sctp_state\":");
        kernel_state(o, state.name(), state.raw());
    }
    if let Some(helper) = &conn.helper {
        o.str(",\"helper\":");
        string(o, helper.as_str());
    }
    if let Some(timeout) = conn.timeout {
        o.str(",\"timeout\":");
        o.dec(timeout.into());
    }
    o.ascii(b'}');
}

fn write_tuple<W: io::Write>(o: &mut Json<W>, tuple: &CtTuple) {
    o.str("{\"ip\":{\"src\":\"");
    o.ip(tuple.ip.src);
    o.str("\",\"dst\":\"");
    o.ip(tuple.ip.dst);
    o.str(match tuple.ip.version {
        IpVersion::V4 => "\",\"version\":\"v4\"},\"proto\":",
        IpVersion::V6 => "\",\"version\":\"v6\"},\"proto\":",
    });
    match tuple.proto {
        CtProto::Tcp { sport, dport } => ports(o, "{\"tcp\":{\"sport\":", sport, dport),
        CtProto::Udp { sport, dport } => ports(o, "{\"udp\":{\"sport\":", sport, dport),
        CtProto::Icmp {
            icmp_type,
            code,
            id,
        } => echo(o, "{\"icmp\":{\"type\":", icmp_type, code, id),
        CtProto::Icmpv6 {
            icmp_type,
            code,
            id,
        } => echo(o, "{\"icmpv6\":{\"type\":", icmp_type, code, id),
        CtProto::Sctp { sport, dport, vtag } => {
            ports(o, "{\"sctp\":{\"sport\":", sport, dport);
            o.str(",\"vtag\":");
            o.dec(vtag.into());
        }
        CtProto::Generic { proto } => {
            o.str("{\"generic\":{\"proto\":");
            o.dec8(proto);
        }
    }
    o.str("}}}");
}

/// A kernel state: its name, or its number when this version does not know it.
fn kernel_state<W: io::Write>(o: &mut Json<W>, name: Option<&str>, raw: u8) {
    match name {
        Some(name) => {
            o.ascii(b'"');
            o.str(name);
            o.ascii(b'"');
        }
        None => o.dec8(raw),
    }
}

/// Whether JSON needs `b` escaped in a string: `"`, `\` and the control characters below
/// 0x20 (serde_json escapes exactly these; DEL and non-ASCII pass as they are).
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `s` needs escaping; eight bytes at a time.
#[inline]
fn any_needs_escape(s: &str) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of the result is set if the byte of `w` is below `n`
    // (for bytes below 0x80; a false alarm only ever follows a true one).
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let chunks = s.as_bytes().chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        if below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            != 0
        {
            return true;
        }
    }
    rest.iter().any(|&b| needs_escape(b))
}

/// `s` as a JSON string.
#[inline]
fn string<W: io::Write>(o: &mut Json<W>, s: &str) {
    o.ascii(b'"');
    if any_needs_escape(s) {
        escaped(o, s);
    } else {
        o.str(s);
    }
    o.ascii(b'"');
}

/// The inside of a JSON string that needs escapes, as serde_json writes it: the short forms
/// `\" \\ \b \f \n \r \t`, `\u00xx` (lowercase hex) for the other control characters.
#[cold]
fn escaped<W: io::Write>(o: &mut Json<W>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // Every escaped byte is ASCII, so `start` and `i` are character boundaries.
        o.str(&s[start..i]);
        start = i + 1;
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            _ => {
                o.str("\\u00");
                o.ascii(HEX[usize::from(b >> 4)]);
                o.ascii(HEX[usize::from(b & 0xf)]);
                continue;
            }
        };
        o.ascii(b'\\');
        o.ascii(short);
    }
    o.str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::testing::{self, seed_event, FullDisk, SEEDS};
    use crate::{CtStatus, FixedStr, SctpState, TcpState};

    /// What serde_json writes for the event, and the line end.
    fn serde_line(event: &Event) -> String {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        String::from_utf8(line).unwrap()
    }

    fn fast_line(event: &Event) -> String {
        let mut line = Vec::new();
        write_event_line(event, &mut line).unwrap();
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn seeds_and_scenario_events_are_written_as_serde_writes_them() {
        let mut events: Vec<Event> = SEEDS.iter().map(|n| seed_event(n)).collect();
        events.extend(testing::router_scenario());
        events.push(Event::default());
        for event in &events {
            assert_eq!(fast_line(event), serde_line(event));
        }
    }

    #[test]
    fn every_byte_in_a_name_is_escaped_as_serde_escapes_it() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        let mut event = Event {
            probe: Some(ProbeInfo {
                kind: ProbeKind::Kr,
                name: Arc::from(format!("{all}é\u{2028}\u{feff}\u{10ffff}")),
            }),
            task: Some(Task {
                pid: 1,
                tgid: 2,
                comm: FixedStr::new("a\"b\\c\u{7f}\u{1b}\n"),
            }),
            ..Event::default()
        };
        assert_eq!(fast_line(&event), serde_line(&event));
        // Longer than the buffer: passed through in pieces, still the same bytes.
        event.probe.as_mut().unwrap().name = Arc::from(all.repeat(64));
        assert_eq!(fast_line(&event), serde_line(&event));
    }

    #[test]
    fn unknown_states_and_wide_labels_are_written_as_serde_writes_them() {
        let mut event = seed_event("related_parent");
        let ct = event.ct.as_mut().unwrap();
        let base = ct.base.as_mut().unwrap();
        base.tcp_state = Some(TcpState::from_raw(200));
        base.sctp_state = Some(SctpState::from_raw(77));
        base.labels = Some(u128::MAX);
        base.ct_status = CtStatus::from_bits_retain(u32::MAX);
        let parent = ct.parent.as_mut().unwrap();
        parent.labels = Some(0);
        parent.sctp_state = Some(SctpState::Established);
        assert_eq!(fast_line(&event), serde_line(&event));
    }

    #[test]
    fn io_errors_are_returned() {
        let err = write_event_line(&seed_event("tcp_established"), FullDisk).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn the_escape_check_finds_every_byte_in_every_position() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0u8..=0x7f {
                    let mut text = vec![b'a'; len];
                    text[at] = b;
                    let text = String::from_utf8(text).unwrap();
                    assert_eq!(any_needs_escape(&text), needs_escape(b), "{text:?}");
                }
            }
        }
        assert!(!any_needs_escape("ééééé\u{7f}\u{80}\u{ff}\u{10ffff}"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn any_event_is_written_as_serde_writes_it(event in testing::event()) {
            prop_assert_eq!(fast_line(&event), serde_line(&event));
        }
    }
}
