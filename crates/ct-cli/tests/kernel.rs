//! `ct-cli collect` against real traffic between two network namespaces made here.
//!
//! Needs root, kernel BTF, conntrack, `ip`, `nft` and `ping`. Where something is missing the
//! tests print why and skip; with `CT_REQUIRE_KERNEL_TESTS=1` a skip is a failure.
//!
//! Every address used lives only inside the namespaces these tests create (10.x ranges on a
//! veth pair between them); the namespaces are removed when a test ends, pass or fail.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ct_core::{read_events, CtProto, Event};

// ---------------------------------------------------------------------------------------
// Skipping

/// Why this machine cannot run the kernel tests, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["ip", "nft", "ping"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!(
                "`{tool}` is missing (scripts/install-deps.sh installs it)"
            ));
        }
    }
    let report = ct_bpf::check();
    if !report.ready() {
        return Some(format!("collection cannot run here:\n{report}"));
    }
    None
}

/// True when the test may go on; prints why not otherwise. Panics instead of skipping when
/// `CT_REQUIRE_KERNEL_TESTS=1`.
fn kernel_tests_can_run(test: &str) -> bool {
    let Some(reason) = cannot_run() else {
        return true;
    };
    if std::env::var("CT_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1") {
        panic!("{test}: kernel test required (CT_REQUIRE_KERNEL_TESTS=1) but: {reason}");
    }
    eprintln!("skipping {test}: {reason}");
    false
}

// ---------------------------------------------------------------------------------------
// Two namespaces and a veth pair

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Namespaces `a` and `b` joined by a veth pair (`va` in a, `vb` in b), each end with an
/// address of a private /24 that exists only there. Removed on drop.
struct Lab {
    a: String,
    b: String,
    addr_a: String,
    addr_b: String,
}

impl Lab {
    /// `subnet` picks 10.213.<subnet>.0/24 so that tests running at once differ.
    fn new(tag: &str, subnet: u8) -> Lab {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("ctcli-{}-{n}{tag}", std::process::id());
        let lab = Lab {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            addr_a: format!("10.213.{subnet}.1"),
            addr_b: format!("10.213.{subnet}.2"),
        };
        // The guard exists before anything is made, so a failure half way still cleans up.
        for ns in [&lab.a, &lab.b] {
            ip(&["netns", "add", ns]);
            // IPv4 only: no IPv6 neighbour discovery packets among the events counted.
            ip(&[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
        }
        ip(&[
            "-n", &lab.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &lab.b,
        ]);
        for (ns, dev, addr) in [(&lab.a, "va", &lab.addr_a), (&lab.b, "vb", &lab.addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn path_a(&self) -> String {
        format!("/var/run/netns/{}", self.a)
    }

    fn inode_a(&self) -> u32 {
        std::fs::metadata(self.path_a()).unwrap().ino() as u32
    }

    /// Loads an nftables ruleset in namespace a that makes conntrack track its packets.
    fn track_in_a(&self) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.a, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                b"table inet t {\n\
                  chain out { type filter hook output priority 0; ct state new accept; }\n\
                  chain in { type filter hook input priority 0; ct state established accept; }\n\
                  }\n",
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pings b from a: `count` echo requests `interval` apart.
    fn ping(&self, count: u32, interval: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.a, "ping", "-n", "-q", "-c"])
            .arg(count.to_string())
            .args(["-i", interval, "-W", "1", &self.addr_b])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running ct-cli collect

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ct-cli-kernel-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `ct-cli collect` whose stderr is read line by line.
struct Collect {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Collect {
    fn start(args: &[&str]) -> Collect {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ct-cli"))
            .arg("collect")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ct-cli starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let all = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Collect {
            child,
            lines,
            stderr,
        }
    }

    /// Waits for the readiness line; panics with what was printed if it does not come.
    fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.ends_with("; collecting") => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no readiness line; stderr:\n{}",
            self.stderr.lock().unwrap().join("\n")
        );
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for exit (at most `limit`), returning the status, stdout and every stderr line.
    fn finish(mut self, limit: Duration) -> (ExitStatus, String, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "ct-cli did not exit within {limit:?}; stderr:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        use std::io::Read;
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        // Let the reader thread see the end of stderr.
        while self.lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stdout, stderr)
    }
}

/// Parses the summary line `ct-cli: N events (M with conntrack), L lost`.
fn summary(stderr: &[String]) -> (u64, u64, u64) {
    let line = stderr
        .iter()
        .rev()
        .find(|l| l.contains(" with conntrack), "))
        .unwrap_or_else(|| panic!("no summary line in:\n{}", stderr.join("\n")));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(
        line.starts_with("ct-cli: ") && line.contains(" events (") && line.contains(" lost"),
        "{line}"
    );
    (numbers[0], numbers[1], numbers[2])
}

/// Reads an events file: every line must be a complete event.
fn read_file(path: &Path) -> Vec<Event> {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "the file ends with a complete line"
    );
    read_events(&bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `event` carries an ICMP conntrack entry for an echo from `a` to `b`.
fn is_icmp_ct(event: &Event, a: &str, b: &str) -> bool {
    let Some(base) = event.ct.as_ref().and_then(|ct| ct.base.as_ref()) else {
        return false;
    };
    let (a, b): (std::net::IpAddr, std::net::IpAddr) = (a.parse().unwrap(), b.parse().unwrap());
    matches!(base.orig.proto, CtProto::Icmp { icmp_type: 8, .. })
        && matches!(base.reply.proto, CtProto::Icmp { icmp_type: 0, .. })
        && base.orig.ip.src == a
        && base.orig.ip.dst == b
        && base.reply.ip.src == b
        && base.reply.ip.dst == a
}

// ---------------------------------------------------------------------------------------
// Tests

/// The scenario: collect to a file, ping, Ctrl-C; the file is complete and the
/// summary agrees with it.
#[test]
fn sigint_leaves_a_complete_file_and_a_true_summary() {
    if !kernel_tests_can_run("sigint_leaves_a_complete_file_and_a_true_summary") {
        return;
    }
    let lab = Lab::new("i", 1);
    lab.track_in_a();
    let scratch = Scratch::new("sigint");
    let file = scratch.0.join("events.json");
    let netns = lab.path_a();
    let mut collect = Collect::start(&[
        "-o",
        file.to_str().unwrap(),
        "--netns",
        &netns,
        "-p",
        "tp:net:net_dev_start_xmit",
    ]);
    let ready = collect.wait_ready();
    assert_eq!(
        ready,
        "ct-cli: attached 1 probe (tp:net:net_dev_start_xmit); collecting"
    );

    let started = Instant::now();
    let ping = lab.ping(5, "0.2").wait_with_output().unwrap();
    assert!(ping.status.success(), "ping from a to b failed");
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
        .filter(|e| is_icmp_ct(e, &lab.addr_a, &lab.addr_b))
        .count();
    assert!(
        matching >= 5,
        "every echo request carries its ICMP conntrack entry ({matching} of {})",
        events.len()
    );
    let inode = lab.inode_a();
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
    if !kernel_tests_can_run("count_stops_after_n_events_and_prints_them") {
        return;
    }
    let lab = Lab::new("n", 2);
    lab.track_in_a();
    let scratch = Scratch::new("count");
    let file = scratch.0.join("events.json");
    let netns = lab.inode_a().to_string();
    let mut collect = Collect::start(&[
        "-o",
        file.to_str().unwrap(),
        "--print",
        "--format",
        "singleline",
        "--netns",
        &netns,
        "--ct-only",
        "-n",
        "3",
        "-p",
        "tp:net:net_dev_start_xmit",
    ]);
    collect.wait_ready();
    let mut ping = lab.ping(20, "0.1");
    let (status, stdout, stderr) = collect.finish(Duration::from_secs(30));
    let _ = ping.kill();
    let _ = ping.wait();

    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr.join("\n"));
    let events = read_file(&file);
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.ct.is_some()), "--ct-only");
    assert!(
        events
            .iter()
            .all(|e| is_icmp_ct(e, &lab.addr_a, &lab.addr_b)),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 3, "stdout:\n{stdout}");
    assert!(stdout.lines().all(|l| l.contains("ct_state ")), "{stdout}");
    assert_eq!(summary(&stderr), (3, 3, 0));
}

/// SIGTERM stops as cleanly as Ctrl-C, also when no event came at all.
#[test]
fn sigterm_with_no_events_exits_zero() {
    if !kernel_tests_can_run("sigterm_with_no_events_exits_zero") {
        return;
    }
    let lab = Lab::new("t", 3);
    let scratch = Scratch::new("sigterm");
    let file = scratch.0.join("events.json");
    let netns = lab.path_a();
    let mut collect = Collect::start(&[
        "-o",
        file.to_str().unwrap(),
        "--netns",
        &netns,
        "--ct-only",
        "-p",
        "tp:net:net_dev_start_xmit",
    ]);
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
    if !kernel_tests_can_run("disk_full_keeps_complete_events") {
        return;
    }
    let lab = Lab::new("f", 4);
    lab.track_in_a();
    let scratch = Scratch::new("full");
    let mount = scratch.0.join("tiny");
    std::fs::create_dir(&mount).unwrap();
    run(Command::new("mount").args([
        "-t",
        "tmpfs",
        "-o",
        "size=8k,mode=0700",
        "ctcli-test",
        mount.to_str().unwrap(),
    ]));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());

    let file = mount.join("events.json");
    let netns = lab.path_a();
    let mut collect = Collect::start(&[
        "-o",
        file.to_str().unwrap(),
        "--netns",
        &netns,
        "-p",
        "tp:net:net_dev_start_xmit",
    ]);
    collect.wait_ready();
    let mut ping = lab.ping(200, "0.01");
    let (status, _, stderr) = collect.finish(Duration::from_secs(30));
    let _ = ping.kill();
    let _ = ping.wait();

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
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/sys/kernel/btf/vmlinux").exists() {
        if std::env::var("CT_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1") {
            panic!("check_command_reports_what_loads: kernel test required but not root or no BTF");
        }
        eprintln!("skipping check_command_reports_what_loads: not root or no kernel BTF");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ct-cli"))
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
