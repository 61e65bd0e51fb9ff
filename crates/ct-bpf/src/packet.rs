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
    let (ip, l4) = parse_l3(u16::from_be_bytes(raw.l3_proto), hdr, raw.skb_len).unzip();
    Packet {
        ifindex: has_dev.then_some(raw.ifindex),
        ifname: has_dev.then(|| FixedStr::from_kernel(&raw.ifname)),
        len: raw.skb_len,
        ip,
        l4: l4.flatten(),
    }
}

/// Parses an IPv4 or IPv6 header and what follows. `l3_proto` is `skb->protocol`, `skb_len`
/// `skb->len`; a non-IP protocol gives `None`.
///
/// An unset protocol (0) says nothing: the buffer may be a packet the IP layer has not
/// labelled yet, or no packet at all (a netlink or socket buffer freed at `consume_skb`),
/// and then the bytes at its network header offset are whatever was there. Such bytes
/// are taken for a header only when they are one (`plausible_unlabelled`); otherwise
/// there is no `ip` section.
pub fn parse_l3(l3_proto: u16, hdr: &[u8], skb_len: u32) -> Option<(PacketIp, Option<PacketL4>)> {
    let version = hdr.first()? >> 4;
    match (l3_proto, version) {
        (ETH_P_IP, 4) => parse_ipv4(hdr),
        (ETH_P_IPV6, 6) => parse_ipv6(hdr),
        (0, 4 | 6) if plausible_unlabelled(hdr, skb_len) => {
            if version == 4 {
                parse_ipv4(hdr)
            } else {
                parse_ipv6(hdr)
            }
        }
        _ => None,
    }
}

/// Whether the bytes of a buffer whose `skb->protocol` is unset are an IP header:
///
/// - IPv4: a header length (ihl) of at least 5 words, the whole header copied, a valid
///   header checksum, and a total length of at least the header and at most `skb->len`
///   (where the protocol is unset, the IP layer has not passed the packet on, so its data
///   still starts at the network header: the packet is all in `skb->len`);
/// - IPv6 (no checksum to check): the fixed header copied and the payload length plus
///   the 40-byte header at most `skb->len`.
///
/// The kernel's packet filter applies the same rule (`ct_parse_view` in `ct_filter.h`).
pub fn plausible_unlabelled(hdr: &[u8], skb_len: u32) -> bool {
    let Some(&first) = hdr.first() else {
        return false;
    };
    match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            let Some(header) = hdr.get(..ihl).filter(|_| ihl >= 20) else {
                return false;
            };
            let total = u32::from(u16::from_be_bytes([hdr[2], hdr[3]]));
            total as usize >= ihl && total <= skb_len && ipv4_checksum_ok(header)
        }
        6 => hdr.len() >= 40 && u32::from(u16::from_be_bytes([hdr[4], hdr[5]])) + 40 <= skb_len,
        _ => false,
    }
}

/// The ones' complement sum of an IPv4 header, its checksum field included, is 0xffff.
fn ipv4_checksum_ok(header: &[u8]) -> bool {
    let mut sum: u32 = header
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
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
        let (ip, l4) = parse_l3(ETH_P_IP, &SYN, 60).unwrap();
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
        let (ip, l4) = parse_l3(ETH_P_IP, &SYN[..24], 60).unwrap();
        assert_eq!(ip.proto, 6);
        assert_eq!(l4, None);
        assert!(parse_l3(ETH_P_IP, &SYN[..19], 60).is_none());
        assert!(
            parse_l3(0x0806, &SYN, 60).is_none(),
            "ARP is not parsed as IP"
        );
    }

    #[test]
    fn ipv6_icmp_echo_through_hop_by_hop() {
        let mut h = vec![0x60, 0x00, 0x00, 0x01, 0, 16, 0, 64];
        h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, 8 bytes
        h.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
        let (ip, l4) = parse_l3(ETH_P_IPV6, &h, 56).unwrap();
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

    /// SYN with its header checksum filled in.
    fn syn_with_checksum() -> [u8; 40] {
        let mut h = SYN;
        h[10..12].fill(0);
        let sum: u32 = h[..20]
            .chunks_exact(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        h
    }

    #[test]
    fn unlabelled_ipv4_needs_a_real_header() {
        let good = syn_with_checksum();
        assert!(ipv4_checksum_ok(&good[..20]));
        // With skb->protocol unset, a real header is shown...
        let (ip, l4) = parse_l3(0, &good, 60).unwrap();
        assert_eq!(ip.len, 60);
        assert!(matches!(l4, Some(PacketL4::Tcp { dport: 443, .. })));
        // ...and anything short of one is not.
        let mut bad = good;
        bad[8] ^= 1; // ttl changed, checksum not
        assert!(parse_l3(0, &bad, 60).is_none(), "checksum");
        assert!(
            parse_l3(0, &good, 59).is_none(),
            "total length past skb->len"
        );
        let mut short = good;
        short[0] = 0x44; // ihl 4
        assert!(parse_l3(0, &short, 60).is_none(), "ihl < 5");
        let mut long = good;
        long[0] = 0x4f; // ihl 15: 60 bytes, more than were copied
        assert!(
            parse_l3(0, &long[..40], 60).is_none(),
            "header not all copied"
        );
        // A labelled packet is shown as it is (the kernel said it is IPv4).
        assert!(parse_l3(ETH_P_IP, &bad, 0).is_some());
    }

    /// The buffer seen at skb:consume_skb with skb->protocol 0 that printed as
    /// `0.0.0.0 > 2.0.0.0 ttl 0 tos 0x0 id 7168 off 0 len 0 proto 0`.
    #[test]
    fn the_observed_non_packet_has_no_ip_section() {
        let mut h = [0u8; 96];
        h[0] = 0x45;
        h[4..6].copy_from_slice(&7168u16.to_be_bytes());
        h[16] = 2;
        assert!(parse_l3(0, &h, 96).is_none());
        // Labelled IPv4, the same bytes would still be shown: the kernel vouches for them.
        assert!(parse_l3(ETH_P_IP, &h, 96).is_some());
    }

    #[test]
    fn unlabelled_ipv6_must_fit() {
        let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        h.extend_from_slice(&[0xfd; 32]);
        h.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        assert!(parse_l3(0, &h, 48).is_some());
        assert!(parse_l3(0, &h, 47).is_none());
        assert!(parse_l3(0, &h[..39], 48).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(proto in any::<u16>(), bytes in proptest::collection::vec(any::<u8>(), 0..120), skb_len in any::<u32>()) {
            let _ = parse_l3(proto, &bytes, skb_len);
        }

        /// Whatever the bytes, an unset protocol never gives an IPv4 section whose header
        /// is malformed.
        #[test]
        fn unlabelled_sections_are_real_headers(
            bytes in proptest::collection::vec(any::<u8>(), 20..96),
            skb_len in 0u32..2000,
        ) {
            if let Some((ip, _)) = parse_l3(0, &bytes, skb_len) {
                prop_assert!(u32::from(ip.len) <= skb_len);
                if ip.version == IpVersion::V4 {
                    let ihl = usize::from(bytes[0] & 0x0f) * 4;
                    prop_assert!(ihl >= 20 && usize::from(ip.len) >= ihl);
                    prop_assert!(ipv4_checksum_ok(&bytes[..ihl]));
                }
            }
        }

        /// Any header with a correct checksum that fits is shown with the protocol unset.
        #[test]
        fn valid_unlabelled_ipv4_is_shown(
            mut h in proptest::array::uniform20(any::<u8>()),
            extra in 0u32..100,
        ) {
            h[0] = 0x45;
            h[2..4].copy_from_slice(&20u16.to_be_bytes());
            h[10..12].fill(0);
            let sum: u32 = h.chunks_exact(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
            let sum = (sum & 0xffff) + (sum >> 16);
            let sum = (sum & 0xffff) + (sum >> 16);
            h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            prop_assert!(parse_l3(0, &h, 20 + extra).is_some());
        }
    }
}
