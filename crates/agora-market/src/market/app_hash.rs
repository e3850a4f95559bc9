//! The app hash (ADR 016): a state hash chained over each block's changed entries in key order,
//! each in its canonical encoding ([`crate::canon`]), combined with the Merkle root of the block's
//! events, so the next certified header commits to both.

use agora_types::Hash;

use super::{Key, Market};

impl Market {
    /// The block's state hash: the previous app hash chained with this block's changed entries,
    /// in key order.
    fn state_hash(&mut self) -> Hash {
        let mut h = blake3::Hasher::new_derive_key("agora/v1/state-hash");
        h.update(self.s.app_hash.as_bytes());
        h.update(&self.s.height.0.to_le_bytes());
        let dirty = std::mem::take(&mut self.dirty);
        let mut value = Vec::new();
        for key in &dirty {
            // Each changed entry in its canonical encoding (`canon`), `0` for a removed one.
            value.clear();
            let (tag, id) = match key {
                Key::Global => {
                    value.push(1);
                    self.put_global(&mut value);
                    (0u8, [0u8; 32])
                }
                Key::Account(a) => {
                    put_entry(self.s.accounts.get(a), &mut value);
                    (1, a.0)
                }
                Key::Operator(a) => {
                    put_entry(self.s.operators.get(a), &mut value);
                    (2, a.0)
                }
                Key::Coprocessor(a) => {
                    put_entry(self.s.coprocessors.get(a), &mut value);
                    (3, a.0)
                }
                Key::Job(j) => {
                    put_entry(self.s.jobs.get(j), &mut value);
                    (4, j.0)
                }
            };
            h.update(&[tag]);
            h.update(&id);
            h.update(&(value.len() as u64).to_le_bytes());
            h.update(&value);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// The chain-wide entry of the state hash: height, times, health, burned supply, pending
    /// unbondings and the number of open jobs.
    fn put_global(&self, out: &mut Vec<u8>) {
        use crate::canon::Canon;
        self.s.height.put(out);
        self.s.time.put(out);
        self.s.market_time.put(out);
        self.s.health.put(out);
        self.s.burned.put(out);
        self.s.unbonding.put(out);
        (self.s.open_jobs.len() as u64).put(out);
    }

    /// Commit the block: `app_hash = blake3_derive("agora/v1/app-hash", state hash ‖ events
    /// root)`, so the next block's header, which carries the app hash, commits to every event
    /// of this one (ADR 016). Returns the state hash.
    pub(super) fn commit_hash(&mut self) -> Hash {
        let state_hash = self.state_hash();
        let events_root = crate::canon::events_root(&self.block_events);
        self.s.app_hash = app_hash(&state_hash, &events_root);
        state_hash
    }
}

/// The app hash of a block from its state hash and events root (ADR 016).
pub fn app_hash(state_hash: &Hash, events_root: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("agora/v1/app-hash");
    h.update(state_hash.as_bytes());
    h.update(events_root.as_bytes());
    Hash(*h.finalize().as_bytes())
}

fn put_entry<T: crate::canon::Canon>(v: Option<&T>, out: &mut Vec<u8>) {
    match v {
        Some(v) => {
            out.push(1);
            v.put(out);
        }
        None => out.push(0),
    }
}
