//! `sort` and `conns` in bounded memory: the release binary reads a generated `ping -f`
//! capture of 2M events (about 1 GB of JSON, 8 s of capture, streamed through a pipe,
//! never on disk) and its peak resident memory, as the kernel counted it, stays under
//! 64 MiB. Memory reaches its level within the first window (100 ms, 25k events), so 2M
//! events show it as well as the 10M of `benches/src/bin/big_files.rs` (whose figures are
//! in benches/README.md), at a fifth of the time. Memory, not time: timings live in
//! benches/.
//!
//! The binary is the static release `ct-cli` that scripts/test.sh builds (`CT_STATIC_BIN`):
//! a debug build would take minutes. Without it the test prints why and skips. Needs no
//! root. `CT_BIG_FILE_EVENTS` changes the number of events.

use std::io::{BufWriter, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;

use ct_lab::{wait_with_usage, write_flood, ChildUsage};

const STATIC_BIN_ENV: &str = "CT_STATIC_BIN";
const EVENTS_ENV: &str = "CT_BIG_FILE_EVENTS";
const DEFAULT_EVENTS: u64 = 2_000_000;
const MAX_RSS_KIB: u64 = 64 * 1024;

fn release_bin() -> Option<PathBuf> {
    match std::env::var_os(STATIC_BIN_ENV).filter(|p| !p.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            eprintln!(
                "skipping: {STATIC_BIN_ENV} is not set (CT_STATIC_BIN=$(scripts/static-build.sh) \
                 builds the release ct-cli and names it)"
            );
            None
        }
    }
}

fn events() -> u64 {
    std::env::var(EVENTS_ENV)
        .ok()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{EVENTS_ENV}={n:?} is not a number"))
        })
        .unwrap_or(DEFAULT_EVENTS)
}

/// Runs `ct-cli ARGS -` on the generated capture; returns its usage and stdout.
fn run_on_flood(bin: &PathBuf, args: &[&str], events: u64) -> (ChildUsage, Vec<u8>, String) {
    let mut child = Command::new(bin)
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let stdin = child.stdin.take().expect("piped stdin");
    let writer =
        thread::spawn(move || write_flood(BufWriter::with_capacity(1 << 16, stdin), events));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        // Keep only the head and the tail: sort writes about as much as it reads.
        const KEEP: usize = 4096;
        let (mut head, mut tail, mut total) = (Vec::new(), Vec::new(), 0);
        let mut buf = vec![0; 1 << 16];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n;
                    let room = KEEP.saturating_sub(head.len()).min(n);
                    head.extend_from_slice(&buf[..room]);
                    tail.extend_from_slice(&buf[room..n]);
                    if tail.len() > 1 << 20 {
                        tail.drain(..tail.len() - KEEP);
                    }
                }
            }
        }
        let cut = tail.len().saturating_sub(KEEP);
        if total > head.len() + tail.len() {
            head.extend_from_slice(b"\n...\n");
        }
        head.extend_from_slice(&tail[cut..]);
        head
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let usage = wait_with_usage(&mut child).expect("wait4");
    writer
        .join()
        .expect("writer thread")
        .expect("writing the capture to ct-cli");
    (
        usage,
        reader.join().expect("reader thread"),
        errors.join().expect("stderr thread"),
    )
}

#[test]
fn sort_and_conns_of_a_big_capture_stay_under_64_mib() {
    let Some(bin) = release_bin() else { return };
    let events = events();
    for (args, what) in [
        (&["sort", "--format", "singleline"][..], "sort"),
        (&["conns", "--format", "json"][..], "conns"),
    ] {
        let (usage, out, stderr) = run_on_flood(&bin, args, events);
        let out = String::from_utf8_lossy(&out);
        println!(
            "{what}: {events} events, peak RSS {} KiB, CPU {:.1} s",
            usage.max_rss_kib, usage.cpu_seconds
        );
        assert!(usage.success, "{what} failed: {stderr}");
        // Nothing forced or late: the output is the in-memory view's.
        assert!(stderr.is_empty(), "{what} said: {stderr}");
        assert!(
            usage.max_rss_kib < MAX_RSS_KIB,
            "{what} peaked at {} KiB for {events} events (limit {MAX_RSS_KIB} KiB)",
            usage.max_rss_kib
        );
        match what {
            "sort" => assert!(out.starts_with("packet #skb "), "{out}"),
            _ => {
                // One connection, on one event of each packet: every packet counted, half
                // in each direction.
                let conn: serde_json::Value = serde_json::from_str(out.trim()).expect("conns JSON");
                let packets = events / 4;
                assert_eq!(conn["events"], packets, "{out}");
                assert_eq!(conn["packets"]["orig"], packets.div_ceil(2), "{out}");
                assert_eq!(conn["packets"]["reply"], packets / 2, "{out}");
            }
        }
    }
}
