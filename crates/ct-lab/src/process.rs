//! A `ct-cli` process under test: started, read line by line on stderr, stopped, and the
//! BPF programs, links and maps it held, so that a test can check none outlives it.
//!
//! The tests that use it (ct-cli's) name the binary: `env!("CARGO_BIN_EXE_ct-cli")`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ct_bpf::Program;

/// A running `ct-cli` (usually `collect`) whose stderr is read line by line, and the BPF
/// objects it was seen holding.
#[derive(Debug)]
pub struct Collect {
    pub child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// BPF objects seen in the child's descriptor table so far.
    pub held: BpfIds,
}

impl Collect {
    /// `<ct_cli> collect <args>`, stdout piped.
    pub fn start(ct_cli: impl AsRef<OsStr>, args: &[&str]) -> Collect {
        Self::spawn(
            Command::new(ct_cli)
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
        // Generous: an emulated VM of the kernel matrix on a busy host has taken over a
        // minute to load the programs (and scaled: the matrix runs two such VMs at once).
        let deadline = Instant::now() + crate::exec::scaled(Duration::from_secs(120));
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
        let deadline = Instant::now() + crate::exec::scaled(Duration::from_secs(10));
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

    /// The usual end of a collection: a pause for the last packets' events to come through
    /// the ring buffer, Ctrl-C, then exit status 0 (asserted). Returns stdout and the stderr
    /// lines.
    pub fn stop_cleanly(self) -> (String, Vec<String>) {
        std::thread::sleep(Duration::from_millis(300));
        self.signal(libc::SIGINT);
        let (status, stdout, stderr) = self.finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
        (stdout, stderr)
    }

    /// [`finish`](Self::finish), also returning every BPF object seen held by the process
    /// from its start to its exit.
    pub fn finish_held(mut self, limit: Duration) -> (ExitStatus, String, Vec<String>, BpfIds) {
        let deadline = Instant::now() + crate::exec::scaled(limit);
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
                    .is_some_and(|n| Program::ALL.iter().any(|p| p.name() == n))
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
        let deadline = Instant::now() + crate::exec::scaled(Duration::from_secs(10));
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

/// Processes other than this one whose command line or environment holds `marker`, as
/// `PID: command line`: what a test that gave a command a unique marker finds of it.
pub fn processes_holding(marker: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for part in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(entry.path().join(part)) else {
                continue;
            };
            if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!("{name}: {}", String::from_utf8_lossy(&cmdline)));
                break;
            }
        }
    }
    found
}
