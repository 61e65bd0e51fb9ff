//! Tracking ids: keyed hashes of kernel identities, so that no kernel address reaches an
//! event.
//!
//! An id is SipHash-1-3 (the function std's `HashMap` uses) under a 128-bit key drawn at
//! random for each [`IdKey`], over one or two 64-bit words, cut to 63 bits. SipHash is a
//! pseudorandom function: without the key, an id says nothing about what was hashed.
//! Hashing whole words with the rounds unrolled (rather than feeding a `Hasher` field by
//! field) is what makes an id cheap; a connection's tuple is first folded into one word by
//! a keyed multiply-xor chain (see [`IdKey::fold`]).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// The per-run secret ids are keyed with.
#[derive(Clone)]
pub(crate) struct IdKey {
    k0: u64,
    k1: u64,
    /// Odd multiplier of [`IdKey::fold`].
    fold: u64,
}

/// The key stays out of debug output.
impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(..)")
    }
}

impl IdKey {
    /// A fresh random key. The randomness is std's `RandomState` (drawn from the OS once
    /// per thread, then a different key for each state): its hashes of constants are the
    /// key words.
    pub(crate) fn random() -> Self {
        let state = RandomState::new();
        IdKey {
            k0: state.hash_one(0u8),
            k1: state.hash_one(1u8),
            fold: state.hash_one(2u8) | 1,
        }
    }

    /// The id of one word, cut to 63 bits: an id is then never at or above
    /// 0x8000_0000_0000_0000, so it can never look like a kernel address (those start at
    /// 0xffff_8000_0000_0000). A full 64-bit hash would land there once in 2^17 ids.
    #[inline]
    pub(crate) fn id(&self, word: u64) -> u64 {
        siphash::<1, 3, 1>(self.k0, self.k1, [word]) >> 1
    }

    /// The id of two words, cut to 63 bits (see [`IdKey::id`]). Its input is 16 bytes long,
    /// [`IdKey::id`]'s 8: the two never share an input.
    #[inline]
    pub(crate) fn id2(&self, first: u64, second: u64) -> u64 {
        siphash::<1, 3, 2>(self.k0, self.k1, [first, second]) >> 1
    }

    /// Folds words into one: `acc = rotl((acc ^ w) * K, 29)` for each word, `K` the key's
    /// odd multiplier. Each step is a bijection of `acc` for a given word, so inputs that
    /// differ in one word never collide, and without `K` no collision can be aimed at.
    #[inline]
    pub(crate) fn fold(&self, words: &[u64]) -> u64 {
        words.iter().fold(0, |acc, &w| {
            (acc ^ w).wrapping_mul(self.fold).rotate_left(29)
        })
    }
}

/// SipHash-`C`-`D` of the `8 * N` bytes of `words` (each little-endian), under the key
/// `(k0, k1)`: the reference algorithm (Aumasson and Bernstein), unrolled for whole words.
#[inline]
fn siphash<const C: usize, const D: usize, const N: usize>(
    k0: u64,
    k1: u64,
    words: [u64; N],
) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let round = |v: &mut [u64; 4]| {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    };
    // The message words, then the last block: the length in its top byte (no tail bytes).
    let last = ((8 * N) as u64 & 0xff) << 56;
    for m in words.into_iter().chain([last]) {
        v[3] ^= m;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use proptest::prelude::*;

    use super::*;

    /// SipHash-2-4 as std's (deprecated, but specified) `SipHasher` computes it.
    #[allow(deprecated)]
    fn reference_2_4(k0: u64, k1: u64, words: &[u64]) -> u64 {
        let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
        for w in words {
            h.write(&w.to_le_bytes());
        }
        h.finish()
    }

    /// The first vectors of the SipHash paper's appendix (key 00..0f, message 00..07 and
    /// 00..0f), for SipHash-2-4.
    #[test]
    fn paper_vectors() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let m1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(
            siphash::<2, 4, 1>(k0, k1, [m0]),
            reference_2_4(k0, k1, &[m0])
        );
        assert_eq!(
            siphash::<2, 4, 2>(k0, k1, [m0, m1]),
            reference_2_4(k0, k1, &[m0, m1])
        );
        assert_eq!(siphash::<2, 4, 1>(k0, k1, [m0]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash::<2, 4, 2>(k0, k1, [m0, m1]), 0x3f2a_cc7f_57c2_9bdb);
    }

    #[test]
    fn keys_differ_and_stay_out_of_debug() {
        let (a, b) = (IdKey::random(), IdKey::random());
        assert_ne!((a.k0, a.k1), (b.k0, b.k1));
        assert_ne!(a.id(1), b.id(1));
        assert_eq!(a.fold & 1, 1);
        assert_eq!(format!("{a:?}"), "IdKey(..)");
    }

    #[test]
    fn one_and_two_words_are_different_inputs() {
        let key = IdKey::random();
        assert_ne!(key.id(7), key.id2(7, 0));
    }

    proptest! {
        #[test]
        fn same_rounds_as_std_siphasher(k0: u64, k1: u64, w0: u64, w1: u64) {
            prop_assert_eq!(siphash::<2, 4, 1>(k0, k1, [w0]), reference_2_4(k0, k1, &[w0]));
            prop_assert_eq!(
                siphash::<2, 4, 2>(k0, k1, [w0, w1]),
                reference_2_4(k0, k1, &[w0, w1])
            );
        }

        #[test]
        fn ids_are_63_bits(w0: u64, w1: u64) {
            let key = IdKey::random();
            prop_assert!(key.id(w0) < 1 << 63);
            prop_assert!(key.id2(w0, w1) < 1 << 63);
        }

        #[test]
        fn folds_differing_in_one_word_never_collide(
            words in proptest::array::uniform6(any::<u64>()),
            at in 0usize..6,
            other: u64,
        ) {
            let key = IdKey::random();
            let mut changed = words;
            changed[at] = other;
            prop_assert_eq!(key.fold(&words) == key.fold(&changed), words == changed);
        }
    }
}
