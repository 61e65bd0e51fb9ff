//! `collect --nft` without `--netns` on the real kernel: every network namespace is
//! traced, those there at start and one created while collecting, each step with its
//! namespace, held against `nft monitor trace` run in each namespace; and no trace table
//! is left in any namespace after SIGINT, SIGTERM, or SIGKILL (+ the next run).
//!
//! These runs trace every namespace of the machine: their filter names only this lab's
//! addresses, so that other namespaces' packets are not marked; the cases run one at a
//! time (the kernel test lock).
//!
//! Not root / no BTF / no tools: each test prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ct_core::{Event, NftTraceKind};
use ct_lab::{Lab, Node, SERVER4};
use support::{kernel_test_lock, read_file, start_collect, Collect, NftMonitor, Scratch};

const STOP: Duration = Duration::from_secs(30);
/// Marks the lab's ping only (both directions carry the client's address).
const FILTER: &str = "icmp and host 10.0.1.2";

/// `nft monitor trace` in the namespace named `netns`: the independent witness.
struct Monitor(NftMonitor);

impl Monitor {
    fn start(netns: &str) -> Monitor {
        Monitor(NftMonitor::start(netns, false))
    }

    /// Its verdict lines (`... (verdict V)`) of tables other than ct-cli's, as
    /// (chain, verdict), once it printed `expected` of them (or 20 s passed).
    fn finish(self, expected: usize) -> Vec<(String, String)> {
        let verdicts = |lines: &[String]| -> Vec<(String, String)> {
            lines
                .iter()
                .filter(|l| !l.contains(ct_nft::TABLE_PREFIX))
                .filter_map(|l| {
                    let verdict = l.rsplit_once("(verdict ")?.1.strip_suffix(')')?;
                    // `trace id ID FAMILY TABLE CHAIN rule ...`
                    let chain = l.split_whitespace().nth(5)?;
                    Some((chain.to_owned(), verdict.to_owned()))
                })
                .filter(|(_, verdict)| verdict != "continue")
                .collect()
        };
        let lines = self.0.finish(|lines| verdicts(lines).len() >= expected);
        verdicts(&lines)
    }
}

/// The trace tables in the namespace named `netns`.
fn trace_tables(netns: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "list", "tables"])
        .output()
        .expect("nft list tables");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|t| t.starts_with(ct_nft::TABLE_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// `collect --nft` without `--netns`, writing JSON to a file.
fn start(dir: &Scratch, extra: &[&str]) -> Collect {
    let out = dir.path("events.json");
    let mut args = vec!["--nft", "-f", FILTER, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut collect = start_collect(&args);
    collect.wait_ready();
    collect.wait_for_signal_handlers();
    collect
}

fn stop(collect: Collect, signal: i32) -> String {
    collect.signal(signal);
    let (status, _, stderr) = collect.finish(STOP);
    let stderr = stderr.join("\n");
    assert!(status.success(), "{status}: {stderr}");
    stderr
}

/// The nft steps of `events` in namespace `netns`, as (chain, verdict).
fn steps_in(events: &[Event], netns: u32) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.netns == Some(netns))
        .filter_map(|e| e.nft.as_ref())
        .filter(|n| n.kind == NftTraceKind::Rule)
        .map(|n| {
            let verdict: &str = n.verdict.into();
            (n.chain.to_string(), verdict.to_owned())
        })
        .collect()
}

/// The echo request is accepted by the server's ruleset, the reply by the client's.
fn load_rulesets(lab: &Lab) {
    for (node, icmp_type) in [(Node::Server, "echo-request"), (Node::Client, "echo-reply")] {
        lab.nft(
            node,
            &format!(
                "table inet t {{\n\
                   chain input {{\n\
                     type filter hook input priority 0; policy accept;\n\
                     icmp type {icmp_type} counter accept\n\
                   }}\n\
                 }}\n"
            ),
        )
        .unwrap();
    }
}

/// One ping, its request judged in the server's namespace and its reply in the client's:
/// both steps reported, each with its namespace, as `nft monitor trace` in each shows.
#[test]
fn every_namespace_is_traced_and_each_step_carries_its_netns() {
    let Some(_lock) = kernel_test_lock() else {
        return;
    };
    let lab = Lab::new().unwrap();
    load_rulesets(&lab);
    let dir = Scratch::new("nft-netns-every");
    let collect = start(&dir, &["--allow-system-changes"]);
    // A table where there is a ruleset, none where there is none.
    assert_eq!(trace_tables(lab.name(Node::Client)).len(), 1);
    assert_eq!(trace_tables(lab.name(Node::Server)).len(), 1);
    assert!(trace_tables(lab.name(Node::Router)).is_empty());
    let monitors: Vec<(Node, Monitor)> = [Node::Client, Node::Server]
        .map(|node| (node, Monitor::start(lab.name(node))))
        .into();
    lab.ping(Node::Client, SERVER4.into(), 1).unwrap();
    std::thread::sleep(ct_lab::scaled(Duration::from_millis(500)));
    let stderr = stop(collect, libc::SIGINT);
    let events = read_file(&dir.path("events.json"));
    let mut seen = Vec::new();
    for (node, monitor) in monitors {
        let witnessed = monitor.finish(1);
        let steps = steps_in(&events, lab.netns_inode(node));
        assert_eq!(
            steps, witnessed,
            "{node:?}: ct-cli's steps, then nft monitor trace's\n{stderr}"
        );
        seen.push(steps);
    }
    let accept = |chain: &str| vec![(chain.to_owned(), "accept".to_owned())];
    assert_eq!(seen[0], accept("input"), "the reply, in the client");
    assert_eq!(seen[1], accept("input"), "the request, in the server");
    for node in Node::ALL {
        assert!(
            trace_tables(lab.name(node)).is_empty(),
            "{node:?}: table left"
        );
    }
}

/// A namespace made after collect started (a container started mid-run) is traced: its
/// ruleset gets a trace table, its steps carry its inode; it leaves quietly.
#[test]
fn a_namespace_created_while_collecting_is_traced() {
    let Some(_lock) = kernel_test_lock() else {
        return;
    };
    let lab = Lab::new().unwrap();
    let late = Late::new(&format!("{}-late", lab.name(Node::Client)));
    let dir = Scratch::new("nft-netns-late");
    let collect = start(&dir, &["--allow-system-changes"]);
    late.create();
    // The client's address on its loopback: the filter's, so that the ping is marked.
    late.exec(&["ip", "addr", "add", "10.0.1.2/32", "dev", "lo"]);
    late.exec(&["ip", "link", "set", "lo", "up"]);
    late.exec(&[
        "nft",
        "add table inet t; add chain inet t output { type filter hook output priority 0; } ; \
         add rule inet t output icmp type echo-request counter accept",
    ]);
    let deadline = Instant::now() + ct_lab::scaled(Duration::from_secs(10));
    while trace_tables(&late.name).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no trace table in the new namespace\n{}",
            collect.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let monitor = Monitor::start(&late.name);
    late.exec(&["ping", "-c", "1", "-W", "2", "10.0.1.2"]);
    let witnessed = monitor.finish(1);
    let inode = late.inode();
    // Gone before collect stops: its reader ends quietly.
    late.delete();
    std::thread::sleep(ct_lab::scaled(Duration::from_secs(1)));
    let stderr = stop(collect, libc::SIGINT);
    assert!(
        stderr.contains(&format!("network namespace {inode}")),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot"), "{stderr}");
    let events = read_file(&dir.path("events.json"));
    let steps = steps_in(&events, inode);
    assert_eq!(steps, witnessed, "{stderr}");
    assert_eq!(steps, [("output".to_owned(), "accept".to_owned())]);
    // The lab itself was never touched: no ruleset there.
    assert!(trace_tables(lab.name(Node::Router)).is_empty());
}

/// No trace table is left in any namespace after SIGINT, SIGTERM, or SIGKILL (at once
/// where the kernel has owner tables, else by the next run).
#[test]
fn no_trace_table_is_left_in_any_namespace() {
    let Some(_lock) = kernel_test_lock() else {
        return;
    };
    let lab = Lab::new().unwrap();
    load_rulesets(&lab);
    let names = [Node::Client, Node::Server].map(|node| lab.name(node).to_owned());
    let tables = || names.iter().map(|n| trace_tables(n)).collect::<Vec<_>>();
    let mut signals = vec![(libc::SIGINT, "SIGINT")];
    if !ct_lab::quick_kernel_tests() {
        signals.push((libc::SIGTERM, "SIGTERM"));
    }
    for (signal, name) in signals {
        let dir = Scratch::new("nft-netns-signal");
        let collect = start(&dir, &["--allow-system-changes"]);
        assert!(tables().iter().all(|t| t.len() == 1), "{:?}", tables());
        lab.ping(Node::Client, SERVER4.into(), 1).unwrap();
        stop(collect, signal);
        assert!(tables().iter().all(Vec::is_empty), "{name}: {:?}", tables());
    }
    if ct_lab::quick_kernel_tests() {
        return;
    }
    let dir = Scratch::new("nft-netns-kill");
    let killed = start(&dir, &["--allow-system-changes"]);
    let left = tables();
    assert!(left.iter().all(|t| t.len() == 1), "{left:?}");
    killed.signal(libc::SIGKILL);
    let (status, _, _) = killed.finish(STOP);
    assert!(!status.success());
    // Owner tables go with their `nft -i` at once; plain ones stay for the next run.
    std::thread::sleep(ct_lab::scaled(Duration::from_secs(1)));
    let after_kill = tables();
    if after_kill.iter().all(Vec::is_empty) {
        return;
    }
    assert_eq!(after_kill, left, "a plain table is left as it was");
    let next = start(&dir, &["--allow-system-changes"]);
    let stderr = stop(next, libc::SIGINT);
    for table in left.iter().flatten() {
        assert!(
            stderr.contains(&format!("removed trace table inet {table}")),
            "{stderr}"
        );
    }
    assert!(tables().iter().all(Vec::is_empty), "{:?}", tables());
}

/// A namespace the test makes itself (`ip netns add`), deleted when dropped.
struct Late {
    name: String,
}

impl Late {
    fn new(name: &str) -> Late {
        Late {
            name: name.to_owned(),
        }
    }

    fn create(&self) {
        let ok = Command::new("ip")
            .args(["netns", "add", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {}", self.name);
    }

    fn exec(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn inode(&self) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/var/run/netns/{}", self.name))
            .unwrap()
            .ino() as u32
    }

    fn delete(&self) {
        // Quietly: dropping after `delete` finds it gone.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Late {
    fn drop(&mut self) {
        self.delete();
    }
}
