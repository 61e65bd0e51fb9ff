//! The records one read of the ring buffer gave, kept until they are handed over.
//!
//! libbpf calls back once per record while it reads the ring; the records are copied into
//! one reused buffer there (the ring's own memory is released as it is read), and handed
//! over afterwards as slices of it, which the decoder reads in place. This replaced a
//! queue of record-sized values, each copied in and then moved out again; after the
//! first reads nothing is allocated per record.

/// Records as bytes, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct RecordQueue {
    /// The records, each padded to a multiple of 8 bytes so that each starts as aligned as
    /// the buffer (the allocator's 16 bytes: the decoder reads a record in place when it
    /// is aligned, and copies it when not).
    bytes: Vec<u8>,
    /// Each record's length in bytes, before padding.
    lens: Vec<u32>,
}

impl RecordQueue {
    /// Appends a copy of `record`.
    pub(crate) fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        let padded = record.len().next_multiple_of(8);
        self.bytes
            .extend_from_slice(&[0; 8][..padded - record.len()]);
        // A ring buffer record is far below 4 GiB (the kernel's length field has 28 bits).
        self.lens
            .push(u32::try_from(record.len()).unwrap_or(u32::MAX));
    }

    /// Hands every record to `f`, oldest first, and empties the queue (keeping its
    /// memory). Returns how many were handed over.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut at = 0;
        for &len in &self.lens {
            let len = len as usize;
            f(&self.bytes[at..at + len]);
            at += len.next_multiple_of(8);
        }
        let n = self.lens.len();
        self.bytes.clear();
        self.lens.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_back_each_record_whole_and_in_order() {
        let mut queue = RecordQueue::default();
        let records: Vec<Vec<u8>> = [0usize, 1, 7, 8, 9, 496, 503]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        for round in 0..2 {
            for r in &records {
                queue.push(r);
            }
            let mut seen = Vec::new();
            let n = queue.drain(|bytes| seen.push(bytes.to_vec()));
            assert_eq!(n, records.len(), "round {round}");
            assert_eq!(seen, records, "round {round}");
            assert_eq!(queue.drain(|_| panic!("emptied")), 0);
        }
    }
}
