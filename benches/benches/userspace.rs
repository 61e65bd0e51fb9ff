//! User-space cost per event, on raw events captured from a real kernel
//! (`fixtures/raw/*.bin`): decode, the two text layouts, JSON out and back, and the whole
//! envelope written the way `ct-cli collect -o` writes it; and the floor under decode (an
//! event holding its probe).
//!
//! `cargo bench -p ct-benches --bench userspace`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ct_bpf::Decoder;
use ct_core::{write_ct, write_event, Layout};
use ct_core::{write_event_json, Event, ProbeInfo, ProbeKind};

/// Every captured fixture: (name, raw record bytes).
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/raw");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

fn decoder() -> Decoder {
    // Fixtures carry small probe ids; give each a name.
    Decoder::new(
        (0..16)
            .map(|i| ProbeInfo {
                kind: ProbeKind::Tp,
                name: format!("net:probe_{i}").into(),
            })
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let fixtures = fixtures();
    let decoder = decoder();
    let events: Vec<(String, Event)> = fixtures
        .iter()
        .filter_map(|(name, bytes)| decoder.decode(bytes).ok().map(|e| (name.clone(), e)))
        .collect();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, bytes) in &fixtures {
        g.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| decoder.decode(black_box(bytes)))
        });
    }
    g.finish();

    // What any decode costs before it reads a field: an event holding its probe (an `Arc`
    // clone, and its drop when the event goes), returned by value.
    let probe = ProbeInfo {
        kind: ProbeKind::Tp,
        name: "net:probe_0".into(),
    };
    c.bench_function("decode_floor/event_with_probe", |b| {
        b.iter(|| -> Result<Event, ()> {
            Ok(Event {
                probe: Some(black_box(&probe).clone()),
                ..Event::default()
            })
        })
    });

    let mut text = String::with_capacity(4096);
    for (group, layout) in [
        ("singleline", Layout::SingleLine),
        ("multiline", Layout::MultiLine),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(1));
        for (name, event) in &events {
            g.bench_with_input(BenchmarkId::new("envelope", name), event, |b, event| {
                b.iter(|| {
                    text.clear();
                    write_event(&mut text, black_box(event), layout, 0).unwrap();
                    text.len()
                })
            });
            if let Some(ct) = &event.ct {
                g.bench_with_input(BenchmarkId::new("ct", name), ct, |b, ct| {
                    b.iter(|| {
                        text.clear();
                        write_ct(&mut text, black_box(ct), layout, 0).unwrap();
                        text.len()
                    })
                });
            }
        }
        g.finish();
    }

    let mut json = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    for (name, event) in &events {
        g.bench_with_input(BenchmarkId::new("write", name), event, |b, event| {
            b.iter(|| {
                json.clear();
                write_event_json(black_box(event), &mut json).unwrap();
                json.len()
            })
        });
        json.clear();
        write_event_json(event, &mut json).unwrap();
        let line = String::from_utf8(json.clone()).unwrap();
        g.bench_with_input(BenchmarkId::new("parse", name), &line, |b, line| {
            b.iter(|| ct_core::parse_event_line(black_box(line.trim_end())).unwrap())
        });
    }
    g.finish();

    // The collect -o path: raw bytes to a JSON line.
    let mut g = c.benchmark_group("raw_to_json_line");
    g.throughput(Throughput::Elements(1));
    for (name, bytes) in &fixtures {
        g.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| {
                json.clear();
                if let Ok(event) = decoder.decode(black_box(bytes)) {
                    write_event_json(&event, &mut json).unwrap();
                }
                json.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
