//! Raw records to `ct_core` events. Total on its input: every byte string gives an event or
//! a `DecodeError` saying what was wrong, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ct_core::{
    CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, DropInfo, Event, FixedStr,
    HeaderBytes, Packet, ProbeInfo, SctpState, Task, TcpState, Tracking, ZoneDir,
};

use crate::ids::IdKey;
use crate::kernel::DropReasons;
use crate::packet::parse_packet;
use crate::raw::*;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Why a raw record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record is shorter than the layout this library knows.
    #[error(
        "record is {got} bytes, shorter than a ct event ({RAW_EVENT_SIZE} bytes): the BPF \
         object and this library come from different versions"
    )]
    Short {
        /// The record's length in bytes.
        got: usize,
    },
    /// The record's layout version is not the one this library reads: the BPF program
    /// was compiled against another version of `ct_event.h`, or never called `ct_fill()`
    /// on the record (version 0).
    #[error(
        "record layout version {got}, but this library reads version {RECORD_VERSION}: \
         {}",
        version_remedy(*.got)
    )]
    Version {
        /// The version the record carries.
        got: u16,
    },
    /// The ctinfo value is none the kernel defines.
    #[error("unknown conntrack ctinfo {0} (expected 0-4 or 7)")]
    UnknownCtInfo(u8),
    /// A flag field has bits this library does not know.
    #[error("unknown flag bits {bits:#x} in {field}: the BPF object is newer than this library")]
    UnknownFlags {
        /// The field (`ct_flags`, `present`, `pkt_flags`).
        field: &'static str,
        /// The unknown bits.
        bits: u8,
    },
    /// Fields that cannot hold together, named.
    #[error("contradictory record: {0}")]
    Contradiction(&'static str),
    /// A conntrack tuple of an address family other than IPv4 and IPv6.
    #[error("unknown address family {0} in a conntrack tuple (expected 2 or 10)")]
    UnknownL3(u8),
    /// The program could not read the connection; the packet's state is known.
    #[error(
        "the kernel's nf_conn could not be read (the entry was freed while the probe ran); \
         the packet's state was {0}"
    )]
    ConnUnreadable(CtState),
    /// The record names a probe id the decoder was not given.
    #[error("probe id {0} is not one this collector attached")]
    UnknownProbe(u32),
}

/// Decodes the ct section of one record alone, without a [`Decoder`] (no probe table, no
/// tracking ids): for tracers that reserve `struct ct_raw_event` records of their own and
/// fill them with `ct_fill.h`. `Ok(None)` when the packet had no conntrack data. It is
/// the `ct` of what [`Decoder::decode`] makes of the same bytes.
///
/// `bytes` starts at the record and may go on past it (the rest of the tracer's own
/// event). A record of another layout version than this library's is refused with
/// [`DecodeError::Version`].
pub fn decode_ct(bytes: &[u8]) -> Result<Option<CtEvent>, DecodeError> {
    let raw = RawCtEvent::read(bytes).ok_or(DecodeError::Short { got: bytes.len() })?;
    check_version(&raw)?;
    Ok(check_ct(&raw)?.map(|shape| build_ct(&raw, shape)))
}

/// The remedy for a record of layout version `got`.
fn version_remedy(got: u16) -> &'static str {
    if got == 0 {
        "the record was not filled by ct_fill() (which stamps the version), or the BPF \
         program predates versioned records; call ct_fill() or ct_fill_skb() on every \
         record and rebuild the program with this ct-bpf's ct_event.h and ct_fill.h"
    } else {
        "the BPF program was built with another ct-bpf's ct_event.h; rebuild it with the \
         headers of the ct-bpf this program links (its build script's DEP_CT_BPF_INCLUDE), \
         or depend on the ct-bpf whose headers it was built with"
    }
}

/// Refuses a record of another layout than [`RawCtEvent`]'s.
#[inline]
fn check_version(raw: &RawCtEvent) -> Result<(), DecodeError> {
    if raw.version != RECORD_VERSION {
        return Err(DecodeError::Version { got: raw.version });
    }
    Ok(())
}

/// What [`check_ct`] found in a record with conntrack data: its state and which
/// connections it carries.
#[derive(Debug, Clone, Copy)]
struct CtShape {
    state: CtState,
    base: bool,
    parent: bool,
}

/// Every check of the ct section, so that building it cannot fail: an event is then built
/// in place rather than in pieces moved into it. `Ok(None)` when the packet had no
/// conntrack data.
fn check_ct(raw: &RawCtEvent) -> Result<Option<CtShape>, DecodeError> {
    if raw.ct_flags & !EV_KNOWN != 0 {
        return Err(DecodeError::UnknownFlags {
            field: "ct_flags",
            bits: raw.ct_flags & !EV_KNOWN,
        });
    }
    if raw.ct_flags & EV_HAS_CT == 0 {
        if raw.ct_flags != 0 {
            return Err(DecodeError::Contradiction(
                "connection flags set on a packet without conntrack data",
            ));
        }
        return Ok(None);
    }
    let state = CtState::from_ctinfo(raw.ctinfo).ok_or(DecodeError::UnknownCtInfo(raw.ctinfo))?;
    if raw.ct_flags & EV_CONN_READ_ERR != 0 {
        return Err(DecodeError::ConnUnreadable(state));
    }
    // The program fills `base` only when _nfct held a connection pointer (key != 0).
    let has_base = raw.base.key != 0;
    let has_parent = raw.ct_flags & EV_HAS_PARENT != 0;
    if !has_base && state != CtState::Untracked {
        return Err(DecodeError::Contradiction(
            "a tracked state without a connection",
        ));
    }
    if has_parent && !has_base {
        return Err(DecodeError::Contradiction("a parent without a connection"));
    }
    if has_base {
        check_conn(&raw.base)?;
    }
    if has_parent {
        check_conn(&raw.parent)?;
    }
    Ok(Some(CtShape {
        state,
        base: has_base,
        parent: has_parent,
    }))
}

#[inline(always)]
fn build_ct(raw: &RawCtEvent, shape: CtShape) -> CtEvent {
    CtEvent {
        state: shape.state,
        base: shape.base.then(|| build_conn(&raw.base, raw.hz)),
        parent: shape.parent.then(|| build_conn(&raw.parent, raw.hz)),
    }
}

/// A template (attached by a CT target before lookup) has no tuples yet.
#[inline]
fn is_template(raw: &RawCtConn) -> bool {
    CtStatus::from_bits_retain(raw.status).contains(CtStatus::TEMPLATE) && raw.orig.l3num == 0
}

/// The checks [`build_conn`] relies on.
fn check_conn(raw: &RawCtConn) -> Result<(), DecodeError> {
    if raw.present & !CONN_KNOWN != 0 {
        return Err(DecodeError::UnknownFlags {
            field: "conn.present",
            bits: raw.present & !CONN_KNOWN,
        });
    }
    if !is_template(raw) {
        for tuple in [&raw.orig, &raw.reply] {
            if !matches!(tuple.l3num, AF_INET | AF_INET6) {
                return Err(DecodeError::UnknownL3(tuple.l3num));
            }
        }
    }
    Ok(())
}

/// A connection that passed [`check_conn`].
#[inline(always)]
fn build_conn(raw: &RawCtConn, hz: u32) -> CtConnEvent {
    let has = |bit: u8| raw.present & bit != 0;
    let status = CtStatus::from_bits_retain(raw.status);
    let template = is_template(raw);
    let (orig, reply) = if template {
        (template_tuple(), template_tuple())
    } else {
        (
            build_tuple(&raw.orig, raw.sctp_vtag[0]),
            build_tuple(&raw.reply, raw.sctp_vtag[1]),
        )
    };
    let (mut tcp_state, mut sctp_state) = (None, None);
    if has(CONN_HAS_PROTO_STATE) {
        match orig.proto {
            CtProto::Tcp { .. } => tcp_state = Some(TcpState::from_raw(raw.proto_state)),
            CtProto::Sctp { .. } => sctp_state = Some(SctpState::from_raw(raw.proto_state)),
            _ => {}
        }
    }
    let labels = has(CONN_HAS_LABELS).then(|| {
        let lo = u64::from_ne_bytes(raw.labels[..8].try_into().unwrap_or_default());
        let hi = u64::from_ne_bytes(raw.labels[8..].try_into().unwrap_or_default());
        (u128::from(hi) << 64) | u128::from(lo)
    });
    let timeout = (has(CONN_HAS_TIMEOUT) && hz > 0 && !template)
        .then(|| u32::try_from(raw.timeout.max(0)).unwrap_or(0) / hz);
    CtConnEvent {
        zone_id: if has(CONN_HAS_ZONE) { raw.zone_id } else { 0 },
        zone_dir: if has(CONN_HAS_ZONE) {
            ZoneDir::from_kernel_bits(raw.zone_dir)
        } else {
            ZoneDir::None
        },
        orig,
        reply,
        tcp_state,
        mark: has(CONN_HAS_MARK).then_some(raw.mark),
        labels,
        ct_status: status,
        sctp_state,
        helper: has(CONN_HAS_HELPER)
            .then(|| FixedStr::from_kernel(&raw.helper))
            .filter(|h| !h.is_empty()),
        timeout,
    }
}

fn template_tuple() -> CtTuple {
    CtTuple {
        ip: CtIp::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ),
        proto: CtProto::Generic { proto: 0 },
    }
}

/// A tuple whose family [`check_conn`] accepted (AF_INET or AF_INET6).
#[inline(always)]
fn build_tuple(raw: &RawCtTuple, vtag: [u8; 4]) -> CtTuple {
    let (src, dst) = if raw.l3num == AF_INET6 {
        (
            IpAddr::V6(Ipv6Addr::from(raw.src)),
            IpAddr::V6(Ipv6Addr::from(raw.dst)),
        )
    } else {
        debug_assert_eq!(raw.l3num, AF_INET);
        (
            IpAddr::V4(Ipv4Addr::new(
                raw.src[0], raw.src[1], raw.src[2], raw.src[3],
            )),
            IpAddr::V4(Ipv4Addr::new(
                raw.dst[0], raw.dst[1], raw.dst[2], raw.dst[3],
            )),
        )
    };
    let sport = u16::from_be_bytes(raw.src_u);
    let dport = u16::from_be_bytes(raw.dst_u);
    let proto = match raw.protonum {
        6 => CtProto::Tcp { sport, dport },
        17 => CtProto::Udp { sport, dport },
        1 => CtProto::Icmp {
            icmp_type: raw.icmp_type,
            code: raw.icmp_code,
            id: sport,
        },
        58 => CtProto::Icmpv6 {
            icmp_type: raw.icmp_type,
            code: raw.icmp_code,
            id: sport,
        },
        132 => CtProto::Sctp {
            sport,
            dport,
            vtag: u32::from_be_bytes(vtag),
        },
        other => CtProto::Generic { proto: other },
    };
    CtTuple {
        ip: CtIp::new(src, dst),
        proto,
    }
}

/// Turns raw records into complete events: probe names, task, packet, ct and tracking ids.
///
/// Tracking ids are keyed hashes (SipHash-1-3, see `IdKey` in `ids.rs`) with a key drawn at random
/// for each `Decoder`, so no kernel address ever reaches an event (addresses in a shared
/// file would defeat KASLR), and cut to 63 bits so that none even looks like one.
#[derive(Debug, Clone)]
pub struct Decoder {
    probes: Vec<ProbeInfo>,
    key: IdKey,
    /// The kernel's `enum skb_drop_reason`, to name the reasons records carry.
    reasons: Option<DropReasons>,
    /// Whether events keep the header bytes the program copied (`Packet::headers`).
    keep_headers: bool,
}

impl Decoder {
    /// `probes[i]` describes the probe whose programs were loaded with probe id `i`.
    pub fn new(probes: Vec<ProbeInfo>) -> Self {
        Decoder {
            probes,
            key: IdKey::random(),
            reasons: None,
            keep_headers: false,
        }
    }

    /// Keeps the header bytes the program copied in the packet section of each event with
    /// an IP header ([`Packet::headers`](ct_core::Packet::headers)): one allocation per
    /// event, so off unless asked (pcapng output, `--raw-headers`).
    pub fn with_headers(mut self, yes: bool) -> Self {
        self.keep_headers = yes;
        self
    }

    /// Names drop reasons with `reasons` (the running kernel's, see
    /// [`KernelBtf::drop_reasons`](crate::kernel::KernelBtf::drop_reasons)). Without, or
    /// for a number the enum does not name, a reason is its decimal number (`"123"`).
    pub fn with_drop_reasons(mut self, reasons: Option<DropReasons>) -> Self {
        self.reasons = reasons;
        self
    }

    /// The table drop reasons are named from.
    pub fn drop_reasons(&self) -> Option<&DropReasons> {
        self.reasons.as_ref()
    }

    /// The drop section of a record: `None` unless the program saw the packet dropped.
    fn drop_info(&self, raw: &RawCtEvent) -> Option<DropInfo> {
        if raw.pkt_flags & PKT_DROP == 0 {
            return None;
        }
        let reason = (raw.pkt_flags & PKT_DROP_REASON != 0).then(|| {
            let value = u32::from(raw.drop_subsys) << 16 | u32::from(raw.drop_reason);
            match self.reasons.as_ref().and_then(|r| r.name(value)) {
                Some(name) => std::sync::Arc::clone(name),
                None => value.to_string().into(),
            }
        });
        Some(DropInfo { reason })
    }

    /// One id per conntrack entry: its address names it while it lives, and its original
    /// tuple and zone tell it from a later entry reusing the same memory. The tuple and
    /// zone are folded into one word under the key, then hashed with the address.
    fn conn_id(&self, conn: &RawCtConn) -> u64 {
        let t = &conn.orig;
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let ports_and_protocol = u64::from_le_bytes([
            t.src_u[0],
            t.src_u[1],
            t.dst_u[0],
            t.dst_u[1],
            t.icmp_type,
            t.icmp_code,
            t.l3num,
            t.protonum,
        ]);
        let zone = u64::from(conn.zone_id) | u64::from(conn.zone_dir) << 16;
        let tuple = self.key.fold(&[
            word(&t.src[..8]),
            word(&t.src[8..]),
            word(&t.dst[..8]),
            word(&t.dst[8..]),
            ports_and_protocol,
            zone,
        ]);
        self.key.id2(conn.key, tuple)
    }

    /// Decodes one record, in place when `bytes` is aligned for a [`RawCtEvent`] (ring
    /// buffer records are), from a copy otherwise.
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        match RawCtEvent::view(bytes) {
            Some(raw) => self.decode_raw(raw),
            None => {
                let raw = RawCtEvent::read(bytes).ok_or(DecodeError::Short { got: bytes.len() })?;
                self.decode_raw(&raw)
            }
        }
    }

    fn packet(&self, raw: &RawCtEvent) -> Packet {
        let mut packet = parse_packet(raw);
        // Only bytes that are an IP packet: those of a buffer that is none (a netlink
        // message freed at consume_skb) are whatever the kernel had there.
        if self.keep_headers && packet.ip.is_some() {
            let copied = &raw.hdr[..usize::from(raw.hdr_len).min(raw.hdr.len())];
            packet.headers = Some(HeaderBytes::new(copied));
        }
        packet
    }

    /// [`decode`](Self::decode) of a record already copied out of the ring.
    pub(crate) fn decode_raw(&self, raw: &RawCtEvent) -> Result<Event, DecodeError> {
        check_version(raw)?;
        let probe = self
            .probes
            .get(raw.probe_id as usize)
            .cloned()
            .ok_or(DecodeError::UnknownProbe(raw.probe_id))?;
        let ct = check_ct(raw)?;
        if raw.pkt_flags & PKT_DROP_REASON != 0 && raw.pkt_flags & PKT_DROP == 0 {
            return Err(DecodeError::Contradiction(
                "a drop reason on a packet not dropped",
            ));
        }
        let tracking = Tracking {
            // The first-seen time names the packet even when it moved to another buffer;
            // without tracking, the buffer is all there is.
            skb: if raw.skb_first_ts != 0 {
                self.key.id(raw.skb_first_ts)
            } else {
                self.key.id(raw.skb_key)
            },
            conn: (raw.base.key != 0).then(|| self.conn_id(&raw.base)),
            parent_conn: (raw.ct_flags & EV_HAS_PARENT != 0).then(|| self.conn_id(&raw.parent)),
        };
        Ok(Event {
            timestamp: Some(raw.ts),
            task: Some(Task {
                pid: raw.pid,
                tgid: raw.tgid,
                comm: FixedStr::from_kernel(&raw.comm),
            }),
            probe: Some(probe),
            netns: (raw.pkt_flags & PKT_HAS_NETNS != 0).then_some(raw.netns),
            tracking: Some(tracking),
            packet: Some(self.packet(raw)),
            drop: self.drop_info(raw),
            ct: ct.map(|shape| build_ct(raw, shape)),
            nft: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The ct section of a record these tests build with conntrack data.
    fn decode(bytes: &[u8]) -> Result<CtEvent, DecodeError> {
        decode_ct(bytes)?.ok_or(DecodeError::Contradiction("no conntrack data"))
    }

    /// A decoder whose one probe (id 0) is the tracepoint `name`.
    fn tp_decoder(name: &str) -> Decoder {
        Decoder::new(vec![ProbeInfo {
            kind: ct_core::ProbeKind::Tp,
            name: name.into(),
        }])
    }

    fn tcp_tuple(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> RawCtTuple {
        let mut t = RawCtTuple {
            l3num: AF_INET,
            protonum: 6,
            src_u: sport.to_be_bytes(),
            dst_u: dport.to_be_bytes(),
            ..Default::default()
        };
        t.src[..4].copy_from_slice(&src);
        t.dst[..4].copy_from_slice(&dst);
        t
    }

    fn tcp_event() -> RawCtEvent {
        let mut raw = RawCtEvent {
            ct_flags: EV_HAS_CT,
            ctinfo: 2,
            hz: 250,
            ..Default::default()
        };
        raw.base = RawCtConn {
            orig: tcp_tuple([10, 0, 1, 100], 54321, [93, 184, 216, 34], 80),
            reply: tcp_tuple([93, 184, 216, 34], 80, [10, 0, 1, 100], 54321),
            key: 0xffff_8880_1234_5678,
            status: 8,
            mark: 0x2a,
            timeout: 120 * 250,
            zone_id: 5,
            zone_dir: 3,
            proto_state: 1,
            present: CONN_HAS_ZONE | CONN_HAS_MARK | CONN_HAS_TIMEOUT | CONN_HAS_PROTO_STATE,
            ..Default::default()
        };
        raw
    }

    #[test]
    fn decodes_tcp_new() {
        let ct = decode(tcp_event().as_bytes()).unwrap();
        assert_eq!(ct.state, CtState::New);
        let base = ct.base.unwrap();
        assert_eq!(
            base.orig.proto,
            CtProto::Tcp {
                sport: 54321,
                dport: 80
            }
        );
        assert_eq!(base.orig.ip.src, "10.0.1.100".parse::<IpAddr>().unwrap());
        assert_eq!(
            base.reply.ip.src,
            "93.184.216.34".parse::<IpAddr>().unwrap()
        );
        assert_eq!(base.tcp_state, Some(TcpState::SynSent));
        assert_eq!(base.zone_dir, ZoneDir::Default);
        assert_eq!(base.zone_id, 5);
        assert_eq!(base.mark, Some(0x2a));
        assert_eq!(base.labels, None);
        assert_eq!(base.timeout, Some(120));
        assert!(ct.parent.is_none());
    }

    #[test]
    fn missing_optional_fields_are_none_not_zero() {
        let mut raw = tcp_event();
        raw.base.present = 0;
        let base = decode(raw.as_bytes()).unwrap().base.unwrap();
        assert_eq!(base.mark, None);
        assert_eq!(base.zone_dir, ZoneDir::None);
        assert_eq!(base.tcp_state, None);
        assert_eq!(base.timeout, None);
    }

    #[test]
    fn labels_use_both_words() {
        let mut raw = tcp_event();
        raw.base.present |= CONN_HAS_LABELS;
        raw.base.labels[..8].copy_from_slice(&1u64.to_ne_bytes());
        raw.base.labels[8..].copy_from_slice(&2u64.to_ne_bytes());
        let base = decode(raw.as_bytes()).unwrap().base.unwrap();
        assert_eq!(base.labels, Some((2u128 << 64) | 1));
    }

    #[test]
    fn untracked_has_no_base() {
        let raw = RawCtEvent {
            ct_flags: EV_HAS_CT,
            ctinfo: 7,
            ..Default::default()
        };
        assert_eq!(decode(raw.as_bytes()).unwrap(), CtEvent::untracked());
    }

    #[test]
    fn template_keeps_zone_and_status() {
        let mut raw = tcp_event();
        raw.base.orig = RawCtTuple::default();
        raw.base.reply = RawCtTuple::default();
        raw.base.status = CtStatus::TEMPLATE.bits();
        let base = decode(raw.as_bytes()).unwrap().base.unwrap();
        assert!(base.ct_status.contains(CtStatus::TEMPLATE));
        assert_eq!(base.zone_id, 5);
        assert_eq!(base.orig.proto, CtProto::Generic { proto: 0 });
        assert_eq!(base.timeout, None);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(decode_ct(&[0; 10]), Err(DecodeError::Short { got: 10 }));
        let mut raw = tcp_event();
        raw.ctinfo = 5;
        assert_eq!(decode(raw.as_bytes()), Err(DecodeError::UnknownCtInfo(5)));
        let mut raw = tcp_event();
        raw.base.orig.l3num = 7;
        assert_eq!(decode(raw.as_bytes()), Err(DecodeError::UnknownL3(7)));
        let mut raw = tcp_event();
        raw.ct_flags = EV_HAS_PARENT;
        assert!(matches!(
            decode_ct(raw.as_bytes()),
            Err(DecodeError::Contradiction(_))
        ));
        let raw = RawCtEvent::default();
        assert_eq!(decode_ct(raw.as_bytes()), Ok(None));
        assert!(decode(raw.as_bytes()).is_err());
    }

    /// A record of another layout version is refused, by both decoders, with the versions
    /// and the remedy in the message; nothing of it is read.
    #[test]
    fn another_layout_version_is_refused() {
        let dec = tp_decoder("x:y");
        let good = tcp_event();
        assert!(decode(good.as_bytes()).is_ok());
        assert!(dec.decode(good.as_bytes()).is_ok());
        for got in [0, RECORD_VERSION + 1, u16::MAX] {
            let raw = RawCtEvent {
                version: got,
                ..tcp_event()
            };
            assert_eq!(decode_ct(raw.as_bytes()), Err(DecodeError::Version { got }));
            assert_eq!(
                dec.decode(raw.as_bytes()),
                Err(DecodeError::Version { got })
            );
            let message = DecodeError::Version { got }.to_string();
            assert!(
                message.starts_with(&format!(
                    "record layout version {got}, but this library reads version {RECORD_VERSION}: "
                )),
                "{message}"
            );
            assert!(message.contains("rebuild"), "{message}");
        }
        // A record without conntrack data is refused too: the version is the record's,
        // not its ct section's.
        let empty = RawCtEvent {
            version: RECORD_VERSION + 1,
            ..Default::default()
        };
        assert_eq!(
            decode_ct(empty.as_bytes()),
            Err(DecodeError::Version {
                got: RECORD_VERSION + 1
            })
        );
        // The version sits where ct_event.h puts it, in the byte order of the machine.
        let mut bytes = good.as_bytes().to_vec();
        bytes[86..88].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(decode_ct(&bytes), Err(DecodeError::Version { got: 0 }));
    }

    #[test]
    fn sctp_vtags_follow_direction() {
        let mut raw = tcp_event();
        for t in [&mut raw.base.orig, &mut raw.base.reply] {
            t.protonum = 132;
        }
        raw.base.sctp_vtag = [0x1122_3344u32.to_be_bytes(), 0x5566_7788u32.to_be_bytes()];
        raw.base.proto_state = 4;
        let base = decode(raw.as_bytes()).unwrap().base.unwrap();
        assert!(matches!(
            base.orig.proto,
            CtProto::Sctp {
                vtag: 0x1122_3344,
                ..
            }
        ));
        assert!(matches!(
            base.reply.proto,
            CtProto::Sctp {
                vtag: 0x5566_7788,
                ..
            }
        ));
        assert_eq!(base.sctp_state, Some(SctpState::Established));
        assert_eq!(base.tcp_state, None);
    }

    #[test]
    fn tracking_ids_hide_pointers_and_are_stable() {
        let dec = tp_decoder("net:net_dev_start_xmit");
        let raw = tcp_event();
        let a = dec.decode(raw.as_bytes()).unwrap();
        let b = dec.decode(raw.as_bytes()).unwrap();
        assert_eq!(a.tracking, b.tracking);
        let t = a.tracking.unwrap();
        assert_ne!(t.conn, Some(raw.base.key));
        let other = Decoder::new(vec![]);
        assert_eq!(
            other.decode(raw.as_bytes()),
            Err(DecodeError::UnknownProbe(0))
        );
    }

    #[test]
    fn drops_are_named_from_the_kernel_table() {
        let dec = |reasons| tp_decoder("skb:kfree_skb").with_drop_reasons(reasons);
        let table = DropReasons::from_enumerators([
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NETFILTER_DROP", 12),
            ("SKB_DROP_REASON_MAX", 13),
        ]);
        let mut raw = tcp_event();
        // Not dropped: no drop section.
        assert_eq!(
            dec(Some(table.clone())).decode_raw(&raw).unwrap().drop,
            None
        );
        // Dropped on a kernel without reasons (before 5.17).
        raw.pkt_flags = PKT_DROP;
        raw.drop_reason = 12; // ignored without the flag
        assert_eq!(
            dec(Some(table.clone())).decode_raw(&raw).unwrap().drop,
            Some(DropInfo::default())
        );
        raw.pkt_flags = PKT_DROP | PKT_DROP_REASON;
        assert_eq!(
            dec(Some(table.clone())).decode_raw(&raw).unwrap().drop,
            Some(DropInfo::reason("NETFILTER_DROP"))
        );
        // A number the enum does not name, a subsystem reason, no table: the number.
        raw.drop_reason = 99;
        assert_eq!(
            dec(Some(table.clone())).decode_raw(&raw).unwrap().drop,
            Some(DropInfo::reason("99"))
        );
        raw.drop_subsys = 1;
        raw.drop_reason = 3;
        assert_eq!(
            dec(Some(table)).decode_raw(&raw).unwrap().drop,
            Some(DropInfo::reason("65539"))
        );
        raw.drop_subsys = 0;
        raw.drop_reason = 12;
        assert_eq!(
            dec(None).decode_raw(&raw).unwrap().drop,
            Some(DropInfo::reason("12"))
        );
        // A reason without a drop is a contradiction.
        raw.pkt_flags = PKT_DROP_REASON;
        assert!(matches!(
            dec(None).decode_raw(&raw),
            Err(DecodeError::Contradiction(_))
        ));
    }

    /// Kernel addresses start at 0xffff_8000_0000_0000; no id may look like one, whatever
    /// the key drawn and the value hashed.
    #[test]
    fn ids_never_look_like_kernel_addresses() {
        let info = ProbeInfo {
            kind: ct_core::ProbeKind::Tp,
            name: "net:net_dev_start_xmit".into(),
        };
        let mut raw = tcp_event();
        raw.ct_flags |= EV_HAS_PARENT;
        raw.parent = raw.base;
        for round in 0..64u64 {
            let dec = Decoder::new(vec![info.clone()]);
            for i in 0..512u64 {
                raw.skb_first_ts = round * 512 + i;
                raw.base.key = 0xffff_8880_0000_0000 + i * 64;
                raw.parent.key = raw.base.key + 32;
                let t = dec.decode(raw.as_bytes()).unwrap().tracking.unwrap();
                for id in [Some(t.skb), t.conn, t.parent_conn].into_iter().flatten() {
                    assert!(id < 1 << 63, "{id:#x}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_ct(&bytes);
            let dec = tp_decoder("x:y");
            let _ = dec.decode(&bytes);
        }

        #[test]
        fn arbitrary_records_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), RAW_EVENT_SIZE..RAW_EVENT_SIZE + 1),
            ctinfo in 0u8..8,
            flags in 0u8..8,
        ) {
            // Bias towards records that get past the first checks.
            bytes[64..68].fill(0); // probe id 0
            bytes[80] = ctinfo;
            bytes[81] = flags;
            bytes[86..88].copy_from_slice(&RECORD_VERSION.to_ne_bytes());
            let dec = tp_decoder("x:y");
            let _ = dec.decode(&bytes);
        }
    }
}
