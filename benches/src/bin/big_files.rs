//! `sort`, `conns` and `print` of a generated `ping -f` capture of 10M events (about 5 GB
//! of JSON, `ct_lab::write_flood`, streamed through a pipe, never on disk): peak RSS and
//! CPU of the ct-cli process, and events per second of CPU.
//!
//! `cargo build --release -p ct-cli -p ct-benches --bin big_files &&
//! target/release/big_files target/release/ct-cli [EVENTS]`. Prints a Markdown table.

use std::io::{self, BufWriter};
use std::process::{Command, Stdio};
use std::thread;
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
        let mut child = Command::new(&bin)
            .args(args)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let writer = thread::spawn(move || {
            ct_lab::write_flood(BufWriter::with_capacity(1 << 16, stdin), events)
        });
        let usage = ct_lab::wait_with_usage(&mut child).expect("wait4");
        let written: io::Result<()> = writer.join().expect("writer thread");
        written.expect("writing the capture");
        assert!(usage.success, "ct-cli {} failed", args.join(" "));
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
