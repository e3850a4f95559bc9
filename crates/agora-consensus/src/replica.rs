//! The replica: the malachite driver plus everything the driver leaves to its host (see the
//! crate docs). Inputs are network bytes, ticks and txs, each with the caller's clock reading;
//! outputs are [`Effect`]s. Storage is behind [`KvStore`], so the replica does no I/O of its own
//! beyond what that trait does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use agora_crypto::{Domain, Keypair};
use agora_proto::v1 as pb;
use agora_types::{Address, Hash};
use arc_malachitebft_core_driver::{Driver, Input, Output};
use arc_malachitebft_core_types::{
    self as mt, ExtendedCommitCertificate, LinearTimeouts, PolkaCertificate, PolkaSignature,
    ThresholdParams, Timeout, TimeoutKind, Validity,
};
use prost::Message as _;

use crate::app::{Application, BlockInfo};
use crate::block::Block;
use crate::cert::{CertError, Certificate, CommitCertificate};
use crate::context::{
    round_u32, vote_type_code, BlockId, BlockValue, ConsHeight, Ctx, NilOrVal, Round,
    SignedProposal, SignedVote, ValAddr, VoteType,
};
use crate::mempool::{Mempool, MempoolError};
use crate::seed;
use crate::store::{trees, KvStore, StorageError};
use crate::validators::ValidatorSet;
use crate::wire::{self, Evidence, Message, ProposalMsg, WireError};

/// The chain's fixed parameters: its id (the genesis hash, part of every signature), genesis
/// time and the validator set.
#[derive(Clone, Debug)]
pub struct Genesis {
    pub chain_id: Hash,
    pub time: u64,
    pub validators: ValidatorSet,
}

/// Replica tuning. Timeouts grow linearly per round (`LinearTimeouts`) up to those values;
/// with `adaptive_timeouts` they start from the decision latency this replica observes instead.
#[derive(Clone, Debug)]
pub struct Config {
    /// The ceiling of every timeout (and the timeouts themselves when not adaptive).
    pub timeouts: LinearTimeouts,
    /// Derive timeouts from observed decision latency (bounded by `timeouts` and
    /// `timeout_floor_ms`), doubling after a failed round and halving after a decided one.
    pub adaptive_timeouts: bool,
    /// The least adaptive timeout.
    pub timeout_floor_ms: u64,
    /// Recent blocks whose `last_commit` signers count as active (participation, and who
    /// proposes first).
    pub activity_window: usize,
    /// A validator missing from this many consecutive `last_commit`s is passed over as proposer
    /// until it signs again (it still gets the last turn of a height's rotation).
    pub pass_over_after: usize,
    /// Empty blocks are proposed only this long after the previous block; blocks with txs as
    /// soon as consensus allows.
    pub empty_block_interval_ms: u64,
    /// A proposed block's time may be ahead of our clock by at most this much.
    pub max_clock_drift_ms: u64,
    pub max_block_bytes: usize,
    pub max_block_txs: usize,
    /// Messages for rounds beyond `current + round_lookahead` are refused.
    pub round_lookahead: u32,
    /// Most buffered messages for future heights.
    pub future_buffer: usize,
    /// Most txs in the mempool.
    pub mempool_max: usize,
    /// How long peers must be seen one height ahead before we ask them for blocks.
    pub sync_delay_ms: u64,
    /// Least time between two sync requests (and between two catch-up replies to one peer).
    pub sync_retry_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timeouts: LinearTimeouts::default(),
            adaptive_timeouts: true,
            timeout_floor_ms: 150,
            activity_window: 16,
            pass_over_after: 3,
            empty_block_interval_ms: 1000,
            max_clock_drift_ms: 2000,
            max_block_bytes: 4 * 1024 * 1024,
            max_block_txs: 5000,
            round_lookahead: 10,
            future_buffer: 10_000,
            mempool_max: 10_000,
            sync_delay_ms: 1500,
            sync_retry_ms: 500,
        }
    }
}

/// What the replica asks its host to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send to every peer.
    Broadcast(Vec<u8>),
    /// Send to one peer.
    SendTo(Address, Vec<u8>),
    /// Ask a peer (or, if it is gone, any peer) for committed blocks from `from_height`.
    RequestSync {
        peer: Address,
        from_height: u64,
        bytes: Vec<u8>,
    },
    /// A block and its commit certificate are durably stored and executed; `app_hash` is the
    /// application state after it.
    Committed {
        block: Arc<Block>,
        cert: CommitCertificate,
        app_hash: Hash,
    },
    /// A validator equivocated (verified evidence, ready for an evidence tx).
    Evidence(Evidence),
    /// Call [`Replica::tick`] at this time (replaces any earlier wakeup).
    NextWakeup(u64),
}

/// What a batch of messages produced: the effects, and per rejected message its index in the
/// batch and why.
pub type BatchOutcome = (Vec<Effect>, Vec<(usize, ConsensusError)>);

/// A rejected input or a fatal condition.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("bad signature from {0}")]
    BadSignature(Address),
    #[error("{0} is not a validator")]
    NotValidator(Address),
    #[error("proposal from {0} who is not the round's proposer")]
    WrongProposer(Address),
    #[error("round {0} is too far ahead")]
    RoundTooFar(u32),
    #[error("invalid proposal: {0}")]
    InvalidProposal(&'static str),
    #[error("invalid synced block: {0}")]
    InvalidSyncBlock(&'static str),
    #[error("invalid certificate: {0}")]
    Cert(#[from] CertError),
    #[error("tx rejected: {0}")]
    TxRejected(String),
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("replica halted: {0}")]
    Halted(String),
}

/// Counters for benches and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_in: u64,
    pub messages_rejected: u64,
    pub signatures_verified: u64,
    pub signatures_made: u64,
    pub broadcasts: u64,
    pub heights_committed: u64,
    pub heights_synced: u64,
    pub flushes: u64,
    /// Timeouts that fired, by kind.
    pub timeouts_propose: u64,
    pub timeouts_prevote: u64,
    pub timeouts_precommit: u64,
    /// Rounds above 0 entered (each one a failed round).
    pub rounds_failed: u64,
    /// Proposal received (or built) → decision, of the last height this replica decided
    /// itself; 0 for a synced height.
    pub last_decision_ms: u64,
    /// Voting power that signed the last block's `last_commit`, basis points of the total
    /// (10,000 before the first such block).
    pub participation_bps: u32,
}

enum Work {
    Input(u64, Input<Ctx>),
    Net(Address, Message, bool),
}

const TK_PROPOSE: u8 = 0;
const TK_PREVOTE: u8 = 1;
const TK_PRECOMMIT: u8 = 2;
const MAX_SEEN: usize = 100_000;
const MAX_TRACKED: usize = 4096;

/// The last committed block, as the next height needs it.
#[derive(Clone, Debug)]
struct Tip {
    hash: Hash,
    time: u64,
    app_hash: Hash,
    /// The block's seed (the genesis seed before the first block).
    seed: Hash,
    /// A commit certificate of the block (ours, grown by late precommits): the next block's
    /// `last_commit` when we propose it.
    cert: Option<Certificate>,
}

/// Most adaptive-timeout doublings after failed rounds.
const MAX_BACKOFF: u32 = 4;

/// A consensus participant (validator if it holds a key in the set, else a follower).
pub struct Replica<S: KvStore, A: Application> {
    genesis: Genesis,
    cfg: Config,
    key: Option<Keypair>,
    me: ValAddr,
    store: S,
    app: A,
    driver: Driver<Ctx>,
    /// The height being decided (last committed + 1).
    height: u64,
    tip: Tip,
    timers: BTreeMap<(u8, u32), u64>,
    pending_value: Option<u32>,
    urgent: VecDeque<Work>,
    queue: VecDeque<Work>,
    future: Vec<(Address, Message)>,
    own: BTreeMap<(u32, u8), Vec<u8>>,
    seen: BTreeSet<Hash>,
    fed_votes: BTreeMap<(u32, u8, Address), NilOrVal<BlockId>>,
    observed: BTreeSet<(Address, u64)>,
    reported: BTreeSet<(Address, u64)>,
    /// The second votes of validators that signed two values for one round and step of this
    /// height, by `(round, step, value)`. The driver counts only the first vote it got, so
    /// a double voter that sends each node a different one first can keep every node short of
    /// a quorum that exists; but a signed vote is a vote, and each counts toward its own
    /// value's certificate (two quorums for one round and step would share more than 1/3 of
    /// the power, so an honest validator would have signed both: never).
    equivocal: BTreeMap<(u32, VoteType, BlockId), Vec<SignedVote>>,
    /// The certificates counting those votes given to the driver (queued ones too, which
    /// the driver's own certificate lists do not show yet).
    equivocal_fed: BTreeSet<(u32, VoteType, BlockId)>,
    /// Vote evidence already emitted at this height, by `(round, step, validator, value of
    /// the second vote)`: a certificate re-applies votes, which finds the same conflict again.
    evidence_sent: BTreeSet<(u32, VoteType, Address, Option<BlockId>)>,
    mempool: Mempool,
    wal_seq: u64,
    next_rebroadcast: u64,
    ahead: Option<(u64, Address)>,
    last_sync_request: Option<u64>,
    helped: BTreeMap<Address, u64>,
    /// Signers of the `last_commit` of each recent block, oldest first (`activity_window`).
    recent: VecDeque<BTreeSet<Address>>,
    /// This height's proposer rotation (round `r` is entry `r mod n`).
    order: Vec<Address>,
    /// Observed decision latency (block due → decided, round-0 decisions), smoothed.
    latency_ms: u64,
    /// Adaptive timeouts are multiplied by `2^backoff`.
    backoff: u32,
    /// When the current height's block became due (start of the latency measurement).
    due_at: u64,
    /// The propose timer of the current round is waiting for the heartbeat: lower it to
    /// `now + propose_wait_ms` once a block is due.
    propose_waiting: Option<u64>,
    /// When the first proposal of each round of this height arrived (or was made).
    proposal_at: BTreeMap<u32, u64>,
    replaying: bool,
    dirty: bool,
    halted: Option<String>,
    stats: Stats,
}

fn be8(h: u64) -> [u8; 8] {
    h.to_be_bytes()
}

fn tk_code(k: TimeoutKind) -> Option<u8> {
    match k {
        TimeoutKind::Propose => Some(TK_PROPOSE),
        TimeoutKind::Prevote => Some(TK_PREVOTE),
        TimeoutKind::Precommit => Some(TK_PRECOMMIT),
        _ => None,
    }
}

fn tk_kind(c: u8) -> TimeoutKind {
    match c {
        TK_PROPOSE => TimeoutKind::Propose,
        TK_PREVOTE => TimeoutKind::Prevote,
        _ => TimeoutKind::Precommit,
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn to_polka(c: &Certificate) -> PolkaCertificate<Ctx> {
    PolkaCertificate {
        height: ConsHeight(c.height),
        round: Round::new(c.round),
        value_id: BlockId(c.block_hash),
        polka_signatures: c
            .signatures
            .iter()
            .map(|(a, s)| PolkaSignature::new(ValAddr(*a), *s))
            .collect(),
    }
}

impl<S: KvStore, A: Application> Replica<S, A> {
    /// Open a replica on `store`: re-apply stored blocks the app lacks, then replay the
    /// current height's WAL so the driver regains its votes and lock before anything is sent.
    /// `key` is `None` for a follower (full node).
    pub fn open(
        genesis: Genesis,
        cfg: Config,
        key: Option<Keypair>,
        store: S,
        app: A,
        now: u64,
    ) -> Result<(Self, Vec<Effect>), ConsensusError> {
        let me = ValAddr(key.as_ref().map(|k| k.address()).unwrap_or_default());
        let last = match store.last(trees::BLOCKS)? {
            Some((k, _)) => u64::from_be_bytes(
                k.as_slice()
                    .try_into()
                    .map_err(|_| ConsensusError::Corrupt("block key".into()))?,
            ),
            None => 0,
        };
        let driver = Driver::new(
            Ctx,
            ConsHeight(last + 1),
            genesis.validators.clone(),
            me,
            ThresholdParams::default(),
        );
        let (_, genesis_app_hash) = app.info();
        let mempool = Mempool::new(cfg.mempool_max);
        let mut r = Replica {
            tip: Tip {
                hash: Hash::ZERO,
                time: genesis.time,
                app_hash: genesis_app_hash,
                seed: seed::genesis_seed(&genesis.chain_id),
                cert: None,
            },
            genesis,
            cfg,
            key,
            me,
            store,
            app,
            driver,
            height: last + 1,
            timers: BTreeMap::new(),
            pending_value: None,
            urgent: VecDeque::new(),
            queue: VecDeque::new(),
            future: Vec::new(),
            own: BTreeMap::new(),
            seen: BTreeSet::new(),
            fed_votes: BTreeMap::new(),
            equivocal: BTreeMap::new(),
            equivocal_fed: BTreeSet::new(),
            evidence_sent: BTreeSet::new(),
            observed: BTreeSet::new(),
            reported: BTreeSet::new(),
            mempool,
            wal_seq: 0,
            next_rebroadcast: now,
            ahead: None,
            last_sync_request: None,
            helped: BTreeMap::new(),
            recent: VecDeque::new(),
            order: Vec::new(),
            latency_ms: 50,
            backoff: 0,
            due_at: now,
            propose_waiting: None,
            proposal_at: BTreeMap::new(),
            replaying: false,
            dirty: false,
            halted: None,
            stats: Stats {
                participation_bps: 10_000,
                ..Stats::default()
            },
        };
        r.catch_up_app(last)?;
        // Own txs accepted before a restart, re-checked against the caught-up state (ADR 008).
        let app = &r.app;
        r.mempool.reload(
            &mut r.store,
            now,
            |tx| app.recheck_tx(tx),
            |tx| app.tx_slot(tx),
        )?;
        let mut out = Vec::new();
        r.replaying = true;
        r.begin_height(now);
        r.run(now, &mut out)?;
        let h = r.height;
        let entries = r.store.scan_from(trees::WAL, &be8(h), usize::MAX)?;
        for (k, v) in entries {
            if k.len() != 16 || k[..8] != be8(h) || r.height != h {
                break;
            }
            r.wal_seq = u64::from_be_bytes(k[8..].try_into().unwrap_or([0; 8])) + 1;
            r.replay_entry(&v, now)?;
            r.run(now, &mut out)?;
        }
        r.replaying = false;
        r.finish(now, &mut out)?;
        Ok((r, out))
    }

    fn catch_up_app(&mut self, last: u64) -> Result<(), ConsensusError> {
        let (app_height, _) = self.app.info();
        if app_height > last {
            return Err(ConsensusError::Corrupt(format!(
                "application at height {app_height}, blocks only to {last}"
            )));
        }
        self.load_recent(app_height)?;
        for h in app_height + 1..=last {
            let (b, _) = self
                .stored_block(h)?
                .ok_or_else(|| ConsensusError::Corrupt(format!("block {h} missing")))?;
            let info = self.block_info(&b)?;
            let hash = self.app.commit(&b, &info).map_err(|e| {
                ConsensusError::Corrupt(format!(
                    "the application cannot apply stored block {h}: {e}"
                ))
            })?;
            self.store.put(trees::APP_HASH, &be8(h), hash.as_bytes())?;
        }
        if last > 0 {
            let (b, c) = self
                .stored_block(last)?
                .ok_or_else(|| ConsensusError::Corrupt(format!("block {last} missing")))?;
            let app_hash = match self.store.get(trees::APP_HASH, &be8(last))? {
                Some(v) => {
                    Hash::from_slice(&v).map_err(|_| ConsensusError::Corrupt("app hash".into()))?
                }
                // Crashed between executing the block and recording its app hash.
                None => self.app.info().1,
            };
            if self.app.info().1 != app_hash {
                return Err(ConsensusError::Corrupt(format!(
                    "application state differs from the app hash of block {last}"
                )));
            }
            self.tip = Tip {
                hash: b.hash(),
                time: b.header.time,
                app_hash,
                seed: seed::output(&b.header.seed_proof).ok_or_else(|| {
                    ConsensusError::Corrupt(format!("seed proof of block {last}"))
                })?,
                cert: Some(c),
            };
        }
        Ok(())
    }

    /// Rebuild the activity window as it was after block `upto` from the stored blocks.
    fn load_recent(&mut self, upto: u64) -> Result<(), ConsensusError> {
        self.recent.clear();
        let from = upto
            .saturating_sub(self.cfg.activity_window as u64)
            .saturating_add(1)
            .max(1);
        for h in from..=upto {
            let (b, _) = self
                .stored_block(h)?
                .ok_or_else(|| ConsensusError::Corrupt(format!("block {h} missing")))?;
            self.note_activity(&b);
        }
        Ok(())
    }

    /// Add a block's `last_commit` signers to the activity window.
    fn note_activity(&mut self, b: &Block) {
        if let Some(c) = &b.last_commit {
            self.recent
                .push_back(c.signatures.iter().map(|(a, _)| *a).collect());
            while self.recent.len() > self.cfg.activity_window.max(1) {
                self.recent.pop_front();
            }
        }
    }

    /// The replicated facts of block `b`, whose `last_commit` must already be in the window.
    fn block_info(&mut self, b: &Block) -> Result<BlockInfo, ConsensusError> {
        self.note_activity(b);
        let seed = seed::output(&b.header.seed_proof).ok_or_else(|| {
            ConsensusError::Corrupt(format!("seed proof of block {}", b.header.height))
        })?;
        let vs = &self.genesis.validators;
        if self.recent.is_empty() {
            return Ok(BlockInfo {
                seed,
                participation_bps: 10_000,
                absent: Vec::new(),
            });
        }
        let mut signed: u64 = 0;
        let mut absent = Vec::new();
        for v in vs.validators() {
            if self.recent.iter().any(|s| s.contains(&v.address.0)) {
                signed = signed.saturating_add(v.power);
            } else {
                absent.push(v.address.0);
            }
        }
        absent.sort();
        let bps = u128::from(signed) * 10_000 / u128::from(vs.total_power().max(1));
        Ok(BlockInfo {
            seed,
            participation_bps: bps.min(10_000) as u32,
            absent,
        })
    }

    /// Validators missing from each of the last `pass_over_after` `last_commit`s.
    fn passed_over(&self) -> BTreeSet<Address> {
        let k = self.cfg.pass_over_after;
        if k == 0 || self.recent.len() < k {
            return BTreeSet::new();
        }
        self.genesis
            .validators
            .validators()
            .iter()
            .map(|v| v.address.0)
            .filter(|a| self.recent.iter().rev().take(k).all(|s| !s.contains(a)))
            .collect()
    }

    /// The proposer of round `r` of the current height.
    fn proposer_of(&self, r: u32) -> ValAddr {
        if self.order.is_empty() {
            return self.genesis.validators.proposer(self.height, r).address;
        }
        ValAddr(self.order[(r as usize) % self.order.len()])
    }

    fn stored_block(&self, h: u64) -> Result<Option<(Block, Certificate)>, ConsensusError> {
        let b = self.store.get(trees::BLOCKS, &be8(h))?;
        let c = self.store.get(trees::CERTS, &be8(h))?;
        match (b, c) {
            (Some(b), Some(c)) => Ok(Some((
                wire::decode_block(&b).map_err(|e| ConsensusError::Corrupt(e.to_string()))?,
                wire::decode_cert(&c).map_err(|e| ConsensusError::Corrupt(e.to_string()))?,
            ))),
            _ => Ok(None),
        }
    }

    // ----- public API -----

    /// Handle bytes from peer `from`. `Err` means the message was rejected (score the peer);
    /// the replica is unaffected.
    pub fn handle_message(
        &mut self,
        from: Address,
        bytes: &[u8],
        now: u64,
    ) -> Result<Vec<Effect>, ConsensusError> {
        self.check_halted()?;
        self.stats.messages_in += 1;
        let msg = match wire::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.messages_rejected += 1;
                return Err(e.into());
            }
        };
        let mut out = Vec::new();
        if let Err(e) = self.on_message(from, msg, false, now, &mut out) {
            if matches!(e, ConsensusError::Storage(_)) {
                self.halted = Some(e.to_string());
            }
            self.stats.messages_rejected += 1;
            // Whatever was accepted before the failure still has to be processed.
            self.run(now, &mut out)?;
            self.finish(now, &mut out)?;
            return Err(e);
        }
        self.run(now, &mut out)?;
        self.finish(now, &mut out)?;
        Ok(out)
    }

    /// Handle a batch of messages that were ready at once, with one durable flush for the whole
    /// batch (group commit): every input is written to the WAL, the driver runs after each, and
    /// the effects — our votes among them — are returned only after the flush. Returns the
    /// effects and, per rejected message, its index and why (score those peers).
    pub fn handle_batch(
        &mut self,
        msgs: &[(Address, &[u8])],
        now: u64,
    ) -> Result<BatchOutcome, ConsensusError> {
        self.check_halted()?;
        let mut out = Vec::new();
        let mut rejected = Vec::new();
        for (i, (from, bytes)) in msgs.iter().enumerate() {
            self.stats.messages_in += 1;
            let msg = match wire::decode(bytes) {
                Ok(m) => m,
                Err(e) => {
                    self.stats.messages_rejected += 1;
                    rejected.push((i, e.into()));
                    continue;
                }
            };
            if let Err(e) = self.on_message(*from, msg, false, now, &mut out) {
                self.stats.messages_rejected += 1;
                if matches!(e, ConsensusError::Storage(_)) {
                    self.halted = Some(e.to_string());
                    self.run(now, &mut out)?;
                    self.finish(now, &mut out)?;
                    return Err(e);
                }
                rejected.push((i, e));
            }
            self.run(now, &mut out)?;
            if self.halted.is_some() {
                break;
            }
        }
        self.finish(now, &mut out)?;
        Ok((out, rejected))
    }

    /// Fire due timeouts, rebroadcast for liveness, propose when a block is due, ask for sync.
    pub fn tick(&mut self, now: u64) -> Result<Vec<Effect>, ConsensusError> {
        self.check_halted()?;
        let mut out = Vec::new();
        let due: Vec<(u8, u32)> = self
            .timers
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| *k)
            .collect();
        for (kind, round) in due {
            self.timers.remove(&(kind, round));
            tracing::debug!(target: "consensus.timer", height = self.height, round, kind, now, "timeout elapsed");
            match kind {
                TK_PROPOSE => self.stats.timeouts_propose += 1,
                TK_PREVOTE => self.stats.timeouts_prevote += 1,
                _ => self.stats.timeouts_precommit += 1,
            }
            // A round that timed out: be more patient until a height decides again.
            self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
            self.wal_append(
                pb::wal_entry::Kind::Timeout((u64::from(round) << 2) | u64::from(kind)),
                false,
            )?;
            self.queue.push_back(Work::Input(
                self.height,
                Input::TimeoutElapsed(Timeout::new(Round::new(round), tk_kind(kind))),
            ));
        }
        if now >= self.next_rebroadcast {
            let r = round_u32(self.driver.round());
            // Own messages of the last three rounds: peers that fell behind by a round (or
            // lost our precommit) need them, and the driver has no timeout that would save them.
            for ((round, _), bytes) in &self.own {
                if *round <= r && *round + 2 >= r {
                    out.push(Effect::Broadcast(bytes.clone()));
                    self.stats.broadcasts += 1;
                }
            }
            self.next_rebroadcast = now.saturating_add(
                ms(self
                    .cfg
                    .timeouts
                    .duration_for(Timeout::new(self.driver.round(), TimeoutKind::Rebroadcast)))
                .max(1),
            );
        }
        if let Some((since, peer)) = self.ahead {
            if now >= since.saturating_add(self.cfg.sync_delay_ms) {
                self.request_sync(peer, now, &mut out);
            }
        }
        // Own txs still waiting go out again (they may have been accepted with no peers).
        for tx in self.mempool.rebroadcast_due(now) {
            out.push(Effect::Broadcast(wire::encode(&Message::Tx(tx))));
            self.stats.broadcasts += 1;
        }
        self.run(now, &mut out)?;
        self.finish(now, &mut out)?;
        Ok(out)
    }

    /// Admit a local tx to the mempool and gossip it.
    pub fn submit_tx(&mut self, tx: Vec<u8>, now: u64) -> Result<Vec<Effect>, ConsensusError> {
        self.admit_tx(tx, now, false)
    }

    /// Admit a tx a peer gossiped (checked with `Application::check_relayed_tx`) and pass it on.
    pub fn relay_tx(&mut self, tx: Vec<u8>, now: u64) -> Result<Vec<Effect>, ConsensusError> {
        self.admit_tx(tx, now, true)
    }

    fn admit_tx(
        &mut self,
        tx: Vec<u8>,
        now: u64,
        relayed: bool,
    ) -> Result<Vec<Effect>, ConsensusError> {
        self.check_halted()?;
        let bytes = wire::encode(&Message::Tx(tx.clone()));
        let mut out = Vec::new();
        // A relayed tx is passed on only if it is new here; an own one always (a resubmission).
        if self.add_tx(tx, relayed, now)? || !relayed {
            out.push(Effect::Broadcast(bytes));
            self.stats.broadcasts += 1;
        }
        self.run(now, &mut out)?;
        self.finish(now, &mut out)?;
        Ok(out)
    }

    /// Last committed height (0 before the first block).
    pub fn height(&self) -> u64 {
        self.height - 1
    }
    /// The current round of the height being decided.
    pub fn round(&self) -> u32 {
        round_u32(self.driver.round())
    }
    pub fn last_block_hash(&self) -> Hash {
        self.tip.hash
    }
    /// App hash after the last committed block.
    pub fn app_hash(&self) -> Hash {
        self.tip.app_hash
    }
    pub fn last_block_time(&self) -> u64 {
        self.tip.time
    }
    /// A committed block with its commit certificate.
    pub fn block(&self, height: u64) -> Result<Option<(Block, Certificate)>, ConsensusError> {
        self.stored_block(height)
    }
    pub fn validator_set(&self) -> &ValidatorSet {
        &self.genesis.validators
    }
    pub fn chain_id(&self) -> Hash {
        self.genesis.chain_id
    }
    pub fn address(&self) -> Address {
        self.me.0
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn app(&self) -> &A {
        &self.app
    }
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }
    /// The next nonce for `signer` whose committed nonce is `from`: past its pending txs here
    /// (see [`Mempool::pending_nonce`]).
    pub fn pending_nonce(&self, signer: &Address, from: u64) -> u64 {
        self.mempool.pending_nonce(signer, from)
    }
    /// One line for logs: height, round, step, lock and valid value.
    pub fn debug_state(&self) -> String {
        let rs = self.driver.round_state();
        let rv = |v: &Option<
            arc_malachitebft_core_state_machine::state::RoundValue<BlockValue>,
        >| match v {
            Some(v) => format!("{}@{}", v.value.id, round_u32(v.round)),
            None => "-".into(),
        };
        format!(
            "h{} r{} {:?} lock {} valid {} pending {:?} timers {:?} ahead {:?} synced {} last sync ask {:?} future {}",
            self.height,
            self.round(),
            self.driver.step(),
            rv(&rs.locked),
            rv(&rs.valid),
            self.pending_value,
            self.timers,
            self.ahead.map(|(t, p)| (t, p.short())),
            self.stats.heights_synced,
            self.last_sync_request,
            self.future.len(),
        )
    }

    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }
    /// `(validator, height)` pairs for which this replica fed two conflicting votes to consensus.
    pub fn observed_equivocations(&self) -> &BTreeSet<(Address, u64)> {
        &self.observed
    }
    /// `(validator, height)` pairs for which this replica emitted evidence.
    pub fn reported_equivocations(&self) -> &BTreeSet<(Address, u64)> {
        &self.reported
    }
    /// Give back the store and app (to reopen after a simulated crash).
    pub fn into_parts(self) -> (S, A) {
        (self.store, self.app)
    }

    // ----- internals -----

    fn check_halted(&self) -> Result<(), ConsensusError> {
        match &self.halted {
            Some(h) => Err(ConsensusError::Halted(h.clone())),
            None => Ok(()),
        }
    }

    fn is_validator(&self) -> bool {
        self.key.is_some() && self.genesis.validators.contains(&self.me.0)
    }

    fn begin_height(&mut self, now: u64) {
        let h = self.height;
        self.order = self.genesis.validators.rotation(h, &self.passed_over());
        let proposer = self.proposer_of(0);
        self.timers.clear();
        self.proposal_at.clear();
        self.propose_waiting = None;
        self.due_at = now;
        self.pending_value = None;
        self.own.clear();
        self.seen.clear();
        self.fed_votes.clear();
        self.equivocal.clear();
        self.equivocal_fed.clear();
        self.evidence_sent.clear();
        self.ahead = None;
        self.urgent.clear();
        self.queue.clear();
        self.wal_seq = 0;
        self.next_rebroadcast = now.saturating_add(ms(self.cfg.timeouts.rebroadcast));
        self.urgent.push_back(Work::Input(
            h,
            Input::NewRound(ConsHeight(h), Round::new(0), proposer),
        ));
        let future = std::mem::take(&mut self.future);
        for (from, m) in future {
            match msg_height(&m) {
                Some(mh) if mh == h => self.queue.push_back(Work::Net(from, m, true)),
                Some(mh) if mh > h => self.future.push((from, m)),
                _ => {}
            }
        }
    }

    fn run(&mut self, now: u64, out: &mut Vec<Effect>) -> Result<(), ConsensusError> {
        loop {
            let w = match self.urgent.pop_front() {
                Some(w) => w,
                None => match self.queue.pop_front() {
                    Some(w) => w,
                    None => {
                        // Idle: a block may have come due since the last input (a quiet
                        // tick must be able to propose, not only an arriving message).
                        self.try_propose(now)?;
                        if self.urgent.is_empty() && self.queue.is_empty() {
                            break;
                        }
                        continue;
                    }
                },
            };
            match w {
                Work::Input(h, input) => {
                    if h == self.height {
                        self.process(input, now, out)?;
                    }
                }
                Work::Net(from, m, pre) => {
                    if let Err(e) = self.on_message(from, m, pre, now, out) {
                        if matches!(e, ConsensusError::Storage(_)) {
                            self.halted = Some(e.to_string());
                            return Err(e);
                        }
                        tracing::debug!(target: "consensus.buffered", error = %e, "buffered message rejected");
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, now: u64, out: &mut Vec<Effect>) -> Result<(), ConsensusError> {
        if let Some(d) = self.propose_waiting {
            if self.block_due(now) {
                self.propose_waiting = None;
                let r = self.round();
                if let Some(t) = self.timers.get_mut(&(TK_PROPOSE, r)) {
                    *t = (*t).min(now.saturating_add(d));
                    if r == 0 {
                        self.due_at = now;
                    }
                }
            }
        }
        if self.dirty {
            self.store.flush()?;
            self.stats.flushes += 1;
            self.dirty = false;
        }
        let mut next = self.next_rebroadcast;
        // Own transactions waiting for a peer are sent again on a tick: a replica whose
        // consensus has nothing to do for a while (a follower) must still wake for them.
        if let Some(t) = self.mempool.rebroadcast_at() {
            next = next.min(t);
        }
        if let Some(d) = self.timers.values().min() {
            next = next.min(*d);
        }
        if self.pending_value.is_some() {
            next = next.min(self.empty_block_due().max(now + 1));
        }
        if let Some((since, _)) = self.ahead {
            // The next sync request is due when the delay has passed and the last request is
            // old enough to be repeated (`request_sync` refuses earlier ones).
            let retry = self
                .last_sync_request
                .map_or(0, |t| t.saturating_add(self.cfg.sync_retry_ms));
            next = next.min(since.saturating_add(self.cfg.sync_delay_ms).max(retry));
        }
        out.push(Effect::NextWakeup(next.max(now + 1)));
        Ok(())
    }

    fn wal_append(&mut self, kind: pb::wal_entry::Kind, valid: bool) -> Result<(), ConsensusError> {
        if self.replaying {
            return Ok(());
        }
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&be8(self.height));
        key.extend_from_slice(&be8(self.wal_seq));
        self.wal_seq += 1;
        let bytes = pb::WalEntry {
            kind: Some(kind),
            valid,
        }
        .encode_to_vec();
        self.store.put(trees::WAL, &key, &bytes)?;
        self.dirty = true;
        Ok(())
    }

    fn replay_entry(&mut self, bytes: &[u8], _now: u64) -> Result<(), ConsensusError> {
        use pb::wal_entry::Kind;
        let corrupt = |e: WireError| ConsensusError::Corrupt(format!("wal: {e}"));
        let e = pb::WalEntry::decode(bytes)
            .map_err(|e| ConsensusError::Corrupt(format!("wal: {e}")))?;
        let h = self.height;
        match e.kind {
            Some(Kind::Vote(v)) => {
                let v = wire::vote_from_pb(v).map_err(corrupt)?;
                self.queue.push_back(Work::Input(h, Input::Vote(v)));
            }
            Some(Kind::Proposal(p)) => {
                let p = wire::proposal_from_pb(p).map_err(corrupt)?;
                self.queue.push_back(Work::Input(
                    h,
                    Input::Proposal(p.signed, Validity::from_bool(e.valid)),
                ));
            }
            Some(Kind::Polka(c)) => {
                let c = wire::cert_from_pb(c).map_err(corrupt)?;
                self.queue
                    .push_back(Work::Input(h, Input::PolkaCertificate(to_polka(&c))));
            }
            Some(Kind::Timeout(t)) => {
                let round = (t >> 2) as u32;
                let kind = (t & 3) as u8;
                self.timers.remove(&(kind, round));
                self.queue.push_back(Work::Input(
                    h,
                    Input::TimeoutElapsed(Timeout::new(Round::new(round), tk_kind(kind))),
                ));
            }
            Some(Kind::OwnValue(p)) => {
                let p = wire::proposal_from_pb(p).map_err(corrupt)?;
                let r = round_u32(p.signed.message.round);
                if self.pending_value == Some(r) && self.driver.round() == Round::new(r) {
                    self.pending_value = None;
                    self.queue.push_back(Work::Input(
                        h,
                        Input::ProposeValue(Round::new(r), p.signed.message.value),
                    ));
                }
            }
            None => return Err(ConsensusError::Corrupt("empty wal entry".into())),
        }
        Ok(())
    }

    fn note_vote(&mut self, v: &SignedVote) {
        let m = &v.message;
        let key = (
            round_u32(m.round),
            vote_type_code(m.vote_type),
            m.validator.0,
        );
        match self.fed_votes.get(&key) {
            Some(prev) if *prev != m.value => {
                if self.observed.len() < MAX_TRACKED {
                    self.observed.insert((m.validator.0, self.height));
                }
            }
            Some(_) => {}
            None => {
                self.fed_votes.insert(key, m.value);
            }
        }
    }

    /// A quorum precommitted a value whose proposal this replica never got (an equivocating
    /// proposer sent it another one, or the proposal was lost): the height is decided, and
    /// the block can only come from a peer that has it. Ask a signer of the quorum for it now,
    /// and keep asking (each `sync_retry_ms`) until the height is done, rather than waiting
    /// for the next height's messages to show that this replica is behind: no validator sends
    /// this height's messages again once it has moved on.
    fn fetch_if_decided_elsewhere(&mut self, v: &SignedVote, now: u64, out: &mut Vec<Effect>) {
        let m = &v.message;
        let NilOrVal::Val(id) = &m.value else {
            return;
        };
        if m.vote_type != VoteType::Precommit
            || !(self.driver.votes().is_threshold_met(
                &m.round,
                VoteType::Precommit,
                mt::Threshold::Value(*id),
            ) || self
                .equivocal_fed
                .contains(&(round_u32(m.round), VoteType::Precommit, *id)))
            || self
                .driver
                .proposal_and_validity_for_round_and_value(m.round, *id)
                .is_some()
        {
            return;
        }
        tracing::debug!(target: "consensus.sync", height = self.height, round = round_u32(m.round), value = %id, "decided by a quorum without its proposal here; asking for the block");
        let since = now.saturating_sub(self.cfg.sync_delay_ms);
        if self.ahead.is_none_or(|(t, _)| t > since) {
            self.ahead = Some((since, m.validator.0));
        }
        self.request_sync(m.validator.0, now, out);
    }

    /// The votes of this height for `value` at `(round, step)`: those the driver counted and
    /// the second votes of double voters.
    fn votes_with_equivocators(&self, (r, t, id): (u32, VoteType, BlockId)) -> Vec<SignedVote> {
        let mut votes: BTreeMap<Address, SignedVote> = BTreeMap::new();
        if let Some(per_round) = self.driver.votes().per_round(Round::new(r)) {
            for v in per_round.received_votes() {
                let m = &v.message;
                if m.vote_type == t && m.value == NilOrVal::Val(id) {
                    votes.insert(m.validator.0, v.clone());
                }
            }
        }
        for v in self.equivocal.get(&(r, t, id)).into_iter().flatten() {
            votes
                .entry(v.message.validator.0)
                .or_insert_with(|| v.clone());
        }
        votes.into_values().collect()
    }

    /// If double voters' second votes complete a quorum for `value` at `(round, step)` that
    /// the driver's own count lacks, give the driver that certificate: a polka certificate for
    /// prevotes (it locks and precommits as on any polka), a commit certificate for precommits
    /// (it decides if it has the proposal).
    fn certify_with_equivocators(&mut self, key: (u32, VoteType, BlockId)) {
        if !self.equivocal.contains_key(&key) || self.equivocal_fed.contains(&key) {
            return;
        }
        let (r, t, id) = key;
        let round = Round::new(r);
        let precommit = t == VoteType::Precommit;
        if self
            .driver
            .votes()
            .is_threshold_met(&round, t, mt::Threshold::Value(id))
        {
            return;
        }
        let votes = self.votes_with_equivocators(key);
        let power: u64 = votes
            .iter()
            .filter_map(|v| self.genesis.validators.power_of(&v.message.validator.0))
            .sum();
        if !self.genesis.validators.is_quorum(power) {
            return;
        }
        self.equivocal_fed.insert(key);
        let h = self.height;
        let input = if precommit {
            Input::CommitCertificate(ExtendedCommitCertificate::from_votes(
                ConsHeight(h),
                round,
                id,
                votes,
            ))
        } else {
            Input::PolkaCertificate(PolkaCertificate {
                height: ConsHeight(h),
                round,
                value_id: id,
                polka_signatures: votes
                    .iter()
                    .map(|v| PolkaSignature::new(v.message.validator, v.signature))
                    .collect(),
            })
        };
        tracing::debug!(target: "consensus.equivocation", height = h, round = r, precommit, value = %id, "a quorum counting double voters' second votes");
        self.urgent.push_back(Work::Input(h, input));
    }

    fn process(
        &mut self,
        input: Input<Ctx>,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ConsensusError> {
        // Conflicts are noted only for votes the driver accepted, so the simulator can check
        // that each one it saw produced evidence.
        let mut vote = match &input {
            Input::Vote(v) => Some(v.clone()),
            _ => None,
        };
        tracing::trace!(target: "consensus.input", height = self.height, replaying = self.replaying, round = ?self.driver.round(), ?input, "input");
        let outputs = match self.driver.process(input) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(target: "consensus.driver", error = %e, "driver refused input");
                vote = None;
                Vec::new()
            }
        };
        // Evidence first: a second vote it records may complete a quorum this vote is part of.
        self.drain_evidence(out);
        if let Some(v) = vote {
            self.note_vote(&v);
            if let NilOrVal::Val(id) = v.message.value {
                let m = &v.message;
                self.certify_with_equivocators((round_u32(m.round), m.vote_type, id));
            }
            self.fetch_if_decided_elsewhere(&v, now, out);
        }
        let h = self.height;
        for o in outputs {
            if self.height != h {
                break;
            }
            self.on_output(o, now, out)?;
        }
        Ok(())
    }

    fn drain_evidence(&mut self, out: &mut Vec<Effect>) {
        let h = self.height;
        let votes = self.driver.take_vote_evidence();
        for (addr, pairs) in votes.iter() {
            for (a, b) in pairs {
                let m = &b.message;
                let (r, t) = (round_u32(m.round), m.vote_type);
                let second = match m.value {
                    NilOrVal::Val(id) => Some(id),
                    NilOrVal::Nil => None,
                };
                if m.height.0 == h && self.evidence_sent.len() < MAX_TRACKED {
                    if !self.evidence_sent.insert((r, t, addr.0, second)) {
                        continue;
                    }
                    // Once per (validator, round, step, value), by `evidence_sent`.
                    if let Some(id) = second {
                        let key = (r, t, id);
                        self.equivocal.entry(key).or_default().push(b.clone());
                        self.certify_with_equivocators(key);
                    }
                }
                if self.reported.len() < MAX_TRACKED {
                    self.reported.insert((addr.0, h));
                }
                out.push(Effect::Evidence(Evidence::DoubleVote(Box::new((
                    a.clone(),
                    b.clone(),
                )))));
            }
        }
        let props = self.driver.take_proposal_evidence();
        for (addr, pairs) in props.iter() {
            for (a, b) in pairs {
                if self.reported.len() < MAX_TRACKED {
                    self.reported.insert((addr.0, h));
                }
                out.push(Effect::Evidence(Evidence::DoubleProposal(Box::new((
                    ProposalMsg {
                        signed: a.clone(),
                        polka: None,
                    },
                    ProposalMsg {
                        signed: b.clone(),
                        polka: None,
                    },
                )))));
            }
        }
    }

    fn on_output(
        &mut self,
        o: Output<Ctx>,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ConsensusError> {
        let h = self.height;
        match o {
            Output::NewRound(_, r) => {
                self.timers.clear();
                self.pending_value = None;
                self.propose_waiting = None;
                if round_u32(r) > 0 {
                    self.stats.rounds_failed += 1;
                }
                let proposer = self.proposer_of(round_u32(r));
                self.urgent
                    .push_back(Work::Input(h, Input::NewRound(ConsHeight(h), r, proposer)));
            }
            Output::Propose(p) => {
                if !self.is_validator() {
                    return Ok(());
                }
                let r = round_u32(p.round);
                let sig = self.guarded_sign(
                    [&be8(h)[..], b"P", &r.to_be_bytes()].concat(),
                    [
                        &p.pol_round.as_i64().to_be_bytes()[..],
                        p.value.id.0.as_bytes(),
                    ]
                    .concat(),
                    Domain::Proposal,
                    p.signing_bytes(),
                )?;
                let polka = match p.pol_round {
                    Round::Some(pr) => self
                        .driver
                        .polka_certificate(Round::new(pr), &p.value.id)
                        .map(|c| {
                            Certificate::new(
                                h,
                                pr,
                                p.value.id.0,
                                c.polka_signatures
                                    .iter()
                                    .map(|s| (s.address.0, s.signature))
                                    .collect(),
                            )
                        }),
                    Round::Nil => None,
                };
                self.proposal_at.entry(r).or_insert(now);
                let signed = SignedProposal::new(p, sig);
                let bytes = wire::encode(&Message::Proposal(Box::new(ProposalMsg {
                    signed: signed.clone(),
                    polka,
                })));
                self.own.insert((r, 0), bytes.clone());
                out.push(Effect::Broadcast(bytes));
                self.stats.broadcasts += 1;
                self.urgent
                    .push_back(Work::Input(h, Input::Proposal(signed, Validity::Valid)));
            }
            Output::Vote(v) => {
                if !self.is_validator() {
                    return Ok(());
                }
                let r = round_u32(v.round);
                let t = vote_type_code(v.vote_type);
                let value = match &v.value {
                    NilOrVal::Nil => vec![0u8; 33],
                    NilOrVal::Val(id) => [&[1u8][..], id.0.as_bytes()].concat(),
                };
                let sig = self.guarded_sign(
                    [&be8(h)[..], b"V", &r.to_be_bytes(), &[t]].concat(),
                    value,
                    Domain::Vote,
                    v.signing_bytes(),
                )?;
                let signed = SignedVote::new(v, sig);
                let bytes = wire::encode(&Message::Vote(signed.clone()));
                self.own.insert((r, 1 + t), bytes.clone());
                out.push(Effect::Broadcast(bytes));
                self.stats.broadcasts += 1;
                self.urgent.push_back(Work::Input(h, Input::Vote(signed)));
            }
            Output::Decide(_, p) => {
                let r = p.round;
                let id = p.value.id;
                let votes = self.votes_with_equivocators((round_u32(r), VoteType::Precommit, id));
                let cert = Certificate::new(
                    h,
                    round_u32(r),
                    id.0,
                    votes
                        .iter()
                        .map(|v| (v.message.validator.0, v.signature))
                        .collect(),
                );
                let power: u64 = cert
                    .signatures
                    .iter()
                    .filter_map(|(a, _)| self.genesis.validators.power_of(a))
                    .sum();
                if !self.genesis.validators.is_quorum(power) {
                    // Cannot happen: the driver decides only on a precommit quorum.
                    tracing::error!(target: "consensus.decide", height = h, "decision without a quorum certificate");
                    return Ok(());
                }
                let pr = round_u32(r);
                self.stats.last_decision_ms = self
                    .proposal_at
                    .get(&pr)
                    .map_or(0, |t| now.saturating_sub(*t));
                if !self.replaying && round_u32(self.driver.round()) == 0 {
                    // Learn from healthy heights only; failed rounds are the backoff's job.
                    let sample = now.saturating_sub(self.due_at);
                    self.latency_ms = (self.latency_ms * 7 + sample) / 8;
                    self.backoff = self.backoff.saturating_sub(1);
                }
                self.commit(p.value, cert, now, out)?;
            }
            Output::ScheduleTimeout(t) => {
                if let (Some(kind), Some(r)) = (tk_code(t.kind), t.round.as_u32()) {
                    let d = self.timeout_ms(t);
                    let mut start = now;
                    if kind == TK_PROPOSE && !self.block_due(now) {
                        // The proposer waits for txs or the heartbeat, so the timeout counts
                        // from when a block is due, never from now: `finish` brings it forward
                        // when txs arrive.
                        start = now.max(self.empty_block_due());
                        self.propose_waiting = Some(d);
                    }
                    if kind == TK_PROPOSE && r == 0 {
                        self.due_at = start;
                    }
                    tracing::debug!(target: "consensus.timer", height = self.height, round = r, kind, start, ms = d, now, "timeout scheduled");
                    self.timers.insert((kind, r), start.saturating_add(d));
                }
            }
            Output::GetValue(_, r, _) => {
                if self.is_validator() {
                    self.pending_value = r.as_u32();
                }
            }
        }
        Ok(())
    }

    /// Sign unless a different message was already signed under `key` (then refuse).
    fn guarded_sign(
        &mut self,
        key: Vec<u8>,
        content: Vec<u8>,
        domain: Domain,
        msg: Vec<u8>,
    ) -> Result<agora_crypto::Signature, ConsensusError> {
        if let Some(prev) = self.store.get(trees::SIGNED, &key)? {
            if prev.len() == content.len() + 64 && prev[..content.len()] == content[..] {
                if let Some(s) = agora_crypto::Signature::from_slice(&prev[content.len()..]) {
                    return Ok(s);
                }
            }
            let reason =
                "refusing to sign a message conflicting with one already signed".to_owned();
            tracing::error!(target: "consensus.guard", height = self.height, "{reason}");
            self.halted = Some(reason.clone());
            return Err(ConsensusError::Halted(reason));
        }
        let key_pair = self
            .key
            .as_ref()
            .ok_or_else(|| ConsensusError::Halted("no key".into()))?;
        let sig = key_pair.sign(domain, &self.genesis.chain_id, &msg);
        self.stats.signatures_made += 1;
        self.store
            .put(trees::SIGNED, &key, &[&content[..], &sig.0[..]].concat())?;
        self.dirty = true;
        Ok(sig)
    }

    /// A timeout's duration. Adaptive: four times the observed decision latency (at least
    /// `timeout_floor_ms`), doubled per failed round since the last decided height
    /// (`backoff`) and grown linearly with the round, never above the configured timeout.
    fn timeout_ms(&self, t: Timeout) -> u64 {
        let ceiling = ms(self.cfg.timeouts.duration_for(t));
        if !self.cfg.adaptive_timeouts {
            return ceiling;
        }
        let round = u64::from(t.round.as_u32().unwrap_or(0));
        self.latency_ms
            .saturating_mul(4)
            .max(self.cfg.timeout_floor_ms)
            .saturating_mul(1 << self.backoff)
            .saturating_mul(round + 1)
            .min(ceiling)
    }

    /// Whether a block is due now: the heartbeat (or the application's clock) has come, or the
    /// mempool holds txs the application would put in a block. Every validator asks this of
    /// its own mempool, as the proposer does before proposing.
    fn block_due(&mut self, now: u64) -> bool {
        if now >= self.empty_block_due() {
            return true;
        }
        if self.mempool.is_empty() {
            return false;
        }
        let candidates = self.candidates();
        let time = now.max(self.tip.time + 1);
        !self
            .app
            .prepare_block(self.height, time, &candidates, self.cfg.max_block_bytes)
            .is_empty()
    }

    /// The mempool's txs a block may take, in arrival order.
    fn candidates(&self) -> Vec<Vec<u8>> {
        self.mempool.candidates(self.cfg.max_block_txs)
    }

    /// When a proposer proposes a block with no txs: at the heartbeat, or earlier when the
    /// application asks (never before the tip's time + 1).
    fn empty_block_due(&self) -> u64 {
        let heartbeat = self
            .tip
            .time
            .saturating_add(self.cfg.empty_block_interval_ms);
        match self.app.wake_at() {
            Some(t) => heartbeat.min(t.max(self.tip.time + 1)),
            None => heartbeat,
        }
    }

    fn try_propose(&mut self, now: u64) -> Result<(), ConsensusError> {
        let Some(r) = self.pending_value else {
            return Ok(());
        };
        if self.replaying || self.driver.round() != Round::new(r) || !self.driver.step_is_propose()
        {
            return Ok(());
        }
        let due = now >= self.empty_block_due();
        if self.mempool.is_empty() && !due {
            return Ok(());
        }
        let time = now.max(self.tip.time + 1);
        let candidates = self.candidates();
        let mut txs =
            self.app
                .prepare_block(self.height, time, &candidates, self.cfg.max_block_bytes);
        txs.truncate(self.cfg.max_block_txs);
        if txs.is_empty() && !due {
            return Ok(());
        }
        let Some(key) = self.key.as_ref() else {
            return Ok(());
        };
        let seed_proof = seed::prove(key, &self.genesis.chain_id, &self.tip.seed);
        let last_commit = if self.height > 1 {
            self.tip.cert.clone()
        } else {
            None
        };
        let block = Block::new(
            self.height,
            time,
            self.tip.hash,
            self.tip.app_hash,
            self.me.0,
            last_commit,
            seed_proof,
            txs,
        );
        let value = BlockValue::new(block);
        let record = ProposalMsg {
            signed: SignedProposal::new(
                Ctx.new_own(self.height, r, value.clone(), self.me),
                agora_crypto::Signature([0; 64]),
            ),
            polka: None,
        };
        self.wal_append(
            pb::wal_entry::Kind::OwnValue(wire::proposal_to_pb(&record)),
            true,
        )?;
        self.pending_value = None;
        self.urgent.push_back(Work::Input(
            self.height,
            Input::ProposeValue(Round::new(r), value),
        ));
        Ok(())
    }

    fn validity(&self, p: &crate::context::ConsProposal, now: u64) -> bool {
        let b = &p.value.block;
        let hd = &b.header;
        hd.height == self.height
            && hd.prev_hash == self.tip.hash
            && hd.app_hash == self.tip.app_hash
            // A re-proposal (pol_round set) carries a block another validator built.
            && (hd.proposer == p.proposer.0 || (p.pol_round.is_defined() && self.genesis.validators.contains(&hd.proposer)))
            && hd.time > self.tip.time
            && hd.time <= now.saturating_add(self.cfg.max_clock_drift_ms)
            && b.txs.len() <= self.cfg.max_block_txs
            && b.tx_bytes() <= self.cfg.max_block_bytes
            && self.check_chain_fields(b).is_ok()
            && self.app.validate_block(b)
    }

    /// The fields a block takes from the chain before it: `last_commit` must be a valid commit
    /// certificate of the tip (none for the first block), and the seed proof the header's
    /// proposer's VRF proof over the tip's seed. Returns the block's seed.
    fn check_chain_fields(&self, b: &Block) -> Result<Hash, &'static str> {
        let hd = &b.header;
        match (&b.last_commit, hd.height) {
            (None, 1) => {}
            (Some(_), 1) => return Err("first block carries a last commit"),
            (None, _) => return Err("last commit missing"),
            (Some(c), _) => {
                if c.height + 1 != hd.height || c.block_hash != self.tip.hash {
                    return Err("last commit is not for the previous block");
                }
                c.verify(&self.genesis.validators, &self.genesis.chain_id)
                    .map_err(|_| "last commit does not verify")?;
            }
        }
        if !b.last_commit_matches() {
            return Err("last commit hash mismatch");
        }
        seed::verify(
            &hd.proposer,
            &self.genesis.chain_id,
            &self.tip.seed,
            &hd.seed_proof,
        )
        .ok_or("seed proof does not verify")
    }

    /// Admit a tx; `Ok(true)` if it is new to the mempool. One tx per `(signer, nonce)` slot
    /// (ADR 008): a local tx for a taken slot is refused, a relayed one dropped (first seen
    /// wins; the peer did nothing wrong). An own tx is stored and flushed before the caller's
    /// acknowledgement.
    fn add_tx(&mut self, tx: Vec<u8>, relayed: bool, now: u64) -> Result<bool, ConsensusError> {
        let checked = if relayed {
            self.app.check_relayed_tx(&tx)
        } else {
            self.app.check_tx(&tx)
        };
        checked.map_err(ConsensusError::TxRejected)?;
        let slot = self.app.tx_slot(&tx);
        let own = (!relayed).then_some(now);
        match self.mempool.insert(&mut self.store, tx, slot, own) {
            Ok(added) => {
                self.dirty |= !relayed;
                Ok(added == crate::mempool::Admitted::Added)
            }
            Err(MempoolError::NoncePending { .. }) if relayed => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn first_seen(&mut self, bytes: &[u8], sig: &agora_crypto::Signature) -> bool {
        let mut h = blake3::Hasher::new();
        h.update(bytes);
        h.update(&sig.0);
        let id = Hash(*h.finalize().as_bytes());
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        self.seen.insert(id)
    }

    fn buffer_future(
        &mut self,
        from: Address,
        m: Message,
        mh: u64,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        if mh <= self.height + 2 && self.future.len() < self.cfg.future_buffer {
            self.future.push((from, m));
        }
        if self.ahead.is_none() {
            self.ahead = Some((now, from));
        }
        if mh > self.height + 1 {
            self.request_sync(from, now, out);
        }
    }

    fn request_sync(&mut self, peer: Address, now: u64, out: &mut Vec<Effect>) {
        if let Some(t) = self.last_sync_request {
            if now < t.saturating_add(self.cfg.sync_retry_ms) {
                return;
            }
        }
        self.last_sync_request = Some(now);
        let bytes = wire::encode(&Message::SyncRequest {
            from_height: self.height,
            max_blocks: wire::MAX_SYNC_BLOCKS as u32,
        });
        out.push(Effect::RequestSync {
            peer,
            from_height: self.height,
            bytes,
        });
    }

    fn sync_response(
        &self,
        from_height: u64,
        max: usize,
    ) -> Result<Vec<(Block, Certificate)>, ConsensusError> {
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        let mut h = from_height.max(1);
        while h < self.height && blocks.len() < max.min(wire::MAX_SYNC_BLOCKS) {
            let Some((b, c)) = self.stored_block(h)? else {
                break;
            };
            bytes += b.tx_bytes() + 1024;
            blocks.push((b, c));
            if bytes > wire::MAX_MESSAGE_BYTES / 2 {
                break;
            }
            h += 1;
        }
        Ok(blocks)
    }

    fn help_behind(
        &mut self,
        peer: Address,
        their_height: u64,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ConsensusError> {
        if let Some(t) = self.helped.get(&peer) {
            if now < t.saturating_add(self.cfg.sync_retry_ms) {
                return Ok(());
            }
        }
        if self.helped.len() >= MAX_TRACKED {
            self.helped.clear();
        }
        self.helped.insert(peer, now);
        let blocks = self.sync_response(their_height, wire::MAX_SYNC_BLOCKS)?;
        if !blocks.is_empty() {
            out.push(Effect::SendTo(
                peer,
                wire::encode(&Message::SyncResponse(blocks)),
            ));
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        from: Address,
        m: Message,
        pre: bool,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ConsensusError> {
        let h = self.height;
        match m {
            Message::Vote(v) => {
                let mh = v.message.height.0;
                let signer = v.message.validator.0;
                if mh + 1 == h {
                    self.late_precommit(&v);
                }
                if mh < h {
                    return self.help_behind(from, mh, now, out);
                }
                if !self.genesis.validators.contains(&signer) {
                    return Err(ConsensusError::NotValidator(signer));
                }
                let sb = v.message.signing_bytes();
                if !pre {
                    if !self.first_seen(&sb, &v.signature) {
                        return Ok(());
                    }
                    self.stats.signatures_verified += 1;
                    agora_crypto::verify(
                        &signer,
                        Domain::Vote,
                        &self.genesis.chain_id,
                        &sb,
                        &v.signature,
                    )
                    .map_err(|_| ConsensusError::BadSignature(signer))?;
                }
                if mh > h {
                    self.buffer_future(from, Message::Vote(v), mh, now, out);
                    return Ok(());
                }
                let r = round_u32(v.message.round);
                if r > self.round().saturating_add(self.cfg.round_lookahead) {
                    return Err(ConsensusError::RoundTooFar(r));
                }
                self.wal_append(pb::wal_entry::Kind::Vote(wire::vote_to_pb(&v)), false)?;
                self.queue.push_back(Work::Input(h, Input::Vote(v)));
            }
            Message::Proposal(pm) => {
                let p = &pm.signed.message;
                let mh = p.height.0;
                if mh < h {
                    return Ok(());
                }
                let r = round_u32(p.round);
                // A future height's rotation depends on blocks we do not have yet: its
                // proposer is checked when the buffered proposal is replayed.
                if mh == h && p.proposer != self.proposer_of(r) {
                    return Err(ConsensusError::WrongProposer(p.proposer.0));
                }
                if !self.genesis.validators.contains(&p.proposer.0) {
                    return Err(ConsensusError::NotValidator(p.proposer.0));
                }
                if let Round::Some(pr) = p.pol_round {
                    if pr >= r {
                        return Err(ConsensusError::InvalidProposal("pol_round not below round"));
                    }
                }
                let sb = p.signing_bytes();
                if !pre {
                    if !self.first_seen(&sb, &pm.signed.signature) {
                        return Ok(());
                    }
                    self.stats.signatures_verified += 1;
                    agora_crypto::verify(
                        &p.proposer.0,
                        Domain::Proposal,
                        &self.genesis.chain_id,
                        &sb,
                        &pm.signed.signature,
                    )
                    .map_err(|_| ConsensusError::BadSignature(p.proposer.0))?;
                }
                if mh > h {
                    self.buffer_future(from, Message::Proposal(pm), mh, now, out);
                    return Ok(());
                }
                if r > self.round().saturating_add(self.cfg.round_lookahead) {
                    return Err(ConsensusError::RoundTooFar(r));
                }
                if let (Some(c), Round::Some(pr)) = (&pm.polka, p.pol_round) {
                    if c.height == h && c.round == pr && c.block_hash == p.value.id.0 {
                        self.stats.signatures_verified += c.signatures.len() as u64;
                        if c.verify_polka(&self.genesis.validators, &self.genesis.chain_id)
                            .is_ok()
                        {
                            self.wal_append(
                                pb::wal_entry::Kind::Polka(wire::cert_to_pb(c)),
                                false,
                            )?;
                            self.queue
                                .push_back(Work::Input(h, Input::PolkaCertificate(to_polka(c))));
                        }
                    }
                }
                let valid = self.validity(p, now);
                self.proposal_at.entry(r).or_insert(now);
                let rec = ProposalMsg {
                    signed: pm.signed.clone(),
                    polka: None,
                };
                self.wal_append(
                    pb::wal_entry::Kind::Proposal(wire::proposal_to_pb(&rec)),
                    valid,
                )?;
                self.queue.push_back(Work::Input(
                    h,
                    Input::Proposal(pm.signed, Validity::from_bool(valid)),
                ));
            }
            Message::SyncRequest {
                from_height,
                max_blocks,
            } => {
                let blocks = self.sync_response(from_height, max_blocks as usize)?;
                if !blocks.is_empty() {
                    out.push(Effect::SendTo(
                        from,
                        wire::encode(&Message::SyncResponse(blocks)),
                    ));
                }
            }
            Message::SyncResponse(blocks) => {
                let mut applied = 0;
                for (b, c) in blocks {
                    let bh = b.header.height;
                    if bh < self.height {
                        continue;
                    }
                    if bh > self.height {
                        break;
                    }
                    match self.apply_synced(b, c, now, out) {
                        Ok(()) => applied += 1,
                        // Keep what was applied (and its effects); drop the rest.
                        Err(e)
                            if applied > 0
                                && !matches!(
                                    e,
                                    ConsensusError::Storage(_) | ConsensusError::Halted(_)
                                ) =>
                        {
                            tracing::debug!(target: "consensus.sync", error = %e, "rest of sync response rejected");
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Message::Tx(t) => {
                self.add_tx(t, true, now)?;
            }
        }
        Ok(())
    }

    /// A precommit for the block we just committed that missed our certificate: add it, so the
    /// `last_commit` we propose shows every validator that signed in time.
    fn late_precommit(&mut self, v: &SignedVote) {
        let m = &v.message;
        let Some(cert) = self.tip.cert.as_mut() else {
            return;
        };
        if m.vote_type != VoteType::Precommit
            || m.height.0 != cert.height
            || round_u32(m.round) != cert.round
            || m.value != NilOrVal::Val(BlockId(cert.block_hash))
            || !self.genesis.validators.contains(&m.validator.0)
            || cert.signatures.iter().any(|(a, _)| *a == m.validator.0)
        {
            return;
        }
        self.stats.signatures_verified += 1;
        if agora_crypto::verify(
            &m.validator.0,
            Domain::Vote,
            &self.genesis.chain_id,
            &m.signing_bytes(),
            &v.signature,
        )
        .is_err()
        {
            return;
        }
        let mut sigs = std::mem::take(&mut cert.signatures);
        sigs.push((m.validator.0, v.signature));
        *cert = Certificate::new(cert.height, cert.round, cert.block_hash, sigs);
    }

    fn apply_synced(
        &mut self,
        b: Block,
        c: Certificate,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ConsensusError> {
        let hd = &b.header;
        if c.height != self.height || c.block_hash != b.hash() {
            return Err(ConsensusError::InvalidSyncBlock(
                "certificate does not match block",
            ));
        }
        if hd.prev_hash != self.tip.hash
            || hd.app_hash != self.tip.app_hash
            || hd.time <= self.tip.time
        {
            return Err(ConsensusError::InvalidSyncBlock(
                "block does not extend our chain",
            ));
        }
        self.stats.signatures_verified += c.signatures.len() as u64;
        c.verify(&self.genesis.validators, &self.genesis.chain_id)?;
        self.check_chain_fields(&b)
            .map_err(ConsensusError::InvalidSyncBlock)?;
        if !self.app.validate_block(&b) {
            // A quorum certified a block our app rejects: our state has diverged.
            let reason = format!(
                "certified block {} rejected by the application",
                self.height
            );
            self.halted = Some(reason.clone());
            return Err(ConsensusError::Halted(reason));
        }
        self.stats.heights_synced += 1;
        self.commit(BlockValue::new(b), c, now, out)
    }

    fn commit(
        &mut self,
        value: BlockValue,
        cert: CommitCertificate,
        now: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ConsensusError> {
        let h = self.height;
        let block = value.block;
        self.store
            .put(trees::BLOCKS, &be8(h), &wire::encode_block(&block))?;
        self.store
            .put(trees::CERTS, &be8(h), &wire::encode_cert(&cert))?;
        if let Some(lc) = &block.last_commit {
            // The canonical certificate of the previous height replaces our own.
            self.store
                .put(trees::CERTS, &be8(lc.height), &wire::encode_cert(lc))?;
        }
        self.store.flush()?;
        self.stats.flushes += 1;
        let info = self.block_info(&block)?;
        self.stats.participation_bps = info.participation_bps;
        let app_hash = match self.app.commit(&block, &info) {
            Ok(hash) => hash,
            Err(e) => {
                // The block is decided and stored; the application refused it. Going on would
                // vote on a state no other replica has: stop here (fail-stop), and a restart
                // re-applies the stored block from the application's last durable state.
                let reason = format!("the application cannot apply committed block {h}: {e}");
                tracing::error!(target: "consensus.app", height = h, "{reason}");
                self.halted = Some(reason.clone());
                return Err(ConsensusError::Halted(reason));
            }
        };
        self.store
            .put(trees::APP_HASH, &be8(h), app_hash.as_bytes())?;
        for (k, _) in self.store.scan_from(trees::WAL, &be8(h), usize::MAX)? {
            if k.len() < 8 || k[..8] != be8(h) {
                break;
            }
            self.store.delete(trees::WAL, &k)?;
        }
        for (k, _) in self.store.scan_from(trees::SIGNED, &[], usize::MAX)? {
            if k.len() < 8 || k[..8] > be8(h)[..] {
                break;
            }
            self.store.delete(trees::SIGNED, &k)?;
        }
        self.dirty = true;
        self.tip = Tip {
            hash: block.hash(),
            time: block.header.time,
            app_hash,
            seed: info.seed,
            cert: Some(cert.clone()),
        };
        let included: BTreeSet<Hash> = block.txs.iter().map(|t| Hash::of(t)).collect();
        let app = &self.app;
        self.mempool
            .after_commit(&mut self.store, &included, |tx| app.recheck_tx(tx))?;
        self.stats.heights_committed += 1;
        self.drain_evidence(out);
        out.push(Effect::Committed {
            block,
            cert,
            app_hash,
        });
        self.height = h + 1;
        self.driver
            .move_to_height(ConsHeight(self.height), self.genesis.validators.clone());
        self.begin_height(now);
        Ok(())
    }
}

fn msg_height(m: &Message) -> Option<u64> {
    match m {
        Message::Vote(v) => Some(v.message.height.0),
        Message::Proposal(p) => Some(p.signed.message.height.0),
        _ => None,
    }
}

impl Ctx {
    fn new_own(
        &self,
        h: u64,
        r: u32,
        value: BlockValue,
        me: ValAddr,
    ) -> crate::context::ConsProposal {
        <Ctx as mt::Context>::new_proposal(
            self,
            ConsHeight(h),
            Round::new(r),
            value,
            Round::Nil,
            me,
        )
    }
}
