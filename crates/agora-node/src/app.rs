//! The market as the consensus application: adapts `agora_market::Market` to
//! `agora_consensus::Application` and persists it.
//!
//! Persistence is a snapshot of the market state in the node's store, written after every
//! `SNAPSHOT_EVERY` blocks; the consensus replica keeps every block, so on restart the market
//! resumes from its snapshot and the replica re-applies the blocks above it (see
//! `Application::info`). Receipts and events of each block are stored for the API.

use std::sync::{Arc, RwLock};

use agora_consensus::{Application, Block, BlockInfo};
use agora_market::{BlockContext, BlockResult, Market};
use agora_store::Store;
use agora_types::{Hash, Height, Timestamp};
use anyhow::Context;

/// Store tree holding the latest market snapshot.
pub const SNAPSHOT_TREE: &str = "market_snapshot";
/// Store tree holding each block's result (receipts and events), by big-endian height.
pub const RESULTS_TREE: &str = "market_results";
const SNAPSHOT_KEY: &[u8] = b"latest";
const SNAPSHOT_EVERY: u64 = 20;

/// The market state shared with the API and the coprocessor agent (read-mostly).
pub type SharedMarket = Arc<RwLock<Market>>;

/// Where the market application keeps its snapshot and its blocks' results: the node's sled
/// store, or memory in the whole-node simulator.
pub trait AppStore {
    /// The latest market snapshot, if one was written.
    fn snapshot(&self) -> anyhow::Result<Option<Vec<u8>>>;
    /// Record one block's result and, when given, the market snapshot after it, atomically.
    fn write_block(&self, result: &BlockResult, snapshot: Option<Vec<u8>>) -> anyhow::Result<()>;
    /// Replace the snapshot and make everything written durable.
    fn write_snapshot(&self, snapshot: Vec<u8>) -> anyhow::Result<()>;
    /// Where the store is, for error messages.
    fn describe(&self) -> String;
}

impl AppStore for Store {
    fn snapshot(&self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .tree(SNAPSHOT_TREE)?
            .get(SNAPSHOT_KEY)?
            .map(|b| b.to_vec()))
    }

    fn write_block(&self, result: &BlockResult, snapshot: Option<Vec<u8>>) -> anyhow::Result<()> {
        let mut batch = agora_store::Batch::new();
        batch.put(
            RESULTS_TREE,
            result.height.0.to_be_bytes(),
            serde_json::to_vec(result)?,
        );
        if let Some(snapshot) = snapshot {
            batch.put(SNAPSHOT_TREE, SNAPSHOT_KEY, snapshot);
        }
        self.apply(batch)?;
        Ok(())
    }

    fn write_snapshot(&self, snapshot: Vec<u8>) -> anyhow::Result<()> {
        self.tree(SNAPSHOT_TREE)?.insert(SNAPSHOT_KEY, snapshot)?;
        self.flush()?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

/// The consensus application of a node.
pub struct MarketApp<S: AppStore = Store> {
    market: SharedMarket,
    store: S,
    /// `Market::next_due` after the last commit (block time, ms).
    wake_at: Option<u64>,
    /// Fault injection ([`PANIC_AT_ENV`]): panic, holding the market lock, applying this height.
    panic_at: Option<u64>,
}

/// Environment variable naming a block height at which the chain task panics while applying
/// it (holding the market's write lock): the fail-stop test's fault. Unset in normal runs.
pub const PANIC_AT_ENV: &str = "AGORA_FAULT_CHAIN_PANIC_AT";

impl MarketApp<Store> {
    /// Open the node's market: from the latest snapshot in `store`, else from genesis. The
    /// fail-stop fault of [`PANIC_AT_ENV`] is read here.
    pub fn open(genesis: &agora_market::Genesis, store: Store) -> anyhow::Result<MarketApp> {
        let mut app = MarketApp::open_in(genesis, store)?;
        app.panic_at = std::env::var(PANIC_AT_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok());
        Ok(app)
    }
}

impl<S: AppStore> MarketApp<S> {
    /// Open the market on any [`AppStore`]: from its latest snapshot, else from genesis.
    pub fn open_in(genesis: &agora_market::Genesis, store: S) -> anyhow::Result<MarketApp<S>> {
        let mut market = match store.snapshot()? {
            Some(bytes) => Market::from_snapshot_bytes(&bytes).map_err(|e| {
                anyhow::anyhow!("market snapshot in {} is unreadable: {e}", store.describe())
            })?,
            None => Market::new(genesis).context("genesis is invalid")?,
        };
        market.set_vote_decoder(decode_vote_key);
        if market.chain_id() != genesis.hash() {
            anyhow::bail!(
                "the store at {} belongs to chain {}, but the genesis file is chain {}",
                store.describe(),
                market.chain_id(),
                genesis.hash()
            );
        }
        let wake_at = market.next_due().map(|t| t.0);
        Ok(MarketApp {
            market: Arc::new(RwLock::new(market)),
            store,
            wake_at,
            panic_at: None,
        })
    }

    pub fn shared(&self) -> SharedMarket {
        self.market.clone()
    }

    fn persist(&self, market: &Market, result: &BlockResult) -> anyhow::Result<()> {
        let snapshot = result
            .height
            .0
            .is_multiple_of(SNAPSHOT_EVERY)
            .then(|| market.to_snapshot_bytes());
        self.store.write_block(result, snapshot)
    }

    /// Write a snapshot now (at shutdown).
    pub fn snapshot_now(&self) -> anyhow::Result<()> {
        // A poisoned lock means a task died changing the market: that state is not written.
        let m = self
            .market
            .read()
            .map_err(|_| anyhow::anyhow!("the market lock is poisoned; not writing a snapshot"))?;
        self.store.write_snapshot(m.to_snapshot_bytes())
    }
}

// The market tells a proposal's evidence from a vote's by this step; both sides must agree.
const _: () =
    assert!(agora_consensus::context::PROPOSAL_STEP == agora_market::VoteKey::PROPOSAL_STEP);

/// The market's key of a signed vote or proposal payload: the consensus layout's own decoder
/// (`agora_consensus::context::signed_slot`). Installed in every replica's market, so evidence
/// transactions are judged identically everywhere.
pub fn decode_vote_key(bytes: &[u8]) -> Option<agora_market::VoteKey> {
    let slot = agora_consensus::context::signed_slot(bytes)?;
    Some(agora_market::VoteKey {
        height: slot.height,
        round: slot.round,
        step: slot.step,
    })
}

/// The market evidence transaction for a consensus double vote or double proposal, signed by
/// `key`.
pub fn evidence_tx(
    key: &agora_crypto::Keypair,
    market: &Market,
    ev: &agora_consensus::Evidence,
) -> Option<Vec<u8>> {
    let (operator, vote_a, signature_a, vote_b, signature_b) = match ev {
        agora_consensus::Evidence::DoubleVote(pair) => {
            let (a, b) = (&pair.0, &pair.1);
            (
                a.message.validator.0,
                a.message.signing_bytes(),
                a.signature,
                b.message.signing_bytes(),
                b.signature,
            )
        }
        agora_consensus::Evidence::DoubleProposal(pair) => {
            let (a, b) = (&pair.0.signed, &pair.1.signed);
            (
                a.message.proposer.0,
                a.message.signing_bytes(),
                a.signature,
                b.message.signing_bytes(),
                b.signature,
            )
        }
    };
    if !market.takes_evidence_against(&operator) {
        // Not an operator, or jailed already: the market would refuse it (logged only).
        return None;
    }
    let evidence = agora_market::Evidence {
        operator,
        vote_a,
        signature_a,
        vote_b,
        signature_b,
    };
    let builder = agora_market::TxBuilder::new(key.clone(), market.chain_id());
    let nonce = market.nonce(&key.address());
    Some(builder.bytes(nonce, agora_market::TxKind::Evidence(evidence)))
}

/// A block's stored result, for the API.
pub fn block_result(
    history: &crate::history::History,
    height: u64,
) -> anyhow::Result<Option<BlockResult>> {
    Ok(match history.get(RESULTS_TREE, height)? {
        Some(b) => Some(serde_json::from_slice(&b)?),
        None => None,
    })
}

impl<S: AppStore> Application for MarketApp<S> {
    fn info(&self) -> (u64, Hash) {
        let m = self.market.read().expect("market lock");
        (m.height().0, m.app_hash())
    }

    fn check_tx(&self, tx: &[u8]) -> Result<(), String> {
        // `&self` checks: admission shares the lock with the API and the agent.
        let m = self.market.read().expect("market lock");
        m.check_tx_bytes(tx).map_err(|e| e.to_string())
    }

    fn check_relayed_tx(&self, tx: &[u8]) -> Result<(), String> {
        // Signature and nonce window only (ADR 006).
        let m = self.market.read().expect("market lock");
        m.check_relayed_tx_bytes(tx).map_err(|e| e.to_string())
    }

    fn recheck_tx(&self, tx: &[u8]) -> bool {
        // No signature check and no state check per pending tx per block (ADR 006).
        self.market
            .read()
            .expect("market lock")
            .recheck_tx_bytes(tx)
    }

    fn tx_slot(&self, tx: &[u8]) -> Option<(agora_types::Address, u64)> {
        agora_market::tx_slot(tx)
    }

    fn prepare_block(
        &mut self,
        _height: u64,
        _time: u64,
        candidates: &[Vec<u8>],
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let m = self.market.read().expect("market lock");
        agora_market::order_by_nonce(candidates, max_bytes, |a| m.nonce(a))
    }

    fn validate_block(&self, _block: &Block) -> bool {
        // Every tx is either applied or recorded as rejected by `apply_block`, so any ordered
        // list the consensus layer accepted (sizes are bounded there) is a valid block.
        true
    }

    fn commit(&mut self, block: &Block, info: &BlockInfo) -> Result<Hash, String> {
        // Participation and seed come from the block's `last_commit`s and VRF proof, which
        // every replica agrees on (ADR 009), never from this replica's own certificate.
        let ctx = BlockContext {
            height: Height(block.header.height),
            time: Timestamp(block.header.time),
            proposer: block.header.proposer,
            commit_power_bps: info.participation_bps,
            seed: info.seed,
            absent: info.absent.clone(),
        };
        let mut m = self.market.write().map_err(|_| {
            "the market lock is poisoned (a task panicked while changing it)".to_owned()
        })?;
        if self.panic_at == Some(block.header.height) {
            // Fault injection for the fail-stop test: die holding the market's write lock.
            panic!(
                "fault injection ({PANIC_AT_ENV}): chain task panics applying block {}",
                block.header.height
            );
        }
        // Consensus only hands us the next height with a non-decreasing time, so an error here
        // is a store/replay mismatch; `apply_block` checks both before it changes anything, and
        // the replica halts on the error.
        let result = m
            .apply_block(&ctx, &block.txs)
            .map_err(|e| format!("market cannot apply the block: {e}"))?;
        // A block whose result cannot be stored must not be acknowledged either: the snapshot
        // and the results tree are written in one batch, or not at all.
        self.persist(&m, &result)
            .map_err(|e| format!("cannot persist the block result: {e:#}"))?;
        self.wake_at = m.next_due().map(|t| t.0);
        Ok(result.app_hash)
    }

    fn wake_at(&self) -> Option<u64> {
        self.wake_at
    }
}
