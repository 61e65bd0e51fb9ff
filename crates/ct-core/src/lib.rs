//! The conntrack event model shared by the collector, the CLI and any program that reads
//! events files: types, JSON Lines, and the text layouts.
//!
//! Nothing here touches the kernel; `ct-bpf` decodes kernel records into these types.
//!
//! # Example
//!
//! Build the ct section of a UDP flow in an original-direction zone, print it in both text
//! layouts and as a JSON line:
//!
//! ```
//! use std::net::Ipv4Addr;
//!
//! use ct_core::{
//!     write_ct, write_event_json, CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus,
//!     CtTuple, Event, Layout, Render, ZoneDir,
//! };
//!
//! let client = Ipv4Addr::new(10, 0, 1, 100).into();
//! let resolver = Ipv4Addr::new(8, 8, 8, 8).into();
//! let ct = CtEvent {
//!     state: CtState::New,
//!     base: Some(CtConnEvent {
//!         zone_id: 100,
//!         zone_dir: ZoneDir::Original,
//!         orig: CtTuple {
//!             ip: CtIp::new(client, resolver),
//!             proto: CtProto::Udp { sport: 45678, dport: 53 },
//!         },
//!         reply: CtTuple {
//!             ip: CtIp::new(resolver, client),
//!             proto: CtProto::Udp { sport: 53, dport: 45678 },
//!         },
//!         tcp_state: None,
//!         mark: Some(42),
//!         labels: Some(1),
//!         ct_status: CtStatus::CONFIRMED,
//!         sctp_state: None,
//!         helper: None,
//!         timeout: None,
//!     }),
//!     parent: None,
//! };
//!
//! // Single-line, through `Display`.
//! let line = ct.display(Layout::SingleLine).to_string();
//! println!("{line}");
//! assert_eq!(
//!     line,
//!     "ct_state NEW status 0x8 udp orig [10.0.1.100.45678 > 8.8.8.8.53] \
//!      reply [8.8.8.8.53 > 10.0.1.100.45678] orig-zone 100 mark 0x2a labels 0x1"
//! );
//!
//! // Multi-line, written into any `fmt::Write`, here indented by 2.
//! let mut text = String::new();
//! write_ct(&mut text, &ct, Layout::MultiLine, 2).unwrap();
//! println!("{text}");
//! assert_eq!(
//!     text,
//!     "  ct_state NEW status 0x8\n  \
//!      udp orig [10.0.1.100.45678 > 8.8.8.8.53]\n      \
//!      reply [8.8.8.8.53 > 10.0.1.100.45678] orig-zone 100 mark 0x2a labels 0x1"
//! );
//!
//! // JSON Lines: the event envelope with only its ct section.
//! let event = Event { ct: Some(ct), ..Event::default() };
//! let mut json = Vec::new();
//! write_event_json(&event, &mut json).unwrap();
//! print!("{}", String::from_utf8_lossy(&json));
//! assert!(json.starts_with(br#"{"ct":{"state":"new","base":{"zone_id":100,"zone_dir":"original","#));
//!
//! // And back.
//! let read: Vec<Event> = ct_core::read_events(&json[..]).collect::<Result<_, _>>().unwrap();
//! assert_eq!(read, [event]);
//! ```

#![deny(missing_docs)]

mod conns;
mod ct;
mod escape;
mod event;
mod fast;
pub mod filter;
mod fixed;
mod header_bytes;
mod jsonl;
mod labels;
mod limits;
mod output;
mod render;
mod select;
mod sort;

#[cfg(test)]
mod testing;

pub use conns::{
    connections, write_conns, write_conns_io, write_duration, ConnFolder, ConnKey, Connection,
    Connections, Endpoint, Nat, NatChange, NftDrop, PacketCounts, ParentConn, Transition,
    DROP_PROBE,
};
pub use ct::{
    labels_hex, CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, IpVersion,
    SctpState, TcpState, ZoneDir,
};
pub use event::{
    ip_proto_name, DropInfo, Event, NftDevice, NftFamily, NftTrace, NftTraceKind, NftVerdict,
    Packet, PacketIp, PacketL4, ProbeInfo, ProbeKind, Task, Tracking,
};
pub use fixed::{FixedStr, NAME_LEN};
pub use header_bytes::{HeaderBytes, HeaderBytesError};
pub use jsonl::{
    parse_event_line, read_events, write_event_json, EventReader, LineError, LineErrorKind,
    DEFAULT_MAX_LINE_BYTES,
};
pub use limits::{StreamLimits, StreamStats};
pub use output::{EventWriter, Format, IoSink, UnknownFormat};
pub use render::{
    write_conn, write_ct, write_event, write_header, write_io, write_nft, write_packet,
    write_tcp_flags, write_tuple, Layout, Render, Rendered, CONTINUATION_INDENT, SECTION_INDENT,
};
pub use select::{FollowSelector, FollowStats};
pub use sort::{
    group_packets, write_packet_io, write_packets, write_packets_io, PacketGroup, PacketSorter,
};
