//! The conntrack event model shared by the collector, the CLI and any program that reads
//! events files: types, JSON Lines, and the text layouts.
//!
//! Nothing here touches the kernel; `ct-bpf` decodes kernel records into these types.

mod ct;
mod event;
mod fixed;
pub mod labels;

pub use ct::{
    labels_hex, CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, IpVersion,
    SctpState, TcpState, ZoneDir,
};
pub use event::{
    ip_proto_name, Event, Packet, PacketIp, PacketL4, ProbeInfo, ProbeKind, Task, Tracking,
};
pub use fixed::{FixedStr, NAME_LEN};
