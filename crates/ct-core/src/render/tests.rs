use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::testing::{self, seed_event, SEEDS};
use crate::{CtIp, CtState, CtStatus, FixedStr, ProbeKind, SctpState, TcpState};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tuple(src: &str, dst: &str, proto: CtProto) -> CtTuple {
    CtTuple {
        ip: CtIp::new(ip(src), ip(dst)),
        proto,
    }
}

fn tcp(sport: u16, dport: u16) -> CtProto {
    CtProto::Tcp { sport, dport }
}

/// A connection between `a` and `b` with nothing optional set.
fn conn(a: &str, b: &str, orig: CtProto, reply: CtProto) -> CtConnEvent {
    CtConnEvent {
        zone_id: 0,
        zone_dir: ZoneDir::None,
        orig: tuple(a, b, orig),
        reply: tuple(b, a, reply),
        tcp_state: None,
        mark: None,
        labels: None,
        ct_status: CtStatus::CONFIRMED,
        sctp_state: None,
        helper: None,
        timeout: None,
    }
}

fn ct(state: CtState, base: CtConnEvent) -> CtEvent {
    CtEvent {
        state,
        base: Some(base),
        parent: None,
    }
}

fn render<T: Render>(item: &T, layout: Layout, indent: usize) -> String {
    let mut out = String::new();
    item.render(&mut out, layout, indent).unwrap();
    out
}

/// Both layouts (and the multi-line one indented), as one snapshot.
fn layouts<T: Render>(item: &T) -> String {
    format!(
        "--- single-line\n{}\n--- multi-line\n{}\n--- multi-line, indent 2\n{}\n",
        render(item, Layout::SingleLine, 0),
        render(item, Layout::MultiLine, 0),
        render(item, Layout::MultiLine, 2),
    )
}

fn seed_ct(name: &str) -> CtEvent {
    seed_event(name).ct.expect("seed has a ct section")
}

// ---------------------------------------------------------------------------------------
// Exact layouts from the issue

#[test]
fn udp_seed_single_line_is_exact() {
    assert_eq!(
        render(&seed_ct("udp_zone"), Layout::SingleLine, 0),
        "ct_state NEW status 0x8 udp orig [10.0.1.100.45678 > 8.8.8.8.53] \
         reply [8.8.8.8.53 > 10.0.1.100.45678] orig-zone 100 mark 0x2a labels 0x1"
    );
}

#[test]
fn related_seed_multi_line_is_exact() {
    assert_eq!(
        render(&seed_ct("related_parent"), Layout::MultiLine, 0),
        "ct_state RELATED status 0x8\n\
         tcp (SYN_SENT) orig [10.0.1.100.50000 > 93.184.216.34.20]\n    \
         reply [93.184.216.34.20 > 10.0.1.100.50000]\n\
         \\ parent [tcp (ESTABLISHED) orig [10.0.1.100.54321 > 93.184.216.34.21]\n    \
         reply [93.184.216.34.21 > 10.0.1.100.54321]]"
    );
}

#[test]
fn untracked_prints_only_its_state() {
    let untracked = CtEvent::untracked();
    assert_eq!(
        render(&untracked, Layout::SingleLine, 0),
        "ct_state UNTRACKED"
    );
    assert_eq!(
        render(&untracked, Layout::MultiLine, 4),
        "    ct_state UNTRACKED"
    );
}

/// The envelope example of the ct-cli issue: a SYN leaving eth0.
fn syn_event() -> Event {
    let mut base = conn(
        "192.168.1.100",
        "203.0.113.10",
        tcp(54321, 443),
        tcp(443, 54321),
    );
    base.zone_dir = ZoneDir::Default;
    base.mark = Some(0);
    base.tcp_state = Some(TcpState::SynSent);
    Event {
        timestamp: Some(202389123456789),
        task: Some(Task {
            pid: 12345,
            tgid: 12345,
            comm: FixedStr::new("curl"),
        }),
        probe: Some(ProbeInfo {
            kind: ProbeKind::Tp,
            name: Arc::from("net:net_dev_start_xmit"),
        }),
        netns: None,
        tracking: None,
        drop: None,
        packet: Some(Packet {
            ifindex: Some(2),
            ifname: Some(FixedStr::new("eth0")),
            len: 74,
            ip: Some(PacketIp {
                src: ip("192.168.1.100"),
                dst: ip("203.0.113.10"),
                version: IpVersion::V4,
                ttl: 64,
                tos: 0,
                id: 12345,
                frag_off: 0,
                df: true,
                mf: false,
                len: 60,
                proto: 6,
            }),
            headers: None,
            l4: Some(PacketL4::Tcp {
                sport: 54321,
                dport: 443,
                flags: 0x02,
            }),
        }),
        ct: Some(ct(CtState::New, base)),
        nft: None,
    }
}

#[test]
fn envelope_multi_line_is_exact() {
    assert_eq!(
        render(&syn_event(), Layout::MultiLine, 0),
        "202389123456789 [curl] 12345 [tp] net:net_dev_start_xmit\n  \
         if 2 (eth0) 192.168.1.100.54321 > 203.0.113.10.443 ttl 64 tos 0x0 id 12345 off 0 [DF] len 60 proto TCP (6) flags [S]\n  \
         ct_state NEW status 0x8\n  \
         tcp (SYN_SENT) orig [192.168.1.100.54321 > 203.0.113.10.443]\n      \
         reply [203.0.113.10.443 > 192.168.1.100.54321] zone 0 mark 0x0"
    );
}

#[test]
fn envelope_single_line_is_exact() {
    assert_eq!(
        render(&syn_event(), Layout::SingleLine, 0),
        "202389123456789 [curl] 12345 [tp] net:net_dev_start_xmit \
         if 2 (eth0) 192.168.1.100.54321 > 203.0.113.10.443 ttl 64 tos 0x0 id 12345 off 0 [DF] len 60 proto TCP (6) flags [S] \
         ct_state NEW status 0x8 \
         tcp (SYN_SENT) orig [192.168.1.100.54321 > 203.0.113.10.443] \
         reply [203.0.113.10.443 > 192.168.1.100.54321] zone 0 mark 0x0"
    );
}

#[test]
fn drops_are_on_the_first_line() {
    let mut event = syn_event();
    event.probe.as_mut().unwrap().name = Arc::from("skb:kfree_skb");
    event.drop = Some(DropInfo::reason("NETFILTER_DROP"));
    let multi = render(&event, Layout::MultiLine, 0);
    assert_eq!(
        multi.lines().next().unwrap(),
        "202389123456789 [curl] 12345 [tp] skb:kfree_skb drop (NETFILTER_DROP)"
    );
    let single = render(&event, Layout::SingleLine, 0);
    assert!(single.starts_with(
        "202389123456789 [curl] 12345 [tp] skb:kfree_skb drop (NETFILTER_DROP) if 2 (eth0) "
    ));
    // A kernel without reasons: the drop alone.
    event.drop = Some(DropInfo::default());
    assert!(render(&event, Layout::SingleLine, 0)
        .starts_with("202389123456789 [curl] 12345 [tp] skb:kfree_skb drop if 2"));
    // A drop is a header field of its own: an event with nothing else starts with it.
    let bare = Event {
        drop: Some(DropInfo::reason("NO_SOCKET")),
        packet: event.packet.clone(),
        ..Event::default()
    };
    assert_eq!(
        render(&bare, Layout::MultiLine, 0).lines().next().unwrap(),
        "drop (NO_SOCKET)"
    );
    // A reason read from a file cannot break the line.
    event.drop = Some(DropInfo::reason("A\nB"));
    assert!(render(&event, Layout::MultiLine, 0)
        .lines()
        .next()
        .unwrap()
        .ends_with(r"drop (A\nB)"));
}

#[test]
fn display_matches_render() {
    let event = syn_event();
    assert_eq!(
        event.display(Layout::MultiLine).indent(3).to_string(),
        render(&event, Layout::MultiLine, 3)
    );
    let ct = seed_ct("related_parent");
    assert_eq!(
        ct.display(Layout::SingleLine).to_string(),
        render(&ct, Layout::SingleLine, 0)
    );
}

#[test]
fn io_writer_gets_the_same_bytes() {
    let event = syn_event();
    let mut out = Vec::new();
    write_io(&mut out, &event, Layout::MultiLine, 2).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        render(&event, Layout::MultiLine, 2)
    );
}

// ---------------------------------------------------------------------------------------
// Snapshots: the seed examples

#[test]
fn seed_snapshots() {
    for name in SEEDS {
        insta::assert_snapshot!(format!("seed_{name}"), layouts(&seed_ct(name)));
    }
}

/// A file of `{"ct": ...}` lines prints only the ct sections, unindented.
#[test]
fn seed_events_print_only_their_ct_section() {
    for name in SEEDS {
        let event = seed_event(name);
        let ct = event.ct.clone().unwrap();
        for layout in [Layout::SingleLine, Layout::MultiLine] {
            assert_eq!(render(&event, layout, 0), render(&ct, layout, 0), "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Snapshots: protocols, zones, labels, extras

#[test]
fn ipv6_tcp() {
    let mut base = conn(
        "2001:db8::10",
        "2001:db8:0:0:1::443",
        tcp(40000, 443),
        tcp(443, 40000),
    );
    base.tcp_state = Some(TcpState::Established);
    base.zone_dir = ZoneDir::Default;
    base.mark = Some(0x10);
    base.ct_status = CtStatus::from_bits_retain(0x18a);
    insta::assert_snapshot!(layouts(&ct(CtState::Established, base)));
}

#[test]
fn icmpv6_echo() {
    let base = conn(
        "fe80::1",
        "ff02::1",
        CtProto::Icmpv6 {
            icmp_type: 128,
            code: 0,
            id: 7,
        },
        CtProto::Icmpv6 {
            icmp_type: 129,
            code: 0,
            id: 7,
        },
    );
    insta::assert_snapshot!(layouts(&ct(CtState::New, base)));
}

#[test]
fn icmp_echo_reply_state() {
    let mut base = seed_ct("icmp_echo").base.unwrap();
    base.ct_status = CtStatus::from_bits_retain(0xa);
    insta::assert_snapshot!(layouts(&ct(CtState::Reply, base)));
}

#[test]
fn sctp() {
    let mut base = conn(
        "10.0.0.1",
        "10.0.0.2",
        CtProto::Sctp {
            sport: 5000,
            dport: 38412,
            vtag: 0xdeadbeef,
        },
        CtProto::Sctp {
            sport: 38412,
            dport: 5000,
            vtag: 0x1234,
        },
    );
    base.sctp_state = Some(SctpState::Established);
    base.mark = Some(0);
    insta::assert_snapshot!(layouts(&ct(CtState::Established, base)));
}

#[test]
fn generic_protocol_gre() {
    let base = conn(
        "198.51.100.1",
        "198.51.100.2",
        CtProto::Generic { proto: 47 },
        CtProto::Generic { proto: 47 },
    );
    insta::assert_snapshot!(layouts(&ct(CtState::New, base)));
}

#[test]
fn untracked() {
    insta::assert_snapshot!(layouts(&CtEvent::untracked()));
}

#[test]
fn labels_128_bit() {
    let mut base = seed_ct("udp_zone").base.unwrap();
    base.labels = Some(1u128 << 127 | 1 << 64 | 1);
    insta::assert_snapshot!(layouts(&ct(CtState::Established, base)));
}

#[test]
fn zero_labels_and_unknown_mark_are_not_printed() {
    let mut base = seed_ct("udp_zone").base.unwrap();
    base.labels = Some(0);
    base.mark = None;
    assert_eq!(
        render(&ct(CtState::New, base), Layout::SingleLine, 0),
        "ct_state NEW status 0x8 udp orig [10.0.1.100.45678 > 8.8.8.8.53] \
         reply [8.8.8.8.53 > 10.0.1.100.45678] orig-zone 100"
    );
}

#[test]
fn every_zone_direction() {
    let mut out = String::new();
    for dir in [
        ZoneDir::None,
        ZoneDir::Original,
        ZoneDir::Reply,
        ZoneDir::Default,
    ] {
        let mut base = seed_ct("tcp_established").base.unwrap();
        base.zone_id = 7;
        base.zone_dir = dir;
        writeln!(out, "--- {dir}").unwrap();
        writeln!(out, "{}", render(&base, Layout::SingleLine, 0)).unwrap();
        writeln!(out, "{}", render(&base, Layout::MultiLine, 0)).unwrap();
    }
    insta::assert_snapshot!(out);
}

#[test]
fn helper_and_timeout() {
    let mut ftp = seed_ct("related_parent");
    let parent = ftp.parent.as_mut().unwrap();
    parent.helper = Some(FixedStr::new("ftp"));
    parent.timeout = Some(431_999);
    parent.mark = Some(0);
    let base = ftp.base.as_mut().unwrap();
    base.timeout = Some(119);
    base.ct_status = CtStatus::CONFIRMED | CtStatus::EXPECTED;
    insta::assert_snapshot!(layouts(&ftp));
}

#[test]
fn unknown_states_and_status_bits() {
    let mut base = seed_ct("tcp_established").base.unwrap();
    base.tcp_state = Some(TcpState::from_raw(42));
    base.ct_status = CtStatus::from_bits_retain(0x8000_0008);
    assert_eq!(
        render(&ct(CtState::Established, base), Layout::SingleLine, 0),
        "ct_state ESTABLISHED status 0x80000008 tcp (UNKNOWN(42)) \
         orig [10.0.1.100.54321 > 93.184.216.34.80] reply [93.184.216.34.80 > 10.0.1.100.54321] mark 0x0"
    );
}

/// The protocol's state is printed only for its own protocol.
#[test]
fn states_only_for_their_protocol() {
    let mut base = seed_ct("udp_zone").base.unwrap();
    base.tcp_state = Some(TcpState::Established);
    base.sctp_state = Some(SctpState::Established);
    assert!(!render(&base, Layout::SingleLine, 0).contains('('));
}

// ---------------------------------------------------------------------------------------
// Snapshots: the envelope

#[test]
fn envelope() {
    insta::assert_snapshot!(layouts(&syn_event()));
}

/// The FTP data connection of the collector page's example, with tracking ids and a
/// thread that is not its process's main one.
#[test]
fn envelope_related_with_tracking() {
    let mut base = conn(
        "192.168.1.100",
        "203.0.113.10",
        tcp(54322, 20),
        tcp(20, 54322),
    );
    base.tcp_state = Some(TcpState::SynSent);
    base.zone_dir = ZoneDir::Default;
    base.mark = Some(0);
    let mut parent = conn(
        "192.168.1.100",
        "203.0.113.10",
        tcp(54321, 21),
        tcp(21, 54321),
    );
    parent.tcp_state = Some(TcpState::Established);
    parent.zone_dir = ZoneDir::Default;
    parent.mark = Some(0);
    parent.helper = Some(FixedStr::new("ftp"));
    parent.ct_status = CtStatus::from_bits_retain(0x200e);
    let mut event = syn_event();
    event.task = Some(Task {
        pid: 6790,
        tgid: 6789,
        comm: FixedStr::new("ftpd"),
    });
    event.probe = Some(ProbeInfo {
        kind: ProbeKind::Kp,
        name: Arc::from("ip_rcv"),
    });
    event.tracking = Some(Tracking {
        skb: 0x1f2e3d4c,
        conn: Some(0xabc),
        parent_conn: Some(0xdef),
    });
    event.netns = Some(4026531840);
    if let Some(Packet {
        ip: Some(ip),
        l4: Some(PacketL4::Tcp { sport, dport, .. }),
        ..
    }) = &mut event.packet
    {
        ip.df = false;
        ip.id = 12346;
        (*sport, *dport) = (54322, 20);
    }
    event.ct = Some(CtEvent {
        state: CtState::Related,
        base: Some(base),
        parent: Some(parent),
    });
    insta::assert_snapshot!(layouts(&event));
}

#[test]
fn envelope_ipv6_icmpv6() {
    let event = Event {
        timestamp: Some(1),
        task: Some(Task {
            pid: 0,
            tgid: 0,
            comm: FixedStr::new("swapper/1"),
        }),
        probe: Some(ProbeInfo {
            kind: ProbeKind::Tp,
            name: Arc::from("net:netif_receive_skb"),
        }),
        packet: Some(Packet {
            ifindex: Some(3),
            ifname: Some(FixedStr::new("veth0")),
            len: 104,
            ip: Some(PacketIp {
                src: ip("2001:db8::2"),
                dst: ip("2001:db8::1"),
                version: IpVersion::V6,
                ttl: 64,
                tos: 0xb8,
                id: 0xabcde,
                frag_off: 0,
                df: false,
                mf: false,
                len: 104,
                proto: 58,
            }),
            headers: None,
            l4: Some(PacketL4::Icmpv6 {
                icmp_type: 129,
                code: 0,
            }),
        }),
        ct: Some(ct(
            CtState::Reply,
            conn(
                "2001:db8::1",
                "2001:db8::2",
                CtProto::Icmpv6 {
                    icmp_type: 128,
                    code: 0,
                    id: 99,
                },
                CtProto::Icmpv6 {
                    icmp_type: 129,
                    code: 0,
                    id: 99,
                },
            ),
        )),
        ..Event::default()
    };
    insta::assert_snapshot!(layouts(&event));
}

/// Packets of every shape, one per line.
#[test]
fn packet_lines() {
    let syn = syn_event().packet.unwrap();
    let v4 = syn.ip.unwrap();
    let mut cases: Vec<(&str, Packet)> = Vec::new();
    let with = |f: &dyn Fn(&mut Packet)| {
        let mut p = syn.clone();
        f(&mut p);
        p
    };
    cases.push(("syn", syn.clone()));
    cases.push((
        "syn-ack",
        with(&|p| {
            p.l4 = Some(PacketL4::Tcp {
                sport: 443,
                dport: 54321,
                flags: 0x12,
            })
        }),
    ));
    cases.push((
        "all tcp flags",
        with(&|p| {
            p.l4 = Some(PacketL4::Tcp {
                sport: 1,
                dport: 2,
                flags: 0xff,
            })
        }),
    ));
    cases.push((
        "no tcp flag",
        with(&|p| {
            p.l4 = Some(PacketL4::Tcp {
                sport: 1,
                dport: 2,
                flags: 0,
            })
        }),
    ));
    cases.push((
        "udp fragment",
        with(&|p| {
            p.ip = Some(PacketIp {
                df: false,
                mf: true,
                frag_off: 1480,
                proto: 17,
                ..v4
            });
            p.l4 = Some(PacketL4::Udp {
                sport: 5353,
                dport: 53,
            });
        }),
    ));
    cases.push((
        "icmp echo",
        with(&|p| {
            p.ip = Some(PacketIp { proto: 1, ..v4 });
            p.l4 = Some(PacketL4::Icmp {
                icmp_type: 8,
                code: 0,
            });
        }),
    ));
    cases.push((
        "sctp",
        with(&|p| {
            p.ip = Some(PacketIp { proto: 132, ..v4 });
            p.l4 = Some(PacketL4::Sctp {
                sport: 5000,
                dport: 38412,
            });
        }),
    ));
    cases.push((
        "gre, no l4",
        with(&|p| {
            p.ip = Some(PacketIp { proto: 47, ..v4 });
            p.l4 = None;
        }),
    ));
    cases.push((
        "unnamed protocol",
        with(&|p| {
            p.ip = Some(PacketIp { proto: 253, ..v4 });
            p.l4 = None;
        }),
    ));
    cases.push((
        "no device name",
        with(&|p| {
            p.ifname = None;
        }),
    ));
    cases.push((
        "no device",
        with(&|p| {
            p.ifindex = None;
            p.ifname = None;
        }),
    ));
    cases.push((
        "no network header",
        Packet {
            ifindex: Some(1),
            ifname: Some(FixedStr::new("lo")),
            len: 42,
            ip: None,
            headers: None,
            l4: None,
        },
    ));
    let mut out = String::new();
    for (name, packet) in &cases {
        writeln!(out, "{name}: {}", packet.display(Layout::SingleLine)).unwrap();
    }
    insta::assert_snapshot!(out);
}

#[test]
fn header_only_and_partial_headers() {
    let full = syn_event();
    let cases = [
        Event {
            timestamp: Some(5),
            ..Event::default()
        },
        Event {
            task: full.task.clone(),
            ct: full.ct.clone(),
            ..Event::default()
        },
        Event {
            probe: full.probe.clone(),
            packet: full.packet.clone(),
            ..Event::default()
        },
        Event {
            packet: full.packet.clone(),
            ct: full.ct.clone(),
            ..Event::default()
        },
        Event::default(),
    ];
    let mut out = String::new();
    for event in &cases {
        writeln!(
            out,
            "--- single-line\n{}",
            event.display(Layout::SingleLine)
        )
        .unwrap();
        writeln!(out, "--- multi-line\n{}", event.display(Layout::MultiLine)).unwrap();
    }
    insta::assert_snapshot!(out);
}

#[test]
fn control_characters_in_names_are_escaped() {
    let mut event = syn_event();
    event.task.as_mut().unwrap().comm = FixedStr::new("evil\ncomm\t");
    event.probe.as_mut().unwrap().name = Arc::from("a\u{1b}[31m");
    let line = render(&event, Layout::SingleLine, 0);
    assert!(line.starts_with(r"202389123456789 [evil\ncomm\t] 12345 [tp] a\u{1b}[31m if 2"));
    assert!(!line.contains(['\n', '\t', '\u{1b}']));
}

#[test]
fn bidi_format_characters_in_names_are_escaped() {
    let mut event = syn_event();
    // "eth0" reversed on screen by an override, isolates and marks around it.
    event.packet.as_mut().unwrap().ifname = Some(FixedStr::new("\u{202e}0hte\u{202c}"));
    event.task.as_mut().unwrap().comm = FixedStr::new("a\u{2066}b\u{2069}\u{200f}\u{061c}");
    for layout in [Layout::SingleLine, Layout::MultiLine] {
        let text = render(&event, layout, 0);
        for c in [
            '\u{202e}', '\u{202c}', '\u{2066}', '\u{2069}', '\u{200f}', '\u{061c}',
        ] {
            assert!(!text.contains(c), "{c:?} shown as is in {text}");
        }
        assert!(text.contains(r"\u{202e}0hte\u{202c}"), "{text}");
        assert!(
            text.contains(r"a\u{2066}b\u{2069}\u{200f}\u{61c}"),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #[test]
    fn formatting_never_panics_and_keeps_its_shape(
        event in testing::event(),
        indent in 0usize..40,
    ) {
        let single = render(&event, Layout::SingleLine, indent);
        prop_assert!(!single.contains('\n'));
        if !single.is_empty() {
            prop_assert!(single.starts_with(&" ".repeat(indent)));
            prop_assert!(!single[indent..].starts_with(' '));
        }

        let multi = render(&event, Layout::MultiLine, indent);
        for line in multi.lines() {
            prop_assert!(line.starts_with(&" ".repeat(indent)), "{line:?}");
            prop_assert!(!line.trim().is_empty(), "blank line in {multi:?}");
        }
        // The same words, laid out differently. The multi-line layout starts the parent's
        // line with `\` (only there: a name can be `\` too).
        prop_assert_eq!(
            single.split_whitespace().collect::<Vec<_>>(),
            multi
                .lines()
                .flat_map(|line| {
                    let line = line.trim_start();
                    line.strip_prefix("\\ ").unwrap_or(line).split_whitespace()
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn ct_formatting_never_panics(ct in testing::ct_event(), indent in 0usize..8) {
        let single = render(&ct, Layout::SingleLine, indent);
        prop_assert!(single.trim_start().starts_with("ct_state "));
        let multi = render(&ct, Layout::MultiLine, indent);
        // A connection takes two lines (split before `reply`); a template, having no
        // tuples, one.
        let lines = |c: &CtConnEvent| if c.is_template() { 1 } else { 2 };
        let expected_lines = 1
            + ct.base.as_ref().map_or(0, lines)
            + ct.parent.as_ref().map_or(0, lines);
        prop_assert_eq!(multi.lines().count(), expected_lines);
    }
}

#[test]
fn template_prints_settings_not_tuples() {
    let mut base = seed_ct("udp_zone").base.unwrap();
    let unspecified = CtTuple {
        ip: CtIp::new(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            std::net::Ipv4Addr::UNSPECIFIED.into(),
        ),
        proto: CtProto::Generic { proto: 0 },
    };
    base.orig = unspecified;
    base.reply = unspecified;
    base.ct_status = CtStatus::TEMPLATE;
    base.zone_dir = ZoneDir::Default;
    base.zone_id = 5;
    base.mark = Some(0);
    base.labels = None;
    let text = ct(CtState::New, base)
        .display(Layout::SingleLine)
        .to_string();
    assert_eq!(text, "ct_state NEW status 0x800 template zone 5 mark 0x0");
}

fn nft_step(kind: crate::NftTraceKind, verdict: crate::NftVerdict) -> crate::NftTrace {
    testing::nft("in", kind, None, None, verdict)
}

#[test]
fn nft_steps_print_as_documented() {
    use crate::{NftTraceKind as K, NftVerdict as V};
    let line = |nft: crate::NftTrace| {
        let mut s = String::new();
        write_nft(&mut s, &nft).unwrap();
        s
    };
    let rule = crate::NftTrace {
        handle: Some(3),
        ..nft_step(K::Rule, V::Drop)
    };
    assert_eq!(line(rule.clone()), "nft inet f in handle 3 drop");
    assert_eq!(
        line(crate::NftTrace {
            rule: Some(Arc::from("tcp dport 81 drop")),
            ..rule.clone()
        }),
        "nft inet f in handle 3 drop (tcp dport 81 drop)"
    );
    assert_eq!(
        line(nft_step(K::Policy, V::Drop)),
        "nft inet f in policy drop"
    );
    assert_eq!(
        line(crate::NftTrace {
            handle: Some(4),
            target: Some(Arc::from("other")),
            ..nft_step(K::Rule, V::Jump)
        }),
        "nft inet f in handle 4 jump other"
    );
    assert_eq!(
        line(crate::NftTrace {
            chain: Arc::from("sub"),
            ..nft_step(K::Return, V::Return)
        }),
        "nft inet f sub return"
    );
    // A return the kernel reported with another verdict keeps it.
    assert_eq!(
        line(nft_step(K::Return, V::Continue)),
        "nft inet f in return continue"
    );
    // Names from a file cannot break the line.
    assert_eq!(
        line(crate::NftTrace {
            rule: Some(Arc::from("a\nb")),
            ..rule
        }),
        r"nft inet f in handle 3 drop (a\nb)"
    );
}

#[test]
fn nft_events_take_the_place_of_the_probe() {
    let events = testing::nft_scenario();
    let rule = events.iter().find(|e| e.nft.is_some()).unwrap();
    assert_eq!(
        render(rule, Layout::MultiLine, 0),
        "1009000 [swapper/0] 0 nft inet f in handle 3 drop (tcp dport 81 drop) iif veth-client \
         #skb 71 conn e5 netns 4026531840\n  \
         if 3 (veth-client) 10.0.1.100.40000 > 10.0.2.2.81 ttl 64 tos 0x0 id 1 off 0 [DF] len 60 \
         proto TCP (6) flags [S]"
    );
    // Without anything else, the step alone.
    let bare = Event {
        nft: rule.nft.clone(),
        ..Event::default()
    };
    assert_eq!(
        render(&bare, Layout::SingleLine, 0),
        "nft inet f in handle 3 drop (tcp dport 81 drop) iif veth-client"
    );
}

#[test]
fn nft_scenario_in_both_layouts() {
    let mut out = String::new();
    for layout in [Layout::SingleLine, Layout::MultiLine] {
        writeln!(out, "--- {layout}").unwrap();
        for event in testing::nft_scenario() {
            writeln!(out, "{}", event.display(layout)).unwrap();
        }
    }
    insta::assert_snapshot!(out);
}
