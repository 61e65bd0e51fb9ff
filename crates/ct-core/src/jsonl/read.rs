//! A reader specialised for the event schema, several times faster than the serde model.
//!
//! It reads the JSON that events files hold: the keys the model has, each once, plain
//! strings (no escapes), integers without sign, fraction or exponent, whitespace anywhere
//! JSON allows it. Anything else (an unknown key, an escape, a value of the wrong type, a
//! key twice, bad JSON) makes it give up with `None`, and the line is read again by the
//! serde model, which is the schema: it accepts what it accepts and words the errors. So
//! this reader only has to agree with serde on the lines it takes, which the proptests
//! in `jsonl/tests.rs` hold it to.

use std::net::IpAddr;
use std::sync::Arc;

use crate::labels::parse_labels;
use crate::{
    CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, DropInfo, Event, FixedStr,
    HeaderBytes, IpVersion, NftFamily, NftTrace, NftTraceKind, NftVerdict, Packet, PacketIp,
    PacketL4, ProbeInfo, ProbeKind, SctpState, Task, TcpState, Tracking, ZoneDir, NAME_LEN,
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
            b: line.as_bytes(),
            i: 0,
        };
        let event = self.event(&mut c)?;
        c.ws();
        (c.i == c.b.len()).then_some(event)
    }

    fn event(&mut self, c: &mut Cursor<'_>) -> Option<Event> {
        let mut e = Event::default();
        let mut seen = Seen::default();
        c.object(|c, key| {
            match key {
                "timestamp" => {
                    seen.once(0)?;
                    e.timestamp = c.opt(Cursor::u64)?;
                }
                "task" => {
                    seen.once(1)?;
                    e.task = c.opt(task)?;
                }
                "probe" => {
                    seen.once(2)?;
                    e.probe = c.opt(|c| self.probe(c))?;
                }
                "netns" => {
                    seen.once(3)?;
                    e.netns = c.opt(Cursor::uint)?;
                }
                "tracking" => {
                    seen.once(4)?;
                    e.tracking = c.opt(tracking)?;
                }
                "packet" => {
                    seen.once(5)?;
                    e.packet = c.opt(packet)?;
                }
                "drop" => {
                    seen.once(6)?;
                    e.drop = c.opt(drop_info)?;
                }
                "ct" => {
                    seen.once(7)?;
                    e.ct = c.opt(ct_event)?;
                }
                "nft" => {
                    seen.once(8)?;
                    e.nft = c.opt(nft)?;
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(e)
    }

    fn probe(&mut self, c: &mut Cursor<'_>) -> Option<ProbeInfo> {
        let (mut kind, mut name) = (None, None);
        let mut seen = Seen::default();
        c.object(|c, key| {
            match key {
                "type" => {
                    seen.once(0)?;
                    kind = Some(match c.string()? {
                        "tp" => ProbeKind::Tp,
                        "kp" => ProbeKind::Kp,
                        "kr" => ProbeKind::Kr,
                        _ => return None,
                    });
                }
                "name" => {
                    seen.once(1)?;
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

/// Which keys of an object were read, to give duplicates to serde (which refuses them).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn once(&mut self, bit: u32) -> Option<()> {
        let mask = 1 << bit;
        if self.0 & mask != 0 {
            return None;
        }
        self.0 |= mask;
        Some(())
    }
}

/// A position in a line.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips JSON whitespace.
    #[inline]
    fn ws(&mut self) {
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
        let rest = self.b.get(start..)?;
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // The line is UTF-8 and the cut is at ASCII quotes.
        std::str::from_utf8(&rest[..len]).ok()
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

    fn literal(&mut self, word: &[u8]) -> bool {
        self.ws();
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

    /// An object: `field` reads each key's value.
    #[inline]
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            field(self, key)?;
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
        self.string()?.parse().ok()
    }

    fn arc(&mut self) -> Option<Arc<str>> {
        self.string().map(Arc::from)
    }
}

fn task(c: &mut Cursor<'_>) -> Option<Task> {
    let (mut pid, mut tgid, mut comm) = (None, None, None);
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "pid" => {
                seen.once(0)?;
                pid = Some(c.uint()?);
            }
            "tgid" => {
                seen.once(1)?;
                tgid = Some(c.uint()?);
            }
            "comm" => {
                seen.once(2)?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "skb" => {
                seen.once(0)?;
                skb = Some(c.u64()?);
            }
            "conn" => {
                seen.once(1)?;
                conn = c.opt(Cursor::u64)?;
            }
            "parent_conn" => {
                seen.once(2)?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "ifindex" => {
                seen.once(0)?;
                p.ifindex = c.opt(Cursor::uint)?;
            }
            "ifname" => {
                seen.once(1)?;
                p.ifname = c.opt(Cursor::fixed)?;
            }
            "len" => {
                seen.once(2)?;
                p.len = c.uint()?;
            }
            "ip" => {
                seen.once(3)?;
                p.ip = c.opt(packet_ip)?;
            }
            "l4" => {
                seen.once(4)?;
                p.l4 = c.opt(packet_l4)?;
            }
            "headers" => {
                seen.once(5)?;
                p.headers = c.opt(|c| HeaderBytes::from_hex(c.string()?).ok())?;
            }
            _ => return None,
        }
        Some(())
    })?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "src" => {
                seen.once(0)?;
                src = Some(c.ip()?);
            }
            "dst" => {
                seen.once(1)?;
                dst = Some(c.ip()?);
            }
            "version" => {
                seen.once(2)?;
                version = Some(ip_version(c)?);
            }
            "ttl" => {
                seen.once(3)?;
                ttl = Some(c.uint()?);
            }
            "tos" => {
                seen.once(4)?;
                tos = Some(c.uint()?);
            }
            "id" => {
                seen.once(5)?;
                id = Some(c.uint()?);
            }
            "frag_off" => {
                seen.once(6)?;
                frag_off = c.uint()?;
            }
            "df" => {
                seen.once(7)?;
                df = c.bool()?;
            }
            "mf" => {
                seen.once(8)?;
                mf = c.bool()?;
            }
            "len" => {
                seen.once(9)?;
                len = Some(c.uint()?);
            }
            "proto" => {
                seen.once(10)?;
                proto = Some(c.uint()?);
            }
            _ => return None,
        }
        Some(())
    })?;
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
    c.object(|c, key| {
        let slot = values.get_mut(names.iter().position(|n| *n == key)?)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(c.u64()?);
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "reason" => {
                seen.once(0)?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "state" => {
                seen.once(0)?;
                state = Some(ct_state(c)?);
            }
            "base" => {
                seen.once(1)?;
                base = c.opt(ct_conn)?;
            }
            "parent" => {
                seen.once(2)?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "zone_id" => {
                seen.once(0)?;
                zone_id = c.uint()?;
            }
            "zone_dir" => {
                seen.once(1)?;
                zone_dir = match c.string()? {
                    "none" => ZoneDir::None,
                    "original" => ZoneDir::Original,
                    "reply" => ZoneDir::Reply,
                    "default" => ZoneDir::Default,
                    _ => return None,
                };
            }
            "orig" => {
                seen.once(2)?;
                orig = Some(ct_tuple(c)?);
            }
            "reply" => {
                seen.once(3)?;
                reply = Some(ct_tuple(c)?);
            }
            "tcp_state" => {
                seen.once(4)?;
                tcp_state = c.opt(|c| kernel_state(c, TcpState::from_name, TcpState::from_raw))?;
            }
            "mark" => {
                seen.once(5)?;
                mark = c.opt(Cursor::uint)?;
            }
            "labels" => {
                seen.once(6)?;
                labels = c.opt(|c| parse_labels(c.string()?).ok())?;
            }
            "ct_status" => {
                seen.once(7)?;
                ct_status = c.uint()?;
            }
            "sctp_state" => {
                seen.once(8)?;
                sctp_state =
                    c.opt(|c| kernel_state(c, SctpState::from_name, SctpState::from_raw))?;
            }
            "helper" => {
                seen.once(9)?;
                helper = c.opt(Cursor::fixed)?;
            }
            "timeout" => {
                seen.once(10)?;
                timeout = c.opt(Cursor::uint)?;
            }
            _ => return None,
        }
        Some(())
    })?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "ip" => {
                seen.once(0)?;
                ip = Some(ct_ip(c)?);
            }
            "proto" => {
                seen.once(1)?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "src" => {
                seen.once(0)?;
                src = Some(c.ip()?);
            }
            "dst" => {
                seen.once(1)?;
                dst = Some(c.ip()?);
            }
            "version" => {
                seen.once(2)?;
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
    let mut seen = Seen::default();
    c.object(|c, key| {
        match key {
            "family" => {
                seen.once(0)?;
                family = Some(c.string()?.parse::<NftFamily>().ok()?);
            }
            "table" => {
                seen.once(1)?;
                table = Some(c.arc()?);
            }
            "chain" => {
                seen.once(2)?;
                chain = Some(c.arc()?);
            }
            "type" => {
                seen.once(3)?;
                kind = Some(c.string()?.parse::<NftTraceKind>().ok()?);
            }
            "handle" => {
                seen.once(4)?;
                handle = c.opt(Cursor::u64)?;
            }
            "rule" => {
                seen.once(5)?;
                rule = c.opt(Cursor::arc)?;
            }
            "verdict" => {
                seen.once(6)?;
                verdict = Some(c.string()?.parse::<NftVerdict>().ok()?);
            }
            "target" => {
                seen.once(7)?;
                target = c.opt(Cursor::arc)?;
            }
            _ => return None,
        }
        Some(())
    })?;
    Some(NftTrace {
        family: family?,
        table: table?,
        chain: chain?,
        kind: kind?,
        handle,
        rule,
        verdict: verdict?,
        target,
    })
}
