//! A reader specialised for the event schema, several times faster than the serde model.
//!
//! It reads the JSON that events files hold: the keys the model has, each once, plain
//! strings (no escapes), integers without sign, fraction or exponent, whitespace anywhere
//! JSON allows it. Anything else (an unknown key, an escape, a value of the wrong type, a
//! key twice, bad JSON) makes it give up with `None`, and the line is read again by the
//! serde model, which is the schema: it accepts what it accepts and words the errors. So
//! this reader only has to agree with serde on the lines it takes, which the proptests
//! in `jsonl/tests.rs` hold it to.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::labels::parse_labels;
use crate::{
    CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, DropInfo, Event, FixedStr,
    HeaderBytes, IpVersion, NftDevice, NftFamily, NftTrace, NftTraceKind, NftVerdict, Packet,
    PacketIp, PacketL4, ProbeInfo, ProbeKind, SctpState, Task, TcpState, Tracking, ZoneDir,
    NAME_LEN,
};

/// Probe names kept to share one allocation between the events of a probe.
const PROBE_NAMES: usize = 32;

/// The schema reader, with the probe names it has seen.
#[derive(Debug, Default)]
pub(crate) struct SchemaReader {
    probe_names: Vec<Arc<str>>,
}

impl SchemaReader {
    /// The event on `line`, or `None` where the serde model must decide.
    pub(crate) fn parse(&mut self, line: &str) -> Option<Event> {
        let mut c = Cursor {
            s: line,
            b: line.as_bytes(),
            i: 0,
        };
        let event = self.event(&mut c)?;
        c.ws();
        (c.i == c.b.len()).then_some(event)
    }

    fn event(&mut self, c: &mut Cursor<'_>) -> Option<Event> {
        let mut e = Event::default();
        c.fields_of(
            &[
                "timestamp",
                "task",
                "probe",
                "netns",
                "tracking",
                "packet",
                "drop",
                "ct",
                "nft",
            ],
            |c, index| {
                match index {
                    0 => {
                        e.timestamp = c.opt(Cursor::u64)?;
                    }
                    1 => {
                        e.task = c.opt(task)?;
                    }
                    2 => {
                        e.probe = c.opt(|c| self.probe(c))?;
                    }
                    3 => {
                        e.netns = c.opt(Cursor::uint)?;
                    }
                    4 => {
                        e.tracking = c.opt(tracking)?;
                    }
                    5 => {
                        e.packet = c.opt(packet)?;
                    }
                    6 => {
                        e.drop = c.opt(drop_info)?;
                    }
                    7 => {
                        e.ct = c.opt(ct_event)?;
                    }
                    8 => {
                        e.nft = c.opt(nft)?;
                    }
                    _ => return None,
                }
                Some(())
            },
        )?;
        Some(e)
    }

    fn probe(&mut self, c: &mut Cursor<'_>) -> Option<ProbeInfo> {
        let (mut kind, mut name) = (None, None);
        c.fields_of(&["type", "name"], |c, index| {
            match index {
                0 => {
                    kind = Some(match c.string()? {
                        "tp" => ProbeKind::Tp,
                        "kp" => ProbeKind::Kp,
                        "kr" => ProbeKind::Kr,
                        _ => return None,
                    });
                }
                1 => {
                    name = Some(self.probe_name(c.string()?));
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(ProbeInfo {
            kind: kind?,
            name: name?,
        })
    }

    fn probe_name(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.probe_names.iter().find(|n| ***n == *name) {
            return Arc::clone(known);
        }
        let name: Arc<str> = Arc::from(name);
        if self.probe_names.len() < PROBE_NAMES {
            self.probe_names.push(Arc::clone(&name));
        }
        name
    }
}

/// A position in a line.
struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips JSON whitespace.
    #[inline]
    fn ws(&mut self) {
        // Events files have none: one test for the usual case.
        if self.b.get(self.i).is_some_and(|&b| b > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not taken.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// A string without escapes or control characters.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = memchr::memchr(b'"', self.b.get(start..)?)?;
        let text = &self.b[start..start + len];
        // No early exit, so that it is done many bytes at a time.
        let plain = text
            .iter()
            .fold(true, |plain, &b| plain & (b != b'\\') & (b >= 0x20));
        if !plain {
            return None;
        }
        self.i = start + len + 1;
        // Cut at ASCII quotes, so at character boundaries.
        self.s.get(start..start + len)
    }

    /// An integer in plain digits (`0`, or no leading zero), within `u64`.
    #[inline]
    fn u64(&mut self) -> Option<u64> {
        self.ws();
        let start = self.i;
        let mut value: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.b.get(self.i) {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        // A leading zero is only `0` itself; what follows the digits (a fraction, an
        // exponent) is refused by the caller's next token.
        (digits == 1 || (digits > 1 && self.b[start] != b'0')).then_some(value)
    }

    #[inline]
    fn uint<T: TryFrom<u64>>(&mut self) -> Option<T> {
        T::try_from(self.u64()?).ok()
    }

    fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true") {
            Some(true)
        } else if self.literal(b"false") {
            Some(false)
        } else {
            None
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> bool {
        self.ws();
        // The first byte alone settles most cases, without a call to memcmp.
        if self.b.get(self.i) != word.first() {
            return false;
        }
        let found = self.b[self.i..].starts_with(word);
        if found {
            self.i += word.len();
        }
        found
    }

    /// `null` as `None`, else the value `read` reads.
    #[inline]
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal(b"null") {
            Some(None)
        } else {
            read(self).map(Some)
        }
    }

    /// An object whose keys are `keys`, each at most once (a key twice, or another key,
    /// gives up): `field` reads the value of `keys[i]`. Keys are tried in the order given
    /// first, the order the writer uses.
    #[inline]
    fn fields_of(
        &mut self,
        keys: &[&str],
        mut field: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let mut seen = 0u32;
        let mut next = 0;
        loop {
            let index = match keys.get(next) {
                Some(expected) if self.quoted(expected) => next,
                _ => {
                    let key = self.string()?;
                    keys.iter().position(|k| *k == key)?
                }
            };
            let bit = 1 << index;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            next = index + 1;
            self.eat(b':')?;
            field(self, index)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Takes `"word"` if it comes next.
    #[inline]
    fn quoted(&mut self, word: &str) -> bool {
        self.ws();
        let end = self.i + word.len() + 2;
        // Byte by byte: keys are short, and a call to memcmp costs more than them.
        let found = self.b.get(self.i..end).is_some_and(|at| {
            at[0] == b'"'
                && at[at.len() - 1] == b'"'
                && at[1..].iter().zip(word.as_bytes()).all(|(a, b)| a == b)
        });
        if found {
            self.i = end;
        }
        found
    }

    /// An externally tagged enum variant: `{"name": value}`, `variant` reading the value.
    fn variant<T>(&mut self, variant: impl FnOnce(&mut Self, &'a str) -> Option<T>) -> Option<T> {
        self.eat(b'{')?;
        let key = self.string()?;
        self.eat(b':')?;
        let value = variant(self, key)?;
        self.eat(b'}')?;
        Some(value)
    }

    fn fixed(&mut self) -> Option<FixedStr> {
        let s = self.string()?;
        (s.len() <= NAME_LEN).then(|| FixedStr::new(s))
    }

    fn ip(&mut self) -> Option<IpAddr> {
        let text = self.string()?;
        match ipv4(text.as_bytes()) {
            Some(v4) => Some(IpAddr::V4(v4)),
            None => text.parse().ok(),
        }
    }

    fn arc(&mut self) -> Option<Arc<str>> {
        self.string().map(Arc::from)
    }
}

/// A dotted quad in its usual spelling (no leading zeros), which `IpAddr::from_str` reads
/// the same; anything else is left to it.
fn ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if text.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut value: u32 = 0;
        while let Some(&d @ b'0'..=b'9') = text.get(i) {
            value = value * 10 + u32::from(d - b'0');
            i += 1;
            if i - start > 3 {
                return None;
            }
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && text[start] == b'0') {
            return None;
        }
        *octet = u8::try_from(value).ok()?;
    }
    (i == text.len()).then_some(Ipv4Addr::from(octets))
}

fn task(c: &mut Cursor<'_>) -> Option<Task> {
    let (mut pid, mut tgid, mut comm) = (None, None, None);
    c.fields_of(&["pid", "tgid", "comm"], |c, index| {
        match index {
            0 => {
                pid = Some(c.uint()?);
            }
            1 => {
                tgid = Some(c.uint()?);
            }
            2 => {
                comm = Some(c.fixed()?);
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(Task {
        pid: pid?,
        tgid: tgid?,
        comm: comm?,
    })
}

fn tracking(c: &mut Cursor<'_>) -> Option<Tracking> {
    let (mut skb, mut conn, mut parent_conn) = (None, None, None);
    c.fields_of(&["skb", "conn", "parent_conn"], |c, index| {
        match index {
            0 => {
                skb = Some(c.u64()?);
            }
            1 => {
                conn = c.opt(Cursor::u64)?;
            }
            2 => {
                parent_conn = c.opt(Cursor::u64)?;
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(Tracking {
        skb: skb?,
        conn,
        parent_conn,
    })
}

fn packet(c: &mut Cursor<'_>) -> Option<Packet> {
    let mut p = Packet::default();
    c.fields_of(
        &["ifindex", "ifname", "len", "ip", "l4", "headers"],
        |c, index| {
            match index {
                0 => {
                    p.ifindex = c.opt(Cursor::uint)?;
                }
                1 => {
                    p.ifname = c.opt(Cursor::fixed)?;
                }
                2 => {
                    p.len = c.uint()?;
                }
                3 => {
                    p.ip = c.opt(packet_ip)?;
                }
                4 => {
                    p.l4 = c.opt(packet_l4)?;
                }
                5 => {
                    p.headers = c.opt(|c| HeaderBytes::from_hex(c.string()?).ok())?;
                }
                _ => return None,
            }
            Some(())
        },
    )?;
    Some(p)
}

fn ip_version(c: &mut Cursor<'_>) -> Option<IpVersion> {
    match c.string()? {
        "v4" => Some(IpVersion::V4),
        "v6" => Some(IpVersion::V6),
        _ => None,
    }
}

fn packet_ip(c: &mut Cursor<'_>) -> Option<PacketIp> {
    let (mut src, mut dst, mut version, mut ttl, mut tos, mut id) =
        (None, None, None, None, None, None);
    let (mut frag_off, mut df, mut mf, mut len, mut proto) = (0, false, false, None, None);
    c.fields_of(
        &[
            "src", "dst", "version", "ttl", "tos", "id", "frag_off", "df", "mf", "len", "proto",
        ],
        |c, index| {
            match index {
                0 => {
                    src = Some(c.ip()?);
                }
                1 => {
                    dst = Some(c.ip()?);
                }
                2 => {
                    version = Some(ip_version(c)?);
                }
                3 => {
                    ttl = Some(c.uint()?);
                }
                4 => {
                    tos = Some(c.uint()?);
                }
                5 => {
                    id = Some(c.uint()?);
                }
                6 => {
                    frag_off = c.uint()?;
                }
                7 => {
                    df = c.bool()?;
                }
                8 => {
                    mf = c.bool()?;
                }
                9 => {
                    len = Some(c.uint()?);
                }
                10 => {
                    proto = Some(c.uint()?);
                }
                _ => return None,
            }
            Some(())
        },
    )?;
    Some(PacketIp {
        src: src?,
        dst: dst?,
        version: version?,
        ttl: ttl?,
        tos: tos?,
        id: id?,
        frag_off,
        df,
        mf,
        len: len?,
        proto: proto?,
    })
}

/// The u8/u16/u32 fields of an enum variant's object, by name; each once, all required.
fn fields<const N: usize>(c: &mut Cursor<'_>, names: [&str; N]) -> Option<[u64; N]> {
    let mut values = [None; N];
    c.fields_of(&names, |c, index| {
        values[index] = Some(c.u64()?);
        Some(())
    })?;
    let mut out = [0; N];
    for (o, v) in out.iter_mut().zip(values) {
        *o = v?;
    }
    Some(out)
}

fn u8_of(v: u64) -> Option<u8> {
    u8::try_from(v).ok()
}

fn u16_of(v: u64) -> Option<u16> {
    u16::try_from(v).ok()
}

fn packet_l4(c: &mut Cursor<'_>) -> Option<PacketL4> {
    c.variant(|c, name| match name {
        "tcp" => {
            let [sport, dport, flags] = fields(c, ["sport", "dport", "flags"])?;
            Some(PacketL4::Tcp {
                sport: u16_of(sport)?,
                dport: u16_of(dport)?,
                flags: u8_of(flags)?,
            })
        }
        "udp" | "sctp" => {
            let [sport, dport] = fields(c, ["sport", "dport"])?;
            let (sport, dport) = (u16_of(sport)?, u16_of(dport)?);
            Some(if name == "udp" {
                PacketL4::Udp { sport, dport }
            } else {
                PacketL4::Sctp { sport, dport }
            })
        }
        "icmp" | "icmpv6" => {
            let [t, code] = fields(c, ["type", "code"])?;
            let (icmp_type, code) = (u8_of(t)?, u8_of(code)?);
            Some(if name == "icmp" {
                PacketL4::Icmp { icmp_type, code }
            } else {
                PacketL4::Icmpv6 { icmp_type, code }
            })
        }
        _ => None,
    })
}

fn drop_info(c: &mut Cursor<'_>) -> Option<DropInfo> {
    let mut reason = None;
    c.fields_of(&["reason"], |c, index| {
        match index {
            0 => {
                reason = c.opt(Cursor::arc)?;
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(DropInfo { reason })
}

fn ct_state(c: &mut Cursor<'_>) -> Option<CtState> {
    Some(match c.string()? {
        "established" => CtState::Established,
        "related" => CtState::Related,
        "new" => CtState::New,
        "reply" => CtState::Reply,
        "related_reply" => CtState::RelatedReply,
        "untracked" => CtState::Untracked,
        _ => return None,
    })
}

fn ct_event(c: &mut Cursor<'_>) -> Option<CtEvent> {
    let (mut state, mut base, mut parent) = (None, None, None);
    c.fields_of(&["state", "base", "parent"], |c, index| {
        match index {
            0 => {
                state = Some(ct_state(c)?);
            }
            1 => {
                base = c.opt(ct_conn)?;
            }
            2 => {
                parent = c.opt(ct_conn)?;
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(CtEvent {
        state: state?,
        base,
        parent,
    })
}

/// A kernel state: its name, or its number.
fn kernel_state<S>(
    c: &mut Cursor<'_>,
    from_name: fn(&str) -> Option<S>,
    from_raw: fn(u8) -> S,
) -> Option<S> {
    if c.peek()? == b'"' {
        from_name(c.string()?)
    } else {
        Some(from_raw(c.uint()?))
    }
}

fn ct_conn(c: &mut Cursor<'_>) -> Option<CtConnEvent> {
    let (mut zone_id, mut zone_dir, mut orig, mut reply) = (0, ZoneDir::None, None, None);
    let (mut tcp_state, mut mark, mut labels, mut ct_status) = (None, None, None, 0u32);
    let (mut sctp_state, mut helper, mut timeout) = (None, None, None);
    c.fields_of(
        &[
            "zone_id",
            "zone_dir",
            "orig",
            "reply",
            "tcp_state",
            "mark",
            "labels",
            "ct_status",
            "sctp_state",
            "helper",
            "timeout",
        ],
        |c, index| {
            match index {
                0 => {
                    zone_id = c.uint()?;
                }
                1 => {
                    zone_dir = match c.string()? {
                        "none" => ZoneDir::None,
                        "original" => ZoneDir::Original,
                        "reply" => ZoneDir::Reply,
                        "default" => ZoneDir::Default,
                        _ => return None,
                    };
                }
                2 => {
                    orig = Some(ct_tuple(c)?);
                }
                3 => {
                    reply = Some(ct_tuple(c)?);
                }
                4 => {
                    tcp_state =
                        c.opt(|c| kernel_state(c, TcpState::from_name, TcpState::from_raw))?;
                }
                5 => {
                    mark = c.opt(Cursor::uint)?;
                }
                6 => {
                    labels = c.opt(|c| parse_labels(c.string()?).ok())?;
                }
                7 => {
                    ct_status = c.uint()?;
                }
                8 => {
                    sctp_state =
                        c.opt(|c| kernel_state(c, SctpState::from_name, SctpState::from_raw))?;
                }
                9 => {
                    helper = c.opt(Cursor::fixed)?;
                }
                10 => {
                    timeout = c.opt(Cursor::uint)?;
                }
                _ => return None,
            }
            Some(())
        },
    )?;
    Some(CtConnEvent {
        zone_id,
        zone_dir,
        orig: orig?,
        reply: reply?,
        tcp_state,
        mark,
        labels,
        ct_status: CtStatus::from_bits_retain(ct_status),
        sctp_state,
        helper,
        timeout,
    })
}

fn ct_tuple(c: &mut Cursor<'_>) -> Option<CtTuple> {
    let (mut ip, mut proto) = (None, None);
    c.fields_of(&["ip", "proto"], |c, index| {
        match index {
            0 => {
                ip = Some(ct_ip(c)?);
            }
            1 => {
                proto = Some(ct_proto(c)?);
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(CtTuple {
        ip: ip?,
        proto: proto?,
    })
}

fn ct_ip(c: &mut Cursor<'_>) -> Option<CtIp> {
    let (mut src, mut dst, mut version) = (None, None, None);
    c.fields_of(&["src", "dst", "version"], |c, index| {
        match index {
            0 => {
                src = Some(c.ip()?);
            }
            1 => {
                dst = Some(c.ip()?);
            }
            2 => {
                version = Some(ip_version(c)?);
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(CtIp {
        src: src?,
        dst: dst?,
        version: version?,
    })
}

fn ct_proto(c: &mut Cursor<'_>) -> Option<CtProto> {
    c.variant(|c, name| match name {
        "tcp" | "udp" => {
            let [sport, dport] = fields(c, ["sport", "dport"])?;
            let (sport, dport) = (u16_of(sport)?, u16_of(dport)?);
            Some(if name == "tcp" {
                CtProto::Tcp { sport, dport }
            } else {
                CtProto::Udp { sport, dport }
            })
        }
        "icmp" | "icmpv6" => {
            let [t, code, id] = fields(c, ["type", "code", "id"])?;
            let (icmp_type, code, id) = (u8_of(t)?, u8_of(code)?, u16_of(id)?);
            Some(if name == "icmp" {
                CtProto::Icmp {
                    icmp_type,
                    code,
                    id,
                }
            } else {
                CtProto::Icmpv6 {
                    icmp_type,
                    code,
                    id,
                }
            })
        }
        "sctp" => {
            let [sport, dport, vtag] = fields(c, ["sport", "dport", "vtag"])?;
            Some(CtProto::Sctp {
                sport: u16_of(sport)?,
                dport: u16_of(dport)?,
                vtag: u32::try_from(vtag).ok()?,
            })
        }
        "generic" => {
            let [proto] = fields(c, ["proto"])?;
            Some(CtProto::Generic {
                proto: u8_of(proto)?,
            })
        }
        _ => None,
    })
}

fn nft(c: &mut Cursor<'_>) -> Option<NftTrace> {
    let (mut family, mut table, mut chain, mut kind) = (None, None, None, None);
    let (mut handle, mut rule, mut verdict, mut target) = (None, None, None, None);
    let (mut iif, mut oif) = (None, None);
    c.fields_of(
        &[
            "family", "table", "chain", "type", "handle", "rule", "verdict", "target", "iif", "oif",
        ],
        |c, index| {
            match index {
                0 => {
                    family = Some(c.string()?.parse::<NftFamily>().ok()?);
                }
                1 => {
                    table = Some(c.arc()?);
                }
                2 => {
                    chain = Some(c.arc()?);
                }
                3 => {
                    kind = Some(c.string()?.parse::<NftTraceKind>().ok()?);
                }
                4 => {
                    handle = c.opt(Cursor::u64)?;
                }
                5 => {
                    rule = c.opt(Cursor::arc)?;
                }
                6 => {
                    verdict = Some(c.string()?.parse::<NftVerdict>().ok()?);
                }
                7 => {
                    target = c.opt(Cursor::arc)?;
                }
                8 => {
                    iif = c.opt(nft_device)?;
                }
                9 => {
                    oif = c.opt(nft_device)?;
                }
                _ => return None,
            }
            Some(())
        },
    )?;
    Some(NftTrace {
        family: family?,
        table: table?,
        chain: chain?,
        kind: kind?,
        handle,
        rule,
        verdict: verdict?,
        target,
        iif,
        oif,
    })
}

fn nft_device(c: &mut Cursor<'_>) -> Option<NftDevice> {
    let (mut ifindex, mut ifname) = (None, None);
    c.fields_of(&["ifindex", "ifname"], |c, index| {
        match index {
            0 => ifindex = Some(c.uint()?),
            1 => ifname = c.opt(Cursor::fixed)?,
            _ => return None,
        }
        Some(())
    })?;
    Some(NftDevice {
        ifindex: ifindex?,
        ifname,
    })
}
