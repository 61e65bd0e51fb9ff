//! Issue 6: every filter form decides the same in the kernel as in user space, on real
//! traffic.
//!
//! One lab, one run of mixed traffic (ICMP and ICMPv6 echo, TCP to port 80, UDP to port
//! 53 in zone 5 with mark 0x2a, through masquerade). A baseline collector reports every
//! router packet; beside it, one collector per filter form reports what the kernel lets
//! through. For each form: what the kernel reported equals the baseline narrowed by the
//! user-space evaluator (the one `ct-cli print -f` uses), and is neither empty nor
//! everything, so each form is seen both matching and rejecting.

use std::collections::BTreeMap;
use std::time::Duration;

use ct_bpf::KernelFilters;
use ct_bpf::MetaFilter;
use ct_core::filter::{CtFilter, PacketFilter};
use ct_core::{write_event, Layout};
use ct_core::{CtState, Event};
use ct_lab::{Capture, Captured};
use ct_lab::{Lab, Node, CLIENT4, SERVER4, SERVER6};

const RULESET: &str = r#"
table inet lab {
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        udp dport 53 ct zone set 5
        udp sport 53 ct zone set 5
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state new udp dport 53 ct mark set 0x2a
        ct state new,established,related counter
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "rs" masquerade
    }
}
"#;

/// A filter form: what the kernel gets, and the user-space decision it must agree with.
struct Case {
    name: &'static str,
    kernel: KernelFilters,
    user: Box<dyn Fn(&Event) -> bool>,
}

fn packet(expr: &'static str) -> Case {
    let f: PacketFilter = expr.parse().unwrap_or_else(|e| panic!("{expr}: {e}"));
    let user = f.clone();
    Case {
        name: expr,
        kernel: KernelFilters {
            packet: Some(f),
            ..Default::default()
        },
        user: Box::new(move |e| user.matches(e.packet.as_ref())),
    }
}

fn ct(name: &'static str, filter: CtFilter) -> Case {
    let user = filter.clone();
    Case {
        name,
        kernel: KernelFilters {
            ct: filter,
            ..Default::default()
        },
        user: Box::new(move |e| user.matches(e.ct.as_ref())),
    }
}

/// Meta filters have no user-space evaluator (they name kernel fields); each is paired
/// with the event field it reads.
fn meta(expr: &'static str, user: impl Fn(&Event) -> bool + 'static) -> Case {
    let m: MetaFilter = expr.parse().unwrap_or_else(|e| panic!("{expr}: {e}"));
    Case {
        name: expr,
        kernel: KernelFilters {
            meta: vec![m],
            ..Default::default()
        },
        user: Box::new(user),
    }
}

fn cases() -> Vec<Case> {
    vec![
        packet("icmp"),
        packet("ip6"),
        packet("tcp port 80"),
        packet("udp and dst port 53"),
        packet("host 10.0.1.2"),
        packet("src net 10.0.2.0/24"),
        packet("icmp6 or (tcp and not port 22)"),
        packet("portrange 50-60"),
        packet("proto 17 || proto 1"),
        ct(
            "--ct-state new",
            CtFilter {
                states: Some(vec![CtState::New]),
                ..Default::default()
            },
        ),
        ct(
            "--ct-mark 0x2a",
            CtFilter {
                mark: Some((0x2a, u32::MAX)),
                ..Default::default()
            },
        ),
        ct(
            "--ct-zone 5",
            CtFilter {
                zone: Some(5),
                ..Default::default()
            },
        ),
        ct(
            "--ct-status seen_reply",
            CtFilter {
                status: Some(ct_core::CtStatus::SEEN_REPLY),
                ..Default::default()
            },
        ),
        ct(
            "--ct-nat",
            CtFilter {
                nat: true,
                ..Default::default()
            },
        ),
        meta("sk_buff._nfct:0x7 == 0x2", |e| {
            e.ct.as_ref().is_some_and(|c| c.state == CtState::New)
        }),
        meta("sk_buff.dev.name == 'rc'", |e| {
            e.packet
                .as_ref()
                .and_then(|p| p.ifname.as_ref())
                .is_some_and(|n| n.as_str() == "rc")
        }),
        meta("sk_buff.len > 90", |e| {
            e.packet.as_ref().is_some_and(|p| p.len > 90)
        }),
    ]
}

/// The event as text without what differs between two collectors seeing the same hit
/// (timestamp, task, tracking ids keyed per collector, the timeout's rounding, and the
/// TCP/SCTP state, which another CPU handling the next packet of the connection can move
/// on between the two programs' reads: seen as FIN_WAIT by one, ESTABLISHED by the other
/// in a 6.1 VM).
fn key(e: &Captured) -> String {
    let mut ev = e.event.clone();
    ev.timestamp = None;
    ev.tracking = None;
    ev.task = None;
    if let Some(ct) = &mut ev.ct {
        for conn in ct.base.iter_mut().chain(ct.parent.iter_mut()) {
            conn.timeout = None;
            conn.tcp_state = None;
            conn.sctp_state = None;
        }
    }
    let mut out = String::new();
    write_event(&mut out, &ev, Layout::SingleLine, 0).unwrap();
    out
}

fn multiset<'a>(events: impl Iterator<Item = &'a Captured>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(key(e)).or_default() += 1;
    }
    m
}

/// CLOCK_MONOTONIC, the clock of the events' timestamps (`bpf_ktime_get_ns`).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn kernel_and_user_space_filters_agree() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    lab.router_nft(RULESET).expect("loading the ruleset");
    let netns = lab.netns_inode(Node::Router);
    let baseline = Capture::start(netns).expect("baseline collector");
    // The same probes as raw tracepoints (skb read through helper calls instead of plain
    // loads) must report the very same events.
    let raw = Capture::start_configured(netns, |b| b.raw_tracepoints(true))
        .expect("raw tracepoint collector");
    let cases = cases();
    let filtered: Vec<Capture> = cases
        .iter()
        .map(|c| {
            Capture::start_with(netns, c.kernel.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
        })
        .collect();

    // Compare only what every collector could see: collectors attach one after the other
    // while the fresh interfaces still send multicast listener reports.
    let since = monotonic_ns();

    lab.ping(Node::Client, SERVER4.into(), 2).expect("ping");
    lab.ping(Node::Client, SERVER6.into(), 2).expect("ping6");
    lab.tcp_exchange(SERVER4.into(), 80, SERVER4.into(), 80)
        .expect("tcp");
    lab.udp_exchange(SERVER4.into(), 53, SERVER4.into(), 53, 2)
        .expect("udp");
    let _ = CLIENT4;

    let all: Vec<Captured> = baseline
        .finish(Duration::from_millis(300))
        .into_iter()
        .filter(|e| e.raw.ts >= since)
        .collect();
    assert!(all.len() > 40, "the baseline saw only {} events", all.len());
    let raw = multiset(
        raw.finish(Duration::from_millis(100))
            .iter()
            .filter(|e| e.raw.ts >= since),
    );
    assert_eq!(
        raw,
        multiset(all.iter()),
        "raw tracepoints and BTF tracepoints reported different events"
    );

    let mut failures = Vec::new();
    for (case, capture) in cases.iter().zip(filtered) {
        let seen = capture.finish(Duration::from_millis(100));
        let kernel = multiset(seen.iter().filter(|e| e.raw.ts >= since));
        let user = multiset(all.iter().filter(|e| (case.user)(&e.event)));
        let (k, u): (usize, usize) = (kernel.values().sum(), user.values().sum());
        if kernel != user {
            let only_kernel: Vec<_> = kernel.keys().filter(|k| !user.contains_key(*k)).collect();
            let only_user: Vec<_> = user.keys().filter(|k| !kernel.contains_key(*k)).collect();
            failures.push(format!(
                "{}: kernel {k} events, user space {u}\n  only in kernel: {only_kernel:#?}\n  only in user space: {only_user:#?}",
                case.name
            ));
        } else if u == 0 || u == all.len() {
            failures.push(format!(
                "{}: matched {u} of {} events; the traffic should exercise both outcomes",
                case.name,
                all.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
