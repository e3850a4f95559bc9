//! Append-only flat files for history that never changes once old: the "freezer".
//!
//! sled keeps an in-memory page table and segment bookkeeping in proportion to the data it
//! holds, so a node that kept every block in sled grew its resident memory with height (about
//! 70 bytes of sled heap per height, measured with heaptrack over 96k heights), whatever its
//! cache bound. Old heights are therefore moved out of sled into a freezer: per table, a data
//! file of concatenated items and an index file of fixed 16-byte entries (the item's end offset
//! in the data file and a checksum of the item). An item is found by its number with two
//! positioned reads; nothing is kept in memory per item.
//!
//! Items are numbered from 1 and every table holds the same count: [`Freezer::append`] adds
//! one item to each table. [`Freezer::sync`] makes appends durable. On open, a tail left torn
//! by a crash (an index entry past the data, or an item whose checksum does not match) is cut
//! off, and every table is cut to the shortest, so a freezer always opens at a consistent
//! count. Whoever moves items here keeps them in its primary store until `sync` returns.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Bytes of one index entry: end offset (u64 LE) and checksum (u64 LE).
const INDEX_ENTRY: u64 = 16;
/// Items checked against their checksums at open, from the tail of each table.
const CHECK_AT_OPEN: u64 = 256;

/// Freezer failures.
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    #[error("freezer i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("freezer table {table} has no such table name")]
    NoSuchTable { table: String },
    #[error("freezer append of item {got} out of order: next is {next}")]
    OutOfOrder { next: u64, got: u64 },
    #[error("freezer append needs one item per table ({tables}), got {got}")]
    WrongArity { tables: usize, got: usize },
    #[error("freezer item {item} of {table} is {size} bytes, over the limit of {max}")]
    TooLarge {
        table: String,
        item: u64,
        size: u64,
        max: u64,
    },
    #[error("freezer item {item} of {table} is corrupt")]
    Corrupt { table: String, item: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FreezerError + '_ {
    move |source| FreezerError::Io {
        path: path.to_owned(),
        source,
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

struct Table {
    name: String,
    data: File,
    data_path: PathBuf,
    index: File,
    index_path: PathBuf,
    /// Length of the data file up to the last item.
    data_len: u64,
}

impl Table {
    fn open(dir: &Path, name: &str) -> Result<(Table, u64), FreezerError> {
        let data_path = dir.join(format!("{name}.dat"));
        let index_path = dir.join(format!("{name}.idx"));
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(io(p))
        };
        let data = open(&data_path)?;
        let index = open(&index_path)?;
        let mut t = Table {
            name: name.to_owned(),
            data,
            data_path,
            index,
            index_path,
            data_len: 0,
        };
        let count = t.recover()?;
        Ok((t, count))
    }

    /// The count of whole, intact items; cuts a torn tail off both files.
    fn recover(&mut self) -> Result<u64, FreezerError> {
        let index_len = self.index.metadata().map_err(io(&self.index_path))?.len();
        let data_len = self.data.metadata().map_err(io(&self.data_path))?.len();
        let mut count = index_len / INDEX_ENTRY;
        // Entries pointing past the data were written without their data.
        while count > 0 && self.entry(count)?.0 > data_len {
            count -= 1;
        }
        // The last items may have reached the disk with other bytes than were written.
        let first_checked = count.saturating_sub(CHECK_AT_OPEN) + 1;
        let mut good = first_checked - 1;
        for n in first_checked..=count {
            if self.read_checked(n, u64::MAX).is_err() {
                break;
            }
            good = n;
        }
        self.truncate(good)?;
        Ok(good)
    }

    fn truncate(&mut self, count: u64) -> Result<(), FreezerError> {
        let end = if count == 0 { 0 } else { self.entry(count)?.0 };
        self.index
            .set_len(count * INDEX_ENTRY)
            .map_err(io(&self.index_path))?;
        self.data.set_len(end).map_err(io(&self.data_path))?;
        self.data_len = end;
        Ok(())
    }

    /// Index entry of item `n` (1-based): (end offset, checksum).
    fn entry(&self, n: u64) -> Result<(u64, u64), FreezerError> {
        let mut b = [0u8; INDEX_ENTRY as usize];
        self.index
            .read_exact_at(&mut b, (n - 1) * INDEX_ENTRY)
            .map_err(io(&self.index_path))?;
        let end = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let sum = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
        Ok((end, sum))
    }

    fn read_checked(&self, n: u64, max: u64) -> Result<Vec<u8>, FreezerError> {
        let start = if n == 1 { 0 } else { self.entry(n - 1)?.0 };
        let (end, sum) = self.entry(n)?;
        let corrupt = || FreezerError::Corrupt {
            table: self.name.clone(),
            item: n,
        };
        let size = end.checked_sub(start).ok_or_else(corrupt)?;
        if size > max {
            return Err(FreezerError::TooLarge {
                table: self.name.clone(),
                item: n,
                size,
                max,
            });
        }
        let mut buf = vec![0u8; usize::try_from(size).map_err(|_| corrupt())?];
        self.data
            .read_exact_at(&mut buf, start)
            .map_err(io(&self.data_path))?;
        if checksum(&buf) != sum {
            return Err(corrupt());
        }
        Ok(buf)
    }

    /// Append item `n` (the index holds `n - 1` entries: its place is derived, not read).
    fn append(&mut self, n: u64, item: &[u8]) -> Result<(), FreezerError> {
        self.data
            .write_all_at(item, self.data_len)
            .map_err(io(&self.data_path))?;
        let end = self.data_len + item.len() as u64;
        let mut entry = [0u8; INDEX_ENTRY as usize];
        entry[..8].copy_from_slice(&end.to_le_bytes());
        entry[8..].copy_from_slice(&checksum(item).to_le_bytes());
        self.index
            .write_all_at(&entry, (n - 1) * INDEX_ENTRY)
            .map_err(io(&self.index_path))?;
        self.data_len = end;
        Ok(())
    }

    fn sync(&self) -> Result<(), FreezerError> {
        self.data.sync_data().map_err(io(&self.data_path))?;
        self.index.sync_data().map_err(io(&self.index_path))
    }
}

/// A set of append-only tables sharing one item count. Safe to share between threads: reads
/// take no lock on the files' contents, appends are serialised.
pub struct Freezer {
    dir: PathBuf,
    names: Vec<String>,
    tables: Mutex<Vec<Table>>,
    /// Items appended (visible to readers once their index entry is written).
    count: AtomicU64,
    max_item: u64,
}

impl std::fmt::Debug for Freezer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Freezer({}, {} items)", self.dir.display(), self.len())
    }
}

impl Freezer {
    /// Open (or create) the freezer in `dir` with these tables. Items over `max_item` bytes
    /// are refused on append and on read.
    pub fn open(dir: &Path, tables: &[&str], max_item: u64) -> Result<Freezer, FreezerError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut opened = Vec::with_capacity(tables.len());
        let mut count = u64::MAX;
        for name in tables {
            let (t, n) = Table::open(dir, name)?;
            count = count.min(n);
            opened.push(t);
        }
        let count = if opened.is_empty() { 0 } else { count };
        for t in &mut opened {
            t.truncate(count)?;
        }
        let f = Freezer {
            dir: dir.to_owned(),
            names: tables.iter().map(|s| (*s).to_owned()).collect(),
            tables: Mutex::new(opened),
            count: AtomicU64::new(count),
            max_item,
        };
        f.sync()?;
        Ok(f)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Items held (the number of the last one).
    pub fn len(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the freezer has a table of this name.
    pub fn has_table(&self, table: &str) -> bool {
        self.names.iter().any(|n| n == table)
    }

    /// Append item `n`, one value per table in the order the tables were opened. `n` must be
    /// `len() + 1`.
    pub fn append(&self, n: u64, items: &[&[u8]]) -> Result<(), FreezerError> {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.len() + 1;
        if n != next {
            return Err(FreezerError::OutOfOrder { next, got: n });
        }
        if items.len() != tables.len() {
            return Err(FreezerError::WrongArity {
                tables: tables.len(),
                got: items.len(),
            });
        }
        for (t, item) in tables.iter().zip(items) {
            if item.len() as u64 > self.max_item {
                return Err(FreezerError::TooLarge {
                    table: t.name.clone(),
                    item: n,
                    size: item.len() as u64,
                    max: self.max_item,
                });
            }
        }
        for (t, item) in tables.iter_mut().zip(items) {
            t.append(n, item)?;
        }
        self.count.store(n, Ordering::Release);
        Ok(())
    }

    /// Make every append so far durable.
    pub fn sync(&self) -> Result<(), FreezerError> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.iter().try_for_each(Table::sync)
    }

    /// Item `n` of `table`, `None` past the end (or for 0).
    pub fn get(&self, table: &str, n: u64) -> Result<Option<Vec<u8>>, FreezerError> {
        if n == 0 || n > self.len() {
            return Ok(None);
        }
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let t =
            tables
                .iter()
                .find(|t| t.name == table)
                .ok_or_else(|| FreezerError::NoSuchTable {
                    table: table.to_owned(),
                })?;
        t.read_checked(n, self.max_item).map(Some)
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables
            .iter()
            .map(|t| t.data_len + self.len() * INDEX_ENTRY)
            .sum()
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let tables = self.tables.get_mut().unwrap_or_else(|e| e.into_inner());
        for t in tables.iter() {
            let _ = t.sync();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const T: &[&str] = &["a", "b"];

    fn item(table: &str, n: u64) -> Vec<u8> {
        format!("{table}-{n}-")
            .repeat((n % 7) as usize + 1)
            .into_bytes()
    }

    fn fill(f: &Freezer, from: u64, to: u64) {
        for n in from..=to {
            let (a, b) = (item("a", n), item("b", n));
            f.append(n, &[&a, &b]).unwrap();
        }
    }

    #[test]
    fn items_come_back_by_number_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let f = Freezer::open(dir.path(), T, 1 << 20).unwrap();
            assert_eq!(f.get("a", 1).unwrap(), None);
            fill(&f, 1, 500);
            f.sync().unwrap();
            assert_eq!(f.len(), 500);
        }
        let f = Freezer::open(dir.path(), T, 1 << 20).unwrap();
        assert_eq!(f.len(), 500);
        for n in [1, 2, 77, 499, 500] {
            assert_eq!(f.get("a", n).unwrap(), Some(item("a", n)));
            assert_eq!(f.get("b", n).unwrap(), Some(item("b", n)));
        }
        assert_eq!(f.get("a", 0).unwrap(), None);
        assert_eq!(f.get("a", 501).unwrap(), None);
        assert!(matches!(
            f.get("c", 1),
            Err(FreezerError::NoSuchTable { .. })
        ));
        fill(&f, 501, 510);
        assert_eq!(f.get("b", 510).unwrap(), Some(item("b", 510)));
    }

    #[test]
    fn appends_must_be_in_order_and_one_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let f = Freezer::open(dir.path(), T, 8).unwrap();
        assert!(matches!(
            f.append(2, &[b"x", b"y"]),
            Err(FreezerError::OutOfOrder { next: 1, got: 2 })
        ));
        assert!(matches!(
            f.append(1, &[b"x"]),
            Err(FreezerError::WrongArity { .. })
        ));
        assert!(matches!(
            f.append(1, &[b"x", b"123456789"]),
            Err(FreezerError::TooLarge { .. })
        ));
        // A refused append leaves nothing half-written.
        f.append(1, &[b"x", b"y"]).unwrap();
        assert_eq!(f.get("a", 1).unwrap().unwrap(), b"x");
        assert_eq!(f.get("b", 1).unwrap().unwrap(), b"y");
    }

    #[test]
    fn a_torn_tail_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let f = Freezer::open(dir.path(), T, 1 << 20).unwrap();
            fill(&f, 1, 100);
        }
        // Table a lost the data of its last item; table b has half an index entry more.
        let a = dir.path().join("a.dat");
        let len = std::fs::metadata(&a).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&a)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let bi = dir.path().join("b.idx");
        let mut idx = OpenOptions::new().append(true).open(&bi).unwrap();
        idx.write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        drop(idx);
        let f = Freezer::open(dir.path(), T, 1 << 20).unwrap();
        assert_eq!(f.len(), 99, "both tables cut to the last whole item");
        assert_eq!(f.get("b", 99).unwrap(), Some(item("b", 99)));
        assert_eq!(f.get("b", 100).unwrap(), None);
        fill(&f, 100, 101);
        assert_eq!(f.get("a", 101).unwrap(), Some(item("a", 101)));
    }

    #[test]
    fn flipped_bytes_are_caught() {
        let dir = tempfile::tempdir().unwrap();
        {
            let f = Freezer::open(dir.path(), T, 1 << 20).unwrap();
            fill(&f, 1, 1000);
        }
        // Corrupt an old item (not re-checked at open) and the very last one (checked).
        let a = dir.path().join("a.dat");
        let file = OpenOptions::new().read(true).write(true).open(&a).unwrap();
        file.write_all_at(b"Z", 0).unwrap();
        let len = file.metadata().unwrap().len();
        file.write_all_at(b"Z", len - 1).unwrap();
        drop(file);
        let f = Freezer::open(dir.path(), T, 1 << 20).unwrap();
        assert_eq!(f.len(), 999, "a corrupt tail item is cut");
        assert!(matches!(
            f.get("a", 1),
            Err(FreezerError::Corrupt { item: 1, .. })
        ));
        assert_eq!(f.get("a", 2).unwrap(), Some(item("a", 2)));
    }
}
