//! The packet filter compiled to a list of tests with forward jumps, the form the BPF
//! program runs, and an interpreter of that form to hold it to the tree.

use super::{Dir, Expr, PacketFilter, PacketView, Test};

/// Where a compiled test goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Go on with the insn at this index (always a later one).
    Insn(usize),
    /// The packet matches.
    Accept,
    /// The packet does not match.
    Reject,
}

/// One compiled test. `Test::Net`/`Test::Port` with `Dir::Either`/`Dir::Both` are split
/// into single-direction tests at compile time, so `dir` here is `Src` or `Dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// What the insn tests.
    pub test: Test,
    /// Where to go when the test holds.
    pub on_true: Target,
    /// Where to go when it does not.
    pub on_false: Target,
}

/// A compiled packet filter: run from insn 0; jumps only go forward.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    /// The tests; the program starts at the first.
    pub insns: Vec<Insn>,
}

impl Program {
    // Test support (see PacketView).
    /// Interprets the program the way the kernel does.
    #[doc(hidden)]
    pub fn matches(&self, p: &PacketView) -> bool {
        let mut pc = 0;
        // Forward jumps only: at most one step per insn.
        for _ in 0..=self.insns.len() {
            let Some(insn) = self.insns.get(pc) else {
                return false;
            };
            let next = if insn.test.matches(p) {
                insn.on_true
            } else {
                insn.on_false
            };
            match next {
                Target::Accept => return true,
                Target::Reject => return false,
                Target::Insn(i) if i > pc => pc = i,
                Target::Insn(_) => return false,
            }
        }
        false
    }
}

#[derive(Default)]
struct Codegen {
    insns: Vec<Insn>,
}

impl Codegen {
    fn push(&mut self, test: Test, on_true: Target, on_false: Target) -> Target {
        self.insns.push(Insn {
            test,
            on_true,
            on_false,
        });
        Target::Insn(self.insns.len() - 1)
    }

    fn emit(&mut self, e: &Expr, t: Target, f: Target) -> Target {
        match e {
            Expr::Test(test) => self.emit_test(*test, t, f),
            Expr::Not(inner) => self.emit(inner, f, t),
            Expr::And(a, b) => {
                let b = self.emit(b, t, f);
                self.emit(a, b, f)
            }
            Expr::Or(a, b) => {
                let b = self.emit(b, t, f);
                self.emit(a, t, b)
            }
        }
    }

    fn emit_test(&mut self, test: Test, t: Target, f: Target) -> Target {
        let split = |dir| match test {
            Test::Net { net, .. } => Test::Net { dir, net },
            Test::Port { lo, hi, .. } => Test::Port { dir, lo, hi },
            other => other,
        };
        match test {
            Test::Net { dir, .. } | Test::Port { dir, .. } if dir == Dir::Either => {
                let dst = self.push(split(Dir::Dst), t, f);
                self.push(split(Dir::Src), t, dst)
            }
            Test::Net { dir, .. } | Test::Port { dir, .. } if dir == Dir::Both => {
                let dst = self.push(split(Dir::Dst), t, f);
                self.push(split(Dir::Src), dst, f)
            }
            _ => self.push(test, t, f),
        }
    }
}

impl PacketFilter {
    /// Compiles to a test program with forward jumps. How many tests a program may hold
    /// is the kernel's business: `ct-bpf` checks it against what its BPF program takes.
    pub fn compile(&self) -> Program {
        let mut gen = Codegen::default();
        let entry = gen.emit(&self.expr, Target::Accept, Target::Reject);
        let n = gen.insns.len();
        // Emitted children first; reversing makes the entry insn 0 and every jump forward.
        let flip = |t: Target| match t {
            Target::Insn(i) => Target::Insn(n - 1 - i),
            other => other,
        };
        debug_assert_eq!(flip(entry), Target::Insn(0));
        let insns = gen
            .insns
            .into_iter()
            .rev()
            .map(|i| Insn {
                test: i.test,
                on_true: flip(i.on_true),
                on_false: flip(i.on_false),
            })
            .collect();
        Program { insns }
    }
}
