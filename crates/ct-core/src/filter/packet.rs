//! The packet filter's expression tree and its evaluator on an event's packet section.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::FilterError;
use crate::{IpVersion, Packet, PacketL4};

/// Which address or port of the packet a test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// The source.
    Src,
    /// The destination.
    Dst,
    /// `src or dst` (the default).
    Either,
    /// `src and dst`.
    Both,
}

/// One test on the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Test {
    /// `ip` / `ip6`.
    L3(IpVersion),
    /// `tcp`, `udp`, `icmp`, `icmp6`, `sctp`, `proto N`: the transport protocol.
    Proto(u8),
    /// `host A`, `net A/N`.
    Net {
        /// Which address.
        dir: Dir,
        /// The network (a host is a /32 or /128).
        net: IpNet,
    },
    /// `port P`, `portrange A-B` (TCP, UDP, SCTP only, as in pcap).
    Port {
        /// Which port.
        dir: Dir,
        /// The lowest port of the range.
        lo: u16,
        /// The highest port of the range.
        hi: u16,
    },
}

/// A parsed packet filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// One test.
    Test(Test),
    /// The test does not hold.
    Not(Box<Expr>),
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
}

/// A packet filter: the expression and the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketFilter {
    /// The expression as given.
    pub text: String,
    /// Its tree.
    pub expr: Expr,
}

impl std::str::FromStr for PacketFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        PacketFilter::parse(s)
    }
}

impl fmt::Display for PacketFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// Test support, hidden from the docs: the tests and fuzz targets hold the tree, the compiled
// program and the kernel to the same decisions on a view; users evaluate PacketFilter::matches.
/// The packet fields filters look at, taken from an event's packet section (user space) or
/// parsed from the headers (kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub struct PacketView {
    /// IP version; `None` when the packet has no IP header.
    pub version: Option<IpVersion>,
    /// Transport protocol number (0 without an IP header).
    pub proto: u8,
    /// Source address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// Present for TCP, UDP and SCTP when the header was visible.
    pub ports: Option<(u16, u16)>,
}

impl PacketView {
    /// The fields of an event's packet section.
    pub fn of(packet: &Packet) -> Self {
        let Some(ip) = &packet.ip else {
            return PacketView {
                version: None,
                proto: 0,
                src: None,
                dst: None,
                ports: None,
            };
        };
        let ports = match packet.l4 {
            Some(PacketL4::Tcp { sport, dport, .. })
            | Some(PacketL4::Udp { sport, dport })
            | Some(PacketL4::Sctp { sport, dport }) => Some((sport, dport)),
            _ => None,
        };
        PacketView {
            version: Some(ip.version),
            proto: ip.proto,
            src: Some(ip.src),
            dst: Some(ip.dst),
            ports,
        }
    }
}

impl Test {
    // Test support (see PacketView).
    /// Whether the test holds for `p`.
    #[doc(hidden)]
    pub fn matches(&self, p: &PacketView) -> bool {
        let Some(version) = p.version else {
            return false;
        };
        match *self {
            Test::L3(v) => v == version,
            Test::Proto(n) => p.proto == n,
            Test::Net { dir, net } => {
                let hit = |a: Option<IpAddr>| a.is_some_and(|a| net.contains(&a));
                dir_match(dir, hit(p.src), hit(p.dst))
            }
            Test::Port { dir, lo, hi } => match p.ports {
                Some((s, d)) => {
                    let hit = |port: u16| (lo..=hi).contains(&port);
                    dir_match(dir, hit(s), hit(d))
                }
                None => false,
            },
        }
    }
}

fn dir_match(dir: Dir, src: bool, dst: bool) -> bool {
    match dir {
        Dir::Src => src,
        Dir::Dst => dst,
        Dir::Either => src || dst,
        Dir::Both => src && dst,
    }
}

impl Expr {
    // Test support (see PacketView).
    /// Whether the expression holds for `p`.
    #[doc(hidden)]
    pub fn matches(&self, p: &PacketView) -> bool {
        match self {
            Expr::Test(t) => t.matches(p),
            Expr::Not(e) => !e.matches(p),
            Expr::And(a, b) => a.matches(p) && b.matches(p),
            Expr::Or(a, b) => a.matches(p) || b.matches(p),
        }
    }
}

impl PacketFilter {
    /// Evaluates on an event's packet section; an event without one never matches.
    pub fn matches(&self, packet: Option<&Packet>) -> bool {
        packet.is_some_and(|p| self.expr.matches(&PacketView::of(p)))
    }
}
