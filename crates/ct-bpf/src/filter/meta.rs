//! `-m` meta filters: `sk_buff.<field>[.<field>...][:mask] OP value`.
//!
//! They name kernel memory, so they mean something only where packets are collected, not
//! on an events file. The path is resolved against kernel BTF into offsets and pointer hops
//! (see [`KernelFilters`](super::KernelFilters)) that the BPF program walks with bounded
//! reads.

use std::fmt;

use ct_core::filter::{parse_number, FilterError};

/// Comparison of a meta filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// `a OP b`.
    pub fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }

    /// The operator as written (`==`, `<=`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// The right-hand side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetaValue {
    /// Decimal, `0x` hex, or negative decimal (stored as its two's complement).
    Int(u64),
    /// `'eth0'` or `"eth0"`: compared with a char array.
    Str(String),
}

/// A parsed meta filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetaFilter {
    /// `["sk_buff", "dev", "name"]`: the root struct, then fields.
    pub path: Vec<String>,
    /// `:mask`: the field's value is ANDed with it before the comparison.
    pub mask: Option<u64>,
    /// The comparison.
    pub op: CmpOp,
    /// What the field is compared with.
    pub value: MetaValue,
    /// The filter as the user wrote it.
    pub text: String,
}

impl fmt::Display for MetaFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for MetaFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        MetaFilter::parse(s)
    }
}

/// Most names in a path: the root struct, then fields, with at most
/// `MAX_HOPS` (the kernel program's limit) pointers followed between them.
pub const MAX_PATH: usize = super::MAX_HOPS + 2;

impl MetaFilter {
    /// Reads `sk_buff.<field>[.<field>...][:mask] OP value`; the path is checked against
    /// kernel BTF later, when the filter is compiled.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let err = |at: usize, msg: String| FilterError::at(text, at, msg);
        let op_at = text
            .find(['=', '!', '<', '>'])
            .ok_or_else(|| err(text.len(), "expected a comparison (== != < <= > >=)".into()))?;
        let (lhs, rest) = text.split_at(op_at);
        let (op, op_len) = match rest.as_bytes() {
            [b'=', b'=', ..] => (CmpOp::Eq, 2),
            [b'!', b'=', ..] => (CmpOp::Ne, 2),
            [b'<', b'=', ..] => (CmpOp::Le, 2),
            [b'>', b'=', ..] => (CmpOp::Ge, 2),
            [b'<', ..] => (CmpOp::Lt, 1),
            [b'>', ..] => (CmpOp::Gt, 1),
            _ => return Err(err(op_at, "expected == != < <= > or >=".into())),
        };
        let value_at = op_at + op_len;
        let value_text = text[value_at..].trim();
        let value_start = value_at + (text[value_at..].len() - text[value_at..].trim_start().len());

        let lhs_start = lhs.len() - lhs.trim_start().len();
        let lhs = lhs.trim();
        let (path_text, mask) = match lhs.split_once(':') {
            Some((p, m)) => {
                let mask_at = lhs_start + p.len() + 1;
                let mask = parse_number(m.trim())
                    .ok_or_else(|| err(mask_at, format!("mask {m:?} is not a number")))?;
                (p, Some(mask))
            }
            None => (lhs, None),
        };
        let mut path = Vec::new();
        let mut at = lhs_start;
        for part in path_text.split('.') {
            let ok = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !part.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(err(at, format!("{part:?} is not a field name")));
            }
            path.push(part.to_owned());
            at += part.len() + 1;
        }
        if path.len() < 2 {
            return Err(err(
                lhs_start,
                "expected struct.field, e.g. sk_buff.mark".into(),
            ));
        }
        if path.len() > MAX_PATH {
            return Err(err(
                lhs_start,
                format!("paths hold at most {MAX_PATH} names"),
            ));
        }
        let value = if let Some(q) = value_text
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| {
                value_text
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
            }) {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(err(op_at, "strings compare only with == or !=".into()));
            }
            if mask.is_some() {
                return Err(err(lhs_start, "a mask applies to numbers only".into()));
            }
            MetaValue::Str(q.to_owned())
        } else if let Some(neg) = value_text.strip_prefix('-') {
            let n = parse_number(neg)
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| err(value_start, format!("{value_text:?} is not a number")))?;
            MetaValue::Int((n as i64).wrapping_neg() as u64)
        } else {
            MetaValue::Int(parse_number(value_text).ok_or_else(|| {
                err(
                    value_start,
                    if value_text.is_empty() {
                        "expected a value".into()
                    } else {
                        format!("{value_text:?} is not a number or a quoted string")
                    },
                )
            })?)
        };
        Ok(MetaFilter {
            path,
            mask,
            op,
            value,
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn meta_filters_parse() {
        let m = MetaFilter::parse("sk_buff._nfct:0x7 == 0x2").unwrap();
        assert_eq!(m.path, ["sk_buff", "_nfct"]);
        assert_eq!(m.mask, Some(7));
        assert_eq!(m.op, CmpOp::Eq);
        assert_eq!(m.value, MetaValue::Int(2));
        let m = MetaFilter::parse("sk_buff.dev.name == 'eth0'").unwrap();
        assert_eq!(m.path, ["sk_buff", "dev", "name"]);
        assert_eq!(m.value, MetaValue::Str("eth0".into()));
        let m = MetaFilter::parse("sk_buff.mark>=-1").unwrap();
        assert_eq!(m.op, CmpOp::Ge);
        assert_eq!(m.value, MetaValue::Int(u64::MAX));
        assert!(MetaFilter::parse("sk_buff.mark").is_err());
        assert!(MetaFilter::parse("mark == 1").is_err());
        assert!(MetaFilter::parse("sk_buff.dev.name < 'x'").is_err());
        let e = MetaFilter::parse("sk_buff.9x == 1").unwrap_err();
        assert_eq!(e.column, 9);
        let e = MetaFilter::parse("sk_buff.mark == zz").unwrap_err();
        assert_eq!(e.column, 17);
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,60}") {
            let _ = MetaFilter::parse(&s);
        }
    }
}
