//! Every probe type on the kernel under test: kprobes and kretprobes report the same
//! conntrack data as tracepoints for the same packets, and the default probe set is what
//! the kernel offers (its kprobes only where it has them).
//!
//! On the router of a TCP connection through DNAT + masquerade:
//! - `kp:ip_forward` sees each forwarded packet before POSTROUTING, `tp:net_dev_start_xmit`
//!   after it: same packet id, same connection, same ct state and original tuple; once the
//!   entry is confirmed (every packet after the first), the same reply tuple, status,
//!   zone, mark, labels, TCP state and helper too.
//! - `kr:validate_xmit_skb` returns the skb `net_dev_start_xmit` is then called with:
//!   the whole ct section is the same (the timeout may tick by a second in between).
//!
//! Without kprobes (this development machine) the test checks instead that `kp:`/`kr:`
//! are refused with the kprobes error and that the default set is the tracepoints alone.

mod scenarios;

use std::collections::HashMap;
use std::time::Duration;

use ct_bpf::DEFAULT_TRACEPOINTS;
use ct_bpf::{default_probes, Error, ProbeSpec};
use ct_core::{CtConnEvent, CtState, CtStatus};
use ct_lab::{Capture, Captured, Lab, Node, ROUTER_C4, SERVER4};
use scenarios::{Run, DNAT_SNAT, XMIT};

const FORWARD: &str = "ip_forward";
const LOCAL_DELIVER: &str = "ip_local_deliver";
/// Returns the skb it was given (or its segments) right before it is handed to the
/// driver; in BTF on every kernel of the matrix.
const KRETPROBE: &str = "kr:validate_xmit_skb";

fn spec(s: &str) -> ProbeSpec {
    s.parse().expect("valid probe spec")
}

/// `a` and `b` are one connection's data seen at two moments: equal but for the timeout,
/// which may have ticked in between.
fn assert_same_conn(a: &CtConnEvent, b: &CtConnEvent, what: &str) {
    let mut b2 = b.clone();
    b2.timeout = a.timeout;
    assert_eq!(a, &b2, "{what}");
    if let (Some(x), Some(y)) = (a.timeout, b.timeout) {
        assert!(x.abs_diff(y) <= 1, "{what}: timeouts {x} and {y}");
    }
}

#[test]
fn kprobes_and_kretprobes_report_what_tracepoints_report() {
    let Some(lab) = Lab::for_test() else {
        return;
    };
    let router = lab.netns_inode(Node::Router);

    let defaults = default_probes();
    let extra: Vec<ProbeSpec> = defaults
        .iter()
        .filter(|p| !DEFAULT_TRACEPOINTS.contains(&p.to_string().as_str()))
        .cloned()
        .collect();

    if !ct_bpf::kprobes_supported() {
        assert!(
            extra.is_empty(),
            "no kprobes here, yet the default set adds {extra:?}"
        );
        for probe in ["kp:ip_forward", KRETPROBE] {
            let err = Capture::start_configured(router, |b| b.probe(spec(probe)))
                .expect_err("a kprobe on a kernel without kprobes");
            assert!(
                matches!(err, Error::KprobesUnsupported { .. }),
                "{probe}: {err}"
            );
        }
        println!("this kernel has no kprobes: kp:/kr: are refused as such ({KRETPROBE} checked)");
        return;
    }

    // Where kprobes work, the default set adds forwarding and local delivery.
    for want in ["kp:ip_forward", "kp:ip_local_deliver"] {
        assert!(
            extra.iter().any(|p| p.to_string() == want),
            "default probes {defaults:?} lack {want}"
        );
    }

    lab.router_nft(DNAT_SNAT).expect("loading the ruleset");
    let capture = Capture::start_configured(router, |b| {
        b.probes(extra.iter().cloned()).probe(spec(KRETPROBE))
    })
    .expect("attaching tracepoints, kprobes and a kretprobe");
    let sport = lab
        .tcp_exchange(SERVER4.into(), 80, ROUTER_C4.into(), 8080)
        .expect("tcp through DNAT");
    let ping = lab
        .ping(Node::Client, ROUTER_C4.into(), 2)
        .expect("ping the router");
    assert!(ping.success(), "ping the router: {}", ping.stderr);
    let table = lab.conntrack_entries(Node::Router).expect("conntrack -L");
    let run = Run {
        events: capture.finish(Duration::from_millis(300)),
        table,
    };
    let d = run.dump();
    // Every entry reported is in `conntrack -L`; one not yet confirmed (the first packet
    // at ip_forward, before POSTROUTING adds the masquerade to its reply tuple) by its
    // original tuple.
    for e in &run.events {
        let Some(conn) = e.base() else { continue };
        let found = if conn.ct_status.contains(CtStatus::CONFIRMED) {
            run.entry_for(conn).is_some()
        } else {
            run.table.iter().any(|t| t.orig.matches(&conn.orig))
        };
        assert!(
            found,
            "{} reported {conn:?}, not in conntrack -L\n{d}",
            e.probe()
        );
    }

    let tcp = |e: &&Captured| {
        e.base()
            .is_some_and(|b| b.orig.proto.ports() == Some((sport, 8080)))
    };
    let forwarded: Vec<&Captured> = run.at(FORWARD).filter(tcp).collect();
    let returned: Vec<&Captured> = run.at("validate_xmit_skb").filter(tcp).collect();
    let xmit: Vec<&Captured> = run.at(XMIT).filter(tcp).collect();
    assert!(
        forwarded.len() >= 4 && returned.len() >= 4,
        "kp:ip_forward {} and {KRETPROBE} {} events of the connection\n{d}",
        forwarded.len(),
        returned.len()
    );
    assert!(
        run.at(LOCAL_DELIVER).any(|e| e
            .event
            .packet
            .as_ref()
            .is_some_and(|p| p.ifname.as_ref().is_some_and(|n| n.as_str() == "rc"))),
        "kp:ip_local_deliver saw no packet for the router itself\n{d}"
    );

    // Transmissions by packet id and device.
    let mut sent: HashMap<(u64, String), &Captured> = HashMap::new();
    for e in &xmit {
        let id = e.event.tracking.as_ref().expect("tracking").skb;
        sent.insert((id, e.ifname().unwrap_or("").to_owned()), e);
    }
    let sent_by_id = |id: u64| sent.iter().find(|((i, _), _)| *i == id).map(|(_, e)| *e);

    let mut confirmed_pairs = 0;
    for f in &forwarded {
        let id = f.event.tracking.as_ref().expect("tracking").skb;
        let x = sent_by_id(id)
            .unwrap_or_else(|| panic!("forwarded packet {id:x} never transmitted\n{d}"));
        let (fc, xc) = (f.ct().unwrap(), x.ct().unwrap());
        let (fb, xb) = (f.base().unwrap(), x.base().unwrap());
        assert_eq!(
            f.event.tracking.as_ref().unwrap().conn,
            x.event.tracking.as_ref().unwrap().conn,
            "same entry\n{d}"
        );
        assert_eq!(fc.state, xc.state, "ct state at ip_forward and xmit\n{d}");
        assert_eq!(fb.orig, xb.orig, "original tuple\n{d}");
        if fb.ct_status.contains(CtStatus::CONFIRMED) {
            // POSTROUTING has nothing left to change on a confirmed entry.
            assert_same_conn(fb, xb, &format!("confirmed entry of packet {id:x}\n{d}"));
            confirmed_pairs += 1;
        } else {
            assert_eq!(
                fc.state,
                CtState::New,
                "only a new entry is unconfirmed\n{d}"
            );
        }
    }
    assert!(
        confirmed_pairs >= 3,
        "{confirmed_pairs} confirmed pairs\n{d}"
    );

    for r in &returned {
        let id = r.event.tracking.as_ref().expect("tracking").skb;
        let dev = r.ifname().unwrap_or("").to_owned();
        let x = sent
            .get(&(id, dev.clone()))
            .unwrap_or_else(|| panic!("packet {id:x} returned for {dev} never transmitted\n{d}"));
        assert_eq!(r.ct().unwrap().state, x.ct().unwrap().state, "{d}");
        assert_same_conn(
            r.base().unwrap(),
            x.base().unwrap(),
            &format!("{KRETPROBE} and {XMIT} for packet {id:x} on {dev}\n{d}"),
        );
    }
    println!(
        "kp:ip_forward {} / {KRETPROBE} {} events matched to {XMIT} ({confirmed_pairs} confirmed)",
        forwarded.len(),
        returned.len()
    );
}
