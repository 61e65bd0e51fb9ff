//! eBPF instructions (`struct bpf_insn` of `<linux/bpf.h>`), as far as the translation
//! writes and reads them.

// The opcode constants and helpers carry <linux/bpf.h>'s names and meanings.
#![allow(missing_docs)]

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// Destination register in the low four bits, source register in the high four.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

// Classes.
pub const LDX: u8 = 0x01;
pub const STX: u8 = 0x03;
pub const ALU: u8 = 0x04;
pub const JMP: u8 = 0x05;
pub const JMP32: u8 = 0x06;
pub const ALU64: u8 = 0x07;
// Sizes and the memory mode.
pub const W: u8 = 0x00;
pub const H: u8 = 0x08;
pub const B: u8 = 0x10;
pub const MEM: u8 = 0x60;
// Operand source.
pub const K: u8 = 0x00;
pub const X: u8 = 0x08;
// ALU operations (the classic ones keep their codes).
pub const ADD: u8 = 0x00;
pub const SUB: u8 = 0x10;
pub const MUL: u8 = 0x20;
pub const DIV: u8 = 0x30;
pub const OR: u8 = 0x40;
pub const AND: u8 = 0x50;
pub const LSH: u8 = 0x60;
pub const RSH: u8 = 0x70;
pub const NEG: u8 = 0x80;
pub const MOD: u8 = 0x90;
pub const XOR: u8 = 0xa0;
pub const MOV: u8 = 0xb0;
/// Byte swap; with [`X`] as the source bit it converts to big endian.
pub const END: u8 = 0xd0;
// Jumps.
pub const JA: u8 = 0x00;
pub const JEQ: u8 = 0x10;
pub const JGT: u8 = 0x20;
pub const JGE: u8 = 0x30;
pub const JSET: u8 = 0x40;
pub const JLT: u8 = 0xa0;

impl Insn {
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    pub fn dst(&self) -> u8 {
        self.regs & 0x0f
    }

    pub fn src(&self) -> u8 {
        self.regs >> 4
    }

    /// `goto +0`: what the placeholder is filled with, and what the kernel removes.
    pub fn nop() -> Insn {
        Insn::new(JMP | JA, 0, 0, 0, 0)
    }

    /// `dst = src` (64-bit).
    pub fn mov64(dst: u8, src: u8) -> Insn {
        Insn::new(ALU64 | MOV | X, dst, src, 0, 0)
    }

    /// `dst = imm` (32-bit: the upper half cleared).
    pub fn mov32_imm(dst: u8, imm: u32) -> Insn {
        Insn::new(ALU | MOV | K, dst, 0, 0, imm as i32)
    }

    /// `dst = src` (32-bit).
    pub fn mov32(dst: u8, src: u8) -> Insn {
        Insn::new(ALU | MOV | X, dst, 0, 0, 0).with_src(src)
    }

    fn with_src(mut self, src: u8) -> Insn {
        self.regs = (src << 4) | (self.regs & 0x0f);
        self
    }

    /// A 32-bit ALU operation with an immediate.
    pub fn alu32_imm(op: u8, dst: u8, imm: u32) -> Insn {
        Insn::new(ALU | op | K, dst, 0, 0, imm as i32)
    }

    /// A 32-bit ALU operation with a register.
    pub fn alu32(op: u8, dst: u8, src: u8) -> Insn {
        Insn::new(ALU | op | X, dst, src, 0, 0)
    }

    /// A 64-bit ALU operation with a register (pointer arithmetic).
    pub fn alu64(op: u8, dst: u8, src: u8) -> Insn {
        Insn::new(ALU64 | op | X, dst, src, 0, 0)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(size: u8, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(LDX | MEM | size, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(size: u8, dst: u8, off: i16, src: u8) -> Insn {
        Insn::new(STX | MEM | size, dst, src, off, 0)
    }

    /// `dst = htobe(bits)(dst)`.
    pub fn to_be(dst: u8, bits: i32) -> Insn {
        Insn::new(ALU | END | X, dst, 0, 0, bits)
    }
}
