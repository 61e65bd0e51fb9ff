//! `ct-cli collect` without `-p`, as a new user runs it, on the kernel under test: it
//! attaches the default probe set (the four tracepoints, and the forwarding and
//! local-delivery kprobes where the kernel has kprobes), and what each probe reports about
//! traffic through a masquerading router is in `conntrack -L` there.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use ct_core::{CtStatus, Event};
use ct_lab::{CtEntry, Lab, Node, ROUTER_C4, SERVER4};
use support::*;

const MASQUERADE: &str = r#"
table ip lab {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "rs" masquerade
    }
}
"#;

fn probe_name(e: &Event) -> String {
    e.probe
        .as_ref()
        .map(|p| format!("{}:{}", p.kind, p.name))
        .unwrap_or_default()
}

#[test]
fn collect_without_probes_attaches_the_default_set_and_reports_true_ct() {
    let Some(_lock) = kernel_test_lock() else {
        return;
    };
    let lab = Lab::new().expect("building the lab");
    lab.router_nft(MASQUERADE).expect("loading the ruleset");
    let scratch = Scratch::new("default-probes");
    let file = scratch.path("events.json");
    let netns = lab.netns_inode(Node::Router).to_string();
    let mut collect = collect_to(&file, &netns, &["--ct-only"]);
    let ready = collect.wait_ready();

    // The default set is what the kernel under test offers.
    let expected: Vec<String> = ct_bpf::default_probes()
        .iter()
        .map(ToString::to_string)
        .collect();
    let kprobes = ct_bpf::kprobes_supported();
    assert_eq!(
        expected.iter().any(|p| p.starts_with("kp:")),
        kprobes,
        "kprobes in the default set exactly where the kernel has them: {expected:?}"
    );
    assert_eq!(
        ready,
        format!(
            "ct-cli: attached {} probes ({}); collecting",
            expected.len(),
            expected.join(", ")
        )
    );

    lab.tcp_exchange(SERVER4.into(), 80, SERVER4.into(), 80)
        .expect("tcp through the router");
    let ping = lab
        .ping(Node::Client, ROUTER_C4.into(), 2)
        .expect("ping the router");
    assert!(ping.success(), "ping the router: {}", ping.stderr);
    let table: Vec<CtEntry> = lab.conntrack_entries(Node::Router).expect("conntrack -L");
    std::thread::sleep(Duration::from_millis(300));
    collect.signal(libc::SIGINT);
    let (status, _, stderr) = collect.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr.join("\n"));

    let events = read_file(&file);
    let mut seen = BTreeSet::new();
    for e in &events {
        let ct = e.ct.as_ref().expect("--ct-only");
        seen.insert(probe_name(e));
        let Some(conn) = &ct.base else { continue };
        // An entry not yet confirmed (the first packet, before POSTROUTING) has no NAT
        // in its reply tuple yet: its original tuple is in the table.
        let found = if conn.ct_status.contains(CtStatus::CONFIRMED) {
            table.iter().any(|t| t.matches(conn))
        } else {
            table.iter().any(|t| t.orig.matches(&conn.orig))
        };
        assert!(
            found,
            "{} reported {conn:?}, not in conntrack -L:\n{}",
            probe_name(e),
            table
                .iter()
                .map(|t| t.line.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let mut want = vec!["tp:net:net_dev_start_xmit"];
    if kprobes {
        // Forwarded client packets, and the ping to the router itself.
        want.extend(["kp:ip_forward", "kp:ip_local_deliver"]);
    }
    for probe in want {
        assert!(
            seen.contains(probe),
            "no conntrack event from {probe}; seen {seen:?}"
        );
    }
    println!("{} events with ct from {seen:?}", events.len());
}
