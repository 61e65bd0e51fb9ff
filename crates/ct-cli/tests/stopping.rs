//! Stopping `collect` on time and leaving nothing behind (issue 31): Ctrl-C during a flood
//! whose events go to a slow reader returns within seconds with the output complete; a
//! `--cmd` pipeline is gone when ct-cli exits; the command's output never lands inside
//! the events written to stdout.
//!
//! Needs root, kernel BTF, conntrack and the lab's tools. Where something is missing the
//! tests print why and skip; with `CT_REQUIRE_KERNEL_TESTS=1` a skip is a failure.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use ct_lab::{Collect, Node, ROUTER_C4, SERVER4};
use support::*;

/// How long Ctrl-C may take to end a collection: what is in the ring buffer when it comes
/// (2 MiB, about 4,200 events) plus the read in progress, written to a reader taking
/// about 1.6 MB a second.
const STOP_LIMIT: Duration = Duration::from_secs(8);

/// Reads `pipe` slowly (16 KiB every 10 ms) to its end, on a thread of its own.
fn read_slowly(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        all
    })
}

#[test]
fn ctrl_c_during_a_flood_to_a_slow_reader_returns_within_seconds_with_the_output_complete() {
    // What is tested is user space (stopping, draining, writing); under emulation a flood
    // beside the other cases once ended a 6.12 VM of the matrix (unexplained, it passed
    // there alone): the matrix's quick mode leaves it to the host.
    if ct_lab::quick_kernel_tests() {
        eprintln!("skipping: the flood case runs on the host only (CT_QUICK_KERNEL_TESTS)");
        return;
    }
    let Some(k) = KernelLab::start("stopping-flood") else {
        return;
    };
    let netns = k.router_netns();
    let mut collect = Collect::start(CT_CLI, &["--netns", &netns, "--format", "singleline"]);
    collect.wait_ready();
    let reader = read_slowly(collect.child.stdout.take().expect("stdout piped"));
    let router = ROUTER_C4.to_string();
    // Without a count: the flood goes on until the test ends it, after ct-cli has exited.
    let flood = k
        .lab
        .spawn(Node::Client, &["ping", "-f", "-q", &router])
        .expect("ping -f");
    // Long enough for the pipe and ct-cli's buffers to fill: from here on the kernel
    // writes events much faster than they leave.
    std::thread::sleep(Duration::from_secs(2));
    let stopped = Instant::now();
    collect.signal(libc::SIGINT);
    let (status, _, stderr) = collect.finish(Duration::from_secs(60));
    let took = stopped.elapsed();
    drop(flood);
    let output = reader.join().expect("the reader");
    eprintln!(
        "measured: Ctrl-C to exit {took:?}, {} bytes written",
        output.len()
    );
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    assert!(
        took < STOP_LIMIT,
        "Ctrl-C took {took:?} to end the collection (limit {STOP_LIMIT:?})"
    );
    assert!(!output.is_empty(), "no events written");
    assert_eq!(output.last(), Some(&b'\n'), "the output ends inside a line");
    let text = String::from_utf8(output).expect("UTF-8 text");
    let lines = text.lines().count() as u64;
    let (events, _, _) = summary(&stderr);
    assert_eq!(
        lines, events,
        "the summary counts {events} events, the output has {lines} lines"
    );
    assert!(text.lines().all(|l| !l.trim().is_empty()));
}

fn unique_marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("ct-stop-{what}-{}-{nanos}", std::process::id())
}

#[test]
fn a_cmd_pipeline_leaves_no_process_behind() {
    let Some(k) = KernelLab::start("stopping-cmd") else {
        return;
    };
    let netns = netns_arg(&k.lab, Node::Client);
    let file = k.scratch.path("events.json");
    let marker = unique_marker("pipeline");
    // `sleep` carries the marker in its environment, `cat` on its command line.
    let command = format!("CT_TEST_MARK={marker} sleep 60 | cat - {marker}");
    let collect = Collect::start(
        CT_CLI,
        &[
            "-o",
            file.to_str().unwrap(),
            "--netns",
            &netns,
            "--duration",
            "1s",
            "--cmd",
            &command,
        ],
    );
    let (status, _, stderr) = collect.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    assert!(
        summary_line(&stderr).contains("was stopped by ct-cli (SIGTERM)"),
        "{}",
        summary_line(&stderr)
    );
    assert_eq!(
        ct_lab::processes_holding(&marker),
        Vec::<String>::new(),
        "left running"
    );
}

#[test]
fn the_command_output_never_lands_inside_events_on_stdout() {
    let Some(k) = KernelLab::start("stopping-stdout") else {
        return;
    };
    let client = k.lab.name(Node::Client).to_owned();
    let netns = netns_arg(&k.lab, Node::Client);
    let marker = unique_marker("output");
    // Its packets make events while it prints.
    let command =
        format!("ip netns exec {client} ping -n -c 20 -i 0.01 {SERVER4}; echo {marker}-done");
    let collect = Collect::start(
        CT_CLI,
        &[
            "--netns",
            &netns,
            "--format",
            "singleline",
            "--cmd",
            &command,
        ],
    );
    let (status, stdout, stderr) = collect.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    let (events, _, _) = summary(&stderr);
    assert!(events > 0, "no events");
    assert_eq!(stdout.lines().count() as u64, events, "{stdout}");
    assert!(
        !stdout.contains(&marker) && !stdout.contains("bytes from"),
        "the command's output is among the events:\n{stdout}"
    );
    assert!(
        stderr.iter().any(|l| l == &format!("{marker}-done")),
        "the command's output is on stderr: {stderr:?}"
    );
}
