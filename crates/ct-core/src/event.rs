//! The event envelope: one packet seen at one probe, with whatever sections were collected.
//!
//! Every section is optional so that a file holding only `{"ct": {...}}` lines, or events
//! from a tracer that collects fewer sections, reads and prints the same way.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{CtEvent, FixedStr, HeaderBytes, IpVersion};

/// One packet at one probe.
// A section that is `None` is left out of the JSON, and a missing one reads back as `None`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// CPU timestamp in nanoseconds (`bpf_ktime_get_ns`, i.e. CLOCK_MONOTONIC).
    pub timestamp: Option<u64>,
    /// The task that was running when the probe fired.
    pub task: Option<Task>,
    /// The probe that saw the packet; absent for nftables trace steps.
    pub probe: Option<ProbeInfo>,
    /// Inode number of the network namespace of `skb->dev` (as in `/proc/PID/ns/net`).
    pub netns: Option<u32>,
    /// Packet and connection ids.
    pub tracking: Option<Tracking>,
    /// The packet's device, length and headers.
    pub packet: Option<Packet>,
    /// Present when the probe saw the packet dropped (`skb:kfree_skb`).
    pub drop: Option<DropInfo>,
    /// Conntrack section; absent when the packet had no conntrack entry at the probe.
    pub ct: Option<CtEvent>,
    /// An nftables rule or chain policy that decided something for the packet, from
    /// nftables' own tracing (`collect --nft`). Such an event has no `probe`: it was not
    /// seen by a BPF program, and its `tracking` comes from the BPF events of the same
    /// packet it was joined to.
    pub nft: Option<NftTrace>,
}

impl Event {
    /// Whether the event is a packet dropped: it has a `drop` section, or it came from the
    /// `skb:kfree_skb` probe ([`DROP_PROBE`](crate::conns::DROP_PROBE)), which is how files
    /// written before there was a `drop` section tell, or it is an nftables `drop` verdict
    /// ([`NftTrace::is_drop`]; such an event has no `drop` section: the kernel's drop
    /// reason is on the BPF event of the same packet at `skb:kfree_skb`).
    pub fn is_drop(&self) -> bool {
        self.drop.is_some()
            || self
                .probe
                .as_ref()
                .is_some_and(|p| &*p.name == crate::conns::DROP_PROBE)
            || self.nft.as_ref().is_some_and(NftTrace::is_drop)
    }
}

/// The task that was running when the probe fired (often not the packet's owner: softirq
/// processing runs in whatever task was interrupted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Thread id (the kernel's `pid`).
    pub pid: u32,
    /// Process id (the kernel's `tgid`).
    pub tgid: u32,
    /// Command name (`comm`).
    pub comm: FixedStr,
}

/// Which probe reported the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// Tracepoint, kprobe or kretprobe.
    #[serde(rename = "type")]
    pub kind: ProbeKind,
    /// `category:name` for tracepoints, the function name for kprobes.
    pub name: Arc<str>,
}

/// What kind of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum ProbeKind {
    /// Tracepoint (attached as a raw tracepoint).
    Tp,
    /// Kprobe, at function entry.
    Kp,
    /// Kretprobe, at function return.
    Kr,
}

/// A packet dropped: why, when the kernel says.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DropInfo {
    /// The kernel's `enum skb_drop_reason` name without its `SKB_DROP_REASON_` prefix
    /// (`NETFILTER_DROP`, `NO_SOCKET`), named from the running kernel's BTF, since the
    /// numbers differ between kernels. A number the kernel's enum does not name is kept
    /// as its decimal digits (`"123"`). Absent on kernels without drop reasons (before
    /// Linux 5.17).
    pub reason: Option<Arc<str>>,
}

impl DropInfo {
    /// A drop with the reason `name`.
    pub fn reason(name: impl Into<Arc<str>>) -> Self {
        DropInfo {
            reason: Some(name.into()),
        }
    }
}

/// One step of nftables' trace of a packet (an `NFT_MSG_TRACE` message): the rule, or the
/// chain's policy, and what it decided.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NftTrace {
    /// The table's address family.
    pub family: NftFamily,
    /// The table's name.
    pub table: Arc<str>,
    /// The chain's name.
    pub chain: Arc<str>,
    /// What reported the verdict: a rule, the base chain's policy, or the end of a
    /// regular chain (an implicit return).
    #[serde(rename = "type")]
    pub kind: NftTraceKind,
    /// The rule's handle (as `nft -a list` shows it); absent for policies and returns.
    pub handle: Option<u64>,
    /// The rule's text as `nft list` prints it, when it could be read.
    pub rule: Option<Arc<str>>,
    /// What the rule or policy decided.
    pub verdict: NftVerdict,
    /// The chain a `jump` or `goto` verdict continues in.
    pub target: Option<Arc<str>>,
    /// The device the packet came in on, as the hook saw it (`NFTA_TRACE_IIF`); absent
    /// at hooks without one (output, postrouting of a local packet).
    pub iif: Option<NftDevice>,
    /// The device the packet goes out on, as the hook saw it (`NFTA_TRACE_OIF`); absent
    /// at hooks before routing.
    pub oif: Option<NftDevice>,
}

/// A device an nftables trace step names: its index in the traced network namespace,
/// and its name when it could be read (from that namespace's links while tracing, or
/// from the joined packet's BPF event on the same device); `None` once the device is
/// gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NftDevice {
    /// The device's index in the traced network namespace.
    pub ifindex: u32,
    /// The device's name; `None` when it could not be read.
    #[serde(default)]
    pub ifname: Option<FixedStr>,
}

impl NftTrace {
    /// Whether this step ended the packet: a `drop` verdict (which `reject` also gives).
    pub fn is_drop(&self) -> bool {
        self.verdict == NftVerdict::Drop
    }
}

/// An nftables table family (`NFPROTO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "lowercase")]
pub enum NftFamily {
    /// `inet`: IPv4 and IPv6.
    Inet,
    /// `ip`: IPv4.
    Ip,
    /// `ip6`: IPv6.
    Ip6,
    /// `arp`.
    Arp,
    /// `bridge`.
    Bridge,
    /// `netdev`: ingress and egress of a device.
    Netdev,
}

/// What an nftables trace step reports (`NFT_TRACETYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "lowercase")]
pub enum NftTraceKind {
    /// A rule gave a verdict.
    Rule,
    /// A base chain ended and its policy applied.
    Policy,
    /// A regular chain ended without a verdict: back to the calling chain.
    Return,
}

/// An nftables verdict (`NF_*` and `NFT_*` verdict codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "lowercase")]
pub enum NftVerdict {
    /// Accepted: on to the next hook.
    Accept,
    /// Dropped (also what `reject` reports, after sending its reply).
    Drop,
    /// Taken over by the rule (for example by `queue` without a listener's reinjection).
    Stolen,
    /// Sent to user space through nfqueue.
    Queue,
    /// Run the hook again.
    Repeat,
    /// The rule matched but gave no verdict (`counter`, `log`, `meta nftrace set 1`).
    Continue,
    /// Stop evaluating the chain (`break`).
    Break,
    /// Continue in `target`, then come back.
    Jump,
    /// Continue in `target` without coming back.
    Goto,
    /// Back to the calling chain.
    Return,
}

/// Ids that group events: by packet across probes, by connection over its life.
/// They are keyed hashes, never kernel addresses.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tracking {
    /// Same for every event of one packet (across clones and NAT rewrites).
    pub skb: u64,
    /// Same for every event of one conntrack entry.
    pub conn: Option<u64>,
    /// The connection id of the parent (master) connection of a RELATED flow.
    pub parent_conn: Option<u64>,
}

/// What the probe saw of the packet itself.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// `skb->dev->ifindex`; `None` when the skb had no device.
    #[serialize_always]
    pub ifindex: Option<u32>,
    /// `skb->dev->name`; `None` when the skb had no device.
    #[serialize_always]
    pub ifname: Option<FixedStr>,
    /// `skb->len`.
    #[serde(default)]
    pub len: u32,
    /// The network header, when the bytes there are one.
    pub ip: Option<PacketIp>,
    /// The transport header, when its fields are printed.
    pub l4: Option<PacketL4>,
    /// The bytes copied from the network header on, when they were kept
    /// (`collect --raw-headers`, or in memory for `collect -w`); hex in JSON.
    pub headers: Option<HeaderBytes>,
}

/// The network header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketIp {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// TOS (IPv4) or traffic class (IPv6).
    pub tos: u8,
    /// IPv4 identification; IPv6 flow label.
    pub id: u32,
    /// Fragment offset in bytes (IPv4).
    #[serde(default)]
    pub frag_off: u16,
    /// Don't-fragment bit (IPv4).
    #[serde(default)]
    pub df: bool,
    /// More-fragments bit (IPv4).
    #[serde(default)]
    pub mf: bool,
    /// IPv4 total length; IPv6 payload length plus the 40-byte header.
    pub len: u16,
    /// Protocol (IPv4) or next header after extension headers (IPv6).
    pub proto: u8,
}

/// The transport header, for protocols whose fields are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketL4 {
    /// TCP.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// TCP flags byte (FIN=0x01 ... CWR=0x80).
        flags: u8,
    },
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP.
    Icmp {
        /// ICMP type.
        #[serde(rename = "type")]
        icmp_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// ICMPv6.
    Icmpv6 {
        /// ICMPv6 type.
        #[serde(rename = "type")]
        icmp_type: u8,
        /// ICMPv6 code.
        code: u8,
    },
    /// SCTP.
    Sctp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
}

impl PacketL4 {
    /// The header's flow fields in one shape for every protocol, as packet matchers
    /// compare them: (source port, destination port, TCP flags), with an ICMP message's
    /// type and code in place of the ports, and 0 where a protocol has no such field.
    pub fn flow_fields(&self) -> (u16, u16, u8) {
        match *self {
            PacketL4::Tcp {
                sport,
                dport,
                flags,
            } => (sport, dport, flags),
            PacketL4::Udp { sport, dport } | PacketL4::Sctp { sport, dport } => (sport, dport, 0),
            PacketL4::Icmp { icmp_type, code } | PacketL4::Icmpv6 { icmp_type, code } => {
                (icmp_type.into(), code.into(), 0)
            }
        }
    }
}

/// Name of an IP protocol number, as printed in `proto TCP (6)`.
pub fn ip_proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        1 => "ICMP",
        2 => "IGMP",
        4 => "IPIP",
        6 => "TCP",
        17 => "UDP",
        41 => "IPV6",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "ICMPV6",
        103 => "PIM",
        132 => "SCTP",
        136 => "UDPLITE",
        33 => "DCCP",
        _ => return None,
    })
}
