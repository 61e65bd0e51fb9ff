//! `nft monitor trace` in a namespace: the independent witness of the nft tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `NETLINK_NETFILTER`, and the bit of `NFNLGRP_NFTRACE` (group 9) in
/// `/proc/net/netlink`'s group mask.
const NETLINK_NETFILTER: u32 = 12;
const NFTRACE_GROUP_BIT: u64 = 1 << (9 - 1);

/// A running `nft [-a] monitor trace`, its lines collected as they come.
pub struct NftMonitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NftMonitor {
    /// Starts it in network namespace `netns` (an `ip netns` name), with rule handles when
    /// `handles`, and returns once its socket is in the trace group: it prints nothing
    /// when it has subscribed, and an emulated VM can take seconds to start it.
    pub fn start(netns: &str, handles: bool) -> NftMonitor {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "nft"])
            .args(handles.then_some("-a"))
            .args(["monitor", "trace"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("nft monitor trace starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + ct_lab::scaled(Duration::from_secs(10));
        while !subscribed(netns, child.id()) {
            assert!(
                Instant::now() < deadline,
                "nft monitor trace did not join the trace group"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NftMonitor { child, lines }
    }

    /// Waits until `done` holds for what it printed (it looks rules up, which takes a while
    /// on an emulated machine) or 20 s (scaled) passed, gives anything more a moment to
    /// show, stops it and returns every line it printed.
    pub fn finish(mut self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + ct_lab::scaled(Duration::from_secs(20));
        while Instant::now() < deadline && !done(&self.lines.lock().unwrap()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let lines = self.lines.lock().unwrap().clone();
        lines
    }
}

/// Whether process `pid` has a netfilter netlink socket in the trace group of `netns`.
fn subscribed(netns: &str, pid: u32) -> bool {
    let Ok(out) = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/proc/net/netlink"])
        .output()
    else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 3
                && f[1].parse() == Ok(NETLINK_NETFILTER)
                && f[2].parse() == Ok(pid)
                && u64::from_str_radix(f[3], 16).is_ok_and(|g| g & NFTRACE_GROUP_BIT != 0)
        })
}
