//! Integers and addresses as text without `core::fmt`, for the per-event hot paths: the text
//! layouts in [`render`](crate::render) and the JSON writer in [`jsonl`](crate::jsonl).
//!
//! An event prints a few dozen numbers and addresses. Through `write!` each one costs a trip
//! through `fmt::write` and `Formatter::pad_integral`, an IPv4 address four more for its
//! octets, and every piece a separate call into the sink. Here the pieces are gathered in a
//! stack buffer ([`Out`]), numbers and addresses written straight into it by short
//! straight-line code, and the buffer handed to the real sink in one piece when it fills
//! or at the end. The text is exactly what `{}`, `{:x}` and `{:#x}` print (the tests below
//! hold every writer to its `core::fmt` counterpart).
//!
//! The text layouts write into an `Out` in front of the caller's [`fmt::Write`] (an `Out`
//! is itself a `fmt::Write`, so literal pieces go in with `write_str`), and
//! `put!(w, src, '.', sport, " > ", dst, '.', dport)` writes what
//! `write!(w, "{src}.{sport} > {dst}.{dport}")` writes; every value implements [`Put`]. The
//! JSON writer uses the same buffer in front of an `io::Write`. Nothing is allocated.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{SctpState, TcpState};

/// Writes each value in turn into `$out` (a `&mut Out`); evaluates to `fmt::Result`, always
/// `Ok` (the buffer keeps a sink's error for [`Out::finish`]). `put!(out, "id ", id)`
/// writes what `write!(w, "id {id}")` writes.
macro_rules! put {
    ($out:expr, $($item:expr),+ $(,)?) => {{
        let out = &mut *$out;
        $( $crate::fast::Put::put(&$item, out); )+
        ::std::fmt::Result::Ok(())
    }};
}

pub(crate) use put;

/// `10^8`: [`eight_digits`] takes numbers below.
const E8: u64 = 100_000_000;

/// Where a full [`Out`] buffer goes.
pub(crate) trait Sink {
    type Error;
    /// Takes `text`, which is valid UTF-8.
    fn take(&mut self, text: &str) -> Result<(), Self::Error>;
}

/// A [`fmt::Write`] as a [`Sink`].
#[derive(Debug)]
pub(crate) struct FmtSink<'w, W: ?Sized>(pub &'w mut W);

impl<W: fmt::Write + ?Sized> Sink for FmtSink<'_, W> {
    type Error = fmt::Error;

    #[inline]
    fn take(&mut self, text: &str) -> fmt::Result {
        self.0.write_str(text)
    }
}

/// Text gathered in a stack buffer of `N` bytes on its way to a [`Sink`].
///
/// Invariant: `buf[..len]` is valid UTF-8. Only whole `&str`s and ASCII bytes are appended
/// (the ASCII ones by the writers below, from ASCII tables), and the buffer is only ever
/// emptied whole.
///
/// The first error from the sink is kept and returned by [`finish`](Out::finish); anything
/// written after it is dropped.
#[derive(Debug)]
pub(crate) struct Out<S: Sink, const N: usize> {
    buf: [u8; N],
    len: usize,
    sink: S,
    error: Option<S::Error>,
}

impl<S: Sink, const N: usize> Out<S, N> {
    #[inline]
    pub(crate) fn new(sink: S) -> Self {
        Out {
            buf: [0; N],
            len: 0,
            sink,
            error: None,
        }
    }

    /// Hands the rest to the sink; gives the first error (and forgets it).
    #[inline]
    pub(crate) fn finish(&mut self) -> Result<(), S::Error> {
        self.flush();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Empties the buffer into the sink.
    #[inline]
    fn flush(&mut self) {
        if self.len > 0 {
            self.pass(..self.len);
            self.len = 0;
        }
    }

    #[inline(never)]
    fn pass(&mut self, range: std::ops::RangeTo<usize>) {
        if self.error.is_none() {
            // SAFETY: `buf[..len]` is valid UTF-8 (the type's invariant) and `range` is
            // `..len`.
            let text = unsafe { std::str::from_utf8_unchecked(&self.buf[range]) };
            if let Err(e) = self.sink.take(text) {
                self.error = Some(e);
            }
        }
    }

    /// Makes room for `n <= N` more bytes and gives the free part of the buffer.
    #[inline(always)]
    fn room(&mut self, n: usize) -> &mut [u8] {
        debug_assert!(n <= N);
        if N - self.len < n {
            self.spill();
        }
        &mut self.buf[self.len..]
    }

    /// Empties the full buffer into the sink.
    #[cold]
    #[inline(never)]
    fn spill(&mut self) {
        self.flush();
    }

    /// [`room`](Out::room) for `K` bytes, as an array.
    #[inline]
    fn room_array<const K: usize>(&mut self) -> &mut [u8; K] {
        let room = &mut self.room(K)[..K];
        room.try_into().expect("the slice is K bytes")
    }

    /// Appends `s`.
    #[inline]
    pub(crate) fn str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        if bytes.len() <= N - self.len {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.long_str(s);
        }
    }

    #[inline(never)]
    fn long_str(&mut self, s: &str) {
        self.flush();
        if s.len() <= N {
            self.buf[..s.len()].copy_from_slice(s.as_bytes());
            self.len = s.len();
        } else if self.error.is_none() {
            if let Err(e) = self.sink.take(s) {
                self.error = Some(e);
            }
        }
    }

    /// Appends one ASCII byte.
    #[inline]
    pub(crate) fn ascii(&mut self, byte: u8) {
        debug_assert!(byte.is_ascii());
        self.room(1)[0] = byte;
        self.len += 1;
    }

    /// Appends `n` in decimal, as `{}` prints it.
    #[inline(always)]
    pub(crate) fn dec(&mut self, n: u64) {
        if n < E8 {
            self.digits(eight_digits(n), true);
        } else {
            self.dec_wide(n);
        }
    }

    /// [`dec`](Out::dec) for `n >= 10^8`.
    #[inline(never)]
    fn dec_wide(&mut self, n: u64) {
        if n < E8 * E8 {
            self.digits(eight_digits(n / E8), true);
            self.digits(eight_digits(n % E8), false);
        } else {
            self.digits(eight_digits(n / (E8 * E8)), true);
            self.digits(eight_digits(n / E8 % E8), false);
            self.digits(eight_digits(n % E8), false);
        }
    }

    /// Appends `n` in decimal, as `{}` prints it.
    #[inline(always)]
    pub(crate) fn dec8(&mut self, n: u8) {
        let (text, len) = OCTETS[usize::from(n)];
        *self.room_array::<4>() = text;
        // Without the octet's dot.
        self.len += len - 1;
    }

    /// Appends eight digits from [`eight_digits`], without their leading zeros (but one) if
    /// `trim`.
    #[inline(always)]
    fn digits(&mut self, digits: u64, trim: bool) {
        // The first digit is the lowest byte: leading zeros are low zero bytes.
        let skip = if trim {
            (digits.trailing_zeros() / 8).min(7)
        } else {
            0
        };
        let ascii = (digits >> (8 * skip)) + 0x3030_3030_3030_3030;
        *self.room_array::<8>() = ascii.to_le_bytes();
        self.len += 8 - skip as usize;
    }

    /// Appends `n` in lowercase hex without prefix, as `{:x}` prints it.
    #[inline]
    pub(crate) fn hex(&mut self, n: u64) {
        let digits = hex_digits(n);
        let room = self.room_array::<16>();
        *room = hex16(left_align(n, digits));
        self.len += digits;
    }

    /// Appends `0x` and the lowercase hex digits of `n`, as `{:#x}` prints it.
    #[inline]
    pub(crate) fn hex_prefixed64(&mut self, n: u64) {
        let digits = hex_digits(n);
        let room = self.room_array::<18>();
        room[..2].copy_from_slice(b"0x");
        room[2..].copy_from_slice(&hex16(left_align(n, digits)));
        self.len += 2 + digits;
    }

    /// Appends `0x` and at least `min_digits` (1 to 32) lowercase hex digits of `n`: `{:#x}`
    /// prints `min_digits == 1`, `0x{:016x}` prints 16.
    #[inline]
    pub(crate) fn hex_prefixed(&mut self, n: u128, min_digits: usize) {
        let (hi, lo) = ((n >> 64) as u64, n as u64);
        let room = self.room_array::<34>();
        room[..2].copy_from_slice(b"0x");
        let digits = if hi == 0 && min_digits <= 16 {
            let digits = hex_digits(lo).max(min_digits);
            room[2..18].copy_from_slice(&hex16(left_align(lo, digits)));
            digits
        } else {
            let high = hex_digits(hi).max(min_digits.saturating_sub(16));
            room[2..18].copy_from_slice(&hex16(left_align(hi, high)));
            room[2 + high..18 + high].copy_from_slice(&hex16(lo));
            high + 16
        };
        self.len += 2 + digits;
    }

    /// Appends an IPv4 address as `Display` prints it (`192.0.2.1`).
    #[inline]
    pub(crate) fn ipv4(&mut self, addr: Ipv4Addr) {
        let room = self.room_array::<16>();
        let len = write_ipv4(room, addr.octets());
        self.len += len;
    }

    /// Appends an IPv6 address as `Display` prints it: RFC 5952 (lowercase hex without
    /// leading zeros, the first longest run of two or more zero groups as `::`), an
    /// IPv4-mapped address as `::ffff:a.b.c.d`.
    pub(crate) fn ipv6(&mut self, addr: Ipv6Addr) {
        let room = self.room_array::<IPV6_ROOM>();
        let len = write_ipv6(room, addr);
        self.len += len;
    }

    /// Appends an address as `Display` prints it.
    #[inline]
    pub(crate) fn ip(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.ipv4(a),
            IpAddr::V6(a) => self.ipv6(a),
        }
    }
}

/// Text written through `fmt::Write` goes into the buffer; a sink's error is kept for
/// [`finish`](Out::finish), so these never fail.
impl<S: Sink, const N: usize> fmt::Write for Out<S, N> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.str(s);
        Ok(())
    }

    #[inline]
    fn write_char(&mut self, c: char) -> fmt::Result {
        c.put(self);
        Ok(())
    }
}

/// The eight decimal digits of `n < 10^8` (leading zeros included) as the bytes 0 to 9 of a
/// word, the most significant digit in the lowest byte: split in halves of four digits,
/// those in pairs, those in digits, in parallel lanes of one word (each step divides by a
/// multiplication and a shift that are exact for the lane's range).
#[inline]
fn eight_digits(n: u64) -> u64 {
    debug_assert!(n < 100_000_000);
    // Two 32-bit lanes: the high four digits, the low four.
    let x = (n / 10_000) | ((n % 10_000) << 32);
    // Four 16-bit lanes of two digits: x / 100 is (x * 10486) >> 20 for x < 10^4.
    let hundreds = ((x * 10486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    // Eight bytes of one digit: x / 10 is (x * 103) >> 10 for x < 100.
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | ((x - tens * 10) << 8)
}

/// How many hex digits `n` has.
#[inline]
fn hex_digits(n: u64) -> usize {
    (64 - n.leading_zeros() as usize).div_ceil(4).max(1)
}

/// Shifts the low `digits` hex digits of `n` to the top (`digits` 1 to 16).
#[inline]
fn left_align(n: u64, digits: usize) -> u64 {
    n.checked_shl(64 - 4 * digits as u32).unwrap_or(0)
}

/// The 16 lowercase hex digits of `n`, most significant first.
#[inline]
fn hex16(n: u64) -> [u8; 16] {
    // Spread each nibble of a 32-bit half into its own byte, then turn the bytes 0..=15
    // into ASCII all at once.
    fn spread(half: u32) -> u64 {
        let mut x = u64::from(half);
        x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
        x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
        x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
        // Byte i holds nibble i; bytes >= 10 get the distance from '9' + 1 to 'a'.
        let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        x + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&spread((n >> 32) as u32).to_be_bytes());
    out[8..].copy_from_slice(&spread(n as u32).to_be_bytes());
    out
}

/// Each octet's decimal digits followed by a `.`, and how many bytes that is.
const OCTETS: [([u8; 4], usize); 256] = {
    let mut table = [([0u8; 4], 0usize); 256];
    let mut o = 0;
    while o < 256 {
        let (h, t, u) = ((o / 100) as u8, (o / 10 % 10) as u8, (o % 10) as u8);
        table[o] = if o >= 100 {
            ([b'0' + h, b'0' + t, b'0' + u, b'.'], 4)
        } else if o >= 10 {
            ([b'0' + t, b'0' + u, b'.', b'.'], 3)
        } else {
            ([b'0' + u, b'.', b'.', b'.'], 2)
        };
        o += 1;
    }
    table
};

/// Writes the dotted quad at the start of `out` (which it may scribble on up to 16 bytes,
/// with ASCII); gives its length.
#[inline]
fn write_ipv4(out: &mut [u8; 16], octets: [u8; 4]) -> usize {
    let mut at = 0;
    for o in octets {
        let (text, len) = OCTETS[usize::from(o)];
        out[at..at + 4].copy_from_slice(&text);
        at += len;
    }
    // No dot after the last octet.
    at - 1
}

/// Room [`write_ipv6`] needs: the longest text is 39 bytes, and each group's four
/// possible digits are written before its length is known.
const IPV6_ROOM: usize = 40;

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [HEX[b >> 4], HEX[b & 0xf]];
        b += 1;
    }
    table
};

/// For each set of zero groups (bit i set: group i is zero), the first longest run of two
/// or more as `start..end`; `8..8` when there is none.
const ZERO_RUNS: [(u8, u8); 256] = {
    let mut table = [(8u8, 8u8); 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut best_start, mut best_len, mut i) = (0, 0, 0);
        while i < 8 {
            let mut j = i;
            while j < 8 && (mask >> j) & 1 == 1 {
                j += 1;
            }
            if j - i > best_len {
                (best_start, best_len) = (i, j - i);
            }
            i = j + 1;
        }
        if best_len >= 2 {
            table[mask] = (best_start as u8, (best_start + best_len) as u8);
        }
        mask += 1;
    }
    table
};

/// Bit i set if the 16-bit group i of the address (`bits`, group 0 on top) is zero.
#[inline]
fn zero_groups(bits: u128) -> usize {
    // Per 16-bit lane of a word: the lane's top bit is set if the lane is not zero. Then
    // the four top bits are gathered into bits 48..52 by one multiplication (no two
    // partial products meet): lane k to bit k.
    let nonzero = |w: u64| {
        let tops =
            (((w & 0x7fff_7fff_7fff_7fff) + 0x7fff_7fff_7fff_7fff) | w) & 0x8000_8000_8000_8000;
        ((tops >> 15).wrapping_mul((1 << 48) | (1 << 33) | (1 << 18) | (1 << 3)) >> 48) & 0xf
    };
    // Lane k of the high half is group 3 - k: reverse the four bits by table.
    const REVERSED: [u8; 16] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];
    let first = REVERSED[nonzero((bits >> 64) as u64) as usize];
    let last = REVERSED[nonzero(bits as u64) as usize];
    usize::from(!(first | (last << 4)))
}

/// Writes the RFC 5952 text of `addr` at the start of `out` (which it may scribble on
/// beyond, with ASCII); gives its length.
fn write_ipv6(out: &mut [u8; IPV6_ROOM], addr: Ipv6Addr) -> usize {
    if let Some(v4) = addr.to_ipv4_mapped() {
        out[..7].copy_from_slice(b"::ffff:");
        let mut quad = [0; 16];
        let len = write_ipv4(&mut quad, v4.octets());
        out[7..7 + len].copy_from_slice(&quad[..len]);
        return 7 + len;
    }
    let bits = addr.to_bits();
    let (start, end) = ZERO_RUNS[zero_groups(bits)];
    let (start, end) = (usize::from(start), usize::from(end));
    // Each kept group is written with a `:` after it; the last `:` goes unless the text
    // ends in `::`.
    let mut at = write_groups(out, 0, bits, 0..start);
    if start == 8 {
        return at - 1;
    }
    if start == 0 {
        out[at] = b':';
        at += 1;
    }
    out[at] = b':';
    at += 1;
    at = write_groups(out, at, bits, end..8);
    at - usize::from(end < 8)
}

/// Writes the groups `which` of the address `bits` in hex without leading zeros, each with
/// a `:` after it, from `at`; gives the new end.
#[inline]
fn write_groups(
    out: &mut [u8; IPV6_ROOM],
    mut at: usize,
    bits: u128,
    which: std::ops::Range<usize>,
) -> usize {
    for i in which {
        let group = (bits >> (112 - 16 * (i & 7))) as u16;
        let [high, low] = group.to_be_bytes();
        let four = u32::from(u16::from_le_bytes(HEX_PAIRS[usize::from(high)]))
            | u32::from(u16::from_le_bytes(HEX_PAIRS[usize::from(low)])) << 16;
        let digits = (19 - group.leading_zeros().min(15) as usize) / 4;
        // The digits without leading zeros, then the `:`.
        out[at..at + 4].copy_from_slice(&(four >> (8 * (4 - digits))).to_le_bytes());
        out[at + digits] = b':';
        at += digits + 1;
    }
    at
}

/// Whether every byte of `s` is printable ASCII (0x20..0x7f); eight bytes at a time.
#[inline]
pub(crate) fn printable_ascii(s: &str) -> bool {
    const ONES: u64 = u64::MAX / 0xff;
    const HIGH: u64 = ONES << 7;
    let chunks = s.as_bytes().chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // A high bit is set in the result for a byte below 0x20 (borrow), at 0x7f (carry)
        // or at 0x80 and above; a false alarm only ever follows a true one.
        if (w.wrapping_sub(ONES * 0x20) | w.wrapping_add(ONES) | w) & HIGH != 0 {
            return false;
        }
    }
    rest.iter().all(|b| (b' '..0x7f).contains(b))
}

// ---------------------------------------------------------------------------------------
// Values for `put!`

/// A value [`put!`] can write: what `{}` prints for it, without `core::fmt`.
pub(crate) trait Put {
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>);
}

impl<T: Put + ?Sized> Put for &T {
    #[inline]
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
        (**self).put(out)
    }
}

impl Put for str {
    #[inline]
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
        out.str(self)
    }
}

impl Put for char {
    #[inline]
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
        if self.is_ascii() {
            out.ascii(*self as u8)
        } else {
            out.str(self.encode_utf8(&mut [0; 4]))
        }
    }
}

macro_rules! put_decimal {
    ($($t:ty),*) => {$(
        impl Put for $t {
            #[inline]
            fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
                out.dec((*self).into())
            }
        }
    )*};
}

put_decimal!(u16, u32, u64);

impl Put for u8 {
    #[inline]
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
        out.dec8(*self)
    }
}

/// `{:#x}`: `0x` and lowercase hex digits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hex<T>(pub T);

macro_rules! put_hex {
    ($($t:ty),*) => {$(
        impl Put for Hex<$t> {
            #[inline]
            fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
                out.hex_prefixed64(self.0.into())
            }
        }
    )*};
}

put_hex!(u8, u16, u32, u64);

impl Put for Hex<u128> {
    #[inline]
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
        out.hex_prefixed(self.0, 1)
    }
}

/// `{:x}`: lowercase hex digits without prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BareHex(pub u64);

impl Put for BareHex {
    #[inline]
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
        out.hex(self.0)
    }
}

impl Put for IpAddr {
    #[inline]
    fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
        out.ip(*self)
    }
}

/// The kernel's name, or `UNKNOWN({value})`, as their `Display` prints it.
macro_rules! put_kernel_enum {
    ($($t:ty),*) => {$(
        impl Put for $t {
            #[inline]
            fn put<S: Sink, const N: usize>(&self, out: &mut Out<S, N>) {
                match self.name() {
                    Some(name) => out.str(name),
                    None => {
                        out.str("UNKNOWN(");
                        out.dec(self.raw().into());
                        out.ascii(b')');
                    }
                }
            }
        }
    )*};
}

put_kernel_enum!(TcpState, SctpState);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Collects what a sink is given, piece by piece.
    #[derive(Default)]
    struct Pieces(Vec<String>);

    impl Sink for &mut Pieces {
        type Error = ();
        fn take(&mut self, text: &str) -> Result<(), ()> {
            self.0.push(text.to_owned());
            Ok(())
        }
    }

    /// What `f` writes through an `Out` of `N` bytes.
    fn text<const N: usize>(f: impl FnOnce(&mut Out<&mut Pieces, N>)) -> String {
        let mut pieces = Pieces::default();
        let mut out = Out::<_, N>::new(&mut pieces);
        f(&mut out);
        out.finish().unwrap();
        pieces.0.concat()
    }

    const LINE: usize = 128;

    fn line(f: impl FnOnce(&mut Out<&mut Pieces, LINE>)) -> String {
        text::<LINE>(f)
    }

    #[test]
    fn printable_ascii_finds_every_other_byte_in_every_position() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=u8::MAX {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let Ok(text) = std::str::from_utf8(&bytes) else {
                        continue;
                    };
                    assert_eq!(printable_ascii(text), (0x20..0x7f).contains(&b), "{text:?}");
                }
            }
        }
        assert!(!printable_ascii("abcdefghé"));
        assert!(printable_ascii("net:netif_receive_skb"));
    }

    #[test]
    fn octets_like_display() {
        for n in 0..=u8::MAX {
            assert_eq!(line(|o| o.dec8(n)), n.to_string());
        }
    }

    #[test]
    fn decimal_edges() {
        let mut cases = vec![u64::MAX, u64::MAX - 1, 1 << 63, u32::MAX.into()];
        for p in 0..20 {
            let ten = 10u64.pow(p);
            cases.extend([ten - 1, ten, ten + 1]);
        }
        for n in cases {
            assert_eq!(line(|o| o.dec(n)), n.to_string());
        }
        for n in 0..=100_000u64 {
            assert_eq!(line(|o| o.dec(n)), n.to_string());
        }
    }

    #[test]
    fn hex_edges() {
        for n in [
            0u64,
            1,
            9,
            0xa,
            0xf,
            0x10,
            0xff,
            0x1234_5678,
            0x9abc_def0,
            u64::MAX,
        ] {
            assert_eq!(line(|o| o.hex(n)), format!("{n:x}"));
            assert_eq!(line(|o| o.hex_prefixed(n.into(), 1)), format!("{n:#x}"));
            assert_eq!(line(|o| o.hex_prefixed64(n)), format!("{n:#x}"));
        }
        for n in [0u128, 1 << 64, u128::MAX, (1 << 100) | 1] {
            assert_eq!(line(|o| o.hex_prefixed(n, 1)), format!("{n:#x}"));
            assert_eq!(line(|o| o.hex_prefixed(n, 16)), format!("{n:#018x}"));
            assert_eq!(line(|o| o.hex_prefixed(n, 32)), format!("{n:#034x}"));
        }
    }

    #[test]
    fn addresses_like_display() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "1:0:1:0:1:0:1:0",
            "0:1:0:1:0:1:0:1",
            "fe80::abcd:ef01:2345:6789",
            "::ffff:192.0.2.1",
            "::ffff:0:0",
            "::192.0.2.1",
            "64:ff9b::192.0.2.33",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let addr: Ipv6Addr = text.parse().unwrap();
            assert_eq!(line(|o| o.ipv6(addr)), addr.to_string(), "{text}");
        }
        for text in ["0.0.0.0", "255.255.255.255", "10.0.1.100", "9.99.100.199"] {
            let addr: Ipv4Addr = text.parse().unwrap();
            assert_eq!(line(|o| o.ipv4(addr)), text);
        }
    }

    #[test]
    fn kernel_enums_like_display() {
        for raw in 0..=u8::MAX {
            let (t, s) = (TcpState::from_raw(raw), SctpState::from_raw(raw));
            assert_eq!(line(|o| t.put(o)), t.to_string());
            assert_eq!(line(|o| s.put(o)), s.to_string());
        }
    }

    #[test]
    fn put_writes_in_order_in_one_piece() {
        let mut s = String::from(">");
        let mut out = Out::<_, LINE>::new(FmtSink(&mut s));
        put!(
            &mut out,
            "a ",
            1u8,
            ' ',
            Hex(0x2au32),
            ' ',
            BareHex(255),
            'é'
        )
        .unwrap();
        fmt::Write::write_str(&mut out, " b").unwrap();
        fmt::Write::write_char(&mut out, 'ü').unwrap();
        out.finish().unwrap();
        assert_eq!(s, ">a 1 0x2a ffé bü");

        struct Count(usize);
        impl fmt::Write for Count {
            fn write_str(&mut self, _: &str) -> fmt::Result {
                self.0 += 1;
                Ok(())
            }
        }
        let mut w = Count(0);
        let mut out = Out::<_, LINE>::new(FmtSink(&mut w));
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        put!(
            &mut out,
            v6,
            '.',
            65535u16,
            " > ",
            v6,
            '.',
            1u16,
            " vtag ",
            Hex(u32::MAX)
        )
        .unwrap();
        out.finish().unwrap();
        assert_eq!(w.0, 1);
    }

    #[test]
    fn the_first_error_is_kept_and_later_writes_dropped() {
        struct FailSecond(usize);
        impl fmt::Write for FailSecond {
            fn write_str(&mut self, _: &str) -> fmt::Result {
                self.0 += 1;
                if self.0 == 2 {
                    Err(fmt::Error)
                } else {
                    Ok(())
                }
            }
        }
        let mut w = FailSecond(0);
        let mut out = Out::<_, LINE>::new(FmtSink(&mut w));
        let long = "x".repeat(LINE + 1);
        put!(&mut out, long.as_str(), long.as_str(), long.as_str(), 1u8).unwrap();
        assert!(out.finish().is_err());
        assert!(out.finish().is_ok(), "the error is given once");
        assert_eq!(w.0, 2, "nothing written after the error");
    }

    /// Pieces longer than the buffer, or not fitting in what is left of it, arrive whole
    /// and in order.
    #[test]
    fn overflow_keeps_order() {
        let long = "é".repeat(40);
        let got = text::<40>(|o| {
            o.str("ab");
            o.dec(u64::MAX);
            o.str(&long);
            o.ipv6(Ipv6Addr::from([0xffff; 8]));
            o.ascii(b'!');
        });
        assert_eq!(
            got,
            format!("ab{}{long}{}!", u64::MAX, Ipv6Addr::from([0xffff; 8]))
        );
    }

    /// IPv6 addresses with many zero groups, to exercise the `::` choice.
    fn sparse_ipv6() -> impl Strategy<Value = Ipv6Addr> {
        proptest::array::uniform8(prop_oneof![3 => Just(0u16), 1 => Just(1u16), 1 => any::<u16>()])
            .prop_map(Ipv6Addr::from)
    }

    proptest! {
        #[test]
        fn integers_like_core_fmt(n in any::<u64>(), shift in 0u32..64, wide in any::<u128>()) {
            let n = n >> shift;
            prop_assert_eq!(line(|o| o.dec(n)), n.to_string());
            prop_assert_eq!(line(|o| o.hex(n)), format!("{n:x}"));
            prop_assert_eq!(line(|o| o.hex_prefixed(n.into(), 1)), format!("{n:#x}"));
            prop_assert_eq!(line(|o| o.hex_prefixed64(n)), format!("{n:#x}"));
            prop_assert_eq!(line(|o| o.hex_prefixed(wide, 1)), format!("{wide:#x}"));
            let w = wide >> (shift * 2);
            prop_assert_eq!(line(|o| o.hex_prefixed(w, 1)), format!("{w:#x}"));
            prop_assert_eq!(line(|o| o.hex_prefixed(w, 16)), format!("{w:#018x}"));
            prop_assert_eq!(line(|o| o.hex_prefixed(w, 32)), format!("{w:#034x}"));
            let s = line(|o| put!(o, n as u8, ' ', n as u16, ' ', n as u32, ' ', n).unwrap());
            prop_assert_eq!(s, format!("{} {} {} {n}", n as u8, n as u16, n as u32));
        }

        #[test]
        fn addresses_like_std_display(
            v4 in any::<Ipv4Addr>(),
            v6 in any::<Ipv6Addr>(),
            sparse in sparse_ipv6(),
            mapped in any::<Ipv4Addr>(),
        ) {
            prop_assert_eq!(line(|o| o.ipv4(v4)), v4.to_string());
            prop_assert_eq!(line(|o| o.ip(v4.into())), v4.to_string());
            prop_assert_eq!(line(|o| o.ipv6(v6)), v6.to_string());
            prop_assert_eq!(line(|o| o.ip(sparse.into())), sparse.to_string());
            let mapped = mapped.to_ipv6_mapped();
            prop_assert_eq!(line(|o| o.ipv6(mapped)), mapped.to_string());
        }
    }
}
