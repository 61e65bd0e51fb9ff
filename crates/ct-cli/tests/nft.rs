//! `collect --nft` on the real kernel: each drop case of the lab reported with the rule
//! that decided, held against `nft monitor trace` (which reads the same netlink group
//! independently) and the rule's own counter, next to the drop reason the kernel gives;
//! and the trace table gone after SIGINT, SIGTERM, SIGHUP and SIGQUIT, and after SIGKILL
//! at once where the kernel has owner tables (5.12+), by the next run elsewhere.
//!
//! Not root / no BTF / no tools: each test prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ct_core::{Event, NftFamily, NftTraceKind, NftVerdict};
use ct_lab::{ExpectedReason, Lab, Node, CLIENT4, NFT_DROP_ECHO, SERVER4};
use support::{kernel_tests_can_run, read_file, start_collect, Collect, NftMonitor, Scratch};

const KFREE: &str = "skb:kfree_skb";
const STOP: Duration = Duration::from_secs(20);

/// `nft monitor trace` in a lab namespace: the independent witness.
struct Monitor(NftMonitor);

impl Monitor {
    fn start(lab: &Lab, node: Node) -> Monitor {
        Monitor(NftMonitor::start(lab.name(node), false))
    }

    /// Its lines about a rule of `table chain` with `verdict`: one per packet (trace ids
    /// repeat when the kernel reuses a buffer, so they are not counted). Waits until it
    /// has printed `expected` of them (it looks each rule up, which takes a while on an
    /// emulated machine) or 20 s passed; then stops it. Also returns all it printed.
    fn finish(
        self,
        table: &str,
        chain: &str,
        verdict: &str,
        expected: u64,
    ) -> (Vec<String>, String) {
        let wanted = format!(" {table} {chain} rule ");
        let end = format!("(verdict {verdict})");
        let matching = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.contains(&wanted) && l.ends_with(&end))
                .cloned()
                .collect()
        };
        let lines = self
            .0
            .finish(|lines| matching(lines).len() as u64 >= expected);
        (matching(&lines), lines.join("\n"))
    }
}

/// `ct-cli collect --nft` in `node`'s namespace, writing JSON to a file.
struct NftCollect {
    collect: Collect,
    out: std::path::PathBuf,
    _dir: Scratch,
}

impl NftCollect {
    fn start(lab: &Lab, node: Node, filter: &str, extra: &[&str]) -> NftCollect {
        // Tests run in parallel, each with its own lab: and its own directory.
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let dir = Scratch::new(&format!("nft-{}", RUNS.fetch_add(1, Ordering::Relaxed)));
        let out = dir.path("events.json");
        let mut args = vec!["--netns", lab.name(node), "--nft", "-f", filter];
        args.extend_from_slice(extra);
        args.extend(["-o", out.to_str().unwrap()]);
        let mut collect = start_collect(&args);
        collect.wait_ready();
        NftCollect {
            collect,
            out,
            _dir: dir,
        }
    }

    /// Stops it with `signal`; every event written, and its stderr.
    fn stop(self, signal: i32) -> (Vec<Event>, String) {
        self.collect.wait_for_signal_handlers();
        self.collect.signal(signal);
        let (status, _, stderr) = self.collect.finish(STOP);
        let stderr = stderr.join("\n");
        assert!(status.success(), "{status}: {stderr}");
        (read_file(&self.out), stderr)
    }
}

/// A fresh lab when kernel tests can run here ([`kernel_tests_can_run`] says why not).
fn nft_lab() -> Option<Lab> {
    kernel_tests_can_run().then(|| Lab::new().unwrap())
}

/// Asserts that the router has no trace table of ct-cli's left after a stop by `signal`.
fn assert_trace_table_removed(lab: &Lab, signal: &str) {
    assert!(
        trace_tables(lab, Node::Router).is_empty(),
        "{signal} left the trace table"
    );
}

fn trace_tables(lab: &Lab, node: Node) -> Vec<String> {
    lab.inet_tables(node)
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with(ct_nft::TABLE_PREFIX))
        .collect()
}

/// The handle and the counter of the one rule of `family table chain` containing `needle`.
fn rule(lab: &Lab, node: Node, family: &str, table: &str, chain: &str, needle: &str) -> (u64, u64) {
    let out = lab
        .exec(node, &["nft", "-a", "list", "chain", family, table, chain])
        .unwrap()
        .ok()
        .unwrap();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(needle) && l.contains("# handle "))
        .unwrap_or_else(|| panic!("no rule with {needle:?} in\n{}", out.stdout));
    let handle = line
        .rsplit("# handle ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let counter = line
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {line}"));
    (handle, counter)
}

fn dump(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| format!("  {}\n", serde_json::to_string(e).unwrap()))
        .collect()
}

/// What one drop case checks.
struct Case<'a> {
    node: Node,
    family: NftFamily,
    table: &'a str,
    chain: &'a str,
    /// Text in the deciding rule.
    needle: &'a str,
    verdict: NftVerdict,
    /// The drop reason the packets die with.
    reason: &'a str,
    packets: u64,
    /// Whether the packet has a conntrack entry at the drop, where the case decides it.
    tracked: Option<bool>,
}

impl Case<'static> {
    /// `packets` dropped by the rule containing `needle` in the router's `lab forward`
    /// chain (the rulesets ct-lab loads there).
    fn router_drop(
        family: NftFamily,
        needle: &'static str,
        packets: u64,
        tracked: Option<bool>,
    ) -> Self {
        Case {
            node: Node::Router,
            family,
            table: "lab",
            chain: "forward",
            needle,
            verdict: NftVerdict::Drop,
            reason: "NETFILTER_DROP",
            packets,
            tracked,
        }
    }

    /// `packets` echo requests dropped by the rule of [`NFT_DROP_ECHO`].
    fn echo_drop(packets: u64) -> Self {
        Case::router_drop(NftFamily::Ip, "icmp type echo-request", packets, None)
    }
}

/// Checks the events of one drop case against the monitor and the rule counter.
fn check(
    lab: &Lab,
    case: &Case,
    events: &[Event],
    stderr: &str,
    monitor: (Vec<String>, String),
    dst: IpAddr,
) {
    let d = format!("{}\ncollect's stderr:\n{stderr}", dump(events));
    let family: &str = case.family.into();
    let (handle, counted) = rule(lab, case.node, family, case.table, case.chain, case.needle);
    assert_eq!(counted, case.packets, "the rule counted\n{d}");

    let steps: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.nft.as_ref().is_some_and(|n| {
                &*n.table == case.table && &*n.chain == case.chain && n.verdict == case.verdict
            })
        })
        .collect();
    for e in &steps {
        let n = e.nft.as_ref().unwrap();
        assert_eq!(
            (n.family, n.kind, n.handle),
            (case.family, NftTraceKind::Rule, Some(handle)),
            "{d}"
        );
        let text = n
            .rule
            .as_deref()
            .unwrap_or_else(|| panic!("no rule text\n{d}"));
        assert!(text.contains(case.needle), "{text}\n{d}");
        assert_eq!(
            e.packet.as_ref().and_then(|p| p.ip).map(|ip| ip.dst),
            Some(dst),
            "{d}"
        );
        assert!(e.probe.is_none() && e.ct.is_none(), "{d}");
    }
    // One step per packet, as many as the rule counted and as the monitor saw.
    let (monitor_lines, monitor_text) = monitor;
    assert_eq!(
        steps.len() as u64,
        counted,
        "steps\n{d}\nmonitor:\n{monitor_text}"
    );
    assert_eq!(
        monitor_lines.len() as u64,
        counted,
        "monitor:\n{monitor_text}"
    );

    // Each joined to its packet, whose kfree_skb event gives the kernel's reason.
    let expected = ExpectedReason::of(case.reason);
    let drops: BTreeMap<u64, &Event> = events
        .iter()
        .filter(|e| e.probe.as_ref().is_some_and(|p| &*p.name == KFREE))
        .filter_map(|e| Some((e.tracking?.skb, e)))
        .collect();
    for e in &steps {
        let skb = e
            .tracking
            .unwrap_or_else(|| panic!("step not joined\n{d}"))
            .skb;
        let drop = drops
            .get(&skb)
            .unwrap_or_else(|| panic!("no {KFREE} event for packet {skb}\n{d}"));
        let reason = drop.drop.as_ref().and_then(|r| r.reason.as_deref());
        expected.check(reason, &d);
        if let Some(tracked) = case.tracked {
            assert_eq!(drop.ct.is_some(), tracked, "{d}");
        }
        // The step carries the connection of its packet, if it had one.
        assert_eq!(e.tracking.unwrap().conn, drop.tracking.unwrap().conn, "{d}");
    }
    println!(
        "{family} {} {} handle {handle}: {} steps, monitor {} packets, counter {counted}, \
         drop reason {expected}",
        case.table,
        case.chain,
        steps.len(),
        monitor_lines.len(),
    );
}

/// Runs `traffic` under `nft monitor trace` in `case.node`, stops `collect` with
/// `signal` and checks what it wrote against the monitor and the rule counter ([`check`]);
/// returns the events and collect's stderr.
fn trace_case(
    lab: &Lab,
    case: &Case,
    collect: NftCollect,
    signal: i32,
    traffic: impl FnOnce(),
) -> (Vec<Event>, String) {
    let monitor = Monitor::start(lab, case.node);
    traffic();
    let family: &str = case.family.into();
    let table = format!("{family} {}", case.table);
    let monitor = monitor.finish(&table, case.chain, case.verdict.into(), case.packets);
    let (events, stderr) = collect.stop(signal);
    check(lab, case, &events, &stderr, monitor, SERVER4.into());
    (events, stderr)
}

#[test]
fn nft_rule_drop_names_the_rule() {
    let Some(lab) = nft_lab() else {
        return;
    };
    lab.router_nft(NFT_DROP_ECHO).unwrap();
    let collect = NftCollect::start(&lab, Node::Router, "icmp", &["--allow-system-changes"]);
    assert_eq!(trace_tables(&lab, Node::Router).len(), 1);
    let (_, stderr) = trace_case(&lab, &Case::echo_drop(3), collect, libc::SIGINT, || {
        lab.ping(Node::Client, SERVER4.into(), 3).unwrap();
    });
    assert!(
        stderr.contains("installed nftables table inet ct_trace_"),
        "{stderr}"
    );
    assert_trace_table_removed(&lab, "SIGINT");
}

#[test]
fn ct_state_invalid_drop_names_the_rule() {
    let Some(lab) = nft_lab() else {
        return;
    };
    lab.router_drops_invalid().unwrap();
    // The rule of ct-lab's NFT_DROP_INVALID; the dropped ACKs have no conntrack entry.
    let case = Case::router_drop(NftFamily::Inet, "ct state invalid", 3, Some(false));
    let collect = NftCollect::start(
        &lab,
        Node::Router,
        "tcp port 80",
        &["--allow-system-changes"],
    );
    trace_case(&lab, &case, collect, libc::SIGTERM, || {
        lab.bare_acks(Node::Client, SERVER4.into(), 80, 3).unwrap();
    });
    assert_trace_table_removed(&lab, "SIGTERM");
}

/// No rule drops here: the server's input chain accepts the datagrams, and the kernel
/// drops them after, for lack of a socket. The accepting rule is reported.
#[test]
fn no_socket_drop_after_an_accepting_rule() {
    let Some(lab) = nft_lab() else {
        return;
    };
    lab.nft(
        Node::Server,
        r#"
table inet srv {
    chain input {
        type filter hook input priority filter; policy drop;
        udp dport 9999 counter accept
    }
}
"#,
    )
    .unwrap();
    let case = Case {
        node: Node::Server,
        family: NftFamily::Inet,
        table: "srv",
        chain: "input",
        needle: "udp dport 9999",
        verdict: NftVerdict::Accept,
        reason: "NO_SOCKET",
        packets: 3,
        tracked: None,
    };
    let collect = NftCollect::start(
        &lab,
        Node::Server,
        "udp port 9999",
        &["--allow-system-changes"],
    );
    let (events, _) = trace_case(&lab, &case, collect, libc::SIGINT, || {
        lab.udp_client(
            Node::Client,
            SERVER4.into(),
            9999,
            3,
            Duration::from_millis(500),
        )
        .unwrap();
    });
    // The source, to be sure the steps are the client's datagrams.
    assert!(events.iter().filter(|e| e.nft.is_some()).all(|e| e
        .packet
        .as_ref()
        .and_then(|p| p.ip)
        .map(|ip| ip.src)
        == Some(CLIENT4.into())));
}

/// Whether the running kernel has owner tables (5.12+), asked of it with `nft` directly:
/// such a table is created, and goes when that `nft` exits.
fn kernel_has_owner_tables(lab: &Lab) -> bool {
    lab.router_nft("table inet ct_owner_probe { flags owner; }")
        .is_ok()
}

/// SIGHUP (a dropped ssh connection) and SIGQUIT stop collect like SIGINT: exit 0, the
/// events written, the trace table removed.
#[test]
fn sighup_and_sigquit_stop_and_remove_the_table() {
    let Some(lab) = nft_lab() else {
        return;
    };
    for (signal, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")] {
        let collect = NftCollect::start(&lab, Node::Router, "icmp", &["--allow-system-changes"]);
        assert_eq!(trace_tables(&lab, Node::Router).len(), 1);
        lab.ping(Node::Client, SERVER4.into(), 2).unwrap();
        // Exit status 0 asserted: stopped by the handler, not by the signal.
        let (events, stderr) = collect.stop(signal);
        assert!(!events.is_empty(), "{name}: no events written\n{stderr}");
        assert_trace_table_removed(&lab, name);
    }
}

/// A killed run (nothing can run at SIGKILL): where the kernel has owner tables, its table
/// goes with it at once; elsewhere it is left, and the next run removes it.
#[test]
fn a_table_left_by_a_killed_run_is_removed() {
    let Some(lab) = nft_lab() else {
        return;
    };
    let owner_tables = kernel_has_owner_tables(&lab);
    let killed = NftCollect::start(&lab, Node::Router, "icmp", &["--allow-system-changes"]);
    let left = trace_tables(&lab, Node::Router);
    assert_eq!(left.len(), 1, "{left:?}");
    killed.collect.signal(libc::SIGKILL);
    let (status, _, _) = killed.collect.finish(STOP);
    assert!(!status.success());
    if owner_tables {
        // The owner `nft -i` gets SIGKILL with ct-cli; its socket closing removes the table.
        let deadline = Instant::now() + ct_lab::scaled(Duration::from_secs(3));
        while !trace_tables(&lab, Node::Router).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            trace_tables(&lab, Node::Router).is_empty(),
            "the killed run's owner table outlived it"
        );
        return;
    }
    assert_eq!(
        trace_tables(&lab, Node::Router),
        left,
        "the killed run's table is there"
    );

    let next = NftCollect::start(&lab, Node::Router, "icmp", &["--allow-system-changes"]);
    let now = trace_tables(&lab, Node::Router);
    assert_eq!(now.len(), 1);
    assert_ne!(now, left, "the next run's own table only");
    let (_, stderr) = next.stop(libc::SIGINT);
    assert!(
        stderr.contains(&format!("removed trace table inet {}", left[0])),
        "{stderr}"
    );
    assert!(trace_tables(&lab, Node::Router).is_empty());
}

/// Without --allow-system-changes nothing is installed: the user's own nftrace rule
/// decides what is traced, and ct-cli says so.
#[test]
fn without_system_changes_the_rulesets_own_marks_are_used() {
    let Some(lab) = nft_lab() else {
        return;
    };
    lab.router_nft(
        r#"
table ip lab {
    chain pre {
        type filter hook prerouting priority raw; policy accept;
        icmp type echo-request meta nftrace set 1
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip daddr 10.0.2.2 icmp type echo-request counter drop
    }
}
"#,
    )
    .unwrap();
    let collect = NftCollect::start(&lab, Node::Router, "icmp", &[]);
    assert!(
        trace_tables(&lab, Node::Router).is_empty(),
        "a table was installed"
    );
    let (_, stderr) = trace_case(&lab, &Case::echo_drop(2), collect, libc::SIGINT, || {
        lab.ping(Node::Client, SERVER4.into(), 2).unwrap();
    });
    assert!(
        stderr.contains("without --allow-system-changes"),
        "{stderr}"
    );
}
