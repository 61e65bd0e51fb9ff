//! A trace step ready to join: the message, its rule's text and its packet.

use std::sync::Arc;

use std::time::Instant;

use ct_core::{Event, FixedStr, HeaderBytes, NftDevice, NftTrace, Packet, Tracking};

use crate::devices::DeviceNames;
use crate::message::{TraceMessage, NFPROTO_IPV4, NFPROTO_IPV6};

/// `ETH_P_IP` and `ETH_P_IPV6`, as the header parser takes the layer-3 protocol.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// Offset of the next-header byte in the IPv6 header.
const IPV6_NEXT_HEADER: usize = 6;
/// IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_UDPLITE: headers the
/// kernel copies as the transport header right after a plain IPv6 header.
const TRANSPORT_PROTOCOLS: [u8; 5] = [6, 17, 58, 132, 136];

/// One step of a packet's way through nftables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    pub message: TraceMessage,
    /// The rule's text, when `nft` could print it.
    pub rule: Option<Arc<str>>,
    /// The packet as the trace's headers show it.
    pub packet: Option<Packet>,
    /// When the message was read (`CLOCK_MONOTONIC`, nanoseconds).
    pub received_ns: u64,
    /// The inode of the network namespace whose nftables reported the step (the reader's),
    /// when known: it wins over the namespace of the BPF events it is joined to, which
    /// may have seen the packet in another namespace.
    pub netns: Option<u32>,
    /// The names of the message's input and output devices in the traced namespace when
    /// it was read; `None` where there is no such device (any more).
    pub iif_name: Option<FixedStr>,
    pub oif_name: Option<FixedStr>,
}

impl TraceStep {
    /// A step for `message`, its packet parsed from the headers it carries.
    pub fn new(message: TraceMessage, rule: Option<Arc<str>>, received_ns: u64) -> Self {
        let packet = trace_packet(&message);
        TraceStep {
            message,
            rule,
            packet,
            received_ns,
            netns: None,
            iif_name: None,
            oif_name: None,
        }
    }

    /// Names the step's devices as the calling thread's network namespace has them now.
    pub(crate) fn name_devices(&mut self, names: &mut DeviceNames, now: Instant) {
        self.iif_name = self.message.iif.and_then(|i| names.name(i, now));
        self.oif_name = self.message.oif.and_then(|i| names.name(i, now));
        if let Some(packet) = &mut self.packet {
            // The packet's device is the input device, else the output one.
            packet.ifname = match self.message.iif {
                Some(_) => self.iif_name,
                None => self.oif_name,
            };
        }
    }

    /// The step, reported by the nftables of network namespace `netns`.
    pub fn in_netns(self, netns: u32) -> Self {
        TraceStep {
            netns: Some(netns),
            ..self
        }
    }

    /// The step as an event, with the tracking ids of its packet's BPF events when it was
    /// joined to them, and its own namespace (else theirs).
    pub fn into_event(self, tracking: Option<Tracking>, netns: Option<u32>) -> Event {
        let m = self.message;
        Event {
            timestamp: Some(self.received_ns),
            netns: self.netns.or(netns),
            tracking,
            packet: self.packet,
            nft: Some(NftTrace {
                family: m.family,
                table: m.table.into(),
                chain: m.chain.into(),
                kind: m.kind,
                handle: m.handle,
                rule: self.rule,
                verdict: m.verdict,
                target: m.target.map(Into::into),
                iif: m.iif.map(|ifindex| NftDevice {
                    ifindex,
                    ifname: self.iif_name,
                }),
                oif: m.oif.map(|ifindex| NftDevice {
                    ifindex,
                    ifname: self.oif_name,
                }),
            }),
            ..Event::default()
        }
    }
}

/// The packet section from a trace's headers: network and transport header are copied
/// separately (at most 40 and 20 bytes), and together they are the start of the packet
/// unless IPv4 options or IPv6 extension headers made the first copy stop short.
fn trace_packet(m: &TraceMessage) -> Option<Packet> {
    let l3_proto = match m.nfproto? {
        NFPROTO_IPV4 => ETH_P_IP,
        NFPROTO_IPV6 => ETH_P_IPV6,
        _ => return None,
    };
    let mut headers = m.network_header.clone();
    // IPv6 extension headers sit between the two copies and are not in either: the
    // transport header then cannot be placed, and only the network header is parsed.
    let extension_follows = l3_proto == ETH_P_IPV6
        && headers
            .get(IPV6_NEXT_HEADER)
            .is_some_and(|next| !TRANSPORT_PROTOCOLS.contains(next));
    if !extension_follows {
        headers.extend_from_slice(&m.transport_header);
    }
    let (ip, l4) = ct_bpf::parse_l3(l3_proto, &headers, 0)?;
    Some(Packet {
        ifindex: m.iif.or(m.oif),
        ifname: None,
        len: ip.len.into(),
        ip: Some(ip),
        l4,
        headers: Some(HeaderBytes::new(&headers)),
    })
}
