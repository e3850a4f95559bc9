//! The peer-to-peer transfer protocol: one request-response exchange moves one chunk.
//!
//! The server side is [`serve`]: a pure function from a store and a request to a response, so the
//! node can call it from whatever transport it uses. The client side is [`fetch`]: it drives a
//! transfer through a caller-supplied requester (an async closure that sends bytes to a peer and
//! returns its answer), so it knows nothing of libp2p and tests run it against in-memory peers.
//!
//! Trust: a chunk cannot be checked on its own, only the whole blob can. A transfer therefore
//! takes every chunk of one attempt from one peer, and on a hash mismatch the blame is that
//! peer's alone. A peer that fails midway is dropped and the next one starts from scratch (a
//! restart costs at most one blob's worth of traffic and keeps attribution exact).

use std::future::Future;

use agora_proto::v1::{blob_request, BlobRequest, BlobResponse};
use agora_proto::Message;
use agora_types::Hash;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::{chunk_count, AssemblerError, BlobAssembler, BlobError, BlobStore, DEFAULT_CHUNK_SIZE};

/// Largest response the transport carries (the request-response cap of `agora-net`).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Largest request [`serve`] accepts. A well-formed request is under 60 bytes; the slack leaves
/// room for fields added later.
pub const MAX_REQUEST_BYTES: usize = 1 << 10;

/// Room for a response's fields other than the chunk's bytes (53 bytes today, at most).
const RESPONSE_OVERHEAD: usize = 1 << 10;

/// Largest chunk a request may ask for: an encoded response of this many data bytes stays within
/// [`MAX_RESPONSE_BYTES`].
pub const MAX_CHUNK_SIZE: u32 = (MAX_RESPONSE_BYTES - RESPONSE_OVERHEAD) as u32;
const _: () = assert!(DEFAULT_CHUNK_SIZE <= MAX_CHUNK_SIZE);

/// Requests [`fetch`] keeps outstanding to one peer.
pub const MAX_IN_FLIGHT: usize = 4;

/// What to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Want {
    /// The blob with this blake3 hash.
    Blob(Hash),
    /// The output blob the serving peer holds for this job id.
    Output(Hash),
}

impl Want {
    fn to_proto(self) -> blob_request::What {
        match self {
            Want::Blob(h) => blob_request::What::Blob(Bytes::copy_from_slice(h.as_bytes())),
            Want::Output(j) => blob_request::What::JobOutput(Bytes::copy_from_slice(j.as_bytes())),
        }
    }
}

/// Encode a request for chunk `index` of `want`, in chunks of `chunk_size` bytes.
pub fn encode_request(want: &Want, index: u64, chunk_size: u32) -> Vec<u8> {
    BlobRequest {
        what: Some(want.to_proto()),
        index,
        chunk_size,
    }
    .encode_to_vec()
}

/// Why a request was refused. Every variant means the peer sent something no honest peer sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    #[error("request of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("undecodable request: {0}")]
    Decode(String),
    #[error("request names no blob")]
    NoTarget,
    #[error("hash of {0} bytes, expected 32")]
    BadHash(usize),
    #[error("chunk size {0} is out of range")]
    BadChunkSize(u32),
}

/// Decode and check a request: what it wants, the chunk index and the chunk size.
pub fn decode_request(request: &[u8]) -> Result<(Want, u64, u32), ServeError> {
    if request.len() > MAX_REQUEST_BYTES {
        return Err(ServeError::TooLarge(request.len()));
    }
    let req = BlobRequest::decode(request).map_err(|e| ServeError::Decode(e.to_string()))?;
    if req.chunk_size == 0 || req.chunk_size > MAX_CHUNK_SIZE {
        return Err(ServeError::BadChunkSize(req.chunk_size));
    }
    let hash = |b: &Bytes| Hash::from_slice(b).map_err(|_| ServeError::BadHash(b.len()));
    let want = match &req.what {
        Some(blob_request::What::Blob(b)) => Want::Blob(hash(b)?),
        Some(blob_request::What::JobOutput(b)) => Want::Output(hash(b)?),
        None => return Err(ServeError::NoTarget),
    };
    Ok((want, req.index, req.chunk_size))
}

fn not_found() -> Vec<u8> {
    BlobResponse::default().encode_to_vec()
}

/// Answer one request from a peer. `Err` is a malformed or abusive request: the caller penalises
/// the peer and replies empty (an empty reply reads as not-found). `Ok` is an encoded
/// [`BlobResponse`], with `found = false` when the blob (or the job's output) is not here or the
/// index is past the end. `output_of` maps a job id to the hash of the output blob stored for it.
///
/// This reads a file: call it off the async executor (e.g. `spawn_blocking`).
pub fn serve(
    store: &BlobStore,
    output_of: impl Fn(&Hash) -> Option<Hash>,
    request: &[u8],
) -> Result<Vec<u8>, ServeError> {
    let (want, index, chunk_size) = decode_request(request)?;
    let hash = match want {
        Want::Blob(h) => h,
        Want::Output(job) => match output_of(&job) {
            Some(h) => h,
            None => return Ok(not_found()),
        },
    };
    match store.read_chunk(&hash, index, chunk_size) {
        Ok((total, data)) => Ok(BlobResponse {
            found: true,
            total,
            data: Bytes::from(data),
            hash: Bytes::copy_from_slice(hash.as_bytes()),
        }
        .encode_to_vec()),
        Err(BlobError::NotFound(_) | BlobError::ChunkOutOfRange { .. }) => Ok(not_found()),
        Err(e) => {
            tracing::warn!(target: "blobs.serve", hash = %hash.short(), error = %e, "cannot serve chunk");
            Ok(not_found())
        }
    }
}

/// A fetched, verified blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Its blake3 hash (for [`Want::Output`], the hash the serving peer announced).
    pub hash: Hash,
    pub bytes: Vec<u8>,
    /// Chunks it came in.
    pub chunks: u64,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Every peer answered that it does not hold the blob (or there were no peers).
    #[error("not found on any of {tried} peers")]
    NotFound { tried: usize },
    /// A peer announced a blob over the limit, and no peer delivered it.
    #[error("blob of {size} bytes is over the limit of {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("chunk size {0} is out of range")]
    BadChunkSize(u32),
    /// No peer delivered: some lacked the blob, some failed, some misbehaved.
    #[error(
        "fetch failed on all {tried} peers ({not_found} without it, {failed} failed, {bad} misbehaved): {last}"
    )]
    Exhausted {
        tried: usize,
        not_found: usize,
        failed: usize,
        bad: usize,
        last: String,
    },
}

/// Fetch a whole blob (or a job's output) from `peers`, trying them in order, in chunks of
/// [`DEFAULT_CHUNK_SIZE`] with up to [`MAX_IN_FLIGHT`] requests outstanding, into at most
/// `max_bytes` bytes (nothing larger is ever allocated, whatever a peer claims).
///
/// `request(peer, bytes)` sends an encoded request and returns the peer's raw answer; an `Err`
/// is a transport failure. The result is verified: for [`Want::Blob`] against the wanted hash,
/// for [`Want::Output`] against the hash its serving peer announced (which output is the right
/// one is the caller's check; a peer that announced another hash and failed midway proved
/// nothing, so it neither fixes the hash nor makes a later peer look like a liar). A peer that answers
/// not-found or fails is skipped; a peer that sends something inconsistent (undecodable, another
/// hash, another total, a chunk of the wrong length, bytes that do not hash right) is passed to
/// `on_bad` (once) and skipped.
pub async fn fetch<P, F, Fut>(
    want: &Want,
    max_bytes: u64,
    peers: &[P],
    request: F,
    on_bad: impl FnMut(&P),
) -> Result<Fetched, FetchError>
where
    P: Clone,
    F: Fn(P, Vec<u8>) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, String>>,
{
    fetch_with(want, max_bytes, DEFAULT_CHUNK_SIZE, peers, request, on_bad).await
}

/// [`fetch`] with an explicit chunk size (1..=[`MAX_CHUNK_SIZE`]).
pub async fn fetch_with<P, F, Fut>(
    want: &Want,
    max_bytes: u64,
    chunk_size: u32,
    peers: &[P],
    request: F,
    mut on_bad: impl FnMut(&P),
) -> Result<Fetched, FetchError>
where
    P: Clone,
    F: Fn(P, Vec<u8>) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, String>>,
{
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(FetchError::BadChunkSize(chunk_size));
    }
    // Only a blob wanted by hash has a hash to check a peer's announcement against. A job
    // output is whatever a peer delivers whole and self-consistent (the caller checks it
    // against the committed result): an announcement from a peer that did not complete proves
    // nothing, so it must not make a later peer that announces another blob look like a liar.
    let pinned = match want {
        Want::Blob(h) => Some(*h),
        Want::Output(_) => None,
    };
    let (mut not_found, mut failed, mut bad) = (0, 0, 0);
    let mut too_large = None;
    let mut last = String::new();
    for (i, peer) in peers.iter().enumerate() {
        let job = Attempt {
            want: *want,
            pinned,
            max_bytes,
            chunk_size,
        };
        let outcome = job.run(peer, &request).await;
        match outcome {
            Outcome::Done(fetched) => {
                tracing::debug!(target: "blobs.fetch", hash = %fetched.hash.short(),
                    size = fetched.bytes.len(), peer = i, "fetched blob");
                return Ok(fetched);
            }
            Outcome::NotFound => not_found += 1,
            Outcome::Failed(e) => {
                tracing::debug!(target: "blobs.fetch", peer = i, error = %e, "peer failed");
                failed += 1;
                last = e;
            }
            Outcome::TooLarge(size) => {
                too_large.get_or_insert(size);
            }
            Outcome::Bad(e) => {
                tracing::warn!(target: "blobs.fetch", peer = i, error = %e, "peer misbehaved");
                on_bad(peer);
                bad += 1;
                last = e;
            }
        }
    }
    if let Some(size) = too_large {
        return Err(FetchError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    if failed == 0 && bad == 0 {
        return Err(FetchError::NotFound { tried: peers.len() });
    }
    Err(FetchError::Exhausted {
        tried: peers.len(),
        not_found,
        failed,
        bad,
        last,
    })
}

/// How one attempt with one peer ended.
enum Outcome {
    Done(Fetched),
    NotFound,
    Failed(String),
    TooLarge(u64),
    Bad(String),
}

/// One peer's answer to one request.
enum Reply {
    Found(BlobResponse),
    NotFound,
    Failed(String),
    Bad(String),
}

/// One attempt to fetch the whole blob from one peer.
struct Attempt {
    want: Want,
    /// The hash the blob must have, if known.
    pinned: Option<Hash>,
    max_bytes: u64,
    chunk_size: u32,
}

impl Attempt {
    /// How the attempt ended.
    async fn run<P, F, Fut>(&self, peer: &P, request: &F) -> Outcome
    where
        P: Clone,
        F: Fn(P, Vec<u8>) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, String>>,
    {
        let first = match self.ask(peer, request, 0).await.1 {
            Reply::Found(r) => r,
            Reply::NotFound => return Outcome::NotFound,
            Reply::Failed(e) => return Outcome::Failed(e),
            Reply::Bad(e) => return Outcome::Bad(e),
        };
        let hash = match Hash::from_slice(&first.hash) {
            Ok(h) => h,
            Err(_) => {
                let e = format!("announced a hash of {} bytes", first.hash.len());
                return Outcome::Bad(e);
            }
        };
        if let Some(p) = self.pinned.filter(|p| *p != hash) {
            let e = format!("announced blob {} instead of {}", hash.short(), p.short());
            return Outcome::Bad(e);
        }
        let total = first.total;
        if total > self.max_bytes {
            return Outcome::TooLarge(total);
        }
        let mut asm = match BlobAssembler::new(hash, total, self.chunk_size, self.max_bytes) {
            Ok(a) => a,
            Err(AssemblerError::TooLarge { size, .. }) => return Outcome::TooLarge(size),
            Err(e) => return Outcome::Bad(e.to_string()),
        };
        if let Err(e) = asm.accept(0, &first.data, total) {
            return Outcome::Bad(e.to_string());
        }
        drop(first);
        let count = chunk_count(total, self.chunk_size);
        let mut next = 1;
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < MAX_IN_FLIGHT && next < count {
                in_flight.push(self.ask(peer, request, next));
                next += 1;
            }
            let Some((index, reply)) = in_flight.next().await else {
                break;
            };
            let resp = match reply {
                Reply::Found(r) => r,
                Reply::NotFound => {
                    let e = format!("chunk {index} not found mid-transfer");
                    return Outcome::Failed(e);
                }
                Reply::Failed(e) => return Outcome::Failed(e),
                Reply::Bad(e) => return Outcome::Bad(e),
            };
            if resp.hash != hash.as_bytes()[..] {
                let e = format!("chunk {index} announces another blob");
                return Outcome::Bad(e);
            }
            // In range: index < count, so index * chunk_size <= total.
            let offset = index * u64::from(self.chunk_size);
            if let Err(e) = asm.accept(offset, &resp.data, resp.total) {
                return Outcome::Bad(e.to_string());
            }
        }
        match asm.finish() {
            Ok(bytes) => Outcome::Done(Fetched {
                hash,
                bytes,
                chunks: count,
            }),
            Err(e) => Outcome::Bad(e.to_string()),
        }
    }

    /// Send the request for chunk `index` and classify the answer.
    fn ask<P, F, Fut>(
        &self,
        peer: &P,
        request: &F,
        index: u64,
    ) -> impl Future<Output = (u64, Reply)>
    where
        P: Clone,
        F: Fn(P, Vec<u8>) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, String>>,
    {
        let fut = request(
            peer.clone(),
            encode_request(&self.want, index, self.chunk_size),
        );
        let cap = self.chunk_size as usize + RESPONSE_OVERHEAD;
        async move {
            let reply = match fut.await {
                Err(e) => Reply::Failed(e),
                Ok(bytes) if bytes.len() > cap => Reply::Bad(format!(
                    "response of {} bytes is over the limit",
                    bytes.len()
                )),
                Ok(bytes) => match BlobResponse::decode(bytes.as_slice()) {
                    Err(e) => Reply::Bad(format!("undecodable response: {e}")),
                    Ok(r) if !r.found => Reply::NotFound,
                    Ok(r) => Reply::Found(r),
                },
            };
            (index, reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use futures::executor::block_on;

    use super::*;
    use crate::BlobConfig;

    /// A future that is pending once, so that requests overlap.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Behave {
        Honest,
        Unreachable,
        /// Flips a bit in every chunk.
        FlipBytes,
        /// Claims another total from chunk 1 on.
        WrongTotal,
        /// Announces this hash on every chunk.
        OtherHash(Hash),
        /// Announces another hash from chunk 1 on.
        OtherHashLater,
        /// Sends bytes that are no response.
        Garbage,
        /// Serves chunk 0, then fails.
        FailAfterFirst,
        /// Serves this other blob under the hash asked for.
        Impostor(Hash),
        /// Claims the blob is u64::MAX bytes.
        ClaimHuge,
        /// Answers with an honest response padded past any sane size.
        Oversize,
    }

    struct Node {
        _dir: tempfile::TempDir,
        store: BlobStore,
        outputs: BTreeMap<Hash, Hash>,
        behave: Behave,
    }

    fn node(behave: Behave, blobs: &[&[u8]], outputs: &[(Hash, Hash)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), BlobConfig::default()).unwrap();
        for b in blobs {
            store.put(b).unwrap();
        }
        Node {
            _dir: dir,
            store,
            outputs: outputs.iter().copied().collect(),
            behave,
        }
    }

    #[derive(Default)]
    struct Net {
        nodes: Vec<Node>,
        requests: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl Net {
        fn new(nodes: Vec<Node>) -> Net {
            Net {
                nodes,
                ..Net::default()
            }
        }

        fn answer(&self, peer: usize, req: &[u8]) -> Result<Vec<u8>, String> {
            let node = &self.nodes[peer];
            let (_, index, _) = decode_request(req).unwrap();
            match node.behave {
                Behave::Unreachable => return Err("unreachable".into()),
                Behave::Garbage => return Ok(vec![0xff; 10]),
                Behave::FailAfterFirst if index > 0 => return Err("connection lost".into()),
                _ => {}
            }
            let output_of = |j: &Hash| node.outputs.get(j).copied();
            if let Behave::Impostor(instead) = node.behave {
                let (want, index, chunk) = decode_request(req).unwrap();
                let claimed = match want {
                    Want::Blob(h) => h,
                    Want::Output(j) => output_of(&j).unwrap(),
                };
                let bytes = serve(
                    &node.store,
                    output_of,
                    &encode_request(&Want::Blob(instead), index, chunk),
                );
                let mut r = BlobResponse::decode(bytes.unwrap().as_slice()).unwrap();
                r.hash = Bytes::copy_from_slice(claimed.as_bytes());
                return Ok(r.encode_to_vec());
            }
            let honest = serve(&node.store, output_of, req).unwrap();
            let mut r = BlobResponse::decode(honest.as_slice()).unwrap();
            match node.behave {
                Behave::FlipBytes if !r.data.is_empty() => {
                    let mut d = r.data.to_vec();
                    d[0] ^= 1;
                    r.data = d.into();
                }
                Behave::WrongTotal if index > 0 => r.total += 1,
                Behave::OtherHash(h) => r.hash = Bytes::copy_from_slice(h.as_bytes()),
                Behave::OtherHashLater if index > 0 => r.hash = Bytes::from(vec![9; 32]),
                Behave::ClaimHuge => r.total = u64::MAX,
                Behave::Oversize => {
                    let mut bytes = r.encode_to_vec();
                    bytes.resize(bytes.len() + MAX_RESPONSE_BYTES, 0);
                    return Ok(bytes);
                }
                _ => {}
            }
            Ok(r.encode_to_vec())
        }

        /// Fetch through the fake network; returns the result and the peers reported bad.
        fn fetch(
            &self,
            want: &Want,
            max_bytes: u64,
            chunk_size: u32,
            peers: &[usize],
        ) -> (Result<Fetched, FetchError>, Vec<usize>) {
            let mut bad = Vec::new();
            let result = block_on(fetch_with(
                want,
                max_bytes,
                chunk_size,
                peers,
                |p, req| {
                    self.requests.fetch_add(1, Ordering::SeqCst);
                    let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                    let reply = self.answer(p, &req);
                    async move {
                        YieldOnce(false).await;
                        self.in_flight.fetch_sub(1, Ordering::SeqCst);
                        reply
                    }
                },
                |p: &usize| bad.push(*p),
            ));
            (result, bad)
        }
    }

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 131 % 251) as u8).collect()
    }

    const MB: u64 = 1 << 20;

    #[test]
    fn request_encoding_is_pinned() {
        let req = encode_request(&Want::Blob(Hash([7; 32])), 3, 256);
        let mut expected = vec![0x0a, 0x20];
        expected.extend([7; 32]);
        expected.extend([0x18, 0x03, 0x20, 0x80, 0x02]);
        assert_eq!(req, expected);
        let out = encode_request(&Want::Output(Hash([1; 32])), 0, 1);
        assert_eq!(&out[..2], &[0x12, 0x20]);
        assert_eq!(
            decode_request(&out).unwrap(),
            (Want::Output(Hash([1; 32])), 0, 1)
        );
    }

    #[test]
    fn largest_response_fits_the_transport() {
        let r = BlobResponse {
            found: true,
            total: u64::MAX,
            data: vec![0xab; MAX_CHUNK_SIZE as usize].into(),
            hash: vec![0xcd; 32].into(),
        };
        assert!(r.encoded_len() <= MAX_RESPONSE_BYTES);
        assert!(r.encoded_len() <= MAX_CHUNK_SIZE as usize + RESPONSE_OVERHEAD);
    }

    #[test]
    fn serve_rejects_malformed_requests() {
        let n = node(Behave::Honest, &[b"x"], &[]);
        let serve = |req: &[u8]| serve(&n.store, |_| None, req);
        assert!(matches!(
            serve(&[0xff, 0xff, 0xff]),
            Err(ServeError::Decode(_))
        ));
        assert_eq!(
            serve(&vec![0; MAX_REQUEST_BYTES + 1]),
            Err(ServeError::TooLarge(MAX_REQUEST_BYTES + 1))
        );
        let short = BlobRequest {
            what: Some(blob_request::What::Blob(vec![1; 31].into())),
            index: 0,
            chunk_size: 64,
        };
        assert_eq!(serve(&short.encode_to_vec()), Err(ServeError::BadHash(31)));
        let job = BlobRequest {
            what: Some(blob_request::What::JobOutput(vec![1; 33].into())),
            index: 0,
            chunk_size: 64,
        };
        assert_eq!(serve(&job.encode_to_vec()), Err(ServeError::BadHash(33)));
        let none = BlobRequest {
            what: None,
            index: 0,
            chunk_size: 64,
        };
        assert_eq!(serve(&none.encode_to_vec()), Err(ServeError::NoTarget));
        // An empty request decodes to all defaults: chunk size 0.
        assert_eq!(serve(&[]), Err(ServeError::BadChunkSize(0)));
        let want = Want::Blob(Hash::of(b"x"));
        assert_eq!(
            serve(&encode_request(&want, 0, 0)),
            Err(ServeError::BadChunkSize(0))
        );
        assert_eq!(
            serve(&encode_request(&want, 0, MAX_CHUNK_SIZE + 1)),
            Err(ServeError::BadChunkSize(MAX_CHUNK_SIZE + 1))
        );
        assert!(serve(&encode_request(&want, 0, MAX_CHUNK_SIZE)).is_ok());
    }

    #[test]
    fn serve_answers_not_found() {
        let job = Hash::of(b"job");
        let n = node(Behave::Honest, &[b"abc"], &[(job, Hash::of(b"gone"))]);
        let ask = |want: Want, index: u64| {
            let bytes = serve(
                &n.store,
                |j| n.outputs.get(j).copied(),
                &encode_request(&want, index, 2),
            )
            .unwrap();
            BlobResponse::decode(bytes.as_slice()).unwrap()
        };
        let r = ask(Want::Blob(Hash::of(b"abc")), 1);
        assert!(r.found);
        assert_eq!((r.total, &r.data[..]), (3, &b"c"[..]));
        assert_eq!(&r.hash[..], Hash::of(b"abc").as_bytes());
        assert_eq!(
            ask(Want::Blob(Hash::of(b"abc")), 2),
            BlobResponse::default()
        );
        assert_eq!(ask(Want::Blob(Hash::of(b"zz")), 0), BlobResponse::default());
        assert_eq!(
            ask(Want::Output(Hash::of(b"other")), 0),
            BlobResponse::default()
        );
        // The job is known but its output blob is not stored.
        assert_eq!(ask(Want::Output(job), 0), BlobResponse::default());
        // An empty reply (what a refused request gets) reads as not found.
        assert!(!BlobResponse::decode(&[][..]).unwrap().found);
    }

    #[test]
    fn small_blob_with_default_chunks() {
        let net = Net::new(vec![node(Behave::Honest, &[b"hello"], &[])]);
        let want = Want::Blob(Hash::of(b"hello"));
        let mut bad = 0;
        let got = block_on(fetch(
            &want,
            MB,
            &[0usize],
            |p, req| std::future::ready(net.answer(p, &req)),
            |_| bad += 1,
        ))
        .unwrap();
        assert_eq!(got.bytes, b"hello");
        assert_eq!(got.hash, Hash::of(b"hello"));
        assert_eq!(got.chunks, 1);
        assert_eq!(bad, 0);
    }

    #[test]
    fn empty_blob() {
        let net = Net::new(vec![node(Behave::Honest, &[b""], &[])]);
        let (got, bad) = net.fetch(&Want::Blob(Hash::of(b"")), MB, 64, &[0]);
        let got = got.unwrap();
        assert!(got.bytes.is_empty());
        assert_eq!(got.chunks, 1);
        assert!(bad.is_empty());
        // Even with no room at all.
        let (got, _) = net.fetch(&Want::Blob(Hash::of(b"")), 0, 64, &[0]);
        assert!(got.unwrap().bytes.is_empty());
    }

    #[test]
    fn multi_chunk_blob_with_requests_in_flight() {
        let data = blob(10_000);
        let net = Net::new(vec![node(Behave::Honest, &[&data], &[])]);
        let (got, bad) = net.fetch(&Want::Blob(Hash::of(&data)), MB, 256, &[0]);
        let got = got.unwrap();
        assert_eq!(got.bytes, data);
        assert_eq!(got.chunks, 40);
        assert!(bad.is_empty());
        assert_eq!(net.requests.load(Ordering::SeqCst), 40);
        let max = net.max_in_flight.load(Ordering::SeqCst);
        assert!(max > 1 && max <= MAX_IN_FLIGHT, "max in flight {max}");
        assert_eq!(net.in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn job_output_lookup() {
        let data = blob(1000);
        let job = Hash::of(b"job 1");
        let net = Net::new(vec![
            node(Behave::Honest, &[], &[]),
            node(Behave::Honest, &[&data], &[(job, Hash::of(&data))]),
        ]);
        let (got, bad) = net.fetch(&Want::Output(job), MB, 300, &[0, 1]);
        let got = got.unwrap();
        assert_eq!(got.hash, Hash::of(&data));
        assert_eq!(got.bytes, data);
        assert_eq!(got.chunks, 4);
        assert!(bad.is_empty());
        let (got, _) = net.fetch(&Want::Output(Hash::of(b"job 2")), MB, 300, &[0, 1]);
        assert_eq!(got, Err(FetchError::NotFound { tried: 2 }));
    }

    #[test]
    fn missing_first_peer_then_second_serves() {
        let data = blob(700);
        let net = Net::new(vec![
            node(Behave::Honest, &[], &[]),
            node(Behave::Unreachable, &[&data], &[]),
            node(Behave::Honest, &[&data], &[]),
        ]);
        let (got, bad) = net.fetch(&Want::Blob(Hash::of(&data)), MB, 100, &[0, 1, 2]);
        assert_eq!(got.unwrap().bytes, data);
        assert!(bad.is_empty());
    }

    #[test]
    fn lying_peers_are_reported_and_skipped() {
        let data = blob(1000);
        let other = blob(999);
        let mut twin = data.clone();
        twin[999] ^= 1;
        let liars = [
            Behave::FlipBytes,
            Behave::WrongTotal,
            Behave::OtherHash(Hash::of(&other)),
            Behave::Impostor(Hash::of(&other)),
            Behave::Impostor(Hash::of(&twin)),
            Behave::OtherHashLater,
            Behave::Garbage,
            Behave::Oversize,
        ];
        for liar in liars {
            for want in [Want::Blob(Hash::of(&data)), Want::Output(Hash::of(b"job"))] {
                let job = [(Hash::of(b"job"), Hash::of(&data))];
                let net = Net::new(vec![
                    node(liar, &[&data, &other, &twin], &job),
                    node(Behave::Honest, &[&data], &job),
                ]);
                let (got, bad) = net.fetch(&want, MB, 128, &[0, 1]);
                assert_eq!(got.unwrap().bytes, data, "{liar:?} {want:?}");
                assert_eq!(bad, vec![0], "{liar:?} {want:?}");
                // Alone, the liar makes the fetch fail.
                let (got, bad) = net.fetch(&want, MB, 128, &[0]);
                assert!(
                    matches!(
                        got,
                        Err(FetchError::Exhausted {
                            tried: 1,
                            bad: 1,
                            ..
                        })
                    ),
                    "{liar:?} {want:?}: {got:?}"
                );
                assert_eq!(bad, vec![0]);
            }
        }
    }

    #[test]
    fn an_output_is_taken_from_the_first_peer_that_delivers_it() {
        let real = blob(1000);
        let fake = blob(900);
        let job = Hash::of(b"job");
        // Peer 0 announces `real` and drops; peer 1 delivers another, self-consistent blob for
        // the job. Nobody proved peer 1 wrong: its blob is returned (the caller checks it
        // against the committed result) and nobody is reported.
        let net = Net::new(vec![
            node(Behave::FailAfterFirst, &[&real], &[(job, Hash::of(&real))]),
            node(Behave::Honest, &[&fake], &[(job, Hash::of(&fake))]),
            node(Behave::Honest, &[&real], &[(job, Hash::of(&real))]),
        ]);
        let (got, bad) = net.fetch(&Want::Output(job), MB, 128, &[0, 1, 2]);
        assert_eq!(got.unwrap().bytes, fake);
        assert_eq!(bad, Vec::<usize>::new());
        // The reverse, found by fuzzing: a liar that announces a made-up hash with a first
        // chunk and then drops once got the honest peer after it reported, and the fetch failed.
        let net = Net::new(vec![
            node(Behave::FailAfterFirst, &[&fake], &[(job, Hash::of(&fake))]),
            node(Behave::Honest, &[&real], &[(job, Hash::of(&real))]),
        ]);
        let (got, bad) = net.fetch(&Want::Output(job), MB, 128, &[0, 1]);
        assert_eq!(got.unwrap().bytes, real);
        assert_eq!(bad, Vec::<usize>::new());
        // A peer caught lying is reported, and the next peer serves.
        let net = Net::new(vec![
            node(Behave::FlipBytes, &[&fake], &[(job, Hash::of(&fake))]),
            node(Behave::Honest, &[&real], &[(job, Hash::of(&real))]),
        ]);
        let (got, bad) = net.fetch(&Want::Output(job), MB, 128, &[0, 1]);
        assert_eq!(got.unwrap().hash, Hash::of(&real));
        assert_eq!(bad, vec![0]);
    }

    #[test]
    fn nothing_anywhere() {
        let net = Net::new(vec![
            node(Behave::Honest, &[b"a"], &[]),
            node(Behave::Honest, &[], &[]),
            node(Behave::Unreachable, &[], &[]),
        ]);
        let want = Want::Blob(Hash::of(b"b"));
        let (got, bad) = net.fetch(&want, MB, 64, &[0, 1]);
        assert_eq!(got, Err(FetchError::NotFound { tried: 2 }));
        assert_eq!(got.unwrap_err().to_string(), "not found on any of 2 peers");
        assert!(bad.is_empty());
        let (got, _) = net.fetch(&want, MB, 64, &[]);
        assert_eq!(got, Err(FetchError::NotFound { tried: 0 }));
        let (got, bad) = net.fetch(&want, MB, 64, &[0, 2]);
        assert_eq!(
            got,
            Err(FetchError::Exhausted {
                tried: 2,
                not_found: 1,
                failed: 1,
                bad: 0,
                last: "unreachable".into()
            })
        );
        assert!(bad.is_empty());
    }

    #[test]
    fn too_large() {
        let data = blob(5000);
        let want = Want::Blob(Hash::of(&data));
        let net = Net::new(vec![
            node(Behave::Honest, &[&data], &[]),
            node(Behave::ClaimHuge, &[&data], &[]),
        ]);
        let (got, bad) = net.fetch(&want, 4999, 1024, &[0]);
        assert_eq!(
            got,
            Err(FetchError::TooLarge {
                size: 5000,
                max: 4999
            })
        );
        assert!(bad.is_empty());
        // Only the first chunk was asked for.
        assert_eq!(net.requests.load(Ordering::SeqCst), 1);
        // A peer claiming an absurd size is not believed enough to allocate, nor enough to stop.
        let (got, _) = net.fetch(&want, MB, 1024, &[1]);
        assert_eq!(
            got,
            Err(FetchError::TooLarge {
                size: u64::MAX,
                max: MB
            })
        );
        let (got, bad) = net.fetch(&want, MB, 1024, &[1, 0]);
        assert_eq!(got.unwrap().bytes, data);
        assert!(bad.is_empty());
    }

    #[test]
    fn chunk_size_is_checked() {
        let net = Net::new(vec![node(Behave::Honest, &[b"x"], &[])]);
        let want = Want::Blob(Hash::of(b"x"));
        assert_eq!(
            net.fetch(&want, MB, 0, &[0]).0,
            Err(FetchError::BadChunkSize(0))
        );
        assert_eq!(
            net.fetch(&want, MB, MAX_CHUNK_SIZE + 1, &[0]).0,
            Err(FetchError::BadChunkSize(MAX_CHUNK_SIZE + 1))
        );
        assert_eq!(net.requests.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn fetch_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let peers = [7u32];
        let fut = fetch(
            &Want::Blob(Hash::ZERO),
            MB,
            &peers,
            |_p: u32, _req: Vec<u8>| async { Err::<Vec<u8>, String>("offline".into()) },
            |_: &u32| {},
        );
        assert_send(&fut);
        assert_eq!(
            block_on(fut),
            Err(FetchError::Exhausted {
                tried: 1,
                not_found: 0,
                failed: 1,
                bad: 0,
                last: "offline".into()
            })
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        #[test]
        fn random_sizes_round_trip(
            len in 0usize..4000,
            chunk in 1u32..700,
            missing in 0usize..3,
            seed in proptest::num::u8::ANY,
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let mut nodes: Vec<Node> = (0..missing).map(|_| node(Behave::Honest, &[], &[])).collect();
            nodes.push(node(Behave::Honest, &[&data], &[]));
            let net = Net::new(nodes);
            let peers: Vec<usize> = (0..=missing).collect();
            let (got, bad) = net.fetch(&Want::Blob(Hash::of(&data)), len as u64, chunk, &peers);
            let got = got.unwrap();
            proptest::prop_assert_eq!(got.chunks, chunk_count(len as u64, chunk));
            proptest::prop_assert_eq!(got.bytes, data);
            proptest::prop_assert!(bad.is_empty());
        }
    }
}
