//! Load: connection churn through the lab's NAT router while `ct-cli collect` writes every
//! packet the router sees to a file. ct-cli's resident memory and open descriptors must
//! stay flat, and nothing may be lost at this rate.
//!
//! 30 seconds here (CI); `scripts/soak.sh [SECONDS]` runs the same test longer
//! (`CT_SOAK_SECONDS`, 600 by default there).

mod support;

use std::io::BufReader;
use std::time::{Duration, Instant};

use ct_lab::{Node, ROUTER_C4, SERVER4};
use support::*;

/// Flows per second the client opens (half TCP, half UDP), each a new connection through
/// the router's DNAT and masquerade.
const FLOWS_PER_SECOND: u32 = 200;
/// Memory ct-cli may gain between the first sample (after warm-up) and the last.
const RSS_GROWTH_LIMIT_KIB: u64 = 8 * 1024;
/// When the first sample is taken: the ring buffer and the write buffers have been
/// touched by then.
const WARM_UP: Duration = Duration::from_secs(3);

/// Echo servers in the server namespace: TCP on :80, UDP on :53, a thread per client.
const SERVER_PY: &str = r#"
import socket, socketserver, sys, threading
addr = sys.argv[1]
class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data:
                break
            self.request.sendall(data)
class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)
class TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512
tcp = TcpServer((addr, 80), Tcp)
udp = socketserver.UDPServer((addr, 53), Udp)
threading.Thread(target=tcp.serve_forever, daemon=True).start()
print("ready", flush=True)
udp.serve_forever()
"#;

/// The client: for SECONDS, RATE new flows per second, alternately a TCP connection
/// (connect, send, read the echo, close) and a UDP exchange from a fresh socket.
const CLIENT_PY: &str = r#"
import socket, sys, time
dst, seconds, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
stats = {"tcp": 0, "tcp_ok": 0, "udp": 0, "udp_ok": 0}
print("ready", flush=True)
start = time.monotonic()
end = start + seconds
due = start
i = 0
while time.monotonic() < end:
    i += 1
    msg = b"ct-cli soak %d" % i
    if i % 2:
        stats["tcp"] += 1
        try:
            s = socket.create_connection((dst, 8080), timeout=2)
            s.sendall(msg)
            if s.recv(64):
                stats["tcp_ok"] += 1
            s.close()
        except OSError:
            pass
    else:
        stats["udp"] += 1
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(2)
        try:
            u.sendto(msg, (dst, 5353))
            u.recvfrom(64)
            stats["udp_ok"] += 1
        except OSError:
            pass
        u.close()
    due += 1.0 / rate
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
print(" ".join("%s %d" % kv for kv in stats.items()), flush=True)
"#;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
}

#[test]
fn connection_churn_through_nat_keeps_memory_and_fds_flat() {
    let Some(nat) = KernelLab::with_nat("soak") else {
        return;
    };
    let seconds: u64 = std::env::var("CT_SOAK_SECONDS")
        .ok()
        .map(|s| s.parse().expect("CT_SOAK_SECONDS is a number of seconds"))
        .unwrap_or(30);
    assert!(seconds >= 10, "a soak shorter than 10 s measures nothing");

    // TIME_WAIT entries of a long run stay well inside the table.
    let file = nat.scratch.path("events.json");
    let netns = nat.router_netns();
    let mut collect = collect_to(&file, &netns, &[]);
    collect.wait_ready();
    let pid = collect.pid();
    let at_ready = rss_and_fds(pid);

    let server4 = SERVER4.to_string();
    let mut server = nat
        .lab
        .spawn(Node::Server, &["python3", "-c", SERVER_PY, &server4])
        .expect("servers");
    server
        .wait_for_line("ready", Duration::from_secs(10))
        .expect("servers ready");
    let (router_c4, secs, rate) = (
        ROUTER_C4.to_string(),
        seconds.to_string(),
        FLOWS_PER_SECOND.to_string(),
    );
    let mut client = nat
        .lab
        .spawn(
            Node::Client,
            &["python3", "-c", CLIENT_PY, &router_c4, &secs, &rate],
        )
        .expect("client");
    client
        .wait_for_line("ready", Duration::from_secs(10))
        .expect("client ready");
    let started = Instant::now();

    // One sample a second while the churn lasts.
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) - Duration::from_millis(500) {
        std::thread::sleep(Duration::from_secs(1));
        let (rss_kib, fds) = rss_and_fds(pid);
        samples.push(Sample {
            at: started.elapsed(),
            rss_kib,
            fds,
        });
        assert!(
            collect.child.try_wait().unwrap().is_none(),
            "ct-cli exited under load: {}",
            collect.stderr_text()
        );
    }
    let stats = client
        .finish(Duration::from_secs(30))
        .and_then(|o| o.ok())
        .expect("the client finishes");
    let flows: Vec<u64> = stats
        .stdout
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [tcp, tcp_ok, udp, udp_ok] = flows[..] else {
        panic!("client output: {}", stats.stdout);
    };
    std::thread::sleep(Duration::from_millis(500));
    collect.signal(libc::SIGINT);
    let (status, _, stderr) = collect.finish(Duration::from_secs(60));
    let text = stderr.join("\n");
    assert_eq!(status.code(), Some(0), "{text}");

    // The file: complete lines, each an event, as many as the summary says.
    let (written, with_ct, lost) = summary(&stderr);
    let reader = BufReader::new(std::fs::File::open(&file).unwrap());
    let mut lines = 0u64;
    for event in ct_core::read_events(reader) {
        event.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        lines += 1;
    }
    let size = std::fs::metadata(&file).unwrap().len();

    let first = samples
        .iter()
        .find(|s| s.at >= WARM_UP)
        .copied()
        .expect("a sample after the warm-up");
    let last = *samples.last().unwrap();
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap();
    eprintln!(
        "measured: soak {seconds} s, {rate} flows/s target: client {tcp} TCP ({tcp_ok} echoed) \
         + {udp} UDP ({udp_ok} answered) flows through DNAT+masquerade\n\
         measured: ct-cli wrote {written} events ({with_ct} with conntrack, {:.0}/s, {:.1} MB), \
         {lost} lost\n\
         measured: ct-cli RSS at ready {} KiB, at {:.0} s {} KiB, at {:.0} s {} KiB (max {} KiB); \
         open fds at ready {}, at {:.0} s {}, at {:.0} s {}",
        written as f64 / seconds as f64,
        size as f64 / 1e6,
        at_ready.0,
        first.at.as_secs_f64(),
        first.rss_kib,
        last.at.as_secs_f64(),
        last.rss_kib,
        max_rss,
        at_ready.1,
        first.at.as_secs_f64(),
        first.fds,
        last.at.as_secs_f64(),
        last.fds,
    );

    assert_eq!(lines, written, "the summary counts the file's lines");
    assert_eq!(
        lost, 0,
        "nothing lost at {FLOWS_PER_SECOND} flows/s:\n{text}"
    );
    let flows = tcp_ok + udp_ok;
    assert!(
        flows * 10 >= u64::from(FLOWS_PER_SECOND) * seconds * 8,
        "the churn reached at least 80% of its rate: {flows} flows in {seconds} s"
    );
    assert!(
        with_ct >= flows,
        "every flow's packets carry conntrack data ({with_ct} events with ct, {flows} flows)"
    );
    assert!(
        last.rss_kib <= first.rss_kib + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {} KiB to {} KiB",
        first.rss_kib,
        last.rss_kib
    );
    assert_eq!(
        samples.iter().map(|s| s.fds).max(),
        samples.iter().map(|s| s.fds).min(),
        "open descriptors stay the same: {:?}",
        samples.iter().map(|s| s.fds).collect::<Vec<_>>()
    );
    assert_eq!(first.fds, at_ready.1);
}
