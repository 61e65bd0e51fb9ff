//! tcpdump filters in the kernel, held against tcpdump itself: for each expression, one
//! `tcpdump -i rc -w FILE EXPR` in the router and one collector with the same expression
//! compiled into its probes watch the same traffic (ICMP, large and fragmented pings,
//! TCP, UDP to a closed port and the ICMP errors it draws, ARP, ICMPv6), and the packets
//! each selected on the router's client-side device must be the same: matched on link
//! type, addresses, protocol, IPv4 id / IPv6 flow label, fragment offset, ports and TCP
//! flags (the events keep no TCP sequence numbers).
//!
//! Not root / no BTF / no tools: prints `skipping: <reason>`; with
//! `CT_REQUIRE_KERNEL_TESTS=1` (CI) it fails instead.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ct_bpf::PcapFilter;
use ct_core::Event;
use ct_lab::{Capture, Lab, Node, Scratch, ROUTER_CLIENT_IF, SERVER4, SERVER6};

/// What both sides are asked to select, as tcpdump users write it.
const EXPRESSIONS: &[&str] = &[
    "icmp",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
    "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] == icmp-unreach",
    "ip[8] < 64",
    "ip[6:2] & 0x1fff != 0",
    "ether src 02:00:0a:00:01:02",
    "ether dst 02:00:0a:00:01:02 and ip",
    "arp",
    "not arp and not ip6",
    "vlan",
    "greater 1000",
    "less 100",
    "portrange 5000-6000",
    "udp dst port 9999",
    "net 10.0.2.0/24 and not icmp",
    "ip6 and icmp6",
    "ip6 protochain 58",
    "icmp6[icmp6type] == icmp6-echo",
    "src host 10.0.1.2 and (tcp or udp)",
    "tcp and tcp[13] & 1 != 0",
    "ip[2:2] > 576",
];

/// One of each kind, for the kernel matrix's emulated machines, where loading a
/// collector per expression for all of them would take minutes
/// (`CT_QUICK_KERNEL_TESTS=1`, set by scripts/kernels.sh).
const QUICK: &[&str] = &[
    "tcp[tcpflags] & tcp-syn != 0",
    "icmp[icmptype] == icmp-unreach",
    "ip[6:2] & 0x1fff != 0",
    "ether src 02:00:0a:00:01:02",
    "not arp and not ip6",
    "greater 1000",
    "portrange 5000-6000",
    "ip6 protochain 58",
];

/// The two probes tcpdump's view corresponds to: a device receiving and sending.
const PROBES: [&str; 2] = ["tp:net:netif_receive_skb", "tp:net:net_dev_start_xmit"];

/// The TCP port the traffic uses (inside `portrange 5000-6000`).
const TCP_PORT: u16 = 5555;

macro_rules! lab_test {
    () => {
        if !ct_lab::kernel_available() {
            return;
        }
        let tools = Command::new("tcpdump")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !ct_lab::run_or_skip(if tools.is_ok_and(|s| s.success()) {
            Ok(())
        } else {
            Err("no tcpdump (scripts/install-deps.sh installs it)")
        }) {
            return;
        }
    };
}

/// A packet as both sides can describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Ip {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        /// IPv4 identification, IPv6 flow label.
        id: u32,
        frag_off: u16,
        sport: u16,
        dport: u16,
        flags: u8,
    },
    /// Not IP (ARP): counted by kind only.
    Other,
}

/// tcpdump writing what `expr` selects on the router's client-side device.
struct Tcpdump {
    child: Child,
    file: std::path::PathBuf,
}

impl Tcpdump {
    fn start(lab: &Lab, expr: &str, file: &Path) -> Tcpdump {
        let mut child = lab
            .command(
                Node::Router,
                &[
                    "tcpdump",
                    "-i",
                    ROUTER_CLIENT_IF,
                    // Each packet handed over as it comes: otherwise the kernel keeps the
                    // last ones in a ring block until its timeout (1 s), and a stop before
                    // then loses them.
                    "--immediate-mode",
                    "-U",
                    "-n",
                    "-s",
                    "512",
                    "-w",
                    file.to_str().unwrap(),
                    expr,
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump starts");
        // It says on stderr when it captures.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + ct_lab::scaled(Duration::from_secs(30));
        while Instant::now() < deadline {
            line.clear();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("tcpdump {expr:?} ended before capturing");
            }
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in err.lines() {});
        Tcpdump {
            child,
            file: file.to_owned(),
        }
    }

    /// Stops it (SIGINT: it writes what it has) and reads its packets.
    fn finish(mut self) -> Vec<Key> {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let bytes = std::fs::read(&self.file).expect("tcpdump's file");
        read_pcap(&bytes)
    }
}

/// The frames of a classic pcap file (Ethernet link type), as keys.
fn read_pcap(bytes: &[u8]) -> Vec<Key> {
    assert!(bytes.len() >= 24, "pcap file too short");
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "not a little-endian pcap file: {magic:#x}"
    );
    let mut keys = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &bytes[at + 16..at + 16 + incl];
        keys.push(frame_key(frame));
        at += 16 + incl;
    }
    keys
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn frame_key(frame: &[u8]) -> Key {
    let ip = &frame[14..];
    let (src, dst, proto, id, frag_off, l4): (IpAddr, IpAddr, u8, u32, u16, Option<&[u8]>) =
        match be16(frame, 12) {
            0x0800 => {
                let ihl = usize::from(ip[0] & 0xf) * 4;
                let frag = be16(ip, 6) & 0x1fff;
                (
                    <[u8; 4]>::try_from(&ip[12..16]).unwrap().into(),
                    <[u8; 4]>::try_from(&ip[16..20]).unwrap().into(),
                    ip[9],
                    u32::from(be16(ip, 4)),
                    frag * 8,
                    (frag == 0).then(|| &ip[ihl..]),
                )
            }
            0x86dd => (
                <[u8; 16]>::try_from(&ip[8..24]).unwrap().into(),
                <[u8; 16]>::try_from(&ip[24..40]).unwrap().into(),
                ip[6],
                u32::from_be_bytes([0, ip[1] & 0xf, ip[2], ip[3]]),
                0,
                Some(&ip[40..]),
            ),
            _ => return Key::Other,
        };
    let (sport, dport, flags) = match (proto, l4) {
        (6, Some(t)) => (be16(t, 0), be16(t, 2), t[13]),
        (17 | 132, Some(t)) => (be16(t, 0), be16(t, 2), 0),
        (1 | 58, Some(t)) => (u16::from(t[0]), u16::from(t[1]), 0),
        _ => (0, 0, 0),
    };
    Key::Ip {
        src,
        dst,
        proto,
        id,
        frag_off,
        sport,
        dport,
        flags,
    }
}

fn event_key(e: &Event) -> Key {
    let Some(packet) = &e.packet else {
        return Key::Other;
    };
    let Some(ip) = packet.ip else {
        return Key::Other;
    };
    let (sport, dport, flags) = packet.l4.map_or((0, 0, 0), |l4| l4.flow_fields());
    Key::Ip {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        id: ip.id,
        frag_off: ip.frag_off,
        sport,
        dport,
        flags,
    }
}

fn counts(keys: impl IntoIterator<Item = Key>) -> BTreeMap<Key, usize> {
    let mut map = BTreeMap::new();
    for k in keys {
        *map.entry(k).or_insert(0) += 1;
    }
    map
}

/// Everything the expressions look at, once.
fn traffic(lab: &Lab) {
    for node in [Node::Client, Node::Router] {
        lab.exec(node, &["ip", "neigh", "flush", "all"]).unwrap();
    }
    lab.ping(Node::Client, SERVER4.into(), 2).unwrap();
    // A large echo request that still fits the MTU, and one that is fragmented.
    for size in ["1200", "3000"] {
        let server = SERVER4.to_string();
        let ping = [
            "ping", "-4", "-n", "-q", "-c", "1", "-s", size, "-W", "1", &server,
        ];
        lab.exec(Node::Client, &ping).unwrap();
    }
    let server = lab
        .tcp_server(Node::Server, SERVER4.into(), TCP_PORT)
        .unwrap();
    lab.tcp_client(Node::Client, SERVER4.into(), TCP_PORT)
        .unwrap();
    drop(server);
    lab.udp_client(
        Node::Client,
        SERVER4.into(),
        9999,
        2,
        Duration::from_millis(300),
    )
    .unwrap();
    lab.ping(Node::Client, SERVER6.into(), 2).unwrap();
}

#[test]
fn the_kernel_selects_what_tcpdump_selects() {
    lab_test!();
    let lab = Lab::new().unwrap();
    let dir = Scratch::new("pcap-filters");
    let netns = lab.netns_inode(Node::Router);

    let quick = ct_lab::quick_kernel_tests();
    let expressions = if quick { QUICK } else { EXPRESSIONS };
    let mut watchers = Vec::new();
    for (n, expr) in expressions.iter().enumerate() {
        let filter = PcapFilter::compile(expr, ct_bpf::PCAP_COPY_LEN)
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        let capture = Capture::start_probes(netns, &PROBES, |b| b.pcap_filter(filter))
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        let tcpdump = Tcpdump::start(&lab, expr, &dir.path(&format!("{n}.pcap")));
        watchers.push((expr, capture, tcpdump));
    }

    traffic(&lab);
    std::thread::sleep(Duration::from_millis(300));

    let mut selective = 0;
    let mut report = String::new();
    for (expr, capture, tcpdump) in watchers {
        let events = capture.finish(Duration::from_millis(300));
        let ours = counts(
            events
                .iter()
                .filter(|c| {
                    matches!(
                        c.probe(),
                        "net:netif_receive_skb" | "net:net_dev_start_xmit"
                    ) && c.ifname() == Some(ROUTER_CLIENT_IF)
                })
                .map(|c| event_key(&c.event)),
        );
        let theirs = counts(tcpdump.finish());
        let n: usize = theirs.values().sum();
        report.push_str(&format!("{expr:60} {n:3} packets\n"));
        assert_eq!(
            ours, theirs,
            "{expr:?}: ct-trace (left) and tcpdump (right) selected different packets"
        );
        if n > 0 {
            selective += 1;
        }
    }
    println!("{report}");
    // Most expressions select something from this traffic: the comparison has teeth.
    assert!(selective + 2 >= expressions.len(), "{report}");
}

/// An expression whose translation does not fit the program's room is refused before
/// anything is loaded, with a sentence that says so (a usage error: exit 2 in ct-cli).
#[test]
fn a_filter_too_large_for_the_program_is_refused() {
    lab_test!();
    let lab = Lab::new().unwrap();
    // A sum of 800 header bytes: libpcap keeps every load (about 4000 instructions once
    // bounds-checked), and compiles it at once, unlike long `or` chains.
    let terms: Vec<String> = (0..800).map(|n| format!("ip[{}]", n % 200)).collect();
    let expr = format!("{} > 0", terms.join(" + "));
    let filter = PcapFilter::compile(&expr, ct_bpf::PCAP_COPY_LEN).unwrap();
    let err = Capture::start_probes(lab.netns_inode(Node::Router), &PROBES, |b| {
        b.pcap_filter(filter)
    })
    .expect_err("a filter larger than the room loaded");
    assert!(
        matches!(err, ct_bpf::Error::PcapTranslate { .. }),
        "{err:?}"
    );
    assert_eq!(err.category(), ct_bpf::ErrorCategory::Usage);
    assert!(err.to_string().contains("too large"), "{err}");
}
