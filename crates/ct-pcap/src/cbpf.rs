//! Classic BPF, as libpcap compiles it (`struct bpf_insn` of `<pcap/bpf.h>`), and an
//! interpreter for it: the meaning the translation to eBPF is held to, and the filter for
//! events that carry packet bytes in user space.

// The opcode constants and helpers carry <pcap/bpf.h>'s names and meanings.
#![allow(missing_docs)]

/// One classic BPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Instruction classes, sizes, modes, operations and sources (<pcap/bpf.h>).
pub const BPF_LD: u16 = 0x00;
pub const BPF_LDX: u16 = 0x01;
pub const BPF_ST: u16 = 0x02;
pub const BPF_STX: u16 = 0x03;
pub const BPF_ALU: u16 = 0x04;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_RET: u16 = 0x06;
pub const BPF_MISC: u16 = 0x07;

pub const BPF_W: u16 = 0x00;
pub const BPF_H: u16 = 0x08;
pub const BPF_B: u16 = 0x10;

pub const BPF_IMM: u16 = 0x00;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_IND: u16 = 0x40;
pub const BPF_MEM: u16 = 0x60;
pub const BPF_LEN: u16 = 0x80;
pub const BPF_MSH: u16 = 0xa0;

pub const BPF_ADD: u16 = 0x00;
pub const BPF_SUB: u16 = 0x10;
pub const BPF_MUL: u16 = 0x20;
pub const BPF_DIV: u16 = 0x30;
pub const BPF_OR: u16 = 0x40;
pub const BPF_AND: u16 = 0x50;
pub const BPF_LSH: u16 = 0x60;
pub const BPF_RSH: u16 = 0x70;
pub const BPF_NEG: u16 = 0x80;
pub const BPF_MOD: u16 = 0x90;
pub const BPF_XOR: u16 = 0xa0;

pub const BPF_JA: u16 = 0x00;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGT: u16 = 0x20;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_JSET: u16 = 0x40;

pub const BPF_K: u16 = 0x00;
pub const BPF_X: u16 = 0x08;
pub const BPF_A: u16 = 0x10;

pub const BPF_TAX: u16 = 0x00;
pub const BPF_TXA: u16 = 0x80;

/// Scratch memory words (`BPF_MEMWORDS`).
pub const MEMWORDS: usize = 16;

pub fn class(code: u16) -> u16 {
    code & 0x07
}
pub fn size(code: u16) -> u16 {
    code & 0x18
}
pub fn mode(code: u16) -> u16 {
    code & 0xe0
}
pub fn op(code: u16) -> u16 {
    code & 0xf0
}
pub fn src(code: u16) -> u16 {
    code & 0x08
}
pub fn rval(code: u16) -> u16 {
    code & 0x18
}
pub fn miscop(code: u16) -> u16 {
    code & 0xf8
}

/// Bytes a load of `code`'s size reads.
pub fn load_bytes(code: u16) -> Option<u32> {
    match size(code) {
        BPF_W => Some(4),
        BPF_H => Some(2),
        BPF_B => Some(1),
        _ => None,
    }
}

/// Runs `prog` on `packet` (the bytes there are; `wire_len` is the packet's whole length,
/// what `len` and `greater` see). Returns what the program returns: 0 for no match. A
/// load past the bytes there are ends the program with 0, as in the kernel; so do a
/// division by zero and an instruction that is not one.
pub fn run(prog: &[Insn], packet: &[u8], wire_len: u32) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEMWORDS];
    let mut pc = 0usize;
    let load = |at: u32, code: u16| -> Option<u32> {
        let n = load_bytes(code)?;
        let start = usize::try_from(at).ok()?;
        let bytes = packet.get(start..start.checked_add(n as usize)?)?;
        Some(bytes.iter().fold(0u32, |v, &b| v << 8 | u32::from(b)))
    };
    while let Some(insn) = prog.get(pc) {
        pc += 1;
        let Insn { code, jt, jf, k } = *insn;
        match class(code) {
            BPF_LD | BPF_LDX => {
                let value = match mode(code) {
                    BPF_IMM => k,
                    BPF_ABS if class(code) == BPF_LD => match load(k, code) {
                        Some(v) => v,
                        None => return 0,
                    },
                    BPF_IND if class(code) == BPF_LD => match load(x.wrapping_add(k), code) {
                        Some(v) => v,
                        None => return 0,
                    },
                    BPF_MEM => match mem.get(k as usize) {
                        Some(&v) => v,
                        None => return 0,
                    },
                    BPF_LEN => wire_len,
                    BPF_MSH if class(code) == BPF_LDX => match load(k, BPF_B) {
                        Some(v) => (v & 0xf) << 2,
                        None => return 0,
                    },
                    _ => return 0,
                };
                if class(code) == BPF_LD {
                    a = value;
                } else {
                    x = value;
                }
            }
            BPF_ST | BPF_STX => {
                let Some(slot) = mem.get_mut(k as usize) else {
                    return 0;
                };
                *slot = if class(code) == BPF_ST { a } else { x };
            }
            BPF_ALU => {
                let operand = if src(code) == BPF_X { x } else { k };
                a = match op(code) {
                    BPF_ADD => a.wrapping_add(operand),
                    BPF_SUB => a.wrapping_sub(operand),
                    BPF_MUL => a.wrapping_mul(operand),
                    BPF_DIV if operand == 0 => return 0,
                    BPF_DIV => a / operand,
                    BPF_MOD if operand == 0 => return 0,
                    BPF_MOD => a % operand,
                    BPF_OR => a | operand,
                    BPF_AND => a & operand,
                    BPF_XOR => a ^ operand,
                    // By the low 5 bits of the count, as the kernel (and eBPF) shift.
                    BPF_LSH => a.wrapping_shl(operand),
                    BPF_RSH => a.wrapping_shr(operand),
                    BPF_NEG => a.wrapping_neg(),
                    _ => return 0,
                };
            }
            BPF_JMP => {
                if op(code) == BPF_JA {
                    pc = pc.saturating_add(k as usize);
                    continue;
                }
                let operand = if src(code) == BPF_X { x } else { k };
                let taken = match op(code) {
                    BPF_JEQ => a == operand,
                    BPF_JGT => a > operand,
                    BPF_JGE => a >= operand,
                    BPF_JSET => a & operand != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken { jt } else { jf });
            }
            BPF_RET => {
                return match rval(code) {
                    BPF_K => k,
                    BPF_A => a,
                    _ => 0,
                }
            }
            BPF_MISC => match miscop(code) {
                BPF_TAX => x = a,
                BPF_TXA => a = x,
                _ => return 0,
            },
            _ => return 0,
        }
    }
    0
}
