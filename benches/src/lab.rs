//! The traffic the kernel benches run: two network namespaces and a ping flood between
//! them.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Echo requests per flood (each is seen going out and coming back).
pub const PINGS: &str = "20000";

/// Echo requests of a flood: `CT_BENCH_PINGS`, else [`PINGS`]. Longer floods steady the
/// user-space figures on a machine that other work shares.
pub fn pings() -> String {
    std::env::var("CT_BENCH_PINGS")
        .ok()
        .filter(|v| v.parse::<u32>().is_ok_and(|n| n > 0))
        .unwrap_or_else(|| PINGS.to_owned())
}

/// Rounds of each measurement (`CT_BENCH_ROUNDS`, default 3), for the user-space benches.
pub fn rounds() -> usize {
    std::env::var("CT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// Two network namespaces joined by a veth pair, removed on drop.
#[derive(Debug)]
pub struct Netns {
    names: [String; 2],
}

/// Runs a command, its stderr in the error when it fails.
pub fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Two namespaces over a veth pair, 10.201.0.1 <-> 10.201.0.2; with `conntrack`, an
    /// nftables rule in the sender makes conntrack attach to its packets.
    pub fn new(tag: &str, conntrack: bool) -> Result<Self, String> {
        let pid = std::process::id();
        let a = format!("ctbench-{pid}-{tag}-a");
        let b = format!("ctbench-{pid}-{tag}-b");
        let ns = Netns {
            names: [a.clone(), b.clone()],
        };
        sh(&["ip", "netns", "add", &a])?;
        sh(&["ip", "netns", "add", &b])?;
        sh(&[
            "ip", "link", "add", "v0", "netns", &a, "type", "veth", "peer", "name", "v1", "netns",
            &b,
        ])?;
        for (n, dev, addr) in [(&a, "v0", "10.201.0.1/24"), (&b, "v1", "10.201.0.2/24")] {
            sh(&["ip", "-n", n, "addr", "add", addr, "dev", dev])?;
            sh(&["ip", "-n", n, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        }
        if conntrack {
            let mut child = Command::new("ip")
                .args(["netns", "exec", &a, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            child
                .stdin
                .take()
                .ok_or("nft stdin")?
                .write_all(
                    b"table inet bench {\n chain out {\n  type filter hook output priority 0;\n  ct state new,established accept\n }\n}\n",
                )
                .map_err(|e| e.to_string())?;
            if !child.wait().map_err(|e| e.to_string())?.success() {
                return Err("nft failed".into());
            }
        }
        Ok(ns)
    }

    /// `ping -f -c N` ([`pings`]) from the first namespace to the second.
    pub fn ping_flood(&self) -> Command {
        let count = pings();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.names[0],
            "ping",
            "-f",
            "-q",
            "-c",
            &count,
            "10.201.0.2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

/// VmRSS of a process, in KiB.
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// The peak resident memory of process `pid` so far (its own: `getrusage` of a child
/// would also count what the parent held when it forked), in KiB.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:")
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
