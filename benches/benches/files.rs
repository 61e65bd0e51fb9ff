//! Reading events files, per event: the JSON Lines reader (`read_events`), the serde model
//! alone (what the reader gave every line before it had a reader of its own), and `print
//! --format singleline` (read and render), each beside the floor: reading the same bytes
//! line by line (`BufRead::read_until` and the UTF-8 check, which any line reader does).
//!
//! The input is a generated `ping -f` capture (`ct_lab::write_flood`, 200k events), or
//! the first 200k lines of the capture `CT_BENCH_CAPTURE` names.
//!
//! `cargo bench -p ct-benches --bench files`

use std::hint::black_box;
use std::io::{self, BufRead, BufReader};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ct_core::{read_events, Event, EventWriter, Format, Layout};

const EVENTS: u64 = 200_000;

/// The capture to read: (bytes, events).
fn capture() -> (Vec<u8>, u64) {
    match std::env::var_os("CT_BENCH_CAPTURE") {
        Some(path) => {
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.to_string_lossy()));
            let mut bytes = Vec::new();
            let mut lines = 0;
            let mut reader = BufReader::new(file);
            while lines < EVENTS && reader.read_until(b'\n', &mut bytes).unwrap_or(0) > 0 {
                lines += 1;
            }
            (bytes, lines)
        }
        None => {
            let mut bytes = Vec::new();
            ct_lab::write_flood(&mut bytes, EVENTS).expect("writing into memory");
            (bytes, EVENTS)
        }
    }
}

/// The floor: every line read and checked as UTF-8, nothing parsed.
fn read_lines(mut input: impl BufRead) -> usize {
    let mut line = Vec::with_capacity(1024);
    let mut total = 0;
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return total,
            Ok(_) => total += std::str::from_utf8(&line).map_or(0, str::len),
        }
    }
}

fn bench(c: &mut Criterion) {
    let (bytes, events) = capture();
    let mut g = c.benchmark_group("read_file");
    g.throughput(Throughput::Elements(events));
    g.sample_size(10);
    g.bench_function("floor_lines", |b| {
        b.iter(|| read_lines(black_box(&bytes[..])))
    });
    g.bench_function("read_events", |b| {
        b.iter(|| {
            read_events(black_box(&bytes[..]))
                .filter(Result::is_ok)
                .count()
        })
    });
    g.bench_function("serde_model", |b| {
        b.iter(|| {
            black_box(&bytes[..])
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .filter(|line| serde_json::from_slice::<Event>(line).is_ok())
                .count()
        })
    });
    g.bench_function("print_singleline", |b| {
        b.iter(|| {
            let mut out = EventWriter::new(io::sink(), Format::Text(Layout::SingleLine));
            for event in read_events(black_box(&bytes[..])).flatten() {
                out.write(&event).unwrap();
            }
            out.count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
