//! Shared by the kernel tests that run `ct-cli collect` as a child process (kernel,
//! faults, soak, security, default probes, the static binary): the gate, starting
//! `ct-cli` (the process handling itself is ct-lab's [`Collect`]), and reading what it
//! wrote.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ct_core::{read_events, Event};
use ct_lab::{Lab, Node};
// Each test file that includes this module uses some of them.
#[allow(unused_imports)]
pub use ct_lab::{BpfIds, Collect, Scratch};

mod cli;
pub use cli::*;
mod nft_monitor;
// Used by the nft tests only.
#[allow(unused_imports)]
pub use nft_monitor::NftMonitor;

/// `ct-cli collect <args>`, stdout piped.
pub fn start_collect(args: &[&str]) -> Collect {
    Collect::start(CT_CLI, args)
}

/// `ct-cli collect -o <file> --netns <netns> <more>`: where most kernel tests collect.
pub fn collect_to(file: &Path, netns: &str, more: &[&str]) -> Collect {
    let mut args = vec!["-o", file.to_str().unwrap(), "--netns", netns];
    args.extend_from_slice(more);
    start_collect(&args)
}

/// The `--netns` argument that names `node`'s namespace by its path.
pub fn netns_arg(lab: &Lab, node: Node) -> String {
    lab.netns_path(node).display().to_string()
}

/// `true` when kernel tests that watch ct-cli's BPF objects can run here: the lab's
/// requirements and `bpftool`. Otherwise the one gate, [`ct_lab::run_or_skip`], decides.
pub fn kernel_tests_can_run() -> bool {
    if !ct_lab::kernel_available() {
        return false;
    }
    let bpftool = Command::new("bpftool")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    ct_lab::run_or_skip(if bpftool.is_ok_and(|s| s.success()) {
        Ok(())
    } else {
        Err("no `bpftool` (scripts/install-deps.sh installs it)")
    })
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

/// The gate and the lock in one: `None` when kernel tests cannot run here
/// ([`kernel_tests_can_run`] said why), else the lock, held until the test ends.
pub fn kernel_test_lock() -> Option<KernelLock> {
    kernel_tests_can_run().then(kernel_lock)
}

/// A kernel test with a lab under way: the lock (one such test at a time), the lab and the
/// test's scratch folder.
pub struct KernelLab {
    pub lab: Lab,
    pub scratch: Scratch,
    _lock: KernelLock,
}

impl KernelLab {
    /// `None` when kernel tests cannot run here ([`kernel_tests_can_run`] said why).
    pub fn start(scratch_name: &str) -> Option<Self> {
        let _lock = kernel_test_lock()?;
        Some(KernelLab {
            lab: Lab::new().expect("building the lab"),
            scratch: Scratch::new(scratch_name),
            _lock,
        })
    }

    /// [`start`](Self::start), the router loading [`ROUTER_NAT`].
    pub fn with_nat(scratch_name: &str) -> Option<Self> {
        let started = Self::start(scratch_name)?;
        started
            .lab
            .router_nft(ROUTER_NAT)
            .expect("loading the ruleset");
        Some(started)
    }

    /// The `--netns` argument for the router, where the NAT happens.
    pub fn router_netns(&self) -> String {
        netns_arg(&self.lab, Node::Router)
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

/// The static release `ct-cli` that scripts/test.sh builds and names in `CT_STATIC_BIN`
/// (a debug build is larger and slower than what users run), or why there is none.
fn static_bin_path() -> Result<PathBuf, String> {
    std::env::var_os("CT_STATIC_BIN")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            "CT_STATIC_BIN is not set (CT_STATIC_BIN=$(scripts/static-build.sh) builds the \
             static release ct-cli and names it)"
                .to_owned()
        })
}

/// [`static_bin_path`] for a test that needs no kernel: `None`, saying why, without it.
pub fn release_bin() -> Option<PathBuf> {
    static_bin_path()
        .map_err(|why| eprintln!("skipping: {why}"))
        .ok()
}

/// [`static_bin_path`] for a kernel test: without it the one gate decides (a skip fails
/// the test under `CT_REQUIRE_KERNEL_TESTS=1`).
pub fn static_bin() -> Option<PathBuf> {
    if !ct_lab::kernel_available() {
        return None;
    }
    match static_bin_path() {
        Ok(path) => Some(path),
        Err(why) => {
            ct_lab::run_or_skip(Err(why));
            None
        }
    }
}
