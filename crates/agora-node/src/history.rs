//! The chain's history: recent heights in the store, older ones in the freezer.
//!
//! Every committed height leaves a block, its certificate, the app hash after it and the
//! block's result. Kept in sled for ever, they made the node's memory grow with height: sled's
//! page table and segment bookkeeping hold a little for every page of data (heaptrack traced
//! the growth to them, not to a structure of ours). So heights more than `store.hot_heights`
//! behind the tip are moved, in the background, into an append-only [`Freezer`] next to the
//! store, and deleted from sled once the freezer has synced them. sled then holds a bounded
//! window, and a frozen height costs no memory at all.
//!
//! Readers do not see the move: [`History::get`] looks in sled first and in the freezer after
//! (an item is appended to the freezer before it leaves sled, so one of the two always has
//! it), and [`HistoryStore`] is the consensus replica's [`KvStore`] with that fallback, so
//! sync responses and `/v1/blocks/{h}` serve frozen heights like any other.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agora_consensus::store::trees;
use agora_consensus::{KvStore, StorageError};
use agora_store::{Batch, Freezer, Store};
use anyhow::Context;

use crate::app::RESULTS_TREE;

/// The per-height trees moved to the freezer, in its table order.
pub const FROZEN_TREES: [&str; 4] = [trees::BLOCKS, trees::CERTS, trees::APP_HASH, RESULTS_TREE];

/// Largest item the freezer takes: the consensus message bound (a block fits in one).
const MAX_ITEM_BYTES: u64 = agora_consensus::wire::MAX_MESSAGE_BYTES as u64;

/// Heights moved per freezer sync.
const FREEZE_BATCH: u64 = 1024;

/// The smallest window of recent heights kept in sled: the replica rewrites the certificate
/// of the previous height and reads a few recent blocks (pass-over, seeds) at every commit.
pub const MIN_HOT_HEIGHTS: u64 = 64;

/// The store and the freezer of one node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct History {
    store: Store,
    freezer: Arc<Freezer>,
}

fn be8(h: u64) -> [u8; 8] {
    h.to_be_bytes()
}

fn height_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

impl History {
    /// Open the freezer in `dir` beside `store`.
    pub fn open(store: Store, dir: &Path) -> anyhow::Result<History> {
        let freezer = Freezer::open(dir, &FROZEN_TREES, MAX_ITEM_BYTES)
            .with_context(|| format!("cannot open the freezer at {}", dir.display()))?;
        Ok(History {
            store,
            freezer: Arc::new(freezer),
        })
    }

    /// Heights held by the freezer (1 to this).
    pub fn frozen(&self) -> u64 {
        self.freezer.len()
    }

    /// Bytes the freezer holds on disk.
    pub fn frozen_bytes(&self) -> u64 {
        self.freezer.size_on_disk()
    }

    /// The value of a per-height tree at `height`, wherever it is.
    pub fn get(&self, tree: &str, height: u64) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(v) = self.store.tree(tree)?.get(be8(height))? {
            return Ok(Some(v.to_vec()));
        }
        if !FROZEN_TREES.contains(&tree) {
            return Ok(None);
        }
        // An empty frozen item stands for a height that had no value in this tree.
        Ok(self.freezer.get(tree, height)?.filter(|v| !v.is_empty()))
    }

    /// Move heights up to `tip - keep` from sled to the freezer, at most `max` of them: append
    /// and sync them, then delete them from sled. Returns how many heights were moved.
    pub fn freeze(&self, keep: u64, max: u64) -> anyhow::Result<u64> {
        let keep = keep.max(MIN_HOT_HEIGHTS);
        let tip = match self.store.tree(trees::BLOCKS)?.last()? {
            Some((k, _)) => height_of(&k).context("a block key is not a height")?,
            None => return Ok(0),
        };
        // Heights appended by an earlier pass that failed, or frozen before a crash that
        // stopped their deletion from sled: durable first, then gone from sled.
        self.freezer.sync()?;
        let frozen = self.freezer.len();
        self.delete_through(frozen)?;
        let until = tip.saturating_sub(keep).min(frozen.saturating_add(max));
        let mut moved = 0;
        let mut h = frozen + 1;
        while h <= until {
            let end = until.min(h + FREEZE_BATCH - 1);
            for height in h..=end {
                let mut items = Vec::with_capacity(FROZEN_TREES.len());
                for tree in FROZEN_TREES {
                    let v = self.store.tree(tree)?.get(be8(height))?;
                    match v {
                        Some(v) => items.push(v.to_vec()),
                        None if tree == RESULTS_TREE => items.push(Vec::new()),
                        None => anyhow::bail!(
                            "height {height} has no entry in {tree}; the history is left in the store"
                        ),
                    }
                }
                let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
                self.freezer.append(height, &refs)?;
            }
            self.freezer.sync()?;
            self.delete_through(end)?;
            moved += end + 1 - h;
            h = end + 1;
        }
        Ok(moved)
    }

    /// Delete from sled every per-height entry at or below `height` (already frozen).
    fn delete_through(&self, height: u64) -> anyhow::Result<()> {
        if height == 0 {
            return Ok(());
        }
        let mut batch = Batch::new();
        for tree in FROZEN_TREES {
            for kv in self.store.tree(tree)?.range(..=be8(height).to_vec()) {
                let (k, _) = kv?;
                batch.delete(tree, k);
            }
        }
        if !batch.is_empty() {
            self.store.apply(batch)?;
        }
        Ok(())
    }

    /// Freeze every `every` until dropped, `keep` heights kept in sled (0: never freeze). Ends
    /// only with an error (the freezing step panicked).
    pub async fn freezing_loop(self, keep: u64, every: Duration) -> Result<(), String> {
        if keep == 0 {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let h = self.clone();
            let moved =
                tokio::task::spawn_blocking(move || h.freeze(keep, 16 * FREEZE_BATCH)).await;
            match moved {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(
                    target: "node.history",
                    moved = n,
                    frozen = self.frozen(),
                    "heights moved to the freezer"
                ),
                Ok(Err(e)) => {
                    tracing::warn!(target: "node.history", error = %format!("{e:#}"), "freezing history failed")
                }
                Err(join) => return Err(format!("moving history to the freezer failed: {join}")),
            }
        }
    }
}

/// The replica's store: sled, with frozen heights read from the freezer.
#[derive(Clone, Debug)]
pub struct HistoryStore(pub History);

fn se(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

type Entry = (Vec<u8>, Vec<u8>);

impl KvStore for HistoryStore {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match height_of(key) {
            Some(h) if FROZEN_TREES.contains(&tree) => self.0.get(tree, h).map_err(se),
            _ => Ok(self
                .0
                .store
                .tree(tree)
                .map_err(se)?
                .get(key)
                .map_err(se)?
                .map(|v| v.to_vec())),
        }
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0
            .store
            .tree(tree)
            .map_err(se)?
            .insert(key, value)
            .map_err(se)
    }
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<(), StorageError> {
        self.0.store.tree(tree).map_err(se)?.remove(key).map_err(se)
    }
    fn scan_from(&self, tree: &str, from: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        if FROZEN_TREES.contains(&tree) {
            // Frozen heights come first in key order.
            let start = match height_of(from) {
                Some(h) => h.max(1),
                None if from.is_empty() => 1,
                None => u64::MAX,
            };
            let frozen = self.0.frozen();
            let mut h = start;
            while h <= frozen && out.len() < limit {
                if let Some(v) = self.0.freezer.get(tree, h).map_err(se)? {
                    if !v.is_empty() {
                        out.push((be8(h).to_vec(), v));
                    }
                }
                h += 1;
            }
        }
        for kv in self.0.store.tree(tree).map_err(se)?.range(from.to_vec()..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.map_err(se)?;
            if out
                .last()
                .is_some_and(|(last, _)| k.as_ref() <= last.as_slice())
            {
                continue;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
    fn last(&self, tree: &str) -> Result<Option<Entry>, StorageError> {
        if let Some((k, v)) = self.0.store.tree(tree).map_err(se)?.last().map_err(se)? {
            return Ok(Some((k.to_vec(), v.to_vec())));
        }
        if FROZEN_TREES.contains(&tree) {
            let frozen = self.0.frozen();
            if let Some(v) = self.0.freezer.get(tree, frozen).map_err(se)? {
                return Ok(Some((be8(frozen).to_vec(), v)));
            }
        }
        Ok(None)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.0.store.flush().map_err(se).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(dir: &tempfile::TempDir) -> History {
        let store = Store::open(&dir.path().join("data")).unwrap();
        History::open(store, &dir.path().join("freezer")).unwrap()
    }

    fn commit(h: &History, height: u64, with_result: bool) {
        let mut b = Batch::new();
        b.put(trees::BLOCKS, be8(height), format!("block {height}"));
        b.put(trees::CERTS, be8(height), format!("cert {height}"));
        b.put(trees::APP_HASH, be8(height), format!("hash {height}"));
        if with_result {
            b.put(RESULTS_TREE, be8(height), format!("result {height}"));
        }
        h.store.apply(b).unwrap();
    }

    #[test]
    fn old_heights_leave_sled_and_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(&dir);
        for height in 1..=1000 {
            commit(&h, height, height != 7);
        }
        assert_eq!(h.freeze(100, u64::MAX).unwrap(), 900);
        assert_eq!(h.frozen(), 900);
        assert_eq!(
            h.store.tree(trees::BLOCKS).unwrap().len(),
            100,
            "a bounded window"
        );
        assert_eq!(h.store.tree(RESULTS_TREE).unwrap().len(), 100);
        // Nothing more to move until the tip moves.
        assert_eq!(h.freeze(100, u64::MAX).unwrap(), 0);
        for height in [1, 450, 900, 901, 1000] {
            for (tree, what) in [(trees::BLOCKS, "block"), (trees::CERTS, "cert")] {
                assert_eq!(
                    h.get(tree, height).unwrap(),
                    Some(format!("{what} {height}").into_bytes())
                );
            }
        }
        assert_eq!(
            h.get(RESULTS_TREE, 7).unwrap(),
            None,
            "a missing result stays missing"
        );
        assert_eq!(h.get(trees::BLOCKS, 1001).unwrap(), None);

        // The replica's view: get, last and scan across the boundary.
        let s = HistoryStore(h.clone());
        assert_eq!(
            s.get(trees::APP_HASH, &be8(3)).unwrap(),
            Some(b"hash 3".to_vec())
        );
        assert_eq!(
            s.last(trees::BLOCKS).unwrap().unwrap().0,
            be8(1000).to_vec()
        );
        let scan = s.scan_from(trees::BLOCKS, &be8(898), 5).unwrap();
        let heights: Vec<u64> = scan.iter().map(|(k, _)| height_of(k).unwrap()).collect();
        assert_eq!(heights, vec![898, 899, 900, 901, 902]);
        let results = s.scan_from(RESULTS_TREE, &be8(5), 3).unwrap();
        let heights: Vec<u64> = results.iter().map(|(k, _)| height_of(k).unwrap()).collect();
        assert_eq!(heights, vec![5, 6, 8]);
    }

    #[test]
    fn freezing_resumes_after_a_crash_between_sync_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let h = history(&dir);
            for height in 1..=300 {
                commit(&h, height, true);
            }
            // As if the process died after the freezer synced and before sled's deletes.
            for height in 1..=50 {
                let items: Vec<Vec<u8>> = FROZEN_TREES
                    .iter()
                    .map(|t| {
                        h.store
                            .tree(t)
                            .unwrap()
                            .get(be8(height))
                            .unwrap()
                            .unwrap()
                            .to_vec()
                    })
                    .collect();
                let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
                h.freezer.append(height, &refs).unwrap();
            }
            h.freezer.sync().unwrap();
            h.store.flush().unwrap();
        }
        let h = history(&dir);
        assert_eq!(h.frozen(), 50);
        assert_eq!(h.freeze(64, 10).unwrap(), 10, "at most max per pass");
        assert_eq!(h.freeze(64, u64::MAX).unwrap(), 300 - 64 - 60);
        assert_eq!(h.store.tree(trees::CERTS).unwrap().len(), 64);
        for height in 1..=300 {
            assert_eq!(
                h.get(trees::CERTS, height).unwrap(),
                Some(format!("cert {height}").into_bytes()),
                "height {height}"
            );
        }
    }

    #[test]
    fn a_hole_in_the_history_stops_freezing_without_losing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let h = history(&dir);
        for height in 1..=200 {
            commit(&h, height, true);
        }
        h.store.tree(trees::CERTS).unwrap().remove(be8(20)).unwrap();
        let err = h.freeze(64, u64::MAX).unwrap_err();
        assert!(format!("{err:#}").contains("height 20"), "{err:#}");
        assert_eq!(h.frozen(), 19, "frozen up to the hole");
        assert_eq!(
            h.store.tree(trees::BLOCKS).unwrap().len(),
            200,
            "nothing leaves sled from a pass that failed"
        );
        // The next pass makes those 19 durable and deletes them, then stops at the hole again.
        assert!(h.freeze(64, u64::MAX).is_err());
        assert_eq!(h.store.tree(trees::BLOCKS).unwrap().len(), 181);
        for height in [1, 19, 21] {
            assert_eq!(
                h.get(trees::BLOCKS, height).unwrap(),
                Some(format!("block {height}").into_bytes())
            );
        }
    }
}
