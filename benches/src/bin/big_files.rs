//! `sort`, `conns` and `print` of a generated `ping -f` capture of 10M events (about 5 GB
//! of JSON, `ct_lab::write_flood`, streamed through a pipe, never on disk): peak RSS and
//! CPU of the ct-cli process, and events per second of CPU. Its stdout goes through a pipe
//! that this process drains (figures before 2026-11-30 15:00 were taken with stdout on
//! /dev/null, which saves the child the pipe copy).
//!
//! `cargo build --release -p ct-cli -p ct-benches --bin big_files &&
//! target/release/big_files target/release/ct-cli [EVENTS]`. Prints a Markdown table.

use std::path::Path;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .unwrap_or_else(|| "target/release/ct-cli".into());
    let events: u64 = args
        .next()
        .map(|n| n.parse().expect("EVENTS is a number"))
        .unwrap_or(10_000_000);
    println!("| command ({events} events) | peak RSS | CPU | CPU per event | wall |");
    println!("|---|---|---|---|---|");
    for args in [
        &["sort", "--format", "singleline"][..],
        &["sort"][..],
        &["conns"][..],
        &["print", "--format", "singleline"][..],
    ] {
        let start = Instant::now();
        let run = ct_lab::run_on_flood(Path::new(&bin), args, events)
            .unwrap_or_else(|e| panic!("{bin} on the flood: {e}"));
        let usage = run.usage;
        assert!(
            usage.success,
            "ct-cli {} failed: {}",
            args.join(" "),
            run.stderr
        );
        println!(
            "| `{}` | {:.1} MiB | {:.1} s | {:.2} us | {:.1} s |",
            args.join(" "),
            usage.max_rss_kib as f64 / 1024.0,
            usage.cpu_seconds,
            usage.cpu_seconds * 1e6 / events as f64,
            start.elapsed().as_secs_f64(),
        );
    }
}
