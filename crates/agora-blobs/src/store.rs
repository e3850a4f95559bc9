//! The on-disk store.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_types::{Hash, Timestamp};

use crate::chunk_range;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob of {size} bytes is over the limit of {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("blob store is full: {used} of {max} bytes used, {size} more do not fit")]
    Full { size: u64, used: u64, max: u64 },
    #[error("blob hash mismatch: expected {expected}, got {got}")]
    HashMismatch { expected: Hash, got: Hash },
    #[error("stored blob {0} is corrupt and was removed")]
    Corrupt(Hash),
    #[error("blob {0} not found")]
    NotFound(Hash),
    #[error("chunk {index} out of range for blob {hash}")]
    ChunkOutOfRange { hash: Hash, index: u64 },
    #[error("chunk size must be non-zero")]
    ZeroChunkSize,
    #[error("blob store i/o on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Store limits.
#[derive(Clone, Debug)]
pub struct BlobConfig {
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Most bytes all blobs together may take on disk; a put that would pass it is refused
    /// with [`BlobError::Full`] (garbage collection makes room again).
    pub max_total_bytes: u64,
}

impl Default for BlobConfig {
    fn default() -> Self {
        BlobConfig {
            max_blob_bytes: 64 << 20,
            max_total_bytes: 4 << 30,
        }
    }
}

/// One stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub hash: Hash,
    pub size: u64,
    /// Last put or touch, in milliseconds since the Unix epoch.
    pub touched: Timestamp,
}

/// What a garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<Hash>,
    pub freed_bytes: u64,
    pub kept: usize,
}

/// A directory of blobs named by their blake3 hash.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    tmp: PathBuf,
    config: BlobConfig,
    counter: AtomicU64,
    /// Bytes of all stored blobs (counted at open, kept by put and remove).
    used: AtomicU64,
}

impl BlobStore {
    /// Open (creating if needed) the store under `root`. Leftover temporary files from an
    /// interrupted write are removed.
    pub fn open(root: impl AsRef<Path>, config: BlobConfig) -> Result<BlobStore, BlobError> {
        let root = root.as_ref().to_path_buf();
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let entry = entry.map_err(io_err(&tmp))?;
            let _ = fs::remove_file(entry.path());
        }
        let mut store = BlobStore {
            root,
            tmp,
            config,
            counter: AtomicU64::new(0),
            used: AtomicU64::new(0),
        };
        let used = store.list()?.iter().map(|b| b.size).sum();
        store.used = AtomicU64::new(used);
        Ok(store)
    }

    /// Bytes all stored blobs take.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Count `size` more bytes against the budget, or refuse them.
    fn reserve(&self, size: u64) -> Result<(), BlobError> {
        let max = self.config.max_total_bytes;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(size).filter(|total| *total <= max)
            })
            .map(|_| ())
            .map_err(|used| BlobError::Full { size, used, max })
    }

    fn release(&self, size: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(size))
            });
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &BlobConfig {
        &self.config
    }

    fn path_of(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    fn check_size(&self, size: u64) -> Result<(), BlobError> {
        if size > self.config.max_blob_bytes {
            return Err(BlobError::TooLarge {
                size,
                max: self.config.max_blob_bytes,
            });
        }
        Ok(())
    }

    /// Store `bytes` and return their hash. Storing a blob that exists refreshes its touch time.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash, BlobError> {
        self.check_size(bytes.len() as u64)?;
        let hash = Hash::of(bytes);
        self.write(hash, bytes)?;
        Ok(hash)
    }

    /// Store `bytes` that must hash to `expected` (bytes received from a peer).
    pub fn put_verified(&self, expected: Hash, bytes: &[u8]) -> Result<(), BlobError> {
        self.check_size(bytes.len() as u64)?;
        let got = Hash::of(bytes);
        if got != expected {
            return Err(BlobError::HashMismatch { expected, got });
        }
        self.write(expected, bytes)
    }

    fn write(&self, hash: Hash, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path_of(&hash);
        if path.exists() {
            return self.touch(&hash, now_ms());
        }
        self.reserve(bytes.len() as u64)?;
        let dir = path.parent().unwrap_or(&self.root);
        if let Err(e) = fs::create_dir_all(dir) {
            self.release(bytes.len() as u64);
            return Err(io_err(dir)(e));
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp
            .join(format!("{}.{}.{n}", hash.to_hex(), std::process::id()));
        // Linked into place rather than renamed: of two puts of one blob racing, the second
        // finds it there and does not count its bytes twice.
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::hard_link(&tmp, &path)
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.release(bytes.len() as u64);
                return self.touch(&hash, now_ms());
            }
            Err(e) => {
                self.release(bytes.len() as u64);
                return Err(BlobError::Io { path, source: e });
            }
        }
        tracing::debug!(target: "blobs.put", hash = %hash.short(), size = bytes.len(), "stored blob");
        Ok(())
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.path_of(hash).is_file()
    }

    /// Size of a stored blob, without reading it.
    pub fn size(&self, hash: &Hash) -> Result<Option<u64>, BlobError> {
        let path = self.path_of(hash);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::Io { path, source: e }),
        }
    }

    /// Read a blob and check its hash. A blob that no longer matches is removed and reported as
    /// `Corrupt`; a file over the size cap is treated the same way.
    pub fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path_of(hash);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlobError::Io { path, source: e }),
        };
        let len = f.metadata().map_err(io_err(&path))?.len();
        if len > self.config.max_blob_bytes {
            self.quarantine(hash);
            return Err(BlobError::Corrupt(*hash));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes).map_err(io_err(&path))?;
        if Hash::of(&bytes) != *hash {
            self.quarantine(hash);
            return Err(BlobError::Corrupt(*hash));
        }
        Ok(Some(bytes))
    }

    fn quarantine(&self, hash: &Hash) {
        tracing::warn!(target: "blobs.get", hash = %hash.short(), "removing corrupt blob");
        let _ = self.remove(hash);
    }

    /// Read chunk `index` of a blob for a peer, without loading the whole blob. The chunk is not
    /// verified on its own (the receiver verifies the whole blob); use [`BlobStore::get`] when
    /// the bytes are to be trusted locally. Returns `(total size, bytes)`.
    pub fn read_chunk(
        &self,
        hash: &Hash,
        index: u64,
        chunk_size: u32,
    ) -> Result<(u64, Vec<u8>), BlobError> {
        if chunk_size == 0 {
            return Err(BlobError::ZeroChunkSize);
        }
        let path = self.path_of(hash);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(*hash));
            }
            Err(e) => return Err(BlobError::Io { path, source: e }),
        };
        let total = f.metadata().map_err(io_err(&path))?.len();
        let (offset, len) = chunk_range(total, chunk_size, index)
            .ok_or(BlobError::ChunkOutOfRange { hash: *hash, index })?;
        f.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
        let mut bytes = vec![0; len as usize];
        f.read_exact(&mut bytes).map_err(io_err(&path))?;
        Ok((total, bytes))
    }

    /// Set a blob's touch time (milliseconds since the Unix epoch).
    pub fn touch(&self, hash: &Hash, at: Timestamp) -> Result<(), BlobError> {
        let path = self.path_of(hash);
        let f = match File::options().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(*hash));
            }
            Err(e) => return Err(BlobError::Io { path, source: e }),
        };
        f.set_modified(UNIX_EPOCH + Duration::from_millis(at.0))
            .map_err(io_err(&path))
    }

    /// Remove a blob. Returns whether it existed.
    pub fn remove(&self, hash: &Hash) -> Result<bool, BlobError> {
        let path = self.path_of(hash);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.release(size);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::Io { path, source: e }),
        }
    }

    /// Every stored blob, sorted by hash. Files that are not blobs are skipped.
    pub fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let mut out = Vec::new();
        for shard1 in read_dir_sorted(&self.root)? {
            if !is_shard(&shard1) {
                continue;
            }
            for shard2 in read_dir_sorted(&shard1)? {
                if !is_shard(&shard2) {
                    continue;
                }
                for file in read_dir_sorted(&shard2)? {
                    let Some(hash) = file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.parse().ok())
                    else {
                        continue;
                    };
                    let meta = match fs::metadata(&file) {
                        Ok(m) if m.is_file() => m,
                        _ => continue,
                    };
                    let touched = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| Timestamp(d.as_millis() as u64))
                        .unwrap_or_default();
                    out.push(BlobInfo {
                        hash,
                        size: meta.len(),
                        touched,
                    });
                }
            }
        }
        out.sort_by_key(|b| b.hash);
        Ok(out)
    }

    /// Total bytes stored.
    pub fn total_bytes(&self) -> Result<u64, BlobError> {
        Ok(self.list()?.iter().map(|b| b.size).sum())
    }

    /// Remove every blob not in `pinned` whose touch time is at least `retention` before `now`.
    pub fn gc(
        &self,
        now: Timestamp,
        retention: Duration,
        pinned: &BTreeSet<Hash>,
    ) -> Result<GcReport, BlobError> {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let mut report = GcReport::default();
        for blob in self.list()? {
            let age = now.saturating_sub(blob.touched);
            if pinned.contains(&blob.hash) || age < retention_ms {
                report.kept += 1;
                continue;
            }
            if self.remove(&blob.hash)? {
                report.freed_bytes += blob.size;
                report.removed.push(blob.hash);
            }
        }
        tracing::debug!(
            target: "blobs.gc",
            removed = report.removed.len(),
            freed = report.freed_bytes,
            kept = report.kept,
            "garbage collected"
        );
        Ok(report)
    }
}

fn now_ms() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_millis() as u64)
}

fn is_shard(path: &Path) -> bool {
    path.is_dir()
        && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.len() == 2
                && n.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, BlobError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        out.push(entry.map_err(io_err(dir))?.path());
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: u64) -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(
            dir.path().join("blobs"),
            BlobConfig {
                max_blob_bytes: max,
                ..BlobConfig::default()
            },
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn put_get_round_trip_and_layout() {
        let (_d, s) = store(1 << 20);
        let h = s.put(b"hello").unwrap();
        assert_eq!(h, Hash::of(b"hello"));
        let hex = h.to_hex();
        assert!(s
            .root()
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex)
            .is_file());
        assert!(s.contains(&h));
        assert_eq!(s.size(&h).unwrap(), Some(5));
        assert_eq!(s.get(&h).unwrap().unwrap(), b"hello");
        assert_eq!(s.get(&Hash::of(b"absent")).unwrap(), None);
        // idempotent
        assert_eq!(s.put(b"hello").unwrap(), h);
        assert_eq!(s.list().unwrap().len(), 1);
        assert_eq!(fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn caps_and_verification() {
        let (_d, s) = store(8);
        assert!(matches!(
            s.put(&[0u8; 9]),
            Err(BlobError::TooLarge { size: 9, max: 8 })
        ));
        assert!(matches!(
            s.put_verified(Hash::of(b"x"), b"y"),
            Err(BlobError::HashMismatch { .. })
        ));
        s.put_verified(Hash::of(b"x"), b"x").unwrap();
        assert!(s.contains(&Hash::of(b"x")));
    }

    #[test]
    fn corrupt_blob_is_reported_and_removed() {
        let (_d, s) = store(1 << 20);
        let h = s.put(b"precious").unwrap();
        fs::write(s.path_of(&h), b"tampered").unwrap();
        assert!(matches!(s.get(&h), Err(BlobError::Corrupt(x)) if x == h));
        assert!(!s.contains(&h));
    }

    #[test]
    fn chunks_served_from_disk() {
        let (_d, s) = store(1 << 20);
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
        let h = s.put(&data).unwrap();
        let mut a = crate::BlobAssembler::new(h, 1000, 300, 1 << 20).unwrap();
        for i in 0..crate::chunk_count(1000, 300) {
            let (total, bytes) = s.read_chunk(&h, i, 300).unwrap();
            assert_eq!(total, 1000);
            a.accept(i * 300, &bytes, total).unwrap();
        }
        assert_eq!(a.finish().unwrap(), data);
        assert!(matches!(
            s.read_chunk(&h, 4, 300),
            Err(BlobError::ChunkOutOfRange { index: 4, .. })
        ));
        assert!(matches!(
            s.read_chunk(&Hash::ZERO, 0, 300),
            Err(BlobError::NotFound(_))
        ));
    }

    #[test]
    fn gc_respects_retention_and_pins() {
        let (_d, s) = store(1 << 20);
        let old = s.put(b"old").unwrap();
        let pinned_old = s.put(b"pinned").unwrap();
        let fresh = s.put(b"fresh").unwrap();
        s.touch(&old, Timestamp(1_000)).unwrap();
        s.touch(&pinned_old, Timestamp(1_000)).unwrap();
        s.touch(&fresh, Timestamp(9_500)).unwrap();
        let listed = s.list().unwrap();
        assert_eq!(
            listed.iter().find(|b| b.hash == old).unwrap().touched,
            Timestamp(1_000)
        );

        let pins: BTreeSet<Hash> = [pinned_old].into_iter().collect();
        let report = s
            .gc(Timestamp(10_000), Duration::from_secs(1), &pins)
            .unwrap();
        assert_eq!(report.removed, vec![old]);
        assert_eq!(report.freed_bytes, 3);
        assert_eq!(report.kept, 2);
        assert!(!s.contains(&old));
        assert!(s.contains(&pinned_old) && s.contains(&fresh));

        let report = s
            .gc(Timestamp(20_000), Duration::from_secs(1), &BTreeSet::new())
            .unwrap();
        assert_eq!(report.removed.len(), 2);
        assert!(s.list().unwrap().is_empty());
        assert!(!s.remove(&fresh).unwrap());
    }

    #[test]
    fn list_skips_foreign_files_and_open_cleans_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let s = BlobStore::open(&root, BlobConfig::default()).unwrap();
        let h = s.put(b"a").unwrap();
        fs::write(root.join("README"), b"not a blob").unwrap();
        fs::create_dir_all(root.join("zz")).unwrap();
        fs::write(root.join("tmp").join("leftover"), b"partial").unwrap();
        drop(s);
        let s = BlobStore::open(&root, BlobConfig::default()).unwrap();
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        let listed = s.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].hash, h);
        assert_eq!(listed[0].size, 1);
    }

    #[test]
    fn the_disk_budget_refuses_what_does_not_fit_and_frees_on_removal() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BlobConfig {
            max_blob_bytes: 100,
            max_total_bytes: 250,
        };
        let s = BlobStore::open(dir.path(), cfg.clone()).unwrap();
        let a = s.put(&[1; 100]).unwrap();
        s.put(&[2; 100]).unwrap();
        // A blob already stored costs nothing again.
        s.put(&[1; 100]).unwrap();
        assert_eq!(s.used_bytes(), 200);
        let err = s.put(&[3; 100]).unwrap_err();
        assert!(
            matches!(
                err,
                BlobError::Full {
                    size: 100,
                    used: 200,
                    max: 250
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("full"), "{err}");
        s.put(&[4; 50]).unwrap();
        assert_eq!(s.used_bytes(), 250);
        assert!(s.remove(&a).unwrap());
        assert_eq!(s.used_bytes(), 150);
        s.put(&[3; 100]).unwrap();
        // The count is rebuilt from disk at open.
        drop(s);
        let s = BlobStore::open(dir.path(), cfg).unwrap();
        assert_eq!(s.used_bytes(), 250);
        assert!(matches!(s.put(&[5; 1]), Err(BlobError::Full { .. })));
    }
}
