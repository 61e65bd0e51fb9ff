//! Test support: proptest strategies for the model types and the seed fixtures.

use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;
use strum::IntoEnumIterator;

use crate::{
    CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, DropInfo, Event, FixedStr,
    HeaderBytes, IpVersion, NftDevice, NftFamily, NftTrace, NftTraceKind, NftVerdict, Packet,
    PacketIp, PacketL4, ProbeInfo, ProbeKind, SctpState, Task, TcpState, Tracking, ZoneDir,
};

/// A writer whose every write fails as on a full disk (`StorageFull`).
pub struct FullDisk;

impl std::io::Write for FullDisk {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "disk full",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
    )
        .prop_map(|(ifindex, ifname, len, ip, l4, headers)| Packet {
            ifindex,
            ifname,
            len,
            ip,
            l4,
            headers: headers.map(|bytes| HeaderBytes::new(&bytes)),
        })
        .boxed()
}

/// Drop reasons: kernel names, and any string a file may hold.
pub fn drop_info() -> BoxedStrategy<DropInfo> {
    proptest::option::of(name_or_any(&[
        "NETFILTER_DROP",
        "NO_SOCKET",
        "NOT_SPECIFIED",
        "TCP_INVALID_SEQUENCE",
        "123",
    ]))
    .prop_map(|reason| DropInfo { reason })
    .boxed()
}

/// Names as nft prints them, and any string a file may hold.
fn nft_name() -> BoxedStrategy<Arc<str>> {
    name_or_any(&[
        "filter",
        "f",
        "in",
        "input",
        "forward",
        "other",
        "tcp dport 81 drop",
    ])
}

/// One of `names`, or any string a file may hold.
fn name_or_any(names: &'static [&'static str]) -> BoxedStrategy<Arc<str>> {
    prop_oneof![
        select(names).prop_map(Arc::<str>::from),
        any::<String>().prop_map(Arc::<str>::from),
    ]
    .boxed()
}

/// Any nftables trace step, consistent or not (a policy with a handle, a jump without a
/// target): the writers and readers must carry what a file holds.
pub fn nft_trace() -> BoxedStrategy<NftTrace> {
    (
        select(NftFamily::iter().collect::<Vec<_>>()),
        nft_name(),
        nft_name(),
        select(NftTraceKind::iter().collect::<Vec<_>>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(nft_name()),
        select(NftVerdict::iter().collect::<Vec<_>>()),
        proptest::option::of(nft_name()),
        proptest::option::of(nft_device()),
        proptest::option::of(nft_device()),
    )
        .prop_map(
            |(family, table, chain, kind, handle, rule, verdict, target, iif, oif)| NftTrace {
                family,
                table,
                chain,
                kind,
                handle,
                rule,
                verdict,
                target,
                iif,
                oif,
            },
        )
        .boxed()
}

/// A device of a trace step, its name known or not.
fn nft_device() -> BoxedStrategy<NftDevice> {
    (any::<u32>(), proptest::option::of(fixed_str()))
        .prop_map(|(ifindex, ifname)| NftDevice { ifindex, ifname })
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
        proptest::option::of(drop_info()),
        proptest::option::of(ct_event()),
        proptest::option::of(nft_trace()),
    )
        .prop_map(
            |(timestamp, task, probe, netns, tracking, packet, drop, ct, nft)| Event {
                timestamp,
                task,
                probe,
                netns,
                tracking,
                packet,
                drop,
                ct,
                nft,
            },
        )
        .boxed()
}

/// The window [`in_window`] keeps events within, in nanoseconds.
pub const TEST_WINDOW_NS: u64 = 1000;

/// One step of [`in_window`]: time since the previous event (0..=10 ns), how much earlier
/// than that the event is written (0..250 ns), and which of three nearby packets it is.
pub fn window_steps(n: usize) -> BoxedStrategy<Vec<(u64, u64, u64)>> {
    proptest::collection::vec((0u64..=10, 0u64..250, 0u64..3), n).boxed()
}

/// `events` rewritten as a capture that fits a window of [`TEST_WINDOW_NS`]: timestamps
/// rising with a jitter well under the window, and the packet ids of events that have
/// one drawn from a few neighbouring packets (a packet's events are within 15 events of
/// each other, so within 400 ns). Connection ids are kept.
pub fn in_window(events: Vec<Event>, steps: &[(u64, u64, u64)]) -> Vec<Event> {
    let mut now = TEST_WINDOW_NS;
    events
        .into_iter()
        .zip(steps)
        .enumerate()
        .map(|(i, (mut event, &(delta, jitter, near)))| {
            now += delta;
            event.timestamp = Some(now - jitter);
            if let Some(t) = event.tracking.as_mut() {
                t.skb = i as u64 / 5 + near;
            }
            event
        })
        .collect()
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

// ---------------------------------------------------------------------------------------
// Synthetic event sets for the sort and conns views.

/// Builders for hand-written events.
pub mod build {
    use std::net::IpAddr;
    use std::sync::Arc;

    use crate::{
        CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, Event, FixedStr,
        IpVersion, Packet, PacketIp, PacketL4, ProbeInfo, ProbeKind, Task, TcpState, Tracking,
        ZoneDir,
    };

    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    pub fn tcp(sport: u16, dport: u16) -> CtProto {
        CtProto::Tcp { sport, dport }
    }

    pub fn udp(sport: u16, dport: u16) -> CtProto {
        CtProto::Udp { sport, dport }
    }

    pub fn tuple(src: &str, dst: &str, proto: CtProto) -> CtTuple {
        CtTuple {
            ip: CtIp::new(ip(src), ip(dst)),
            proto,
        }
    }

    /// A connection with nothing optional set.
    pub fn conn(orig: CtTuple, reply: CtTuple, status: CtStatus) -> CtConnEvent {
        CtConnEvent {
            zone_id: 0,
            zone_dir: ZoneDir::None,
            orig,
            reply,
            tcp_state: None,
            mark: None,
            labels: None,
            ct_status: status,
            sctp_state: None,
            helper: None,
            timeout: None,
        }
    }

    pub fn tcp_conn(
        orig: CtTuple,
        reply: CtTuple,
        status: CtStatus,
        state: TcpState,
    ) -> CtConnEvent {
        CtConnEvent {
            tcp_state: Some(state),
            ..conn(orig, reply, status)
        }
    }

    pub fn ct(state: CtState, base: CtConnEvent) -> CtEvent {
        CtEvent {
            state,
            base: Some(base),
            parent: None,
        }
    }

    /// The packet section of a tcp/udp packet.
    pub fn packet(ifindex: u32, ifname: &str, src: &str, dst: &str, l4: PacketL4) -> Packet {
        let (src, dst) = (ip(src), ip(dst));
        let (version, proto) = (
            IpVersion::of(src),
            match l4 {
                PacketL4::Tcp { .. } => 6,
                PacketL4::Udp { .. } => 17,
                PacketL4::Icmp { .. } => 1,
                PacketL4::Icmpv6 { .. } => 58,
                PacketL4::Sctp { .. } => 132,
            },
        );
        Packet {
            ifindex: Some(ifindex),
            ifname: Some(FixedStr::new(ifname)),
            len: 74,
            ip: Some(PacketIp {
                src,
                dst,
                version,
                ttl: 64,
                tos: 0,
                id: 1,
                frag_off: 0,
                df: true,
                mf: false,
                len: 60,
                proto,
            }),
            l4: Some(l4),
            headers: None,
        }
    }

    pub fn tcp_l4(sport: u16, dport: u16, flags: u8) -> PacketL4 {
        PacketL4::Tcp {
            sport,
            dport,
            flags,
        }
    }

    /// An event at tracepoint `probe` with tracking ids and nothing else.
    pub fn at(ts: u64, probe: &str, skb: u64, conn: Option<u64>) -> Event {
        Event {
            timestamp: Some(ts),
            task: Some(Task {
                pid: 0,
                tgid: 0,
                comm: FixedStr::new("swapper/0"),
            }),
            probe: Some(ProbeInfo {
                kind: ProbeKind::Tp,
                name: Arc::from(probe),
            }),
            netns: Some(4026531840),
            tracking: Some(Tracking {
                skb,
                conn,
                parent_conn: None,
            }),
            packet: None,
            drop: None,
            ct: None,
            nft: None,
        }
    }
}

/// A router's view of a few connections, events in file order (which is not time order:
/// the collector's per-CPU buffers interleave).
///
/// - conn `a1`: TCP 10.0.1.100:54321 -> 93.184.216.34:80, masqueraded to 203.0.113.50;
///   handshake, close to TIME_WAIT, then a late server packet dropped at `skb:kfree_skb`.
///   Ingress events come before conntrack and have no ct section.
/// - conn `b2`: UDP port forward 203.0.113.50:8080 -> 10.0.2.2:80 (DNAT), zone 5, mark,
///   labels.
/// - conn `c3`: IPv6 TCP, no NAT, a single SYN.
/// - conn `f6`: FTP control (helper `ftp`); conn `d4`: its data connection (RELATED, parent
///   `f6`), the second event without `ct.parent`.
/// - an untracked packet (`notrack`), and a ct-only line without any ids or timestamp.
pub fn router_scenario() -> Vec<Event> {
    use crate::{CtState as S, CtStatus as St, TcpState as T};
    use build::*;

    const RX: &str = "net:netif_receive_skb";
    const TX: &str = "net:net_dev_start_xmit";
    const DROP: &str = "skb:kfree_skb";
    let (client, server, public) = ("10.0.1.100", "93.184.216.34", "203.0.113.50");

    let a_orig = tuple(client, server, tcp(54321, 80));
    let a_reply = tuple(server, public, tcp(80, 54321));
    let a_nat = St::CONFIRMED | St::SRC_NAT | St::SRC_NAT_DONE | St::DST_NAT_DONE;
    let a = |state: T, status: St| tcp_conn(a_orig, a_reply, status, state);
    // (skb, from client, flags, ct_state, tcp_state, status)
    let a_packets = [
        (0x11, true, 0x02, S::New, T::SynSent, a_nat),
        (
            0x12,
            false,
            0x12,
            S::Reply,
            T::SynRecv,
            a_nat | St::SEEN_REPLY,
        ),
        (
            0x13,
            true,
            0x10,
            S::Established,
            T::Established,
            a_nat | St::SEEN_REPLY | St::ASSURED,
        ),
        (
            0x14,
            true,
            0x11,
            S::Established,
            T::FinWait,
            a_nat | St::SEEN_REPLY | St::ASSURED,
        ),
        (
            0x15,
            false,
            0x11,
            S::Reply,
            T::LastAck,
            a_nat | St::SEEN_REPLY | St::ASSURED,
        ),
        (
            0x16,
            true,
            0x10,
            S::Established,
            T::TimeWait,
            a_nat | St::SEEN_REPLY | St::ASSURED,
        ),
    ];
    let mut events = Vec::new();
    for (i, &(skb, from_client, flags, state, tcp_state, status)) in a_packets.iter().enumerate() {
        let t = 1_000_000 + i as u64 * 2_000_000;
        let (rx, tx) = if from_client {
            (
                packet(3, "veth-client", client, server, tcp_l4(54321, 80, flags)),
                packet(2, "eth0", public, server, tcp_l4(54321, 80, flags)),
            )
        } else {
            (
                packet(2, "eth0", server, public, tcp_l4(80, 54321, flags)),
                packet(3, "veth-client", server, client, tcp_l4(80, 54321, flags)),
            )
        };
        let mut ingress = at(t, RX, skb, None);
        ingress.packet = Some(rx);
        let mut egress = at(t + 400_000, TX, skb, Some(0xa1));
        egress.packet = Some(tx);
        egress
            .packet
            .as_mut()
            .and_then(|p| p.ip.as_mut())
            .unwrap()
            .ttl = 63;
        egress.ct = Some(ct(state, a(tcp_state, status)));
        events.push(ingress);
        events.push(egress);
    }
    // A late server ACK after TIME_WAIT, dropped by the firewall.
    let mut late = at(13_000_000, RX, 0x17, None);
    late.packet = Some(packet(2, "eth0", server, public, tcp_l4(80, 54321, 0x10)));
    let mut dropped = at(13_000_300, DROP, 0x17, Some(0xa1));
    dropped.packet = late.packet.clone();
    dropped.drop = Some(DropInfo::reason("NETFILTER_DROP"));
    dropped.ct = Some(ct(
        S::Reply,
        a(T::TimeWait, a_nat | St::SEEN_REPLY | St::ASSURED),
    ));
    events.push(dropped);
    events.push(late);

    // b2: UDP port forward, reply seen.
    let peer = "198.51.100.7";
    let mut b = conn(
        tuple(peer, public, udp(40000, 8080)),
        tuple("10.0.2.2", peer, udp(80, 40000)),
        St::CONFIRMED | St::DST_NAT | St::SRC_NAT_DONE | St::DST_NAT_DONE,
    );
    b.zone_id = 5;
    b.zone_dir = ZoneDir::Default;
    b.mark = Some(0x2a);
    b.labels = Some(1);
    let mut b_in = at(2_500_000, TX, 0x21, Some(0xb2));
    b_in.packet = Some(packet(
        4,
        "veth-srv",
        peer,
        "10.0.2.2",
        PacketL4::Udp {
            sport: 40000,
            dport: 80,
        },
    ));
    b_in.ct = Some(ct(S::New, b.clone()));
    let mut b_out = at(2_900_000, TX, 0x22, Some(0xb2));
    b_out.packet = Some(packet(
        2,
        "eth0",
        public,
        peer,
        PacketL4::Udp {
            sport: 8080,
            dport: 40000,
        },
    ));
    b.ct_status |= St::SEEN_REPLY;
    b_out.ct = Some(ct(S::Reply, b));
    events.push(b_out);
    events.push(b_in);

    // c3: IPv6, no NAT.
    let mut c = at(4_200_000, TX, 0x31, Some(0xc3));
    c.packet = Some(packet(
        2,
        "eth0",
        "fd00::1",
        "2001:db8::5",
        tcp_l4(33000, 443, 0x02),
    ));
    c.ct = Some(ct(
        S::New,
        tcp_conn(
            tuple("fd00::1", "2001:db8::5", tcp(33000, 443)),
            tuple("2001:db8::5", "fd00::1", tcp(443, 33000)),
            St::CONFIRMED,
            T::SynSent,
        ),
    ));
    events.push(c);

    // f6: FTP control; d4: its data connection.
    let mut ftp = tcp_conn(
        tuple(client, server, tcp(40021, 21)),
        tuple(server, client, tcp(21, 40021)),
        St::CONFIRMED | St::SEEN_REPLY | St::ASSURED | St::HELPER,
        T::Established,
    );
    ftp.helper = Some(FixedStr::new("ftp"));
    let mut f = at(5_000_000, TX, 0x61, Some(0xf6));
    f.ct = Some(ct(S::Established, ftp.clone()));
    events.push(f);
    let data = |state| {
        tcp_conn(
            tuple(server, client, tcp(20, 50000)),
            tuple(client, server, tcp(50000, 20)),
            St::CONFIRMED | St::EXPECTED,
            state,
        )
    };
    let mut d1 = at(5_500_000, TX, 0x41, Some(0xd4));
    d1.tracking.as_mut().unwrap().parent_conn = Some(0xf6);
    d1.ct = Some(CtEvent {
        parent: Some(ftp),
        ..ct(S::Related, data(T::SynSent))
    });
    let mut d2 = at(5_800_000, TX, 0x42, Some(0xd4));
    d2.tracking.as_mut().unwrap().parent_conn = Some(0xf6);
    d2.ct = Some(ct(S::RelatedReply, data(T::SynRecv)));
    events.push(d2);
    events.push(d1);

    // An untracked packet, and a ct-only line.
    let mut untracked = at(6_000_000, RX, 0x51, None);
    untracked.packet = Some(packet(
        2,
        "eth0",
        "192.0.2.1",
        public,
        PacketL4::Udp {
            sport: 123,
            dport: 123,
        },
    ));
    untracked.ct = Some(CtEvent::untracked());
    events.push(untracked);
    events.push(Event {
        ct: Some(ct(
            S::Established,
            conn(
                tuple(client, "8.8.8.8", udp(45678, 53)),
                tuple("8.8.8.8", client, udp(53, 45678)),
                St::CONFIRMED | St::SEEN_REPLY,
            ),
        )),
        ..Event::default()
    });
    events
}

/// An nftables step that gave `verdict`, as `collect --nft` reports it.
pub fn nft(
    chain: &str,
    kind: NftTraceKind,
    handle: Option<u64>,
    rule: Option<&str>,
    verdict: NftVerdict,
) -> NftTrace {
    NftTrace {
        family: NftFamily::Inet,
        table: Arc::from("f"),
        chain: Arc::from(chain),
        kind,
        handle,
        rule: rule.map(Arc::from),
        verdict,
        target: None,
        iif: None,
        oif: None,
    }
}

/// A router with an nftables ruleset traced (`collect --nft`), events in file order:
///
/// - conn `e5`: TCP 10.0.1.100:40000 -> 10.0.2.2:81; the SYN and its retransmission are
///   dropped by rule 3 (`tcp dport 81 drop`) of chain `in`, each seen at
///   `netif_receive_skb` (before conntrack: no ct section), at the rule (the nft event, its
///   packet section parsed from the trace's headers, length unknown) and at
///   `skb:kfree_skb` (ct NEW, `NETFILTER_DROP`).
/// - conn `e6`: UDP 10.0.1.100:5353 -> 10.0.2.2:53, accepted after a jump from `in` to
///   `other`, whose end returns to `in`.
/// - two packets nftables dropped that no connection can be charged with: one by the
///   policy of chain `in` without a conn id (the trace was not joined), and one whose
///   conn id `e7` no ct section names.
pub fn nft_scenario() -> Vec<Event> {
    use crate::{CtState as S, CtStatus as St, NftTraceKind as K, NftVerdict as V};
    use build::*;

    const RX: &str = "net:netif_receive_skb";
    const DROP: &str = "skb:kfree_skb";
    const RULE: &str = "tcp dport 81 drop";
    let (client, server) = ("10.0.1.100", "10.0.2.2");
    let trace =
        |ts: u64, skb: u64, conn: Option<u64>, step: NftTrace, packet: Option<Packet>| Event {
            timestamp: Some(ts),
            netns: Some(4026531840),
            tracking: conn.map(|conn| Tracking {
                skb,
                conn: Some(conn),
                parent_conn: None,
            }),
            packet: packet.map(|p| Packet { len: 0, ..p }),
            nft: Some(step),
            ..Event::default()
        };

    let mut events = Vec::new();
    let e5 = tcp_conn(
        tuple(client, server, tcp(40000, 81)),
        tuple(server, client, tcp(81, 40000)),
        St::empty(),
        TcpState::SynSent,
    );
    for (i, skb) in [0x71u64, 0x72].into_iter().enumerate() {
        let t = 1_000_000 + i as u64 * 1_000_000_000;
        let syn = packet(
            3,
            "veth-client",
            client,
            server,
            build::tcp_l4(40000, 81, 0x02),
        );
        let mut rx = at(t, RX, skb, None);
        rx.packet = Some(syn.clone());
        let mut dropped = at(t + 2_000, DROP, skb, Some(0xe5));
        dropped.packet = Some(syn.clone());
        dropped.drop = Some(DropInfo::reason("NETFILTER_DROP"));
        dropped.ct = Some(build::ct(S::New, e5.clone()));
        // Received from netlink after the BPF events of the same packet; joined to them,
        // it carries their task, and its input device by name.
        let mut rule = trace(
            t + 9_000,
            skb,
            Some(0xe5),
            NftTrace {
                iif: Some(crate::NftDevice {
                    ifindex: 3,
                    ifname: Some(FixedStr::new("veth-client")),
                }),
                ..nft("in", K::Rule, Some(3), Some(RULE), V::Drop)
            },
            Some(syn),
        );
        rule.task = rx.task.clone();
        events.extend([rx, rule, dropped]);
    }

    let e6 = conn(
        tuple(client, server, udp(5353, 53)),
        tuple(server, client, udp(53, 5353)),
        St::CONFIRMED,
    );
    let query = packet(
        3,
        "veth-client",
        client,
        server,
        PacketL4::Udp {
            sport: 5353,
            dport: 53,
        },
    );
    let mut sent = at(3_000_000, "net:net_dev_start_xmit", 0x81, Some(0xe6));
    sent.packet = Some(query.clone());
    sent.ct = Some(build::ct(S::New, e6));
    let jump = NftTrace {
        target: Some(Arc::from("other")),
        ..nft(
            "in",
            K::Rule,
            Some(4),
            Some("udp dport 53 jump other"),
            V::Jump,
        )
    };
    let back = nft("other", K::Return, None, None, V::Return);
    let accept = nft("in", K::Policy, None, None, V::Accept);
    events.push(trace(
        2_990_000,
        0x81,
        Some(0xe6),
        jump,
        Some(query.clone()),
    ));
    events.push(trace(
        2_990_100,
        0x81,
        Some(0xe6),
        back,
        Some(query.clone()),
    ));
    events.push(trace(2_990_200, 0x81, Some(0xe6), accept, Some(query)));
    events.push(sent);

    let stray = packet(
        3,
        "veth-client",
        "192.0.2.9",
        server,
        build::tcp_l4(1234, 22, 0x02),
    );
    events.push(trace(
        4_000_000,
        0x91,
        None,
        // Not joined: its device by index alone (gone before its name was read).
        NftTrace {
            iif: Some(crate::NftDevice {
                ifindex: 3,
                ifname: None,
            }),
            ..nft("in", K::Policy, None, None, V::Drop)
        },
        Some(stray.clone()),
    ));
    events.push(trace(
        4_500_000,
        0x92,
        Some(0xe7),
        nft("in", K::Rule, Some(3), Some(RULE), V::Drop),
        Some(stray),
    ));
    events
}
