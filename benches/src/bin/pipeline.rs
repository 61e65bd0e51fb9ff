//! Where the user-space CPU of an event goes, one stage added at a time, against the
//! write floor of the same run: the ring buffer read in this process (no ct-cli), under
//! `ping -f` through the same two probes as `end_to_end`.
//!
//! Stages, each its own flood: the records read and counted; read and their bytes written
//! to a file (128 KiB buffer, as `collect -o`); read and decoded; decoded and written as
//! JSON Lines; decoded and written as single-line text. CPU per event is this thread's
//! (`CLOCK_THREAD_CPUTIME_ID`) from the flood's start until the ring is empty after it.
//! The floor writes the JSON stage's file again in 64 KiB writes (best of three), as in
//! `end_to_end`; every ratio is to it.
//!
//! What it shows: how much of an event's cost is reading the ring and writing bytes at
//! all (no decoding, no formatting), which no change of the formatters can remove.
//!
//! Run as root: `target/release/pipeline` (after `cargo build --release -p ct-benches`).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ct_benches::{pings, rounds, thread_cpu_ns, write_floor, Netns};
use ct_bpf::{Collector, CollectorBuilder, ProbeSpec, RingRecord};
use ct_core::{EventWriter, Format, Layout};

/// The output file's buffer, as ct-cli's `-o` commits.
const FILE_BUFFER: usize = 128 << 10;
/// The line of [`Stage::DecodeWriteLine`]: as long as an event's JSON in this flood.
const LINE: [u8; 513] = {
    let mut line = [b'x'; 513];
    line[512] = b'\n';
    line
};

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Read,
    ReadWriteRecords,
    Decode,
    DecodeWriteLine,
    Json,
    SingleLine,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Read,
        Stage::ReadWriteRecords,
        Stage::Decode,
        Stage::DecodeWriteLine,
        Stage::Json,
        Stage::SingleLine,
    ];

    fn label(self) -> &'static str {
        match self {
            Stage::Read => "read the ring (records counted)",
            Stage::ReadWriteRecords => "read + write each record's bytes to the file",
            Stage::Decode => "read + decode",
            Stage::DecodeWriteLine => {
                "read + decode + write a line already made (JSON's length) to the file"
            }
            Stage::Json => "read + decode + JSON Lines to the file",
            Stage::SingleLine => "read + decode + single-line text to the file",
        }
    }
}

struct Measured {
    events: u64,
    bytes: u64,
    cpu_ns_per_event: f64,
    lost: u64,
}

fn run(stage: Stage, out: &Path) -> Result<Measured, String> {
    let ns = Netns::new("pl", true)?;
    let probe = |s: &str| s.parse::<ProbeSpec>().map_err(|e| e.to_string());
    let mut collector = CollectorBuilder::new()
        .probe(probe("tp:net:net_dev_start_xmit")?)
        .probe(probe("tp:net:netif_receive_skb")?)
        .build()
        .map_err(|e| e.to_string())?;
    let file = File::create(out).map_err(|e| e.to_string())?;
    let mut raw_out =
        BufWriter::with_capacity(FILE_BUFFER, file.try_clone().map_err(|e| e.to_string())?);
    let format = match stage {
        Stage::SingleLine => Format::Text(Layout::SingleLine),
        _ => Format::Json,
    };
    let mut writer = EventWriter::new(BufWriter::with_capacity(FILE_BUFFER, file), format);
    let mut events = 0u64;
    let mut failed: Option<String> = None;
    let mut read = |collector: &mut Collector, timeout: Duration| -> Result<usize, String> {
        let n = match stage {
            Stage::Read => collector.poll_raw(timeout, |_| events += 1),
            Stage::ReadWriteRecords => collector.poll_raw(timeout, |record| {
                events += 1;
                if let RingRecord::Complete(raw) = record {
                    let bytes = raw.as_bytes();
                    if let Err(e) = raw_out.write_all(bytes) {
                        failed.get_or_insert(e.to_string());
                    }
                }
            }),
            Stage::Decode => collector.poll(timeout, |event| {
                events += 1;
                std::hint::black_box(&event);
            }),
            Stage::DecodeWriteLine => collector.poll(timeout, |event| {
                events += 1;
                std::hint::black_box(&event);
                if let Err(e) = raw_out.write_all(&LINE) {
                    failed.get_or_insert(e.to_string());
                }
            }),
            Stage::Json | Stage::SingleLine => collector.poll(timeout, |event| {
                events += 1;
                match event {
                    Ok(event) => {
                        if let Err(e) = writer.write(&event) {
                            failed.get_or_insert(e.to_string());
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(e.to_string());
                    }
                }
            }),
        };
        n.map_err(|e| e.to_string())
    };
    let start_cpu = thread_cpu_ns();
    let mut ping = ns.ping_flood().spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        read(&mut collector, Duration::from_millis(100))?;
        if ping.try_wait().map_err(|e| e.to_string())?.is_some() || Instant::now() > deadline {
            break;
        }
    }
    while read(&mut collector, Duration::ZERO)? > 0 {}
    raw_out.flush().map_err(|e| e.to_string())?;
    writer.flush().map_err(|e| e.to_string())?;
    let cpu = thread_cpu_ns() - start_cpu;
    if let Some(e) = failed {
        return Err(e);
    }
    let lost = collector.lost().map_err(|e| e.to_string())?;
    let bytes = std::fs::metadata(out).map_err(|e| e.to_string())?.len();
    Ok(Measured {
        events,
        bytes,
        cpu_ns_per_event: cpu as f64 / events.max(1) as f64,
        lost,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ctbench-pipeline-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(1);
    }
    let out: PathBuf = dir.join("events");
    // Rounds outermost, so that a slow minute of the machine spreads over every stage.
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); Stage::ALL.len()];
    let mut last: Vec<Option<Result<Measured, String>>> = Stage::ALL.iter().map(|_| None).collect();
    let mut floors = Vec::new();
    for _ in 0..rounds() {
        for (i, &stage) in Stage::ALL.iter().enumerate() {
            let _ = std::fs::remove_file(&out);
            let measured = run(stage, &out);
            if let Ok(m) = &measured {
                cpu[i].push(m.cpu_ns_per_event);
                if stage == Stage::Json {
                    if let Some(floor) = std::fs::read(&out)
                        .ok()
                        .and_then(|data| write_floor(&data, m.events, &out).ok())
                    {
                        floors.push(floor);
                    }
                }
            }
            last[i] = Some(measured);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let floor = median(floors);
    println!("| user space, stage by stage (in-process reader, tp:net:net_dev_start_xmit + tp:net:netif_receive_skb, ping -f -c {}; medians of {} rounds) | events | lost | B/event written | CPU/event | ratio to the write floor ({floor:.0} ns/event) |", pings(), rounds());
    println!("|---|---|---|---|---|---|");
    for (i, stage) in Stage::ALL.iter().enumerate() {
        match last[i].take() {
            Some(Ok(m)) => {
                let ns = median(std::mem::take(&mut cpu[i]));
                println!(
                    "| {} | {} | {} | {:.0} | {:.0} ns | {:.2}x |",
                    stage.label(),
                    m.events,
                    m.lost,
                    m.bytes as f64 / m.events.max(1) as f64,
                    ns,
                    if floor > 0.0 { ns / floor } else { 0.0 },
                )
            }
            Some(Err(e)) => println!("| {} | error: {e} | | | | |", stage.label()),
            None => {}
        }
    }
}
