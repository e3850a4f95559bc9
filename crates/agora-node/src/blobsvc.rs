//! The node's blob service: the content-addressed store under `HOME/blobs`, the index of job
//! outputs this node holds, and moving both to and from peers over the `Blob` request-response
//! protocol (`agora_blobs::serve` / `agora_blobs::fetch`).
//!
//! A job's output travels as one blob, `exit code (i32 LE) ‖ stdout`: with the outcome and fuel
//! committed on chain that is everything `agora_market::result_hash` covers, so whoever fetches
//! it — the API node, then the CLI — can check it against the job's committed result hash
//! without trusting the peer that served it.

use std::collections::BTreeSet;
use std::sync::Arc;

use agora_blobs::{decode_output, BlobStore, Want};
use agora_market::Market;
use agora_net::{NetworkHandle, PeerId, Penalty, Protocol};
use agora_store::{Store, Tree};
use agora_types::{Address, Hash};
use anyhow::Context;

use crate::app::SharedMarket;

/// Store tree mapping a job id to the hash of the output blob this node holds for it.
pub const OUTPUTS_TREE: &str = "job_outputs";

/// Blob requests served at once; more wait (each reads at most one chunk from disk).
const MAX_SERVING: usize = 16;

/// The blob store, the output index and the network side of both.
pub struct BlobService {
    pub store: Arc<BlobStore>,
    outputs: Tree,
    serving: Arc<tokio::sync::Semaphore>,
}

/// Check an output blob against a job's committed result: some committed slot with the job's
/// result hash must hash to it with this exit code and stdout. Returns the exit code and stdout.
pub fn verify_output<'a>(
    job: &agora_market::JobView,
    bytes: &'a [u8],
) -> Result<(i32, &'a [u8]), String> {
    let Some(expected) = job.result_hash else {
        return Err(format!(
            "job {} has no verified result (state {:?})",
            job.id, job.state
        ));
    };
    let (code, stdout) = decode_output(bytes).ok_or("output shorter than an exit code")?;
    let ok = job
        .slots
        .iter()
        .any(|s| match (s.result_hash, s.outcome, s.fuel_used) {
            (Some(h), Some(outcome), Some(fuel)) => {
                h == expected && agora_market::result_hash(outcome, code, fuel, stdout) == expected
            }
            _ => false,
        });
    if ok {
        Ok((code, stdout))
    } else {
        Err(format!(
            "output of job {} does not match its committed result hash {}",
            job.id, expected
        ))
    }
}

impl BlobService {
    pub fn open(store: Arc<BlobStore>, db: &Store) -> anyhow::Result<BlobService> {
        Ok(BlobService {
            store,
            outputs: db.tree(OUTPUTS_TREE)?,
            serving: Arc::new(tokio::sync::Semaphore::new(MAX_SERVING)),
        })
    }

    /// The output blob hash recorded for `job`.
    pub fn output_hash(&self, job: &Hash) -> Option<Hash> {
        let v = self.outputs.get(job.as_bytes()).ok()??;
        let bytes: [u8; 32] = v.as_ref().try_into().ok()?;
        Some(Hash(bytes))
    }

    /// Store an output blob and index it under `job`.
    pub fn record_output(&self, job: &Hash, output: &[u8]) -> anyhow::Result<Hash> {
        let hash = self.store.put(output).context("storing a job output")?;
        self.outputs
            .insert(job.as_bytes(), hash.as_bytes())
            .context("indexing a job output")?;
        Ok(hash)
    }

    /// The output blob this node holds for `job`.
    pub fn output(&self, job: &Hash) -> anyhow::Result<Option<Vec<u8>>> {
        match self.output_hash(job) {
            Some(h) => Ok(self.store.get(&h)?),
            None => Ok(None),
        }
    }

    /// What garbage collection keeps: the blobs of open jobs, and anything younger than the
    /// job retention.
    fn keep(&self, m: &Market) -> (BTreeSet<Hash>, std::time::Duration) {
        let mut pinned = BTreeSet::new();
        for id in m.open_jobs() {
            if let Some(job) = m.job(id) {
                pinned.insert(job.spec.module_hash);
                pinned.insert(job.spec.input_hash);
                if let Some(h) = self.output_hash(id) {
                    pinned.insert(h);
                }
            }
        }
        let retention = std::time::Duration::from_millis(m.params().job_retention_ms);
        (pinned, retention)
    }

    /// Remove the blobs untouched for `retention` except the `pinned` ones, and the output
    /// index entries of what was removed. Every node runs it ([`BlobService::gc_loop`]),
    /// agent or not: uploads reach any node's API.
    fn collect(
        &self,
        pinned: &BTreeSet<Hash>,
        retention: std::time::Duration,
        now: agora_types::Timestamp,
    ) -> anyhow::Result<agora_blobs::GcReport> {
        let report = self.store.gc(now, retention, pinned)?;
        if !report.removed.is_empty() {
            let removed: BTreeSet<Hash> = report.removed.iter().copied().collect();
            for kv in self.outputs.iter() {
                let (job, blob) = kv?;
                let gone = <[u8; 32]>::try_from(blob.as_ref())
                    .map(|b| removed.contains(&Hash(b)))
                    .unwrap_or(true);
                if gone {
                    self.outputs.remove(job)?;
                }
            }
        }
        Ok(report)
    }

    /// Collect garbage every `every`, holding the market's lock only to list what to keep.
    /// Ends only with an error (a collection panicked).
    pub async fn gc_loop(
        self: Arc<Self>,
        market: SharedMarket,
        every: std::time::Duration,
    ) -> Result<(), String> {
        let svc = self;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (gc, market) = (svc.clone(), market.clone());
            let done = tokio::task::spawn_blocking(move || {
                let now = agora_types::Timestamp(crate::chain::now_ms());
                let (pinned, retention) = {
                    // Never collect by a market a dying task left half-changed.
                    let m = market
                        .read()
                        .map_err(|_| anyhow::anyhow!("the market lock is poisoned"))?;
                    gc.keep(&m)
                };
                gc.collect(&pinned, retention, now)
            })
            .await;
            match done {
                Ok(Ok(r)) => tracing::info!(
                    target: "node.blobs",
                    removed = r.removed.len(),
                    freed_bytes = r.freed_bytes,
                    kept = r.kept,
                    used_bytes = svc.store.used_bytes(),
                    "blob garbage collection"
                ),
                Ok(Err(e)) => tracing::warn!(
                    target: "node.blobs",
                    error = %format!("{e:#}"),
                    "blob garbage collection failed"
                ),
                Err(join) => return Err(format!("blob garbage collection failed: {join}")),
            }
        }
    }

    /// Answer one peer request on the blocking pool. A malformed request costs the peer
    /// penalty points and gets an empty reply.
    pub fn spawn_serve(
        self: &Arc<Self>,
        net: NetworkHandle,
        from: PeerId,
        data: bytes::Bytes,
        reply: tokio::sync::oneshot::Sender<bytes::Bytes>,
    ) {
        let svc = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = svc.serving.clone().acquire_owned().await else {
                return;
            };
            let inner = svc.clone();
            let served = tokio::task::spawn_blocking(move || {
                agora_blobs::serve(&inner.store, |job| inner.output_hash(job), &data)
            })
            .await;
            match served {
                Ok(Ok(bytes)) => {
                    let _ = reply.send(bytes.into());
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "node.blobs", %from, error = %e, "malformed blob request");
                    let _ = reply.send(bytes::Bytes::new());
                    let _ = net.report(from, Penalty::Malformed).await;
                }
                Err(e) => {
                    tracing::warn!(target: "node.blobs", error = %e, "blob serving task failed");
                }
            }
        });
    }

    /// A blob by hash: from the local store, else fetched from peers (the `prefer` addresses
    /// first, then every other connected peer), verified and stored.
    pub async fn blob(
        &self,
        net: &NetworkHandle,
        hash: Hash,
        max_bytes: u64,
        prefer: &[Address],
    ) -> anyhow::Result<Vec<u8>> {
        if let Some(bytes) = self.store.get(&hash)? {
            return Ok(bytes);
        }
        let fetched = self
            .fetch(net, &Want::Blob(hash), max_bytes, prefer)
            .await
            .with_context(|| format!("fetching blob {}", hash.short()))?;
        self.store.put_verified(hash, &fetched)?;
        Ok(fetched)
    }

    /// A job's output from the peers that committed it, each asked on its own so that one
    /// serving bytes that do not match the committed result (`check`) is identified and
    /// penalised; then from any connected peer. Not stored here.
    pub async fn fetch_output(
        &self,
        net: &NetworkHandle,
        job: Hash,
        max_bytes: u64,
        holders: &[Address],
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> anyhow::Result<Vec<u8>> {
        let want = Want::Output(job);
        let connected = candidates(net, &[]).await?;
        let mut last = String::from("no connected peer holds it");
        for holder in holders {
            let Some(peer) = agora_net::peer_id_for(holder) else {
                continue;
            };
            if !connected.contains(&peer) {
                continue;
            }
            match self.fetch_from(net, &want, max_bytes, &[peer]).await {
                Ok(bytes) => match check(&bytes) {
                    Ok(()) => return Ok(bytes),
                    Err(e) => {
                        tracing::warn!(target: "node.blobs", %peer, job = %job.short(), error = %e, "peer served a wrong job output");
                        let _ = net.report(peer, Penalty::Invalid).await;
                        last = e;
                    }
                },
                Err(e) => last = format!("{e:#}"),
            }
        }
        let others: Vec<PeerId> = connected
            .into_iter()
            .filter(|p| {
                !holders
                    .iter()
                    .any(|h| agora_net::peer_id_for(h) == Some(*p))
            })
            .collect();
        if !others.is_empty() {
            if let Ok(bytes) = self.fetch_from(net, &want, max_bytes, &others).await {
                if check(&bytes).is_ok() {
                    return Ok(bytes);
                }
            }
        }
        anyhow::bail!("no peer served the output of job {}: {last}", job.short())
    }

    async fn fetch(
        &self,
        net: &NetworkHandle,
        want: &Want,
        max_bytes: u64,
        prefer: &[Address],
    ) -> anyhow::Result<Vec<u8>> {
        let peers = candidates(net, prefer).await?;
        self.fetch_from(net, want, max_bytes, &peers).await
    }

    async fn fetch_from(
        &self,
        net: &NetworkHandle,
        want: &Want,
        max_bytes: u64,
        peers: &[PeerId],
    ) -> anyhow::Result<Vec<u8>> {
        if peers.is_empty() {
            anyhow::bail!("no connected peer to ask");
        }
        let mut bad = Vec::new();
        let r = agora_blobs::fetch(
            want,
            max_bytes,
            peers,
            |peer: PeerId, req: Vec<u8>| {
                let net = net.clone();
                async move {
                    // A paused or overloaded peer must cost a short wait, not the transport's
                    // whole request timeout, before the next peer is asked.
                    net.request_within(peer, Protocol::Blob, req.into(), BLOB_CHUNK_TIMEOUT)
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| e.to_string())
                }
            },
            |p: &PeerId| bad.push(*p),
        )
        .await;
        for p in bad {
            tracing::warn!(target: "node.blobs", peer = %p, "peer served inconsistent blob data");
            let _ = net.report(p, Penalty::Invalid).await;
        }
        Ok(r?.bytes)
    }
}

/// How long one chunk request (at most 256 KiB) may take before the fetch moves on to the next
/// peer. Serving a chunk is one disk read; a peer that needs longer is treated as failed.
const BLOB_CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Connected peers to ask, the preferred ones first.
async fn candidates(net: &NetworkHandle, prefer: &[Address]) -> anyhow::Result<Vec<PeerId>> {
    let connected: Vec<agora_net::PeerInfo> = net
        .peers()
        .await
        .context("listing peers")?
        .into_iter()
        .filter(|p| p.confirmed)
        .collect();
    let mut out: Vec<PeerId> = prefer
        .iter()
        .filter_map(agora_net::peer_id_for)
        .filter(|p| connected.iter().any(|c| c.peer == *p))
        .collect();
    for c in connected {
        if !out.contains(&c.peer) {
            out.push(c.peer);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_blobs::encode_output;

    #[test]
    fn outputs_are_indexed_by_job() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(
            BlobStore::open(dir.path().join("blobs"), agora_blobs::BlobConfig::default()).unwrap(),
        );
        let db = Store::temporary().unwrap();
        let svc = BlobService::open(blobs, &db).unwrap();
        let job = Hash([7; 32]);
        assert!(svc.output(&job).unwrap().is_none());
        let out = encode_output(0, b"42\n");
        let h = svc.record_output(&job, &out).unwrap();
        assert_eq!(svc.output_hash(&job), Some(h));
        assert_eq!(svc.output(&job).unwrap().unwrap(), out);
    }

    #[test]
    fn garbage_collection_removes_old_blobs_and_their_output_index() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(
            BlobStore::open(dir.path().join("blobs"), agora_blobs::BlobConfig::default()).unwrap(),
        );
        let db = Store::temporary().unwrap();
        let svc = BlobService::open(blobs, &db).unwrap();
        let key = agora_crypto::Keypair::for_test(1);
        let market = Market::new(&crate::genesis::dev_genesis(&key)).unwrap();
        let job = Hash([7; 32]);
        let h = svc.record_output(&job, &encode_output(0, b"42\n")).unwrap();
        let upload = svc.store.put(b"an upload no job uses").unwrap();
        let now = agora_types::Timestamp(crate::chain::now_ms());
        // Young blobs stay.
        let (pinned, retention) = svc.keep(&market);
        let r = svc.collect(&pinned, retention, now).unwrap();
        assert!(r.removed.is_empty(), "{r:?}");
        // Past the job retention, both go, and the index no longer names the output.
        let later = agora_types::Timestamp(now.0 + market.params().job_retention_ms + 1);
        let r = svc.collect(&pinned, retention, later).unwrap();
        assert_eq!(r.removed.len(), 2, "{r:?}");
        assert!(!svc.store.contains(&h) && !svc.store.contains(&upload));
        assert_eq!(svc.output_hash(&job), None);
        assert_eq!(svc.store.used_bytes(), 0);
    }
}
