//! Durable storage behind the replica: a small key-value interface with an explicit flush,
//! backed by agora-store (sled) in the node and by [`MemStore`] in the simulator.
//!
//! `MemStore` keeps unflushed writes apart from flushed ones, so a simulated crash
//! ([`MemStore::crash`]) loses exactly what a real crash could lose.

use std::collections::BTreeMap;

/// Storage failure (fatal for a replica: it stops rather than risk signing without a record).
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

/// The trees the replica uses.
pub mod trees {
    /// height (8 bytes BE) -> encoded block
    pub const BLOCKS: &str = "cons_blocks";
    /// height -> encoded commit certificate
    pub const CERTS: &str = "cons_certs";
    /// height -> app hash after that block
    pub const APP_HASH: &str = "cons_app_hash";
    /// height ‖ seq -> WAL entry
    pub const WAL: &str = "cons_wal";
    /// signing guard: own signed messages by (height, round, kind)
    pub const SIGNED: &str = "cons_signed";
    /// arrival sequence (8 bytes BE) -> a transaction this node accepted and has not yet seen
    /// committed or dropped (ADR 008)
    pub const MEMPOOL: &str = "cons_mempool";
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Ordered key-value storage with named trees and an explicit durability point.
pub trait KvStore {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError>;
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<(), StorageError>;
    /// Entries with `key >= from` in key order, at most `limit`.
    fn scan_from(&self, tree: &str, from: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError>;
    /// The entry with the largest key.
    fn last(&self, tree: &str) -> Result<Option<Entry>, StorageError>;
    /// Make every write so far durable.
    fn flush(&mut self) -> Result<(), StorageError>;
}

impl<T: KvStore + ?Sized> KvStore for Box<T> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(tree, key)
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        (**self).put(tree, key, value)
    }
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<(), StorageError> {
        (**self).delete(tree, key)
    }
    fn scan_from(&self, tree: &str, from: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        (**self).scan_from(tree, from, limit)
    }
    fn last(&self, tree: &str) -> Result<Option<Entry>, StorageError> {
        (**self).last(tree)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        (**self).flush()
    }
}

type Trees = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// In-memory store that models durability: writes are pending until [`KvStore::flush`].
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    durable: Trees,
    /// Current view (durable plus pending writes).
    view: Trees,
    /// Writes since the last flush, in order (`None`: a delete); a flush replays them onto
    /// `durable`, so it costs what was written, not what is stored.
    pending: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
    flushes: u64,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// What survives a crash: flushed writes only.
    pub fn crash(self) -> MemStore {
        MemStore {
            view: self.durable.clone(),
            durable: self.durable,
            pending: Vec::new(),
            flushes: self.flushes,
        }
    }

    /// Number of flushes (each one an fsync in a real store).
    pub fn flushes(&self) -> u64 {
        self.flushes
    }
}

fn apply(trees: &mut Trees, tree: &str, key: &[u8], value: Option<&[u8]>) {
    match value {
        Some(v) => {
            if let Some(t) = trees.get_mut(tree) {
                t.insert(key.to_vec(), v.to_vec());
            } else {
                trees
                    .entry(tree.to_owned())
                    .or_default()
                    .insert(key.to_vec(), v.to_vec());
            }
        }
        None => {
            if let Some(t) = trees.get_mut(tree) {
                t.remove(key);
            }
        }
    }
}

impl KvStore for MemStore {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.view.get(tree).and_then(|t| t.get(key)).cloned())
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        apply(&mut self.view, tree, key, Some(value));
        self.pending
            .push((tree.to_owned(), key.to_vec(), Some(value.to_vec())));
        Ok(())
    }
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<(), StorageError> {
        apply(&mut self.view, tree, key, None);
        self.pending.push((tree.to_owned(), key.to_vec(), None));
        Ok(())
    }
    fn scan_from(&self, tree: &str, from: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .view
            .get(tree)
            .map(|t| {
                t.range(from.to_vec()..)
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }
    fn last(&self, tree: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self
            .view
            .get(tree)
            .and_then(|t| t.last_key_value())
            .map(|(k, v)| (k.clone(), v.clone())))
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        for (tree, key, value) in std::mem::take(&mut self.pending) {
            apply(&mut self.durable, &tree, &key, value.as_deref());
        }
        self.flushes += 1;
        Ok(())
    }
}

/// The node's store (sled through agora-store).
#[derive(Clone, Debug)]
pub struct SledStore(pub agora_store::Store);

fn se(e: agora_store::StoreError) -> StorageError {
    StorageError(e.to_string())
}

impl KvStore for SledStore {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .0
            .tree(tree)
            .map_err(se)?
            .get(key)
            .map_err(se)?
            .map(|v| v.to_vec()))
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0
            .tree(tree)
            .map_err(se)?
            .insert(key, value)
            .map_err(se)
    }
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<(), StorageError> {
        self.0.tree(tree).map_err(se)?.remove(key).map_err(se)
    }
    fn scan_from(&self, tree: &str, from: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        self.0
            .tree(tree)
            .map_err(se)?
            .range(from.to_vec()..)
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(se))
            .collect()
    }
    fn last(&self, tree: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self
            .0
            .tree(tree)
            .map_err(se)?
            .last()
            .map_err(se)?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.0.flush().map_err(se).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loses_only_unflushed_writes() {
        let mut s = MemStore::new();
        s.put("t", b"a", b"1").unwrap();
        s.flush().unwrap();
        s.put("t", b"b", b"2").unwrap();
        assert_eq!(s.scan_from("t", b"", 10).unwrap().len(), 2);
        let s = s.crash();
        assert_eq!(s.get("t", b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get("t", b"b").unwrap(), None);
        assert_eq!(s.last("t").unwrap().unwrap().0, b"a".to_vec());
        assert_eq!(s.last("u").unwrap(), None);
    }
}
