//! Blocks: a header committing to the chain and the application state, the previous height's
//! commit certificate (`last_commit`) and an opaque tx list.

use agora_types::{Address, Hash};

use crate::cert::Certificate;

/// Block header. The hash of a block is the hash of its header, which commits to the txs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub height: u64,
    /// Proposer timestamp (ms since the Unix epoch): strictly above the parent's, and not ahead
    /// of a validating node's clock by more than the configured drift.
    pub time: u64,
    /// Hash of block `height - 1` (zero for the first block).
    pub prev_hash: Hash,
    /// Application state commitment after block `height - 1`.
    pub app_hash: Hash,
    pub proposer: Address,
    /// [`txs_hash`] of `txs`.
    pub txs_hash: Hash,
    /// [`last_commit_hash`] of the block's `last_commit` (zero for the first block).
    pub last_commit_hash: Hash,
    /// The proposer's VRF proof over the previous block's seed (see [`crate::seed`]); the
    /// block's seed is the proof's output. Empty only in blocks that fail validation.
    pub seed_proof: Vec<u8>,
}

/// A block: header, the commit certificate of the previous height as the proposer chose it
/// (so every replica agrees on who signed it), and ordered, opaque transactions (each an
/// encoded signed envelope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub last_commit: Option<Certificate>,
    pub txs: Vec<Vec<u8>>,
}

/// Commitment to a block's `last_commit`: zero when there is none, else blake3 over the
/// certificate's fields in a fixed layout.
pub fn last_commit_hash(c: Option<&Certificate>) -> Hash {
    let Some(c) = c else {
        return Hash::ZERO;
    };
    let mut h = blake3::Hasher::new_derive_key("agora/v1/last-commit");
    h.update(&c.height.to_be_bytes());
    h.update(&c.round.to_be_bytes());
    h.update(c.block_hash.as_bytes());
    h.update(&(c.signatures.len() as u64).to_be_bytes());
    for (a, s) in &c.signatures {
        h.update(a.as_bytes());
        h.update(&s.0);
    }
    Hash(*h.finalize().as_bytes())
}

/// Commitment to an ordered tx list (length-prefixed, domain-separated).
pub fn txs_hash(txs: &[Vec<u8>]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("agora/v1/block-txs");
    h.update(&(txs.len() as u64).to_be_bytes());
    for tx in txs {
        h.update(&(tx.len() as u64).to_be_bytes());
        h.update(tx);
    }
    Hash(*h.finalize().as_bytes())
}

impl BlockHeader {
    /// The block hash: blake3 over a fixed layout of every header field.
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new_derive_key("agora/v1/block-header");
        h.update(&self.height.to_be_bytes());
        h.update(&self.time.to_be_bytes());
        h.update(self.prev_hash.as_bytes());
        h.update(self.app_hash.as_bytes());
        h.update(self.proposer.as_bytes());
        h.update(self.txs_hash.as_bytes());
        h.update(self.last_commit_hash.as_bytes());
        h.update(&(self.seed_proof.len() as u64).to_be_bytes());
        h.update(&self.seed_proof);
        Hash(*h.finalize().as_bytes())
    }
}

impl Block {
    /// Build a block, computing the tx and last-commit commitments.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        height: u64,
        time: u64,
        prev_hash: Hash,
        app_hash: Hash,
        proposer: Address,
        last_commit: Option<Certificate>,
        seed_proof: Vec<u8>,
        txs: Vec<Vec<u8>>,
    ) -> Block {
        let txs_hash = txs_hash(&txs);
        Block {
            header: BlockHeader {
                height,
                time,
                prev_hash,
                app_hash,
                proposer,
                txs_hash,
                last_commit_hash: last_commit_hash(last_commit.as_ref()),
                seed_proof,
            },
            last_commit,
            txs,
        }
    }

    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Whether the header's tx commitment matches the txs carried.
    pub fn txs_match(&self) -> bool {
        txs_hash(&self.txs) == self.header.txs_hash
    }

    /// Whether the header's last-commit commitment matches the certificate carried.
    pub fn last_commit_matches(&self) -> bool {
        last_commit_hash(self.last_commit.as_ref()) == self.header.last_commit_hash
    }

    /// Total tx payload bytes.
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(|t| t.len()).sum()
    }
}
