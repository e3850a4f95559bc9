//! The mempool: transactions waiting for a block, in arrival order, bounded, with at most one
//! transaction per `(signer, nonce)` slot (ADR 008).
//!
//! Consensus treats transactions as opaque; the application names a transaction's slot
//! ([`crate::Application::tx_slot`]). The first transaction seen for a slot keeps it until it is
//! committed or dropped by the re-check after a commit: a second, different transaction for the
//! same slot is refused (a local submission, with the pending nonce and the next free one) or
//! dropped quietly (a relayed one). Without this rule both would wait in the pool, a block would
//! take one and the other would vanish at the re-check after an acknowledgement.
//!
//! The node's own submissions (not relayed ones) are written to the store tree
//! [`crate::store::trees::MEMPOOL`] under an arrival sequence number, so a restart reloads them,
//! and they are broadcast again while they wait, so a submission accepted while the node had no
//! peers still reaches the proposers. The tree never holds more entries than the pool.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_types::{Address, Hash};

use crate::store::{trees, KvStore, StorageError};

/// An own transaction still pending this long after it was last broadcast is broadcast again.
pub const REBROADCAST_MS: u64 = 3_000;
/// Most own transactions broadcast again by one call of [`Mempool::rebroadcast_due`].
pub const REBROADCAST_MAX: usize = 256;
/// Store entries examined per scan when reloading or trimming the stored pool.
const SCAN_CHUNK: usize = 1024;

/// A `(signer, nonce)` pair: the transactions of one signer that cannot both be included.
pub type Slot = (Address, u64);

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    #[error("nonce {nonce} is already pending for this account; next free nonce is {next_free}")]
    NoncePending { nonce: u64, next_free: u64 },
    #[error("mempool full ({0} transactions pending)")]
    Full(usize),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What [`Mempool::insert`] did with a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// The transaction is new to the pool.
    Added,
    /// The same bytes were already pending (submitting twice is harmless).
    Known,
}

#[derive(Clone, Debug)]
struct Entry {
    id: Hash,
    tx: Vec<u8>,
    slot: Option<Slot>,
    /// Own submissions: the store key (arrival sequence) and when they were last broadcast.
    own: Option<Own>,
}

#[derive(Clone, Copy, Debug)]
struct Own {
    seq: u64,
    sent_at: u64,
}

/// The pending transactions of one replica.
#[derive(Clone, Debug)]
pub struct Mempool {
    max: usize,
    entries: VecDeque<Entry>,
    ids: BTreeSet<Hash>,
    slots: BTreeMap<Slot, Hash>,
    next_seq: u64,
    /// No own transaction is due for a rebroadcast before this (it may be earlier than the
    /// first one really due, never later): the replica's next wakeup includes it.
    rebroadcast_at: Option<u64>,
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

impl Mempool {
    /// An empty pool of at most `max` transactions.
    pub fn new(max: usize) -> Mempool {
        Mempool {
            max,
            entries: VecDeque::new(),
            ids: BTreeSet::new(),
            slots: BTreeMap::new(),
            next_seq: 0,
            rebroadcast_at: None,
        }
    }

    /// When the next own transaction is due for a rebroadcast ([`Mempool::rebroadcast_due`]),
    /// if any is waiting.
    pub fn rebroadcast_at(&self) -> Option<u64> {
        self.rebroadcast_at
    }

    fn own_sent(&mut self, sent_at: u64) {
        let due = sent_at.saturating_add(REBROADCAST_MS);
        self.rebroadcast_at = Some(self.rebroadcast_at.map_or(due, |t| t.min(due)));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.ids.contains(id)
    }

    /// The first `limit` pending transactions in arrival order (block candidates).
    pub fn candidates(&self, limit: usize) -> Vec<Vec<u8>> {
        self.entries
            .iter()
            .take(limit)
            .map(|e| e.tx.clone())
            .collect()
    }

    /// The first nonce at or after `from` that no pending transaction of `signer` holds. With
    /// `from` the signer's committed nonce this is the nonce its next transaction should carry:
    /// one past its last pending transaction, or the first gap before it (a transaction there
    /// unblocks the ones above).
    pub fn pending_nonce(&self, signer: &Address, from: u64) -> u64 {
        let mut next = from;
        for ((_, nonce), _) in self.slots.range((*signer, from)..=(*signer, u64::MAX)) {
            if *nonce != next {
                break;
            }
            next = next.saturating_add(1);
        }
        next
    }

    /// Admit `tx` (its slot, if the application gives one). `own` is `Some(now)` for the node's
    /// own submissions, which are written to `store` (the caller flushes before acknowledging)
    /// and broadcast again while they wait. A transaction already pending is [`Admitted::Known`];
    /// if it came relayed and is now submitted locally it becomes an own one.
    pub fn insert<S: KvStore>(
        &mut self,
        store: &mut S,
        tx: Vec<u8>,
        slot: Option<Slot>,
        own: Option<u64>,
    ) -> Result<Admitted, MempoolError> {
        let id = Hash::of(&tx);
        if self.ids.contains(&id) {
            if let Some(now) = own {
                if let Some(i) = self.entries.iter().position(|e| e.id == id) {
                    if self.entries[i].own.is_none() {
                        let seq = self.persist(store, &tx)?;
                        self.entries[i].own = Some(Own { seq, sent_at: now });
                        self.own_sent(now);
                    }
                }
            }
            return Ok(Admitted::Known);
        }
        if let Some((signer, nonce)) = slot {
            if self.slots.contains_key(&(signer, nonce)) {
                return Err(MempoolError::NoncePending {
                    nonce,
                    next_free: self.pending_nonce(&signer, nonce),
                });
            }
        }
        if self.entries.len() >= self.max {
            return Err(MempoolError::Full(self.entries.len()));
        }
        let own = match own {
            Some(now) => {
                self.own_sent(now);
                Some(Own {
                    seq: self.persist(store, &tx)?,
                    sent_at: now,
                })
            }
            None => None,
        };
        self.push(Entry { id, tx, slot, own });
        Ok(Admitted::Added)
    }

    fn persist<S: KvStore>(&mut self, store: &mut S, tx: &[u8]) -> Result<u64, StorageError> {
        let seq = self.next_seq;
        store.put(trees::MEMPOOL, &seq_key(seq), tx)?;
        self.next_seq += 1;
        Ok(seq)
    }

    fn push(&mut self, e: Entry) {
        self.ids.insert(e.id);
        if let Some(slot) = e.slot {
            self.slots.insert(slot, e.id);
        }
        self.entries.push_back(e);
    }

    /// After a commit: drop the transactions the block `included` and those `keep` no longer
    /// wants (their nonce was used by another transaction, they became invalid), freeing their
    /// slots and their store entries. Returns how many were dropped without being included.
    pub fn after_commit<S: KvStore>(
        &mut self,
        store: &mut S,
        included: &BTreeSet<Hash>,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        let old = std::mem::take(&mut self.entries);
        self.ids.clear();
        self.slots.clear();
        let mut dropped = 0;
        for e in old {
            let inside = included.contains(&e.id);
            if !inside && keep(&e.tx) {
                self.push(e);
                continue;
            }
            if !inside {
                dropped += 1;
            }
            if let Some(own) = e.own {
                store.delete(trees::MEMPOOL, &seq_key(own.seq))?;
            }
        }
        Ok(dropped)
    }

    /// On open: load the stored own transactions (in arrival order, at most the pool's bound)
    /// that `keep` still accepts and whose slot is free, and delete the rest from the store.
    /// Returns how many were loaded.
    pub fn reload<S: KvStore>(
        &mut self,
        store: &mut S,
        now: u64,
        mut keep: impl FnMut(&[u8]) -> bool,
        mut slot_of: impl FnMut(&[u8]) -> Option<Slot>,
    ) -> Result<usize, StorageError> {
        let mut loaded = 0;
        let mut from = Vec::new();
        loop {
            let chunk = store.scan_from(trees::MEMPOOL, &from, SCAN_CHUNK)?;
            let Some((last, _)) = chunk.last() else {
                break;
            };
            from = last.clone();
            from.push(0);
            let last_chunk = chunk.len() < SCAN_CHUNK;
            for (k, tx) in chunk {
                let seq = k.as_slice().try_into().ok().map(u64::from_be_bytes);
                let id = Hash::of(&tx);
                let slot = slot_of(&tx);
                let fits = seq.is_some()
                    && self.entries.len() < self.max
                    && !self.ids.contains(&id)
                    && slot.is_none_or(|s| !self.slots.contains_key(&s))
                    && keep(&tx);
                if let Some(seq) = seq {
                    self.next_seq = self.next_seq.max(seq.saturating_add(1));
                }
                match seq {
                    Some(seq) if fits => {
                        self.push(Entry {
                            id,
                            tx,
                            slot,
                            own: Some(Own { seq, sent_at: now }),
                        });
                        self.own_sent(now);
                        loaded += 1;
                    }
                    _ => store.delete(trees::MEMPOOL, &k)?,
                }
            }
            if last_chunk {
                break;
            }
        }
        Ok(loaded)
    }

    /// Own transactions not broadcast for [`REBROADCAST_MS`], oldest first, at most
    /// [`REBROADCAST_MAX`]; each is marked as broadcast at `now`.
    pub fn rebroadcast_due(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.rebroadcast_at.is_none_or(|t| now < t) {
            return out;
        }
        let mut next: Option<u64> = None;
        for e in self.entries.iter_mut() {
            if let Some(own) = e.own.as_mut() {
                if out.len() < REBROADCAST_MAX && now >= own.sent_at.saturating_add(REBROADCAST_MS)
                {
                    own.sent_at = now;
                    out.push(e.tx.clone());
                }
                let due = own.sent_at.saturating_add(REBROADCAST_MS);
                next = Some(next.map_or(due, |t| t.min(due)));
            }
        }
        self.rebroadcast_at = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn who(i: u8) -> Address {
        Address([i; 32])
    }

    fn stored(s: &MemStore) -> Vec<Vec<u8>> {
        s.scan_from(trees::MEMPOOL, &[], usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn a_second_transaction_for_a_pending_slot_is_refused_with_the_next_free_nonce() {
        let mut s = MemStore::new();
        let mut m = Mempool::new(10);
        for (tx, n) in [
            (b"a7".to_vec(), 7),
            (b"a8".to_vec(), 8),
            (b"a10".to_vec(), 10),
        ] {
            assert_eq!(
                m.insert(&mut s, tx, Some((who(1), n)), Some(0)).unwrap(),
                Admitted::Added
            );
        }
        let err = m
            .insert(&mut s, b"other a7".to_vec(), Some((who(1), 7)), Some(0))
            .unwrap_err();
        assert!(
            matches!(
                err,
                MempoolError::NoncePending {
                    nonce: 7,
                    next_free: 9
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "nonce 7 is already pending for this account; next free nonce is 9"
        );
        // Another signer's nonce 7 is a different slot; a tx without a slot is never refused.
        m.insert(&mut s, b"b7".to_vec(), Some((who(2), 7)), None)
            .unwrap();
        m.insert(&mut s, b"free".to_vec(), None, None).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m.candidates(2), vec![b"a7".to_vec(), b"a8".to_vec()]);
        // Only own submissions are stored.
        assert_eq!(stored(&s).len(), 3);
    }

    #[test]
    fn the_same_transaction_twice_is_idempotent() {
        let mut s = MemStore::new();
        let mut m = Mempool::new(10);
        let tx = b"a7".to_vec();
        m.insert(&mut s, tx.clone(), Some((who(1), 7)), None)
            .unwrap();
        assert_eq!(
            m.insert(&mut s, tx.clone(), Some((who(1), 7)), None)
                .unwrap(),
            Admitted::Known
        );
        assert!(stored(&s).is_empty());
        // Relayed first, then submitted here: now an own transaction, stored once.
        assert_eq!(
            m.insert(&mut s, tx.clone(), Some((who(1), 7)), Some(5))
                .unwrap(),
            Admitted::Known
        );
        assert_eq!(
            m.insert(&mut s, tx.clone(), Some((who(1), 7)), Some(6))
                .unwrap(),
            Admitted::Known
        );
        assert_eq!(m.len(), 1);
        assert_eq!(stored(&s), vec![tx]);
    }

    #[test]
    fn pending_nonce_runs_from_the_committed_nonce_to_the_first_gap() {
        let mut s = MemStore::new();
        let mut m = Mempool::new(10);
        assert_eq!(m.pending_nonce(&who(1), 4), 4);
        for n in [4, 5, 7] {
            m.insert(&mut s, vec![b'a', n as u8], Some((who(1), n)), None)
                .unwrap();
        }
        m.insert(&mut s, b"b".to_vec(), Some((who(2), 6)), None)
            .unwrap();
        assert_eq!(m.pending_nonce(&who(1), 4), 6);
        assert_eq!(m.pending_nonce(&who(1), 6), 6);
        assert_eq!(m.pending_nonce(&who(1), 7), 8);
        assert_eq!(m.pending_nonce(&who(2), 0), 0);
        assert_eq!(m.pending_nonce(&who(3), 9), 9);
    }

    #[test]
    fn a_commit_frees_the_slots_of_included_and_rechecked_out_transactions() {
        let mut s = MemStore::new();
        let mut m = Mempool::new(10);
        for n in 0..4u64 {
            m.insert(&mut s, vec![b'a', n as u8], Some((who(1), n)), Some(0))
                .unwrap();
        }
        // The block took nonce 0; the re-check drops nonce 1 (say another tx used it).
        let included: BTreeSet<Hash> = [Hash::of(&[b'a', 0])].into();
        let dropped = m
            .after_commit(&mut s, &included, |tx| tx != [b'a', 1])
            .unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(m.candidates(10), vec![vec![b'a', 2], vec![b'a', 3]]);
        assert!(!m.contains(&Hash::of(&[b'a', 0])));
        assert_eq!(stored(&s), vec![vec![b'a', 2], vec![b'a', 3]]);
        // Both slots are free again: a new tx for nonce 1 is admitted, nonce 2 still refused.
        m.insert(&mut s, b"new a1".to_vec(), Some((who(1), 1)), None)
            .unwrap();
        m.insert(&mut s, b"new a0".to_vec(), Some((who(1), 0)), None)
            .unwrap();
        assert!(m
            .insert(&mut s, b"new a2".to_vec(), Some((who(1), 2)), None)
            .is_err());
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut s = MemStore::new();
        let mut m = Mempool::new(2);
        m.insert(&mut s, b"1".to_vec(), None, Some(0)).unwrap();
        m.insert(&mut s, b"2".to_vec(), None, Some(0)).unwrap();
        let err = m.insert(&mut s, b"3".to_vec(), None, Some(0)).unwrap_err();
        assert!(matches!(err, MempoolError::Full(2)), "{err}");
        assert_eq!(stored(&s).len(), 2);
    }

    #[test]
    fn own_transactions_reload_in_order_and_invalid_ones_are_deleted() {
        let mut s = MemStore::new();
        let mut m = Mempool::new(10);
        for n in 0..5u64 {
            m.insert(&mut s, vec![b'a', n as u8], Some((who(1), n)), Some(0))
                .unwrap();
        }
        m.insert(&mut s, b"relayed".to_vec(), None, None).unwrap();
        s.flush().unwrap();
        let mut s = s.crash();
        // Nonce 1 became invalid while the node was down.
        let mut r = Mempool::new(3);
        let loaded = r
            .reload(
                &mut s,
                100,
                |tx| tx != [b'a', 1],
                |tx| Some((who(1), u64::from(tx[1]))),
            )
            .unwrap();
        assert_eq!(loaded, 3);
        assert_eq!(
            r.candidates(10),
            vec![vec![b'a', 0], vec![b'a', 2], vec![b'a', 3]]
        );
        // The invalid one and the one over the bound are gone from the store too.
        assert_eq!(stored(&s), r.candidates(10));
        // New submissions continue the sequence after the stored ones.
        r.after_commit(&mut s, &[Hash::of(&[b'a', 0])].into(), |_| true)
            .unwrap();
        r.insert(&mut s, b"late".to_vec(), Some((who(1), 9)), Some(100))
            .unwrap();
        assert_eq!(
            stored(&s),
            vec![vec![b'a', 2], vec![b'a', 3], b"late".to_vec()]
        );
        // Reloaded transactions hold their slots.
        assert!(r
            .insert(&mut s, b"x".to_vec(), Some((who(1), 2)), None)
            .is_err());
    }

    #[test]
    fn own_transactions_are_broadcast_again_while_they_wait() {
        let mut s = MemStore::new();
        let mut m = Mempool::new(10);
        m.insert(&mut s, b"mine".to_vec(), None, Some(1_000))
            .unwrap();
        m.insert(&mut s, b"relayed".to_vec(), None, None).unwrap();
        assert!(m.rebroadcast_due(1_000 + REBROADCAST_MS - 1).is_empty());
        assert_eq!(
            m.rebroadcast_due(1_000 + REBROADCAST_MS),
            vec![b"mine".to_vec()]
        );
        assert!(m.rebroadcast_due(1_000 + REBROADCAST_MS + 1).is_empty());
        assert_eq!(
            m.rebroadcast_due(1_000 + 2 * REBROADCAST_MS),
            vec![b"mine".to_vec()]
        );
    }
}
