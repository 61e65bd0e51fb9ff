//! End-to-end cost of `ct-cli collect` under `ping -f` through two probes, against the
//! floor of the same run: writing the same bytes to a file of the same directory with
//! large writes.
//!
//! For each output (`-o FILE`: JSON Lines; single-line text on stdout redirected to a
//! file): events written, lost (the summary line), CPU per event while collecting
//! (ct-cli's run time from its readiness line to the end of the flood, all threads) and
//! over the whole run (start-up included, from wait4), the floor's CPU per event and
//! the ratio, resident memory while collecting (sampled) and at its peak before it is
//! stopped (`VmHWM`: start-up included).
//!
//! Run as root: `benches/kernel.sh` (builds release first), or
//! `target/release/end_to_end target/release/ct-cli`.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ct_benches::{pings, rounds, vm_hwm_kb, vm_rss_kb, write_floor, Netns};

/// What `collect` writes, and where.
#[derive(Clone, Copy)]
enum Output {
    /// `-o FILE`.
    Json,
    /// `--format singleline`, stdout redirected to the file.
    SingleLine,
}

impl Output {
    fn label(self) -> &'static str {
        match self {
            Output::Json => "-o FILE (JSON Lines)",
            Output::SingleLine => "--format singleline > FILE",
        }
    }
}

struct Measured {
    events: u64,
    bytes: u64,
    secs: f64,
    cpu_ns_per_event: f64,
    /// Start-up (BTF, loading, attaching) and exit included.
    cpu_ns_per_event_whole_run: f64,
    floor_ns_per_event: f64,
    rss_collecting_kb: u64,
    max_rss_kb: u64,
    summary: String,
}

/// CPU time of every thread of process `pid` so far, in nanoseconds (the scheduler's
/// run time, `/proc/PID/task/*/schedstat`: nanoseconds, where `stat` counts ticks).
fn process_cpu_ns(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = task.map_err(|e| e.to_string())?.path().join("schedstat");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

fn run(cli: &str, output: Output) -> Result<Measured, String> {
    let ns = Netns::new("e2e", true)?;
    let dir = std::env::temp_dir().join(format!("ctbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join("events");
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new(cli);
    cmd.args([
        "collect",
        "-p",
        "tp:net:net_dev_start_xmit",
        "-p",
        "tp:net:netif_receive_skb",
    ]);
    match output {
        Output::Json => {
            cmd.arg("-o").arg(&out).stdout(Stdio::null());
        }
        Output::SingleLine => {
            let file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
            cmd.args(["--format", "singleline"]).stdout(file);
        }
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cli}: {e}"))?;
    // Wait for the readiness line.
    let mut stderr = child.stderr.take().ok_or("stderr")?;
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.contains(&b'\n') {
        if stderr.read(&mut byte).map_err(|e| e.to_string())? == 0 {
            return Err(format!(
                "ct-cli exited before attaching: {}",
                String::from_utf8_lossy(&seen)
            ));
        }
        seen.push(byte[0]);
    }
    let start = Instant::now();
    let cpu_at_start = process_cpu_ns(child.id())?;
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
    let cpu_collecting = process_cpu_ns(child.id())? - cpu_at_start;
    if !status.success() {
        return Err("ping -f failed".into());
    }
    // Start-up included, exit not (the summary and detaching come after).
    let peak_kb = vm_hwm_kb(child.id()).unwrap_or(0);
    // SAFETY: kill with a valid pid of our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
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
    let data = std::fs::read(&out).map_err(|e| e.to_string())?;
    let events = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let floor = write_floor(&data, events, &out)?;
    let summary = rest
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
    Ok(Measured {
        events,
        bytes: data.len() as u64,
        secs,
        cpu_ns_per_event: cpu_collecting as f64 / events.max(1) as f64,
        cpu_ns_per_event_whole_run: cpu * 1e9 / events.max(1) as f64,
        floor_ns_per_event: floor,
        rss_collecting_kb: rss_kb,
        max_rss_kb: peak_kb,
        summary,
    })
}

fn main() {
    let Some(cli) = std::env::args().nth(1) else {
        eprintln!("usage: end_to_end PATH/TO/ct-cli (as root)");
        std::process::exit(2);
    };
    println!("| end to end (ct-cli collect, tp:net:net_dev_start_xmit + tp:net:netif_receive_skb, ping -f -c {}) | events | B/event | events/s | CPU/event collecting | write floor/event | ratio | CPU/event, whole run | RSS collecting | peak RSS | summary |", pings());
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let outputs = [Output::Json, Output::SingleLine];
    for output in (0..rounds()).flat_map(|_| outputs) {
        match run(&cli, output) {
            Ok(m) => println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} ns | {:.0} ns | {:.2}x | {:.0} ns | {:.1} MB | {:.1} MB | {} |",
                output.label(),
                m.events,
                m.bytes as f64 / m.events.max(1) as f64,
                m.events as f64 / m.secs,
                m.cpu_ns_per_event,
                m.floor_ns_per_event,
                if m.floor_ns_per_event > 0.0 {
                    m.cpu_ns_per_event / m.floor_ns_per_event
                } else {
                    0.0
                },
                m.cpu_ns_per_event_whole_run,
                m.rss_collecting_kb as f64 / 1024.0,
                m.max_rss_kb as f64 / 1024.0,
                m.summary.trim_start_matches("ct-cli: "),
            ),
            Err(e) => println!("| {} | error: {e} | | | | | | | | | |", output.label()),
        }
    }
}
