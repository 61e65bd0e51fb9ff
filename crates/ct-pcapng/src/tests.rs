use std::net::{IpAddr, Ipv4Addr};

use ct_core::{HeaderBytes, IpVersion, PacketIp, PacketL4, ProbeInfo, ProbeKind};
use proptest::prelude::*;

use super::*;

/// One block as read back: type, body (between the length fields).
#[derive(Debug)]
struct Block {
    kind: u32,
    body: Vec<u8>,
}

/// Splits a capture into blocks, checking the framing every block must have.
fn blocks(capture: &[u8]) -> Vec<Block> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < capture.len() {
        let u32_at = |i: usize| u32::from_le_bytes(capture[i..i + 4].try_into().unwrap());
        let kind = u32_at(at);
        let total = u32_at(at + 4) as usize;
        assert_eq!(total % 4, 0, "block at {at} not 32-bit aligned");
        assert!(total >= 12 && at + total <= capture.len(), "block at {at}");
        assert_eq!(
            u32_at(at + total - 4) as usize,
            total,
            "trailing length at {at}"
        );
        out.push(Block {
            kind,
            body: capture[at + 8..at + total - 4].to_vec(),
        });
        at += total;
    }
    out
}

/// The options after `fixed` bytes of a block body, as (code, value).
fn options(body: &[u8], fixed: usize) -> Vec<(u16, Vec<u8>)> {
    let mut at = fixed;
    let mut out = Vec::new();
    while at + 4 <= body.len() {
        let code = u16::from_le_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_le_bytes([body[at + 2], body[at + 3]]));
        if code == OPT_END_OF_OPTIONS {
            assert_eq!(at + 4, body.len(), "bytes after the end of options");
            return out;
        }
        out.push((code, body[at + 4..at + 4 + len].to_vec()));
        at += 4 + len + (4 - len % 4) % 4;
    }
    panic!("options without an end");
}

fn ipv4_header(total_len: u16) -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    h[2..4].copy_from_slice(&total_len.to_be_bytes());
    // ICMP echo request header.
    h.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    h
}

fn event(ifindex: u32, ifname: &str, bytes: Option<Vec<u8>>, ip_len: u16) -> Event {
    Event {
        timestamp: Some(1_000_000_123),
        netns: Some(4026531840),
        probe: Some(ProbeInfo {
            kind: ProbeKind::Tp,
            name: "net:net_dev_start_xmit".into(),
        }),
        packet: Some(Packet {
            ifindex: Some(ifindex),
            ifname: Some(FixedStr::new(ifname)),
            len: u32::from(ip_len) + 14,
            ip: Some(PacketIp {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                version: IpVersion::V4,
                ttl: 64,
                tos: 0,
                id: 0x1234,
                frag_off: 0,
                df: true,
                mf: false,
                len: ip_len,
                proto: 1,
            }),
            l4: Some(PacketL4::Icmp {
                icmp_type: 8,
                code: 0,
            }),
            headers: bytes.map(|b| HeaderBytes::new(&b)),
        }),
        ..Event::default()
    }
}

fn capture(events: &[Event], options: PcapngOptions) -> (Vec<u8>, PcapngStats) {
    let mut w = PcapngWriter::new(Vec::new(), options).unwrap();
    for e in events {
        w.write(e).unwrap();
    }
    let stats = w.stats();
    (w.into_inner(), stats)
}

#[test]
fn section_interfaces_and_packets() {
    let short = ipv4_header(28);
    let mut padded = ipv4_header(28);
    padded.extend_from_slice(&[0xee; 18]); // an Ethernet trailer copied past the packet
    let events = [
        event(2, "eth0", Some(short.clone()), 28),
        event(3, "veth1", Some(padded), 28),
        event(2, "eth0", Some(short.clone()), 28),
        event(2, "eth0", None, 28),
        Event::default(),
    ];
    let (bytes, stats) = capture(
        &events,
        PcapngOptions {
            application: Some("ct-cli test".into()),
            clock_offset_ns: 5,
        },
    );
    assert_eq!(
        stats,
        PcapngStats {
            packets: 3,
            no_ip_header: 1,
            no_header_bytes: 1
        }
    );
    let blocks = blocks(&bytes);
    let kinds: Vec<u32> = blocks.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [SECTION_HEADER_BLOCK, 1, 6, 1, 6, 6]);

    let shb = &blocks[0].body;
    assert_eq!(&shb[..4], &BYTE_ORDER_MAGIC.to_le_bytes());
    assert_eq!(
        options(shb, 16),
        [(SHB_USER_APPLICATION, b"ct-cli test".to_vec())]
    );

    let idb = &blocks[1].body;
    assert_eq!(u16::from_le_bytes([idb[0], idb[1]]), LINKTYPE_RAW);
    assert_eq!(
        options(idb, 8),
        [
            (IF_NAME, b"eth0".to_vec()),
            (IF_DESCRIPTION, b"ifindex 2 netns 4026531840".to_vec()),
            (IF_TSRESOL, vec![9]),
        ]
    );

    let epb = |i: usize| {
        let b = &blocks[i].body;
        let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        (
            word(0),
            (u64::from(word(4)) << 32) | u64::from(word(8)),
            word(12),
            word(16),
        )
    };
    // interface, timestamp (+ offset), captured, original
    assert_eq!(epb(2), (0, 1_000_000_128, 28, 28));
    assert_eq!(epb(4), (1, 1_000_000_128, 28, 28), "trailer cut");
    assert_eq!(epb(5).0, 0, "second packet on eth0 reuses its interface");
    let body = &blocks[2].body;
    assert_eq!(&body[20..48], &short[..]);
    let comment = options(body, 20 + 28);
    assert_eq!(comment.len(), 1);
    assert_eq!(comment[0].0, OPT_COMMENT);
    let text = String::from_utf8(comment[0].1.clone()).unwrap();
    assert!(
        text.starts_with("1000000123 [tp] net:net_dev_start_xmit"),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn original_length_is_the_ip_packets() {
    let bytes = ipv4_header(1500);
    let (written, _) = capture(
        &[event(2, "eth0", Some(bytes), 1500)],
        PcapngOptions::default(),
    );
    let b = &blocks(&written)[2].body;
    assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 28);
    assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 1500);
    // A GSO packet whose header says 0: skb->len.
    let (written, _) = capture(
        &[event(2, "eth0", Some(ipv4_header(0)), 0)],
        PcapngOptions::default(),
    );
    let b = &blocks(&written)[2].body;
    assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 14);
}

#[test]
fn devices_without_names_and_namespaces() {
    let mut no_name = event(7, "", Some(ipv4_header(28)), 28);
    no_name.netns = None;
    let mut no_device = event(0, "", Some(ipv4_header(28)), 28);
    if let Some(p) = &mut no_device.packet {
        p.ifindex = None;
        p.ifname = None;
    }
    let (written, stats) = capture(&[no_name, no_device], PcapngOptions::default());
    assert_eq!(stats.packets, 2);
    let blocks = blocks(&written);
    assert_eq!(
        options(&blocks[1].body, 8)[..2],
        [
            (IF_NAME, b"if7".to_vec()),
            (IF_DESCRIPTION, b"ifindex 7".to_vec())
        ]
    );
    assert_eq!(
        options(&blocks[3].body, 8)[..2],
        [
            (IF_NAME, b"unknown".to_vec()),
            (IF_DESCRIPTION, b"no device netns 4026531840".to_vec())
        ]
    );
}

#[test]
fn an_unnamed_device_goes_with_the_named_one_of_its_index() {
    let named = event(7, "vb", Some(ipv4_header(28)), 28);
    let mut unnamed = named.clone();
    if let Some(p) = &mut unnamed.packet {
        p.ifname = None;
    }
    let mut elsewhere = unnamed.clone();
    elsewhere.netns = Some(1);
    let (written, _) = capture(&[named, unnamed, elsewhere], PcapngOptions::default());
    let blocks = blocks(&written);
    let kinds: Vec<u32> = blocks.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [SECTION_HEADER_BLOCK, 1, 6, 6, 1, 6]);
    let interface = |i: usize| u32::from_le_bytes(blocks[i].body[..4].try_into().unwrap());
    assert_eq!((interface(2), interface(3), interface(5)), (0, 0, 1));
}

#[test]
fn a_failed_write_is_returned() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(PcapngWriter::new(Full, PcapngOptions::default()).is_err());
}

#[test]
fn long_texts_are_cut_at_a_character() {
    let text = "é".repeat(MAX_OPTION_LEN);
    let cut = truncated(&text);
    assert!(cut.len() <= MAX_OPTION_LEN && cut.len() >= MAX_OPTION_LEN - 1);
}

proptest! {
    /// Any header bytes, lengths and offsets make a well-framed capture.
    #[test]
    fn any_event_makes_well_framed_blocks(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        ip_len in any::<u16>(),
        skb_len in any::<u32>(),
        ts in any::<u64>(),
        offset in any::<i64>(),
        ifname in "[a-z0-9\\u{80}-\\u{10ffff}]{0,15}",
    ) {
        let mut e = event(1, &ifname, Some(bytes), ip_len);
        e.timestamp = Some(ts);
        if let Some(p) = &mut e.packet { p.len = skb_len; }
        let (written, stats) = capture(&[e.clone(), e], PcapngOptions { application: None, clock_offset_ns: offset });
        prop_assert_eq!(stats.packets, 2);
        let blocks = blocks(&written);
        prop_assert_eq!(blocks.len(), 4);
        let b = &blocks[2].body;
        let captured = u32::from_le_bytes(b[12..16].try_into().unwrap());
        let original = u32::from_le_bytes(b[16..20].try_into().unwrap());
        prop_assert!(captured <= original);
    }
}
