//! Reading the ring buffer: records copied out a batch at a time.

use std::cell::RefCell;

use ct_core::Event;
use libbpf_rs::RingBuffer;

use crate::decode::{DecodeError, Decoder};
use crate::raw::RawCtEvent;
use crate::ring_queue::RecordQueue;
use crate::Error;

/// One record read from the ring buffer, as [`Collector::poll_raw`](super::Collector::poll_raw)
/// hands it over.
#[derive(Debug, Clone)]
// Every record is one of these: a box for the complete ones would allocate per event to
// spare the rare short one some bytes.
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum RingRecord {
    /// A record of the full [`RawCtEvent`] size.
    Complete(RawCtEvent),
    /// A record shorter than a [`RawCtEvent`]: the BPF object and this library disagree
    /// on the layout. Decoding it is [`DecodeError::Short`].
    Short {
        /// The record's length in bytes.
        len: usize,
    },
}

impl RingRecord {
    pub(super) fn from_bytes(bytes: &[u8]) -> RingRecord {
        match RawCtEvent::read(bytes) {
            Some(raw) => RingRecord::Complete(raw),
            None => RingRecord::Short { len: bytes.len() },
        }
    }

    /// Decodes the record with `decoder`.
    pub fn decode(&self, decoder: &Decoder) -> Result<Event, DecodeError> {
        match self {
            RingRecord::Complete(raw) => decoder.decode_raw(raw),
            RingRecord::Short { len } => Err(DecodeError::Short { got: *len }),
        }
    }
}

/// Records taken off the ring per batch: copied out (which frees their room in the ring at
/// once), then handed over while still in the cache, and the queue never holds more
/// than a batch (about 40 KB of records, where reading the whole ring at once held up to
/// its size on the heap).
pub(super) const READ_BATCH: usize = 64;

/// Reads the ring a batch at a time and hands each record to `each`, until the ring is
/// empty or at least `limit` records were handed over. Returns how many.
pub(super) fn read_in_batches(
    ring: &RingBuffer<'static>,
    queue: &RefCell<RecordQueue>,
    limit: usize,
    mut each: impl FnMut(&[u8]),
) -> Result<usize, Error> {
    let mut total = 0;
    while total < limit {
        let rc = ring.consume_raw_n(READ_BATCH);
        if rc < 0 && rc != -libc::EINTR {
            return Err(Error::Ring(libbpf_rs::Error::from_raw_os_error(-rc)));
        }
        let handed = queue.borrow_mut().drain(&mut each);
        total += handed;
        if handed < READ_BATCH {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_record_decodes_to_its_length() {
        let decoder = Decoder::new(Vec::new());
        let record = RingRecord::from_bytes(&[0; 12]);
        assert!(matches!(record, RingRecord::Short { len: 12 }));
        assert_eq!(record.decode(&decoder), Err(DecodeError::Short { got: 12 }));
        let full = RingRecord::from_bytes(RawCtEvent::default().as_bytes());
        assert!(matches!(full, RingRecord::Complete(_)));
    }
}
