//! NAT spelled out from a connection's tuples.

use std::fmt::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use crate::{CtConnEvent, CtProto, CtStatus};

/// One side of a translation: an address and, for protocols that have one, a port (the ICMP
/// echo id for icmp/icmpv6 source NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    /// The address.
    pub addr: IpAddr,
    /// The port, or the ICMP echo id; `None` for protocols without one.
    pub port: Option<u16>,
}

/// One translation: `from` as the original tuple has it, `to` as the reply tuple shows it
/// rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct NatChange {
    /// The endpoint as the original tuple has it.
    pub from: Endpoint,
    /// The endpoint as the reply tuple shows it rewritten.
    pub to: Endpoint,
    /// The ports are ICMP echo ids (printed `10.0.0.5 id 7`); not in the JSON.
    #[serde(skip)]
    pub icmp_id: bool,
}

impl NatChange {
    /// The port (or ICMP id) was rewritten too.
    pub fn port_changed(&self) -> bool {
        matches!((self.from.port, self.to.port), (Some(a), Some(b)) if a != b)
    }

    fn write_endpoint<W: Write + ?Sized>(&self, w: &mut W, e: &Endpoint) -> fmt::Result {
        match (e.port, self.port_changed()) {
            (Some(port), true) if self.icmp_id => write!(w, "{} id {port}", e.addr),
            (Some(port), true) => match e.addr {
                IpAddr::V4(a) => write!(w, "{a}:{port}"),
                IpAddr::V6(a) => write!(w, "[{a}]:{port}"),
            },
            _ => write!(w, "{}", e.addr),
        }
    }
}

/// `10.0.0.5 -> 203.0.113.50`; with ports when they changed (`10.0.0.1:8080 ->
/// 10.0.2.2:80`, `[fd00::1]:80`), ICMP ids as `10.0.0.5 id 7`.
impl fmt::Display for NatChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_endpoint(f, &self.from)?;
        f.write_str(" -> ")?;
        self.write_endpoint(f, &self.to)
    }
}

/// The NAT a connection does, derived from its tuples, with its status bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Nat {
    /// Source NAT: the original source, and what the reply tuple shows it became.
    pub snat: Option<NatChange>,
    /// Destination NAT: the original destination, and what the reply tuple shows it became.
    pub dnat: Option<NatChange>,
    /// `IPS_SRC_NAT` is set.
    pub status_snat: bool,
    /// `IPS_DST_NAT` is set.
    pub status_dnat: bool,
}

/// How a protocol's tuple identifies endpoints beyond the address.
#[derive(PartialEq, Eq)]
enum PortKind {
    Ports,
    Icmp,
    None,
}

fn port_kind(proto: &CtProto) -> PortKind {
    match proto {
        CtProto::Tcp { .. } | CtProto::Udp { .. } | CtProto::Sctp { .. } => PortKind::Ports,
        CtProto::Icmp { .. } | CtProto::Icmpv6 { .. } => PortKind::Icmp,
        CtProto::Generic { .. } => PortKind::None,
    }
}

fn icmp_id(proto: &CtProto) -> Option<u16> {
    match *proto {
        CtProto::Icmp { id, .. } | CtProto::Icmpv6 { id, .. } => Some(id),
        _ => None,
    }
}

impl Nat {
    /// Derives the NAT from a connection's tuples: SNAT when `reply.dst` differs from
    /// `orig.src` (address or source port; ICMP: echo id), DNAT when `reply.src` differs from
    /// `orig.dst` (address or destination port). Ports are compared only when both tuples
    /// are of one protocol.
    pub fn from_conn(conn: &CtConnEvent) -> Nat {
        let (orig, reply) = (&conn.orig, &conn.reply);
        let kind = port_kind(&orig.proto);
        // Always true for a real entry; files can hold anything.
        let same_kind =
            orig.proto.number() == reply.proto.number() && kind == port_kind(&reply.proto);
        let (snat_ports, dnat_ports, icmp) = match kind {
            PortKind::Ports if same_kind => {
                let (osport, odport) = orig.proto.ports().unwrap_or_default();
                let (rsport, rdport) = reply.proto.ports().unwrap_or_default();
                (
                    (Some(osport), Some(rdport)),
                    (Some(odport), Some(rsport)),
                    false,
                )
            }
            PortKind::Icmp if same_kind => (
                (icmp_id(&orig.proto), icmp_id(&reply.proto)),
                (None, None),
                true,
            ),
            _ => ((None, None), (None, None), false),
        };
        let change = |from: Endpoint, to: Endpoint, icmp_id: bool| {
            let change = NatChange { from, to, icmp_id };
            (from.addr != to.addr || change.port_changed()).then_some(change)
        };
        Nat {
            snat: change(
                Endpoint {
                    addr: orig.ip.src,
                    port: snat_ports.0,
                },
                Endpoint {
                    addr: reply.ip.dst,
                    port: snat_ports.1,
                },
                icmp,
            ),
            dnat: change(
                Endpoint {
                    addr: orig.ip.dst,
                    port: dnat_ports.0,
                },
                Endpoint {
                    addr: reply.ip.src,
                    port: dnat_ports.1,
                },
                false,
            ),
            status_snat: conn.ct_status.contains(CtStatus::SRC_NAT),
            status_dnat: conn.ct_status.contains(CtStatus::DST_NAT),
        }
    }

    /// Neither the tuples nor the status bits show any NAT.
    pub fn is_none(&self) -> bool {
        self.snat.is_none() && self.dnat.is_none() && !self.status_snat && !self.status_dnat
    }
}

/// `snat 10.0.0.5 -> 203.0.113.50, dnat 10.0.0.1:8080 -> 10.0.2.2:80`, or `none`; a status
/// bit that disagrees with the tuples is noted (`snat (SRC_NAT set, tuples unchanged)`).
impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut first = true;
        let sides = [
            ("snat", self.snat, self.status_snat, "SRC_NAT"),
            ("dnat", self.dnat, self.status_dnat, "DST_NAT"),
        ];
        for (name, change, status, bit) in sides {
            if change.is_none() && !status {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match change {
                Some(change) => {
                    write!(f, "{name} {change}")?;
                    if !status {
                        write!(f, " (no {bit} status bit)")?;
                    }
                }
                None => write!(f, "{name} ({bit} set, tuples unchanged)")?,
            }
        }
        Ok(())
    }
}
