//! Kernel cost per probe hit, under fixed traffic in network namespaces this program
//! creates (and always removes).
//!
//! Per hit: `run_time_ns / run_cnt` from `kernel.bpf_stats_enabled=1` for our program on
//! `net:net_dev_start_xmit`, beside an empty program attached to the same tracepoint in
//! the same run (the floor): packets with and without ct reported, rejected by `-f` (both
//! filter engines), rejected by a ct filter. bpf_stats is restored after.
//!
//! `--steps` first prints where the nanoseconds of a reported hit go: the program with
//! one step left out at a time ([`OmitStep`]), each beside the empty program.
//!
//! `--follow` prints only what following costs (`collect --follow`): hits rejected by
//! `-f` while nothing is followed, and a flood whose echo requests are selected while their replies are
//! not (rejected with `--follow none` and `packet`, followed with `conn`), each with the
//! three follow modes.
//!
//! Environment: `CT_BENCH_RING_KIB` (ring size), `CT_BENCH_STEPS_ONLY` (stop after the
//! step table), `CT_BENCH_NO_TRACK` (no packet tracking).
//!
//! Run as root: `benches/kernel.sh` (builds release first). Prints Markdown tables.

use std::time::{Duration, Instant};

use ct_benches::{pings, Netns};
use ct_bpf::{CollectorBuilder, KernelFilters, OmitStep, ProbeSpec};
use ct_core::filter::{CtFilter, Follow};

struct BpfStats {
    previous: String,
}

impl BpfStats {
    fn enable() -> Result<Self, String> {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let previous = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        std::fs::write(path, "1").map_err(|e| format!("{path}: {e}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", self.previous.trim());
    }
}

struct Row {
    ours: f64,
    floor: f64,
    hits: u64,
    events: u64,
    lost: u64,
}

fn per_hit(
    case: &'static str,
    conntrack: bool,
    filters: KernelFilters,
    pcap: Option<&str>,
    raw: bool,
) -> Result<Row, String> {
    per_hit_omitting(case, conntrack, filters, pcap, raw, &[], Follow::None)
}

/// One flood with our program (less `omit`, when given) and the empty one beside it.
fn per_hit_omitting(
    case: &'static str,
    conntrack: bool,
    filters: KernelFilters,
    pcap: Option<&str>,
    raw: bool,
    omit: &[OmitStep],
    follow: Follow,
) -> Result<Row, String> {
    let ns = Netns::new(&case[..2], conntrack)?;
    let xmit: ProbeSpec = "tp:net:net_dev_start_xmit"
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut builder = CollectorBuilder::new()
        .probe(xmit)
        .filters(filters)
        .follow(follow);
    if let Some(expr) = pcap {
        let filter = ct_bpf::PcapFilter::compile(expr, ct_bpf::PCAP_COPY_LEN)
            .map_err(|e| format!("{expr}: {e}"))?;
        builder = builder.pcap_filter(filter);
    }
    for &step in omit {
        builder = builder.omit_step(step);
    }
    if let Some(kib) = std::env::var("CT_BENCH_RING_KIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        builder = builder.ring_size(kib << 10);
    }
    let mut collector = builder
        .track_packets(std::env::var_os("CT_BENCH_NO_TRACK").is_none())
        .raw_tracepoints(raw)
        .measure_floor(true)
        .build()
        .map_err(|e| e.to_string())?;
    let mut ping = ns.ping_flood().spawn().map_err(|e| e.to_string())?;
    let mut events = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Counted, not decoded: a program with a step left out writes incomplete records,
        // and decoding would take CPU from the flood being measured.
        collector
            .poll_raw(Duration::from_millis(20), |_| events += 1)
            .map_err(|e| e.to_string())?;
        if ping.try_wait().map_err(|e| e.to_string())?.is_some() || Instant::now() > deadline {
            break;
        }
    }
    let _ = ping.kill();
    while collector
        .poll_raw(Duration::ZERO, |_| events += 1)
        .map_err(|e| e.to_string())?
        > 0
    {}
    let stats = collector.program_stats();
    let find = |floor: bool| {
        stats
            .iter()
            .find(|s| s.label.ends_with("(floor)") == floor)
            .cloned()
    };
    let (ours, floor) = (
        find(false).ok_or("no stats")?,
        find(true).ok_or("no stats")?,
    );
    Ok(Row {
        ours: ours.ns_per_hit().unwrap_or(0.0),
        floor: floor.ns_per_hit().unwrap_or(0.0),
        hits: ours.run_cnt,
        events,
        lost: collector.lost().map_err(|e| e.to_string())?,
    })
}

/// Where the nanoseconds of a reported hit go (tp_btf, with ct): the program with one
/// step left out at a time, each beside the empty program, `rounds` floods each; medians.
fn step_table(rounds: usize) {
    println!("| step left out (tp_btf, with ct, reported) | ns/hit | floor ns/hit | ratio | ns above floor | step costs |");
    println!("|---|---|---|---|---|---|");
    let mut variants: Vec<(String, Vec<OmitStep>)> =
        vec![("nothing (the complete program)".to_owned(), Vec::new())];
    variants.extend(OmitStep::ALL.into_iter().map(|s| (s.to_string(), vec![s])));
    // Reserve and submit alone (with the wakeup policy): every step that fills the record
    // left out.
    let fill: Vec<OmitStep> = OmitStep::ALL
        .into_iter()
        .filter(|s| {
            !matches!(
                s,
                OmitStep::Report | OmitStep::ConntrackFields | OmitStep::Wakeup
            )
        })
        .collect();
    variants.push(("every fill step (reserve + submit alone)".to_owned(), fill));
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut full_above = None;
    for (label, omit) in variants {
        let mut ours = Vec::new();
        let mut floors = Vec::new();
        for _ in 0..rounds {
            match per_hit_omitting(
                "st",
                true,
                KernelFilters::default(),
                None,
                false,
                &omit,
                Follow::None,
            ) {
                Ok(r) => {
                    ours.push(r.ours);
                    floors.push(r.floor);
                }
                Err(e) => println!("| {label} | error: {e} | | | | |"),
            }
        }
        let (ours, floor) = (median(ours), median(floors));
        let above = ours - floor;
        let costs = match full_above {
            None => {
                full_above = Some(above);
                String::new()
            }
            Some(full) => format!("{:.0} ns", full - above),
        };
        println!(
            "| {label} | {ours:.0} | {floor:.0} | {:.2}x | {above:.0} | {costs} |",
            if floor > 0.0 { ours / floor } else { 0.0 }
        );
    }
    println!();
}

/// One table row: the case, how it ran (`mode`), and its figures or its error.
fn print_row(case: &str, mode: &str, row: Result<Row, String>) {
    match row {
        Ok(r) => println!(
            "| {case} | {mode} | {:.0} | {:.0} | {:.2}x | {} | {} | {} |",
            r.ours,
            r.floor,
            if r.floor > 0.0 { r.ours / r.floor } else { 0.0 },
            r.hits,
            r.events,
            r.lost
        ),
        Err(e) => println!("| {case} | {mode} | error: {e} | | | | | |"),
    }
}

/// What following costs: each case with `--follow none`, `packet` and `conn` (tp_btf,
/// with ct in the sender's namespace only, so that the replies carry no entry and
/// `--follow conn` finds them by their tuple).
fn follow_table() {
    let filter = |expr: &str| KernelFilters {
        packet: Some(expr.parse().expect("valid filter")),
        ..Default::default()
    };
    let cases = [
        (
            "every hit rejected by -f 'tcp port 9' (nothing followed)",
            "tcp port 9",
        ),
        (
            "-f 'dst host 10.201.0.2': requests selected, replies not",
            "dst host 10.201.0.2",
        ),
    ];
    println!("| case (tp_btf, net:net_dev_start_xmit, ping -f -c {}) | --follow | ours ns/hit | floor ns/hit | ratio | hits | events | lost |", pings());
    println!("|---|---|---|---|---|---|---|---|");
    for (case, expr) in cases {
        for follow in [Follow::None, Follow::Packet, Follow::Conn] {
            let row = per_hit_omitting("fo", true, filter(expr), None, false, &[], follow);
            print_row(case, &follow.to_string(), row);
        }
    }
    println!();
}

fn main() {
    let steps = std::env::args().skip(1).any(|a| a == "--steps");
    let _stats = match BpfStats::enable() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kernel_cost: cannot enable bpf stats (run as root): {e}");
            std::process::exit(1);
        }
    };
    if steps {
        step_table(3);
        if std::env::var_os("CT_BENCH_STEPS_ONLY").is_some() {
            return;
        }
    }
    if std::env::args().skip(1).any(|a| a == "--follow") {
        follow_table();
        return;
    }
    let ct_filter = KernelFilters {
        ct: CtFilter {
            states: Some(vec![ct_core::CtState::Related]),
            ..Default::default()
        },
        ..Default::default()
    };
    let packet_filter = KernelFilters {
        packet: Some("tcp port 9".parse().expect("valid filter")),
        ..Default::default()
    };
    let none = KernelFilters::default;
    let cases = [
        ("with ct, reported", true, none(), None),
        ("no ct, reported", false, none(), None),
        (
            "rejected by -f 'tcp port 9' (address/port filter)",
            true,
            packet_filter,
            None,
        ),
        (
            "rejected by -f 'tcp port 9' (libpcap)",
            true,
            none(),
            Some("tcp port 9"),
        ),
        (
            "reported through -f 'icmp' (libpcap)",
            true,
            none(),
            Some("icmp"),
        ),
        (
            "rejected by -f 'tcp[tcpflags] & tcp-syn != 0' (libpcap)",
            true,
            none(),
            Some("tcp[tcpflags] & tcp-syn != 0"),
        ),
        ("rejected by --ct-state related", true, ct_filter, None),
    ];
    println!("| case (tp:net:net_dev_start_xmit, ping -f -c {}) | attached as | ours ns/hit | floor ns/hit | ratio | hits | events | lost |", pings());
    println!("|---|---|---|---|---|---|---|---|");
    for (case, conntrack, filters, pcap) in cases {
        for raw in [false, true] {
            let mode = if raw { "raw_tp" } else { "tp_btf" };
            print_row(
                case,
                mode,
                per_hit(case, conntrack, filters.clone(), pcap, raw),
            );
        }
    }
}
