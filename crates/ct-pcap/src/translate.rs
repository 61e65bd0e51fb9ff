//! Classic BPF to eBPF, for the placeholder regions the probe program reserves.
//!
//! A region is a fixed run of instructions written by inline assembly in the BPF C:
//! three moves that name the registers the compiler chose (packet bytes, how many there
//! are, the scratch words), a marker move, and `goto +0` up to the region's length. The
//! translation replaces the whole region with the same number of instructions, so no
//! other instruction moves and libpcap-independent relocations stay valid: the code goes
//! at the end, after `goto +0`s that the kernel's verifier removes after checking.
//!
//! Inside, A and X live in r1 and r2, r3 and r4 are temporaries (the assembly declares
//! r0-r5 clobbered, so the compiler kept its values in r6-r9). Every load is
//! bounds-checked against the bytes copied: past them the filter does not match, as a
//! classic load past the packet ends the program with 0.

use crate::cbpf::{self, Insn as C};
use crate::ebpf::{self, Insn as E};
use crate::TranslateError;

/// A and X.
const A: u8 = 1;
const X: u8 = 2;
/// Temporaries.
const T: u8 = 3;
const T2: u8 = 4;

/// Scratch words the region's `mem` register points at: the 16 classic memory words,
/// then the packet's whole length (what `len` loads).
pub const MEM_WORDS: usize = cbpf::MEMWORDS + 1;
/// Byte offset of the packet length in the scratch words.
pub const MEM_WIRE_LEN: i16 = (cbpf::MEMWORDS * 4) as i16;

/// The registers the compiler chose for a region, and what the region is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Index of the region's first instruction in the program.
    pub start: usize,
    /// Its length in instructions.
    pub len: usize,
    /// The marker value: which filter goes here.
    pub marker: i32,
    /// Holds the address of the first packet byte.
    pub packet: u8,
    /// Holds how many bytes there are.
    pub packet_len: u8,
    /// Holds the address of [`MEM_WORDS`] scratch words.
    pub mem: u8,
    /// Receives the result: 0 for no match.
    pub ret: u8,
}

/// The placeholder regions in `insns` with one of `markers`, each `region_len` long.
pub fn find_regions(insns: &[E], markers: &[i32], region_len: usize) -> Vec<Region> {
    let is_mov_reg = |i: &E| i.code == ebpf::ALU64 | ebpf::MOV | ebpf::X;
    let is_mov_imm = |i: &E| {
        i.code == ebpf::ALU64 | ebpf::MOV | ebpf::K || i.code == ebpf::ALU | ebpf::MOV | ebpf::K
    };
    let mut regions = Vec::new();
    let mut i = 0;
    while i + region_len <= insns.len() {
        let w = &insns[i..i + 4];
        let ret = w[0].dst();
        let shaped = is_mov_reg(&w[0])
            && is_mov_reg(&w[1])
            && is_mov_reg(&w[2])
            && is_mov_imm(&w[3])
            && w[1..].iter().all(|m| m.dst() == ret)
            && markers.contains(&w[3].imm)
            && insns[i + 4..i + region_len].iter().all(|n| *n == E::nop());
        if shaped {
            regions.push(Region {
                start: i,
                len: region_len,
                marker: w[3].imm,
                packet: w[0].src(),
                packet_len: w[1].src(),
                mem: w[2].src(),
                ret,
            });
            i += region_len;
        } else {
            i += 1;
        }
    }
    regions
}

/// Where a jump goes before offsets are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The first instruction of classic instruction n.
    Classic(usize),
    /// The shared "no match" exit.
    NoMatch,
    /// The end of the region.
    End,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    insn: E,
    jump: Option<Target>,
}

struct Emitter<'r> {
    region: &'r Region,
    copy_len: u32,
    items: Vec<Item>,
}

impl Emitter<'_> {
    fn put(&mut self, insn: E) {
        self.items.push(Item { insn, jump: None });
    }

    fn jump(&mut self, insn: E, target: Target) {
        self.items.push(Item {
            insn,
            jump: Some(target),
        });
    }

    fn goto(&mut self, target: Target) {
        self.jump(E::nop(), target);
    }

    /// `reg = the `bytes`-byte big-endian value at packet[at_reg + 0]`; `at_reg` holds an
    /// offset already checked, or none for `at` constant.
    fn load_at(&mut self, dst: u8, at: Option<u8>, at_const: u32, bytes: u32) {
        let size = match bytes {
            4 => ebpf::W,
            2 => ebpf::H,
            _ => ebpf::B,
        };
        let packet = self.region.packet;
        match at {
            None => self.put(E::load(size, dst, packet, at_const as i16)),
            Some(reg) => {
                self.put(E::alu64(ebpf::ADD, reg, packet));
                self.put(E::load(size, dst, reg, 0));
            }
        }
        if bytes > 1 {
            self.put(E::to_be(dst, (bytes * 8) as i32));
        }
    }

    /// A load at a constant offset: no match if it is past the bytes copied.
    fn load_abs(&mut self, dst: u8, k: u32, bytes: u32) {
        let end = u64::from(k) + u64::from(bytes);
        let len = self.region.packet_len;
        self.jump(
            E::new(
                ebpf::JMP | ebpf::JLT | ebpf::K,
                len,
                0,
                0,
                end.min(i32::MAX as u64) as i32,
            ),
            Target::NoMatch,
        );
        if end > u64::from(self.copy_len) {
            // Never within the copy, so the test above always jumps; what follows is
            // written only so that the instructions after it stay reachable for the
            // verifier's check of the program's shape.
            self.put(E::mov32_imm(dst, 0));
            return;
        }
        self.load_at(dst, None, k, bytes);
    }

    /// A load at X + k: checked against the copy's size (for the verifier) and against
    /// the bytes there are.
    fn load_ind(&mut self, k: u32, bytes: u32) {
        self.put(E::mov32(T, X));
        self.put(E::alu32_imm(ebpf::ADD, T, k));
        self.jump(
            E::new(
                ebpf::JMP | ebpf::JGT | ebpf::K,
                T,
                0,
                0,
                (self.copy_len - bytes) as i32,
            ),
            Target::NoMatch,
        );
        self.put(E::mov64(T2, T));
        self.put(E::alu32_imm(ebpf::ADD, T2, bytes));
        self.jump(
            E::new(
                ebpf::JMP | ebpf::JGT | ebpf::X,
                T2,
                self.region.packet_len,
                0,
                0,
            ),
            Target::NoMatch,
        );
        self.load_at(A, Some(T), 0, bytes);
    }
}

/// Translates `prog` for `region`, where the packet copy holds at most `copy_len` bytes;
/// returns exactly `region.len` instructions.
pub fn translate(prog: &[C], region: &Region, copy_len: u32) -> Result<Vec<E>, TranslateError> {
    if prog.is_empty() {
        return Err(TranslateError::Empty);
    }
    let mut e = Emitter {
        region,
        copy_len,
        items: Vec::new(),
    };
    let mut starts = Vec::with_capacity(prog.len());
    e.put(E::mov32_imm(A, 0));
    e.put(E::mov32_imm(X, 0));
    let mem_slot = |k: u32| -> Result<i16, TranslateError> {
        if (k as usize) < cbpf::MEMWORDS {
            Ok((k * 4) as i16)
        } else {
            Err(TranslateError::MemoryWord(k))
        }
    };
    for (n, insn) in prog.iter().enumerate() {
        starts.push(e.items.len());
        let C { code, jt, jf, k } = *insn;
        let next = |off: usize| Target::Classic(n + 1 + off);
        let bad = || TranslateError::Unsupported { at: n, code };
        match cbpf::class(code) {
            cbpf::BPF_LD => {
                let bytes = cbpf::load_bytes(code).ok_or_else(bad)?;
                match cbpf::mode(code) {
                    cbpf::BPF_IMM => e.put(E::mov32_imm(A, k)),
                    cbpf::BPF_ABS if k >= 0xffff_f000 => {
                        // Linux's ancillary loads (SKF_AD_OFF): libpcap emits them only
                        // for a live Linux capture, never for the dead handle used here.
                        return Err(bad());
                    }
                    cbpf::BPF_ABS => e.load_abs(A, k, bytes),
                    cbpf::BPF_IND => e.load_ind(k, bytes),
                    cbpf::BPF_MEM => e.put(E::load(ebpf::W, A, region.mem, mem_slot(k)?)),
                    cbpf::BPF_LEN => e.put(E::load(ebpf::W, A, region.mem, MEM_WIRE_LEN)),
                    _ => return Err(bad()),
                }
            }
            cbpf::BPF_LDX => match cbpf::mode(code) {
                cbpf::BPF_IMM => e.put(E::mov32_imm(X, k)),
                cbpf::BPF_MEM => e.put(E::load(ebpf::W, X, region.mem, mem_slot(k)?)),
                cbpf::BPF_LEN => e.put(E::load(ebpf::W, X, region.mem, MEM_WIRE_LEN)),
                cbpf::BPF_MSH => {
                    e.load_abs(X, k, 1);
                    e.put(E::alu32_imm(ebpf::AND, X, 0xf));
                    e.put(E::alu32_imm(ebpf::LSH, X, 2));
                }
                _ => return Err(bad()),
            },
            cbpf::BPF_ST => e.put(E::store(ebpf::W, region.mem, mem_slot(k)?, A)),
            cbpf::BPF_STX => e.put(E::store(ebpf::W, region.mem, mem_slot(k)?, X)),
            cbpf::BPF_ALU => {
                let op = cbpf::op(code) as u8;
                match (cbpf::op(code), cbpf::src(code)) {
                    (cbpf::BPF_NEG, _) => e.put(E::alu32_imm(ebpf::NEG, A, 0)),
                    (cbpf::BPF_DIV | cbpf::BPF_MOD, cbpf::BPF_K) if k == 0 => {
                        e.goto(Target::NoMatch)
                    }
                    (cbpf::BPF_LSH | cbpf::BPF_RSH, cbpf::BPF_K) if k >= 32 => {
                        return Err(bad());
                    }
                    (
                        cbpf::BPF_ADD
                        | cbpf::BPF_SUB
                        | cbpf::BPF_MUL
                        | cbpf::BPF_DIV
                        | cbpf::BPF_MOD
                        | cbpf::BPF_OR
                        | cbpf::BPF_AND
                        | cbpf::BPF_XOR
                        | cbpf::BPF_LSH
                        | cbpf::BPF_RSH,
                        cbpf::BPF_K,
                    ) => e.put(E::alu32_imm(op, A, k)),
                    (cbpf::BPF_DIV | cbpf::BPF_MOD, cbpf::BPF_X) => {
                        // A classic division by zero ends the program with 0.
                        e.jump(
                            E::new(ebpf::JMP32 | ebpf::JEQ | ebpf::K, X, 0, 0, 0),
                            Target::NoMatch,
                        );
                        e.put(E::alu32(op, A, X));
                    }
                    (
                        cbpf::BPF_ADD
                        | cbpf::BPF_SUB
                        | cbpf::BPF_MUL
                        | cbpf::BPF_OR
                        | cbpf::BPF_AND
                        | cbpf::BPF_XOR
                        | cbpf::BPF_LSH
                        | cbpf::BPF_RSH,
                        cbpf::BPF_X,
                    ) => e.put(E::alu32(op, A, X)),
                    _ => return Err(bad()),
                }
            }
            cbpf::BPF_JMP => {
                let op = cbpf::op(code);
                if op == cbpf::BPF_JA {
                    e.goto(next(k as usize));
                    continue;
                }
                if !matches!(
                    op,
                    cbpf::BPF_JEQ | cbpf::BPF_JGT | cbpf::BPF_JGE | cbpf::BPF_JSET
                ) {
                    return Err(bad());
                }
                let cond = if cbpf::src(code) == cbpf::BPF_X {
                    E::new(ebpf::JMP32 | op as u8 | ebpf::X, A, X, 0, 0)
                } else {
                    E::new(ebpf::JMP32 | op as u8 | ebpf::K, A, 0, 0, k as i32)
                };
                e.jump(cond, next(usize::from(jt)));
                if jf != 0 {
                    e.goto(next(usize::from(jf)));
                }
            }
            cbpf::BPF_RET => {
                match cbpf::rval(code) {
                    cbpf::BPF_K => e.put(E::mov32_imm(region.ret, k)),
                    cbpf::BPF_A => e.put(E::mov32(region.ret, A)),
                    _ => return Err(bad()),
                }
                e.goto(Target::End);
            }
            cbpf::BPF_MISC => match cbpf::miscop(code) {
                cbpf::BPF_TAX => e.put(E::mov32(X, A)),
                cbpf::BPF_TXA => e.put(E::mov32(A, X)),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        }
    }
    // Falling off the end of a classic program is no match, as is every failed check.
    // The block is left out when nothing reaches it: the verifier refuses unreachable
    // instructions.
    let no_match = e.items.len();
    let falls_off = e
        .items
        .last()
        .is_none_or(|last| last.jump != Some(Target::End) || last.insn != E::nop());
    let targeted = e.items.iter().any(|item| {
        matches!(item.jump, Some(Target::NoMatch))
            || matches!(item.jump, Some(Target::Classic(n)) if n >= starts.len())
    });
    if falls_off || targeted {
        e.put(E::mov32_imm(region.ret, 0));
    }

    let code_len = e.items.len();
    if code_len > region.len {
        return Err(TranslateError::TooLarge {
            needed: code_len,
            room: region.len,
        });
    }
    let pad = region.len - code_len;
    let position = |target: Target| -> Result<usize, TranslateError> {
        Ok(pad
            + match target {
                Target::Classic(n) if n < starts.len() => starts[n],
                Target::Classic(_) => no_match,
                Target::NoMatch => no_match,
                Target::End => code_len,
            })
    };
    let mut out = vec![E::nop(); pad];
    for (i, item) in e.items.iter().enumerate() {
        let mut insn = item.insn;
        if let Some(target) = item.jump {
            let from = pad + i + 1;
            let to = position(target)?;
            insn.off = i16::try_from(to as isize - from as isize).map_err(|_| {
                TranslateError::TooLarge {
                    needed: code_len,
                    room: i16::MAX as usize,
                }
            })?;
        }
        out.push(insn);
    }
    Ok(out)
}
