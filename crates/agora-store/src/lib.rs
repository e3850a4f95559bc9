//! The node's embedded store: a thin API over sled with named trees, atomic multi-tree
//! batches and an explicit durable [`Store::flush`].
//!
//! It knows nothing of blocks or markets; callers own their key layouts. What it adds over raw
//! sled is a format version check (a store written by a newer Agora is refused with a clear
//! error instead of being misread), errors that name the path, and a bounded page cache: sled's
//! own default is 1 GiB, which a long-running node fills block by block, so the store is opened
//! with [`DEFAULT_CACHE_BYTES`] unless the caller gives another bound.

pub mod freezer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use freezer::{Freezer, FreezerError};
pub use sled::IVec;

/// Page cache bound used by [`Store::open`]: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The smallest page cache [`Store::open_with_cache`] accepts: 1 MiB.
pub const MIN_CACHE_BYTES: u64 = 1024 * 1024;

/// How long [`Store::open_with_cache`] waits for a store's lock held by another handle.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The on-disk format this build writes. Bump on an incompatible layout change.
pub const FORMAT_VERSION: u32 = 2;

const META_TREE: &str = "__meta";
const FORMAT_KEY: &[u8] = b"format_version";

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "store at {path} has format version {found}, this build reads up to {supported}; upgrade agora"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "store at {path} has format version {found} from an older build, this build reads only {supported}; start from a fresh home (or `agora testnet up` a new testnet)"
    )]
    OlderFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("store at {path} has a corrupt format marker")]
    CorruptMeta { path: PathBuf },
    #[error("store cache of {bytes} bytes is below the minimum of {min} bytes")]
    CacheTooSmall { bytes: u64, min: u64 },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
}

/// An open store. Cheap to clone (shares the database).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// Open (or create) the store at `path` with the default cache bound.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Open (or create) the store at `path`, keeping at most `cache_bytes` of pages in memory.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        if cache_bytes < MIN_CACHE_BYTES {
            return Err(StoreError::CacheTooSmall {
                bytes: cache_bytes,
                min: MIN_CACHE_BYTES,
            });
        }
        // sled's background threads can hold the lock file for a moment after the last handle
        // of a store is dropped (sled's own tests block on it for that reason), so a lock
        // conflict is retried briefly before it is reported.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .open()
            {
                Ok(db) => break db,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        };
        Store::init(db, path.to_owned())
    }

    /// A store in a fresh temporary directory, removed on drop (tests and simulation).
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(DEFAULT_CACHE_BYTES)
            .open()?;
        Store::init(db, PathBuf::from("<temporary>"))
    }

    fn init(db: sled::Db, path: PathBuf) -> Result<Store, StoreError> {
        let meta = db.open_tree(META_TREE)?;
        match meta.get(FORMAT_KEY)? {
            Some(v) => {
                let bytes: [u8; 4] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::CorruptMeta { path: path.clone() })?;
                let found = u32::from_le_bytes(bytes);
                if found > FORMAT_VERSION {
                    return Err(StoreError::NewerFormat {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                if found < FORMAT_VERSION {
                    return Err(StoreError::OlderFormat {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => {
                meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_le_bytes())?;
            }
        }
        Ok(Store { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A named tree (created on first use).
    pub fn tree(&self, name: &str) -> Result<Tree, StoreError> {
        Ok(Tree {
            inner: self.db.open_tree(name)?,
        })
    }

    /// Apply every write of `batch` atomically: after a crash either all of it is visible or
    /// none of it is. Not durable until [`Store::flush`].
    pub fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.trees.is_empty() {
            return Ok(());
        }
        let names: Vec<&String> = batch.trees.keys().collect();
        let trees: Vec<sled::Tree> = names
            .iter()
            .map(|n| self.db.open_tree(n.as_str()))
            .collect::<Result<_, _>>()?;
        let ops: Vec<&sled::Batch> = batch.trees.values().collect();
        use sled::Transactional;
        trees
            .as_slice()
            .transaction(|txs| {
                for (tx, ops) in txs.iter().zip(&ops) {
                    tx.apply_batch(ops)?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    unreachable!("batch transactions never abort")
                }
            })
    }

    /// Make everything written so far durable (fsync). Returns bytes flushed.
    pub fn flush(&self) -> Result<usize, StoreError> {
        Ok(self.db.flush()?)
    }

    /// Approximate size on disk in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// One named tree: an ordered map from byte keys to byte values.
#[derive(Clone)]
pub struct Tree {
    inner: sled::Tree,
}

impl Tree {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, StoreError> {
        Ok(self.inner.get(key)?)
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.inner.insert(key.as_ref(), value.as_ref())?;
        Ok(())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.inner.remove(key)?;
        Ok(())
    }

    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.inner.contains_key(key)?)
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The last entry (largest key).
    pub fn last(&self) -> Result<Option<(IVec, IVec)>, StoreError> {
        Ok(self.inner.last()?)
    }

    /// Entries in key order whose key starts with `prefix`.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(IVec, IVec), StoreError>> {
        self.inner
            .scan_prefix(prefix)
            .map(|r| r.map_err(StoreError::from))
    }

    /// Entries in key order within `range`.
    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Result<(IVec, IVec), StoreError>> {
        self.inner.range(range).map(|r| r.map_err(StoreError::from))
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Result<(IVec, IVec), StoreError>> {
        self.inner.iter().map(|r| r.map_err(StoreError::from))
    }

    /// Remove every entry.
    pub fn clear(&self) -> Result<(), StoreError> {
        Ok(self.inner.clear()?)
    }
}

/// Writes to several trees, applied atomically by [`Store::apply`].
#[derive(Default)]
pub struct Batch {
    trees: BTreeMap<String, sled::Batch>,
    len: usize,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn put(&mut self, tree: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.trees
            .entry(tree.to_owned())
            .or_default()
            .insert(key.as_ref(), value.as_ref());
        self.len += 1;
    }

    pub fn delete(&mut self, tree: &str, key: impl AsRef<[u8]>) {
        self.trees
            .entry(tree.to_owned())
            .or_default()
            .remove(key.as_ref());
        self.len += 1;
    }

    /// Number of operations queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_spans_trees_and_survives_reopen_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            let mut b = Batch::new();
            b.put("blocks", b"1", b"block-one");
            b.put("state", b"balance/a", b"10");
            b.put("state", b"balance/b", b"20");
            b.delete("state", b"missing");
            assert_eq!(b.len(), 4);
            store.apply(b).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store
                .tree("blocks")
                .unwrap()
                .get(b"1")
                .unwrap()
                .unwrap()
                .as_ref(),
            b"block-one"
        );
        let state = store.tree("state").unwrap();
        let keys: Vec<Vec<u8>> = state
            .scan_prefix(b"balance/")
            .map(|r| r.unwrap().0.to_vec())
            .collect();
        assert_eq!(keys, vec![b"balance/a".to_vec(), b"balance/b".to_vec()]);
    }

    #[test]
    fn batch_is_all_or_nothing_to_readers() {
        let store = Store::temporary().unwrap();
        let a = store.tree("a").unwrap();
        a.insert(b"k", b"old").unwrap();
        let mut b = Batch::new();
        b.put("a", b"k", b"new");
        b.put("b", b"k", b"new");
        // Nothing is visible before apply.
        assert_eq!(a.get(b"k").unwrap().unwrap().as_ref(), b"old");
        assert!(store.tree("b").unwrap().get(b"k").unwrap().is_none());
        store.apply(b).unwrap();
        assert_eq!(a.get(b"k").unwrap().unwrap().as_ref(), b"new");
        assert_eq!(
            store
                .tree("b")
                .unwrap()
                .get(b"k")
                .unwrap()
                .unwrap()
                .as_ref(),
            b"new"
        );
    }

    #[test]
    fn a_cache_below_the_minimum_is_refused_and_a_small_one_holds_more_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let err = Store::open_with_cache(&path, MIN_CACHE_BYTES - 1).unwrap_err();
        assert!(matches!(err, StoreError::CacheTooSmall { .. }), "{err}");
        assert!(err.to_string().contains("below the minimum"), "{err}");
        // A store whose data outgrows its cache still reads every entry back.
        let store = Store::open_with_cache(&path, MIN_CACHE_BYTES).unwrap();
        let t = store.tree("t").unwrap();
        let value = vec![7u8; 4096];
        for i in 0u32..1024 {
            t.insert(i.to_be_bytes(), &value).unwrap();
        }
        store.flush().unwrap();
        for i in 0u32..1024 {
            assert_eq!(
                t.get(i.to_be_bytes()).unwrap().unwrap().as_ref(),
                &value[..]
            );
        }
    }

    #[test]
    fn newer_format_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            store
                .tree(META_TREE)
                .unwrap()
                .insert(FORMAT_KEY, (FORMAT_VERSION + 1).to_le_bytes())
                .unwrap();
            store.flush().unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NewerFormat { .. }), "{err}");
        assert!(err.to_string().contains("upgrade agora"), "{err}");
    }

    #[test]
    fn older_format_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            store
                .tree(META_TREE)
                .unwrap()
                .insert(FORMAT_KEY, (FORMAT_VERSION - 1).to_le_bytes())
                .unwrap();
            store.flush().unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::OlderFormat { .. }), "{err}");
        assert!(err.to_string().contains("fresh home"), "{err}");
    }
}
