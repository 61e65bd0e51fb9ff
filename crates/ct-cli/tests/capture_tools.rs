//! The capture tools against real traffic in the ct-lab topology: `collect -w` (pcapng read
//! back with stock tshark and held to the JSON events of the same run), `ct-cli pcap` on
//! the `--raw-headers` file of that run.
//!
//! Needs root, kernel BTF, conntrack, the lab's tools and tshark. Where something is
//! missing the tests print why and skip; with `CT_REQUIRE_KERNEL_TESTS=1` a skip is a
//! failure.

mod support;
#[path = "support/tshark.rs"]
mod tshark;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ct_core::{CtState, Event};
use ct_lab::{Lab, Node, ROUTER_C4, SERVER4};
use support::*;

/// TCP through DNAT, UDP through DNAT, ICMP through masquerade: every kind of packet the
/// pcapng test compares, in the router's namespace.
fn traffic(lab: &Lab) {
    lab.tcp_exchange(SERVER4.into(), 80, ROUTER_C4.into(), 8080)
        .expect("tcp through DNAT");
    lab.udp_exchange(SERVER4.into(), 53, ROUTER_C4.into(), 5353, 3)
        .expect("udp through DNAT");
    let ping = lab.ping(Node::Client, SERVER4.into(), 3).expect("ping");
    assert!(ping.success());
}

fn with_ip_and_bytes(events: &[Event]) -> impl Iterator<Item = &Event> {
    events.iter().filter(|e| {
        e.packet
            .as_ref()
            .is_some_and(|p| p.ip.is_some() && p.headers.is_some())
    })
}

/// A kernel lab (its router doing NAT if `nat`) for a test that reads what it captured
/// with tshark; `None` when either cannot be had here (the gate said why).
fn capture_lab(name: &str, nat: bool) -> Option<KernelLab> {
    let test = if nat {
        KernelLab::with_nat(name)
    } else {
        KernelLab::start(name)
    }?;
    tshark::available().then_some(test)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

#[test]
fn collect_w_writes_what_tshark_decodes_as_the_json_says() {
    let Some(nat) = capture_lab("pcapng", true) else {
        return;
    };
    let (lab, scratch) = (&nat.lab, &nat.scratch);
    let json = scratch.path("events.json");
    let capture = scratch.path("events.pcapng");
    let with_capture = ["--raw-headers", "-w", capture.to_str().unwrap()];
    let mut collect = collect_to(&json, &nat.router_netns(), &with_capture);
    collect.wait_ready();
    traffic(lab);
    let (stdout, stderr) = collect.stop_cleanly();
    assert!(stdout.is_empty(), "-o and -w print nothing on stdout");
    assert_eq!((mode(&json), mode(&capture)), (0o600, 0o600));

    let events = read_file(&json);
    let packets = with_ip_and_bytes(&events).count();
    assert!(
        packets >= 30,
        "{packets} packets of {} events",
        events.len()
    );
    assert!(
        events.iter().all(|e| e
            .packet
            .as_ref()
            .is_none_or(|p| p.headers.is_some() == p.ip.is_some())),
        "--raw-headers: every event with an IP header has its bytes, no other has"
    );
    let summary = summary_line(&stderr);
    let (written, _, lost) = support::summary(&stderr);
    assert_eq!(written, events.len() as u64);
    assert_eq!(lost, 0, "{summary}");
    assert!(
        summary.contains(&format!(
            "; {packets} packets written to {} ({} events not written: {} without an IP header)",
            capture.display(),
            events.len() - packets,
            events.len() - packets
        )) || (packets == events.len()
            && summary.ends_with(&format!(
                "; {packets} packets written to {}",
                capture.display()
            ))),
        "{summary}"
    );

    // Wall-clock timestamps: one offset from the events' monotonic clock for the run.
    let first = &tshark::read(&capture, "")[0];
    let epoch_ns: i128 = first
        .get("frame.time_epoch")
        .unwrap()
        .replace('.', "")
        .parse()
        .unwrap();
    let first_event = with_ip_and_bytes(&events).next().unwrap();
    let offset = (epoch_ns - i128::from(first_event.timestamp.unwrap())) as i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    assert!(
        (now - epoch_ns).abs() < 120_000_000_000,
        "capture times are now, not since boot"
    );
    tshark::assert_matches(&capture, &events, offset);

    for (state, name) in [(CtState::New, "NEW"), (CtState::Established, "ESTABLISHED")] {
        let selected = tshark::read(
            &capture,
            &format!("frame.comment contains \"ct_state {name}\""),
        );
        let expected = with_ip_and_bytes(&events)
            .filter(|e| e.ct.as_ref().is_some_and(|ct| ct.state == state))
            .count();
        assert!(expected > 0, "no {name} packet in the run");
        assert_eq!(selected.len(), expected, "ct_state {name}");
    }

    // The same events, later, from the --raw-headers file.
    let later = scratch.path("later.pcapng");
    ct_cli_ok(&[
        "pcap",
        json.to_str().unwrap(),
        "-o",
        later.to_str().unwrap(),
    ]);
    tshark::assert_matches(&later, &events, 0);
    eprintln!(
        "measured: {} events, {packets} packets in the capture ({} bytes, JSON with headers {} \
         bytes)",
        events.len(),
        std::fs::metadata(&capture).unwrap().len(),
        std::fs::metadata(&json).unwrap().len()
    );
}

/// `-w` alone: nothing on stdout, JSON untouched by header bytes when asked for both
/// without --raw-headers.
#[test]
fn collect_w_alone_and_json_without_raw_headers() {
    let Some(nat) = capture_lab("pcapng-alone", true) else {
        return;
    };
    let (lab, scratch, netns) = (&nat.lab, &nat.scratch, nat.router_netns());
    let json = scratch.path("events.json");
    let capture = scratch.path("events.pcapng");
    let mut collect = collect_to(
        &json,
        &netns,
        &["-w", capture.to_str().unwrap(), "-f", "icmp"],
    );
    collect.wait_ready();
    let ping = lab.ping(Node::Client, SERVER4.into(), 2).expect("ping");
    assert!(ping.success());
    let (stdout, _) = collect.stop_cleanly();
    assert!(stdout.is_empty());
    let events = read_file(&json);
    assert!(events.len() >= 8, "{} events", events.len());
    assert!(
        std::fs::read_to_string(&json)
            .unwrap()
            .lines()
            .all(|l| !l.contains("\"headers\"")),
        "no header bytes in the JSON without --raw-headers"
    );
    let decoded = tshark::read(&capture, "icmp");
    assert_eq!(decoded.len(), events.len(), "every ICMP event is a packet");

    // -w alone.
    let only = scratch.path("only.pcapng");
    let mut collect = start_collect(&[
        "-w",
        only.to_str().unwrap(),
        "--netns",
        &netns,
        "-f",
        "icmp",
    ]);
    collect.wait_ready();
    let ping = lab.ping(Node::Client, SERVER4.into(), 1).expect("ping");
    assert!(ping.success());
    let (stdout, stderr) = collect.stop_cleanly();
    assert!(
        stdout.is_empty(),
        "-w alone prints nothing on stdout: {stdout}"
    );
    let (events, _, _) = support::summary(&stderr);
    assert!(events >= 4);
    assert_eq!(tshark::read(&only, "").len() as u64, events);
}

/// `count` echo requests from the client to the server, `interval` seconds apart.
fn ping_burst(lab: &Lab, count: u32, interval: &str) {
    let count_s = count.to_string();
    let server = SERVER4.to_string();
    let out = lab
        .exec_timeout(
            Node::Client,
            &[
                "ping", "-n", "-q", "-c", &count_s, "-i", interval, "-W", "1", &server,
            ],
            Duration::from_secs(60),
        )
        .expect("ping runs");
    assert!(out.success(), "ping failed");
}

/// The lines of FILE.n ... FILE.1, FILE (oldest first), each file checked: mode 0600,
/// ending with a complete line, old ones at least `size` bytes and less than one event
/// more.
fn rotated_lines(path: &Path, rotations: u32, size: u64) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut lines = Vec::new();
    for n in (0..=rotations).rev() {
        let file = if n == 0 {
            path.to_owned()
        } else {
            Path::new(&format!("{}.{n}", path.display())).to_owned()
        };
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends mid-line",
            file.display()
        );
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        if n > 0 {
            let len = text.len() as u64;
            assert!(
                (size..size + 2048).contains(&len),
                "{}: {len} bytes",
                file.display()
            );
        }
        names.push(file.display().to_string());
        lines.extend(text.lines().map(str::to_owned));
    }
    (names, lines)
}

/// The number in `rotated N time(s)` of the summary line.
fn rotations(summary: &str) -> u32 {
    let at = summary
        .find(" rotated ")
        .unwrap_or_else(|| panic!("no rotation in {summary}"));
    summary[at + 9..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A collection of 200 ICMP echoes and their replies to `file`, rotated every 8 KiB and
/// keeping `keep` old files, printing the JSON stream too: stdout, stderr, the summary
/// line and the number of rotations it reports.
fn rotating_run(
    lab: &Lab,
    file: &Path,
    netns: &str,
    keep: u32,
) -> (String, Vec<String>, String, u32) {
    let keep = keep.to_string();
    let rotation = ["--rotate-size", "8k", "--rotate-count", &keep];
    let printing = ["--print", "--format", "json", "-f", "icmp"];
    let mut collect = collect_to(file, netns, &[&rotation[..], &printing[..]].concat());
    collect.wait_ready();
    ping_burst(lab, 200, "0.005");
    let (stdout, stderr) = collect.stop_cleanly();
    let summary = summary_line(&stderr).to_owned();
    let n = rotations(&summary);
    (stdout, stderr, summary, n)
}

#[test]
fn rotation_keeps_every_event_exactly_once() {
    let Some(test) = KernelLab::start("rotate") else {
        return;
    };
    let (lab, scratch) = (&test.lab, &test.scratch);
    let netns = format!("/var/run/netns/{}", lab.name(Node::Client));
    const SIZE: u64 = 8192;

    // Enough old files for all: the files together are the stream --print showed.
    let file = scratch.path("events.json");
    let (stdout, stderr, summary, n) = rotating_run(lab, &file, &netns, 1000);
    assert!(n >= 5, "{summary}");
    assert!(!Path::new(&format!("{}.{}", file.display(), n + 1)).exists());
    let (names, lines) = rotated_lines(&file, n, SIZE);
    let printed: Vec<&str> = stdout.lines().collect();
    assert!(printed.len() >= 400, "{} events", printed.len());
    assert_eq!(
        lines.len(),
        printed.len(),
        "every event is in exactly one file"
    );
    assert!(
        lines == printed,
        "the files, oldest first, are the stream in order"
    );
    let (events, _, lost) = support::summary(&stderr);
    assert_eq!((events, lost), (printed.len() as u64, 0), "{summary}");

    // print/sort/conns read the files as one stream: as the whole stream in one file.
    let whole = scratch.path("whole.json");
    std::fs::write(&whole, &stdout).unwrap();
    for command in ["print", "sort", "conns"] {
        let run = |files: &[&str]| ct_cli_ok(&[&[command], files].concat());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(
            run(&names) == run(&[whole.to_str().unwrap()]),
            "{command} of the rotated files"
        );
    }

    // A count: only the newest old files are kept, and they end the stream.
    let file = scratch.path("kept.json");
    let (stdout, _, summary, n) = rotating_run(lab, &file, &netns, 2);
    assert!(n > 2, "{summary}");
    assert!(
        summary.contains(&format!("({} older files replaced)", n - 2)),
        "{summary}"
    );
    assert!(!Path::new(&format!("{}.3", file.display())).exists());
    let (_, lines) = rotated_lines(&file, 2, SIZE);
    let printed: Vec<&str> = stdout.lines().collect();
    assert!(printed.ends_with(&lines.iter().map(String::as_str).collect::<Vec<_>>()));
    eprintln!(
        "measured: {} events in {} files of 8 KiB and the current one; with --rotate-count 2, \
         {} of {} events kept",
        events,
        names.len() - 1,
        lines.len(),
        printed.len()
    );

    // Old files of that run are refused by the next, and removed with --force.
    let file = file.to_str().unwrap();
    let rotation = ["--rotate-size", "8k", "--rotate-count", "2"];
    let out = ct_cli(&[&["collect", "-o", file, "--netns", &netns][..], &rotation].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = support::stderr(&out);
    assert!(err.contains("already exists"), "{err}");
}

/// The pid in `ct-cli: running `...` (pid N)`.
fn command_pid(stderr: &[String]) -> u32 {
    let line = stderr
        .iter()
        .find(|l| l.starts_with("ct-cli: running `"))
        .unwrap_or_else(|| panic!("no command line in:\n{}", stderr.join("\n")));
    line.rsplit("(pid ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap()
}

#[test]
fn cmd_traces_one_command_end_to_end() {
    let Some(test) = KernelLab::start("cmd") else {
        return;
    };
    let (lab, scratch) = (&test.lab, &test.scratch);
    let client = lab.name(Node::Client).to_owned();
    let netns = format!("/var/run/netns/{client}");

    // The command's packets, from its first to its last, and ct-cli ends with it.
    let file = scratch.path("ping.json");
    let command = format!("ip netns exec {client} ping -n -q -c 3 -i 0.2 {SERVER4}");
    let started = std::time::Instant::now();
    let collect = start_collect(&[
        "-o",
        file.to_str().unwrap(),
        "--netns",
        &netns,
        "-f",
        "icmp",
        "-p",
        "tp:net:net_dev_start_xmit",
        "--cmd",
        &command,
    ]);
    let (status, stdout, stderr) = collect.finish(Duration::from_secs(30));
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    assert!(
        stderr[0].starts_with("ct-cli: attached 1 probe"),
        "{stderr:?}"
    );
    assert!(
        stderr[1].starts_with(&format!("ct-cli: running `{command}` (pid ")),
        "{stderr:?}"
    );
    // ping's own output goes where ct-cli's stdout goes.
    assert!(
        stdout.contains("3 packets transmitted, 3 received"),
        "{stdout}"
    );
    let summary = summary_line(&stderr);
    assert!(
        summary.ends_with(&format!("; command `{command}` exited with status 0")),
        "{summary}"
    );
    let events = read_file(&file);
    let requests = events
        .iter()
        .filter(|e| {
            e.packet
                .as_ref()
                .is_some_and(|p| matches!(p.l4, Some(ct_core::PacketL4::Icmp { icmp_type: 8, .. })))
        })
        .count();
    assert_eq!(
        requests, 3,
        "every echo request the command sent, the first one too"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "ct-cli ended with the command: {elapsed:?}"
    );

    // A failing command: its status in the summary, ct-cli's own exit code still 0.
    let collect = start_collect(&["--netns", &netns, "-f", "icmp", "--cmd", "exit 3"]);
    let (status, _, stderr) = collect.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    assert!(summary_line(&stderr).ends_with("; command `exit 3` exited with status 3"));

    // Ctrl-C (SIGINT to ct-cli alone, as kill would send it) stops the command too.
    let mut collect = start_collect(&["--netns", &netns, "--cmd", "exec sleep 60"]);
    collect.wait_ready();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !collect.stderr_has("ct-cli: running `") {
        assert!(std::time::Instant::now() < deadline, "no command line");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = std::time::Instant::now();
    collect.signal(libc::SIGINT);
    let (status, _, stderr) = collect.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    assert!(
        summary_line(&stderr)
            .ends_with("; command `exec sleep 60` was stopped by ct-cli (SIGTERM)"),
        "{}",
        summary_line(&stderr)
    );
    assert!(stopped.elapsed() < Duration::from_secs(5));
    let pid = command_pid(&stderr);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the command is gone"
    );

    // An empty command is a usage error.
    let out = ct_cli(&["collect", "--cmd", " "]);
    assert_eq!(out.status.code(), Some(2));
    assert!(support::stderr(&out).contains("the command is empty"));
}

/// A full disk under `-w`: collection stops with the reason, and the capture keeps whole
/// blocks that tshark reads without a complaint.
#[test]
fn disk_full_keeps_a_readable_capture() {
    let Some(test) = capture_lab("pcapng-full", false) else {
        return;
    };
    let (lab, scratch) = (&test.lab, &test.scratch);
    let mount = scratch.path("tiny");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8k,mode=0700", "ctcli-test"])
        .arg(&mount)
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "mounting a tiny tmpfs failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());

    let capture = mount.join("full.pcapng");
    let netns = format!("/var/run/netns/{}", lab.name(Node::Client));
    let command = format!(
        "ip netns exec {} ping -n -q -c 200 -i 0.01 {SERVER4}",
        lab.name(Node::Client)
    );
    let collect = start_collect(&[
        "-w",
        capture.to_str().unwrap(),
        "--netns",
        &netns,
        "-f",
        "icmp",
        "--cmd",
        &command,
    ]);
    let (status, _, stderr) = collect.finish(Duration::from_secs(60));
    let text = stderr.join("\n");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("collection stopped"), "{text}");
    assert!(
        text.contains("was stopped by ct-cli"),
        "the command stops with collection: {text}"
    );
    let packets = tshark::read(&capture, "");
    assert!(packets.len() >= 10, "what fit is kept: {}", packets.len());
    assert!(tshark::malformed(&capture).is_empty());
}

/// `--nft` with `-w`: the verdicts are packets too, their comment the rule that decided,
/// on the interface of the BPF events of the same device.
#[test]
fn nft_verdicts_are_packets_with_their_rule() {
    let Some(test) = capture_lab("pcapng-nft", false) else {
        return;
    };
    let (lab, scratch) = (&test.lab, &test.scratch);
    lab.nft(
        Node::Server,
        "table inet f {\n  chain in {\n    type filter hook input priority filter; policy accept;\n    \
         tcp dport 81 counter drop\n  }\n}\n",
    )
    .expect("drop rule in the server");
    let json = scratch.path("why.json");
    let capture = scratch.path("why.pcapng");
    let server = lab.name(Node::Server).to_owned();
    let command = format!(
        "ip netns exec {} timeout 2 bash -c '</dev/tcp/{SERVER4}/81'",
        lab.name(Node::Client)
    );
    let collect = start_collect(&[
        "--netns",
        &server,
        "--nft",
        "--allow-system-changes",
        "-f",
        "tcp port 81",
        "-o",
        json.to_str().unwrap(),
        "--raw-headers",
        "-w",
        capture.to_str().unwrap(),
        "--cmd",
        &command,
    ]);
    let (status, _, stderr) = collect.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    let events = read_file(&json);
    let verdicts = events.iter().filter(|e| e.nft.is_some()).count();
    assert!(verdicts >= 1, "no verdict in {} events", events.len());
    tshark::assert_matches(&capture, &events, {
        let first = &tshark::read(&capture, "")[0];
        let epoch: i128 = first
            .get("frame.time_epoch")
            .unwrap()
            .replace('.', "")
            .parse()
            .unwrap();
        (epoch
            - i128::from(
                with_ip_and_bytes(&events)
                    .next()
                    .unwrap()
                    .timestamp
                    .unwrap(),
            )) as i64
    });
    let dropped = tshark::read(&capture, "frame.comment contains \"nft inet f in handle\"");
    assert_eq!(dropped.len(), verdicts);
    let names: std::collections::BTreeSet<String> = tshark::read(&capture, "")
        .iter()
        .filter_map(|d| d.get("frame.interface_name").map(str::to_owned))
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["s0"],
        "verdicts go with the server's device"
    );
}
