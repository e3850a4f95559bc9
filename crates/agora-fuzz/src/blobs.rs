//! The blob transfer protocol: requests a peer sends to our server, responses a peer sends to
//! our fetcher.

use std::cell::Cell;

use agora_blobs::chunk_count;
use agora_blobs::transfer::{
    decode_request, encode_request, fetch_with, Want, MAX_CHUNK_SIZE, MAX_REQUEST_BYTES,
};
use agora_proto::v1::BlobResponse;
use agora_types::Hash;
use futures::future::{ready, Ready};
use prost::Message as _;

/// The blob the honest peer of [`blob_response`] serves (three chunks of [`CHUNK`] bytes).
pub const SEED_BLOB: &[u8] = b"agora fuzz blob: content-addressed, fetched in chunks from peers \
that may lie about its size, its hash, or send chunks of the wrong length; only a whole blob \
that hashes right is accepted.";

/// Chunk size of the fetches in [`blob_response`]: small, so short inputs reach multi-chunk
/// paths.
pub const CHUNK: u32 = 64;
/// `max_bytes` of the fetches in [`blob_response`].
pub const MAX_FETCH: u64 = 1024;
/// The job whose output is [`SEED_BLOB`].
pub const SEED_JOB: Hash = Hash([5; 32]);

/// `transfer::decode_request`, the check `serve` runs on every request from a peer.
///
/// Asserts: an accepted request was within the request size limit and asks for a chunk size in
/// `1..=MAX_CHUNK_SIZE`; it re-encodes to a request that decodes to the same triple.
pub fn blob_request(data: &[u8]) {
    let Ok((want, index, chunk_size)) = decode_request(data) else {
        return;
    };
    assert!(
        data.len() <= MAX_REQUEST_BYTES,
        "accepted an oversized request"
    );
    assert!(
        (1..=MAX_CHUNK_SIZE).contains(&chunk_size),
        "chunk size {chunk_size}"
    );
    let bytes = encode_request(&want, index, chunk_size);
    assert!(bytes.len() <= MAX_REQUEST_BYTES);
    assert_eq!(decode_request(&bytes), Ok((want, index, chunk_size)));
}

/// The honest answer to `request` (what `serve` would send for [`SEED_BLOB`]).
fn honest(request: &[u8]) -> Result<Vec<u8>, String> {
    let (want, index, chunk_size) = decode_request(request).map_err(|e| e.to_string())?;
    let found = match want {
        Want::Blob(h) => h == Hash::of(SEED_BLOB),
        Want::Output(j) => j == SEED_JOB,
    };
    let start = index.saturating_mul(u64::from(chunk_size));
    if !found || (start >= SEED_BLOB.len() as u64 && index > 0) {
        return Ok(BlobResponse::default().encode_to_vec());
    }
    let start = start as usize;
    let end = (start + chunk_size as usize).min(SEED_BLOB.len());
    Ok(BlobResponse {
        found: true,
        total: SEED_BLOB.len() as u64,
        data: SEED_BLOB[start..end].to_vec().into(),
        hash: Hash::of(SEED_BLOB).as_bytes().to_vec().into(),
    }
    .encode_to_vec())
}

/// Split the fuzz input into the lying peer's answers: each is a little-endian `u16` length and
/// that many bytes; the length `0xffff` is a transport failure.
fn answers(data: &[u8]) -> Vec<Result<Vec<u8>, String>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && out.len() < 64 {
        let len = u16::from_le_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        if len == u16::MAX {
            out.push(Err("transport failure".to_string()));
            continue;
        }
        let n = usize::from(len).min(rest.len());
        out.push(Ok(rest[..n].to_vec()));
        rest = &rest[n..];
    }
    out
}

/// `transfer::fetch_with` against two peers: peer 0 answers each request with the next answer
/// cut from the fuzz input (the first byte picks blob or job output), peer 1 is honest.
///
/// Asserts: whatever peer 0 sends, a fetched blob is within `max_bytes`, hashes to the hash it
/// is returned under, was assembled from the right number of chunks and, for a blob fetched by
/// hash, is exactly the wanted blob; whatever peer 0 does, the fetch succeeds (the honest
/// peer holds the blob and the output); the honest peer is never reported, the other at most
/// once.
pub fn blob_response(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let want = if which & 1 == 0 {
        Want::Blob(Hash::of(SEED_BLOB))
    } else {
        Want::Output(SEED_JOB)
    };
    let lies = answers(rest);
    let next = Cell::new(0usize);
    let request = |peer: usize, req: Vec<u8>| -> Ready<Result<Vec<u8>, String>> {
        if peer == 1 {
            return ready(honest(&req));
        }
        let i = next.get();
        next.set(i + 1);
        ready(
            lies.get(i)
                .cloned()
                .unwrap_or_else(|| Err("no more answers".into())),
        )
    };
    let mut reported = [0u32; 2];
    let result = futures::executor::block_on(fetch_with(
        &want,
        MAX_FETCH,
        CHUNK,
        &[0usize, 1],
        request,
        |p: &usize| reported[*p] += 1,
    ));
    assert!(
        reported.iter().all(|&n| n <= 1),
        "a peer was reported twice"
    );
    assert_eq!(reported[1], 0, "the honest peer was reported");
    match (&want, result) {
        (_, Ok(f)) => {
            assert!(f.bytes.len() as u64 <= MAX_FETCH, "fetched over max_bytes");
            assert_eq!(
                Hash::of(&f.bytes),
                f.hash,
                "fetched bytes do not hash right"
            );
            assert_eq!(f.chunks, chunk_count(f.bytes.len() as u64, CHUNK).max(1));
            if let Want::Blob(h) = want {
                assert_eq!(f.hash, h);
                assert_eq!(f.bytes, SEED_BLOB);
            }
        }
        (_, Err(e)) => panic!("the honest peer holds it, yet: {e}"),
    }
}
