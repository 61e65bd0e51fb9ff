use std::net::IpAddr;

use ipnet::IpNet;

use proptest::prelude::*;

use super::*;
use crate::{
    CtConnEvent, CtEvent, CtIp, CtProto, CtState, CtStatus, CtTuple, IpVersion, Packet, PacketIp,
    PacketL4, ZoneDir,
};

fn view(src: &str, dst: &str, proto: u8, ports: Option<(u16, u16)>) -> PacketView {
    let src: IpAddr = src.parse().unwrap();
    PacketView {
        version: Some(IpVersion::of(src)),
        proto,
        src: Some(src),
        dst: Some(dst.parse().unwrap()),
        ports,
    }
}

fn check(filter: &str, p: &PacketView) -> bool {
    let f = PacketFilter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    let ast = f.expr.matches(p);
    let compiled = f.compile().matches(p);
    assert_eq!(
        ast, compiled,
        "AST and compiled program disagree on {filter}"
    );
    ast
}

#[test]
fn seed_examples() {
    let https = view("10.0.0.1", "10.0.0.2", 6, Some((40000, 443)));
    let dns = view("10.0.0.9", "10.0.0.1", 17, Some((53, 5353)));
    assert!(check("tcp", &https));
    assert!(!check("tcp", &dns));
    assert!(check("host 10.0.0.1", &https));
    assert!(check("host 10.0.0.1", &dns));
    assert!(!check("host 10.0.0.3", &dns));
    assert!(check("tcp port 443", &https));
    assert!(!check("tcp port 443", &dns));
    assert!(!check("udp port 443", &https));
}

#[test]
fn directions_and_ranges() {
    let p = view("10.1.2.3", "192.168.0.1", 17, Some((1234, 53)));
    assert!(check("src host 10.1.2.3", &p));
    assert!(!check("dst host 10.1.2.3", &p));
    assert!(check("src net 10.0.0.0/8", &p));
    assert!(check("dst net 192.168.0.0/16 and src net 10.0.0.0/8", &p));
    assert!(check("src or dst net 10.0.0.0/8", &p));
    assert!(!check("src and dst net 10.0.0.0/8", &p));
    assert!(check("portrange 50-60", &p));
    assert!(!check("src portrange 50-60", &p));
    assert!(check("dst port domain", &p));
    assert!(check("port 80 or 53", &p), "a bare value repeats port");
    assert!(check("src 10.1.2.3", &p));
    assert!(check("10.1.2.3", &p), "a bare address means host");
    assert!(check("proto 17 && !tcp", &p));
    assert!(check("ip proto udp", &p));
    assert!(!check("ip6", &p));
    assert!(check("not (tcp or icmp)", &p));
}

#[test]
fn ipv6_and_icmp() {
    let p = view("fd00::1", "fd00::2", 58, None);
    assert!(check("icmp6", &p));
    assert!(!check("icmp", &p));
    assert!(check("ip6 and host fd00::2", &p));
    assert!(check("net fd00::/64", &p));
    assert!(
        !check("net 10.0.0.0/8", &p),
        "an IPv4 net never matches IPv6"
    );
    assert!(!check("port 0", &p), "ICMP has no ports");
}

#[test]
fn packet_without_ip_matches_nothing() {
    let p = PacketView {
        version: None,
        proto: 0,
        src: None,
        dst: None,
        ports: None,
    };
    assert!(!check("not tcp", &p) || check("not tcp", &p));
    assert!(!check("ip or ip6", &p));
}

#[test]
fn errors_point_at_the_problem() {
    let e = PacketFilter::parse("tcp prot 80").unwrap_err();
    assert_eq!(e.column, 5);
    insta::assert_snapshot!(e.to_string(), @r#"
    unexpected "prot": join primitives with and/or (did you mean "port"?) at column 5
      tcp prot 80
          ^
    "#);
    let e = PacketFilter::parse("hots 10.0.0.1").unwrap_err();
    assert!(e.message.contains("did you mean \"host\""), "{e}");
    let e = PacketFilter::parse("host 10.0.0.300").unwrap_err();
    assert_eq!(e.column, 6);
    let e = PacketFilter::parse("(tcp or udp").unwrap_err();
    assert_eq!(e.column, 1);
    assert!(e.message.contains("never closed"));
    let e = PacketFilter::parse("port 70000").unwrap_err();
    assert!(e.message.contains("0-65535"));
    let e = PacketFilter::parse("tcp and").unwrap_err();
    assert_eq!(e.column, 8);
    let e = PacketFilter::parse("net 10.1.2.3/8").unwrap_err();
    assert!(e.message.contains("10.0.0.0/8"));
    assert!(PacketFilter::parse("").is_err());
    assert!(PacketFilter::parse("tcp & udp").is_err());
    assert!(PacketFilter::parse("tcp )").is_err());
    let deep = "(".repeat(100) + "tcp" + &")".repeat(100);
    assert!(PacketFilter::parse(&deep).is_err());
}

#[test]
fn long_filters_parse_and_evaluate_in_user_space() {
    // More tests than the kernel program holds: that is for ct-bpf to refuse, not print -f.
    let many = (1..=40)
        .map(|p| format!("port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let f = PacketFilter::parse(&many).unwrap();
    assert_eq!(f.compile().insns.len(), 80);
    let view = view("10.0.0.1", "10.0.0.2", 6, Some((40, 1)));
    assert!(f.expr.matches(&view) && f.compile().matches(&view));
}

#[test]
fn compiled_jumps_go_forward() {
    let f = PacketFilter::parse("(tcp or udp) and not host 10.0.0.1 and port 53").unwrap();
    let prog = f.compile();
    for (i, insn) in prog.insns.iter().enumerate() {
        for t in [insn.on_true, insn.on_false] {
            if let Target::Insn(j) = t {
                assert!(j > i, "insn {i} jumps back to {j}");
            }
        }
        if let Test::Net { dir, .. } | Test::Port { dir, .. } = insn.test {
            assert!(matches!(dir, Dir::Src | Dir::Dst));
        }
    }
}

#[test]
fn matches_event_packets() {
    let f = PacketFilter::parse("udp").unwrap();
    assert!(!f.matches(None));
    let packet = Packet {
        ip: Some(PacketIp {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            version: IpVersion::V4,
            ttl: 64,
            tos: 0,
            id: 1,
            frag_off: 0,
            df: false,
            mf: false,
            len: 40,
            proto: 17,
        }),
        l4: Some(PacketL4::Udp {
            sport: 1000,
            dport: 53,
        }),
        ..Packet::default()
    };
    assert!(f.matches(Some(&packet)));
    assert!(PacketFilter::parse("dst port 53")
        .unwrap()
        .matches(Some(&packet)));
}

fn conn(mark: Option<u32>, zone: u16, status: CtStatus) -> CtConnEvent {
    let t = CtTuple {
        ip: CtIp::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
        proto: CtProto::Udp { sport: 1, dport: 2 },
    };
    CtConnEvent {
        zone_id: zone,
        zone_dir: ZoneDir::Default,
        orig: t,
        reply: t,
        tcp_state: None,
        mark,
        labels: None,
        ct_status: status,
        sctp_state: None,
        helper: None,
        timeout: None,
    }
}

#[test]
fn ct_filters() {
    let ev = CtEvent {
        state: CtState::New,
        base: Some(conn(
            Some(0x12a),
            7,
            CtStatus::CONFIRMED | CtStatus::SRC_NAT,
        )),
        parent: None,
    };
    let f = |filter: CtFilter| filter.matches(Some(&ev));
    assert!(f(CtFilter::default()));
    assert!(CtFilter::default().matches(None));
    assert!(f(CtFilter {
        states: Some(CtFilter::parse_states("established,new").unwrap()),
        ..Default::default()
    }));
    assert!(!f(CtFilter {
        states: Some(vec![CtState::Reply]),
        ..Default::default()
    }));
    assert!(f(CtFilter {
        mark: Some(CtFilter::parse_mark("0x2a/0xff").unwrap()),
        ..Default::default()
    }));
    assert!(!f(CtFilter {
        mark: Some(CtFilter::parse_mark("0x2a").unwrap()),
        ..Default::default()
    }));
    assert!(f(CtFilter {
        zone: Some(7),
        ..Default::default()
    }));
    assert!(f(CtFilter {
        status: Some(CtFilter::parse_status("src_nat,IPS_CONFIRMED").unwrap()),
        nat: true,
        ..Default::default()
    }));
    assert!(!f(CtFilter {
        status: Some(CtStatus::ASSURED),
        ..Default::default()
    }));
    let untracked = CtEvent::untracked();
    let zone = CtFilter {
        zone: Some(0),
        ..Default::default()
    };
    assert!(!zone.matches(Some(&untracked)));
    assert!(!zone.matches(None));
    assert!(CtFilter::parse_states("new,bogus").is_err());
    assert!(CtFilter::parse_mark("0x1/zz").is_err());
    assert!(CtFilter::parse_status("src_natt")
        .unwrap_err()
        .to_string()
        .contains("src_nat"));
}

fn arb_test() -> impl Strategy<Value = Test> {
    let dir = prop_oneof![
        Just(Dir::Src),
        Just(Dir::Dst),
        Just(Dir::Either),
        Just(Dir::Both)
    ];
    prop_oneof![
        prop_oneof![Just(IpVersion::V4), Just(IpVersion::V6)].prop_map(Test::L3),
        prop_oneof![Just(1u8), Just(6), Just(17), Just(58), Just(132)].prop_map(Test::Proto),
        (dir.clone(), 0u8..4, 8u8..=32).prop_map(|(dir, host, len)| Test::Net {
            dir,
            net: IpNet::new(IpAddr::from([10, 0, 0, host]), len)
                .unwrap()
                .trunc(),
        }),
        (dir, 0u16..6, 0u16..6).prop_map(|(dir, a, b)| Test::Port {
            dir,
            lo: a.min(b),
            hi: a.max(b),
        }),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    arb_test()
        .prop_map(Expr::Test)
        .prop_recursive(4, 12, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            ]
        })
}

fn arb_view() -> impl Strategy<Value = PacketView> {
    (
        any::<bool>(),
        prop_oneof![Just(1u8), Just(6), Just(17), Just(58), Just(132), Just(47)],
        0u8..4,
        0u8..4,
        proptest::option::of((0u16..6, 0u16..6)),
    )
        .prop_map(|(v6, proto, s, d, ports)| {
            let addr = |h: u8| {
                if v6 {
                    IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(h)])
                } else {
                    IpAddr::from([10, 0, 0, h])
                }
            };
            PacketView {
                version: Some(if v6 { IpVersion::V6 } else { IpVersion::V4 }),
                proto,
                src: Some(addr(s)),
                dst: Some(addr(d)),
                ports,
            }
        })
}

proptest! {
    #[test]
    fn compiled_program_agrees_with_ast(expr in arb_expr(), p in arb_view()) {
        let f = PacketFilter { text: String::new(), expr };
        prop_assert_eq!(f.expr.matches(&p), f.compile().matches(&p));
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,60}") {
        let _ = PacketFilter::parse(&s);
    }

    #[test]
    fn parser_never_panics_on_filter_words(words in proptest::collection::vec(
        prop_oneof![
            Just("tcp"), Just("udp"), Just("ip"), Just("ip6"), Just("host"), Just("net"),
            Just("port"), Just("portrange"), Just("src"), Just("dst"), Just("and"), Just("or"),
            Just("not"), Just("("), Just(")"), Just("10.0.0.1"), Just("80"), Just("1-2"),
            Just("proto"), Just("!"), Just("&&"), Just("fd00::/8"), Just("icmp6"),
        ], 0..12)) {
        let text = words.join(" ");
        // An error's column is never out of range.
        if let Err(e) = PacketFilter::parse(&text) {
            prop_assert!(e.column <= text.chars().count() + 1);
        }
    }
}

#[test]
fn drop_reasons_parse_in_any_case_with_or_without_prefix() {
    assert_eq!(
        DropFilter::parse_reasons("netfilter_drop, SKB_DROP_REASON_NO_SOCKET").unwrap(),
        ["NETFILTER_DROP", "NO_SOCKET"]
    );
    // Any name is accepted here: a file may come from another kernel.
    assert_eq!(
        DropFilter::parse_reasons("SOMETHING_NEW").unwrap(),
        ["SOMETHING_NEW"]
    );
    assert!(DropFilter::parse_reasons("").is_err());
    assert!(DropFilter::parse_reasons("a,,b").is_err());
    assert!(DropFilter::parse_reasons("no socket").is_err());
    assert!(DropFilter::parse_reasons("SKB_DROP_REASON_").is_err());
}

#[test]
fn drop_filters_pick_drops_and_reasons() {
    use crate::{DropInfo, Event, ProbeInfo, ProbeKind};
    let plain = Event::default();
    let drop = |reason: Option<&str>| Event {
        drop: Some(DropInfo {
            reason: reason.map(Into::into),
        }),
        ..Event::default()
    };
    // A file written before events had a drop section: the probe tells.
    let old = Event {
        probe: Some(ProbeInfo {
            kind: ProbeKind::Tp,
            name: "skb:kfree_skb".into(),
        }),
        ..Event::default()
    };
    let nf = drop(Some("NETFILTER_DROP"));
    let no_sock = drop(Some("NO_SOCKET"));
    let unknown = drop(None);

    let all = DropFilter::default();
    assert!(all.is_empty());
    for e in [&plain, &old, &nf, &no_sock, &unknown] {
        assert!(all.matches(e));
    }
    let drops = DropFilter {
        only_drops: true,
        reasons: None,
    };
    assert!(!drops.matches(&plain));
    for e in [&old, &nf, &no_sock, &unknown] {
        assert!(drops.matches(e));
    }
    let nf_only = DropFilter {
        only_drops: false,
        reasons: Some(vec!["NETFILTER_DROP".into()]),
    };
    assert!(nf_only.matches(&nf));
    for e in [&plain, &old, &no_sock, &unknown] {
        assert!(!nf_only.matches(e));
    }
    let either = EventFilter {
        drop: DropFilter {
            only_drops: true,
            reasons: Some(vec!["NETFILTER_DROP".into(), "NO_SOCKET".into()]),
        },
        ..EventFilter::default()
    };
    assert!(!either.is_empty());
    assert!(either.matches(&nf) && either.matches(&no_sock));
    assert!(!either.matches(&unknown) && !either.matches(&plain));
}

#[test]
fn nft_events_are_filtered_by_their_packet_and_verdict() {
    use crate::testing::nft_scenario;
    use crate::NftVerdict;
    let events = nft_scenario();
    let nft: Vec<&crate::Event> = events.iter().filter(|e| e.nft.is_some()).collect();
    let (drops, others): (Vec<&crate::Event>, Vec<&crate::Event>) = nft
        .iter()
        .copied()
        .partition(|e| e.nft.as_ref().unwrap().verdict == NftVerdict::Drop);
    assert_eq!((drops.len(), others.len()), (4, 3));

    // The packet filter looks at the packet section parsed from the trace.
    let port_81 = EventFilter {
        packet: Some("tcp dst port 81".parse().unwrap()),
        ..EventFilter::default()
    };
    let matched: Vec<_> = nft.iter().filter(|e| port_81.matches(e)).collect();
    assert_eq!(matched.len(), 2);
    assert!(matched
        .iter()
        .all(|e| e.nft.as_ref().unwrap().handle == Some(3)));

    // --drops keeps nftables drop verdicts (and nothing else of the trace).
    let only_drops = EventFilter {
        drop: DropFilter {
            only_drops: true,
            reasons: None,
        },
        ..EventFilter::default()
    };
    assert!(drops.iter().all(|e| only_drops.matches(e)));
    assert!(others.iter().all(|e| !only_drops.matches(e)));

    // --drop-reason names the kernel's reasons, which only the BPF events carry.
    let netfilter_drop = EventFilter {
        drop: DropFilter {
            only_drops: true,
            reasons: Some(vec!["NETFILTER_DROP".into()]),
        },
        ..EventFilter::default()
    };
    assert!(nft.iter().all(|e| !netfilter_drop.matches(e)));
    assert_eq!(
        events.iter().filter(|e| netfilter_drop.matches(e)).count(),
        2
    );

    // ct filters need a ct section, which a trace step has not.
    let new = EventFilter {
        ct: CtFilter {
            states: Some(vec![crate::CtState::New]),
            ..CtFilter::default()
        },
        ..EventFilter::default()
    };
    assert!(nft.iter().all(|e| !new.matches(e)));
}
