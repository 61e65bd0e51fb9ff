//! Filters: one language, one parser, two evaluators.
//!
//! - [`PacketFilter`]: a pcap-filter subset (`tcp port 443`, `host 10.0.0.1`,
//!   `src net 10.0.0.0/8 and not icmp`). It evaluates on an event's packet section here,
//!   and compiles to a [`Program`] of at most [`MAX_INSNS`] tests with forward jumps, which
//!   the BPF program runs on the packet before an event is reserved.
//! - [`CtFilter`]: conntrack state, mark, zone, status bits, NAT.
//! - [`DropFilter`]: drops only, and drop reasons (`--drops`, `--drop-reason`).
//! - [`MetaFilter`]: `sk_buff.<field>[.<field>...][:mask] OP value`, parsed here and resolved
//!   against kernel BTF by `ct-bpf` (it has no meaning on an events file).
//!
//! The compiled program has its own interpreter ([`Program::matches`]) so tests can hold
//! the AST evaluator, the compiled form and the kernel to the same decisions.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::{CtEvent, CtState, CtStatus, IpVersion, Packet, PacketL4};

mod lexer;
mod meta;
#[cfg(test)]
mod tests;

pub use meta::{CmpOp, MetaFilter, MetaValue};

use lexer::{Lexer, Token, TokenKind};

/// Most tests a compiled packet filter may hold (the kernel walks them in a bounded loop).
pub const MAX_INSNS: usize = 32;

/// A filter expression that could not be parsed: where and why. `Display` shows the
/// expression with a caret under the offending column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}\n  {input}\n  {caret}^", caret = " ".repeat(self.column.saturating_sub(1)))]
pub struct FilterError {
    pub input: String,
    /// 1-based character column.
    pub column: usize,
    pub message: String,
}

impl FilterError {
    pub(crate) fn at(input: &str, byte: usize, message: impl Into<String>) -> Self {
        let byte = byte.min(input.len());
        let column = input.char_indices().take_while(|(i, _)| *i < byte).count() + 1;
        FilterError {
            input: input.to_owned(),
            column,
            message: message.into(),
        }
    }
}

/// Which address or port of the packet a test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Src,
    Dst,
    /// `src or dst` (the default).
    Either,
    /// `src and dst`.
    Both,
}

/// One test on the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Test {
    /// `ip` / `ip6`.
    L3(IpVersion),
    /// `tcp`, `udp`, `icmp`, `icmp6`, `sctp`, `proto N`: the transport protocol.
    Proto(u8),
    /// `host A`, `net A/N`.
    Net { dir: Dir, net: IpNet },
    /// `port P`, `portrange A-B` (TCP, UDP, SCTP only, as in pcap).
    Port { dir: Dir, lo: u16, hi: u16 },
}

/// A parsed packet filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    Test(Test),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A packet filter: the expression and the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketFilter {
    pub text: String,
    pub expr: Expr,
}

impl std::str::FromStr for PacketFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        PacketFilter::parse(s)
    }
}

impl fmt::Display for PacketFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The packet fields filters look at, taken from an event's packet section (user space) or
/// parsed from the headers (kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketView {
    pub version: Option<IpVersion>,
    pub proto: u8,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Present for TCP, UDP and SCTP when the header was visible.
    pub ports: Option<(u16, u16)>,
}

impl PacketView {
    pub fn of(packet: &Packet) -> Self {
        let Some(ip) = &packet.ip else {
            return PacketView {
                version: None,
                proto: 0,
                src: None,
                dst: None,
                ports: None,
            };
        };
        let ports = match packet.l4 {
            Some(PacketL4::Tcp { sport, dport, .. })
            | Some(PacketL4::Udp { sport, dport })
            | Some(PacketL4::Sctp { sport, dport }) => Some((sport, dport)),
            _ => None,
        };
        PacketView {
            version: Some(ip.version),
            proto: ip.proto,
            src: Some(ip.src),
            dst: Some(ip.dst),
            ports,
        }
    }
}

impl Test {
    pub fn matches(&self, p: &PacketView) -> bool {
        let Some(version) = p.version else {
            return false;
        };
        match *self {
            Test::L3(v) => v == version,
            Test::Proto(n) => p.proto == n,
            Test::Net { dir, net } => {
                let hit = |a: Option<IpAddr>| a.is_some_and(|a| net.contains(&a));
                dir_match(dir, hit(p.src), hit(p.dst))
            }
            Test::Port { dir, lo, hi } => match p.ports {
                Some((s, d)) => {
                    let hit = |port: u16| (lo..=hi).contains(&port);
                    dir_match(dir, hit(s), hit(d))
                }
                None => false,
            },
        }
    }
}

fn dir_match(dir: Dir, src: bool, dst: bool) -> bool {
    match dir {
        Dir::Src => src,
        Dir::Dst => dst,
        Dir::Either => src || dst,
        Dir::Both => src && dst,
    }
}

impl Expr {
    pub fn matches(&self, p: &PacketView) -> bool {
        match self {
            Expr::Test(t) => t.matches(p),
            Expr::Not(e) => !e.matches(p),
            Expr::And(a, b) => a.matches(p) && b.matches(p),
            Expr::Or(a, b) => a.matches(p) || b.matches(p),
        }
    }
}

impl PacketFilter {
    /// Parses a pcap-style expression.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let tokens = Lexer::new(text).tokens()?;
        let mut parser = Parser {
            input: text,
            tokens,
            pos: 0,
            last: None,
        };
        if parser.tokens.is_empty() {
            return Err(FilterError::at(text, 0, "empty filter expression"));
        }
        let expr = parser.or()?;
        if let Some(tok) = parser.peek() {
            let hint = match &tok.kind {
                TokenKind::Word(w) => did_you_mean(w),
                _ => String::new(),
            };
            return Err(FilterError::at(
                text,
                tok.start,
                format!(
                    "unexpected {}: join primitives with and/or{hint}",
                    tok.describe()
                ),
            ));
        }
        let filter = PacketFilter {
            text: text.to_owned(),
            expr,
        };
        filter.compile().map_err(|n| {
            FilterError::at(
                text,
                0,
                format!(
                    "filter too complex: it compiles to {n} tests, the kernel takes at most \
                     {MAX_INSNS}"
                ),
            )
        })?;
        Ok(filter)
    }

    /// Evaluates on an event's packet section; an event without one never matches.
    pub fn matches(&self, packet: Option<&Packet>) -> bool {
        packet.is_some_and(|p| self.expr.matches(&PacketView::of(p)))
    }

    /// Compiles to a test program with forward jumps; `Err(n)` when it needs `n` tests,
    /// more than [`MAX_INSNS`].
    pub fn compile(&self) -> Result<Program, usize> {
        let mut gen = Codegen::default();
        let entry = gen.emit(&self.expr, Target::Accept, Target::Reject);
        let n = gen.insns.len();
        if n > MAX_INSNS {
            return Err(n);
        }
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
        Ok(Program { insns })
    }
}

/// Where a compiled test goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Insn(usize),
    Accept,
    Reject,
}

/// One compiled test. `Test::Net`/`Test::Port` with `Dir::Either`/`Dir::Both` are split
/// into single-direction tests at compile time, so `dir` here is `Src` or `Dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub test: Test,
    pub on_true: Target,
    pub on_false: Target,
}

/// A compiled packet filter: run from insn 0; jumps only go forward.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    pub insns: Vec<Insn>,
}

impl Program {
    /// Interprets the program the way the kernel does.
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

/// What the previous primitive was, so that `port 80 or 443` and `host a or b` repeat
/// its qualifiers, as pcap does.
#[derive(Debug, Clone, Copy)]
enum Qualifier {
    Net(Dir),
    Port(Dir),
    PortRange(Dir),
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    last: Option<Qualifier>,
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}

fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token {
                kind: TokenKind::Word(w),
                ..
            }) => Some(w.as_str()),
            _ => None,
        }
    }

    fn err_here(&self, what: &str) -> FilterError {
        match self.peek() {
            Some(t) => FilterError::at(
                self.input,
                t.start,
                format!("expected {what}, found {}", t.describe()),
            ),
            None => FilterError::at(
                self.input,
                self.input.len(),
                format!("expected {what} at the end of the expression"),
            ),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while matches!(self.peek().map(|t| &t.kind), Some(TokenKind::Or)) {
            self.pos += 1;
            let right = self.and()?;
            left = or(left, right);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while matches!(self.peek().map(|t| &t.kind), Some(TokenKind::And)) {
            self.pos += 1;
            let right = self.unary()?;
            left = and(left, right);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if matches!(self.peek().map(|t| &t.kind), Some(TokenKind::Not)) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        match self.peek().map(|t| t.kind.clone()) {
            Some(TokenKind::Open) => {
                let open = self.next().map(|t| t.start).unwrap_or(0);
                let e = self.or()?;
                match self.next() {
                    Some(Token {
                        kind: TokenKind::Close,
                        ..
                    }) => Ok(e),
                    _ => Err(FilterError::at(
                        self.input,
                        open,
                        "this parenthesis is never closed",
                    )),
                }
            }
            Some(TokenKind::Word(_)) => self.primitive(),
            _ => Err(self.err_here("a filter primitive (host, net, port, tcp, ...)")),
        }
    }

    fn primitive(&mut self) -> Result<Expr, FilterError> {
        let tok = self.next().ok_or_else(|| self.err_here("a primitive"))?;
        let TokenKind::Word(word) = &tok.kind else {
            return Err(FilterError::at(
                self.input,
                tok.start,
                "expected a primitive",
            ));
        };
        let l4 = |n| Expr::Test(Test::Proto(n));
        let l3 = |v| Expr::Test(Test::L3(v));
        let proto_expr = match word.as_str() {
            "ip" => Some(l3(IpVersion::V4)),
            "ip6" => Some(l3(IpVersion::V6)),
            "tcp" => Some(l4(6)),
            "udp" => Some(l4(17)),
            "sctp" => Some(l4(132)),
            "icmp" => Some(and(l3(IpVersion::V4), l4(1))),
            "icmp6" => Some(and(l3(IpVersion::V6), l4(58))),
            _ => None,
        };
        if let Some(proto) = proto_expr {
            // `tcp port 80`, `ip host a`, `ip proto 47`: a protocol qualifying what follows.
            if matches!(self.peek_word(), Some("proto")) && matches!(word.as_str(), "ip" | "ip6") {
                self.pos += 1;
                let n = self.proto_number()?;
                return Ok(and(proto, l4(n)));
            }
            if matches!(
                self.peek_word(),
                Some("src" | "dst" | "host" | "net" | "port" | "portrange")
            ) {
                let rest = self.primitive()?;
                return Ok(and(proto, rest));
            }
            return Ok(proto);
        }
        match word.as_str() {
            "proto" => {
                let n = self.proto_number()?;
                Ok(l4(n))
            }
            "src" | "dst" => {
                let mut dir = if word == "src" { Dir::Src } else { Dir::Dst };
                // `src or dst host a`, `src and dst net n`.
                if let Some(TokenKind::Or | TokenKind::And) = self.peek().map(|t| &t.kind) {
                    let joined = self.tokens.get(self.pos + 1).map(|t| &t.kind);
                    let other = if dir == Dir::Src { "dst" } else { "src" };
                    if matches!(joined, Some(TokenKind::Word(w)) if w == other) {
                        dir = if matches!(self.peek().map(|t| &t.kind), Some(TokenKind::Or)) {
                            Dir::Either
                        } else {
                            Dir::Both
                        };
                        self.pos += 2;
                    }
                }
                self.qualified(dir)
            }
            "host" | "net" | "port" | "portrange" => {
                self.pos -= 1;
                self.qualified(Dir::Either)
            }
            _ => {
                // A bare value repeats the previous qualifiers (`port 80 or 443`), or is a
                // host/net when it looks like an address.
                self.pos -= 1;
                match self.last {
                    Some(Qualifier::Net(dir)) => self.net_value(dir, false),
                    Some(Qualifier::Port(dir)) => self.port_value(dir),
                    Some(Qualifier::PortRange(dir)) => self.portrange_value(dir),
                    None if looks_like_address(word) => self.net_value(Dir::Either, false),
                    None => Err(FilterError::at(
                        self.input,
                        tok.start,
                        format!(
                            "unknown primitive {word:?}{}: expected ip, ip6, tcp, udp, icmp, \
                             icmp6, sctp, proto, host, net, port, portrange, src, dst",
                            did_you_mean(word)
                        ),
                    )),
                }
            }
        }
    }

    fn qualified(&mut self, dir: Dir) -> Result<Expr, FilterError> {
        let start = self.peek().map(|t| t.start).unwrap_or(self.input.len());
        match self.peek_word() {
            Some("host") => {
                self.pos += 1;
                self.net_value(dir, true)
            }
            Some("net") => {
                self.pos += 1;
                self.net_value(dir, false)
            }
            Some("port") => {
                self.pos += 1;
                self.port_value(dir)
            }
            Some("portrange") => {
                self.pos += 1;
                self.portrange_value(dir)
            }
            // `src 10.0.0.1` means `src host 10.0.0.1`.
            Some(w) if looks_like_address(w) => self.net_value(dir, false),
            _ => Err(FilterError::at(
                self.input,
                start,
                "expected host, net, port or portrange after src/dst",
            )),
        }
    }

    fn value(&mut self, what: &str) -> Result<(String, usize), FilterError> {
        match self.peek() {
            Some(Token {
                kind: TokenKind::Word(w),
                start,
            }) => {
                let out = (w.clone(), *start);
                self.pos += 1;
                Ok(out)
            }
            _ => Err(self.err_here(what)),
        }
    }

    fn net_value(&mut self, dir: Dir, host_only: bool) -> Result<Expr, FilterError> {
        let (text, at) = self.value("an address")?;
        let net = if let Ok(addr) = text.parse::<IpAddr>() {
            IpNet::from(addr)
        } else if host_only {
            return Err(FilterError::at(
                self.input,
                at,
                format!("{text:?} is not an IPv4 or IPv6 address (host names are not resolved)"),
            ));
        } else {
            text.parse::<IpNet>().map_err(|_| {
                FilterError::at(
                    self.input,
                    at,
                    format!("{text:?} is not an address or a network like 10.0.0.0/8"),
                )
            })?
        };
        self.last = Some(Qualifier::Net(dir));
        // pcap: `net 10.1.2.3/8` is an error (host bits set); keep the user honest.
        if net.trunc() != net {
            return Err(FilterError::at(
                self.input,
                at,
                format!("{text} has host bits set; did you mean {}?", net.trunc()),
            ));
        }
        Ok(Expr::Test(Test::Net { dir, net }))
    }

    fn port_number(&self, text: &str, at: usize) -> Result<u16, FilterError> {
        parse_number(text)
            .and_then(|n| u16::try_from(n).ok())
            .or_else(|| service_port(text))
            .ok_or_else(|| {
                FilterError::at(
                    self.input,
                    at,
                    format!("{text:?} is not a port number (0-65535)"),
                )
            })
    }

    fn port_value(&mut self, dir: Dir) -> Result<Expr, FilterError> {
        let (text, at) = self.value("a port number")?;
        let port = self.port_number(&text, at)?;
        self.last = Some(Qualifier::Port(dir));
        Ok(Expr::Test(Test::Port {
            dir,
            lo: port,
            hi: port,
        }))
    }

    fn portrange_value(&mut self, dir: Dir) -> Result<Expr, FilterError> {
        let (text, at) = self.value("a port range like 1000-2000")?;
        let (a, b) = text.split_once('-').ok_or_else(|| {
            FilterError::at(
                self.input,
                at,
                format!("{text:?} is not a port range like 1000-2000"),
            )
        })?;
        let lo = self.port_number(a, at)?;
        let hi = self.port_number(b, at + a.len() + 1)?;
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        self.last = Some(Qualifier::PortRange(dir));
        Ok(Expr::Test(Test::Port { dir, lo, hi }))
    }

    fn proto_number(&mut self) -> Result<u8, FilterError> {
        let (text, at) = self.value("a protocol number or name")?;
        let n = parse_number(&text)
            .and_then(|n| u8::try_from(n).ok())
            .or(match text.as_str() {
                "icmp" => Some(1),
                "tcp" => Some(6),
                "udp" => Some(17),
                "gre" => Some(47),
                "esp" => Some(50),
                "ah" => Some(51),
                "icmp6" => Some(58),
                "sctp" => Some(132),
                _ => None,
            })
            .ok_or_else(|| {
                FilterError::at(
                    self.input,
                    at,
                    format!("{text:?} is not a protocol number (0-255) or name"),
                )
            })?;
        self.last = None;
        Ok(n)
    }
}

const KEYWORDS: &[&str] = &[
    "ip",
    "ip6",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "proto",
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "and",
    "or",
    "not",
];

/// ` (did you mean "port"?)` for a word one or two edits away from a keyword.
fn did_you_mean(word: &str) -> String {
    // Edit distance counting a swap of neighbours as one edit (typos like "prot").
    let distance = |a: &str, b: &str| {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for (j, cell) in d[0].iter_mut().enumerate() {
            *cell = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                d[i][j] = (d[i - 1][j - 1] + cost)
                    .min(d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
                }
            }
        }
        d[a.len()][b.len()]
    };
    KEYWORDS
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|&(d, k)| d > 0 && d <= 2 && d < k.len())
        .min()
        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

fn looks_like_address(w: &str) -> bool {
    w.contains(':') || (w.contains('.') && w.starts_with(|c: char| c.is_ascii_digit()))
}

/// Decimal or `0x` hex.
pub(crate) fn parse_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// The few service names people type in filters.
fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "http" => 80,
        "ntp" => 123,
        "https" => 443,
        _ => return None,
    })
}

/// The filters that apply to an events file: a packet filter, conntrack filters and drop
/// filters, all of which must match (`ct-cli print -f ... --ct-state ...`).
///
/// Each event is judged on its own sections. For an nftables trace step (an event with an
/// `nft` section), that means: the packet filter applies to the packet section parsed from
/// the trace's headers; `--drops` keeps `drop` verdicts ([`Event::is_drop`](crate::Event::is_drop));
/// `--drop-reason` names the kernel's drop reasons, which only the BPF event of the packet at
/// `skb:kfree_skb` carries, so it never keeps a trace step; and conntrack filters need a ct
/// section, which a trace step has not, so any set one drops it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub packet: Option<PacketFilter>,
    pub ct: CtFilter,
    pub drop: DropFilter,
}

impl EventFilter {
    pub fn is_empty(&self) -> bool {
        self.packet.is_none() && self.ct.is_empty() && self.drop.is_empty()
    }

    pub fn matches(&self, event: &crate::Event) -> bool {
        self.packet
            .as_ref()
            .is_none_or(|f| f.matches(event.packet.as_ref()))
            && self.ct.matches(event.ct.as_ref())
            && self.drop.matches(event)
    }
}

/// Drop filters (`--drops`, `--drop-reason NAME[,NAME]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropFilter {
    /// Only drops ([`Event::is_drop`](crate::Event::is_drop)).
    pub only_drops: bool,
    /// Only drops with one of these reasons (implies `only_drops`): names as events carry
    /// them, upper case, without the `SKB_DROP_REASON_` prefix ([`DropFilter::parse_reasons`]
    /// normalizes them).
    pub reasons: Option<Vec<String>>,
}

/// The prefix of the kernel's `enum skb_drop_reason` names, left out of events.
pub const DROP_REASON_PREFIX: &str = "SKB_DROP_REASON_";

impl DropFilter {
    pub fn is_empty(&self) -> bool {
        !self.only_drops && self.reasons.is_none()
    }

    /// Parses `NETFILTER_DROP,no_socket,...`: any case, the `SKB_DROP_REASON_` prefix
    /// optional. Names are not checked here (a file may hold any); the collector checks
    /// them against the running kernel.
    pub fn parse_reasons(s: &str) -> Result<Vec<String>, String> {
        s.split(',')
            .map(|w| {
                let w = w.trim().to_ascii_uppercase();
                let name = w.strip_prefix(DROP_REASON_PREFIX).unwrap_or(&w);
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "drop reason {w:?}: expected a name such as NETFILTER_DROP or NO_SOCKET"
                    ));
                }
                Ok(name.to_owned())
            })
            .collect()
    }

    /// Evaluates on an event: with `reasons`, only drops carrying one of them match (a drop
    /// without a reason does not).
    pub fn matches(&self, event: &crate::Event) -> bool {
        if self.is_empty() {
            return true;
        }
        if !event.is_drop() {
            return false;
        }
        match &self.reasons {
            None => true,
            Some(reasons) => event
                .drop
                .as_ref()
                .and_then(|d| d.reason.as_deref())
                .is_some_and(|r| reasons.iter().any(|w| w == r)),
        }
    }
}

/// Conntrack filters; every one that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtFilter {
    /// Any of these states (`--ct-state new,established`).
    pub states: Option<Vec<CtState>>,
    /// `(value, mask)`: `mark & mask == value & mask` (`--ct-mark 0x2a/0xff`).
    pub mark: Option<(u32, u32)>,
    /// Zone id (`--ct-zone 7`).
    pub zone: Option<u16>,
    /// All of these status bits (`--ct-status src_nat,assured`).
    pub status: Option<CtStatus>,
    /// Any NAT (`--ct-nat`): SRC_NAT or DST_NAT.
    pub nat: bool,
}

impl CtFilter {
    pub fn is_empty(&self) -> bool {
        *self == CtFilter::default()
    }

    /// Parses `new,established,...`.
    pub fn parse_states(s: &str) -> Result<Vec<CtState>, String> {
        s.split(',')
            .map(|w| {
                w.trim().parse::<CtState>().map_err(|_| {
                    format!(
                        "unknown ct state {w:?}: use new, established, related, reply, \
                         related_reply, untracked"
                    )
                })
            })
            .collect()
    }

    /// Parses `V` or `V/MASK` (decimal or hex).
    pub fn parse_mark(s: &str) -> Result<(u32, u32), String> {
        let num = |t: &str| {
            parse_number(t.trim())
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{t:?} is not a 32-bit number (decimal or 0x hex)"))
        };
        match s.split_once('/') {
            Some((v, m)) => Ok((num(v)?, num(m)?)),
            None => Ok((num(s)?, u32::MAX)),
        }
    }

    /// Parses `src_nat,assured` (names of `CtStatus` bits, any case, `IPS_` optional).
    pub fn parse_status(s: &str) -> Result<CtStatus, String> {
        s.split(',').try_fold(CtStatus::empty(), |acc, w| {
            CtStatus::from_bit_name(w).map(|b| acc | b).ok_or_else(|| {
                let names: Vec<&str> = CtStatus::all().iter_names().map(|(n, _)| n).collect();
                format!(
                    "unknown status bit {w:?}: use one of {}",
                    names.join(", ").to_lowercase()
                )
            })
        })
    }

    /// Evaluates on an event's ct section. A packet without conntrack data matches no
    /// set filter.
    pub fn matches(&self, ct: Option<&CtEvent>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(ct) = ct else {
            return false;
        };
        if let Some(states) = &self.states {
            if !states.contains(&ct.state) {
                return false;
            }
        }
        let needs_conn =
            self.mark.is_some() || self.zone.is_some() || self.status.is_some() || self.nat;
        if !needs_conn {
            return true;
        }
        let Some(base) = &ct.base else {
            return false;
        };
        if let Some((value, mask)) = self.mark {
            match base.mark {
                Some(m) if m & mask == value & mask => {}
                _ => return false,
            }
        }
        if let Some(zone) = self.zone {
            if base.zone_id != zone {
                return false;
            }
        }
        if let Some(bits) = self.status {
            if !base.ct_status.contains(bits) {
                return false;
            }
        }
        if self.nat && !base.ct_status.intersects(CtStatus::NAT_MASK) {
            return false;
        }
        true
    }
}
