//! Content-addressed blob storage for modules, inputs and outputs, and the chunking that moves
//! blobs between peers.
//!
//! A blob is named by the blake3 hash of its bytes, so a peer can accept bytes from anyone and
//! check them: the hash is verified when a blob is stored, when it is read back (a corrupted file
//! is removed and reported, never served), and when a blob received in chunks is complete.
//! Files live under `ROOT/ab/cd/<hex>` (two levels of shards keep directories small) and are
//! written to `ROOT/tmp` first and renamed into place, so a crash never leaves a half blob under
//! its name. Every blob and every transfer is capped in size.
//!
//! Garbage collection is a policy evaluated against a `now` the caller passes in: a blob whose
//! last touch is older than the retention period and that is not pinned (e.g. belongs to a job
//! that is not settled yet) is removed. The last touch is the file's modification time, set on
//! every put and by [`BlobStore::touch`].
//!
//! Blobs move between peers one chunk per request-response exchange (`agora.v1.BlobRequest` /
//! `BlobResponse`, see [`transfer`]). The protocol is written without a network: [`serve`] turns
//! a request into a response against a store, and [`fetch`] drives a transfer through an async
//! requester closure the caller supplies (the node passes `agora-net`'s request; tests pass
//! in-memory peers). [`BlobStore::read_chunk`] reads a chunk, [`BlobAssembler`] collects chunks
//! from whoever carries them and checks the whole blob against its hash, so a lying peer is
//! caught, reported to the caller, and the next peer is tried.
//!
//! A job's output blob has one format, [`encode_output`]: the exit code, then stdout.

mod assembler;
mod output;
mod store;
pub mod transfer;

pub use assembler::{AssemblerError, BlobAssembler, ChunkAccepted};
pub use output::{decode_output, encode_output};
pub use store::{BlobConfig, BlobError, BlobInfo, BlobStore, GcReport};
pub use transfer::{
    decode_request, encode_request, fetch, fetch_with, serve, FetchError, Fetched, ServeError,
    Want, MAX_CHUNK_SIZE, MAX_IN_FLIGHT, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};

/// Default chunk size for transfers: 256 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 << 10;

/// Number of chunks of `chunk_size` bytes needed for `total` bytes (an empty blob has one empty
/// chunk, so that it can still be transferred and verified). `chunk_size` must be non-zero.
pub fn chunk_count(total: u64, chunk_size: u32) -> u64 {
    let size = u64::from(chunk_size.max(1));
    if total == 0 {
        1
    } else {
        total.div_ceil(size)
    }
}

/// The byte range `(offset, len)` of chunk `index`, or `None` if there is no such chunk.
pub fn chunk_range(total: u64, chunk_size: u32, index: u64) -> Option<(u64, u64)> {
    if index >= chunk_count(total, chunk_size) {
        return None;
    }
    let size = u64::from(chunk_size.max(1));
    let offset = index.checked_mul(size)?;
    let len = size.min(total - offset.min(total));
    Some((offset, len))
}

/// Split `bytes` into `(offset, chunk)` pairs of at most `chunk_size` bytes.
pub fn chunks(bytes: &[u8], chunk_size: u32) -> impl Iterator<Item = (u64, &[u8])> {
    let total = bytes.len() as u64;
    (0..chunk_count(total, chunk_size)).filter_map(move |i| {
        let (offset, len) = chunk_range(total, chunk_size, i)?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        Some((offset, bytes.get(start..end)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_cover_the_blob() {
        assert_eq!(chunk_count(0, 4), 1);
        assert_eq!(chunk_range(0, 4, 0), Some((0, 0)));
        assert_eq!(chunk_count(8, 4), 2);
        assert_eq!(chunk_count(9, 4), 3);
        assert_eq!(chunk_range(9, 4, 2), Some((8, 1)));
        assert_eq!(chunk_range(9, 4, 3), None);
        let data: Vec<u8> = (0..10).collect();
        let parts: Vec<_> = chunks(&data, 4).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], (8, &data[8..]));
        let joined: Vec<u8> = parts.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        assert_eq!(joined, data);
    }
}
