//! The raw event layout shared with the BPF program. With `sys.rs` (two system calls)
//! and one ioctl in `netns.rs`, the only unsafe code in the crate.
//!
//! `RawCtEvent` mirrors `struct ct_raw_event` in `src/bpf/ct_event.h`. The C header asserts
//! its own offsets with `_Static_assert`; this module asserts the Rust mirror against the
//! layout the compiled object's BTF gives (the skeleton's generated types) and against the
//! same literal offsets, so a change on either side alone fails the build.
// The layout's items are hidden from the crate's documentation (tests, fuzzing and
// fixture capture use them); each field is described where it is defined, in
// ct_event.h.
#![allow(missing_docs)]

use std::mem::{offset_of, size_of};

use ct_core::filter::Follow;

use crate::skel::types as c;

/// The layout version this library reads (`CT_RECORD_VERSION` in `ct_event.h`, through
/// the skeleton): records of any other version are refused.
pub const RECORD_VERSION: u16 = c::ct_record::CT_RECORD_VERSION.0 as u16;

/// Valid bytes of the packet header copy.
pub const PKT_HDR_LEN: usize = 96;

/// Bytes the program has for its copy of the kernel's `struct sk_buff` (`struct
/// ct_scratch` in `ct_fill.h`).
pub(crate) const SCRATCH_SKB_LEN: usize =
    offset_of!(c::ct_scratch, conn) - offset_of!(c::ct_scratch, skb);
/// Bytes the program has for its copy of the kernel's `struct nf_conn`.
pub(crate) const SCRATCH_CONN_LEN: usize =
    offset_of!(c::ct_scratch, hdr) - offset_of!(c::ct_scratch, conn);

// Flag values come from the C enums through the skeleton (see `struct ct_abi`).
pub const CONN_HAS_ZONE: u8 = c::ct_conn_present::CT_CONN_HAS_ZONE.0 as u8;
pub const CONN_HAS_MARK: u8 = c::ct_conn_present::CT_CONN_HAS_MARK.0 as u8;
pub const CONN_HAS_LABELS: u8 = c::ct_conn_present::CT_CONN_HAS_LABELS.0 as u8;
pub const CONN_HAS_HELPER: u8 = c::ct_conn_present::CT_CONN_HAS_HELPER.0 as u8;
pub const CONN_HAS_TIMEOUT: u8 = c::ct_conn_present::CT_CONN_HAS_TIMEOUT.0 as u8;
pub const CONN_HAS_PROTO_STATE: u8 = c::ct_conn_present::CT_CONN_HAS_PROTO_STATE.0 as u8;
/// Every `present` bit this version knows.
pub const CONN_KNOWN: u8 = CONN_HAS_ZONE
    | CONN_HAS_MARK
    | CONN_HAS_LABELS
    | CONN_HAS_HELPER
    | CONN_HAS_TIMEOUT
    | CONN_HAS_PROTO_STATE;

pub const EV_HAS_CT: u8 = c::ct_ev_flag::CT_EV_HAS_CT.0 as u8;
pub const EV_HAS_PARENT: u8 = c::ct_ev_flag::CT_EV_HAS_PARENT.0 as u8;
pub const EV_CONN_READ_ERR: u8 = c::ct_ev_flag::CT_EV_CONN_READ_ERR.0 as u8;
pub const EV_KNOWN: u8 = EV_HAS_CT | EV_HAS_PARENT | EV_CONN_READ_ERR;

pub const PKT_HAS_DEV: u8 = c::ct_pkt_flag::CT_PKT_HAS_DEV.0 as u8;
pub const PKT_HAS_NETNS: u8 = c::ct_pkt_flag::CT_PKT_HAS_NETNS.0 as u8;
pub const PKT_DROP: u8 = c::ct_pkt_flag::CT_PKT_DROP.0 as u8;
pub const PKT_DROP_REASON: u8 = c::ct_pkt_flag::CT_PKT_DROP_REASON.0 as u8;

/// `struct ct_raw_tuple`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RawCtTuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Source port or ICMP id, network order.
    pub src_u: [u8; 2],
    /// Destination port, network order.
    pub dst_u: [u8; 2],
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub l3num: u8,
    pub protonum: u8,
}

/// `struct ct_raw_conn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCtConn {
    pub orig: RawCtTuple,
    pub reply: RawCtTuple,
    /// `struct nf_conn_labels`: two host-order `unsigned long`s, bit 0 in the first.
    pub labels: [u8; 16],
    pub helper: [u8; 16],
    /// Opaque identity of the entry; hashed before it leaves the crate.
    pub key: u64,
    pub status: u32,
    pub mark: u32,
    /// Remaining lifetime in jiffies.
    pub timeout: i32,
    /// SCTP verification tags (original, reply), network order.
    pub sctp_vtag: [[u8; 4]; 2],
    pub zone_id: u16,
    pub zone_dir: u8,
    pub proto_state: u8,
    pub present: u8,
    pub _pad: [u8; 7],
}

/// `struct ct_raw_event`: one record from the ring buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCtEvent {
    pub ts: u64,
    pub skb_key: u64,
    pub pid: u32,
    pub tgid: u32,
    pub comm: [u8; 16],
    pub netns: u32,
    pub ifindex: u32,
    pub ifname: [u8; 16],
    pub probe_id: u32,
    pub skb_len: u32,
    pub hz: u32,
    /// `skb->protocol`, network order.
    pub l3_proto: [u8; 2],
    pub pkt_flags: u8,
    pub hdr_len: u8,
    pub ctinfo: u8,
    pub ct_flags: u8,
    /// `enum skb_drop_reason`, low 16 bits (with `PKT_DROP_REASON`).
    pub drop_reason: u16,
    /// Its high 16 bits: the subsystem of a subsystem-specific reason.
    pub drop_subsys: u16,
    /// The layout version the program was built with (`CT_RECORD_VERSION`).
    pub version: u16,
    pub hdr: [u8; PKT_HDR_LEN],
    pub base: RawCtConn,
    pub parent: RawCtConn,
    /// When the packet's data buffer was first reported (see `skb_key`).
    pub skb_first_ts: u64,
}

// An empty record as the program writes one: all zero but the version (ct_fill() stamps
// it on every record), so that it decodes.
impl Default for RawCtEvent {
    fn default() -> Self {
        RawCtEvent {
            ts: 0,
            skb_key: 0,
            pid: 0,
            tgid: 0,
            comm: [0; 16],
            netns: 0,
            ifindex: 0,
            ifname: [0; 16],
            probe_id: 0,
            skb_len: 0,
            hz: 0,
            l3_proto: [0; 2],
            pkt_flags: 0,
            hdr_len: 0,
            ctinfo: 0,
            ct_flags: 0,
            drop_reason: 0,
            drop_subsys: 0,
            version: RECORD_VERSION,
            hdr: [0; PKT_HDR_LEN],
            base: RawCtConn::default(),
            parent: RawCtConn::default(),
            skb_first_ts: 0,
        }
    }
}

/// Bytes of one record as the program writes it (`struct ct_raw_event`).
pub const RAW_EVENT_SIZE: usize = size_of::<RawCtEvent>();

/// The header the kernel puts before each ring buffer record (`BPF_RINGBUF_HDR_SZ`).
pub const RING_HDR_SIZE: usize = 8;

/// Ring buffer space one event takes: its record after the record header, rounded up to 8
/// bytes as the kernel rounds every record.
pub const RING_EVENT_SIZE: usize = (RING_HDR_SIZE + RAW_EVENT_SIZE).next_multiple_of(8);

macro_rules! assert_same_layout {
    ($rust:ty, $c:ty, $off:literal == [$($field:ident @ $at:literal),* $(,)?]) => {
        const _: () = assert!(size_of::<$rust>() == size_of::<$c>());
        const _: () = assert!(size_of::<$rust>() == $off);
        $(
            const _: () = assert!(offset_of!($rust, $field) == offset_of!($c, $field));
            const _: () = assert!(offset_of!($rust, $field) == $at);
        )*
    };
}

assert_same_layout!(RawCtTuple, c::ct_raw_tuple, 40 == [
    src @ 0, dst @ 16, src_u @ 32, dst_u @ 34, icmp_type @ 36, icmp_code @ 37,
    l3num @ 38, protonum @ 39,
]);
assert_same_layout!(RawCtConn, c::ct_raw_conn, 152 == [
    orig @ 0, reply @ 40, labels @ 80, helper @ 96, key @ 112, status @ 120, mark @ 124,
    timeout @ 128, sctp_vtag @ 132, zone_id @ 140, zone_dir @ 142, proto_state @ 143,
    present @ 144,
]);
assert_same_layout!(RawCtEvent, c::ct_raw_event, 496 == [
    ts @ 0, skb_key @ 8, pid @ 16, tgid @ 20, comm @ 24, netns @ 40, ifindex @ 44,
    ifname @ 48, probe_id @ 64, skb_len @ 68, hz @ 72, l3_proto @ 76, pkt_flags @ 78,
    hdr_len @ 79, ctinfo @ 80, ct_flags @ 81, drop_reason @ 82, drop_subsys @ 84, version @ 86,
    hdr @ 88, base @ 184, parent @ 336,
    skb_first_ts @ 488,
]);

impl RawCtEvent {
    /// Copies a record out of ring buffer bytes. `None` if `bytes` is shorter than a record;
    /// bytes past it (the rest of a tracer's own event around the record) are ignored.
    /// The version is not checked here: decoding checks it.
    pub fn read(bytes: &[u8]) -> Option<RawCtEvent> {
        if bytes.len() < RAW_EVENT_SIZE {
            return None;
        }
        // SAFETY: the length was checked; every field is an integer or byte array, so any
        // bit pattern is a valid RawCtEvent; read_unaligned copes with any alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawCtEvent>()) })
    }

    /// The record in `bytes` itself, without a copy: `None` if `bytes` is shorter than a
    /// record or not aligned for one (then [`read`](RawCtEvent::read) copies it out). Ring
    /// buffer records are 8-byte aligned.
    pub fn view(bytes: &[u8]) -> Option<&RawCtEvent> {
        let ptr = bytes.as_ptr();
        if bytes.len() < RAW_EVENT_SIZE || ptr.align_offset(std::mem::align_of::<RawCtEvent>()) != 0
        {
            return None;
        }
        // SAFETY: the length and alignment were checked; every field is an integer or byte
        // array, so any bit pattern is a valid RawCtEvent; the reference borrows `bytes`.
        Some(unsafe { &*ptr.cast::<RawCtEvent>() })
    }

    /// The record's bytes, as the kernel would have written them (for fixtures and tests).
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) with explicit padding fields and no implicit padding (the layout
        // assertions above pin every byte), so all RAW_EVENT_SIZE bytes are initialised.
        unsafe {
            std::slice::from_raw_parts((self as *const RawCtEvent).cast::<u8>(), RAW_EVENT_SIZE)
        }
    }
}

/// Per-probe configuration written into the object's `.rodata` before load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    pub probe_id: u32,
    pub skb_arg: u32,
    /// Report only this network namespace (inode).
    pub netns: Option<u32>,
    pub require_ct: bool,
    /// Give packets tracking ids (a first-seen time per packet).
    pub track: bool,
    /// The probe sees packets being freed: a freed packet's fingerprint is retired.
    pub frees_skb: bool,
    /// The probe sees packets dropped (`skb:kfree_skb`): its events are drops.
    pub drop_probe: bool,
    /// The argument holding the `enum skb_drop_reason` (drop probes, Linux 5.17+).
    pub reason_arg: Option<u32>,
    /// The kernel's `SKB_CONSUMED`: a free with this reason is not a drop.
    pub consumed: Option<u32>,
    /// The kernel's CONFIG_HZ (jiffies per second), 0 when unknown: timeouts are then
    /// left out.
    pub hz: u32,
    /// Run the tcpdump filter written into the program's regions.
    pub pcap: bool,
    /// Following selected packets (and their connections) past the filters.
    pub follow: Follow,
    /// Steps left out (`ct_omit`, [`OmitStep`](crate::OmitStep) bits): benches only.
    pub omit: u32,
}

/// Writes `cfg` and the compiled `filters` into a `.rodata` initial image. Errors if the
/// image does not have the layout this crate was built with (a mismatched object).
pub(crate) fn write_rodata(
    image: &mut [u8],
    cfg: &ProbeConfig,
    filters: &crate::filter::CompiledFilters,
) -> Result<(), usize> {
    let hz_at = offset_of!(c::rodata, ct_hz);
    let omit_at = offset_of!(c::rodata, ct_omit);
    let off = offset_of!(c::rodata, ct_cfg);
    // The section ends with its last variable; the generated struct may be padded past it.
    let needed = (hz_at.max(omit_at) + size_of::<u32>()).max(off + size_of::<c::ct_probe_cfg>());
    if image.len() < needed || image.len() > size_of::<c::rodata>() {
        return Err(image.len());
    }
    let mut value = filters.probe_cfg();
    value.probe_id = cfg.probe_id;
    value.skb_arg = cfg.skb_arg;
    if let Some(netns) = cfg.netns {
        value.netns = netns;
        value.flags |= c::ct_cfg_flag::CT_CFG_NETNS.0;
    }
    for (on, flag) in [
        (cfg.require_ct, c::ct_cfg_flag::CT_CFG_REQUIRE_CT),
        (cfg.track, c::ct_cfg_flag::CT_CFG_TRACK),
        (cfg.frees_skb, c::ct_cfg_flag::CT_CFG_FREES_SKB),
        (cfg.drop_probe, c::ct_cfg_flag::CT_CFG_DROP_PROBE),
        (cfg.pcap, c::ct_cfg_flag::CT_CFG_PCAP_FILTER),
        (cfg.follow.follows(), c::ct_cfg_flag::CT_CFG_FOLLOW_PACKET),
        (
            cfg.follow == Follow::Conn,
            c::ct_cfg_flag::CT_CFG_FOLLOW_CONN,
        ),
    ] {
        if on {
            value.flags |= flag.0;
        }
    }
    if let (true, Some(arg)) = (cfg.drop_probe, cfg.reason_arg) {
        value.reason_arg = arg;
        value.flags |= c::ct_cfg_flag::CT_CFG_DROP_REASON.0;
        if let Some(consumed) = cfg.consumed {
            value.consumed = consumed;
            value.flags |= c::ct_cfg_flag::CT_CFG_CONSUMED.0;
        }
    }
    image[hz_at..hz_at + size_of::<u32>()].copy_from_slice(&cfg.hz.to_ne_bytes());
    image[omit_at..omit_at + size_of::<u32>()].copy_from_slice(&cfg.omit.to_ne_bytes());
    // SAFETY: bounds checked above; ct_probe_cfg is plain integers and arrays of them;
    // write_unaligned copes with the image's alignment.
    unsafe {
        std::ptr::write_unaligned(image.as_mut_ptr().add(off).cast::<c::ct_probe_cfg>(), value);
    }
    Ok(())
}

/// A program's instructions as libpcap's translation reads them (`struct bpf_insn`).
pub(crate) fn program_insns<'a>(
    prog: &'a libbpf_rs::OpenProgramMut<'_>,
) -> &'a [ct_pcap::ebpf::Insn] {
    const _: () =
        assert!(size_of::<libbpf_rs::libbpf_sys::bpf_insn>() == size_of::<ct_pcap::ebpf::Insn>());
    let insns = prog.insns();
    // SAFETY: both are the kernel's 8-byte struct bpf_insn (code, dst/src nibbles, off,
    // imm), repr(C), any bit pattern valid; the slice keeps its length and lifetime.
    unsafe { std::slice::from_raw_parts(insns.as_ptr().cast(), insns.len()) }
}

/// Replaces a program's instructions before it is loaded.
pub(crate) fn set_program_insns(
    prog: &mut libbpf_rs::OpenProgramMut<'_>,
    insns: &[ct_pcap::ebpf::Insn],
) -> Result<(), crate::Error> {
    use libbpf_rs::AsRawLibbpf;
    let raw = prog.as_libbpf_object();
    // SAFETY: `raw` is the open program (not loaded yet, which libbpf checks); libbpf
    // copies the instructions, which have struct bpf_insn's layout (see program_insns).
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_program__set_insns(
            raw.as_ptr(),
            insns.as_ptr().cast_mut().cast(),
            insns.len() as _,
        )
    };
    if rc != 0 {
        return Err(crate::Error::ObjectLayout("program instructions"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_refused() {
        assert!(RawCtEvent::read(&[0u8; RAW_EVENT_SIZE - 1]).is_none());
        assert!(RawCtEvent::read(&[0u8; RAW_EVENT_SIZE]).is_some());
    }

    #[test]
    fn view_needs_length_and_alignment() {
        let ev = RawCtEvent {
            ts: 42,
            probe_id: 3,
            ..Default::default()
        };
        // `ev` itself is aligned: its bytes view as the same record.
        assert_eq!(RawCtEvent::view(ev.as_bytes()), Some(&ev));
        assert!(RawCtEvent::view(&ev.as_bytes()[..RAW_EVENT_SIZE - 1]).is_none());
        // The same bytes at an address that is not 8-byte aligned: no view, but a copy
        // reads them.
        let mut buf = vec![0u8; RAW_EVENT_SIZE + 1];
        let at = usize::from(buf.as_ptr().align_offset(8) == 0);
        let bytes = &mut buf[at..at + RAW_EVENT_SIZE];
        bytes.copy_from_slice(ev.as_bytes());
        assert!(RawCtEvent::view(bytes).is_none());
        assert_eq!(RawCtEvent::read(bytes), Some(ev));
    }

    #[test]
    fn bytes_round_trip() {
        let mut ev = RawCtEvent {
            ts: 42,
            probe_id: 3,
            ..Default::default()
        };
        ev.base.zone_id = 7;
        let copy = RawCtEvent::read(ev.as_bytes()).unwrap();
        assert_eq!(copy, ev);
    }

    #[test]
    fn rodata_written_at_cfg_offset() {
        let mut image = vec![0u8; size_of::<c::rodata>()];
        let cfg = ProbeConfig {
            probe_id: 9,
            skb_arg: 1,
            netns: Some(0xabcd),
            require_ct: true,
            omit: 0x21,
            ..Default::default()
        };
        let filters = crate::filter::CompiledFilters::default();
        write_rodata(&mut image, &cfg, &filters).unwrap();
        let off = offset_of!(c::rodata, ct_cfg);
        let word =
            |i: usize| u32::from_ne_bytes(image[off + 4 * i..off + 4 * i + 4].try_into().unwrap());
        assert_eq!(word(0), 9);
        assert_eq!(word(1), 1);
        assert_eq!(word(2), 0xabcd);
        assert_eq!(
            word(3),
            c::ct_cfg_flag::CT_CFG_NETNS.0 | c::ct_cfg_flag::CT_CFG_REQUIRE_CT.0
        );
        let at = offset_of!(c::rodata, ct_omit);
        assert_eq!(
            u32::from_ne_bytes(image[at..at + 4].try_into().unwrap()),
            0x21
        );
        assert!(write_rodata(&mut [0u8; 2], &cfg, &filters).is_err());
    }

    #[test]
    fn drop_reason_argument_only_on_drop_probes() {
        let read = |cfg: &ProbeConfig| {
            let mut image = vec![0u8; size_of::<c::rodata>()];
            write_rodata(&mut image, cfg, &crate::filter::CompiledFilters::default()).unwrap();
            let off = offset_of!(c::rodata, ct_cfg);
            // SAFETY: the image holds a ct_probe_cfg at `off` (written just above).
            unsafe { std::ptr::read_unaligned(image.as_ptr().add(off).cast::<c::ct_probe_cfg>()) }
        };
        let flag = |f: c::ct_cfg_flag| f.0;
        let drop = ProbeConfig {
            drop_probe: true,
            reason_arg: Some(2),
            consumed: Some(1),
            ..Default::default()
        };
        let cfg = read(&drop);
        assert_eq!(cfg.reason_arg, 2);
        assert_eq!(cfg.consumed, 1);
        let want = flag(c::ct_cfg_flag::CT_CFG_DROP_PROBE)
            | flag(c::ct_cfg_flag::CT_CFG_DROP_REASON)
            | flag(c::ct_cfg_flag::CT_CFG_CONSUMED);
        assert_eq!(cfg.flags & want, want);
        // A kernel without reasons: a drop probe, nothing read.
        let cfg = read(&ProbeConfig {
            reason_arg: None,
            ..drop
        });
        assert_eq!(cfg.flags & want, flag(c::ct_cfg_flag::CT_CFG_DROP_PROBE));
        // Not a drop probe: the argument is never read.
        let cfg = read(&ProbeConfig {
            drop_probe: false,
            ..drop
        });
        assert_eq!(cfg.flags & want, 0);
    }
}
