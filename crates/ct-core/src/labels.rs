//! Conntrack labels (a 128-bit bitfield) as text.

use std::fmt::Write as _;

/// Hex text of labels, held on the stack: `0x` + up to 32 digits.
#[derive(Debug, Clone, Copy)]
pub struct LabelsText {
    len: u8,
    buf: [u8; 34],
}

impl LabelsText {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

struct Cursor<'a>(&'a mut LabelsText);

impl std::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let start = self.0.len as usize;
        let end = start + s.len();
        if end > self.0.buf.len() {
            return Err(std::fmt::Error);
        }
        self.0.buf[start..end].copy_from_slice(s.as_bytes());
        self.0.len = end as u8;
        Ok(())
    }
}

/// The JSON form: `0x` + at least 16 hex digits, 32 when any of the upper 64 bits is set.
pub fn format_labels_json(labels: u128) -> LabelsText {
    let mut out = LabelsText {
        len: 0,
        buf: [0; 34],
    };
    let width = if labels >> 64 == 0 { 16 } else { 32 };
    // Cannot overflow: at most 2 + 32 bytes.
    let _ = write!(Cursor(&mut out), "0x{labels:0width$x}");
    out
}

/// Why a labels string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsError {
    #[error("labels {0:?} must start with 0x (e.g. \"0x0000000000000001\")")]
    MissingPrefix(String),
    #[error("labels {0:?} must be hex digits after 0x")]
    NotHex(String),
    #[error("labels {0:?} do not fit in 128 bits")]
    TooWide(String),
}

/// Reads `0x` followed by 1 to 32 hex digits (leading zeros beyond that are accepted).
pub fn parse_labels(text: &str) -> Result<u128, LabelsError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| LabelsError::MissingPrefix(text.to_owned()))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LabelsError::NotHex(text.to_owned()));
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 32 {
        return Err(LabelsError::TooWide(text.to_owned()));
    }
    if significant.is_empty() {
        return Ok(0);
    }
    u128::from_str_radix(significant, 16).map_err(|_| LabelsError::NotHex(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_width() {
        assert_eq!(format_labels_json(1).as_str(), "0x0000000000000001");
        assert_eq!(format_labels_json(0).as_str(), "0x0000000000000000");
        assert_eq!(
            format_labels_json(1u128 << 100).as_str(),
            "0x00000010000000000000000000000000"
        );
        assert_eq!(
            format_labels_json(u128::MAX).as_str(),
            "0xffffffffffffffffffffffffffffffff"
        );
    }

    #[test]
    fn parse_accepts_any_width() {
        assert_eq!(parse_labels("0x1"), Ok(1));
        assert_eq!(parse_labels("0x0000000000000001"), Ok(1));
        assert_eq!(
            parse_labels("0x000000000000000000000000000000000001"),
            Ok(1)
        );
        assert_eq!(parse_labels(&format!("0x{:x}", u128::MAX)), Ok(u128::MAX));
        assert!(matches!(
            parse_labels("1"),
            Err(LabelsError::MissingPrefix(_))
        ));
        assert!(matches!(parse_labels("0x"), Err(LabelsError::NotHex(_))));
        assert!(matches!(parse_labels("0xg"), Err(LabelsError::NotHex(_))));
        assert!(matches!(
            parse_labels("0x1ffffffffffffffffffffffffffffffff"),
            Err(LabelsError::TooWide(_))
        ));
    }
}
