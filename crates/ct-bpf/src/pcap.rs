//! Writing a tcpdump filter into the probe program: libpcap's classic programs,
//! translated by ct-pcap, over the placeholder regions of `bpf/ct_pcap.h`.

use ct_pcap::ebpf::Insn;
use ct_pcap::{find_regions, translate, LinkType, PcapFilter};
use libbpf_rs::OpenProgramMut;

use crate::skel::types::ct_pcap_layout as layout;
use crate::Error;

/// Bytes of the packet the kernel filter sees (from the MAC header where there is one).
pub const PCAP_COPY_LEN: u32 = layout::CT_PCAP_LAYOUT_COPY_LEN.0;
/// Instructions each region holds.
const REGION_INSNS: usize = layout::CT_PCAP_LAYOUT_REGION_INSNS.0 as usize;
const MARKER_ETHERNET: i32 = layout::CT_PCAP_LAYOUT_MARKER_ETHERNET.0 as i32;
const MARKER_RAW_IP: i32 = layout::CT_PCAP_LAYOUT_MARKER_RAW_IP.0 as i32;

// The translation's scratch-word layout is the program's.
const _: () = assert!(ct_pcap::MEM_WORDS == layout::CT_PCAP_LAYOUT_MEM_WORDS.0 as usize);
const _: () = assert!(ct_pcap::MEM_WIRE_LEN as u32 == layout::CT_PCAP_LAYOUT_MEM_WIRE_LEN.0 * 4);

/// Fills the regions of `prog` with `filter`'s programs (the probe code is inlined once
/// per argument slot, each copy with its two regions); a link type the expression cannot
/// apply to gets a program that never matches. Errors if the program has no region of a
/// kind (a mismatched object) or a translation does not fit.
pub(crate) fn fill_regions(
    prog: &mut OpenProgramMut<'_>,
    filter: &PcapFilter,
) -> Result<(), Error> {
    let mut insns: Vec<Insn> = crate::raw::program_insns(prog).to_vec();
    let regions = find_regions(&insns, &[MARKER_ETHERNET, MARKER_RAW_IP], REGION_INSNS);
    for (marker, link) in [
        (MARKER_ETHERNET, LinkType::Ethernet),
        (MARKER_RAW_IP, LinkType::RawIp),
    ] {
        let found: Vec<_> = regions.iter().filter(|r| r.marker == marker).collect();
        if found.is_empty() {
            return Err(Error::ObjectLayout("tcpdump filter region"));
        }
        // `ret 0`: what libpcap compiles for an expression that never matches.
        let never = [ct_pcap::cbpf::Insn {
            code: ct_pcap::cbpf::BPF_RET | ct_pcap::cbpf::BPF_K,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let classic = filter.program(link).unwrap_or(&never);
        for region in found {
            let code = translate(classic, region, PCAP_COPY_LEN).map_err(|source| {
                Error::PcapTranslate {
                    filter: filter.expr().to_owned(),
                    source,
                }
            })?;
            insns[region.start..region.start + region.len].copy_from_slice(&code);
        }
    }
    crate::raw::set_program_insns(prog, &insns)
}
