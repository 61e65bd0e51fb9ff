//! Big events files without a kernel: a `ping -f` through a NAT router, as `collect`
//! writes it, for as many events as a test or bench asks for, streamed (never on disk).
//!
//! The shape follows a real capture (`ping -f` through the lab router, 750k events): one
//! ICMP connection, every echo request and reply seen at four probes (receive on the
//! router, transmit after NAT with the conntrack entry, receive and consume at the far
//! end), a packet's events microseconds apart, 4 us between events (250k events a
//! second). The conntrack section is the one a real kernel gave (`fixtures/raw/icmp.json`);
//! times and packet ids move on with every packet, the connection id stays.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;

use ct_core::{
    write_event_json, CtEvent, Event, FixedStr, IpVersion, Packet, PacketIp, PacketL4, ProbeInfo,
    ProbeKind, Task, Tracking,
};

/// The ct section of an echo request through masquerade, from a real kernel.
const ICMP_CT: &str = include_str!("../../../fixtures/raw/icmp.json");

/// Nanoseconds between two events of the flood.
pub const FLOOD_EVENT_GAP_NS: u64 = 4_000;

/// Events per echo request or reply.
const EVENTS_PER_PACKET: u64 = 4;

/// A packet id for packet `n`: spread over 63 bits as the collector's keyed hash does.
fn packet_id(n: u64) -> u64 {
    (n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 1
}

/// The events of one echo request (`reply` false) or reply, without times and ids.
fn packet_events(reply: bool) -> Vec<Event> {
    let ct: CtEvent = serde_json::from_str(ICMP_CT).unwrap_or_else(|e| {
        // The fixture is part of the repository; a bad one is a bug here.
        panic!("fixtures/raw/icmp.json: {e}")
    });
    let mut ct = ct;
    if reply {
        ct.state = ct_core::CtState::Reply;
    } else {
        ct.state = ct_core::CtState::Established;
    }
    let (client, server, router_out) = ("10.0.1.2", "10.0.2.2", "10.0.2.1");
    let ip = |src: &str, dst: &str, ttl| PacketIp {
        src: src.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        dst: dst.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        version: IpVersion::V4,
        ttl,
        tos: 0,
        id: 4242,
        frag_off: 0,
        df: true,
        mf: false,
        len: 84,
        proto: 1,
    };
    let packet = |ifindex, ifname: &str, ip| Packet {
        ifindex: Some(ifindex),
        ifname: Some(FixedStr::new(ifname)),
        len: 98,
        ip: Some(ip),
        l4: Some(PacketL4::Icmp {
            icmp_type: if reply { 0 } else { 8 },
            code: 0,
        }),
        headers: None,
    };
    let event = |probe: &str, netns, packet, ct: Option<CtEvent>| Event {
        timestamp: None,
        task: Some(Task {
            pid: 16213,
            tgid: 16213,
            comm: FixedStr::new("ping"),
        }),
        probe: Some(ProbeInfo {
            kind: ProbeKind::Tp,
            name: Arc::from(probe),
        }),
        netns: Some(netns),
        tracking: None,
        packet: Some(packet),
        drop: None,
        ct,
        nft: None,
    };
    const RX: &str = "net:netif_receive_skb";
    const TX: &str = "net:net_dev_start_xmit";
    const CONSUME: &str = "skb:consume_skb";
    let (router, far) = (4026532301, if reply { 4026532300 } else { 4026532302 });
    // The router's devices: 2 "rc" towards the client, 3 "rs" towards the server.
    let (inside, outside, (in_dev, in_name), (out_dev, out_name)) = if reply {
        (
            ip(server, router_out, 64),
            ip(server, client, 63),
            (3, "rs"),
            (2, "rc"),
        )
    } else {
        (
            ip(client, server, 64),
            ip(router_out, server, 63),
            (2, "rc"),
            (3, "rs"),
        )
    };
    vec![
        event(RX, router, packet(in_dev, in_name, inside), None),
        event(
            TX,
            router,
            packet(out_dev, out_name, outside),
            Some(ct.clone()),
        ),
        event(RX, far, packet(2, "eth0", outside), None),
        event(CONSUME, far, packet(2, "eth0", outside), None),
    ]
}

/// Stand-ins written in place of the values that change from event to event, so that
/// each event's line is written once and then only spliced (fast even in a debug build).
const TIME_MARK: u64 = 1_111_111_111_111_111_111;
const SKB_MARK: u64 = 2_222_222_222_222_222_222;
const IP_ID_MARK: u32 = 3_333_333_333;

/// One event's line cut at the values that change: `pieces[0] value pieces[1] ...`.
struct Template {
    pieces: Vec<Vec<u8>>,
    /// Which value goes after each piece but the last: 0 time, 1 packet id, 2 IP id.
    values: Vec<usize>,
}

impl Template {
    fn new(mut event: Event, conn: u64) -> io::Result<Self> {
        event.timestamp = Some(TIME_MARK);
        event.tracking = Some(Tracking {
            skb: SKB_MARK,
            conn: event.ct.is_some().then_some(conn),
            parent_conn: None,
        });
        if let Some(ip) = event.packet.as_mut().and_then(|p| p.ip.as_mut()) {
            ip.id = IP_ID_MARK;
        }
        let mut line = Vec::new();
        write_event_json(&event, &mut line)?;
        let marks = [
            TIME_MARK.to_string(),
            SKB_MARK.to_string(),
            IP_ID_MARK.to_string(),
        ];
        let (mut pieces, mut values) = (Vec::new(), Vec::new());
        let mut rest = &line[..];
        loop {
            let next = marks
                .iter()
                .enumerate()
                .filter_map(|(i, m)| find(rest, m.as_bytes()).map(|at| (at, i)))
                .min();
            match next {
                Some((at, i)) => {
                    pieces.push(rest[..at].to_vec());
                    values.push(i);
                    rest = &rest[at + marks[i].len()..];
                }
                None => {
                    pieces.push(rest.to_vec());
                    return Ok(Template { pieces, values });
                }
            }
        }
    }

    fn write(&self, out: &mut impl Write, values: [u64; 3]) -> io::Result<()> {
        let mut digits = [0u8; 20];
        for (piece, &value) in self.pieces.iter().zip(&self.values) {
            out.write_all(piece)?;
            out.write_all(decimal(values[value], &mut digits))?;
        }
        out.write_all(self.pieces.last().map_or(&[][..], |p| &p[..]))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `value` in decimal, in `buf`.
fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[at..];
        }
    }
}

/// Writes `events` events of the flood to `out` as JSON Lines. Wrap files and pipes in a
/// `BufWriter`.
pub fn write_flood(mut out: impl Write, events: u64) -> io::Result<()> {
    let conn = 0x1a2b_3c4d_5e6f_7081;
    let mut shapes = Vec::new();
    for reply in [false, true] {
        let templates = packet_events(reply)
            .into_iter()
            .map(|event| Template::new(event, conn))
            .collect::<io::Result<Vec<_>>>()?;
        shapes.push(templates);
    }
    let mut ts = 1_000_000_000u64;
    for i in 0..events {
        let n = i / EVENTS_PER_PACKET;
        let template = &shapes[(n % 2) as usize][(i % EVENTS_PER_PACKET) as usize];
        template.write(&mut out, [ts, packet_id(n), (n / 2) & 0xffff])?;
        ts += FLOOD_EVENT_GAP_NS;
    }
    out.flush()
}

/// What a child process used, as the kernel counted it when it ended.
#[derive(Debug, Clone, Copy)]
pub struct ChildUsage {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Peak resident memory (`ru_maxrss`), in KiB.
    pub max_rss_kib: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
}

/// Waits for `child` and returns its own resource usage (`wait4`: not that of other
/// children of this process).
pub fn wait_with_usage(child: &mut Child) -> io::Result<ChildUsage> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, writing into the two values above.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(ChildUsage {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    })
}

/// Starts `bin args -` (a ct-cli command reading its events from stdin) with stdin, stdout
/// and stderr piped.
pub fn spawn_reading_stdin(bin: &Path, args: &[&str]) -> io::Result<Child> {
    Command::new(bin)
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// What a command run on a generated flood left: its resource usage, the first and last
/// 4 KiB of its stdout (a view writes about as much as it reads: not kept whole), and its
/// stderr.
#[derive(Debug)]
pub struct FloodRun {
    /// As the kernel counted it when the command ended.
    pub usage: ChildUsage,
    /// The head and the tail of stdout, with `...` between them when something was left out.
    pub stdout_ends: Vec<u8>,
    /// All of stderr.
    pub stderr: String,
}

/// Runs `bin args -` on `events` events of the flood, written to its stdin by a thread
/// through a pipe (never on disk, never whole in memory).
pub fn run_on_flood(bin: &Path, args: &[&str], events: u64) -> io::Result<FloodRun> {
    let mut child = spawn_reading_stdin(bin, args)?;
    let stdin = child.stdin.take().expect("piped stdin");
    let writer =
        thread::spawn(move || write_flood(BufWriter::with_capacity(1 << 16, stdin), events));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        const KEEP: usize = 4096;
        let (mut head, mut tail, mut total) = (Vec::new(), Vec::new(), 0);
        let mut buf = vec![0; 1 << 16];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            total += n;
            let room = KEEP.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&buf[..room]);
            tail.extend_from_slice(&buf[room..n]);
            if tail.len() > 1 << 20 {
                tail.drain(..tail.len() - KEEP);
            }
        }
        let cut = tail.len().saturating_sub(KEEP);
        if total > head.len() + tail.len() {
            head.extend_from_slice(b"\n...\n");
        }
        head.extend_from_slice(&tail[cut..]);
        head
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let usage = wait_with_usage(&mut child)?;
    writer.join().expect("the flood writer does not panic")?;
    Ok(FloodRun {
        usage,
        stdout_ends: reader.join().expect("the stdout reader does not panic"),
        stderr: errors.join().expect("the stderr reader does not panic"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flood_is_events_with_moving_times_and_packet_ids() {
        let mut bytes = Vec::new();
        write_flood(&mut bytes, 10).unwrap();
        let events: Vec<Event> = ct_core::read_events(&bytes[..])
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(events.len(), 10);
        for (i, event) in events.iter().enumerate() {
            let n = i as u64 / EVENTS_PER_PACKET;
            assert_eq!(
                event.timestamp,
                Some(1_000_000_000 + i as u64 * FLOOD_EVENT_GAP_NS)
            );
            let tracking = event.tracking.unwrap();
            assert_eq!(tracking.skb, packet_id(n));
            assert_eq!(tracking.conn.is_some(), event.ct.is_some());
            let ip = event.packet.as_ref().unwrap().ip.unwrap();
            assert_eq!(u64::from(ip.id), (n / 2) & 0xffff);
        }
        // Requests and replies alternate, one connection throughout.
        assert_eq!(
            events[1].ct.as_ref().unwrap().state,
            ct_core::CtState::Established
        );
        assert_eq!(
            events[5].ct.as_ref().unwrap().state,
            ct_core::CtState::Reply
        );
    }
}
