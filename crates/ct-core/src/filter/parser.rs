//! The parser of the packet filter language (a pcap-filter subset), with its error
//! messages.

use std::net::IpAddr;

use ipnet::IpNet;

use super::lexer::{Lexer, Token, TokenKind};
use super::{Dir, Expr, FilterError, PacketFilter, Test};
use crate::IpVersion;

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
        Ok(PacketFilter {
            text: text.to_owned(),
            expr,
        })
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
        self.binary(TokenKind::Or, Self::and, or)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        self.binary(TokenKind::And, Self::unary, and)
    }

    /// `operand (op operand)*`, joined from the left: `a or b or c` is `(a or b) or c`.
    fn binary(
        &mut self,
        op: TokenKind,
        operand: fn(&mut Self) -> Result<Expr, FilterError>,
        join: fn(Expr, Expr) -> Expr,
    ) -> Result<Expr, FilterError> {
        let mut left = operand(self)?;
        while self.peek().is_some_and(|t| t.kind == op) {
            self.pos += 1;
            let right = operand(self)?;
            left = join(left, right);
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

/// Parses a number as every numeric filter option takes it: decimal or `0x` hex.
pub fn parse_number(s: &str) -> Option<u64> {
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
