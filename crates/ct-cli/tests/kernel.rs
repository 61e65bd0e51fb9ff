//! `ct-cli collect` against real traffic in the ct-lab topology: the client pings the
//! server through the router, and `collect` watches the client's namespace.
//!
//! Needs root, kernel BTF, conntrack and the lab's tools. Where something is missing the
//! tests print why and skip; with `CT_REQUIRE_KERNEL_TESTS=1` a skip is a failure (the
//! gate is ct-lab's `run_or_skip`).
//!
//! Every address used lives only inside the lab's namespaces, which are removed when a
//! test ends, pass or fail.

mod support;

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ct_core::{CtProto, Event};
use ct_lab::{Bg, Lab, Node, CLIENT4, SERVER4};
use support::*;

/// Conntrack on the client's own IPv4 packets: new ones out, established ones back in.
const TRACK_CLIENT: &str = "table ip t {
    chain out { type filter hook output priority 0; ct state new accept; }
    chain in { type filter hook input priority 0; ct state established accept; }
}
";

/// The lab, with IPv6 off in the client (no neighbour discovery among the events
/// counted) and, with `track`, [`TRACK_CLIENT`] loaded there, and the test's scratch
/// folder; `None` when kernel tests cannot run here (the gate said why).
fn client_lab(track: bool, scratch_name: &str) -> Option<(Lab, Scratch)> {
    if !ct_lab::kernel_available() {
        return None;
    }
    let lab = Lab::new().expect("building the lab");
    lab.sysctl(
        Node::Client,
        &[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )
    .expect("IPv6 off in the client");
    if track {
        lab.nft(Node::Client, TRACK_CLIENT)
            .expect("conntrack in the client");
    }
    Some((lab, Scratch::new(scratch_name)))
}

/// `count` echo requests from the client to the server, `interval` seconds apart, in the
/// background (stopped when the handle drops).
fn ping_in_background(lab: &Lab, count: u32, interval: &str) -> Bg {
    let count = count.to_string();
    let server = SERVER4.to_string();
    lab.spawn(
        Node::Client,
        &[
            "ping", "-n", "-q", "-c", &count, "-i", interval, "-W", "1", &server,
        ],
    )
    .expect("ping starts")
}

/// `collect -o <file> --netns <netns> -p tp:net:net_dev_start_xmit <more>`: one probe,
/// which sees each of the client's packets once.
fn collect_xmit(file: &Path, netns: &str, more: &[&str]) -> Collect {
    let mut args = vec!["-p", "tp:net:net_dev_start_xmit"];
    args.extend_from_slice(more);
    collect_to(file, netns, &args)
}

/// Whether `event` carries an ICMP conntrack entry for an echo from `a` to `b`.
fn is_icmp_ct(event: &Event, a: IpAddr, b: IpAddr) -> bool {
    let Some(base) = event.ct.as_ref().and_then(|ct| ct.base.as_ref()) else {
        return false;
    };
    matches!(base.orig.proto, CtProto::Icmp { icmp_type: 8, .. })
        && matches!(base.reply.proto, CtProto::Icmp { icmp_type: 0, .. })
        && base.orig.ip.src == a
        && base.orig.ip.dst == b
        && base.reply.ip.src == b
        && base.reply.ip.dst == a
}

/// An 8 KiB tmpfs mounted in the scratch folder: a disk that fills at once. Unmounted
/// when dropped.
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn mount(scratch: &Scratch) -> Self {
        let mount = scratch.path("tiny");
        std::fs::create_dir(&mount).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=8k,mode=0700",
                "ctcli-test",
                mount.to_str().unwrap(),
            ])
            .status()
            .expect("mount runs");
        assert!(mounted.success(), "mounting a tiny tmpfs failed");
        TinyDisk(mount)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

// ---------------------------------------------------------------------------------------
// Tests

/// The scenario: collect to a file, ping, Ctrl-C; the file is complete and the
/// summary agrees with it.
#[test]
fn sigint_leaves_a_complete_file_and_a_true_summary() {
    let Some((lab, scratch)) = client_lab(true, "sigint") else {
        return;
    };
    let file = scratch.path("events.json");
    let mut collect = collect_xmit(&file, &netns_arg(&lab, Node::Client), &[]);
    let ready = collect.wait_ready();
    assert_eq!(
        ready,
        "ct-cli: attached 1 probe (tp:net:net_dev_start_xmit); collecting"
    );

    let started = Instant::now();
    let ping = lab
        .ping(Node::Client, SERVER4.into(), 5)
        .expect("ping runs");
    assert!(ping.success(), "ping from the client to the server failed");
    std::thread::sleep(Duration::from_millis(200));
    collect.signal(libc::SIGINT);
    let (status, stdout, stderr) = collect.finish(Duration::from_secs(20));
    let elapsed = started.elapsed();

    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr.join("\n"));
    assert!(
        stdout.is_empty(),
        "with -o and no --print stdout stays empty"
    );
    assert_eq!(stderr[0], ready, "the readiness line comes first");
    let events = read_file(&file);
    let (n, with_ct, lost) = summary(&stderr);
    assert_eq!(n, events.len() as u64, "summary counts the file's lines");
    assert_eq!(
        with_ct,
        events.iter().filter(|e| e.ct.is_some()).count() as u64
    );
    assert_eq!(lost, 0);
    assert!(
        events.len() >= 5,
        "5 echo requests left a: {} events",
        events.len()
    );
    let matching = events
        .iter()
        .filter(|e| is_icmp_ct(e, CLIENT4.into(), SERVER4.into()))
        .count();
    assert!(
        matching >= 5,
        "every echo request carries its ICMP conntrack entry ({matching} of {})",
        events.len()
    );
    let inode = lab.netns_inode(Node::Client);
    assert!(
        events.iter().all(|e| e.netns == Some(inode)),
        "--netns keeps other namespaces out"
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    eprintln!(
        "measured: {} events ({matching} ICMP with ct) in {:.2} s of ping, {:.0} events/s",
        events.len(),
        elapsed.as_secs_f64(),
        events.len() as f64 / elapsed.as_secs_f64()
    );
}

/// `-n` stops by itself after exactly N events; `--print` shows the same events on stdout;
/// `--ct-only` keeps packets without conntrack out; SIGTERM is not needed.
#[test]
fn count_stops_after_n_events_and_prints_them() {
    let Some((lab, scratch)) = client_lab(true, "count") else {
        return;
    };
    let file = scratch.path("events.json");
    let netns = lab.netns_inode(Node::Client).to_string();
    let mut collect = collect_xmit(
        &file,
        &netns,
        &["--print", "--format", "singleline", "--ct-only", "-n", "3"],
    );
    collect.wait_ready();
    let ping = ping_in_background(&lab, 20, "0.1");
    let (status, stdout, stderr) = collect.finish(Duration::from_secs(30));
    drop(ping);

    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr.join("\n"));
    let events = read_file(&file);
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.ct.is_some()), "--ct-only");
    assert!(
        events
            .iter()
            .all(|e| is_icmp_ct(e, CLIENT4.into(), SERVER4.into())),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 3, "stdout:\n{stdout}");
    assert!(stdout.lines().all(|l| l.contains("ct_state ")), "{stdout}");
    assert_eq!(summary(&stderr), (3, 3, 0));
}

/// SIGTERM stops as cleanly as Ctrl-C, also when no event came at all.
#[test]
fn sigterm_with_no_events_exits_zero() {
    let Some((lab, scratch)) = client_lab(false, "sigterm") else {
        return;
    };
    let file = scratch.path("events.json");
    let mut collect = collect_xmit(&file, &netns_arg(&lab, Node::Client), &["--ct-only"]);
    collect.wait_ready();
    collect.signal(libc::SIGTERM);
    let (status, _, stderr) = collect.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr.join("\n"));
    assert_eq!(read_file(&file).len(), 0);
    assert_eq!(summary(&stderr), (0, 0, 0));
}

/// A full disk stops collection with exit code 1 and a clear message; the file keeps the
/// events that fit, each complete.
#[test]
fn disk_full_keeps_complete_events() {
    let Some((lab, scratch)) = client_lab(true, "full") else {
        return;
    };
    let disk = TinyDisk::mount(&scratch);
    let file = disk.0.join("events.json");
    let mut collect = collect_xmit(&file, &netns_arg(&lab, Node::Client), &[]);
    collect.wait_ready();
    let ping = ping_in_background(&lab, 200, "0.01");
    let (status, _, stderr) = collect.finish(Duration::from_secs(30));
    drop(ping);

    let text = stderr.join("\n");
    assert_eq!(status.code(), Some(1), "stderr:\n{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("collection stopped"), "{text}");
    let events = read_file(&file);
    assert!(!events.is_empty(), "what fit is kept");
    let (n, _, _) = summary(&stderr);
    assert_eq!(n, events.len() as u64, "{text}");
}

/// `ct-cli check` as a user runs it: one line per kind of probe, each from loading the
/// program here; the kprobe lines follow the kernel's kprobe PMU; the exit code and the
/// last line agree with the FAIL lines. Needs root only: what it expects comes from the
/// kernel (/proc, /sys), not from `check`.
#[test]
fn check_command_reports_what_loads() {
    if !ct_lab::bpf_loadable() {
        return;
    }
    let out = Command::new(CT_CLI)
        .arg("check")
        .output()
        .expect("ct-cli starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    let verdict = |name: &str| {
        stdout
            .lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                let mark = words.next()?;
                (words.next()? == name).then(|| mark.to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} line:\n{stdout}"))
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        stdout.lines().next().is_some_and(|l| l.starts_with("ok")
            && l.contains("kernel")
            && l.contains(release.trim())),
        "{stdout}"
    );
    assert_eq!(verdict("tp_btf"), "ok", "{stdout}");
    assert_eq!(verdict("raw_tp"), "ok", "{stdout}");
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    for name in ["kprobe", "kretprobe"] {
        assert_eq!(
            verdict(name),
            if kprobes { "ok" } else { "degraded" },
            "{stdout}"
        );
    }
    let failed = stdout.lines().any(|l| l.starts_with("FAIL"));
    assert_eq!(
        out.status.code(),
        Some(if failed { 4 } else { 0 }),
        "{stdout}"
    );
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    if failed {
        assert_eq!(last, "collection cannot run: fix the FAIL lines above");
    } else {
        assert_eq!(last, "collection can run");
    }
}
