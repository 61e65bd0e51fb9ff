//! `FixedStr`: a short, inline, NUL-padded string for kernel names (task comm, interface
//! name, helper name). Kernel names are bounded (16 bytes), so keeping them inline avoids one
//! heap allocation per event on the decode path.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Capacity of every kernel name we carry (`TASK_COMM_LEN`, `IFNAMSIZ`,
/// `NF_CT_HELPER_NAME_LEN` are all 16).
pub const NAME_LEN: usize = 16;

/// An inline string of at most [`NAME_LEN`] bytes.
///
/// Built from kernel bytes with [`FixedStr::from_kernel`] (stops at the first NUL, replaces
/// invalid UTF-8 lossily) or from a `&str` (truncated on a character boundary).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FixedStr {
    len: u8,
    buf: [u8; NAME_LEN],
}

impl FixedStr {
    /// Reads a NUL-terminated (or full-length) kernel char array.
    #[inline]
    pub fn from_kernel(bytes: &[u8]) -> Self {
        // The usual name (a full kernel array, ASCII up to its NUL), in a few word
        // operations instead of a search, a UTF-8 check and a copy.
        if let Some(&array) = bytes.first_chunk::<NAME_LEN>() {
            if let Some(name) = Self::from_ascii_array(array) {
                return name;
            }
        }
        Self::from_kernel_slow(bytes)
    }

    /// The name in `array` up to its first NUL, zeros after it, if it is all ASCII.
    #[inline]
    fn from_ascii_array(array: [u8; NAME_LEN]) -> Option<Self> {
        const ONES: u128 = u128::MAX / 0xff;
        const HIGH: u128 = ONES << 7;
        let word = u128::from_le_bytes(array);
        // The high bit of each byte that is zero (the lowest such bit is exact).
        let zeros = word.wrapping_sub(ONES) & !word & HIGH;
        let len = (zeros.trailing_zeros() / 8) as usize;
        let kept = if len == NAME_LEN {
            word
        } else {
            word & ((1u128 << (8 * len)) - 1)
        };
        (kept & HIGH == 0).then(|| FixedStr {
            len: len as u8,
            buf: kept.to_le_bytes(),
        })
    }

    fn from_kernel_slow(bytes: &[u8]) -> Self {
        let bytes = &bytes[..bytes.len().min(NAME_LEN)];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        match std::str::from_utf8(&bytes[..end]) {
            Ok(s) => Self::new(s),
            Err(_) => Self::new(&String::from_utf8_lossy(&bytes[..end])),
        }
    }

    /// Copies `s`, truncated to [`NAME_LEN`] bytes on a character boundary.
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(NAME_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; NAME_LEN];
        buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        FixedStr {
            len: end as u8,
            buf,
        }
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        let bytes = &self.buf[..usize::from(self.len).min(NAME_LEN)];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: only ever filled from `&str` prefixes cut on char boundaries (`new`) or
        // from ASCII (`from_ascii_array`), and never changed after: valid UTF-8. Checking
        // it again on every read was a third of the cost of printing a name.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl From<&str> for FixedStr {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl fmt::Display for FixedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for FixedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for FixedStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FixedStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FixedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {NAME_LEN} bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FixedStr, E> {
                if v.len() > NAME_LEN {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(FixedStr::new(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_bytes_stop_at_nul() {
        assert_eq!(FixedStr::from_kernel(b"eth0\0junk").as_str(), "eth0");
        assert_eq!(
            FixedStr::from_kernel(b"0123456789abcdefXYZ").as_str(),
            "0123456789abcdef"
        );
    }

    proptest::proptest! {
        /// The word-at-a-time path reads exactly what the byte-by-byte one does.
        #[test]
        fn ascii_fast_path_matches(
            mut array in proptest::array::uniform16(proptest::prelude::any::<u8>()),
            nul in 0usize..24,
            ascii in proptest::prelude::any::<bool>(),
        ) {
            if ascii {
                array.iter_mut().for_each(|b| *b &= 0x7f);
            }
            if let Some(b) = array.get_mut(nul) {
                *b = 0;
            }
            let slow = FixedStr::from_kernel_slow(&array);
            proptest::prop_assert_eq!(FixedStr::from_kernel(&array), slow);
            if let Some(fast) = FixedStr::from_ascii_array(array) {
                proptest::prop_assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = FixedStr::new("ééééééééé"); // 18 bytes
        assert_eq!(s.as_str(), "éééééééé");
    }

    #[test]
    fn json_rejects_overlong() {
        assert!(serde_json::from_str::<FixedStr>("\"0123456789abcdefg\"").is_err());
        let v: FixedStr = serde_json::from_str("\"curl\"").unwrap();
        assert_eq!(v.as_str(), "curl");
    }
}
