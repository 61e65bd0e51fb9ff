//! The packet section, parsed in user space from the header bytes the program copied.
//! Parsing here rather than in BPF keeps the per-hit cost to one copy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ct_core::{FixedStr, IpVersion, Packet, PacketIp, PacketL4};

use crate::raw::{RawCtEvent, PKT_HAS_DEV};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// Builds the packet section; fields the copy does not cover are left out, never guessed.
pub fn parse_packet(raw: &RawCtEvent) -> Packet {
    let has_dev = raw.pkt_flags & PKT_HAS_DEV != 0;
    let hdr = &raw.hdr[..usize::from(raw.hdr_len).min(raw.hdr.len())];
    let (ip, l4) = parse_l3(u16::from_be_bytes(raw.l3_proto), hdr).unzip();
    Packet {
        ifindex: has_dev.then_some(raw.ifindex),
        ifname: has_dev.then(|| FixedStr::from_kernel(&raw.ifname)),
        len: raw.skb_len,
        ip,
        l4: l4.flatten(),
    }
}

/// Parses an IPv4 or IPv6 header and what follows. `l3_proto` is `skb->protocol`; a
/// non-IP protocol gives `None`, an unset one (0) trusts the version nibble.
pub fn parse_l3(l3_proto: u16, hdr: &[u8]) -> Option<(PacketIp, Option<PacketL4>)> {
    let version = hdr.first()? >> 4;
    match (l3_proto, version) {
        (ETH_P_IP | 0, 4) => parse_ipv4(hdr),
        (ETH_P_IPV6 | 0, 6) => parse_ipv6(hdr),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn parse_ipv4(h: &[u8]) -> Option<(PacketIp, Option<PacketL4>)> {
    if h.len() < 20 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let frag = be16(h, 6)?;
    let ip = PacketIp {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        version: IpVersion::V4,
        ttl: h[8],
        tos: h[1],
        id: u32::from(be16(h, 4)?),
        frag_off: (frag & 0x1fff) * 8,
        df: frag & 0x4000 != 0,
        mf: frag & 0x2000 != 0,
        len: be16(h, 2)?,
        proto: h[9],
    };
    // Only the first fragment carries the transport header.
    let l4 = if ihl >= 20 && ip.frag_off == 0 {
        h.get(ihl..).and_then(|rest| parse_l4(ip.proto, rest))
    } else {
        None
    };
    Some((ip, l4))
}

fn parse_ipv6(h: &[u8]) -> Option<(PacketIp, Option<PacketL4>)> {
    if h.len() < 40 {
        return None;
    }
    let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let src: [u8; 16] = h[8..24].try_into().ok()?;
    let dst: [u8; 16] = h[24..40].try_into().ok()?;
    // Walk the extension headers that fit in the copy.
    let (mut next, mut at, mut first_fragment) = (h[6], 40usize, true);
    loop {
        match next {
            0 | 43 | 60 => {
                let (nh, len) = (*h.get(at)?, *h.get(at + 1)?);
                next = nh;
                at += (usize::from(len) + 1) * 8;
            }
            44 => {
                next = *h.get(at)?;
                first_fragment = be16(h, at + 2)? & 0xfff8 == 0;
                at += 8;
            }
            _ => break,
        }
        if at >= h.len() {
            break;
        }
    }
    let ip = PacketIp {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        version: IpVersion::V6,
        ttl: h[7],
        tos: ((word >> 20) & 0xff) as u8,
        id: word & 0x000f_ffff,
        frag_off: 0,
        df: false,
        mf: false,
        len: be16(h, 4)?.saturating_add(40),
        proto: next,
    };
    let l4 = if first_fragment {
        h.get(at..).and_then(|rest| parse_l4(next, rest))
    } else {
        None
    };
    Some((ip, l4))
}

fn parse_l4(proto: u8, b: &[u8]) -> Option<PacketL4> {
    Some(match proto {
        6 => PacketL4::Tcp {
            sport: be16(b, 0)?,
            dport: be16(b, 2)?,
            flags: *b.get(13)?,
        },
        17 | 136 => PacketL4::Udp {
            sport: be16(b, 0)?,
            dport: be16(b, 2)?,
        },
        1 => PacketL4::Icmp {
            icmp_type: *b.first()?,
            code: *b.get(1)?,
        },
        58 => PacketL4::Icmpv6 {
            icmp_type: *b.first()?,
            code: *b.get(1)?,
        },
        132 => PacketL4::Sctp {
            sport: be16(b, 0)?,
            dport: be16(b, 2)?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SYN: [u8; 40] = [
        0x45, 0, 0, 60, 0x30, 0x39, 0x40, 0, 64, 6, 0, 0, 192, 168, 1, 100, 203, 0, 113,
        10, //
        0xd4, 0x31, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn ipv4_tcp_syn() {
        let (ip, l4) = parse_l3(ETH_P_IP, &SYN).unwrap();
        assert_eq!(ip.src, "192.168.1.100".parse::<IpAddr>().unwrap());
        assert_eq!(ip.ttl, 64);
        assert_eq!(ip.id, 12345);
        assert!(ip.df);
        assert_eq!(ip.len, 60);
        assert_eq!(
            l4,
            Some(PacketL4::Tcp {
                sport: 54321,
                dport: 443,
                flags: 0x02
            })
        );
    }

    #[test]
    fn truncated_transport_is_left_out() {
        let (ip, l4) = parse_l3(ETH_P_IP, &SYN[..24]).unwrap();
        assert_eq!(ip.proto, 6);
        assert_eq!(l4, None);
        assert!(parse_l3(ETH_P_IP, &SYN[..19]).is_none());
        assert!(parse_l3(0x0806, &SYN).is_none(), "ARP is not parsed as IP");
    }

    #[test]
    fn ipv6_icmp_echo_through_hop_by_hop() {
        let mut h = vec![0x60, 0x00, 0x00, 0x01, 0, 16, 0, 64];
        h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, 8 bytes
        h.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
        let (ip, l4) = parse_l3(ETH_P_IPV6, &h).unwrap();
        assert_eq!(ip.version, IpVersion::V6);
        assert_eq!(ip.id, 1, "flow label");
        assert_eq!(ip.proto, 58);
        assert_eq!(ip.len, 56);
        assert_eq!(
            l4,
            Some(PacketL4::Icmpv6 {
                icmp_type: 128,
                code: 0
            })
        );
    }

    proptest! {
        #[test]
        fn never_panics(proto in any::<u16>(), bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_l3(proto, &bytes);
        }
    }
}
