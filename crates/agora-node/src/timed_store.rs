//! The consensus store of a node: [`crate::history::HistoryStore`] with every durable flush
//! timed into a histogram (`agora_consensus_flush_seconds`). A flush gates every vote the
//! node sends, so its latency bounds how fast the node can take part in consensus.

use std::time::Instant;

use agora_consensus::{KvStore, StorageError};
use prometheus_client::metrics::histogram::Histogram;

/// The store the node's replica runs on.
pub type NodeStore = TimedStore<crate::history::HistoryStore>;

/// A [`KvStore`] that times its inner store's flushes.
pub struct TimedStore<S> {
    inner: S,
    flushes: Histogram,
}

impl<S> TimedStore<S> {
    pub fn new(inner: S, flushes: Histogram) -> TimedStore<S> {
        TimedStore { inner, flushes }
    }
}

type Entry = (Vec<u8>, Vec<u8>);

impl<S: KvStore> KvStore for TimedStore<S> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(tree, key)
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.inner.put(tree, key, value)
    }
    fn delete(&mut self, tree: &str, key: &[u8]) -> Result<(), StorageError> {
        self.inner.delete(tree, key)
    }
    fn scan_from(&self, tree: &str, from: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        self.inner.scan_from(tree, from, limit)
    }
    fn last(&self, tree: &str) -> Result<Option<Entry>, StorageError> {
        self.inner.last(tree)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        let started = Instant::now();
        let r = self.inner.flush();
        self.flushes.observe(started.elapsed().as_secs_f64());
        r
    }
}

#[cfg(test)]
mod tests {
    use agora_consensus::SledStore;

    use super::*;

    #[test]
    fn flushes_are_timed_and_writes_pass_through() {
        let h = Histogram::new([0.001, 1.0]);
        let mut s = TimedStore::new(
            SledStore(agora_store::Store::temporary().unwrap()),
            h.clone(),
        );
        s.put("t", b"k", b"v").unwrap();
        s.flush().unwrap();
        s.flush().unwrap();
        assert_eq!(s.get("t", b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(s.last("t").unwrap(), Some((b"k".to_vec(), b"v".to_vec())));
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("flush_seconds", "flushes", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("flush_seconds_count 2"), "{text}");
    }
}
