//! Test support: proptest strategies for the model types and the seed fixtures.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;
use strum::IntoEnumIterator;

use crate::{
    CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, Event, FixedStr, IpVersion,
    Packet, PacketIp, PacketL4, ProbeInfo, ProbeKind, SctpState, Task, TcpState, Tracking, ZoneDir,
};

/// Any string, cut to a kernel name (control characters included).
pub fn fixed_str() -> BoxedStrategy<FixedStr> {
    any::<String>().prop_map(|s| FixedStr::new(&s)).boxed()
}

pub fn ip_version() -> BoxedStrategy<IpVersion> {
    select(IpVersion::iter().collect::<Vec<_>>()).boxed()
}

/// Mostly consistent address pairs, sometimes mixed families or a wrong version.
pub fn ct_ip() -> BoxedStrategy<CtIp> {
    prop_oneof![
        4 => (any::<std::net::Ipv4Addr>(), any::<std::net::Ipv4Addr>())
            .prop_map(|(s, d)| CtIp::new(s.into(), d.into())),
        4 => (any::<std::net::Ipv6Addr>(), any::<std::net::Ipv6Addr>())
            .prop_map(|(s, d)| CtIp::new(s.into(), d.into())),
        1 => (any::<IpAddr>(), any::<IpAddr>(), ip_version())
            .prop_map(|(src, dst, version)| CtIp { src, dst, version }),
    ]
    .boxed()
}

pub fn ct_proto() -> BoxedStrategy<CtProto> {
    prop_oneof![
        any::<(u16, u16)>().prop_map(|(sport, dport)| CtProto::Tcp { sport, dport }),
        any::<(u16, u16)>().prop_map(|(sport, dport)| CtProto::Udp { sport, dport }),
        any::<(u8, u8, u16)>().prop_map(|(icmp_type, code, id)| CtProto::Icmp {
            icmp_type,
            code,
            id
        }),
        any::<(u8, u8, u16)>().prop_map(|(icmp_type, code, id)| CtProto::Icmpv6 {
            icmp_type,
            code,
            id
        }),
        any::<(u16, u16, u32)>().prop_map(|(sport, dport, vtag)| CtProto::Sctp {
            sport,
            dport,
            vtag
        }),
        any::<u8>().prop_map(|proto| CtProto::Generic { proto }),
    ]
    .boxed()
}

pub fn ct_tuple() -> BoxedStrategy<CtTuple> {
    (ct_ip(), ct_proto())
        .prop_map(|(ip, proto)| CtTuple { ip, proto })
        .boxed()
}

pub fn ct_conn() -> BoxedStrategy<CtConnEvent> {
    (
        (
            any::<u16>(),
            select(ZoneDir::iter().collect::<Vec<_>>()),
            ct_tuple(),
            ct_tuple(),
        ),
        (
            proptest::option::of(any::<u8>().prop_map(TcpState::from_raw)),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u128>()),
            any::<u32>().prop_map(CtStatus::from_bits_retain),
        ),
        (
            proptest::option::of(any::<u8>().prop_map(SctpState::from_raw)),
            proptest::option::of(fixed_str()),
            proptest::option::of(any::<u32>()),
        ),
    )
        .prop_map(
            |(
                (zone_id, zone_dir, orig, reply),
                (tcp_state, mark, labels, ct_status),
                (sctp_state, helper, timeout),
            )| CtConnEvent {
                zone_id,
                zone_dir,
                orig,
                reply,
                tcp_state,
                mark,
                labels,
                ct_status,
                sctp_state,
                helper,
                timeout,
            },
        )
        .boxed()
}

pub fn ct_event() -> BoxedStrategy<CtEvent> {
    (
        select(CtState::iter().collect::<Vec<_>>()),
        proptest::option::of(ct_conn()),
        proptest::option::of(ct_conn()),
    )
        .prop_map(|(state, base, parent)| CtEvent {
            state,
            base,
            parent,
        })
        .boxed()
}

pub fn task() -> BoxedStrategy<Task> {
    (any::<u32>(), any::<u32>(), fixed_str())
        .prop_map(|(pid, tgid, comm)| Task { pid, tgid, comm })
        .boxed()
}

pub fn probe() -> BoxedStrategy<ProbeInfo> {
    (
        prop_oneof![
            Just(ProbeKind::Tp),
            Just(ProbeKind::Kp),
            Just(ProbeKind::Kr)
        ],
        any::<String>(),
    )
        .prop_map(|(kind, name)| ProbeInfo {
            kind,
            name: Arc::from(name),
        })
        .boxed()
}

pub fn tracking() -> BoxedStrategy<Tracking> {
    (
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(skb, conn, parent_conn)| Tracking {
            skb,
            conn,
            parent_conn,
        })
        .boxed()
}

pub fn packet_ip() -> BoxedStrategy<PacketIp> {
    (ct_ip(), any::<(u8, u8, u32, u16, bool, bool, u16, u8)>())
        .prop_map(
            |(ip, (ttl, tos, id, frag_off, df, mf, len, proto))| PacketIp {
                src: ip.src,
                dst: ip.dst,
                version: ip.version,
                ttl,
                tos,
                id,
                frag_off,
                df,
                mf,
                len,
                proto,
            },
        )
        .boxed()
}

pub fn packet_l4() -> BoxedStrategy<PacketL4> {
    prop_oneof![
        any::<(u16, u16, u8)>().prop_map(|(sport, dport, flags)| PacketL4::Tcp {
            sport,
            dport,
            flags
        }),
        any::<(u16, u16)>().prop_map(|(sport, dport)| PacketL4::Udp { sport, dport }),
        any::<(u8, u8)>().prop_map(|(icmp_type, code)| PacketL4::Icmp { icmp_type, code }),
        any::<(u8, u8)>().prop_map(|(icmp_type, code)| PacketL4::Icmpv6 { icmp_type, code }),
        any::<(u16, u16)>().prop_map(|(sport, dport)| PacketL4::Sctp { sport, dport }),
    ]
    .boxed()
}

pub fn packet() -> BoxedStrategy<Packet> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(fixed_str()),
        any::<u32>(),
        proptest::option::of(packet_ip()),
        proptest::option::of(packet_l4()),
    )
        .prop_map(|(ifindex, ifname, len, ip, l4)| Packet {
            ifindex,
            ifname,
            len,
            ip,
            l4,
        })
        .boxed()
}

pub fn event() -> BoxedStrategy<Event> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of(task()),
        proptest::option::of(probe()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(tracking()),
        proptest::option::of(packet()),
        proptest::option::of(ct_event()),
    )
        .prop_map(
            |(timestamp, task, probe, netns, tracking, packet, ct)| Event {
                timestamp,
                task,
                probe,
                netns,
                tracking,
                packet,
                ct,
            },
        )
        .boxed()
}

/// The seed examples of the ct event section, as `fixtures/seed/{name}.json`.
pub const SEEDS: [&str; 4] = ["tcp_established", "udp_zone", "icmp_echo", "related_parent"];

pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The text of a seed example.
pub fn seed_text(name: &str) -> String {
    let path = fixtures_dir().join("seed").join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A seed example read as an event.
pub fn seed_event(name: &str) -> Event {
    serde_json::from_str(&seed_text(name)).unwrap_or_else(|e| panic!("seed {name}: {e}"))
}
