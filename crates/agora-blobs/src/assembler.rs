//! Reassembling a blob from chunks that arrive in any order from untrusted peers.

use agora_types::Hash;

use crate::{chunk_count, chunk_range};

/// Why a chunk or a finished blob was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblerError {
    #[error("blob of {size} bytes is over the limit of {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("chunk size must be non-zero")]
    ZeroChunkSize,
    #[error("chunk claims total size {got}, expected {expected}")]
    TotalMismatch { expected: u64, got: u64 },
    #[error("chunk at offset {offset} is not on the chunk grid or past the end")]
    BadOffset { offset: u64 },
    #[error("chunk at offset {offset} has {got} bytes, expected {expected}")]
    BadLength {
        offset: u64,
        expected: u64,
        got: u64,
    },
    #[error("chunk at offset {offset} conflicts with one already received")]
    Conflict { offset: u64 },
    #[error("blob is incomplete: {missing} chunks missing")]
    Incomplete { missing: u64 },
    #[error("blob hash mismatch: expected {expected}, got {got}")]
    HashMismatch { expected: Hash, got: Hash },
}

/// What happened to an accepted chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkAccepted {
    /// New bytes were stored.
    New,
    /// The same chunk had been received already, with the same bytes.
    Duplicate,
}

/// Collects the chunks of one blob of known hash and size. Chunks sit on a fixed grid of
/// `chunk_size` bytes (the last one may be shorter); anything off the grid, of the wrong length,
/// claiming a different total, or contradicting an earlier chunk is rejected. The buffer is
/// allocated once, bounded by `max_bytes`, when the first chunk arrives.
#[derive(Debug)]
pub struct BlobAssembler {
    expected: Hash,
    total: u64,
    chunk_size: u32,
    buf: Vec<u8>,
    have: Vec<bool>,
    received: u64,
}

impl BlobAssembler {
    pub fn new(
        expected: Hash,
        total: u64,
        chunk_size: u32,
        max_bytes: u64,
    ) -> Result<BlobAssembler, AssemblerError> {
        if chunk_size == 0 {
            return Err(AssemblerError::ZeroChunkSize);
        }
        if total > max_bytes || usize::try_from(total).is_err() {
            return Err(AssemblerError::TooLarge {
                size: total,
                max: max_bytes,
            });
        }
        let count = chunk_count(total, chunk_size);
        let count = usize::try_from(count).map_err(|_| AssemblerError::TooLarge {
            size: total,
            max: max_bytes,
        })?;
        Ok(BlobAssembler {
            expected,
            total,
            chunk_size,
            buf: Vec::new(),
            have: vec![false; count],
            received: 0,
        })
    }

    pub fn expected(&self) -> Hash {
        self.expected
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Add one chunk. `total` is the size the sender claims for the whole blob.
    pub fn accept(
        &mut self,
        offset: u64,
        bytes: &[u8],
        total: u64,
    ) -> Result<ChunkAccepted, AssemblerError> {
        if total != self.total {
            return Err(AssemblerError::TotalMismatch {
                expected: self.total,
                got: total,
            });
        }
        let size = u64::from(self.chunk_size);
        if !offset.is_multiple_of(size) {
            return Err(AssemblerError::BadOffset { offset });
        }
        let index = offset / size;
        let (_, len) = chunk_range(self.total, self.chunk_size, index)
            .ok_or(AssemblerError::BadOffset { offset })?;
        if bytes.len() as u64 != len {
            return Err(AssemblerError::BadLength {
                offset,
                expected: len,
                got: bytes.len() as u64,
            });
        }
        // Both fit in usize: total was checked in `new`.
        let idx = index as usize;
        let start = offset as usize;
        let end = start + bytes.len();
        if self.have[idx] {
            return if self.buf[start..end] == *bytes {
                Ok(ChunkAccepted::Duplicate)
            } else {
                Err(AssemblerError::Conflict { offset })
            };
        }
        if self.buf.is_empty() && self.total > 0 {
            self.buf = vec![0; self.total as usize];
        }
        self.buf[start..end].copy_from_slice(bytes);
        self.have[idx] = true;
        self.received += 1;
        Ok(ChunkAccepted::New)
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.have.len() as u64
    }

    /// Indices of chunks not yet received, at most `limit` of them, in order: what to request
    /// next.
    pub fn missing(&self, limit: usize) -> Vec<u64> {
        self.have
            .iter()
            .enumerate()
            .filter(|(_, h)| !**h)
            .take(limit)
            .map(|(i, _)| i as u64)
            .collect()
    }

    /// The complete blob, after checking its hash.
    pub fn finish(self) -> Result<Vec<u8>, AssemblerError> {
        if !self.is_complete() {
            return Err(AssemblerError::Incomplete {
                missing: self.have.len() as u64 - self.received,
            });
        }
        let got = Hash::of(&self.buf);
        if got != self.expected {
            return Err(AssemblerError::HashMismatch {
                expected: self.expected,
                got,
            });
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks;

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn reassembles_out_of_order() {
        let data = blob(1000);
        let mut a = BlobAssembler::new(Hash::of(&data), 1000, 64, 1 << 20).unwrap();
        let mut parts: Vec<_> = chunks(&data, 64).collect();
        parts.reverse();
        for (off, c) in &parts {
            assert!(!a.is_complete());
            assert_eq!(a.accept(*off, c, 1000).unwrap(), ChunkAccepted::New);
        }
        assert!(a.missing(10).is_empty());
        assert_eq!(a.finish().unwrap(), data);
    }

    #[test]
    fn empty_blob() {
        let mut a = BlobAssembler::new(Hash::of(b""), 0, 64, 10).unwrap();
        assert_eq!(a.missing(5), vec![0]);
        a.accept(0, b"", 0).unwrap();
        assert_eq!(a.finish().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_bad_chunks() {
        let data = blob(200);
        let mut a = BlobAssembler::new(Hash::of(&data), 200, 64, 1 << 20).unwrap();
        assert_eq!(
            a.accept(0, &data[..64], 201),
            Err(AssemblerError::TotalMismatch {
                expected: 200,
                got: 201
            })
        );
        assert_eq!(
            a.accept(10, &data[10..74], 200),
            Err(AssemblerError::BadOffset { offset: 10 })
        );
        assert_eq!(
            a.accept(256, &data[..8], 200),
            Err(AssemblerError::BadOffset { offset: 256 })
        );
        assert_eq!(
            a.accept(192, &data[190..200], 200),
            Err(AssemblerError::BadLength {
                offset: 192,
                expected: 8,
                got: 10
            })
        );
        assert_eq!(a.accept(0, &data[..64], 200), Ok(ChunkAccepted::New));
        assert_eq!(a.accept(0, &data[..64], 200), Ok(ChunkAccepted::Duplicate));
        assert_eq!(
            a.accept(0, &[9u8; 64], 200),
            Err(AssemblerError::Conflict { offset: 0 })
        );
        assert_eq!(a.missing(2), vec![1, 2]);
    }

    #[test]
    fn rejects_oversize_and_wrong_hash() {
        assert_eq!(
            BlobAssembler::new(Hash::ZERO, 1 << 21, 64, 1 << 20).unwrap_err(),
            AssemblerError::TooLarge {
                size: 1 << 21,
                max: 1 << 20
            }
        );
        assert_eq!(
            BlobAssembler::new(Hash::ZERO, 10, 0, 100).unwrap_err(),
            AssemblerError::ZeroChunkSize
        );
        let data = blob(100);
        let mut a = BlobAssembler::new(Hash::of(b"other"), 100, 64, 1 << 20).unwrap();
        a.accept(0, &data[..64], 100).unwrap();
        let incomplete = BlobAssembler::new(Hash::of(&data), 100, 64, 1 << 20).unwrap();
        assert_eq!(
            incomplete.finish(),
            Err(AssemblerError::Incomplete { missing: 2 })
        );
        a.accept(64, &data[64..], 100).unwrap();
        assert!(matches!(
            a.finish(),
            Err(AssemblerError::HashMismatch { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_order_with_duplicates_reassembles(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
            chunk in 1u32..300,
            order in proptest::collection::vec(proptest::num::usize::ANY, 0..40),
        ) {
            let parts: Vec<_> = chunks(&data, chunk).collect();
            let total = data.len() as u64;
            let mut a = BlobAssembler::new(Hash::of(&data), total, chunk, 1 << 20).unwrap();
            // Some chunks twice, in a scrambled order, then every chunk once more.
            for i in order {
                let (off, c) = parts[i % parts.len()];
                a.accept(off, c, total).unwrap();
            }
            for (off, c) in &parts {
                a.accept(*off, c, total).unwrap();
            }
            proptest::prop_assert!(a.is_complete());
            proptest::prop_assert_eq!(a.finish().unwrap(), data);
        }
    }
}
