//! The JSON documents of the node API, shared by the server (`agora node`) and this client.
//!
//! Field names are part of the user-facing contract (design §12): rename nothing; add fields
//! with `#[serde(default)]` so an older CLI keeps reading a newer node.

use serde::{Deserialize, Serialize};

/// `GET /v1/status`: the node's view of itself and the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's software version (`agora --version`).
    pub version: String,
    /// The libp2p peer id, derived from the node key.
    pub peer_id: String,
    /// The account address (hex ed25519 public key) of the same key.
    pub address: String,
    /// Configured roles: any of `operator`, `coprocessor`, `client`; `full` when none.
    pub roles: Vec<String>,
    /// Height of the last committed block (0 = genesis only).
    pub height: u64,
    /// App hash after the last committed block (hex).
    pub app_hash: String,
    /// Proposer timestamp of the last committed block (ms since the Unix epoch), if any.
    #[serde(default)]
    pub last_block_time: Option<u64>,
    /// Connected peers.
    pub peers: u32,
    /// True while the node is catching up by block sync.
    pub syncing: bool,
    /// The chain id (genesis hash, hex) once a genesis is loaded.
    #[serde(default)]
    pub chain_id: Option<String>,
    /// The node's clock minus `last_block_time` when it answered (ms).
    #[serde(default)]
    pub last_block_age_ms: Option<u64>,
    /// True when no block has been committed for longer than `halt_after_ms` (and the node is
    /// not catching up).
    #[serde(default)]
    pub halted: bool,
    /// The node's halt threshold (ms): three empty-block intervals, at least 3 s.
    #[serde(default)]
    pub halt_after_ms: u64,
}

/// The body of every non-2xx API answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /v1/accounts/{address}`: the fields that number a new transaction. The document also
/// carries the balance and any coprocessor or operator stake (the market's account view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountNonces {
    /// The nonce of the account's next transaction on chain (its committed transactions).
    pub nonce: u64,
    /// The nonce a new transaction should carry: past the account's transactions pending in
    /// this node's mempool (the first free one from `nonce` on). Absent from older nodes.
    #[serde(default)]
    pub pending_nonce: Option<u64>,
}

impl AccountNonces {
    /// The nonce for the account's next transaction.
    pub fn next(&self) -> u64 {
        self.pending_nonce.unwrap_or(self.nonce).max(self.nonce)
    }
}

/// `POST /v1/tx`: the transaction is in the node's mempool (and its store) and on its way to a
/// block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxAccepted {
    /// The transaction hash (hex); a job's id is the hash of its submission.
    pub tx_hash: String,
    /// The signer's address (hex).
    pub signer: String,
}
