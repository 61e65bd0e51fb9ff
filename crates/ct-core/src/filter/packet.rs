//! The packet filter's expression tree and its evaluator on an event's packet section.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::FilterError;
use crate::{IpVersion, Packet, PacketL4};

/// Which address or port of the packet a test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Src,
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
    Net { dir: Dir, net: IpNet },
    /// `port P`, `portrange A-B` (TCP, UDP, SCTP only, as in pcap).
    Port { dir: Dir, lo: u16, hi: u16 },
}

/// A parsed packet filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    Test(Test),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A packet filter: the expression and the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketFilter {
    pub text: String,
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

/// The packet fields filters look at, taken from an event's packet section (user space) or
/// parsed from the headers (kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketView {
    pub version: Option<IpVersion>,
    pub proto: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Present for TCP, UDP and SCTP when the header was visible.
    pub ports: Option<(u16, u16)>,
}

impl PacketView {
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
