//! Tokens of the packet filter language.

use super::FilterError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Word(String),
    Open,
    Close,
    And,
    Or,
    Not,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    /// Byte offset in the input.
    pub start: usize,
}

impl Token {
    pub fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Word(w) => format!("{w:?}"),
            TokenKind::Open => "'('".into(),
            TokenKind::Close => "')'".into(),
            TokenKind::And => "'and'".into(),
            TokenKind::Or => "'or'".into(),
            TokenKind::Not => "'not'".into(),
        }
    }
}

pub(crate) struct Lexer<'a> {
    input: &'a str,
}

/// Longest filter text accepted: filters are typed by people, and the bound keeps the
/// parser's recursion (one level per parenthesis or `not`) shallow.
const MAX_LEN: usize = 4096;
const MAX_DEPTH: usize = 64;

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_')
}

impl<'a> Lexer<'a> {
    pub fn new(input: &'a str) -> Self {
        Lexer { input }
    }

    pub fn tokens(&self) -> Result<Vec<Token>, FilterError> {
        let s = self.input;
        if s.len() > MAX_LEN {
            return Err(FilterError::at(
                s,
                MAX_LEN,
                format!("filter longer than {MAX_LEN} bytes"),
            ));
        }
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut nots = 0usize;
        let mut it = s.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            let kind = match c {
                c if c.is_whitespace() => continue,
                '(' => {
                    depth += 1;
                    TokenKind::Open
                }
                ')' => {
                    depth = depth.saturating_sub(1);
                    TokenKind::Close
                }
                '!' => TokenKind::Not,
                '&' | '|' => {
                    if it.peek().map(|&(_, n)| n) == Some(c) {
                        it.next();
                        if c == '&' {
                            TokenKind::And
                        } else {
                            TokenKind::Or
                        }
                    } else {
                        return Err(FilterError::at(
                            s,
                            i,
                            format!(
                                "single '{c}': use '{c}{c}' or '{}'",
                                if c == '&' { "and" } else { "or" }
                            ),
                        ));
                    }
                }
                c if word_char(c) => {
                    let mut end = i + c.len_utf8();
                    while let Some(&(j, n)) = it.peek() {
                        if !word_char(n) {
                            break;
                        }
                        end = j + n.len_utf8();
                        it.next();
                    }
                    match &s[i..end] {
                        "and" => TokenKind::And,
                        "or" => TokenKind::Or,
                        "not" => TokenKind::Not,
                        w => TokenKind::Word(w.to_owned()),
                    }
                }
                other => {
                    return Err(FilterError::at(
                        s,
                        i,
                        format!("unexpected character {other:?}"),
                    ))
                }
            };
            if kind == TokenKind::Not {
                nots += 1;
            }
            if depth > MAX_DEPTH || nots > MAX_DEPTH {
                return Err(FilterError::at(
                    s,
                    i,
                    format!("nesting deeper than {MAX_DEPTH} levels"),
                ));
            }
            out.push(Token { kind, start: i });
        }
        Ok(out)
    }
}
