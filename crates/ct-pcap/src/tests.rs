use proptest::prelude::*;

use super::*;
use crate::ebpf::Insn as E;

/// The copy size the probe program uses, for these tests.
const COPY: u32 = 256;
const PACKET_BASE: u64 = 0x1000_0000;
const MEM_BASE: u64 = 0x2000_0000;

/// A region as the BPF C writes it: registers r6 (packet), r7 (length), r8 (memory),
/// r9 (result).
fn region(len: usize) -> Region {
    Region {
        start: 0,
        len,
        marker: 0x7fc0_de02,
        packet: 6,
        packet_len: 7,
        mem: 8,
        ret: 9,
    }
}

/// Runs a translated region the way the kernel would, over a flat memory of the packet
/// copy (`COPY` bytes, `bytes` of them valid) and the scratch words. Any access outside
/// them panics: the verifier would have refused it.
fn run_ebpf(code: &[E], r: &Region, bytes: &[u8], wire_len: u32) -> u32 {
    let mut packet = vec![0u8; COPY as usize];
    packet[..bytes.len()].copy_from_slice(bytes);
    let mut mem = [0u32; MEM_WORDS];
    mem[MEM_WORDS - 1] = wire_len;
    let mut reg = [0u64; 11];
    reg[r.packet as usize] = PACKET_BASE;
    reg[r.packet_len as usize] = bytes.len() as u64;
    reg[r.mem as usize] = MEM_BASE;
    let mut pc = 0usize;
    let mut steps = 0;
    while pc < code.len() {
        steps += 1;
        assert!(steps < 100_000, "no end");
        let i = code[pc];
        pc += 1;
        let (dst, src) = (i.dst() as usize, i.src() as usize);
        let class = i.code & 0x07;
        match class {
            ebpf::ALU | ebpf::ALU64 => {
                let op = i.code & 0xf0;
                let operand = if i.code & ebpf::X != 0 && op != ebpf::END {
                    reg[src]
                } else {
                    i.imm as i64 as u64
                };
                if class == ebpf::ALU {
                    let (a, b) = (reg[dst] as u32, operand as u32);
                    let v = match op {
                        ebpf::ADD => a.wrapping_add(b),
                        ebpf::SUB => a.wrapping_sub(b),
                        ebpf::MUL => a.wrapping_mul(b),
                        ebpf::DIV => a.checked_div(b).unwrap_or(0),
                        ebpf::MOD => a.checked_rem(b).unwrap_or(a),
                        ebpf::OR => a | b,
                        ebpf::AND => a & b,
                        ebpf::XOR => a ^ b,
                        ebpf::LSH => a.wrapping_shl(b),
                        ebpf::RSH => a.wrapping_shr(b),
                        ebpf::NEG => a.wrapping_neg(),
                        ebpf::MOV => b,
                        ebpf::END => match i.imm {
                            16 => u32::from((a as u16).swap_bytes()),
                            32 => a.swap_bytes(),
                            n => panic!("bswap {n}"),
                        },
                        _ => panic!("alu op {op:#x}"),
                    };
                    reg[dst] = u64::from(v);
                } else {
                    reg[dst] = match op {
                        ebpf::ADD => reg[dst].wrapping_add(operand),
                        ebpf::MOV => operand,
                        _ => panic!("alu64 op {op:#x}"),
                    };
                }
            }
            ebpf::JMP | ebpf::JMP32 => {
                let op = i.code & 0xf0;
                if op == ebpf::JA {
                    pc = (pc as isize + isize::from(i.off)) as usize;
                    continue;
                }
                let operand = if i.code & ebpf::X != 0 {
                    reg[src]
                } else {
                    i.imm as i64 as u64
                };
                let (a, b) = if class == ebpf::JMP32 {
                    (reg[dst] & 0xffff_ffff, operand & 0xffff_ffff)
                } else {
                    (reg[dst], operand)
                };
                let taken = match op {
                    ebpf::JEQ => a == b,
                    ebpf::JGT => a > b,
                    ebpf::JGE => a >= b,
                    ebpf::JSET => a & b != 0,
                    ebpf::JLT => a < b,
                    _ => panic!("jump op {op:#x}"),
                };
                if taken {
                    pc = (pc as isize + isize::from(i.off)) as usize;
                }
            }
            ebpf::LDX | ebpf::STX => {
                let n = match i.code & 0x18 {
                    ebpf::W => 4,
                    ebpf::H => 2,
                    ebpf::B => 1,
                    s => panic!("size {s:#x}"),
                };
                let base = if class == ebpf::LDX {
                    reg[src]
                } else {
                    reg[dst]
                };
                let addr = base.wrapping_add(i.off as i64 as u64);
                let (area, at): (&mut [u8], usize) =
                    if (PACKET_BASE..PACKET_BASE + u64::from(COPY)).contains(&addr) {
                        (&mut packet[..], (addr - PACKET_BASE) as usize)
                    } else if (MEM_BASE..MEM_BASE + 4 * MEM_WORDS as u64).contains(&addr) {
                        let words: &mut [u8] = bytemuck_words(&mut mem);
                        (words, (addr - MEM_BASE) as usize)
                    } else {
                        panic!("access at {addr:#x} outside the packet copy and the scratch words");
                    };
                assert!(at + n <= area.len(), "access past the end of its area");
                if class == ebpf::LDX {
                    let mut v = 0u64;
                    for (k, b) in area[at..at + n].iter().enumerate() {
                        v |= u64::from(*b) << (8 * k); // little endian, as the machine
                    }
                    reg[dst] = v;
                } else {
                    let v = reg[src];
                    for k in 0..n {
                        area[at + k] = (v >> (8 * k)) as u8;
                    }
                }
            }
            c => panic!("class {c:#x}"),
        }
    }
    assert_eq!(pc, code.len(), "jumped past the region");
    reg[r.ret as usize] as u32
}

fn bytemuck_words(words: &mut [u32; MEM_WORDS]) -> &mut [u8] {
    // SAFETY: u32 has no padding and any byte pattern is a valid u32; the slice covers
    // exactly the array and borrows it mutably.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), MEM_WORDS * 4) }
}

/// Expressions of the kinds tcpdump users type: offsets, flags, types, link layer,
/// lengths, port ranges, nets, IPv6 protocol chains, boolean mixes.
const EXPRESSIONS: &[&str] = &[
    "tcp",
    "udp port 53",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "icmp[icmptype] == icmp-echo",
    "ip[8] < 5",
    "ether host 02:00:00:00:00:01",
    "ether proto 0x0806",
    "arp",
    "not arp",
    "vlan",
    "greater 100",
    "less 64",
    "portrange 1000-2000",
    "net 10.0.0.0/8 and not host 10.0.0.1",
    "ip6 and tcp",
    "ip6 protochain 6",
    "src host 10.1.2.3 or dst port 443",
    "ip[6:2] & 0x1fff != 0",
    "tcp[2:2] > 1024 and tcp[13] & 2 != 0",
    "udp[8:4] == 0xdeadbeef",
    "icmp6",
    "ip and (udp or icmp) and not port 123",
    "len >= 60 and len <= 1500",
    "ip[0] & 0xf != 5",
];

#[test]
fn every_expression_compiles_for_ethernet() {
    for expr in EXPRESSIONS {
        let f = PcapFilter::compile(expr, COPY).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert!(f.program(LinkType::Ethernet).is_some(), "{expr}");
    }
}

#[test]
fn link_layer_expressions_have_no_raw_ip_program() {
    let ip_only = PcapFilter::compile("ip6 and tcp", COPY).unwrap();
    assert!(ip_only.program(LinkType::RawIp).is_some());
}

#[test]
fn libpcap_messages_come_through() {
    let err = PcapFilter::compile("tcp port eighty", COPY).unwrap_err();
    assert!(matches!(err, PcapError::Compile { .. }), "{err:?}");
    assert!(err.to_string().contains("eighty"), "{err}");
    assert_eq!(PcapFilter::compile("tcp\0", COPY), Err(PcapError::Nul));
}

/// A SYN from 10.1.2.3:40000 to 10.0.0.1:80 in an Ethernet frame.
fn syn_frame() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend([
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 1, 2, 3, 10, 0, 0, 1,
    ]);
    f.extend([
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

#[test]
fn the_interpreter_reads_a_syn_as_tcpdump_does() {
    let frame = syn_frame();
    let len = frame.len() as u32;
    let yes = |e: &str| {
        PcapFilter::compile(e, COPY)
            .unwrap()
            .matches(LinkType::Ethernet, &frame, len)
    };
    assert!(yes("tcp[tcpflags] & tcp-syn != 0"));
    assert!(yes("src host 10.1.2.3 or dst port 443"));
    assert!(yes("ether host 02:00:00:00:00:01"));
    assert!(!yes("tcp[tcpflags] & tcp-ack != 0"));
    assert!(!yes("udp"));
    assert!(!yes("greater 100"));
    // Cut short: the flags byte is not there, so no match.
    let f = PcapFilter::compile("tcp[tcpflags] & tcp-syn != 0", COPY).unwrap();
    assert!(!f.matches(LinkType::Ethernet, &frame[..40], len));
    let raw = PcapFilter::compile("tcp dst port 80", COPY).unwrap();
    assert!(raw.matches(LinkType::RawIp, &frame[14..], len - 14));
}

#[test]
fn translated_programs_match_what_they_should() {
    let frame = syn_frame();
    let len = frame.len() as u32;
    let r = region(1024);
    let run = |expr: &str, link: LinkType, bytes: &[u8], wire: u32| {
        let f = PcapFilter::compile(expr, COPY).unwrap();
        let code = translate(f.program(link).unwrap(), &r, COPY).unwrap();
        run_ebpf(&code, &r, bytes, wire) != 0
    };
    assert!(run(
        "tcp[tcpflags] & tcp-syn != 0",
        LinkType::Ethernet,
        &frame,
        len
    ));
    assert!(run(
        "ether host 02:00:00:00:00:01",
        LinkType::Ethernet,
        &frame,
        len
    ));
    assert!(run("less 64", LinkType::Ethernet, &frame, len));
    assert!(!run("greater 100", LinkType::Ethernet, &frame, len));
    assert!(run(
        "tcp dst port 80 and src net 10.1.0.0/16",
        LinkType::RawIp,
        &frame[14..],
        len - 14
    ));
    assert!(!run(
        "tcp[tcpflags] & tcp-syn != 0",
        LinkType::Ethernet,
        &frame[..40],
        len
    ));
}

#[test]
fn translations_are_the_region_long_and_too_large_ones_are_refused() {
    let f = PcapFilter::compile("tcp port 80", COPY).unwrap();
    let prog = f.program(LinkType::Ethernet).unwrap();
    let code = translate(prog, &region(512), COPY).unwrap();
    assert_eq!(code.len(), 512);
    assert!(code[0] == E::nop());
    let err = translate(prog, &region(8), COPY).unwrap_err();
    assert!(
        matches!(err, TranslateError::TooLarge { room: 8, .. }),
        "{err:?}"
    );
}

/// The verifier refuses instructions no path reaches: every one of a translation must be
/// reachable from the region's first.
fn assert_all_reachable(code: &[E]) {
    let mut seen = vec![false; code.len()];
    let mut stack = vec![0usize];
    while let Some(pc) = stack.pop() {
        if pc >= code.len() || seen[pc] {
            continue;
        }
        seen[pc] = true;
        let i = code[pc];
        let class = i.code & 0x07;
        let is_jump = class == ebpf::JMP || class == ebpf::JMP32;
        let target = (pc as isize + 1 + isize::from(i.off)) as usize;
        if is_jump && i.code & 0xf0 == ebpf::JA {
            stack.push(target);
        } else if is_jump {
            stack.push(target);
            stack.push(pc + 1);
        } else {
            stack.push(pc + 1);
        }
    }
    let unreachable: Vec<usize> = (0..code.len()).filter(|&n| !seen[n]).collect();
    assert!(
        unreachable.is_empty(),
        "unreachable instructions {unreachable:?}"
    );
}

#[test]
fn every_translated_instruction_is_reachable() {
    let never = [cbpf::Insn {
        code: cbpf::BPF_RET | cbpf::BPF_K,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    assert_all_reachable(&translate(&never, &region(64), COPY).unwrap());
    // A load past the copy, then more code.
    let far = PcapFilter::compile("tcp[400] == 1 or udp", COPY).unwrap();
    let code = translate(
        far.program(LinkType::Ethernet).unwrap(),
        &region(1024),
        COPY,
    )
    .unwrap();
    assert_all_reachable(&code);
    for expr in EXPRESSIONS {
        let f = PcapFilter::compile(expr, COPY).unwrap();
        for link in [LinkType::Ethernet, LinkType::RawIp] {
            if let Some(prog) = f.program(link) {
                assert_all_reachable(&translate(prog, &region(1024), COPY).unwrap());
            }
        }
    }
}

#[test]
fn regions_are_found_by_their_shape() {
    let mut prog = vec![E::mov64(0, 1)];
    prog.push(E::mov64(9, 6));
    prog.push(E::mov64(9, 7));
    prog.push(E::mov64(9, 8));
    prog.push(E::new(
        ebpf::ALU64 | ebpf::MOV | ebpf::K,
        9,
        0,
        0,
        0x7fc0_de02,
    ));
    prog.extend(std::iter::repeat_n(E::nop(), 60));
    prog.push(E::mov64(0, 9));
    let found = find_regions(&prog, &[0x7fc0_de02], 64);
    assert_eq!(
        found,
        [Region {
            start: 1,
            len: 64,
            marker: 0x7fc0_de02,
            packet: 6,
            packet_len: 7,
            mem: 8,
            ret: 9
        }]
    );
    // One nop short: not a region.
    assert!(find_regions(&prog, &[0x7fc0_de02], 65).is_empty());
    assert!(find_regions(&prog, &[0x1234], 64).is_empty());
}

/// Packets of the kinds the expressions look at, with fields drawn at random and the
/// copy cut anywhere.
fn frame() -> impl Strategy<Value = (Vec<u8>, u32)> {
    let ipv4 = (
        any::<[u8; 4]>(),
        prop::sample::select(vec![1u8, 6, 17, 132]),
        any::<u16>(),
        5u8..8,
    )
        .prop_map(|(src, proto, frag, ihl)| {
            let mut h = vec![
                0x40 | ihl,
                0,
                0,
                60,
                0,
                7,
                (frag >> 8) as u8 & 0x3f,
                frag as u8,
                64,
                proto,
                0,
                0,
            ];
            h.extend(src);
            h.extend([10, 0, 0, 1]);
            h.resize(usize::from(ihl) * 4, 1);
            (0x0800u16, h)
        });
    let ipv6 = (
        prop::sample::select(vec![6u8, 17, 58, 0, 44]),
        any::<[u8; 16]>(),
    )
        .prop_map(|(next, src)| {
            let mut h = vec![0x60, 0, 0, 0, 0, 20, next, 64];
            h.extend(src);
            h.extend([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            if next == 0 || next == 44 {
                h.extend([6, 0, 0, 0, 0, 0, 0, 0]);
            }
            (0x86ddu16, h)
        });
    let arp = Just((0x0806u16, vec![0, 1, 8, 0, 6, 4, 0, 1]));
    let vlan = Just((0x8100u16, vec![0, 5, 0x08, 0x00, 0x45, 0, 0, 20]));
    (
        prop_oneof![4 => ipv4, 3 => ipv6, 1 => arp, 1 => vlan],
        prop::collection::vec(any::<u8>(), 0..60),
        any::<bool>(),
        0usize..200,
        any::<u16>(),
    )
        .prop_map(|((ethertype, l3), payload, ether_match, cut, extra)| {
            let mut f = if ether_match {
                vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]
            } else {
                vec![2, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 4]
            };
            f.extend(ethertype.to_be_bytes());
            f.extend(l3);
            f.extend(payload);
            let wire = f.len() as u32 + u32::from(extra % 1600);
            let keep = f.len().min(cut.max(1)).min(COPY as usize);
            f.truncate(keep);
            (f, wire)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The translation decides as the classic program does, for every expression, on
    /// every link type it compiles for.
    #[test]
    fn translation_agrees_with_the_classic_program((frame, wire) in frame()) {
        for expr in EXPRESSIONS {
            let f = PcapFilter::compile(expr, COPY).unwrap();
            for link in [LinkType::Ethernet, LinkType::RawIp] {
                let Some(prog) = f.program(link) else { continue };
                let bytes = match link {
                    LinkType::Ethernet => &frame[..],
                    LinkType::RawIp => frame.get(14..).unwrap_or(&[]),
                };
                let wire = if link == LinkType::RawIp { wire.saturating_sub(14) } else { wire };
                let r = region(1024);
                let code = translate(prog, &r, COPY).unwrap();
                let classic = cbpf::run(prog, bytes, wire);
                let extended = run_ebpf(&code, &r, bytes, wire);
                prop_assert_eq!(classic != 0, extended != 0, "{} on {} {:02x?}", expr, link, bytes);
                prop_assert_eq!(classic, extended);
            }
        }
    }
}
