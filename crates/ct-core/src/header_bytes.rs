//! The packet's bytes from its network header on, as the probe copied them: what
//! `collect --raw-headers` keeps in JSON (as hex) and what a pcapng capture is made of.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// Header bytes copied at a probe, starting at the network (IP) header. At most the
/// collector's copy length (96 bytes for the BPF collector); often the whole IP header
/// and the start of the transport header, not the payload.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderBytes(Box<[u8]>);

impl HeaderBytes {
    /// A copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        HeaderBytes(bytes.into())
    }

    /// The bytes, from the first byte of the network header.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex, two digits a byte, no prefix: the JSON form.
    pub fn to_hex(&self) -> String {
        let mut hex = String::with_capacity(self.0.len() * 2);
        for byte in self.0.iter() {
            hex.push(HEX_DIGITS[usize::from(byte >> 4)] as char);
            hex.push(HEX_DIGITS[usize::from(byte & 0x0f)] as char);
        }
        hex
    }

    /// Reads [`to_hex`](Self::to_hex)'s form (either case).
    pub fn from_hex(hex: &str) -> Result<Self, HeaderBytesError> {
        if hex.len() % 2 != 0 {
            return Err(HeaderBytesError::OddLength(hex.len()));
        }
        let digit = |at: usize| {
            let c = hex.as_bytes()[at];
            (c as char)
                .to_digit(16)
                .map(|d| d as u8)
                .ok_or(HeaderBytesError::NotHex { column: at + 1 })
        };
        let bytes = (0..hex.len() / 2)
            .map(|i| Ok(digit(2 * i)? << 4 | digit(2 * i + 1)?))
            .collect::<Result<Box<[u8]>, HeaderBytesError>>()?;
        Ok(HeaderBytes(bytes))
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for HeaderBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderBytes({})", self.to_hex())
    }
}

/// Why a `headers` string is not header bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderBytesError {
    /// An odd number of digits (the count given): a byte is two.
    #[error("header bytes must be pairs of hex digits, this has {0} digits")]
    OddLength(usize),
    /// A character that is not a hex digit.
    #[error("header bytes must be hex digits; character {column} is not one")]
    NotHex {
        /// 1-based position of the character in the string.
        column: usize,
    },
}

impl Serialize for HeaderBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for HeaderBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl Visitor<'_> for HexVisitor {
            type Value = HeaderBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of hex digits")
            }
            fn visit_str<E: de::Error>(self, hex: &str) -> Result<HeaderBytes, E> {
                HeaderBytes::from_hex(hex).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_hex_is_refused_with_where() {
        assert_eq!(
            HeaderBytes::from_hex("450"),
            Err(HeaderBytesError::OddLength(3))
        );
        assert_eq!(
            HeaderBytes::from_hex("45zz"),
            Err(HeaderBytesError::NotHex { column: 3 })
        );
        assert_eq!(HeaderBytes::from_hex("4500").unwrap().as_bytes(), [0x45, 0]);
        assert_eq!(
            HeaderBytes::from_hex("AbCd").unwrap().as_bytes(),
            [0xab, 0xcd]
        );
        // Multi-byte characters are not hex digits either (and do not split a char).
        assert!(HeaderBytes::from_hex("é4").is_err());
    }

    proptest! {
        #[test]
        fn hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let h = HeaderBytes::new(&bytes);
            prop_assert_eq!(HeaderBytes::from_hex(&h.to_hex()).unwrap(), h);
        }
    }
}
