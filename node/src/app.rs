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

/// The block's transactions, chosen from the mempool `candidates` (in arrival order): each
/// signer's transactions in nonce order, starting at its next nonce and without gaps (gossip may
/// deliver one sender's transactions out of order, and a transaction applied before its
/// predecessor would be rejected), within `max_bytes`. Signers appear in the order of their first
/// arrival. Signatures are not checked here: the replica re-checks its whole mempool after every
/// commit, and a transaction that still fails is recorded as rejected by `apply_block`, never
/// half-applied. Undecodable candidates are left out.
pub fn order_by_nonce(
    candidates: &[Vec<u8>],
    max_bytes: usize,
    next_nonce: impl Fn(&agora_types::Address) -> u64,
) -> Vec<Vec<u8>> {
    use std::collections::BTreeMap;
    let mut first_seen: Vec<agora_types::Address> = Vec::new();
    let mut by_signer: BTreeMap<agora_types::Address, BTreeMap<u64, &Vec<u8>>> = BTreeMap::new();
    for bytes in candidates {
        let Ok(env) = agora_market::decode_envelope(bytes) else {
            continue;
        };
        let Ok(tx) = agora_market::Transaction::decode(&env.payload) else {
            continue;
        };
        let queue = by_signer.entry(env.signer).or_insert_with(|| {
            first_seen.push(env.signer);
            BTreeMap::new()
        });
        // Two transactions with one nonce: the first to arrive wins.
        queue.entry(tx.nonce).or_insert(bytes);
    }
    let mut out = Vec::new();
    let mut used = 0usize;
    for signer in first_seen {
        let mut expected = next_nonce(&signer);
        for (nonce, bytes) in &by_signer[&signer] {
            if *nonce != expected {
                if *nonce > expected {
                    break;
                }
                continue;
            }
            if used + bytes.len() > max_bytes {
                return out;
            }
            used += bytes.len();
            out.push((*bytes).clone());
            expected += 1;
        }
    }
    out
}

/// A transaction's `(signer, nonce)`, the mempool slot it holds (ADR 008): read straight from
/// the bytes, with no signature check (admission made it) and no market lock.
pub fn tx_slot(bytes: &[u8]) -> Option<(agora_types::Address, u64)> {
    let env = agora_market::decode_envelope(bytes).ok()?;
    let tx = agora_market::Transaction::decode(&env.payload).ok()?;
    Some((env.signer, tx.nonce))
}

/// The consensus application of a node.
pub struct MarketApp {
    market: SharedMarket,
    store: Store,
    /// `Market::next_due` after the last commit (block time, ms).
    wake_at: Option<u64>,
}

impl MarketApp {
    /// Open the market: from the latest snapshot in `store`, else from genesis.
    pub fn open(genesis: &agora_market::Genesis, store: Store) -> anyhow::Result<MarketApp> {
        let tree = store.tree(SNAPSHOT_TREE)?;
        let market = match tree.get(SNAPSHOT_KEY)? {
            Some(bytes) => Market::from_snapshot_bytes(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "market snapshot in {} is unreadable: {e}",
                    store.path().display()
                )
            })?,
            None => Market::new(genesis).context("genesis is invalid")?,
        };
        let mut market = market;
        market.set_vote_decoder(decode_vote_key);
        if market.chain_id() != genesis.hash() {
            anyhow::bail!(
                "the store at {} belongs to chain {}, but the genesis file is chain {}",
                store.path().display(),
                market.chain_id(),
                genesis.hash()
            );
        }
        let wake_at = market.next_due().map(|t| t.0);
        Ok(MarketApp {
            market: Arc::new(RwLock::new(market)),
            store,
            wake_at,
        })
    }

    pub fn shared(&self) -> SharedMarket {
        self.market.clone()
    }

    fn persist(&self, market: &Market, result: &BlockResult) -> anyhow::Result<()> {
        let mut batch = agora_store::Batch::new();
        batch.put(
            RESULTS_TREE,
            result.height.0.to_be_bytes(),
            serde_json::to_vec(result)?,
        );
        if result.height.0.is_multiple_of(SNAPSHOT_EVERY) {
            batch.put(SNAPSHOT_TREE, SNAPSHOT_KEY, market.to_snapshot_bytes());
        }
        self.store.apply(batch)?;
        Ok(())
    }

    /// Write a snapshot now (at shutdown).
    pub fn snapshot_now(&self) -> anyhow::Result<()> {
        let m = self.market.read().expect("market lock");
        self.store
            .tree(SNAPSHOT_TREE)?
            .insert(SNAPSHOT_KEY, m.to_snapshot_bytes())?;
        self.store.flush()?;
        Ok(())
    }
}

/// Parse the bytes a validator signs for a vote (`"V" ‖ type ‖ height ‖ round ‖ has_value ‖
/// block hash`, see `agora_consensus::context::ConsVote::signing_bytes`) into the key two
/// conflicting votes share. Installed in every replica's market, so evidence transactions are
/// judged identically everywhere.
pub fn decode_vote_key(bytes: &[u8]) -> Option<agora_market::VoteKey> {
    if bytes.len() != 47 || bytes[0] != b'V' || bytes[1] > 1 || bytes[14] > 1 {
        return None;
    }
    Some(agora_market::VoteKey {
        height: u64::from_be_bytes(bytes[2..10].try_into().ok()?),
        round: u32::from_be_bytes(bytes[10..14].try_into().ok()?),
        step: bytes[1],
    })
}

/// The market evidence transaction for a consensus double vote, signed by `key`.
pub fn evidence_tx(
    key: &agora_crypto::Keypair,
    market: &Market,
    ev: &agora_consensus::Evidence,
) -> Option<Vec<u8>> {
    let agora_consensus::Evidence::DoubleVote(pair) = ev else {
        // The market slashes double votes; a double proposal is logged only.
        return None;
    };
    let (a, b) = (&pair.0, &pair.1);
    let evidence = agora_market::Evidence {
        operator: a.message.validator.0,
        vote_a: a.message.signing_bytes(),
        signature_a: a.signature,
        vote_b: b.message.signing_bytes(),
        signature_b: b.signature,
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

impl Application for MarketApp {
    fn info(&self) -> (u64, Hash) {
        let m = self.market.read().expect("market lock");
        (m.height().0, m.app_hash())
    }

    fn check_tx(&self, tx: &[u8]) -> Result<(), String> {
        let mut m = self.market.write().expect("market lock");
        m.check_tx_bytes(tx).map_err(|e| e.to_string())
    }

    fn check_relayed_tx(&self, tx: &[u8]) -> Result<(), String> {
        // Signature and nonce window only (ADR 006).
        let m = self.market.read().expect("market lock");
        m.check_relayed_tx_bytes(tx).map_err(|e| e.to_string())
    }

    fn recheck_tx(&self, tx: &[u8]) -> bool {
        // No signature check and no handler dry run per pending tx per block (ADR 006).
        self.market
            .read()
            .expect("market lock")
            .recheck_tx_bytes(tx)
    }

    fn tx_slot(&self, tx: &[u8]) -> Option<(agora_types::Address, u64)> {
        tx_slot(tx)
    }

    fn prepare_block(
        &mut self,
        _height: u64,
        _time: u64,
        candidates: &[Vec<u8>],
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let m = self.market.read().expect("market lock");
        order_by_nonce(candidates, max_bytes, |a| m.nonce(a))
    }

    fn validate_block(&self, _block: &Block) -> bool {
        // Every tx is either applied or recorded as rejected by `apply_block`, so any ordered
        // list the consensus layer accepted (sizes are bounded there) is a valid block.
        true
    }

    fn commit(&mut self, block: &Block, info: &BlockInfo) -> Hash {
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
        let mut m = self.market.write().expect("market lock");
        let result = match m.apply_block(&ctx, &block.txs) {
            Ok(r) => r,
            Err(e) => {
                // Consensus only hands us the next height with a non-decreasing time, so this is
                // a store/replay mismatch: refusing to continue is the only safe answer.
                panic!(
                    "market cannot apply committed block {}: {e}",
                    block.header.height
                );
            }
        };
        if let Err(e) = self.persist(&m, &result) {
            tracing::error!(target: "node.app", error = %e, "cannot persist block result");
        }
        self.wake_at = m.next_due().map(|t| t.0);
        result.app_hash
    }

    fn wake_at(&self) -> Option<u64> {
        self.wake_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_keys_come_from_consensus_signing_bytes() {
        use agora_consensus::context::{BlockId, ConsHeight, ConsVote, ValAddr};
        use arc_malachitebft_core_types::{NilOrVal, Round, VoteType};
        let vote = ConsVote {
            vote_type: VoteType::Precommit,
            height: ConsHeight(42),
            round: Round::new(3),
            value: NilOrVal::Val(BlockId(Hash([7; 32]))),
            validator: ValAddr(agora_crypto::Keypair::for_test(1).address()),
        };
        let key = decode_vote_key(&vote.signing_bytes()).expect("decodes");
        assert_eq!((key.height, key.round, key.step), (42, 3, 1));
        assert!(decode_vote_key(&vote.signing_bytes()[..46]).is_none());
        assert!(decode_vote_key(b"not a vote").is_none());
    }

    #[test]
    fn a_transactions_slot_is_its_signer_and_nonce() {
        let a = agora_market::TxBuilder::new(agora_crypto::Keypair::for_test(1), Hash([9; 32]));
        let to = agora_crypto::Keypair::for_test(3).address();
        let tx = agora_market::encode_envelope(&a.transfer(41, to, agora_types::Amount(1)));
        assert_eq!(tx_slot(&tx), Some((a.address(), 41)));
        assert_eq!(tx_slot(b"junk"), None);
    }

    #[test]
    fn blocks_take_each_signers_transactions_in_nonce_order_without_gaps() {
        let chain = Hash([9; 32]);
        let a = agora_market::TxBuilder::new(agora_crypto::Keypair::for_test(1), chain);
        let b = agora_market::TxBuilder::new(agora_crypto::Keypair::for_test(2), chain);
        let to = agora_crypto::Keypair::for_test(3).address();
        let tx = |t: &agora_market::TxBuilder, n: u64| {
            agora_market::encode_envelope(&t.transfer(n, to, agora_types::Amount(1)))
        };
        // a's next nonce is 5, b's is 0; a's 7 has a gap before it, a's 4 is stale.
        let candidates = vec![
            tx(&a, 6),
            tx(&b, 1),
            tx(&a, 5),
            tx(&a, 4),
            tx(&b, 0),
            tx(&a, 8),
            b"junk".to_vec(),
        ];
        let next = |x: &agora_types::Address| if *x == a.address() { 5 } else { 0 };
        let out = order_by_nonce(&candidates, usize::MAX, next);
        assert_eq!(out, vec![tx(&a, 5), tx(&a, 6), tx(&b, 0), tx(&b, 1)]);
        // The byte budget cuts the list, never reorders it.
        let one = tx(&a, 5).len();
        let out = order_by_nonce(&candidates, one * 3, next);
        assert_eq!(out, vec![tx(&a, 5), tx(&a, 6), tx(&b, 0)]);
        assert!(order_by_nonce(&candidates, one - 1, next).is_empty());
    }
}
