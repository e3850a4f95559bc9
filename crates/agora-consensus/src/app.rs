//! The application boundary: consensus orders opaque transactions; the application checks
//! them, picks a block's txs, validates proposed blocks and executes committed ones.

use std::collections::BTreeMap;

use agora_types::{Address, Hash};

use crate::block::Block;

/// Replicated facts about a committed block that consensus derives from the chain itself (never
/// from a replica's own commit certificate, which differs between replicas): every honest
/// replica passes the same values for the same block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block's seed: the output of its proposer's VRF proof over the previous seed.
    pub seed: Hash,
    /// Voting power (basis points of the total) of the validators that signed at least one of
    /// the `last_commit`s of the recent blocks (the activity window, ending with this block).
    /// 10,000 while no block carries a `last_commit` yet.
    pub participation_bps: u32,
    /// Validators that signed none of those `last_commit`s, sorted.
    pub absent: Vec<Address>,
}

/// What the replica needs from the replicated state machine. Every method except
/// `check_tx`'s mempool use must be deterministic: all honest nodes call them with the same
/// arguments and must get the same answers.
pub trait Application {
    /// The last committed height and the app hash after it (`(0, genesis app hash)` before the
    /// first block). On open, the replica re-applies stored blocks above this height.
    fn info(&self) -> (u64, Hash);
    /// Admission to the mempool (stateful checks against the current state are fine).
    fn check_tx(&self, tx: &[u8]) -> Result<(), String>;
    /// Admission of a tx relayed by a peer (which admitted it with [`Application::check_tx`]
    /// against its own state). Defaults to `check_tx`.
    fn check_relayed_tx(&self, tx: &[u8]) -> Result<(), String> {
        self.check_tx(tx)
    }
    /// Whether a tx admitted earlier still belongs in the mempool after a commit. The default
    /// re-runs [`Application::check_tx`]; an application whose admission checks are costly (a
    /// signature) or whose txs stay includable after their handler would fail may answer with
    /// a cheaper, narrower test.
    fn recheck_tx(&self, tx: &[u8]) -> bool {
        self.check_tx(tx).is_ok()
    }
    /// The `(signer, nonce)` slot of a tx: the mempool holds at most one tx per slot, and a
    /// second, different tx for a pending slot is refused (ADR 008). `None` (the default)
    /// means the tx has no slot and only identical bytes are deduplicated. Called only on txs
    /// that passed admission; must depend on the bytes alone.
    fn tx_slot(&self, _tx: &[u8]) -> Option<(Address, u64)> {
        None
    }
    /// The block time at which the application wants the next block even with an empty
    /// mempool (a clock of its own passes a boundary), if earlier than the heartbeat. Not
    /// replicated: only the proposer's timing depends on it.
    fn wake_at(&self) -> Option<u64> {
        None
    }
    /// Choose the txs of the next block from mempool `candidates` (in arrival order), within
    /// `max_bytes`.
    fn prepare_block(
        &mut self,
        height: u64,
        time: u64,
        candidates: &[Vec<u8>],
        max_bytes: usize,
    ) -> Vec<Vec<u8>>;
    /// Whether a proposed block's txs are acceptable. Deterministic.
    fn validate_block(&self, block: &Block) -> bool;
    /// Execute a decided block; returns the new app hash. An error means the application
    /// cannot go on (the block does not follow its state, or its own store failed): the
    /// replica halts rather than run on a state that differs from everyone else's, and the
    /// application must not have persisted any part of the block.
    fn commit(&mut self, block: &Block, info: &BlockInfo) -> Result<Hash, String>;
}

/// A tiny key-value application for tests and the simulator: a tx is `key=value` (at most
/// 256 bytes); the app hash chains over each block's sorted writes.
#[derive(Clone, Debug, Default)]
pub struct KvApp {
    pub height: u64,
    pub app_hash: Hash,
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvApp {
    pub fn new() -> KvApp {
        KvApp::default()
    }

    fn parse(tx: &[u8]) -> Option<(&[u8], &[u8])> {
        let i = tx.iter().position(|b| *b == b'=')?;
        Some((&tx[..i], &tx[i + 1..]))
    }
}

impl Application for KvApp {
    fn info(&self) -> (u64, Hash) {
        (self.height, self.app_hash)
    }

    fn check_tx(&self, tx: &[u8]) -> Result<(), String> {
        if tx.len() > 256 {
            return Err("tx too large".into());
        }
        match Self::parse(tx) {
            Some((k, _)) if !k.is_empty() => Ok(()),
            _ => Err("tx must be key=value".into()),
        }
    }

    fn prepare_block(
        &mut self,
        _height: u64,
        _time: u64,
        candidates: &[Vec<u8>],
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let mut used = 0;
        let mut out = Vec::new();
        for tx in candidates {
            if self.check_tx(tx).is_ok() && used + tx.len() <= max_bytes {
                used += tx.len();
                out.push(tx.clone());
            }
        }
        out
    }

    fn validate_block(&self, block: &Block) -> bool {
        block.txs.iter().all(|t| self.check_tx(t).is_ok())
    }

    fn commit(&mut self, block: &Block, info: &BlockInfo) -> Result<Hash, String> {
        let mut writes: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for tx in &block.txs {
            if let Some((k, v)) = Self::parse(tx) {
                writes.insert(k.to_vec(), v.to_vec());
            }
        }
        let mut h = blake3::Hasher::new_derive_key("agora/v1/kv-app");
        h.update(self.app_hash.as_bytes());
        h.update(&block.header.height.to_be_bytes());
        // The replicated block facts are part of the state, so the simulator's app-hash check
        // catches replicas that disagree on them.
        h.update(info.seed.as_bytes());
        h.update(&info.participation_bps.to_be_bytes());
        for a in &info.absent {
            h.update(a.as_bytes());
        }
        for (k, v) in &writes {
            h.update(&(k.len() as u64).to_be_bytes());
            h.update(k);
            h.update(&(v.len() as u64).to_be_bytes());
            h.update(v);
        }
        self.state.extend(writes);
        self.height = block.header.height;
        self.app_hash = Hash(*h.finalize().as_bytes());
        Ok(self.app_hash)
    }
}
