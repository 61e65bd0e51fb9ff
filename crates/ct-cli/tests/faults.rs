//! Faults while collecting, as root against the ct-lab namespaces: signals at random
//! moments under heavy traffic, SIGKILL, a full output, a ring buffer too small for the
//! traffic, no privileges, and the namespace, its interfaces and its conntrack table
//! going away mid-run.
//!
//! Each test holds a lock (one at a time, also across test processes) and checks what
//! `ct-cli` held in the kernel by the ids in its own descriptor table (/proc/PID/fdinfo),
//! so BPF programs of other processes on the machine do not disturb the checks.
//! Without root they print why they skip; with `CT_REQUIRE_KERNEL_TESTS=1` they fail.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ct_core::PacketL4;
use ct_lab::{Lab, Node, CLIENT4, ROUTER_C4, SERVER4};
use support::*;

/// Flood pings from the client through the router to the server: heavy, and bounded
/// (count and deadline).
fn ping_flood(lab: &Lab, count: u32, deadline_s: u32) -> ct_lab::Bg {
    let (count, deadline) = (count.to_string(), deadline_s.to_string());
    let server = SERVER4.to_string();
    lab.spawn(
        Node::Client,
        &[
            "ping", "-f", "-q", "-n", "-c", &count, "-w", &deadline, &server,
        ],
    )
    .expect("ping -f")
}

/// SIGINT and SIGTERM, each at three seeded random moments from the start (while the
/// probes load, or while events pour in from a ping flood): exit 0, the file parses as
/// JSON Lines to its last byte, the summary counts its lines, and every BPF program, link
/// and map the process held is gone from the kernel afterwards.
#[test]
fn signals_at_random_moments_stop_cleanly() {
    let Some(nat) = KernelLab::with_nat("signals") else {
        return;
    };
    let netns = nat.router_netns();
    let names_before = BpfIds::ours_by_name();
    let mut report = Vec::new();
    for seed in [1u64, 2, 3] {
        let mut rng = Rng::new(seed);
        for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
            let what = format!("{name} seed {seed}");
            // Half the moments fall while the probes load (SIGINT of odd seeds, SIGTERM of
            // even ones), half while events pour in.
            let loading = (seed % 2 == 1) == (signal == libc::SIGINT);
            let delay = Duration::from_millis(if loading {
                rng.below(150)
            } else {
                400 + rng.below(2100)
            });
            let file = nat.scratch.path(&format!("{seed}-{name}.json"));
            let _flood = ping_flood(&nat.lab, 200_000, 15);
            let mut collect = collect_to(
                &file,
                &netns,
                &[
                    "-p",
                    "tp:net:net_dev_start_xmit",
                    "-p",
                    "tp:net:netif_receive_skb",
                    "-p",
                    "tp:skb:consume_skb",
                ],
            );
            collect.wait_for_signal_handlers();
            let until = Instant::now() + delay;
            while Instant::now() < until {
                collect.sample();
                std::thread::sleep(Duration::from_millis(5));
            }
            let ready = collect.stderr_has("; collecting");
            if ready {
                // Everything is attached once the readiness line is out.
                collect.sample();
            }
            collect.signal(signal);
            // Sampled until it exits, then checked in the kernel.
            let started = Instant::now();
            let (status, _, stderr, held) = collect.finish_held(Duration::from_secs(30));
            report.push(format!(
                "{what}: signal {:>4} ms after the handlers (probes {}), stopped in {:>4} ms",
                delay.as_millis(),
                if ready { "attached" } else { "loading" },
                started.elapsed().as_millis()
            ));
            let text = stderr.join("\n");
            assert_eq!(status.code(), Some(0), "{what}: stderr:\n{text}");
            assert!(!text.contains("panicked"), "{what}: {text}");
            let events = read_file(&file);
            let (n, with_ct, _) = summary(&stderr);
            assert_eq!(n, events.len() as u64, "{what}: summary vs file\n{text}");
            assert_eq!(
                with_ct,
                events.iter().filter(|e| e.ct.is_some()).count() as u64,
                "{what}"
            );
            if ready {
                held.assert_all_gone(&what);
            } else {
                held.assert_gone(&what);
            }
            report.push(format!(
                "{what}: {n} events in the file ({with_ct} with conntrack), held {} progs {} \
                 links {} maps, all gone",
                held.progs.len(),
                held.links.len(),
                held.maps.len()
            ));
            let _ = std::fs::remove_file(&file);
        }
    }
    let names_after = BpfIds::ours_by_name();
    for line in &report {
        eprintln!("measured: {line}");
    }
    eprintln!(
        "measured: programs named ct_* in the kernel before {names_before}, after {names_after} \
         (other processes may hold some)"
    );
}

/// SIGKILL gives ct-cli no chance to clean up: the kernel must, because every program,
/// link and map lives only as long as its descriptors. Afterwards a new `collect` starts
/// and stops as usual.
#[test]
fn sigkill_leaves_nothing_attached_and_a_new_collect_starts() {
    let Some(nat) = KernelLab::with_nat("sigkill") else {
        return;
    };
    let netns = nat.router_netns();
    let file = nat.scratch.path("killed.json");
    let _flood = ping_flood(&nat.lab, 100_000, 10);
    let mut collect = collect_to(&file, &netns, &[]);
    collect.wait_ready();
    std::thread::sleep(Duration::from_millis(700));
    collect.sample();
    let held = collect.held.clone();
    collect.signal(libc::SIGKILL);
    let (status, _, stderr) = collect.finish(Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed by a signal");
    assert!(
        !support::summary_exists(&stderr),
        "no summary after SIGKILL"
    );
    held.assert_all_gone("after SIGKILL");
    // What was written is whole events up to the last line end.
    let bytes = std::fs::read(&file).unwrap();
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let events = ct_core::read_events(&bytes[..complete])
        .collect::<Result<Vec<_>, _>>()
        .expect("every complete line of the killed run is an event");
    eprintln!(
        "measured: SIGKILL after 0.7 s of flood: {} complete events, {} bytes after the last \
         line end; {} progs {} links {} maps released by the kernel",
        events.len(),
        bytes.len() - complete,
        held.progs.len(),
        held.links.len(),
        held.maps.len()
    );

    let again = nat.scratch.path("again.json");
    let mut collect = collect_to(&again, &netns, &[]);
    collect.wait_ready();
    let ping = nat.lab.ping(Node::Client, SERVER4.into(), 3).expect("ping");
    assert!(ping.success(), "{}", ping.stderr);
    std::thread::sleep(Duration::from_millis(300));
    collect.signal(libc::SIGINT);
    let (status, _, stderr, held) = collect.finish_held(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    let events = read_file(&again);
    let echoes = echo_requests(&events);
    assert!(
        echoes >= 3,
        "the new run sees the pings: {echoes} echo requests"
    );
    assert_eq!(summary(&stderr).0, events.len() as u64);
    held.assert_all_gone("second run");
}

/// Output that cannot be written: `-o /dev/full` is refused before anything is attached
/// (not a regular file); events on a stdout that is /dev/full stop collection with a clear
/// error and exit 1, and the probes are detached.
#[test]
fn output_to_dev_full_is_a_clear_error() {
    let Some(nat) = KernelLab::with_nat("dev-full") else {
        return;
    };
    let netns = nat.router_netns();

    let out = ct_cli(&["collect", "-o", "/dev/full", "--force", "--netns", &netns]);
    let stderr = support::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "ct-cli: the output file /dev/full is not a regular file; give the path of a new file"
    );

    let _flood = ping_flood(&nat.lab, 50_000, 10);
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut collect = Collect::spawn(
        Command::new(CT_CLI)
            .args(["collect", "--format", "singleline", "--netns", &netns])
            .stdout(Stdio::from(full)),
    );
    collect.wait_ready();
    let (status, _, stderr) = collect.finish(Duration::from_secs(20));
    let text = stderr.join("\n");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        stderr.iter().any(|l| l
            == "ct-cli: writing to stdout failed: No space left on device (os error 28)"),
        "{text}"
    );
    let (n, _, _) = summary(&stderr);
    eprintln!("measured: stdout on /dev/full: exit 1 after {n} events, stderr:\n{text}");
}

/// How many of `events` are ICMP echo requests.
fn echo_requests(events: &[ct_core::Event]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.packet.as_ref().and_then(|p| p.l4),
                Some(PacketL4::Icmp { icmp_type: 8, .. })
            )
        })
        .count()
}

/// `ip link set <dev> <state>` on both sides of the router: the client's `c0` and the
/// router's `rs`.
fn set_links(lab: &Lab, state: &str) {
    for (node, dev) in [(Node::Router, "rs"), (Node::Client, "c0")] {
        lab.exec(node, &["ip", "link", "set", dev, state])
            .and_then(|o| o.ok())
            .unwrap_or_else(|e| panic!("link {state}: {e:?}"));
    }
}

/// `ip -s -j link` in `node`: (tx packets + tx dropped) summed over its interfaces.
fn tx_packets(lab: &Lab, node: Node) -> u64 {
    let out = lab
        .exec(node, &["ip", "-s", "-j", "link", "show"])
        .and_then(|o| o.ok())
        .expect("ip -s link");
    let links: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let tx = &l["stats64"]["tx"];
            tx["packets"].as_u64().unwrap_or(0) + tx["dropped"].as_u64().unwrap_or(0)
        })
        .sum()
}

/// A 4 KiB ring (8 events) and a burst of exactly N datagrams from a quiet namespace: the
/// events written plus the events counted lost are exactly the packets the probe saw
/// (the interfaces' transmit counters agree), a warning says so while collecting, the
/// summary gives the count, and collection goes on: pings sent after the burst are all in
/// the file.
#[test]
fn ring_overflow_is_counted_exactly_and_collection_goes_on() {
    let Some(_lock) = kernel_test_lock() else {
        return;
    };
    const BURST: u64 = 20_000;
    const PINGS: u64 = 5;
    let lab = Lab::new().expect("building the lab");
    // Nothing but what this test sends leaves the client: no IPv6 (router solicitations,
    // MLD), static neighbours (no ARP).
    lab.sysctl(
        Node::Client,
        &[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv6.conf.c0.disable_ipv6=1",
            "net.ipv6.conf.lo.disable_ipv6=1",
        ],
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let scratch = Scratch::new("ring");
    let file = scratch.path("events.json");
    let netns = netns_arg(&lab, Node::Client);
    let mut collect = collect_to(
        &file,
        &netns,
        &["-p", "tp:net:net_dev_start_xmit", "--ring-size", "4096"],
    );
    collect.wait_ready();
    let tx_before = tx_packets(&lab, Node::Client);

    let burst = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range({BURST}):\n    s.sendto(b'ct-cli ring test', ('{ROUTER_C4}', 9))\n\
         print('sent')\n"
    );
    let sent = lab
        .exec_timeout(
            Node::Client,
            &["python3", "-c", &burst],
            Duration::from_secs(60),
        )
        .and_then(|o| o.ok())
        .expect("the burst");
    assert_eq!(sent.stdout.trim(), "sent");
    // Past the status interval, so the warning is due.
    std::thread::sleep(Duration::from_millis(1200));
    let warned_live = collect.stderr_has("events lost (");
    let ping = lab
        .exec_timeout(
            Node::Client,
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                &PINGS.to_string(),
                "-i",
                "0.2",
                &ROUTER_C4.to_string(),
            ],
            Duration::from_secs(10),
        )
        .expect("ping");
    assert!(ping.success(), "{}", ping.stderr);
    std::thread::sleep(Duration::from_millis(500));
    let tx_after = tx_packets(&lab, Node::Client);
    collect.signal(libc::SIGINT);
    let (status, _, stderr) = collect.finish(Duration::from_secs(30));
    let text = stderr.join("\n");
    assert_eq!(status.code(), Some(0), "{text}");

    let events = read_file(&file);
    let (written, _, lost) = summary(&stderr);
    assert_eq!(written, events.len() as u64, "{text}");
    let seen = tx_after - tx_before;
    assert_eq!(
        seen,
        BURST + PINGS,
        "the client sent only the burst and the pings (transmit counters)"
    );
    let line = summary_line(&stderr);
    // "L lost" or, when the kernel also skipped hits, "L (R ring buffer full, K skipped ...)".
    let recursion = line
        .split(" ring buffer full, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map_or(0, |k| k.parse::<u64>().unwrap());
    assert!(
        lost > 0,
        "a 4 KiB ring must overflow under the burst: {line}"
    );
    assert!(
        written + lost - recursion <= seen && seen <= written + lost,
        "events written {written} + lost {lost} (of which {recursion} skipped hits, which may \
         come from other namespaces) must account for the {seen} packets sent:\n{text}"
    );
    if recursion == 0 {
        assert_eq!(written + lost, seen, "{text}");
    }
    assert!(
        warned_live,
        "a warning while collecting said events were lost:\n{text}"
    );
    assert!(text.contains("raise --ring-size"), "{text}");
    let echoes = echo_requests(&events) as u64;
    assert_eq!(echoes, PINGS, "collection went on after the overflow");
    let from_client = events
        .iter()
        .filter(|e| {
            e.packet
                .as_ref()
                .and_then(|p| p.ip.as_ref())
                .is_some_and(|ip| ip.src == std::net::IpAddr::from(CLIENT4))
        })
        .count() as u64;
    assert_eq!(from_client, written, "only the client's packets were seen");
    eprintln!(
        "measured: ring 4096 B, burst {BURST} + {PINGS} pings = {seen} packets at the probe \
         (tx counters): {written} events written + {lost} lost ({recursion} kernel skips)\n\
         {}",
        stderr
            .iter()
            .filter(|l| l.contains("lost"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Without CAP_BPF (an unprivileged user, and root with every capability dropped):
/// one clear sentence on stderr, exit code 3, nothing attached.
#[test]
fn without_privileges_one_sentence_and_exit_3() {
    let Some(_lock) = kernel_test_lock() else {
        return;
    };
    // A copy every user can run, wherever the build directory is.
    let scratch = Scratch::new("unpriv");
    std::fs::set_permissions(scratch.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = scratch.path("ct-cli");
    std::fs::copy(CT_CLI, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin.to_str().unwrap();
    let probe = ["collect", "-p", "tp:net:net_dev_start_xmit"];
    let mut runs: Vec<(&str, Command)> = Vec::new();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin])
        .args(probe);
    runs.push(("setpriv nobody", c));
    let mut c = Command::new("runuser");
    c.args(["-u", "nobody", "--", bin, "collect"]);
    runs.push(("runuser nobody, default probes", c));
    let mut c = Command::new("setpriv");
    c.args(["--bounding-set=-all", "--inh-caps=-all", bin])
        .args(probe);
    runs.push(("root without capabilities", c));
    let expected = "ct-cli: insufficient privileges to load BPF programs: run as root, or grant \
                    CAP_BPF and CAP_PERFMON (e.g. sudo setcap cap_bpf,cap_perfmon+ep $(which \
                    ct-cli))";
    for (what, mut cmd) in runs {
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{what}: {stderr}");
        assert_eq!(stderr.trim_end(), expected, "{what}: exactly one sentence");
        assert!(out.stdout.is_empty(), "{what}");
        eprintln!("measured: {what}: exit 3, stderr: {}", stderr.trim_end());
    }
    // `check` says the same in its report.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin,
            "check",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CAP_BPF"));
}

/// The namespace collected from is deleted, interfaces go down and the conntrack table is
/// flushed while two collections run (one with --netns on the namespace that goes, one on
/// every namespace): both go on, stop with exit 0 on SIGINT, and every line is an event.
#[test]
fn namespace_deleted_interfaces_down_and_table_flushed_mid_run() {
    let Some(nat) = KernelLab::with_nat("netns") else {
        return;
    };
    let client = netns_arg(&nat.lab, Node::Client);
    let in_client = nat.scratch.path("client.json");
    let everywhere = nat.scratch.path("all.json");
    let mut on_client = collect_to(&in_client, &client, &[]);
    let mut on_all = start_collect(&[
        "-o",
        everywhere.to_str().unwrap(),
        "-p",
        "tp:net:net_dev_start_xmit",
        "-p",
        "tp:skb:kfree_skb",
    ]);
    on_client.wait_ready();
    on_all.wait_ready();
    let flood = ping_flood(&nat.lab, 1_000_000, 20);
    std::thread::sleep(Duration::from_millis(500));

    // The router's table flushed under the flood.
    let flushed = nat
        .lab
        .exec(Node::Router, &["conntrack", "-F"])
        .expect("conntrack -F");
    assert!(flushed.success(), "{}", flushed.stderr);
    std::thread::sleep(Duration::from_millis(300));
    // Interfaces down on both sides of the router.
    set_links(&nat.lab, "down");
    std::thread::sleep(Duration::from_millis(300));
    set_links(&nat.lab, "up");
    std::thread::sleep(Duration::from_millis(300));
    // The client namespace goes, with its processes and the veth pair to the router.
    drop(flood);
    let pids = Command::new("ip")
        .args(["netns", "pids", nat.lab.name(Node::Client)])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    let deleted = Command::new("ip")
        .args(["netns", "del", nat.lab.name(Node::Client)])
        .status()
        .unwrap();
    assert!(deleted.success());
    std::thread::sleep(Duration::from_millis(500));
    // Traffic elsewhere is still seen by the collection on every namespace.
    let ping = nat.lab.ping(Node::Router, SERVER4.into(), 3).expect("ping");
    assert!(ping.success(), "{}", ping.stderr);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        on_client.child.try_wait().unwrap().is_none() && on_all.child.try_wait().unwrap().is_none(),
        "both collections still run"
    );

    let mut counts = Vec::new();
    for (what, collect, file) in [
        ("--netns on the deleted client", on_client, &in_client),
        ("every namespace", on_all, &everywhere),
    ] {
        collect.signal(libc::SIGINT);
        let (status, _, stderr, held) = collect.finish_held(Duration::from_secs(30));
        let text = stderr.join("\n");
        assert_eq!(status.code(), Some(0), "{what}: {text}");
        let events = read_file(file);
        let (n, with_ct, lost) = summary(&stderr);
        assert_eq!(n, events.len() as u64, "{what}: {text}");
        assert!(n > 0, "{what}: the flood was seen");
        held.assert_all_gone(what);
        counts.push(format!(
            "{what}: {n} events ({with_ct} with conntrack), {lost} lost"
        ));
    }
    eprintln!("measured: {}", counts.join("; "));
}
