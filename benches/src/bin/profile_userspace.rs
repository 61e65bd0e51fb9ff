//! A fixed user-space workload for instruction-level profiling (callgrind counts are
//! repeatable, unlike timings on a shared machine):
//! `valgrind --tool=callgrind target/release/profile_userspace decode|text|json [FIXTURE]`
//! (100,000 events of `fixtures/raw/FIXTURE.bin`, `tcp` unless given).

use std::hint::black_box;
use std::path::PathBuf;

use ct_bpf::Decoder;
use ct_core::{write_event, Layout};
use ct_core::{write_event_json, ProbeInfo, ProbeKind};

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "decode".into());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/raw");
    let fixture = std::env::args().nth(2).unwrap_or_else(|| "tcp".into());
    let path = dir.join(format!("{fixture}.bin"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = Decoder::new(
        (0..16)
            .map(|i| ProbeInfo {
                kind: ProbeKind::Tp,
                name: format!("net:probe_{i}").into(),
            })
            .collect(),
    );
    let event = decoder.decode(&bytes).expect("fixture decodes");
    let mut text = String::with_capacity(4096);
    let mut json = Vec::with_capacity(4096);
    for _ in 0..100_000 {
        match what.as_str() {
            "decode" => {
                black_box(decoder.decode(black_box(&bytes)).ok());
            }
            "text" => {
                text.clear();
                write_event(&mut text, black_box(&event), Layout::SingleLine, 0).unwrap();
                black_box(text.len());
            }
            _ => {
                json.clear();
                write_event_json(black_box(&event), &mut json).unwrap();
                black_box(json.len());
            }
        }
    }
}
