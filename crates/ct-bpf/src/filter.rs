//! Filters compiled for the kernel: the packet filter's test program, the conntrack
//! filters, and meta filters resolved against kernel BTF into offsets and pointer hops.

use std::net::IpAddr;

use ct_core::filter::{CtFilter, Dir, DropFilter, PacketFilter, Target, Test};
use ct_core::{CtStatus, IpVersion};
use libbpf_rs::btf::types::{Array, Composite, Int, IntEncoding};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, HasSize};

use crate::kernel::KernelBtf;
use crate::skel::types as c;
use crate::Error;

mod meta;

pub use meta::{CmpOp, MetaFilter, MetaValue, MAX_PATH};

// What the kernel program holds: the sizes of its filter arrays, from its BTF (`enum
// ct_limit` in `ct_filter.h`, through the skeleton's types), so that the C header is their
// one source.

/// Most tests of a compiled packet filter the kernel program holds (it walks them in a
/// bounded loop).
pub const MAX_INSNS: usize = c::ct_limit::CT_FILTER_MAX_INSNS.0 as usize;
/// Most meta filters one collector takes (they are ANDed).
pub const MAX_META: usize = c::ct_limit::CT_META_MAX.0 as usize;
/// Most pointers one meta filter follows.
pub const MAX_HOPS: usize = c::ct_limit::CT_META_MAX_HOPS.0 as usize;
/// Drop reasons below this can be filtered in the kernel (`struct ct_probe_cfg` has a bit
/// for each).
const DROP_REASON_BITS: u32 = c::ct_limit::CT_DROP_REASON_BITS.0;
const DROP_REASON_WORDS: usize = DROP_REASON_BITS as usize / 32;

/// The filters a collector applies in the kernel, before an event is reserved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFilters {
    /// `-f`: pcap-style packet filter.
    pub packet: Option<PacketFilter>,
    /// `--ct-*`: conntrack filters.
    pub ct: CtFilter,
    /// `-m`: meta filters, all of which must match.
    pub meta: Vec<MetaFilter>,
    /// `--drops`, `--drop-reason`: drops only, with these reasons. A reason must be one of
    /// the running kernel's (`enum skb_drop_reason`); probes other than `skb:kfree_skb`
    /// then report nothing.
    pub drop: DropFilter,
}

impl KernelFilters {
    /// Whether no filter was given: the program then reports every packet.
    pub fn is_empty(&self) -> bool {
        self.packet.is_none() && self.ct.is_empty() && self.meta.is_empty() && self.drop.is_empty()
    }

    /// Compiles everything for the program's `.rodata`; meta filters are resolved with `btf`.
    pub(crate) fn compile(&self, btf: &KernelBtf) -> Result<CompiledFilters, Error> {
        let mut out = CompiledFilters::default();
        if let Some(packet) = &self.packet {
            let program = packet.compile();
            let n = program.insns.len();
            if n > MAX_INSNS {
                return Err(Error::Filter {
                    filter: packet.to_string(),
                    reason: format!(
                        "too complex for the kernel: it needs {n} tests, the kernel program \
                         takes at most {MAX_INSNS} (print, sort and conns take it on a file)"
                    ),
                });
            }
            out.insns = program.insns.iter().map(encode_insn).collect();
            out.flags |= c::ct_cfg_flag::CT_CFG_PKT_FILTER.0;
        }
        let ct = &self.ct;
        if let Some(states) = &ct.states {
            out.flags |= c::ct_cfg_flag::CT_CFG_CT_STATE.0;
            out.ct_states = states.iter().fold(0, |acc, s| acc | 1 << s.ctinfo());
        }
        if let Some((value, mask)) = ct.mark {
            out.flags |= c::ct_cfg_flag::CT_CFG_CT_MARK.0;
            out.ct_mark = value & mask;
            out.ct_mark_mask = mask;
        }
        if let Some(zone) = ct.zone {
            out.flags |= c::ct_cfg_flag::CT_CFG_CT_ZONE.0;
            out.ct_zone = zone;
        }
        if let Some(bits) = ct.status {
            out.flags |= c::ct_cfg_flag::CT_CFG_CT_STATUS.0;
            out.ct_status_all = bits.bits();
        }
        if ct.nat {
            out.flags |= c::ct_cfg_flag::CT_CFG_CT_STATUS_ANY.0;
            out.ct_status_any = CtStatus::NAT_MASK.bits();
        }
        if self.meta.len() > MAX_META {
            return Err(Error::Filter {
                filter: self.meta[MAX_META].to_string(),
                reason: format!("at most {MAX_META} meta filters can be combined"),
            });
        }
        out.meta = self
            .meta
            .iter()
            .map(|m| {
                resolve_meta(btf.btf(), m).map_err(|reason| Error::Filter {
                    filter: m.to_string(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        compile_drop(&self.drop, btf, &mut out)?;
        Ok(out)
    }
}

/// `--drops` and `--drop-reason`, with reason names checked against the kernel's enum.
fn compile_drop(
    drop: &DropFilter,
    btf: &KernelBtf,
    out: &mut CompiledFilters,
) -> Result<(), Error> {
    if drop.only_drops {
        out.flags |= c::ct_cfg_flag::CT_CFG_ONLY_DROPS.0;
    }
    let Some(wanted) = &drop.reasons else {
        return Ok(());
    };
    let filter = format!("--drop-reason {}", wanted.join(","));
    let Some(reasons) = btf.drop_reasons() else {
        return Err(Error::Filter {
            filter,
            reason: format!(
                "this kernel has no drop reasons (enum {} is not in its BTF; Linux {}.{}+ \
                 has them); --drops alone still reports every drop",
                crate::kernel::DROP_REASON_ENUM,
                crate::kernel::DROP_REASONS_SINCE.major,
                crate::kernel::DROP_REASONS_SINCE.minor
            ),
        });
    };
    out.flags |= c::ct_cfg_flag::CT_CFG_ONLY_DROPS.0 | c::ct_cfg_flag::CT_CFG_DROP_REASONS.0;
    for name in wanted {
        let Some(value) = reasons.value(name) else {
            let close = crate::probe::closest(name, reasons.names().map(str::to_owned));
            return Err(Error::Filter {
                filter,
                reason: if close.is_empty() {
                    format!("this kernel has no drop reason {name}")
                } else {
                    format!(
                        "this kernel has no drop reason {name}; did you mean {}?",
                        close.join(", ")
                    )
                },
            });
        };
        let bits = DROP_REASON_BITS;
        if value >= bits {
            return Err(Error::Filter {
                filter,
                reason: format!(
                    "drop reason {name} is {value}, past the {bits} the kernel filter covers"
                ),
            });
        }
        out.drop_reasons[(value / 32) as usize] |= 1 << (value % 32);
    }
    Ok(())
}

/// Filters in the layout of `struct ct_probe_cfg`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledFilters {
    flags: u32,
    ct_states: u32,
    ct_mark: u32,
    ct_mark_mask: u32,
    ct_zone: u16,
    ct_status_all: u32,
    ct_status_any: u32,
    insns: Vec<c::ct_filter_insn>,
    meta: Vec<c::ct_meta_filter>,
    drop_reasons: [u32; DROP_REASON_WORDS],
}

impl CompiledFilters {
    /// A probe config carrying these filters (probe id, skb slot and netns are the
    /// caller's to fill).
    pub(crate) fn probe_cfg(&self) -> c::ct_probe_cfg {
        let mut cfg = c::ct_probe_cfg {
            flags: self.flags,
            ct_states: self.ct_states,
            ct_mark: self.ct_mark,
            ct_mark_mask: self.ct_mark_mask,
            ct_zone: self.ct_zone,
            ct_status_all: self.ct_status_all,
            ct_status_any: self.ct_status_any,
            n_insns: self.insns.len() as u8,
            n_meta: self.meta.len() as u8,
            drop_reasons: self.drop_reasons,
            ..Default::default()
        };
        // `compile` kept both within the arrays, whose sizes come from the same C enum.
        for (slot, insn) in cfg.insns.iter_mut().zip(&self.insns) {
            *slot = *insn;
        }
        for (slot, meta) in cfg.meta.iter_mut().zip(&self.meta) {
            *slot = *meta;
        }
        cfg
    }
}

fn encode_target(t: Target) -> u8 {
    match t {
        Target::Insn(i) => i as u8,
        Target::Accept => c::ct_flt_target::CT_FLT_ACCEPT.0 as u8,
        Target::Reject => c::ct_flt_target::CT_FLT_REJECT.0 as u8,
    }
}

fn family(v: IpVersion) -> u8 {
    match v {
        IpVersion::V4 => 4,
        IpVersion::V6 => 6,
    }
}

fn encode_insn(insn: &ct_core::filter::Insn) -> c::ct_filter_insn {
    let mut out = c::ct_filter_insn {
        jt: encode_target(insn.on_true),
        jf: encode_target(insn.on_false),
        ..Default::default()
    };
    let field = |f: c::ct_flt_field| f.0 as u8;
    match insn.test {
        Test::L3(v) => {
            out.field = field(c::ct_flt_field::CT_FLT_L3);
            out.family = family(v);
        }
        Test::Proto(p) => {
            out.field = field(c::ct_flt_field::CT_FLT_PROTO);
            out.lo = u16::from(p);
        }
        Test::Net { dir, net } => {
            out.field = field(if dir == Dir::Dst {
                c::ct_flt_field::CT_FLT_DADDR
            } else {
                c::ct_flt_field::CT_FLT_SADDR
            });
            let (addr, mask, fam) = match (net.network(), net.netmask()) {
                (IpAddr::V4(a), IpAddr::V4(m)) => {
                    let mut addr = [0u8; 16];
                    let mut mask = [0u8; 16];
                    addr[..4].copy_from_slice(&a.octets());
                    mask[..4].copy_from_slice(&m.octets());
                    (addr, mask, 4)
                }
                (a, m) => (ip16(a), ip16(m), 6),
            };
            out.addr = addr;
            out.mask = mask;
            out.family = fam;
        }
        Test::Port { dir, lo, hi } => {
            out.field = field(if dir == Dir::Dst {
                c::ct_flt_field::CT_FLT_DPORT
            } else {
                c::ct_flt_field::CT_FLT_SPORT
            });
            out.lo = lo;
            out.hi = hi;
        }
    }
    out
}

fn ip16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// Resolves `sk_buff.<field>...` to hop offsets and the final field.
fn resolve_meta(btf: &Btf<'_>, m: &MetaFilter) -> Result<c::ct_meta_filter, String> {
    if m.path[0] != "sk_buff" {
        return Err(format!(
            "paths start at sk_buff (the probe's packet), not {:?}",
            m.path[0]
        ));
    }
    let mut ty = btf
        .type_by_name::<Composite<'_>>("sk_buff")
        .map(|c| *c)
        .ok_or("kernel BTF has no struct sk_buff")?;
    let mut out = c::ct_meta_filter::default();
    let mut offset: u32 = 0; // bytes from the current base
    let mut hops = 0usize;
    let mut walked = String::from("sk_buff");
    for (i, name) in m.path.iter().enumerate().skip(1) {
        let last = i == m.path.len() - 1;
        // Through a pointer to a struct before naming one of its fields.
        if ty.kind() == BtfKind::Ptr {
            let pointee = ty
                .next_type()
                .map(|t| t.skip_mods_and_typedefs())
                .filter(|t| Composite::try_from(*t).is_ok())
                .ok_or_else(|| format!("{walked} is not a pointer to a struct"))?;
            if hops == MAX_HOPS {
                return Err(format!("at most {MAX_HOPS} pointers can be followed"));
            }
            out.off[hops] = u16::try_from(offset).map_err(|_| "offset too large")?;
            hops += 1;
            offset = 0;
            ty = pointee;
        }
        let comp = Composite::try_from(ty)
            .map_err(|_| format!("{walked} is not a struct, it has no field {name:?}"))?;
        let (member_off, member_ty, bitfield) =
            find_member(btf, &comp, name, 0).ok_or_else(|| {
                format!(
                    "{walked} has no field {name:?}; its fields: {}",
                    field_names(btf, &comp)
                )
            })?;
        if bitfield {
            return Err(format!(
                "{walked}.{name} is a bitfield, which is not supported"
            ));
        }
        offset += member_off;
        ty = member_ty.skip_mods_and_typedefs();
        walked.push('.');
        walked.push_str(name);
        if last {
            break;
        }
    }
    out.off[hops] = u16::try_from(offset).map_err(|_| "offset too large")?;
    out.nhops = hops as u8;
    out.op = match m.op {
        CmpOp::Eq => c::ct_cmp_op::CT_CMP_EQ,
        CmpOp::Ne => c::ct_cmp_op::CT_CMP_NE,
        CmpOp::Lt => c::ct_cmp_op::CT_CMP_LT,
        CmpOp::Le => c::ct_cmp_op::CT_CMP_LE,
        CmpOp::Gt => c::ct_cmp_op::CT_CMP_GT,
        CmpOp::Ge => c::ct_cmp_op::CT_CMP_GE,
    }
    .0 as u8;
    match (&m.value, ty.kind()) {
        (MetaValue::Str(s), BtfKind::Array) => {
            let arr = Array::try_from(ty).map_err(|_| "bad array type")?;
            let elem = arr.contained_type().skip_mods_and_typedefs();
            let is_char = Int::try_from(elem).is_ok_and(|i| i.bits == 8);
            if !is_char {
                return Err(format!("{walked} is an array but not of chars"));
            }
            let cap = arr.capacity().min(16);
            if s.len() + 1 > cap && s.len() != cap {
                return Err(format!(
                    "{s:?} is longer than {walked} ({} bytes)",
                    arr.capacity()
                ));
            }
            // Compare the string and its terminating NUL (unless it fills the field).
            let n = (s.len() + 1).min(cap);
            out.size = n as u8;
            out.kind = c::ct_meta_kind::CT_META_STRING.0 as u8;
            for (dst, b) in out.str.iter_mut().zip(s.bytes()) {
                *dst = b as i8;
            }
        }
        (MetaValue::Str(_), _) => {
            return Err(format!(
                "{walked} is not a char array; compare it with a number"
            ))
        }
        (MetaValue::Int(v), kind) => {
            let (size, signed) = match kind {
                BtfKind::Int => {
                    let int = Int::try_from(ty).map_err(|_| "bad int type")?;
                    (int.size(), matches!(int.encoding, IntEncoding::Signed))
                }
                BtfKind::Enum | BtfKind::Enum64 => (type_size(ty).unwrap_or(4), false),
                BtfKind::Ptr => (8, false),
                _ => {
                    return Err(format!(
                        "{walked} is a {}; compare a number, pointer or char array field",
                        format!("{:?}", ty.kind()).to_lowercase()
                    ))
                }
            };
            if !matches!(size, 1 | 2 | 4 | 8) {
                return Err(format!(
                    "{walked} is {size} bytes wide; 1, 2, 4 or 8 are supported"
                ));
            }
            let width_mask = if size == 8 {
                u64::MAX
            } else {
                (1u64 << (size * 8)) - 1
            };
            // Signed fields are compared sign-extended to 64 bits, so their default mask
            // keeps every bit.
            let mask = m.mask.unwrap_or(if signed { u64::MAX } else { width_mask });
            if !signed && mask & !width_mask != 0 {
                return Err(format!(
                    "mask {mask:#x} is wider than {walked} ({size} bytes)"
                ));
            }
            if !signed && *v & !width_mask != 0 {
                return Err(format!("{v:#x} does not fit in {walked} ({size} bytes)"));
            }
            out.size = size as u8;
            out.kind = if signed {
                c::ct_meta_kind::CT_META_SIGNED
            } else {
                c::ct_meta_kind::CT_META_UNSIGNED
            }
            .0 as u8;
            out.mask = mask;
            out.value = *v;
        }
    }
    Ok(out)
}

fn type_size(ty: BtfType<'_>) -> Option<usize> {
    libbpf_rs::btf::types::Enum::try_from(ty)
        .map(|e| e.size())
        .ok()
        .or_else(|| {
            libbpf_rs::btf::types::Enum64::try_from(ty)
                .map(|e| e.size())
                .ok()
        })
}

/// `(byte offset, type, is_bitfield)` of `name` in `comp`, looking inside anonymous
/// members as CO-RE does.
fn find_member<'b>(
    btf: &'b Btf<'_>,
    comp: &Composite<'b>,
    name: &str,
    depth: u32,
) -> Option<(u32, BtfType<'b>, bool)> {
    if depth > 8 {
        return None;
    }
    for member in comp.iter() {
        let (bit_off, bitfield) = match member.attr {
            libbpf_rs::btf::types::MemberAttr::Normal { offset } => (offset, false),
            libbpf_rs::btf::types::MemberAttr::BitField { offset, .. } => (offset, true),
        };
        let ty = btf.type_by_id::<BtfType<'_>>(member.ty)?;
        match member.name.and_then(|n| n.to_str()) {
            Some(n) if !n.is_empty() => {
                if n == name {
                    return Some((bit_off / 8, ty, bitfield || bit_off % 8 != 0));
                }
            }
            _ => {
                if let Ok(inner) = Composite::try_from(ty.skip_mods_and_typedefs()) {
                    if let Some((off, t, bf)) = find_member(btf, &inner, name, depth + 1) {
                        return Some((bit_off / 8 + off, t, bf));
                    }
                }
            }
        }
    }
    None
}

fn field_names(btf: &Btf<'_>, comp: &Composite<'_>) -> String {
    let mut names = Vec::new();
    collect_names(btf, comp, &mut names, 0);
    if names.len() > 24 {
        names.truncate(24);
        names.push("...".into());
    }
    names.join(", ")
}

fn collect_names(btf: &Btf<'_>, comp: &Composite<'_>, out: &mut Vec<String>, depth: u32) {
    if depth > 8 {
        return;
    }
    for member in comp.iter() {
        match member.name.and_then(|n| n.to_str()) {
            Some(n) if !n.is_empty() => out.push(n.to_owned()),
            _ => {
                if let Some(inner) = btf
                    .type_by_id::<BtfType<'_>>(member.ty)
                    .and_then(|t| Composite::try_from(t.skip_mods_and_typedefs()).ok())
                {
                    collect_names(btf, &inner, out, depth + 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btf() -> Option<KernelBtf> {
        match KernelBtf::load() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    #[test]
    fn limits_are_the_c_arrays_sizes() {
        let cfg = c::ct_probe_cfg::default();
        assert_eq!(cfg.insns.len(), MAX_INSNS);
        assert_eq!(cfg.meta.len(), MAX_META);
        assert_eq!(cfg.meta[0].off.len(), MAX_HOPS + 1);
        assert_eq!(cfg.drop_reasons.len() * 32, DROP_REASON_BITS as usize);
        // Insn indexes share a byte with the accept and reject targets.
        assert!(MAX_INSNS <= c::ct_flt_target::CT_FLT_ACCEPT.0 as usize);
    }

    #[test]
    fn filters_the_kernel_cannot_hold_are_refused_here_only() {
        let many = (1..40).map(|p| format!("port {p} or ")).collect::<String>() + "port 40";
        // The parser takes it (print -f evaluates it in user space)...
        let f: PacketFilter = many.parse().unwrap();
        assert!(f.compile().insns.len() > MAX_INSNS);
        let filters = KernelFilters {
            packet: Some(f),
            ..Default::default()
        };
        // ...the kernel program cannot.
        let Some(btf) = btf() else { return };
        let err = filters.compile(&btf).unwrap_err().to_string();
        assert!(err.contains(&format!("at most {MAX_INSNS}")), "{err}");
        let meta: Vec<MetaFilter> = (0..=MAX_META)
            .map(|_| "sk_buff.mark == 1".parse().unwrap())
            .collect();
        let filters = KernelFilters {
            meta,
            ..Default::default()
        };
        let err = filters.compile(&btf).unwrap_err().to_string();
        assert!(err.contains(&format!("at most {MAX_META}")), "{err}");
    }

    #[test]
    fn packet_program_encodes_targets() {
        let f: PacketFilter = "tcp port 443".parse().unwrap();
        let filters = KernelFilters {
            packet: Some(f),
            ..Default::default()
        };
        let Some(btf) = btf() else { return };
        let compiled = filters.compile(&btf).unwrap();
        assert!(!compiled.insns.is_empty());
        assert_eq!(
            compiled.insns[0].field,
            c::ct_flt_field::CT_FLT_PROTO.0 as u8
        );
        assert_eq!(
            compiled.insns[0].jf,
            c::ct_flt_target::CT_FLT_REJECT.0 as u8
        );
        let cfg = compiled.probe_cfg();
        assert_eq!(usize::from(cfg.n_insns), compiled.insns.len());
    }

    #[test]
    fn net_encodes_v4_and_v6_masks() {
        let insn = |text: &str| {
            let f: PacketFilter = text.parse().unwrap();
            encode_insn(&f.compile().insns[0])
        };
        let v4 = insn("src net 10.1.0.0/16");
        assert_eq!(v4.family, 4);
        assert_eq!(&v4.addr[..4], &[10, 1, 0, 0]);
        assert_eq!(&v4.mask[..4], &[255, 255, 0, 0]);
        let v6 = insn("dst net fd00::/8");
        assert_eq!(v6.family, 6);
        assert_eq!(v6.field, c::ct_flt_field::CT_FLT_DADDR.0 as u8);
        assert_eq!(v6.mask[0], 0xff);
        assert_eq!(v6.mask[1], 0);
    }

    #[test]
    fn meta_paths_resolve_against_btf() {
        let Some(btf) = btf() else { return };
        let b = btf.btf();
        let m = resolve_meta(b, &"sk_buff._nfct:0x7 == 0x2".parse().unwrap()).unwrap();
        assert_eq!(m.nhops, 0);
        assert_eq!(m.size, 8);
        assert_eq!(m.mask, 7);
        assert_eq!(m.value, 2);
        let m = resolve_meta(b, &"sk_buff.dev.name == 'eth0'".parse().unwrap()).unwrap();
        assert_eq!(m.nhops, 1);
        assert_eq!(m.size, 5);
        assert_eq!(m.kind, c::ct_meta_kind::CT_META_STRING.0 as u8);
        let m = resolve_meta(b, &"sk_buff.dev.nd_net.net.ns.inum > 0".parse().unwrap()).unwrap();
        assert_eq!(m.nhops, 2);
        assert_eq!(m.size, 4);

        let err = |t: &str| resolve_meta(b, &t.parse().unwrap()).unwrap_err();
        assert!(err("sk_buff.nosuch == 1").contains("its fields:"));
        assert!(err("net_device.mtu == 1").contains("start at sk_buff"));
        assert!(err("sk_buff.dev == 'x'").contains("not a char array"));
        assert!(err("sk_buff.pkt_type == 1").contains("bitfield"));
        assert!(err("sk_buff.dev.name == 'a_very_long_interface_name'").contains("longer"));
        assert!(err("sk_buff.len.x == 1").contains("not a struct"));
    }
}
