//! Shared by the kernel tests that run `ct-cli collect` as a child process (faults, soak,
//! security): starting and stopping it, reading what it wrote, and finding the BPF objects
//! it held, so a test can check that none outlives it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ct_core::{read_events, Event};

pub const CT_CLI: &str = env!("CARGO_BIN_EXE_ct-cli");

/// `true` when kernel tests can run here (root, BTF, the lab's tools, and `bpftool`);
/// otherwise prints why and returns `false`, or panics under `CT_REQUIRE_KERNEL_TESTS=1`.
pub fn kernel_tests_can_run() -> bool {
    if !ct_lab::kernel_available() {
        return false;
    }
    let bpftool = Command::new("bpftool")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if bpftool.is_ok_and(|s| s.success()) {
        return true;
    }
    let reason = "no `bpftool` (scripts/install-deps.sh installs it)";
    if std::env::var(ct_lab::REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!(
            "kernel test cannot run and {}=1: {reason}",
            ct_lab::REQUIRE_ENV
        );
    }
    println!("skipping: {reason}");
    false
}

/// Holds an exclusive lock on a file in /tmp: kernel tests that count events or flood
/// the machine run one at a time, also across test processes.
pub struct KernelLock(File);

pub fn kernel_lock() -> KernelLock {
    let file = File::options()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join("ct-cli-kernel-tests.lock"))
        .expect("lock file");
    // SAFETY: flock on a descriptor we own; blocks until the lock is free.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock failed");
    KernelLock(file)
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ct-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `ct-cli` whose stderr is read line by line.
pub struct Collect {
    pub child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// BPF objects seen in the child's descriptor table so far.
    pub held: BpfIds,
}

impl Collect {
    /// `ct-cli collect <args>`, stdout piped.
    pub fn start(args: &[&str]) -> Collect {
        Self::spawn(
            Command::new(CT_CLI)
                .arg("collect")
                .args(args)
                .stdout(Stdio::piped()),
        )
    }

    /// Any command; stdout piped unless `cmd` sets it, stderr always read here.
    pub fn spawn(cmd: &mut Command) -> Collect {
        let mut child = cmd
            .stdin(Stdio::null())
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
            held: BpfIds::default(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the readiness line, then records the BPF objects the child holds.
    pub fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.ends_with("; collecting") => {
                    self.sample();
                    return line;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        panic!("no readiness line; stderr:\n{}", self.stderr_text());
    }

    /// Adds what the child holds now to [`held`](Self::held).
    pub fn sample(&mut self) {
        self.held.extend(&BpfIds::held_by(self.pid()));
    }

    /// Waits until the child has installed its SIGINT and SIGTERM handlers.
    pub fn wait_for_signal_handlers(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let wanted = (1u64 << (libc::SIGINT - 1)) | (1u64 << (libc::SIGTERM - 1));
        while Instant::now() < deadline {
            let caught = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("SigCgt:"))
                        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                });
            if caught.is_some_and(|c| c & wanted == wanted) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("ct-cli did not install its signal handlers within 10 s");
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Whether a stderr line so far contains `needle`.
    pub fn stderr_has(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Waits for exit (at most `limit`), sampling the BPF objects held until then.
    /// Returns the status, stdout and every stderr line.
    pub fn finish(self, limit: Duration) -> (ExitStatus, String, Vec<String>) {
        let (status, stdout, stderr, _) = self.finish_held(limit);
        (status, stdout, stderr)
    }

    /// [`finish`](Self::finish), also returning every BPF object seen held by the process
    /// from its start to its exit.
    pub fn finish_held(mut self, limit: Duration) -> (ExitStatus, String, Vec<String>, BpfIds) {
        let deadline = Instant::now() + limit;
        let mut stdout = String::new();
        let reader = self.child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = out.read_to_string(&mut s);
                s
            })
        });
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "ct-cli did not exit within {limit:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            self.sample();
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = reader {
            stdout = reader.join().unwrap();
        }
        while self.lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stdout, stderr, self.held)
    }
}

/// Kernel ids of BPF programs, links and maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BpfIds {
    pub progs: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
    pub maps: BTreeSet<u32>,
}

impl BpfIds {
    /// What process `pid` holds open, from /proc/PID/fd and fdinfo (empty once it is gone).
    pub fn held_by(pid: u32) -> BpfIds {
        let mut ids = BpfIds::default();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return ids;
        };
        for entry in dir.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            let (set, key) = match target.as_str() {
                "anon_inode:bpf-prog" => (&mut ids.progs, "prog_id:"),
                "anon_inode:bpf_link" | "anon_inode:bpf-link" => (&mut ids.links, "link_id:"),
                t if t.starts_with("anon_inode:bpf-map") => (&mut ids.maps, "map_id:"),
                _ => continue,
            };
            let fdinfo = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
            let Ok(info) = std::fs::read_to_string(fdinfo) else {
                continue;
            };
            if let Some(id) = info
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
            {
                set.insert(id);
            }
        }
        ids
    }

    /// Every program, link and map the kernel has now (`bpftool -j ... show`).
    pub fn live() -> BpfIds {
        let ids = |what: &str| -> BTreeSet<u32> {
            let out = Command::new("bpftool")
                .args(["-j", what, "show"])
                .output()
                .expect("bpftool runs");
            assert!(out.status.success(), "bpftool -j {what} show failed");
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o.get("id")?.as_u64())
                .map(|id| id as u32)
                .collect()
        };
        BpfIds {
            progs: ids("prog"),
            links: ids("link"),
            maps: ids("map"),
        }
    }

    /// How many live programs carry one of our names (for reports; other processes on the
    /// machine may hold some too).
    pub fn ours_by_name() -> usize {
        let out = Command::new("bpftool")
            .args(["-j", "prog", "show"])
            .output()
            .expect("bpftool runs");
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                o.get("name")
                    .and_then(|n| n.as_str())
                    .is_some_and(|n| ct_bpf::Program::ALL.iter().any(|p| p.name() == n))
            })
            .count()
    }

    pub fn extend(&mut self, other: &BpfIds) {
        self.progs.extend(&other.progs);
        self.links.extend(&other.links);
        self.maps.extend(&other.maps);
    }

    pub fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.links.is_empty() && self.maps.is_empty()
    }

    fn still_live(&self, live: &BpfIds) -> BpfIds {
        BpfIds {
            progs: self.progs.intersection(&live.progs).copied().collect(),
            links: self.links.intersection(&live.links).copied().collect(),
            maps: self.maps.intersection(&live.maps).copied().collect(),
        }
    }

    /// Panics unless every program, link and map in `self` is gone from the kernel within
    /// a few seconds (the kernel frees them shortly after their last descriptor closes).
    pub fn assert_all_gone(&self, what: &str) {
        assert!(
            !self.progs.is_empty() && !self.links.is_empty(),
            "{what}: no BPF program or link was seen held by ct-cli: {self:?}"
        );
        self.assert_gone(what);
    }

    /// [`assert_all_gone`](Self::assert_all_gone) for a process that may have been stopped
    /// before it attached anything.
    pub fn assert_gone(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.still_live(&BpfIds::live());
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("{what}: still in the kernel after ct-cli exited: {left:?} (of {self:?})");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The summary line `ct-cli: N events (M with conntrack), L lost...`: (N, M, L).
pub fn summary(stderr: &[String]) -> (u64, u64, u64) {
    let line = summary_line(stderr);
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

/// Whether a summary line was printed.
pub fn summary_exists(stderr: &[String]) -> bool {
    stderr
        .iter()
        .any(|l| l.starts_with("ct-cli: ") && l.contains(" with conntrack), "))
}

pub fn summary_line(stderr: &[String]) -> &str {
    let line = stderr
        .iter()
        .rev()
        .find(|l| l.starts_with("ct-cli: ") && l.contains(" with conntrack), "))
        .unwrap_or_else(|| panic!("no summary line in:\n{}", stderr.join("\n")));
    assert!(
        line.contains(" events (") && line.contains(" lost"),
        "{line}"
    );
    line
}

/// Reads an events file: it must end with a complete line and every line must be an event.
pub fn read_file(path: &Path) -> Vec<Event> {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} ends in the middle of a line",
        path.display()
    );
    read_events(&bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lines in a file.
pub fn line_count(path: &Path) -> u64 {
    std::fs::read(path)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
}

/// `VmRSS` (KiB) and the number of open descriptors of a live process.
pub fn rss_and_fds(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in:\n{status}"));
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// A small deterministic generator for "random" moments that a failure can be replayed
/// with (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The nftables ruleset the kernel tests load in the lab's router: conntrack on every
/// forwarded packet, and the client's flows masqueraded towards the server.
pub const ROUTER_NAT: &str = r#"
table ip ctcli {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "rc" tcp dport 8080 dnat to 10.0.2.2:80
        iifname "rc" udp dport 5353 dnat to 10.0.2.2:53
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "rs" masquerade
    }
}
"#;
