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

mod support;

use ct_lab::run_on_flood;
use support::release_bin;

const EVENTS_ENV: &str = "CT_BIG_FILE_EVENTS";
const DEFAULT_EVENTS: u64 = 2_000_000;
const MAX_RSS_KIB: u64 = 64 * 1024;

fn events() -> u64 {
    std::env::var(EVENTS_ENV)
        .ok()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{EVENTS_ENV}={n:?} is not a number"))
        })
        .unwrap_or(DEFAULT_EVENTS)
}

#[test]
fn sort_and_conns_of_a_big_capture_stay_under_64_mib() {
    let Some(bin) = release_bin() else { return };
    let events = events();
    for (args, what) in [
        (&["sort", "--format", "singleline"][..], "sort"),
        (&["conns", "--format", "json"][..], "conns"),
    ] {
        let run = run_on_flood(&bin, args, events).expect("running ct-cli on the flood");
        let (usage, stderr) = (run.usage, run.stderr);
        let out = String::from_utf8_lossy(&run.stdout_ends);
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
