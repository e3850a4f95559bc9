//! The market state machine: validation, the job lifecycle, auctions, settlement, resilience.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_crypto::{Domain, Envelope};
use agora_types::{Address, Amount, Hash, Height, JobId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::{
    Account, BlockContext, BlockResult, Coprocessor, EventRecord, Health, Job, MarketEvent,
    Operator, Rejection, SlotStatus, TxReceipt, TxStatus,
};
use crate::params::{Genesis, GenesisError, Params};
use crate::tx::{AttestationKind, Transaction, TxKind};

mod admission;
mod app_hash;
mod auction;
mod evidence;
mod ledger;
mod lifecycle;
mod reputation;
mod resilience;
mod settlement;
mod verification;

pub use app_hash::app_hash;

/// The (height, round, step) a consensus vote is for; two different votes with one key by one
/// operator are equivocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VoteKey {
    pub height: u64,
    pub round: u32,
    pub step: u8,
}

impl VoteKey {
    /// The step of a proposal's key (votes: 0 prevote, 1 precommit); its payloads are signed
    /// in the proposal domain.
    pub const PROPOSAL_STEP: u8 = 2;
}

/// Decodes a signed vote or proposal payload into its key. Provided by the consensus
/// integration.
pub type VoteDecoder = fn(&[u8]) -> Option<VoteKey>;

/// Failure to apply a block as a whole (a node bug, not a bad transaction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("expected height {expected}, got {got}")]
    Height { expected: Height, got: Height },
    #[error("block time {got} is before the previous block time {prev}")]
    TimeWentBack { prev: Timestamp, got: Timestamp },
}

/// Failure to restore a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

/// Supply accounting broken (a bug); returned by [`Market::check_invariants`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    #[error("supply not conserved: genesis {genesis}, now {now}")]
    Supply { genesis: Amount, now: Amount },
    #[error("arithmetic overflow while summing supply")]
    Overflow,
    #[error("coprocessor {0} has more locked than staked")]
    Locked(Address),
    #[error("coprocessor {0} load does not match its executing slots")]
    Load(Address),
    #[error("final job {0} still holds money")]
    Escrow(JobId),
}

/// A block transaction after decoding: the envelope and transaction, or why it failed.
enum Decoded {
    Tx(Envelope, Transaction),
    Bad(Option<Envelope>, Rejection),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Global,
    Account(Address),
    Operator(Address),
    Coprocessor(Address),
    Job(JobId),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Unbonding {
    coprocessor: Address,
    amount: Amount,
    release_at: Timestamp,
}
crate::canon::fields!(Unbonding {
    coprocessor,
    amount,
    release_at
});

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    chain_id: Hash,
    params: Params,
    supply: Amount,
    height: Height,
    time: Timestamp,
    app_hash: Hash,
    /// Block time minus frozen time: auction clocks and deadlines run on this.
    market_time: u64,
    health: Health,
    burned: Amount,
    accounts: BTreeMap<Address, Account>,
    operators: BTreeMap<Address, Operator>,
    coprocessors: BTreeMap<Address, Coprocessor>,
    jobs: BTreeMap<JobId, Job>,
    open_jobs: BTreeSet<JobId>,
    unbonding: VecDeque<Unbonding>,
    /// Final jobs in closing order, for pruning.
    #[serde(default)]
    closed: VecDeque<(Timestamp, JobId)>,
    evidence_seen: BTreeSet<Hash>,
    liveness_last: BTreeMap<Hash, u64>,
    events: VecDeque<EventRecord>,
}

const MAX_RECENT_EVENTS: usize = 1024;
const MAX_JOB_EVENTS: usize = 128;

/// A transaction that passed every check against the state it was checked on, with what
/// applying it needs. Each variant's contents can be made only by its room's `check_*` (their
/// fields are private to it), from `&self`; only [`Market::apply`] consumes one, with `&mut self`.
enum Checked<'t> {
    Transfer(ledger::Transfer),
    Stake(ledger::Stake),
    Unstake(ledger::Unstake),
    Submit(lifecycle::Submit<'t>),
    Cancel(lifecycle::Cancel),
    Bid(auction::Bid),
    Result(lifecycle::Delivery),
    Audit(verification::AuditVote),
    Liveness(reputation::Liveness),
    Evidence(evidence::Proven),
    Decline(resilience::Decline<'t>),
}

/// The replicated market. Pure: block time and randomness come in through [`BlockContext`].
#[derive(Clone, Debug)]
pub struct Market {
    s: State,
    genesis_hash: Hash,
    dirty: BTreeSet<Key>,
    block_events: Vec<EventRecord>,
    vote_decoder: Option<VoteDecoder>,
    seed: Hash,
    /// The block's absent operators (see [`BlockContext::absent`]).
    absent: Vec<Address>,
}

fn bps(amount: Amount, bps: u32) -> Result<Amount, Rejection> {
    Ok(amount.mul_ratio(bps as u128, 10_000)?)
}

fn reject<T>(msg: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::Invalid(msg.into()))
}

impl Market {
    pub fn new(genesis: &Genesis) -> Result<Market, GenesisError> {
        genesis.validate()?;
        let chain_id = genesis.hash();
        let mut accounts = BTreeMap::new();
        for a in &genesis.accounts {
            accounts.insert(
                a.address,
                Account {
                    balance: a.balance,
                    nonce: 0,
                },
            );
        }
        let operators = genesis
            .operators
            .iter()
            .map(|o| {
                (
                    o.address,
                    Operator {
                        stake: o.stake,
                        jailed: false,
                    },
                )
            })
            .collect();
        let s = State {
            chain_id,
            params: genesis.params.clone(),
            supply: genesis.supply()?,
            height: Height(0),
            time: genesis.genesis_time,
            app_hash: Hash::derive("agora/v1/app-hash/genesis", chain_id.as_bytes()),
            market_time: genesis.genesis_time.0,
            health: Health::default(),
            burned: Amount::ZERO,
            accounts,
            operators,
            coprocessors: BTreeMap::new(),
            jobs: BTreeMap::new(),
            open_jobs: BTreeSet::new(),
            unbonding: VecDeque::new(),
            closed: VecDeque::new(),
            evidence_seen: BTreeSet::new(),
            liveness_last: BTreeMap::new(),
            events: VecDeque::new(),
        };
        Ok(Market {
            s,
            genesis_hash: chain_id,
            dirty: BTreeSet::new(),
            block_events: Vec::new(),
            vote_decoder: None,
            seed: Hash::ZERO,
            absent: Vec::new(),
        })
    }

    /// Install the consensus vote decoder used to check equivocation evidence. Without one,
    /// every `Evidence` transaction is rejected.
    pub fn set_vote_decoder(&mut self, decoder: VoteDecoder) {
        self.vote_decoder = Some(decoder);
    }

    pub fn chain_id(&self) -> Hash {
        self.genesis_hash
    }
    pub fn height(&self) -> Height {
        self.s.height
    }
    pub fn time(&self) -> Timestamp {
        self.s.time
    }
    pub fn app_hash(&self) -> Hash {
        self.s.app_hash
    }
    pub fn params(&self) -> &Params {
        &self.s.params
    }
    pub fn market_time(&self) -> u64 {
        self.s.market_time
    }
    pub fn health(&self) -> &Health {
        &self.s.health
    }
    pub fn burned(&self) -> Amount {
        self.s.burned
    }
    pub fn supply(&self) -> Amount {
        self.s.supply
    }
    pub fn account(&self, a: &Address) -> Option<&Account> {
        self.s.accounts.get(a)
    }
    pub fn balance(&self, a: &Address) -> Amount {
        self.s
            .accounts
            .get(a)
            .map(|x| x.balance)
            .unwrap_or_default()
    }
    /// The nonce the next transaction from `a` must carry.
    pub fn nonce(&self, a: &Address) -> u64 {
        self.s.accounts.get(a).map(|x| x.nonce).unwrap_or(0)
    }
    pub fn coprocessor(&self, a: &Address) -> Option<&Coprocessor> {
        self.s.coprocessors.get(a)
    }
    pub fn coprocessors(&self) -> impl Iterator<Item = (&Address, &Coprocessor)> {
        self.s.coprocessors.iter()
    }
    pub fn operator(&self, a: &Address) -> Option<&Operator> {
        self.s.operators.get(a)
    }
    /// Whether equivocation evidence against `operator` can still be applied: it is an
    /// operator, not jailed yet. Jailed at its first equivocation, an operator is out of the
    /// market for good, and more evidence against it is refused at admission, so that a
    /// validator that goes on double voting cannot make every honest operator send a
    /// transaction at every height (and the chain make blocks back to back for them). Nodes ask
    /// this before they build an evidence transaction.
    pub fn takes_evidence_against(&self, operator: &Address) -> bool {
        self.s.operators.get(operator).is_some_and(|o| !o.jailed)
    }

    pub fn operators(&self) -> impl Iterator<Item = (&Address, &Operator)> {
        self.s.operators.iter()
    }
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.s.jobs.get(id)
    }
    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &Job)> {
        self.s.jobs.iter()
    }
    pub fn open_jobs(&self) -> impl Iterator<Item = &JobId> {
        self.s.open_jobs.iter()
    }
    /// The most recent market events, oldest first (bounded ring).
    pub fn recent_events(&self, limit: usize) -> Vec<EventRecord> {
        let skip = self.s.events.len().saturating_sub(limit);
        self.s.events.iter().skip(skip).cloned().collect()
    }

    // -----------------------------------------------------------------------------------------
    // snapshots

    /// Deterministic serialisation of the whole state (sorted maps), for the node's store.
    pub fn to_snapshot_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.s).expect("state serialises")
    }

    /// Restore a snapshot taken by [`Market::to_snapshot_bytes`]. The vote decoder must be
    /// installed again.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Market, SnapshotError> {
        let s: State =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        Ok(Market {
            genesis_hash: s.chain_id,
            s,
            dirty: BTreeSet::new(),
            block_events: Vec::new(),
            vote_decoder: None,
            seed: Hash::ZERO,
            absent: Vec::new(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // invariants

    /// Check supply conservation (balances + escrow + stakes + unbonding + burned = genesis
    /// supply) and per-coprocessor bookkeeping.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let mut total = self.s.burned;
        let add = |t: &mut Amount, a: Amount| -> Result<(), InvariantError> {
            *t = t.checked_add(a).map_err(|_| InvariantError::Overflow)?;
            Ok(())
        };
        for a in self.s.accounts.values() {
            add(&mut total, a.balance)?;
        }
        for o in self.s.operators.values() {
            add(&mut total, o.stake)?;
        }
        let mut live: BTreeMap<Address, u32> = BTreeMap::new();
        for j in self.s.jobs.values() {
            let held = j.held().map_err(|_| InvariantError::Overflow)?;
            if j.state.is_final() && !held.is_zero() {
                return Err(InvariantError::Escrow(j.id));
            }
            add(&mut total, held)?;
            for (c, a) in &j.assignments {
                if a.status == SlotStatus::Executing {
                    *live.entry(*c).or_default() += 1;
                }
            }
        }
        for (addr, c) in &self.s.coprocessors {
            add(&mut total, c.stake)?;
            add(&mut total, c.unbonding)?;
            if c.locked > c.stake {
                return Err(InvariantError::Locked(*addr));
            }
            if live.get(addr).copied().unwrap_or(0) != c.load {
                return Err(InvariantError::Load(*addr));
            }
        }
        if total != self.s.supply {
            return Err(InvariantError::Supply {
                genesis: self.s.supply,
                now: total,
            });
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // blocks

    /// Apply one committed block: health detection, every transaction in order (each applied
    /// fully or rejected with a reason), then the block-time-driven lifecycle (auctions closing,
    /// deadlines, verification, settlement, unbonding). Returns receipts, events and the new
    /// app hash.
    pub fn apply_block(
        &mut self,
        ctx: &BlockContext,
        txs: &[Vec<u8>],
    ) -> Result<BlockResult, BlockError> {
        let expected = self.s.height.next();
        if ctx.height != expected {
            return Err(BlockError::Height {
                expected,
                got: ctx.height,
            });
        }
        if ctx.time < self.s.time {
            return Err(BlockError::TimeWentBack {
                prev: self.s.time,
                got: ctx.time,
            });
        }
        self.block_events.clear();
        self.dirty.clear();
        self.seed = ctx.seed;
        self.absent.clone_from(&ctx.absent);
        let prev_time = self.s.time;
        self.s.height = ctx.height;
        self.s.time = ctx.time;
        self.dirty.insert(Key::Global);
        self.observe_health(ctx, prev_time);

        // Decode and verify signatures (batched), then apply in block order.
        let decoded: Vec<Decoded> = txs.iter().map(|b| self.decode_block_tx(b)).collect();
        let batch: Vec<(Address, &[u8], agora_crypto::Signature)> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Tx(e, _) => Some((e.signer, e.payload.as_slice(), e.signature)),
                Decoded::Bad(..) => None,
            })
            .collect();
        let all_good = !batch.is_empty()
            && agora_crypto::verify_batch(Domain::Transaction, &self.genesis_hash, &batch).is_ok();

        let mut receipts = Vec::with_capacity(txs.len());
        for (i, d) in decoded.into_iter().enumerate() {
            let receipt = match d {
                Decoded::Bad(env, e) => TxReceipt {
                    index: i as u32,
                    tx_hash: env.as_ref().map(|e| e.hash()),
                    signer: env.map(|e| e.signer),
                    kind: None,
                    status: TxStatus::Rejected {
                        reason: e.to_string(),
                    },
                },
                Decoded::Tx(env, tx) => {
                    let id = env.hash();
                    let sig_ok =
                        all_good || env.verify(Domain::Transaction, &self.genesis_hash).is_ok();
                    let status = if !sig_ok {
                        TxStatus::Rejected {
                            reason: Rejection::BadSignature.to_string(),
                        }
                    } else {
                        match self.apply_tx(env.signer, id, &tx) {
                            Ok(()) => TxStatus::Applied,
                            Err(e) => TxStatus::Rejected {
                                reason: e.to_string(),
                            },
                        }
                    };
                    TxReceipt {
                        index: i as u32,
                        tx_hash: Some(id),
                        signer: Some(env.signer),
                        kind: Some(tx.kind.name().to_owned()),
                        status,
                    }
                }
            };
            receipts.push(receipt);
        }

        self.end_block();
        let state_hash = self.commit_hash();
        Ok(BlockResult {
            height: ctx.height,
            receipts,
            events: std::mem::take(&mut self.block_events),
            app_hash: self.s.app_hash,
            state_hash,
        })
    }

    /// Apply one signed transaction. A transaction carrying the signer's next nonce uses that
    /// nonce whether its handler accepts it or not (ADR 006): otherwise one rejected
    /// transaction would hold back every later one its signer has in flight.
    fn apply_tx(&mut self, signer: Address, id: Hash, tx: &Transaction) -> Result<(), Rejection> {
        let expected = self.nonce(&signer);
        if tx.nonce != expected {
            return Err(Rejection::BadNonce {
                expected,
                got: tx.nonce,
            });
        }
        let r = self
            .check(signer, id, &tx.kind)
            .and_then(|checked| self.apply(checked));
        let acct = self.s.accounts.entry(signer).or_default();
        acct.nonce = acct.nonce.checked_add(1).ok_or(Rejection::Overflow)?;
        self.dirty.insert(Key::Account(signer));
        r
    }

    // -----------------------------------------------------------------------------------------
    // transactions: checked by `&self`, applied by `&mut self`

    /// Check one transaction against the current state, writing nothing: the checked value
    /// carries everything applying it needs. Admission and blocks run this same check.
    fn check<'t>(
        &self,
        signer: Address,
        id: Hash,
        kind: &'t TxKind,
    ) -> Result<Checked<'t>, Rejection> {
        Ok(match kind {
            TxKind::Transfer { to, amount } => {
                Checked::Transfer(self.check_transfer(signer, *to, *amount)?)
            }
            TxKind::Stake { amount, capacity } => {
                Checked::Stake(self.check_stake(signer, *amount, *capacity)?)
            }
            TxKind::Unstake { amount } => Checked::Unstake(self.check_unstake(signer, *amount)?),
            TxKind::SubmitJob(spec) => Checked::Submit(self.check_submit(signer, id, spec)?),
            TxKind::CancelJob { job_id } => Checked::Cancel(self.check_cancel(signer, job_id)?),
            TxKind::Bid { job_id, bid } => Checked::Bid(self.check_bid(signer, job_id, bid)?),
            TxKind::Result {
                job_id,
                result_hash,
                fuel_used,
                outcome,
                output_size,
            } => Checked::Result(self.check_result(
                signer,
                job_id,
                *result_hash,
                *fuel_used,
                *outcome,
                *output_size,
            )?),
            TxKind::Attestation(a) => match a.kind {
                AttestationKind::Audit => Checked::Audit(self.check_audit(signer, a)?),
                AttestationKind::Liveness => Checked::Liveness(self.check_liveness(signer, a)?),
            },
            TxKind::Evidence(e) => Checked::Evidence(self.check_evidence(e)?),
            TxKind::Decline(d) => Checked::Decline(self.check_decline(signer, d)?),
        })
    }

    /// Apply a transaction [`Market::check`] accepted on this same state. An error here is
    /// arithmetic the check could not foresee (an overflow), reported as the rejection.
    fn apply(&mut self, checked: Checked<'_>) -> Result<(), Rejection> {
        match checked {
            Checked::Transfer(t) => self.apply_transfer(t),
            Checked::Stake(t) => self.apply_stake(t),
            Checked::Unstake(t) => self.apply_unstake(t),
            Checked::Submit(t) => self.apply_submit(t),
            Checked::Cancel(t) => self.apply_cancel(t),
            Checked::Bid(t) => self.apply_bid(t),
            Checked::Result(t) => self.apply_result(t),
            Checked::Audit(t) => self.apply_audit(t),
            Checked::Liveness(t) => self.apply_liveness(t),
            Checked::Evidence(t) => self.apply_evidence(t),
            Checked::Decline(t) => self.apply_decline(t),
        }
    }

    // -----------------------------------------------------------------------------------------
    // events and entries (mark dirty)

    pub(super) fn emit(&mut self, event: MarketEvent) {
        let rec = EventRecord {
            height: self.s.height,
            time: self.s.time,
            event,
        };
        tracing::debug!(target: "market.event", height = rec.height.0, ?rec.event);
        if self.s.events.len() >= MAX_RECENT_EVENTS {
            self.s.events.pop_front();
        }
        self.s.events.push_back(rec.clone());
        self.block_events.push(rec);
    }

    pub(super) fn emit_job(&mut self, job: &JobId, event: MarketEvent) {
        if let Some(j) = self.s.jobs.get_mut(job) {
            if j.events.len() >= MAX_JOB_EVENTS {
                j.events.remove(0);
            }
            j.events.push(EventRecord {
                height: self.s.height,
                time: self.s.time,
                event: event.clone(),
            });
            self.dirty.insert(Key::Job(*job));
        }
        self.emit(event);
    }

    pub(super) fn cop_mut(&mut self, a: &Address) -> Result<&mut Coprocessor, Rejection> {
        self.dirty.insert(Key::Coprocessor(*a));
        self.s
            .coprocessors
            .get_mut(a)
            .ok_or_else(|| Rejection::NotAllowed("not a coprocessor".into()))
    }

    pub(super) fn job_mut(&mut self, id: &JobId) -> Result<&mut Job, Rejection> {
        self.dirty.insert(Key::Job(*id));
        self.s.jobs.get_mut(id).ok_or(Rejection::UnknownJob(*id))
    }
}
