//! The kernel side of ct-trace: the BPF program that reads `skb->_nfct`, the raw event
//! layout it shares with user space, decoding into `ct_core` events, probe attachment and
//! the ring buffer.

#[allow(dead_code, clippy::all, missing_debug_implementations, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/ct.skel.rs"));
}

pub mod check;
pub mod collector;
pub mod decode;
mod error;
pub mod filter;
mod ids;
pub mod kernel;
pub mod netns;
pub mod packet;
mod pcap;
pub mod probe;
pub mod raw;

pub use check::{check, Report};
pub use collector::{
    Collector, CollectorBuilder, LoadedProbe, Lost, Program, ProgramStats, RingRecord,
    DEFAULT_RING_SIZE,
};
pub use decode::{decode, decode_ct, DecodeError, Decoder};
pub use error::{Error, ErrorCategory};
pub use filter::KernelFilters;
pub use kernel::{DropReasons, KernelBtf, KernelVersion};
pub use netns::{netns_inode, NetnsError};
pub use pcap::PCAP_COPY_LEN;
pub use ct_pcap::{PcapError, PcapFilter};
pub use probe::{default_probes, ProbeSpec, ProbeSpecError, ResolvedProbe};
