//! The kernel side of ct-trace: the BPF program that reads `skb->_nfct`, the raw event
//! layout it shares with user space, decoding into `ct_core` events, probe attachment and
//! the ring buffer.
//!
//! Every public item is at the top level; the modules are private. Start with
//! [`CollectorBuilder`] (probes in, [`Collector`] out, whose `poll` hands over decoded
//! events), [`check`] (can collection run on this kernel, and why not), and
//! [`ProbeSpec`] (what `tp:`, `kp:` and `kr:` probes are).
//!
//! What only tests, fuzzing and the workspace's other crates need (the raw record
//! layout, the packet header parser, raw ring records) is public but hidden from the
//! documentation, and is no stable interface.
//!
//! Where to make a change:
//!
//! | change | files |
//! |---|---|
//! | what the program reads from the kernel | `src/bpf/ct_fill.h` (conntrack), `src/bpf/ct.bpf.c` (skb, probes), `src/bpf/ct_vmlinux.h` (the CO-RE types it names) |
//! | the record layout | `src/bpf/ct_event.h` and its mirror `src/raw.rs` (both assert every offset); bump `CT_RECORD_VERSION` there, and convert or recapture `fixtures/raw/` |
//! | kernel filters | `src/bpf/ct_filter.h` and `src/filter.rs` |
//! | loading, attaching, program and map names, the ring | `src/collector.rs` |
//! | records to events | `src/decode.rs`, `src/packet.rs` (headers), `src/ids.rs` (tracking ids) |
//! | probe specs and their resolution in BTF | `src/probe.rs`, `src/kernel.rs` |
//! | `ct-cli check` | `src/check.rs` |
//! | error messages | `src/error.rs` |
#![deny(missing_docs)]

#[allow(
    dead_code,
    clippy::all,
    missing_debug_implementations,
    unused_imports,
    missing_docs
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/ct.skel.rs"));
}

mod check;
mod collector;
mod decode;
mod error;
mod filter;
mod ids;
mod kernel;
mod netns;
mod omit;
mod packet;
mod pcap;
mod probe;
mod raw;
mod ring_queue;
mod sys;

pub use check::{check, CheckItem, Report, Verdict};
pub use collector::{
    Collector, CollectorBuilder, LoadedProbe, Lost, Program, ProgramStats, DEFAULT_RING_SIZE,
};
pub use ct_pcap::{PcapError, PcapFilter};
pub use decode::{decode_ct, DecodeError, Decoder};
pub use error::{Error, ErrorCategory};
pub use filter::{CmpOp, KernelFilters, MetaFilter, MetaValue, MAX_INSNS, MAX_META, MAX_PATH};
pub use kernel::{
    has_bpf_privileges, kernel_hz, kernel_release, kprobes_supported, BtfOrigin, Conntrack,
    DropReasons, KernelBtf, KernelConfig, KernelVersion, ModuleBtf, DROP_REASONS_SINCE,
    DROP_REASON_ENUM, MODULE_BTF_SINCE, NF_CONNTRACK_BTF, VMLINUX_BTF,
};
pub use netns::{
    netns_inode, netns_inode_of_path, netns_spec_path, resolve_netns, NamedNetns, NetnsError,
    NetnsFile, NETNS_RUN_DIR,
};
pub use omit::OmitStep;
pub use pcap::PCAP_COPY_LEN;
pub use probe::{
    default_probes, ProbeSpec, ProbeSpecError, ResolvedProbe, DEFAULT_KPROBES, DEFAULT_TRACEPOINTS,
    DROP_TRACEPOINT,
};
pub use raw::{RAW_EVENT_SIZE, RECORD_VERSION, RING_EVENT_SIZE, RING_HDR_SIZE};

// For tests, fuzzing, fixture capture (ct-lab) and ct-nft's header parsing only.
#[doc(hidden)]
pub use collector::RingRecord;
#[doc(hidden)]
pub use packet::{parse_l3, parse_packet};
#[doc(hidden)]
pub use raw::{
    RawCtConn, RawCtEvent, RawCtTuple, CONN_HAS_HELPER, CONN_HAS_LABELS, CONN_HAS_MARK,
    CONN_HAS_PROTO_STATE, CONN_HAS_TIMEOUT, CONN_HAS_ZONE, CONN_KNOWN, EV_CONN_READ_ERR, EV_HAS_CT,
    EV_HAS_PARENT, EV_KNOWN, PKT_DROP, PKT_DROP_REASON, PKT_HAS_DEV, PKT_HAS_NETNS, PKT_HDR_LEN,
};
