//! Kernel cost per probe hit and end-to-end collection cost, under fixed traffic in
//! network namespaces this program creates (and always removes).
//!
//! Per hit: `run_time_ns / run_cnt` from `kernel.bpf_stats_enabled=1` for our program on
//! `net:net_dev_start_xmit`, beside an empty program attached to the same tracepoint in
//! the same run (the floor), for four cases: packet with ct reported, packet without ct,
//! packet rejected by `-f`, packet rejected by a ct filter. bpf_stats is restored after.
//!
//! End to end: `ct-cli collect -o FILE` under `ping -f`: events/s written, lost, CPU per
//! event (getrusage of the child), peak RSS.
//!
//! Run as root: `benches/kernel.sh` (builds release first). Prints one Markdown table.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ct_bpf::{CollectorBuilder, KernelFilters, OmitStep, ProbeSpec};
use ct_core::filter::CtFilter;

const PINGS: &str = "20000";

struct Netns {
    names: [String; 2],
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Two namespaces over a veth pair, 10.201.0.1 <-> 10.201.0.2; with `conntrack`, an
    /// nftables rule in the sender makes conntrack attach to its packets.
    fn new(tag: &str, conntrack: bool) -> Result<Self, String> {
        let pid = std::process::id();
        let a = format!("ctbench-{pid}-{tag}-a");
        let b = format!("ctbench-{pid}-{tag}-b");
        let ns = Netns {
            names: [a.clone(), b.clone()],
        };
        sh(&["ip", "netns", "add", &a])?;
        sh(&["ip", "netns", "add", &b])?;
        sh(&[
            "ip", "link", "add", "v0", "netns", &a, "type", "veth", "peer", "name", "v1", "netns",
            &b,
        ])?;
        for (n, dev, addr) in [(&a, "v0", "10.201.0.1/24"), (&b, "v1", "10.201.0.2/24")] {
            sh(&["ip", "-n", n, "addr", "add", addr, "dev", dev])?;
            sh(&["ip", "-n", n, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", n, "link", "set", "lo", "up"])?;
        }
        if conntrack {
            let mut child = Command::new("ip")
                .args(["netns", "exec", &a, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            child
                .stdin
                .take()
                .ok_or("nft stdin")?
                .write_all(
                    b"table inet bench {\n chain out {\n  type filter hook output priority 0;\n  ct state new,established accept\n }\n}\n",
                )
                .map_err(|e| e.to_string())?;
            if !child.wait().map_err(|e| e.to_string())?.success() {
                return Err("nft failed".into());
            }
        }
        Ok(ns)
    }

    fn ping_flood(&self) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.names[0],
            "ping",
            "-f",
            "-q",
            "-c",
            PINGS,
            "10.201.0.2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

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
    case: &'static str,
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
    per_hit_omitting(case, conntrack, filters, pcap, raw, &[])
}

/// One flood with our program (less `omit`, when given) and the empty one beside it.
fn per_hit_omitting(
    case: &'static str,
    conntrack: bool,
    filters: KernelFilters,
    pcap: Option<&str>,
    raw: bool,
    omit: &[OmitStep],
) -> Result<Row, String> {
    let ns = Netns::new(&case[..2], conntrack)?;
    let xmit: ProbeSpec = "tp:net:net_dev_start_xmit"
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut builder = CollectorBuilder::new().probe(xmit).filters(filters);
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
    let no_read = std::env::var_os("CT_BENCH_NO_READ").is_some();
    loop {
        if no_read {
            let _ = ping.wait();
            break;
        }
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
    collector
        .poll_raw(Duration::ZERO, |_| events += 1)
        .map_err(|e| e.to_string())?;
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
        case,
        ours: ours.ns_per_hit().unwrap_or(0.0),
        floor: floor.ns_per_hit().unwrap_or(0.0),
        hits: ours.run_cnt,
        events,
        lost: collector.lost().map_err(|e| e.to_string())?,
    })
}

/// VmRSS of a process, in KiB.
fn vm_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct EndToEnd {
    rss_collecting_kb: u64,
    events: u64,
    lost: String,
    secs: f64,
    cpu_ns_per_event: f64,
    max_rss_kb: i64,
}

fn end_to_end(cli: &str) -> Result<EndToEnd, String> {
    let ns = Netns::new("e2e", true)?;
    let dir = std::env::temp_dir().join(format!("ctbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join("events.json");
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new(cli)
        .args([
            "collect",
            "-p",
            "tp:net:net_dev_start_xmit",
            "-p",
            "tp:net:netif_receive_skb",
            "-o",
        ])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cli}: {e}"))?;
    // Wait for the readiness line.
    let mut stderr = child.stderr.take().ok_or("stderr")?;
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains('\n') {
        use std::io::Read;
        if stderr.read(&mut byte).map_err(|e| e.to_string())? == 0 {
            return Err(format!(
                "ct-cli exited before attaching: {}",
                String::from_utf8_lossy(&seen)
            ));
        }
        seen.push(byte[0]);
    }
    let start = Instant::now();
    let mut ping = ns.ping_flood().spawn().map_err(|e| e.to_string())?;
    // Resident memory while collecting, sampled during the flood.
    let mut rss_kb = 0u64;
    let status = loop {
        if let Some(status) = ping.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        rss_kb = rss_kb.max(vm_rss_kb(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300));
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err("ping -f failed".into());
    }
    // SAFETY: kill with a valid pid of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut rest = String::new();
    {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut rest);
    }
    // wait4 gives this child's own usage (getrusage(RUSAGE_CHILDREN) would add ping's).
    // SAFETY: wait4 on our own child's pid, writing into structs we own.
    let usage = unsafe {
        let mut status = 0;
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::wait4(child.id() as i32, &mut status, 0, &mut u) < 0 {
            return Err(format!("wait4: {}", std::io::Error::last_os_error()));
        }
        u
    };
    let events = std::fs::read_to_string(&out)
        .map_err(|e| e.to_string())?
        .lines()
        .count() as u64;
    let lost = rest
        .lines()
        .rev()
        .find(|l| l.contains("lost"))
        .unwrap_or("?")
        .to_owned();
    let cpu = usage.ru_utime.tv_sec as f64
        + usage.ru_utime.tv_usec as f64 / 1e6
        + usage.ru_stime.tv_sec as f64
        + usage.ru_stime.tv_usec as f64 / 1e6;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(EndToEnd {
        rss_collecting_kb: rss_kb,
        events,
        lost,
        secs,
        cpu_ns_per_event: if events > 0 {
            cpu * 1e9 / events as f64
        } else {
            0.0
        },
        max_rss_kb: usage.ru_maxrss,
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
            match per_hit_omitting("st", true, KernelFilters::default(), None, false, &omit) {
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

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let steps = args
        .iter()
        .position(|a| a == "--steps")
        .map(|i| args.remove(i));
    let cli = args.first().cloned();
    let _stats = match BpfStats::enable() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kernel_cost: cannot enable bpf stats (run as root): {e}");
            std::process::exit(1);
        }
    };
    if steps.is_some() {
        step_table(3);
        if std::env::var_os("CT_BENCH_STEPS_ONLY").is_some() {
            return;
        }
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
    println!("| case (tp:net:net_dev_start_xmit, ping -f -c {PINGS}) | attached as | ours ns/hit | floor ns/hit | ratio | hits | events | lost |");
    println!("|---|---|---|---|---|---|---|---|");
    for (case, conntrack, filters, pcap) in cases {
        for raw in [false, true] {
            let mode = if raw { "raw_tp" } else { "tp_btf" };
            match per_hit(case, conntrack, filters.clone(), pcap, raw) {
                Ok(r) => println!(
                    "| {} | {mode} | {:.0} | {:.0} | {:.2}x | {} | {} | {} |",
                    r.case,
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
    }
    if let Some(cli) = cli {
        println!();
        println!("| end to end (ct-cli collect -o, xmit + netif_receive_skb, ping -f -c {PINGS}) | value |");
        println!("|---|---|");
        match end_to_end(&cli) {
            Ok(e) => {
                println!("| events written | {} |", e.events);
                println!("| events/s | {:.0} |", e.events as f64 / e.secs);
                println!("| CPU per event written | {:.0} ns |", e.cpu_ns_per_event);
                println!(
                    "| RSS while collecting (max of samples) | {:.1} MB |",
                    e.rss_collecting_kb as f64 / 1024.0
                );
                println!(
                    "| peak RSS, start-up included (ru_maxrss) | {:.1} MB |",
                    e.max_rss_kb as f64 / 1024.0
                );
                println!("| summary line | {} |", e.lost);
            }
            Err(e) => println!("| error | {e} |"),
        }
    }
}
