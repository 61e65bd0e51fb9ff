//! tcpdump's filter language for ct-trace: expressions compiled by libpcap's own compiler
//! to classic BPF, run by an interpreter here (events files with packet bytes, tests) and
//! translated to eBPF for the placeholder regions of the probe programs.
//!
//! A filter is compiled twice, for a link type with an Ethernet header and for raw IP:
//! a packet whose buffer has a MAC header in front of its network header runs the first
//! program, one without runs the second. An expression that needs the link layer
//! (`ether host`, `arp`, `vlan`) has no raw-IP program and never matches such packets.

#![deny(missing_docs)]

pub mod cbpf;
#[doc(hidden)]
pub mod ebpf;
mod libpcap;
mod translate;

pub use translate::{find_regions, translate, Region, MEM_WIRE_LEN, MEM_WORDS};

/// The link types filters are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet (`DLT_EN10MB`): the packet bytes start at the MAC header.
    Ethernet,
    /// Raw IP (`DLT_RAW`): the packet bytes start at the IPv4 or IPv6 header.
    RawIp,
}

impl LinkType {
    fn dlt(self) -> i32 {
        match self {
            LinkType::Ethernet => 1,
            // DLT_RAW is 12 on Linux (14 on some BSDs).
            LinkType::RawIp => 12,
        }
    }
}

impl std::fmt::Display for LinkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkType::Ethernet => "Ethernet",
            LinkType::RawIp => "raw IP",
        })
    }
}

/// Why an expression could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PcapError {
    /// libpcap refused it; its message says why.
    #[error("{message}")]
    Compile {
        /// The link type it was compiled for.
        link: LinkType,
        /// libpcap's message.
        message: String,
    },
    /// The expression holds a NUL byte.
    #[error("the filter expression contains a NUL byte")]
    Nul,
    /// libpcap could not open a handle for the link type.
    #[error("libpcap cannot open a handle for {0} packets")]
    Open(LinkType),
}

/// Why a classic program could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranslateError {
    /// An instruction the translation does not know (libpcap does not emit it for the
    /// link types used here).
    #[error("classic BPF instruction {at} (code {code:#06x}) cannot be translated")]
    Unsupported {
        /// Its index.
        at: usize,
        /// Its opcode.
        code: u16,
    },
    /// A scratch memory word past the sixteen there are.
    #[error("classic BPF memory word {0} does not exist")]
    MemoryWord(u32),
    /// The program is empty.
    #[error("empty classic BPF program")]
    Empty,
    /// The translation does not fit the room the probe program reserved.
    #[error(
        "the filter is too large for the kernel program: {needed} eBPF instructions, room \
         for {room}; write a shorter expression"
    )]
    TooLarge {
        /// Instructions the translation takes.
        needed: usize,
        /// Instructions there are room for.
        room: usize,
    },
}

/// A tcpdump expression compiled for both link types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapFilter {
    expr: String,
    ethernet: Option<Vec<cbpf::Insn>>,
    raw_ip: Option<Vec<cbpf::Insn>>,
}

impl PcapFilter {
    /// Compiles `expr` for packets of at most `snaplen` bytes. It is refused only when
    /// libpcap refuses it for both link types (the Ethernet message is returned: it is
    /// about the whole language).
    pub fn compile(expr: &str, snaplen: u32) -> Result<PcapFilter, PcapError> {
        let ethernet = libpcap::compile(expr, LinkType::Ethernet, snaplen);
        let raw_ip = libpcap::compile(expr, LinkType::RawIp, snaplen);
        match (ethernet, raw_ip) {
            (Err(err), Err(_)) => Err(err),
            (ethernet, raw_ip) => Ok(PcapFilter {
                expr: expr.to_owned(),
                ethernet: ethernet.ok(),
                raw_ip: raw_ip.ok(),
            }),
        }
    }

    /// The expression as given.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The classic program for `link`; `None` when the expression cannot apply to it
    /// (such packets never match).
    pub fn program(&self, link: LinkType) -> Option<&[cbpf::Insn]> {
        match link {
            LinkType::Ethernet => self.ethernet.as_deref(),
            LinkType::RawIp => self.raw_ip.as_deref(),
        }
    }

    /// Whether a packet matches: `bytes` start at the MAC header for
    /// [`LinkType::Ethernet`], at the network header for [`LinkType::RawIp`];
    /// `wire_len` is the packet's whole length from there.
    pub fn matches(&self, link: LinkType, bytes: &[u8], wire_len: u32) -> bool {
        self.program(link)
            .is_some_and(|prog| cbpf::run(prog, bytes, wire_len) != 0)
    }
}

#[cfg(test)]
mod tests;
