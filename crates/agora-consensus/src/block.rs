//! Blocks: a header committing to the chain and the application state, and an opaque tx list.

use agora_types::{Address, Hash};

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
}

/// A block: header plus ordered, opaque transactions (each an encoded signed envelope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Vec<u8>>,
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
        Hash(*h.finalize().as_bytes())
    }
}

impl Block {
    /// Build a block, computing the tx commitment.
    pub fn new(
        height: u64,
        time: u64,
        prev_hash: Hash,
        app_hash: Hash,
        proposer: Address,
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
            },
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

    /// Total tx payload bytes.
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(|t| t.len()).sum()
    }
}
