//! The market state machine: validation, the job lifecycle, auctions, settlement, resilience.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agora_crypto::{Domain, Envelope};
use agora_types::{Address, Amount, Fixed, Hash, Height, JobId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::*;
use crate::params::{Genesis, GenesisError, Params};
use crate::tx::{
    decode_envelope, sealed_commitment, Attestation, AttestationKind, AuctionSpec, BidKind,
    DeclineNotice, Evidence, JobSpec, Outcome, Transaction, TxKind,
};

/// The (height, round, step) a consensus vote is for; two different votes with one key by one
/// operator are equivocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VoteKey {
    pub height: u64,
    pub round: u32,
    pub step: u8,
}

/// Decodes a signed vote payload into its key. Provided by the consensus integration.
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
type Decoded = Result<(Envelope, Transaction), (Option<Envelope>, Rejection)>;

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
/// Nonces this far ahead of the committed one pass `check_tx` (for mempool pipelining).
const NONCE_WINDOW: u64 = 64;

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

    /// The current Dutch clock price of a job in auction, if it is a Dutch auction.
    pub fn dutch_price(&self, id: &JobId) -> Option<Amount> {
        let job = self.s.jobs.get(id)?;
        match (&job.spec.auction, job.state) {
            (AuctionSpec::Dutch { .. }, JobState::Auction) => {
                Some(self.clock_price(job, self.s.market_time))
            }
            _ => None,
        }
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
    /// The next block time at which a market clock passes a boundary that changes something:
    /// a Dutch clock reaching a standing acceptance or ending its round, a sealed phase ending,
    /// an execution or audit deadline passing. The node asks consensus for a block then instead
    /// of waiting for the next heartbeat, so phases and deadlines act on time. `None` when
    /// nothing is pending or while the market clocks are frozen.
    pub fn next_due(&self) -> Option<Timestamp> {
        if self.s.health.stalled {
            return None;
        }
        let now = self.s.market_time;
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for id in &self.s.open_jobs {
            let Some(job) = self.s.jobs.get(id) else {
                continue;
            };
            let opened = job.auction.opened_at;
            if job.state == JobState::Auction {
                match &job.spec.auction {
                    AuctionSpec::Dutch {
                        start_price,
                        duration_ms,
                    } => {
                        consider(opened.saturating_add(*duration_ms));
                        let span = job.spec.max_price.0.saturating_sub(start_price.0);
                        if let Some(low) = job.auction.dutch.values().min() {
                            let need = low.0.saturating_sub(start_price.0);
                            if span > 0 && need > 0 {
                                let e =
                                    need.saturating_mul(u128::from(*duration_ms)).div_ceil(span);
                                consider(opened.saturating_add(e.min(u64::MAX as u128) as u64));
                            }
                        }
                    }
                    AuctionSpec::Sealed {
                        commit_ms,
                        reveal_ms,
                    } => {
                        consider(opened.saturating_add(*commit_ms));
                        consider(job.auction.reveal_end(*commit_ms, *reveal_ms));
                    }
                }
            }
            for a in job.assignments.values() {
                if a.status == SlotStatus::Executing {
                    consider(a.deadline.saturating_add(1));
                }
            }
            if let Some(audit) = &job.audit {
                consider(audit.deadline.saturating_add(1));
            }
        }
        next.map(|t| Timestamp(self.s.time.0.saturating_add(t - now)))
    }

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
    // admission

    /// Stateless and stateful pre-check for the mempool, against the last committed state.
    /// Nonces up to a small window ahead are accepted (the state check then covers only the
    /// signature and shape). Takes `&mut self` only to reuse the block handlers' validation
    /// pass; it never changes the state or the app hash.
    pub fn check_tx(&mut self, env: &Envelope) -> Result<(), Rejection> {
        let tx = self.verify_envelope(env)?;
        if self.nonce_in_window(&env.signer, tx.nonce)? {
            return Ok(());
        }
        let id = env.hash();
        let r = self.dispatch(env.signer, id, &tx.kind, true);
        self.dirty.clear();
        r
    }

    /// Admission of a transaction relayed by a peer: size, decoding, signature and the nonce
    /// window, but not the handler's checks against the current state. The node it came from
    /// ran those on its own, possibly slightly older, state; and a transaction refused when its
    /// block is applied still uses its nonce (ADR 006), so admitting it can never hold back its
    /// signer's later transactions, while refusing it here would.
    pub fn check_relayed_tx_bytes(&self, bytes: &[u8]) -> Result<(), Rejection> {
        self.check_size(bytes.len())?;
        let env = decode_envelope(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let tx = self.verify_envelope(&env)?;
        self.nonce_in_window(&env.signer, tx.nonce).map(|_| ())
    }

    /// A nonce the mempool accepts: unused and less than [`NONCE_WINDOW`] ahead. `Ok(true)`
    /// when it is ahead of the next one (only signature and shape can be checked then).
    fn nonce_in_window(&self, signer: &Address, nonce: u64) -> Result<bool, Rejection> {
        let expected = self.nonce(signer);
        if nonce < expected || nonce >= expected.saturating_add(NONCE_WINDOW) {
            return Err(Rejection::BadNonce {
                expected,
                got: nonce,
            });
        }
        Ok(nonce > expected)
    }

    /// [`Market::check_tx`] on encoded envelope bytes.
    pub fn check_tx_bytes(&mut self, bytes: &[u8]) -> Result<(), Rejection> {
        self.check_size(bytes.len())?;
        let env = decode_envelope(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
        self.check_tx(&env)
    }

    fn check_size(&self, len: usize) -> Result<(), Rejection> {
        let limit = self.s.params.max_tx_bytes;
        if len as u64 > limit {
            return Err(Rejection::Oversized {
                size: len as u64,
                limit,
            });
        }
        Ok(())
    }

    fn verify_envelope(&self, env: &Envelope) -> Result<Transaction, Rejection> {
        self.check_size(env.payload.len())?;
        env.verify(Domain::Transaction, &self.genesis_hash)
            .map_err(|_| Rejection::BadSignature)?;
        Transaction::decode(&env.payload).map_err(|e| Rejection::Malformed(e.to_string()))
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
        let mut decoded: Vec<Decoded> = Vec::with_capacity(txs.len());
        for bytes in txs {
            let r = self.check_size(bytes.len()).and_then(|_| {
                decode_envelope(bytes).map_err(|e| Rejection::Malformed(e.to_string()))
            });
            decoded.push(match r {
                Err(e) => Err((None, e)),
                Ok(env) => match self.check_size(env.payload.len()).and_then(|_| {
                    Transaction::decode(&env.payload)
                        .map_err(|e| Rejection::Malformed(e.to_string()))
                }) {
                    Ok(tx) => Ok((env, tx)),
                    Err(e) => Err((Some(env), e)),
                },
            });
        }
        let batch: Vec<(Address, &[u8], agora_crypto::Signature)> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok())
            .map(|(e, _)| (e.signer, e.payload.as_slice(), e.signature))
            .collect();
        let all_good = !batch.is_empty()
            && agora_crypto::verify_batch(Domain::Transaction, &self.genesis_hash, &batch).is_ok();

        let mut receipts = Vec::with_capacity(txs.len());
        for (i, d) in decoded.into_iter().enumerate() {
            let receipt = match d {
                Err((env, e)) => TxReceipt {
                    index: i as u32,
                    tx_hash: env.as_ref().map(|e| e.hash()),
                    signer: env.map(|e| e.signer),
                    kind: None,
                    status: TxStatus::Rejected {
                        reason: e.to_string(),
                    },
                },
                Ok((env, tx)) => {
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
            .dispatch(signer, id, &tx.kind, true)
            .and_then(|()| self.dispatch(signer, id, &tx.kind, false));
        let acct = self.s.accounts.entry(signer).or_default();
        acct.nonce = acct.nonce.checked_add(1).ok_or(Rejection::Overflow)?;
        self.dirty.insert(Key::Account(signer));
        r
    }

    /// Whether a transaction admitted to a mempool earlier can still be included: it decodes
    /// and its nonce is not used yet (and within the window). Its signature was checked at
    /// admission and the bytes are the same; a handler that would now refuse it only makes it
    /// a rejected transaction that uses its nonce, so it stays.
    pub fn recheck_tx_bytes(&self, bytes: &[u8]) -> bool {
        let Ok(env) = decode_envelope(bytes) else {
            return false;
        };
        let Ok(tx) = Transaction::decode(&env.payload) else {
            return false;
        };
        self.nonce_in_window(&env.signer, tx.nonce).is_ok()
    }

    /// Validate (`dry`) or execute one transaction. Every handler checks everything before its
    /// first write, and the dry pass runs first, so a rejected transaction changes nothing.
    fn dispatch(
        &mut self,
        signer: Address,
        id: Hash,
        kind: &TxKind,
        dry: bool,
    ) -> Result<(), Rejection> {
        match kind {
            TxKind::Transfer { to, amount } => self.tx_transfer(signer, *to, *amount, dry),
            TxKind::Stake { amount, capacity } => self.tx_stake(signer, *amount, *capacity, dry),
            TxKind::Unstake { amount } => self.tx_unstake(signer, *amount, dry),
            TxKind::SubmitJob(spec) => self.tx_submit(signer, id, spec, dry),
            TxKind::CancelJob { job_id } => self.tx_cancel(signer, job_id, dry),
            TxKind::Bid { job_id, bid } => self.tx_bid(signer, job_id, bid, dry),
            TxKind::Result {
                job_id,
                result_hash,
                fuel_used,
                outcome,
                output_size,
            } => self.tx_result(
                signer,
                job_id,
                *result_hash,
                *fuel_used,
                *outcome,
                *output_size,
                dry,
            ),
            TxKind::Attestation(a) => self.tx_attestation(signer, a, dry),
            TxKind::Evidence(e) => self.tx_evidence(signer, e, dry),
            TxKind::Decline(d) => self.tx_decline(signer, d, dry),
        }
    }

    // -----------------------------------------------------------------------------------------
    // money helpers (mark dirty)

    fn credit(&mut self, to: Address, amount: Amount) -> Result<(), Rejection> {
        let a = self.s.accounts.entry(to).or_default();
        a.balance = a.balance.checked_add(amount)?;
        self.dirty.insert(Key::Account(to));
        Ok(())
    }

    fn debit(&mut self, from: Address, amount: Amount) -> Result<(), Rejection> {
        let have = self.balance(&from);
        let new = have
            .checked_sub(amount)
            .map_err(|_| Rejection::InsufficientFunds { need: amount, have })?;
        self.s.accounts.entry(from).or_default().balance = new;
        self.dirty.insert(Key::Account(from));
        Ok(())
    }

    fn need_funds(&self, who: &Address, amount: Amount) -> Result<(), Rejection> {
        let have = self.balance(who);
        if have < amount {
            return Err(Rejection::InsufficientFunds { need: amount, have });
        }
        Ok(())
    }

    fn emit(&mut self, event: MarketEvent) {
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

    fn emit_job(&mut self, job: &JobId, event: MarketEvent) {
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

    fn cop_mut(&mut self, a: &Address) -> Result<&mut Coprocessor, Rejection> {
        self.dirty.insert(Key::Coprocessor(*a));
        self.s
            .coprocessors
            .get_mut(a)
            .ok_or_else(|| Rejection::NotAllowed("not a coprocessor".into()))
    }

    fn job_mut(&mut self, id: &JobId) -> Result<&mut Job, Rejection> {
        self.dirty.insert(Key::Job(*id));
        self.s.jobs.get_mut(id).ok_or(Rejection::UnknownJob(*id))
    }

    fn update_activity(&mut self, a: &Address) {
        let min = self.s.params.min_stake;
        let Some(c) = self.s.coprocessors.get_mut(a) else {
            return;
        };
        let should = c.stake >= min && !c.ejected;
        if c.active != should {
            c.active = should;
            let stake = c.stake;
            self.dirty.insert(Key::Coprocessor(*a));
            self.emit(if should {
                MarketEvent::CoprocessorActivated {
                    coprocessor: *a,
                    stake,
                }
            } else {
                MarketEvent::CoprocessorDeactivated {
                    coprocessor: *a,
                    stake,
                }
            });
        }
    }

    // -----------------------------------------------------------------------------------------
    // transactions

    fn tx_transfer(
        &mut self,
        from: Address,
        to: Address,
        amount: Amount,
        dry: bool,
    ) -> Result<(), Rejection> {
        if amount.is_zero() {
            return reject("zero amount");
        }
        self.need_funds(&from, amount)?;
        self.balance(&to).checked_add(amount)?;
        if dry {
            return Ok(());
        }
        self.debit(from, amount)?;
        self.credit(to, amount)
    }

    fn tx_stake(
        &mut self,
        who: Address,
        amount: Amount,
        capacity: u32,
        dry: bool,
    ) -> Result<(), Rejection> {
        let p = &self.s.params;
        if capacity == 0 || capacity > p.max_capacity {
            return reject(format!("capacity must be 1..={}", p.max_capacity));
        }
        self.need_funds(&who, amount)?;
        let existing = self.s.coprocessors.get(&who);
        let new_stake = existing
            .map(|c| c.stake)
            .unwrap_or_default()
            .checked_add(amount)?;
        if existing.is_none() && new_stake < p.min_stake {
            return Err(Rejection::NotEligible(format!(
                "stake below minimum {}",
                p.min_stake
            )));
        }
        if dry {
            return Ok(());
        }
        self.debit(who, amount)?;
        let f0 = self.s.params.gas_f0;
        let c = self.s.coprocessors.entry(who).or_insert(Coprocessor {
            stake: Amount::ZERO,
            locked: Amount::ZERO,
            unbonding: Amount::ZERO,
            capacity,
            load: 0,
            logit: f0,
            active: false,
            completed: 0,
            failed: 0,
            earned: Amount::ZERO,
            slashed: Amount::ZERO,
            strikes: 0,
            clean_streak: 0,
            ejected: false,
            recent_load: Fixed::ZERO,
            recent_at: 0,
        });
        c.stake = new_stake;
        c.capacity = capacity;
        self.dirty.insert(Key::Coprocessor(who));
        self.emit(MarketEvent::CoprocessorStaked {
            coprocessor: who,
            stake: new_stake,
            capacity,
        });
        self.update_activity(&who);
        Ok(())
    }

    fn tx_unstake(&mut self, who: Address, amount: Amount, dry: bool) -> Result<(), Rejection> {
        let c = self
            .s
            .coprocessors
            .get(&who)
            .ok_or_else(|| Rejection::NotAllowed("not a coprocessor".into()))?;
        if amount.is_zero() {
            return reject("zero amount");
        }
        let free = c.free_collateral();
        if amount > free {
            return Err(Rejection::InsufficientFunds {
                need: amount,
                have: free,
            });
        }
        let new_stake = c.stake.checked_sub(amount)?;
        let new_unb = c.unbonding.checked_add(amount)?;
        if self.s.unbonding.len() >= 100_000 {
            return Err(Rejection::Limit("unbonding queue full".into()));
        }
        if dry {
            return Ok(());
        }
        let release_at = Timestamp(
            self.s
                .time
                .0
                .saturating_add(self.s.params.unbonding_delay_ms),
        );
        let c = self.cop_mut(&who)?;
        c.stake = new_stake;
        c.unbonding = new_unb;
        self.s.unbonding.push_back(Unbonding {
            coprocessor: who,
            amount,
            release_at,
        });
        self.emit(MarketEvent::UnbondingStarted {
            coprocessor: who,
            amount,
            release_at,
        });
        self.update_activity(&who);
        Ok(())
    }

    fn validate_spec(&self, spec: &JobSpec) -> Result<(), Rejection> {
        let p = &self.s.params;
        let lim = |what: &str| Err(Rejection::Limit(what.to_owned()));
        if spec.replicas == 0 || spec.replicas > p.max_replicas {
            return reject(format!("replicas must be 1..={}", p.max_replicas));
        }
        if spec.max_price.is_zero() || spec.max_price > p.max_price_limit {
            return reject("max price must be positive and within the limit");
        }
        if spec.module_size == 0 || spec.module_size > p.max_module_bytes {
            return lim("module too large");
        }
        if spec.input_size > p.max_input_bytes {
            return lim("input too large");
        }
        if spec.args.len() as u64 > p.max_args as u64
            || spec
                .args
                .iter()
                .any(|a| a.len() as u64 > p.max_arg_bytes as u64)
        {
            return lim("too many or too long args");
        }
        if spec.fuel_limit == 0 || spec.fuel_limit > p.max_fuel {
            return reject("fuel limit out of range");
        }
        if spec.memory_limit == 0 || spec.memory_limit > p.max_memory_bytes {
            return reject("memory limit out of range");
        }
        if spec.deadline_ms < p.min_deadline_ms || spec.deadline_ms > p.max_deadline_ms {
            return reject("deadline out of range");
        }
        if spec.min_reputation_bps > 10_000 || spec.audit_bps > 10_000 {
            return reject("basis points above 10000");
        }
        let in_range = |ms: u64| ms >= p.min_auction_ms && ms <= p.max_auction_ms;
        match spec.auction {
            AuctionSpec::Dutch {
                start_price,
                duration_ms,
            } => {
                if start_price > spec.max_price {
                    return reject("start price above max price");
                }
                if !in_range(duration_ms) {
                    return reject("auction duration out of range");
                }
            }
            AuctionSpec::Sealed {
                commit_ms,
                reveal_ms,
            } => {
                if !in_range(commit_ms) || !in_range(reveal_ms) {
                    return reject("auction phase out of range");
                }
            }
        }
        Ok(())
    }

    fn escrow_for(&self, spec: &JobSpec) -> Result<Amount, Rejection> {
        let base = spec.max_price.checked_mul(spec.replicas as u128)?;
        if spec.replicas == 1 {
            Ok(base.checked_add(self.s.params.audit_fee)?)
        } else {
            Ok(base)
        }
    }

    fn tx_submit(
        &mut self,
        client: Address,
        id: JobId,
        spec: &JobSpec,
        dry: bool,
    ) -> Result<(), Rejection> {
        self.validate_spec(spec)?;
        if self.s.open_jobs.len() as u64 >= self.s.params.max_open_jobs as u64 {
            return Err(Rejection::Limit("too many open jobs".into()));
        }
        if self.s.jobs.contains_key(&id) {
            return reject("duplicate job");
        }
        let escrow = self.escrow_for(spec)?;
        self.need_funds(&client, escrow)?;
        if dry {
            return Ok(());
        }
        self.debit(client, escrow)?;
        let job = Job {
            id,
            client,
            spec: spec.clone(),
            state: JobState::Submitted,
            submitted_height: self.s.height,
            submitted_at: self.s.time,
            escrow,
            bonds: BTreeMap::new(),
            auction: AuctionRound::default(),
            assignments: BTreeMap::new(),
            reauctions: 0,
            extra_replicas: 0,
            audit: None,
            result_hash: None,
            outcome: None,
            failure: None,
            closed_at: None,
            declines: Vec::new(),
            events: Vec::new(),
        };
        self.s.jobs.insert(id, job);
        self.s.open_jobs.insert(id);
        self.dirty.insert(Key::Job(id));
        self.emit_job(
            &id,
            MarketEvent::JobSubmitted {
                job: id,
                client,
                escrow,
            },
        );
        self.open_round(&id, spec.replicas, 0)
    }

    fn open_round(&mut self, id: &JobId, slots: u32, round: u32) -> Result<(), Rejection> {
        let now = self.s.market_time;
        let job = self.job_mut(id)?;
        job.state = JobState::Auction;
        job.auction = AuctionRound {
            round,
            opened_at: now,
            slots,
            ..Default::default()
        };
        self.emit_job(
            id,
            MarketEvent::AuctionOpened {
                job: *id,
                round,
                slots,
            },
        );
        Ok(())
    }

    fn tx_cancel(&mut self, who: Address, id: &JobId, dry: bool) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        if job.client != who {
            return Err(Rejection::NotAllowed("only the client may cancel".into()));
        }
        if job.state != JobState::Auction || !job.assignments.is_empty() {
            return Err(Rejection::NotAllowed("job already awarded".into()));
        }
        if dry {
            return Ok(());
        }
        self.emit_job(id, MarketEvent::Cancelled { job: *id });
        self.close_job(id, JobState::Refunded, "cancelled by client")
    }

    /// Collateral required per slot.
    fn collateral(&self, spec: &JobSpec) -> Result<Amount, Rejection> {
        bps(spec.max_price, self.s.params.collateral_bps)
    }

    fn eligible(&self, job: &Job, who: &Address) -> Result<(), Rejection> {
        let c = self
            .s
            .coprocessors
            .get(who)
            .ok_or_else(|| Rejection::NotEligible("not a coprocessor".into()))?;
        let no = |m: String| Err(Rejection::NotEligible(m));
        if !c.active {
            return no("coprocessor inactive (stake below minimum)".into());
        }
        if c.reputation_bps() < job.spec.min_reputation_bps {
            return no(format!(
                "reputation {} below minimum {}",
                c.reputation_bps(),
                job.spec.min_reputation_bps
            ));
        }
        if c.load >= c.capacity {
            return no("at capacity".into());
        }
        let need = self.collateral(&job.spec)?;
        if c.free_collateral() < need {
            return no(format!(
                "free collateral {} below {}",
                c.free_collateral(),
                need
            ));
        }
        if job.assignments.contains_key(who) {
            return no("already assigned to this job".into());
        }
        Ok(())
    }

    fn tx_bid(
        &mut self,
        who: Address,
        id: &JobId,
        bid: &BidKind,
        dry: bool,
    ) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        if job.state != JobState::Auction {
            return Err(Rejection::WrongJobState(job.state));
        }
        let now = self.s.market_time;
        let elapsed = now.saturating_sub(job.auction.opened_at);
        let kind_name;
        match (bid, &job.spec.auction) {
            (BidKind::Dutch { min_price }, AuctionSpec::Dutch { .. }) => {
                self.eligible(job, &who)?;
                if *min_price > job.spec.max_price {
                    return reject("price above the job's max price");
                }
                if job.auction.dutch.contains_key(&who) {
                    return reject("already accepted");
                }
                if job.auction.dutch.len() >= 256 {
                    return Err(Rejection::Limit("too many bids".into()));
                }
                kind_name = "dutch";
                if dry {
                    return Ok(());
                }
                self.job_mut(id)?.auction.dutch.insert(who, *min_price);
            }
            (BidKind::Commit { commitment }, AuctionSpec::Sealed { commit_ms, .. }) => {
                if elapsed >= *commit_ms {
                    return Err(Rejection::NotAllowed("commit phase over".into()));
                }
                self.eligible(job, &who)?;
                if job.auction.commits.contains_key(&who) {
                    return reject("already committed");
                }
                if job.auction.commits.len() >= 256 {
                    return Err(Rejection::Limit("too many bids".into()));
                }
                let bond = self.s.params.reveal_bond;
                self.need_funds(&who, bond)?;
                kind_name = "sealed_commit";
                if dry {
                    return Ok(());
                }
                self.debit(who, bond)?;
                let job = self.job_mut(id)?;
                job.auction.commits.insert(who, *commitment);
                job.bonds.insert(who, bond);
            }
            (
                BidKind::Reveal { price, salt },
                AuctionSpec::Sealed {
                    commit_ms,
                    reveal_ms,
                },
            ) => {
                if elapsed < *commit_ms {
                    return Err(Rejection::NotAllowed("reveal phase not started".into()));
                }
                if now >= job.auction.reveal_end(*commit_ms, *reveal_ms) {
                    return Err(Rejection::NotAllowed("reveal phase over".into()));
                }
                let Some(c) = job.auction.commits.get(&who) else {
                    return Err(Rejection::NotAllowed("no commitment".into()));
                };
                if job.auction.reveals.contains_key(&who) {
                    return reject("already revealed");
                }
                if sealed_commitment(id, &who, *price, salt) != *c {
                    return reject("reveal does not match commitment");
                }
                let bond = job.bonds.get(&who).copied().unwrap_or_default();
                kind_name = "sealed_reveal";
                if dry {
                    return Ok(());
                }
                let job = self.job_mut(id)?;
                job.auction.reveals.insert(who, *price);
                job.bonds.remove(&who);
                self.credit(who, bond)?;
            }
            _ => return reject("bid kind does not match the job's auction"),
        }
        self.emit_job(
            id,
            MarketEvent::BidAccepted {
                job: *id,
                coprocessor: who,
                kind: kind_name.into(),
            },
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn tx_result(
        &mut self,
        who: Address,
        id: &JobId,
        result_hash: Hash,
        fuel_used: u64,
        outcome: Outcome,
        output_size: u64,
        dry: bool,
    ) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        if !matches!(
            job.state,
            JobState::Awarded | JobState::Executing | JobState::Auction
        ) {
            return Err(Rejection::WrongJobState(job.state));
        }
        let a = job
            .assignments
            .get(&who)
            .ok_or_else(|| Rejection::NotAllowed("not a winner of this job".into()))?;
        if a.status != SlotStatus::Executing {
            return Err(Rejection::NotAllowed(
                "result already committed or slot closed".into(),
            ));
        }
        if fuel_used > job.spec.fuel_limit {
            return reject("fuel used above the limit");
        }
        if output_size > self.s.params.max_output_bytes {
            return Err(Rejection::Limit("output too large".into()));
        }
        if dry {
            return Ok(());
        }
        let height = self.s.height;
        let a = self
            .job_mut(id)?
            .assignments
            .get_mut(&who)
            .ok_or(Rejection::Overflow)?;
        a.status = SlotStatus::Committed;
        // The slot's work is done: it no longer counts against the coprocessor's capacity
        // (its collateral stays locked until settlement).
        a.result = Some(ResultRecord {
            result_hash,
            fuel_used,
            outcome,
            output_size,
            height,
        });
        let (now, memory) = (self.s.market_time, self.s.params.load_memory_ms);
        let cop = self.cop_mut(&who)?;
        cop.set_load(cop.load.saturating_sub(1), now, memory);
        self.emit_job(
            id,
            MarketEvent::ResultCommitted {
                job: *id,
                coprocessor: who,
                result_hash,
            },
        );
        Ok(())
    }

    fn is_operator(&self, who: &Address) -> Result<(), Rejection> {
        match self.s.operators.get(who) {
            Some(o) if !o.jailed => Ok(()),
            Some(_) => Err(Rejection::NotAllowed("operator is jailed".into())),
            None => Err(Rejection::NotAllowed("not an operator".into())),
        }
    }

    fn tx_attestation(
        &mut self,
        who: Address,
        a: &Attestation,
        dry: bool,
    ) -> Result<(), Rejection> {
        self.is_operator(&who)?;
        match a.kind {
            AttestationKind::Audit => {
                let job = self
                    .s
                    .jobs
                    .get(&a.job_id)
                    .ok_or(Rejection::UnknownJob(a.job_id))?;
                if job.state != JobState::Verifying {
                    return Err(Rejection::WrongJobState(job.state));
                }
                let audit = job
                    .audit
                    .as_ref()
                    .ok_or_else(|| Rejection::NotAllowed("no audit".into()))?;
                let first = audit.auditor == who && audit.attested.is_none();
                let second = audit.tiebreaker == Some(who) && audit.tiebreaker_attested.is_none();
                if !first && !second {
                    return Err(Rejection::NotAllowed("not the selected auditor".into()));
                }
                if dry {
                    return Ok(());
                }
                let job = self.job_mut(&a.job_id)?;
                let audit = job.audit.as_mut().ok_or(Rejection::Overflow)?;
                if first {
                    audit.attested = Some(a.result_hash);
                } else {
                    audit.tiebreaker_attested = Some(a.result_hash);
                }
                Ok(())
            }
            AttestationKind::Liveness => {
                let c =
                    self.s.coprocessors.get(&a.subject).ok_or_else(|| {
                        Rejection::NotAllowed("subject is not a coprocessor".into())
                    })?;
                let _ = c;
                let key = Hash::derive(
                    "agora/v1/liveness",
                    &[who.as_bytes().as_slice(), a.subject.as_bytes()].concat(),
                );
                let now = self.s.time.0;
                if let Some(last) = self.s.liveness_last.get(&key) {
                    if now.saturating_sub(*last) < self.s.params.liveness_interval_ms {
                        return Err(Rejection::Limit("liveness reported too recently".into()));
                    }
                }
                if dry {
                    return Ok(());
                }
                self.s.liveness_last.insert(key, now);
                self.emit(MarketEvent::LivenessReported {
                    operator: who,
                    coprocessor: a.subject,
                    alive: a.alive,
                });
                self.reputation(&a.subject, a.alive);
                Ok(())
            }
        }
    }

    fn tx_evidence(&mut self, _who: Address, e: &Evidence, dry: bool) -> Result<(), Rejection> {
        let decoder = self
            .vote_decoder
            .ok_or_else(|| Rejection::NotAllowed("evidence is not accepted on this node".into()))?;
        if !self.s.operators.contains_key(&e.operator) {
            return reject("not an operator");
        }
        if e.vote_a == e.vote_b {
            return reject("votes are identical");
        }
        let chain = self.genesis_hash;
        for (v, s) in [(&e.vote_a, &e.signature_a), (&e.vote_b, &e.signature_b)] {
            agora_crypto::verify(&e.operator, Domain::Vote, &chain, v, s)
                .map_err(|_| Rejection::BadSignature)?;
        }
        let (ka, kb) = match (decoder(&e.vote_a), decoder(&e.vote_b)) {
            (Some(a), Some(b)) => (a, b),
            _ => return reject("undecodable vote"),
        };
        if ka != kb {
            return reject("votes are for different heights, rounds or steps");
        }
        let mut key_bytes = e.operator.as_bytes().to_vec();
        key_bytes.extend_from_slice(&ka.height.to_le_bytes());
        key_bytes.extend_from_slice(&ka.round.to_le_bytes());
        key_bytes.push(ka.step);
        let key = Hash::derive("agora/v1/evidence", &key_bytes);
        if self.s.evidence_seen.contains(&key) {
            return reject("evidence already processed");
        }
        if !self.takes_evidence_against(&e.operator) {
            return reject("operator is already jailed for equivocation");
        }
        if dry {
            return Ok(());
        }
        self.s.evidence_seen.insert(key);
        self.slash_operator(&e.operator, "equivocation")?;
        if let Some(o) = self.s.operators.get_mut(&e.operator) {
            o.jailed = true;
        }
        Ok(())
    }

    fn slash_operator(&mut self, op: &Address, reason: &str) -> Result<(), Rejection> {
        let rate = self.s.params.evidence_slash_bps;
        let o = self.s.operators.get_mut(op).ok_or(Rejection::Overflow)?;
        let amount = bps(o.stake, rate)?;
        o.stake = o.stake.checked_sub(amount)?;
        self.s.burned = self.s.burned.checked_add(amount)?;
        self.dirty.insert(Key::Operator(*op));
        self.emit(MarketEvent::OperatorSlashed {
            operator: *op,
            amount,
            reason: reason.into(),
        });
        Ok(())
    }

    fn tx_decline(&mut self, who: Address, d: &DeclineNotice, dry: bool) -> Result<(), Rejection> {
        if d.coprocessor != who {
            return Err(Rejection::NotAllowed(
                "notice names another coprocessor".into(),
            ));
        }
        if d.detail.len() as u64 > self.s.params.max_decline_detail_bytes as u64 {
            return Err(Rejection::Limit("detail too long".into()));
        }
        let job = self
            .s
            .jobs
            .get(&d.job_id)
            .ok_or(Rejection::UnknownJob(d.job_id))?;
        let exists = job.declines.iter().any(|r| r.coprocessor == who);
        if !exists && job.declines.len() as u64 >= self.s.params.max_declines_per_job as u64 {
            return Err(Rejection::Limit("decline list full".into()));
        }
        if dry {
            return Ok(());
        }
        let rec = DeclineRecord {
            coprocessor: who,
            reason: d.reason,
            detail: d.detail.clone(),
            height: self.s.height,
        };
        let job = self.job_mut(&d.job_id)?;
        job.declines.retain(|r| r.coprocessor != who);
        job.declines.push(rec);
        self.emit_job(
            &d.job_id,
            MarketEvent::Declined {
                job: d.job_id,
                coprocessor: who,
                reason: d.reason,
            },
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // health (design §9)

    fn observe_health(&mut self, ctx: &BlockContext, prev_time: Timestamp) {
        let gap = ctx.time.saturating_sub(prev_time);
        let p = &self.s.params;
        // The first block's gap is measured from genesis time and says nothing about health.
        let slow = ctx.height.0 > 1 && gap > p.stall_gap_ms;
        let weak = ctx.commit_power_bps < p.low_participation_bps;
        let unhealthy = slow || weak;
        let recovery = p.recovery_blocks;
        if unhealthy {
            // The whole unhealthy gap is frozen: auction clocks and deadlines do not advance.
            self.s.health.frozen_ms = self.s.health.frozen_ms.saturating_add(gap);
            self.s.health.healthy_run = 0;
            if !self.s.health.stalled {
                self.s.health.stalled = true;
                self.s.health.stalls += 1;
                self.emit(MarketEvent::StallDetected {
                    gap_ms: gap,
                    commit_power_bps: ctx.commit_power_bps,
                });
            }
        } else {
            // A slow block advances the clocks by at most one step; the rest is frozen.
            let step = gap.min(p.max_clock_step_ms);
            self.s.market_time = self.s.market_time.saturating_add(step);
            self.s.health.frozen_ms = self.s.health.frozen_ms.saturating_add(gap - step);
            if self.s.health.stalled {
                self.s.health.healthy_run += 1;
                if self.s.health.healthy_run >= recovery {
                    self.s.health.stalled = false;
                    self.s.health.healthy_run = 0;
                    let frozen_ms = self.s.health.frozen_ms;
                    self.emit(MarketEvent::StallRecovered { frozen_ms });
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // end of block: the lifecycle

    fn end_block(&mut self) {
        self.release_unbonding();
        self.prune_closed();
        let open: Vec<JobId> = self.s.open_jobs.iter().copied().collect();
        for id in open {
            if let Err(e) = self.advance_job(&id) {
                tracing::error!(target: "market.lifecycle", job = %id, error = %e, "job step failed");
                self.emit(MarketEvent::InternalError {
                    detail: format!("job {id}: {e}"),
                });
            }
        }
    }

    /// Drop final jobs older than the retention period from replicated state.
    fn prune_closed(&mut self) {
        let keep = self.s.params.job_retention_ms;
        while let Some((at, id)) = self.s.closed.front().copied() {
            if at.0.saturating_add(keep) > self.s.time.0 {
                break;
            }
            self.s.closed.pop_front();
            self.s.jobs.remove(&id);
            self.dirty.insert(Key::Job(id));
        }
    }

    fn release_unbonding(&mut self) {
        while let Some(u) = self.s.unbonding.front() {
            if u.release_at > self.s.time {
                break;
            }
            let u = self.s.unbonding.pop_front().expect("front exists");
            let ok = self.s.coprocessors.get_mut(&u.coprocessor).map(|c| {
                c.unbonding = c.unbonding.checked_sub(u.amount).unwrap_or_default();
            });
            if ok.is_some() && self.credit(u.coprocessor, u.amount).is_ok() {
                self.dirty.insert(Key::Coprocessor(u.coprocessor));
                self.emit(MarketEvent::UnbondingReleased {
                    coprocessor: u.coprocessor,
                    amount: u.amount,
                });
            }
        }
    }

    fn advance_job(&mut self, id: &JobId) -> Result<(), Rejection> {
        let state = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?.state;
        match state {
            JobState::Auction => self.step_auction(id)?,
            JobState::Awarded => {
                self.job_mut(id)?.state = JobState::Executing;
            }
            _ => {}
        }
        let state = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?.state;
        if matches!(
            state,
            JobState::Executing | JobState::Awarded | JobState::Auction
        ) {
            self.check_deadlines(id)?;
        }
        let state = self.s.jobs.get(id).map(|j| j.state);
        if matches!(state, Some(JobState::Executing) | Some(JobState::Awarded)) {
            self.try_verify(id)?;
        }
        if self.s.jobs.get(id).map(|j| j.state) == Some(JobState::Verifying) {
            self.step_audit(id)?;
        }
        Ok(())
    }

    fn clock_price(&self, job: &Job, now: u64) -> Amount {
        let AuctionSpec::Dutch {
            start_price,
            duration_ms,
        } = job.spec.auction
        else {
            return job.spec.max_price;
        };
        let elapsed = now.saturating_sub(job.auction.opened_at).min(duration_ms);
        let span = job.spec.max_price.0.saturating_sub(start_price.0);
        let rise = Amount(span)
            .mul_ratio(elapsed as u128, duration_ms.max(1) as u128)
            .unwrap_or_default();
        Amount(start_price.0.saturating_add(rise.0)).min(job.spec.max_price)
    }

    /// Rank candidates `(coprocessor, price)` by score then tie-break hash; ineligible ones are
    /// dropped. The block order of their bids never matters.
    /// `network` is the network's utilisation ū, computed once by the caller for the round.
    fn rank(
        &self,
        job: &Job,
        candidates: &[(Address, Amount)],
        network: Fixed,
    ) -> Vec<(Address, Amount)> {
        let collateral = self.collateral(&job.spec).unwrap_or_default();
        let exposure = bps(collateral, self.s.params.slash_bps).unwrap_or_default();
        let mut scored: Vec<(i128, Hash, Address, Amount)> = candidates
            .iter()
            .filter(|(c, _)| self.eligible(job, c).is_ok())
            .filter_map(|(c, price)| {
                let cop = self.s.coprocessors.get(c)?;
                let u = score(
                    cop.reputation(),
                    job.spec.max_price,
                    exposure,
                    *price,
                    self.utilisation_of(cop),
                    network,
                    &self.s.params,
                );
                Some((u, tie_break(&job.id, c), *c, *price))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, _, c, p)| (c, p)).collect()
    }

    /// A coprocessor's utilisation as the load term sees it ([`Coprocessor::utilisation`]).
    fn utilisation_of(&self, c: &Coprocessor) -> Fixed {
        c.utilisation(self.s.market_time, self.s.params.load_memory_ms)
    }

    /// The network's utilisation `ū`: the capacity-weighted mean utilisation of the active
    /// coprocessors.
    fn network_utilisation(&self) -> Fixed {
        let (mut sum, mut cap) = (Fixed::ZERO, 0i64);
        for c in self.s.coprocessors.values().filter(|c| c.active) {
            let weight = Fixed::from_int(i32::try_from(c.capacity).unwrap_or(i32::MAX));
            sum = sum.saturating_add(self.utilisation_of(c).saturating_mul(weight));
            cap = cap.saturating_add(i64::from(c.capacity));
        }
        if cap == 0 {
            return Fixed::ZERO;
        }
        let cap = Fixed::from_int(i32::try_from(cap).unwrap_or(i32::MAX));
        sum.checked_div(cap).unwrap_or(Fixed::ZERO)
    }

    fn step_auction(&mut self, id: &JobId) -> Result<(), Rejection> {
        let now = self.s.market_time;
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let elapsed = now.saturating_sub(job.auction.opened_at);
        match job.spec.auction.clone() {
            AuctionSpec::Dutch { duration_ms, .. } => {
                // The clock rose continuously from the last step to now: each acceptance it
                // crossed on the way is filled at the crossing, its own price, and one standing
                // since before the last step at the clock of that step (ADR 013).
                // A busy coprocessor's acceptance waits for the clock to pass its price plus the
                // load handicap, so at a like price the idle are filled first; it is still paid
                // on its own price.
                let price = self.clock_price(job, now);
                let before = job.auction.stepped_at.unwrap_or(job.auction.opened_at);
                let floor = self.clock_price(job, before).min(price);
                let network = self.network_utilisation();
                let value = job.spec.max_price;
                let fills: Vec<(Address, Amount)> = job
                    .auction
                    .dutch
                    .iter()
                    .filter(|(c, min)| {
                        let h = self.s.coprocessors.get(c).map_or(Amount::ZERO, |x| {
                            let u = self.utilisation_of(x);
                            load_handicap(value, u, network, &self.s.params)
                        });
                        min.0.saturating_add(h.0) <= price.0
                    })
                    .map(|(c, min)| (*c, (*min).max(floor)))
                    .collect();
                self.job_mut(id)?.auction.stepped_at = Some(now);
                let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
                if !fills.is_empty() {
                    let ranked = self.rank(job, &fills, network);
                    let slots = job.auction.slots;
                    let mut awarded = 0;
                    for (c, p) in ranked.into_iter() {
                        if awarded >= slots {
                            break;
                        }
                        // Re-check: an earlier award in this loop may have changed eligibility.
                        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
                        if self.eligible(job, &c).is_err() {
                            continue;
                        }
                        self.award(id, c, p)?;
                        awarded += 1;
                    }
                    let job = self.job_mut(id)?;
                    job.auction.slots -= awarded;
                    for c in job.assignments.keys().copied().collect::<Vec<_>>() {
                        job.auction.dutch.remove(&c);
                    }
                }
                let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
                if job.auction.slots == 0 {
                    self.all_awarded(id)?;
                } else if elapsed >= duration_ms {
                    self.round_unfilled(id)?;
                }
            }
            AuctionSpec::Sealed {
                commit_ms,
                reveal_ms,
            } => {
                if elapsed < commit_ms {
                    return Ok(());
                }
                if job.auction.reveal_opened_at.is_none() {
                    // This block is the first to show the reveal phase open: it runs from here.
                    self.job_mut(id)?.auction.reveal_opened_at = Some(now);
                    return Ok(());
                }
                if now < job.auction.reveal_end(commit_ms, reveal_ms) {
                    return Ok(());
                }
                // Forfeit unrevealed bonds to the client.
                let client = job.client;
                let forfeits: Vec<(Address, Amount)> =
                    job.bonds.iter().map(|(a, b)| (*a, *b)).collect();
                for (c, b) in forfeits {
                    self.job_mut(id)?.bonds.remove(&c);
                    self.credit(client, b)?;
                    self.emit_job(
                        id,
                        MarketEvent::BondForfeited {
                            job: *id,
                            coprocessor: c,
                            amount: b,
                        },
                    );
                }
                let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
                let max = job.spec.max_price;
                let reveals: Vec<(Address, Amount)> = job
                    .auction
                    .reveals
                    .iter()
                    .filter(|(_, p)| **p <= max)
                    .map(|(c, p)| (*c, *p))
                    .collect();
                let ranked = self.rank(job, &reveals, self.network_utilisation());
                let slots = job.auction.slots as usize;
                let winners: Vec<(Address, Amount)> = ranked.iter().take(slots).copied().collect();
                // Second price: the (slots+1)-th best revealed price. A thin round, with no
                // losing reveal to set it, clears at its highest winning bid rather than at the
                // client's max price (ADR 013). A winner is never paid below its own bid nor
                // above max price.
                let mut prices: Vec<Amount> = ranked.iter().map(|(_, p)| *p).collect();
                prices.sort();
                let highest_winner = winners.iter().map(|(_, p)| *p).max().unwrap_or(max);
                let clearing = prices.get(slots).copied().unwrap_or(highest_winner);
                let mut awarded = 0;
                for (c, own) in winners {
                    let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
                    if self.eligible(job, &c).is_err() {
                        continue;
                    }
                    self.award(id, c, clearing.max(own).min(max))?;
                    awarded += 1;
                }
                self.job_mut(id)?.auction.slots -= awarded;
                if self.s.jobs.get(id).map(|j| j.auction.slots) == Some(0) {
                    self.all_awarded(id)?;
                } else {
                    self.round_unfilled(id)?;
                }
            }
        }
        Ok(())
    }

    fn award(&mut self, id: &JobId, c: Address, price: Amount) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let collateral = self.collateral(&job.spec)?;
        let deadline = self.s.market_time.saturating_add(job.spec.deadline_ms);
        let round = job.auction.round;
        let memory = self.s.params.load_memory_ms;
        let now = self.s.market_time;
        let cop = self.cop_mut(&c)?;
        cop.locked = cop.locked.checked_add(collateral)?;
        cop.set_load(cop.load + 1, now, memory);
        let job = self.job_mut(id)?;
        job.assignments.insert(
            c,
            Assignment {
                price,
                collateral,
                round,
                deadline,
                status: SlotStatus::Executing,
                result: None,
            },
        );
        self.emit_job(
            id,
            MarketEvent::Awarded {
                job: *id,
                coprocessor: c,
                price,
                deadline,
            },
        );
        Ok(())
    }

    fn all_awarded(&mut self, id: &JobId) -> Result<(), Rejection> {
        // Return any bonds still held (none in normal flow) and move on.
        let job = self.job_mut(id)?;
        job.state = JobState::Awarded;
        job.auction.dutch.clear();
        Ok(())
    }

    fn round_unfilled(&mut self, id: &JobId) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let (round, missing, reauctions) = (job.auction.round, job.auction.slots, job.reauctions);
        self.emit_job(
            id,
            MarketEvent::AuctionUnfilled {
                job: *id,
                round,
                missing,
            },
        );
        if reauctions < self.s.params.max_reauctions {
            self.job_mut(id)?.reauctions += 1;
            self.open_round(id, missing, round + 1)
        } else {
            self.close_job(id, JobState::Refunded, "no coprocessor took the job")
        }
    }

    fn check_deadlines(&mut self, id: &JobId) -> Result<(), Rejection> {
        if self.s.health.stalled {
            // Nobody is slashed for a timeout while the network itself is unhealthy.
            return Ok(());
        }
        let now = self.s.market_time;
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let late: Vec<Address> = job
            .assignments
            .iter()
            .filter(|(_, a)| a.status == SlotStatus::Executing && a.deadline < now)
            .map(|(c, _)| *c)
            .collect();
        if late.is_empty() {
            return Ok(());
        }
        let client = job.client;
        let rate = self.s.params.timeout_slash_bps;
        for c in &late {
            let collateral = {
                let a = self
                    .job_mut(id)?
                    .assignments
                    .get_mut(c)
                    .ok_or(Rejection::Overflow)?;
                a.status = SlotStatus::TimedOut;
                a.collateral
            };
            let slashed = self.slash(c, collateral, rate, client, "timeout")?;
            let (now, memory) = (self.s.market_time, self.s.params.load_memory_ms);
            let cop = self.cop_mut(c)?;
            cop.set_load(cop.load.saturating_sub(1), now, memory);
            self.reputation(c, false);
            self.emit_job(
                id,
                MarketEvent::TimedOut {
                    job: *id,
                    coprocessor: *c,
                    slashed,
                },
            );
        }
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let missing = job.target_replicas().saturating_sub(job.live_slots());
        let in_auction = job.state == JobState::Auction;
        if job.reauctions >= self.s.params.max_reauctions {
            return self.close_job(
                id,
                JobState::Failed,
                "deadline missed and re-auction limit reached",
            );
        }
        self.job_mut(id)?.reauctions += 1;
        if in_auction {
            self.job_mut(id)?.auction.slots = missing;
            Ok(())
        } else {
            let round = self
                .s
                .jobs
                .get(id)
                .map(|j| j.auction.round + 1)
                .unwrap_or(0);
            self.open_round(id, missing, round)
        }
    }

    fn try_verify(&mut self, id: &JobId) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let live: Vec<(Address, Hash)> = job
            .assignments
            .iter()
            .filter(|(_, a)| a.is_live())
            .filter_map(|(c, a)| a.result.as_ref().map(|r| (*c, r.result_hash)))
            .collect();
        if live.len() < job.target_replicas() as usize || job.live_slots() > live.len() as u32 {
            return Ok(());
        }
        let k = job.spec.replicas as usize;
        if k == 1 {
            let (cop, _) = live[0];
            let q = if job.spec.audit_bps == 0 {
                self.s.params.audit_bps
            } else {
                job.spec.audit_bps
            };
            let draw = Hash::derive(
                "agora/v1/audit",
                &[self.seed.as_bytes().as_slice(), id.as_bytes()].concat(),
            );
            let roll = u64::from_le_bytes(draw.0[..8].try_into().expect("8 bytes")) % 10_000;
            if roll < q as u64 {
                if let Some(auditor) = self.pick_operator(&draw, &[cop]) {
                    let deadline = self
                        .s
                        .market_time
                        .saturating_add(self.s.params.audit_window_ms);
                    let job = self.job_mut(id)?;
                    job.state = JobState::Verifying;
                    job.audit = Some(Audit {
                        auditor,
                        attested: None,
                        tiebreaker: None,
                        tiebreaker_attested: None,
                        deadline,
                    });
                    self.emit_job(id, MarketEvent::AuditSelected { job: *id, auditor });
                    return Ok(());
                }
            }
            return self.settle(id, &[cop], &[]);
        }
        let mut groups: BTreeMap<Hash, Vec<Address>> = BTreeMap::new();
        for (c, h) in &live {
            groups.entry(*h).or_default().push(*c);
        }
        let majority = groups.iter().find(|(_, v)| v.len() * 2 > live.len());
        match majority {
            Some((h, winners)) => {
                let h = *h;
                let winners = winners.clone();
                let losers: Vec<Address> = live
                    .iter()
                    .filter(|(_, x)| *x != h)
                    .map(|(c, _)| *c)
                    .collect();
                self.settle(id, &winners, &losers)
            }
            None => self.no_majority(id),
        }
    }

    /// No majority among the results: auction one more replica (bounded by the re-auction limit,
    /// paid from the client's balance: one more max price), else fail and refund.
    fn no_majority(&mut self, id: &JobId) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let (client, extra, round) = (job.client, job.spec.max_price, job.auction.round);
        let can_pay = self.balance(&client) >= extra;
        if job.reauctions >= self.s.params.max_reauctions || !can_pay {
            return self.close_job(id, JobState::Failed, "no majority among replica results");
        }
        self.debit(client, extra)?;
        let job = self.job_mut(id)?;
        job.escrow = job.escrow.checked_add(extra)?;
        job.extra_replicas += 1;
        job.reauctions += 1;
        let replicas = job.target_replicas();
        self.emit_job(
            id,
            MarketEvent::ExtraReplica {
                job: *id,
                replicas,
                escrow_added: extra,
            },
        );
        self.open_round(id, 1, round + 1)
    }

    /// Stake-weighted choice of a non-jailed operator, excluding `exclude`.
    fn pick_operator(&self, draw: &Hash, exclude: &[Address]) -> Option<Address> {
        let pool: Vec<(Address, u128)> = self
            .s
            .operators
            .iter()
            .filter(|(a, o)| !o.jailed && !o.stake.is_zero() && !exclude.contains(a))
            .map(|(a, o)| (*a, o.stake.0))
            .collect();
        // An operator that has stopped signing commits would never attest: draw among the
        // others while there are any.
        let live: Vec<(Address, u128)> = pool
            .iter()
            .filter(|(a, _)| !self.absent.contains(a))
            .copied()
            .collect();
        let pool = if live.is_empty() { pool } else { live };
        let total: u128 = pool
            .iter()
            .map(|(_, s)| *s)
            .fold(0u128, |a, b| a.saturating_add(b));
        if total == 0 {
            return None;
        }
        let r = u128::from_le_bytes(draw.0[16..32].try_into().expect("16 bytes")) % total;
        let mut acc = 0u128;
        for (a, s) in pool {
            acc = acc.saturating_add(s);
            if r < acc {
                return Some(a);
            }
        }
        None
    }

    fn step_audit(&mut self, id: &JobId) -> Result<(), Rejection> {
        let now = self.s.market_time;
        let stalled = self.s.health.stalled;
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let Some(audit) = job.audit.clone() else {
            return Ok(());
        };
        let Some((cop, a)) = job.assignments.iter().find(|(_, a)| a.is_live()) else {
            return self.close_job(id, JobState::Failed, "no live replica under audit");
        };
        let cop = *cop;
        let claimed = a
            .result
            .as_ref()
            .map(|r| r.result_hash)
            .unwrap_or(Hash::ZERO);
        match (audit.attested, audit.tiebreaker, audit.tiebreaker_attested) {
            (Some(h), _, _) if h == claimed => self.settle(id, &[cop], &[]),
            (Some(_), None, _) => {
                let draw = Hash::derive(
                    "agora/v1/tiebreak",
                    &[self.seed.as_bytes().as_slice(), id.as_bytes()].concat(),
                );
                let tb = self.pick_operator(&draw, &[cop, audit.auditor]);
                self.emit_job(
                    id,
                    MarketEvent::AuditMismatch {
                        job: *id,
                        auditor: audit.auditor,
                        tiebreaker: tb,
                    },
                );
                match tb {
                    Some(t) => {
                        let deadline = now.saturating_add(self.s.params.audit_window_ms);
                        let job = self.job_mut(id)?;
                        if let Some(au) = job.audit.as_mut() {
                            au.tiebreaker = Some(t);
                            au.deadline = deadline;
                        }
                        Ok(())
                    }
                    None => {
                        self.close_job(id, JobState::Failed, "audit mismatch with no tie-breaker")
                    }
                }
            }
            (Some(auditor_hash), Some(_), Some(tb_hash)) => {
                if tb_hash == claimed {
                    // The auditor lied or erred: the coprocessor is paid, the auditor slashed.
                    self.slash_operator(&audit.auditor, "wrong audit")?;
                    self.settle(id, &[cop], &[])
                } else if tb_hash == auditor_hash {
                    self.settle(id, &[], &[cop])
                } else {
                    self.close_job(id, JobState::Failed, "audit inconclusive")
                }
            }
            (Some(_), Some(_), None) => {
                if !stalled && now > audit.deadline {
                    self.close_job(id, JobState::Failed, "tie-breaker did not attest")
                } else {
                    Ok(())
                }
            }
            (None, _, _) => {
                if !stalled && now > audit.deadline {
                    // The optimistic result stands when the auditor stays silent.
                    self.settle(id, &[cop], &[])
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Slash `rate` of `collateral` from `c` and release the lock: part to `client`, rest burned.
    fn slash(
        &mut self,
        c: &Address,
        collateral: Amount,
        rate: u32,
        client: Address,
        reason: &str,
    ) -> Result<Amount, Rejection> {
        let comp_bps = self.s.params.client_compensation_bps;
        let cop = self.cop_mut(c)?;
        let amount = bps(collateral, rate)?.min(cop.stake);
        cop.locked = cop.locked.checked_sub(collateral)?;
        cop.stake = cop.stake.checked_sub(amount)?;
        cop.failed += 1;
        cop.slashed = cop.slashed.checked_add(amount)?;
        let to_client = bps(amount, comp_bps)?;
        let burned = amount.checked_sub(to_client)?;
        self.credit(client, to_client)?;
        self.s.burned = self.s.burned.checked_add(burned)?;
        self.emit(MarketEvent::Slashed {
            coprocessor: *c,
            amount,
            to_client,
            burned,
            reason: reason.into(),
        });
        self.update_activity(c);
        Ok(amount)
    }

    /// Count a proven wrong result; `max_strikes` unforgiven ones eject the coprocessor.
    fn strike(&mut self, c: &Address) -> Result<(), Rejection> {
        let max = self.s.params.max_strikes;
        let cop = self.cop_mut(c)?;
        cop.strikes = cop.strikes.saturating_add(1);
        cop.clean_streak = 0;
        let strikes = cop.strikes;
        if max == 0 || strikes < max || cop.ejected {
            return Ok(());
        }
        cop.ejected = true;
        self.emit(MarketEvent::CoprocessorEjected {
            coprocessor: *c,
            strikes,
        });
        self.update_activity(c);
        Ok(())
    }

    fn reputation(&mut self, c: &Address, success: bool) {
        let params = self.s.params.clone();
        if let Some(cop) = self.s.coprocessors.get_mut(c) {
            cop.logit = gas_update(cop.logit, success, &params);
            let reputation_bps = cop.reputation_bps();
            self.dirty.insert(Key::Coprocessor(*c));
            self.emit(MarketEvent::ReputationUpdated {
                coprocessor: *c,
                outcome: success,
                reputation_bps,
            });
        }
    }

    /// Pay `winners`, slash `losers`, distribute the protocol fee, pay auditors, refund the rest.
    fn settle(
        &mut self,
        id: &JobId,
        winners: &[Address],
        losers: &[Address],
    ) -> Result<(), Rejection> {
        let job = self
            .s
            .jobs
            .get(id)
            .ok_or(Rejection::UnknownJob(*id))?
            .clone();
        let fee_bps = self.s.params.protocol_fee_bps;
        let mut escrow = job.escrow;
        let mut fees = Amount::ZERO;
        let mut result = None;
        for c in winners {
            let a = job.assignments.get(c).ok_or(Rejection::Overflow)?;
            let fee = bps(a.price, fee_bps)?;
            let net = a.price.checked_sub(fee)?;
            escrow = escrow.checked_sub(a.price)?;
            fees = fees.checked_add(fee)?;
            self.credit(*c, net)?;
            let forgive = self.s.params.strike_forgive;
            let cop = self.cop_mut(c)?;
            cop.locked = cop.locked.checked_sub(a.collateral)?;
            cop.completed += 1;
            cop.earned = cop.earned.checked_add(net)?;
            if cop.strikes > 0 && forgive > 0 {
                cop.clean_streak += 1;
                if cop.clean_streak >= forgive {
                    cop.strikes -= 1;
                    cop.clean_streak = 0;
                }
            }
            if let Some(slot) = self.job_mut(id)?.assignments.get_mut(c) {
                slot.status = SlotStatus::Paid;
                result = slot.result.clone();
            }
            self.reputation(c, true);
            self.emit_job(
                id,
                MarketEvent::Paid {
                    job: *id,
                    coprocessor: *c,
                    amount: net,
                    fee,
                },
            );
        }
        for c in losers {
            let a = job.assignments.get(c).ok_or(Rejection::Overflow)?;
            let collateral = a.collateral;
            if let Some(slot) = self.job_mut(id)?.assignments.get_mut(c) {
                slot.status = SlotStatus::Slashed;
            }
            // Escalation (ADR 013): the n-th unforgiven proven fault costs n times the factor.
            let strikes = match self.s.params.max_strikes {
                0 => 0,
                _ => self.s.coprocessors.get(c).map_or(0, |x| x.strikes),
            };
            let rate = self
                .s
                .params
                .slash_bps
                .saturating_mul(strikes.saturating_add(1))
                .min(10_000);
            self.slash(c, collateral, rate, job.client, "wrong result")?;
            self.reputation(c, false);
            self.strike(c)?;
        }
        self.distribute_fees(fees)?;
        // Auditors who attested are paid the audit fee (split); otherwise it is refunded.
        if let Some(audit) = &job.audit {
            let mut paid_to = Vec::new();
            if audit.attested.is_some() {
                paid_to.push(audit.auditor);
            }
            if let (Some(t), Some(_)) = (audit.tiebreaker, audit.tiebreaker_attested) {
                paid_to.push(t);
            }
            if !paid_to.is_empty() {
                let fee = self.s.params.audit_fee.min(escrow);
                let share = fee.checked_div(paid_to.len() as u128)?;
                for a in paid_to {
                    self.credit(a, share)?;
                    escrow = escrow.checked_sub(share)?;
                }
            }
        }
        let job_mut = self.job_mut(id)?;
        job_mut.escrow = escrow;
        if let Some(r) = &result {
            job_mut.result_hash = Some(r.result_hash);
            job_mut.outcome = Some(r.outcome);
        }
        if winners.is_empty() {
            return self.close_job(id, JobState::Failed, "the only replica was proven wrong");
        }
        let refund = escrow;
        self.credit(job.client, refund)?;
        let now = self.s.time;
        let job_mut = self.job_mut(id)?;
        job_mut.escrow = Amount::ZERO;
        job_mut.state = JobState::Settled;
        job_mut.closed_at = Some(now);
        self.s.closed.push_back((now, *id));
        self.s.open_jobs.remove(id);
        let result_hash = result.as_ref().map(|r| r.result_hash).unwrap_or_default();
        self.emit_job(
            id,
            MarketEvent::Settled {
                job: *id,
                result_hash,
                refund,
                outcome: result.as_ref().map_or(Outcome::Success, |r| r.outcome),
                fuel_used: result.as_ref().map_or(0, |r| r.fuel_used),
            },
        );
        Ok(())
    }

    fn distribute_fees(&mut self, fees: Amount) -> Result<(), Rejection> {
        if fees.is_zero() {
            return Ok(());
        }
        let pool: Vec<(Address, Amount)> = self
            .s
            .operators
            .iter()
            .filter(|(_, o)| !o.jailed && !o.stake.is_zero())
            .map(|(a, o)| (*a, o.stake))
            .collect();
        let total = Amount::checked_sum(pool.iter().map(|(_, s)| *s))?;
        if total.is_zero() {
            self.s.burned = self.s.burned.checked_add(fees)?;
            return Ok(());
        }
        let mut paid = Amount::ZERO;
        for (a, s) in &pool {
            let share = fees.mul_ratio(s.0, total.0)?;
            paid = paid.checked_add(share)?;
            self.credit(*a, share)?;
        }
        // Rounding dust goes to the largest stake (lowest address among equals).
        let dust = fees.checked_sub(paid)?;
        if !dust.is_zero() {
            let top = pool
                .iter()
                .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(&x.0)))
                .map(|x| x.0);
            if let Some(a) = top {
                self.credit(a, dust)?;
            }
        }
        Ok(())
    }

    /// End a job without paying anyone: release live collateral, return bonds, refund escrow.
    fn close_job(&mut self, id: &JobId, state: JobState, reason: &str) -> Result<(), Rejection> {
        let job = self
            .s
            .jobs
            .get(id)
            .ok_or(Rejection::UnknownJob(*id))?
            .clone();
        let (now, memory) = (self.s.market_time, self.s.params.load_memory_ms);
        for (c, a) in &job.assignments {
            if a.is_live() {
                let cop = self.cop_mut(c)?;
                cop.locked = cop.locked.checked_sub(a.collateral)?;
                if a.status == SlotStatus::Executing {
                    cop.set_load(cop.load.saturating_sub(1), now, memory);
                }
            }
        }
        for (c, b) in &job.bonds {
            self.credit(*c, *b)?;
        }
        self.credit(job.client, job.escrow)?;
        let now = self.s.time;
        let j = self.job_mut(id)?;
        for a in j.assignments.values_mut() {
            if a.is_live() {
                a.status = SlotStatus::Released;
            }
        }
        j.bonds.clear();
        j.escrow = Amount::ZERO;
        j.state = state;
        j.closed_at = Some(now);
        j.failure = Some(reason.to_owned());
        self.s.closed.push_back((now, *id));
        self.s.open_jobs.remove(id);
        let ev = if state == JobState::Failed {
            MarketEvent::Failed {
                job: *id,
                reason: reason.into(),
                refund: job.escrow,
            }
        } else {
            MarketEvent::Refunded {
                job: *id,
                amount: job.escrow,
                reason: reason.into(),
            }
        };
        self.emit_job(id, ev);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // app hash

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
    fn commit_hash(&mut self) -> Hash {
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
