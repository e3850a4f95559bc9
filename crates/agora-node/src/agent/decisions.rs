//! The agent's decisions, as a function of the replicated market and the agent's own
//! bookkeeping: no task, no clock, no network, no disk. [`AgentCore::step`] reads the market after
//! a block and returns what to do — transactions to sign and submit, blobs to fetch, jobs to
//! execute or audit — and the caller reports back what happened ([`AgentCore::fetched`],
//! [`AgentCore::finished`], [`AgentCore::submitted`]). The node's actor (`super::Agent`) carries
//! the decisions out with tokio tasks, the sandbox and the chain task; the whole-node simulator
//! carries out the same decisions on simulated time.
//!
//! Every decision is derived from the state again each block — "an auction I have not bid in
//! this round", "a slot of mine with no result", "an audit assigned to me with no attestation" —
//! so a restart or a lost transaction never leaves the agent confused; a small in-flight table
//! only stops it from sending the same transaction twice while the first is on its way.
//!
//! Nonces: transactions are pipelined with consecutive nonces. A transaction rejected when its
//! block is applied does not consume its nonce, which leaves a gap the later ones wait behind;
//! when the account's nonce on chain has not moved for [`NONCE_STALL_BLOCKS`] blocks (and
//! [`NONCE_STALL_TIME_MS`]) while transactions are outstanding, the agent restarts the sequence
//! from the chain's nonce and re-derives what is still needed.

use std::collections::{BTreeMap, BTreeSet};

use agora_consensus::{ConsensusError, MempoolError};
use agora_market::{
    reserve_price, AuctionSpec, DeclineReason, Job, JobState, Market, SlotStatus, TxKind,
};
use agora_types::{Address, Amount, Hash, JobId};

use crate::config::CoprocessorSection;

/// Blocks, and time, without progress of our nonce (while transactions are outstanding) before
/// the agent restarts its nonce sequence from the chain.
pub const NONCE_STALL_BLOCKS: u32 = 4;
pub const NONCE_STALL_TIME_MS: u64 = 3_000;
/// Blocks after which an in-flight action with no visible effect may be sent again.
const RESEND_AFTER_BLOCKS: u64 = 8;
/// Transactions outstanding at once (the market accepts nonces up to 64 ahead).
const MAX_OUTSTANDING: u64 = 48;

/// What this node's agent does.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub coprocessor: bool,
    pub operator: bool,
    pub section: CoprocessorSection,
}

/// Something the agent sends at most once at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Stake,
    Bid(JobId, u32),
    Reveal(JobId, u32),
    Decline(JobId, DeclineReason),
    Result(JobId),
    Audit(JobId),
}

/// What the agent decided to do after a block, in order.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Sign `TxKind` with [`AgentCore::next_nonce`], submit it, report with
    /// [`AgentCore::submitted`]. Skip it while [`AgentCore::may_submit`] is false.
    Submit(Action, TxKind),
    /// Fetch the job's module and input; report with [`AgentCore::fetched`].
    Fetch(Job),
    /// Execute the job (`false`) or audit it (`true`); report with [`AgentCore::finished`].
    Run(Job, bool),
}

/// How an execution or audit ended.
#[derive(Clone, Debug)]
pub enum RunEnd {
    /// A transaction to send.
    Tx(Box<TxKind>),
    /// Nothing now (e.g. the module could not be fetched yet): try again on a later block.
    Retry,
    /// Nothing honest to commit (the run did not end deterministically).
    GiveUp,
}

/// The agent's state and decisions.
#[derive(Clone, Debug)]
pub struct AgentCore {
    cfg: AgentConfig,
    me: Address,
    next_nonce: u64,
    chain_nonce: u64,
    stalled_blocks: u32,
    /// When (caller's clock, ms) our nonce on chain last moved.
    progress_at: u64,
    height: u64,
    /// The height `track_nonce` last counted (steps between blocks do not count).
    nonce_height: u64,
    inflight: BTreeMap<Action, u64>,
    /// The coprocessor's `slashed` total the last time its stake was at or above the minimum:
    /// a stake below the minimum with more slashed since is a slash to top up, not a leave.
    healthy_slashed: Option<Amount>,
    /// Key of the sealed-bid salts: derived from the node key, so salts are secret, and a
    /// restarted agent finds its own again (no bond is lost to a restart).
    salt_key: Hash,
    /// Jobs with an execution or audit started (or given up on), until the job closes.
    started: BTreeSet<(JobId, bool)>,
    /// Results and attestations computed, kept until the chain shows them (a transaction can
    /// be refused or dropped; the execution is not repeated for that).
    computed: BTreeMap<Action, TxKind>,
    /// Jobs whose module and input are being fetched before we bid, with the fetch's outcome
    /// once known.
    fetching: BTreeMap<JobId, Option<bool>>,
}

impl AgentCore {
    /// The agent of the key whose seed is `key_seed` (the sealed-bid salts derive from it).
    pub fn new(cfg: AgentConfig, me: Address, key_seed: &[u8; 32], now_ms: u64) -> AgentCore {
        AgentCore {
            cfg,
            me,
            next_nonce: 0,
            chain_nonce: 0,
            stalled_blocks: 0,
            progress_at: now_ms,
            height: 0,
            nonce_height: 0,
            inflight: BTreeMap::new(),
            healthy_slashed: None,
            salt_key: Hash::derive("agora/v1/sealed-salt-key", key_seed),
            started: BTreeSet::new(),
            computed: BTreeMap::new(),
            fetching: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The nonce the next submitted transaction carries.
    pub fn next_nonce(&self) -> u64 {
        self.next_nonce
    }

    /// Whether another transaction may go out now (at most `MAX_OUTSTANDING` ahead of the
    /// chain's nonce).
    pub fn may_submit(&self) -> bool {
        self.next_nonce.saturating_sub(self.chain_nonce) < MAX_OUTSTANDING
    }

    /// One block's worth of decisions, at market height `height` and caller time `now_ms`;
    /// `have_inputs` says whether a job's module and input are stored locally.
    pub fn step(
        &mut self,
        m: &Market,
        height: u64,
        now_ms: u64,
        have_inputs: &dyn Fn(&Job) -> bool,
    ) -> Vec<Decision> {
        self.height = height;
        let mut out = Vec::new();
        self.track_nonce(m.nonce(&self.me), now_ms);
        let h = self.height;
        self.inflight
            .retain(|_, at| h.saturating_sub(*at) < RESEND_AFTER_BLOCKS);
        // Forget jobs that left the market or closed.
        self.started
            .retain(|(j, _)| m.job(j).is_some_and(|job| !job.state.is_final()));
        // A fetch outcome matters only while its job is in auction.
        self.fetching
            .retain(|j, _| m.job(j).is_some_and(|job| job.state == JobState::Auction));
        let me = self.me;
        self.computed.retain(|action, _| match action {
            Action::Result(j) => m.job(j).is_some_and(|job| {
                job.assignments
                    .get(&me)
                    .is_some_and(|a| a.status == SlotStatus::Executing)
            }),
            Action::Audit(j) => m.job(j).is_some_and(|job| awaits_attestation(job, &me)),
            _ => false,
        });
        if self.cfg.coprocessor {
            self.coprocessor_step(m, have_inputs, &mut out);
        }
        if self.cfg.operator {
            self.operator_step(m, &mut out);
        }
        out
    }

    /// A fetch of `job`'s blobs ended; `true` if it is worth stepping again now (to bid).
    pub fn fetched(&mut self, job: JobId, ok: bool) -> bool {
        self.fetching.insert(job, Some(ok));
        ok
    }

    /// An execution or audit ended: the transaction to submit now, if any.
    pub fn finished(&mut self, job: JobId, audit: bool, end: RunEnd) -> Option<(Action, TxKind)> {
        let action = if audit {
            Action::Audit(job)
        } else {
            Action::Result(job)
        };
        match end {
            RunEnd::Tx(kind) => {
                self.computed.insert(action, (*kind).clone());
                Some((action, *kind))
            }
            RunEnd::Retry => {
                self.started.remove(&(job, audit));
                None
            }
            RunEnd::GiveUp => None,
        }
    }

    /// What became of a transaction signed with [`AgentCore::next_nonce`] for `action`.
    pub fn submitted(&mut self, action: Action, result: &Result<(), ConsensusError>) {
        match result {
            Ok(()) => self.next_nonce += 1,
            Err(e) => {
                // Our own earlier tx still holds this nonce here (after a sequence restart):
                // go on past it rather than refusing every later action the same way (ADR 008).
                if let ConsensusError::Mempool(MempoolError::NoncePending { next_free, .. }) = e {
                    self.next_nonce = self.next_nonce.max(*next_free);
                }
            }
        }
        // Refused or not, try again only after a while, from the chain's view of things.
        self.inflight.insert(action, self.height);
    }

    fn track_nonce(&mut self, on_chain: u64, now_ms: u64) {
        if on_chain != self.chain_nonce || self.next_nonce <= on_chain {
            self.chain_nonce = on_chain;
            self.stalled_blocks = 0;
            self.progress_at = now_ms;
        } else if self.nonce_height != self.height {
            self.stalled_blocks += 1;
            if self.stalled_blocks >= NONCE_STALL_BLOCKS
                && now_ms.saturating_sub(self.progress_at) >= NONCE_STALL_TIME_MS
            {
                tracing::info!(target: "node.agent", chain_nonce = on_chain, next = self.next_nonce, "restarting the nonce sequence");
                self.next_nonce = on_chain;
                self.inflight.clear();
                self.stalled_blocks = 0;
            }
        }
        if self.next_nonce < on_chain {
            self.next_nonce = on_chain;
        }
        self.nonce_height = self.height;
    }

    fn coprocessor_step(
        &mut self,
        m: &Market,
        have_inputs: &dyn Fn(&Job) -> bool,
        out: &mut Vec<Decision>,
    ) {
        let me = self.me;
        let sec = &self.cfg.section;
        let params = m.params();
        let cop = m.coprocessor(&me);
        // Join with the configured stake once; afterwards the stake is the operator's to
        // change (`agora coprocessor join|leave`), and only a changed capacity is re-declared.
        let join = cop.is_none() && sec.stake > 0;
        let cap_differs = cop.is_some_and(|c| !c.stake.is_zero() && c.capacity != sec.capacity);
        let top_up = cop.and_then(|c| {
            if c.stake >= params.min_stake {
                self.healthy_slashed = Some(c.slashed);
            }
            let seen = *self.healthy_slashed.get_or_insert(c.slashed);
            let want = if sec.restake { sec.stake } else { 0 };
            top_up_after_slash(c, seen, want, params.min_stake, m.balance(&me))
        });
        if (join || cap_differs || top_up.is_some()) && !self.inflight.contains_key(&Action::Stake)
        {
            let amount = if join {
                Amount(u128::from(sec.stake)).min(m.balance(&me))
            } else {
                top_up.unwrap_or(Amount::ZERO)
            };
            if top_up.is_some() {
                tracing::info!(target: "agent", %amount, "a slash took the stake below the minimum: staking again");
            }
            if !join || amount >= params.min_stake {
                out.push(Decision::Submit(
                    Action::Stake,
                    TxKind::Stake {
                        amount,
                        capacity: sec.capacity,
                    },
                ));
            }
        }
        let Some(cop) = cop else { return };
        let now = m.market_time();
        for id in m.open_jobs() {
            let Some(job) = m.job(id) else { continue };
            // Slots of ours to execute, or whose result is still to land — also once the
            // coprocessor is inactive (a slash took its stake below the minimum): what it won
            // it still owes, and a missed deadline would be slashed again.
            if job
                .assignments
                .get(&me)
                .is_some_and(|a| a.status == SlotStatus::Executing)
            {
                self.resend_or_run(job, false, out);
                continue;
            }
            if job.state != JobState::Auction || job.assignments.contains_key(&me) {
                continue;
            }
            let round = job.auction.round;
            let elapsed = now.saturating_sub(job.auction.opened_at);
            // A sealed bid of ours waiting for its reveal phase.
            if let AuctionSpec::Sealed { commit_ms, .. } = job.spec.auction {
                if job.auction.commits.contains_key(&me) {
                    let key = Action::Reveal(*id, round);
                    if elapsed >= commit_ms
                        && !job.auction.reveals.contains_key(&me)
                        && !self.inflight.contains_key(&key)
                    {
                        if let Some((price, salt)) = self.our_sealed_bid(m, job) {
                            out.push(Decision::Submit(
                                key,
                                TxKind::Bid {
                                    job_id: *id,
                                    bid: agora_market::BidKind::Reveal { price, salt },
                                },
                            ));
                        }
                    }
                    continue;
                }
                if elapsed >= commit_ms {
                    continue;
                }
            } else if job.auction.dutch.contains_key(&me) {
                continue;
            }
            // New bids only while active (a pending reveal above still goes out: its bond).
            if !cop.active || self.inflight.contains_key(&Action::Bid(*id, round)) {
                continue;
            }
            // Bid only on what we can run: module and input first (a finished fetch wakes us).
            let decision = match self.decide(m, job, cop.load, cop.free_collateral()) {
                Ok(_) if !have_inputs(job) => match self.fetching.get(id) {
                    None => {
                        self.fetching.insert(*id, None);
                        out.push(Decision::Fetch(job.clone()));
                        continue;
                    }
                    Some(Some(false)) => Err((
                        DeclineReason::Other,
                        "module or input not available from any peer".to_owned(),
                    )),
                    Some(_) => continue,
                },
                other => other,
            };
            match decision {
                Ok(price) => {
                    let bid = match job.spec.auction {
                        AuctionSpec::Dutch { .. } => {
                            agora_market::BidKind::Dutch { min_price: price }
                        }
                        AuctionSpec::Sealed { .. } => {
                            let salt = self.salt(id, round);
                            agora_market::BidKind::Commit {
                                commitment: agora_market::sealed_commitment(id, &me, price, &salt),
                            }
                        }
                    };
                    out.push(Decision::Submit(
                        Action::Bid(*id, round),
                        TxKind::Bid { job_id: *id, bid },
                    ));
                }
                Err((reason, detail)) => {
                    let key = Action::Decline(*id, reason);
                    let said = job
                        .declines
                        .iter()
                        .any(|d| d.coprocessor == me && d.reason == reason);
                    if !said && !self.inflight.contains_key(&key) {
                        out.push(Decision::Submit(
                            key,
                            TxKind::Decline(agora_market::DeclineNotice {
                                job_id: *id,
                                coprocessor: me,
                                reason,
                                detail,
                            }),
                        ));
                    }
                }
            }
        }
    }

    /// Bid price for a job, or why not (design §7: the reserve price rises with load).
    fn decide(
        &self,
        m: &Market,
        job: &Job,
        load: u32,
        free: Amount,
    ) -> Result<Amount, (DeclineReason, String)> {
        let sec = &self.cfg.section;
        let spec = &job.spec;
        let me = m.coprocessor(&self.me);
        if spec.module_size > sec.max_module_bytes {
            return Err((
                DeclineReason::ModuleTooLarge,
                format!(
                    "module {} bytes, this coprocessor takes up to {}",
                    spec.module_size, sec.max_module_bytes
                ),
            ));
        }
        if spec.fuel_limit > sec.max_fuel {
            return Err((
                DeclineReason::FuelOverLimit,
                format!(
                    "fuel limit {}, this coprocessor takes up to {}",
                    spec.fuel_limit, sec.max_fuel
                ),
            ));
        }
        let rep = me.map(|c| c.reputation_bps()).unwrap_or(0);
        if rep < spec.min_reputation_bps {
            return Err((
                DeclineReason::ReputationBelowMinimum,
                format!(
                    "reputation {rep} bps below the job's minimum {}",
                    spec.min_reputation_bps
                ),
            ));
        }
        if load >= sec.capacity {
            return Err((
                DeclineReason::AtCapacity,
                format!("{load} of {} slots busy", sec.capacity),
            ));
        }
        let collateral = Amount(
            spec.max_price
                .0
                .saturating_mul(u128::from(m.params().collateral_bps))
                / 10_000,
        );
        if free < collateral {
            return Err((
                DeclineReason::Other,
                format!("free collateral {free} below the {collateral} this job locks"),
            ));
        }
        let reserve = reserve_price(self.cost(spec), load, sec.capacity, m.params());
        if reserve > spec.max_price {
            return Err((
                DeclineReason::PriceBelowReserve,
                format!(
                    "max price {} below reserve {reserve} (load {load}/{})",
                    spec.max_price, sec.capacity
                ),
            ));
        }
        Ok(reserve)
    }

    /// What running a job costs this coprocessor: `base_cost + fuel_limit / fuel_per_unit`.
    fn cost(&self, spec: &agora_market::JobSpec) -> Amount {
        let sec = &self.cfg.section;
        Amount(
            u128::from(sec.base_cost)
                .saturating_add(u128::from(spec.fuel_limit / sec.fuel_per_unit.max(1))),
        )
    }

    /// The salt of our sealed bid in a job's round.
    fn salt(&self, job: &JobId, round: u32) -> Hash {
        let mut bytes = self.salt_key.as_bytes().to_vec();
        bytes.extend_from_slice(job.as_bytes());
        bytes.extend_from_slice(&round.to_le_bytes());
        Hash::derive("agora/v1/sealed-salt", &bytes)
    }

    /// The price and salt behind our commitment in the job's current round.
    fn our_sealed_bid(&self, m: &Market, job: &Job) -> Option<(Amount, Hash)> {
        let commitment = job.auction.commits.get(&self.me)?;
        let salt = self.salt(&job.id, job.auction.round);
        let found = sealed_price(
            commitment,
            &job.id,
            &self.me,
            &salt,
            self.cost(&job.spec),
            self.cfg.section.capacity,
            m.params(),
        );
        if found.is_none() {
            tracing::warn!(target: "node.agent", job = %job.id.short(), "cannot reconstruct our sealed bid (cost model changed?); its bond is forfeited");
        }
        found.map(|p| (p, salt))
    }

    fn operator_step(&mut self, m: &Market, out: &mut Vec<Decision>) {
        for id in m.open_jobs() {
            let Some(job) = m.job(id) else { continue };
            if !awaits_attestation(job, &self.me) {
                continue;
            }
            self.resend_or_run(job, true, out);
        }
    }

    /// Our result (or audit attestation) for `job`: send it again if it was computed and is no
    /// longer in flight, else start computing it unless that has begun.
    fn resend_or_run(&mut self, job: &Job, audit: bool, out: &mut Vec<Decision>) {
        let action = if audit {
            Action::Audit(job.id)
        } else {
            Action::Result(job.id)
        };
        if let Some(kind) = self.computed.get(&action) {
            if !self.inflight.contains_key(&action) {
                out.push(Decision::Submit(action, kind.clone()));
            }
        } else if !self.started.contains(&(job.id, audit)) {
            self.started.insert((job.id, audit));
            out.push(Decision::Run(job.clone(), audit));
        }
    }
}

/// How much to stake again after a slash took `c`'s stake below `min_stake`: up to `target`
/// (the configured stake, 0 = never), from `balance`, only if enough to be active again. Not
/// after a leave (nothing slashed since the stake was last healthy, or nothing left staked, or
/// unbonding under way) and never once ejected.
fn top_up_after_slash(
    c: &agora_market::Coprocessor,
    healthy_slashed: Amount,
    target: u64,
    min_stake: Amount,
    balance: Amount,
) -> Option<Amount> {
    let slashed_since = c.slashed > healthy_slashed;
    if target == 0
        || c.ejected
        || c.stake >= min_stake
        || c.stake.is_zero()
        || !c.unbonding.is_zero()
        || !slashed_since
    {
        return None;
    }
    let want = Amount(u128::from(target).max(min_stake.0))
        .checked_sub(c.stake)
        .ok()?;
    let amount = want.min(balance);
    (c.stake.checked_add(amount).ok()? >= min_stake).then_some(amount)
}

/// The price behind a sealed `commitment`: it was the reserve at some load `0..=capacity`, so
/// each is tried (no state to lose in a restart).
fn sealed_price(
    commitment: &Hash,
    job: &JobId,
    me: &Address,
    salt: &Hash,
    cost: Amount,
    capacity: u32,
    params: &agora_market::Params,
) -> Option<Amount> {
    (0..=capacity)
        .map(|load| reserve_price(cost, load, capacity, params))
        .find(|p| agora_market::sealed_commitment(job, me, *p, salt) == *commitment)
}

/// Whether `job` waits for an audit attestation from `me` (as auditor or tie-breaker).
fn awaits_attestation(job: &Job, me: &Address) -> bool {
    job.audit.as_ref().is_some_and(|a| {
        (a.auditor == *me && a.attested.is_none())
            || (a.tiebreaker == Some(*me) && a.tiebreaker_attested.is_none())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_price_is_found_again_from_the_commitment() {
        let params = agora_market::Params::default();
        let (job, me, salt) = (Hash([1; 32]), Address([2; 32]), Hash([3; 32]));
        let cost = Amount(110);
        let price = reserve_price(cost, 3, 4, &params);
        assert!(price > cost, "a loaded coprocessor asks more");
        let c = agora_market::sealed_commitment(&job, &me, price, &salt);
        assert_eq!(
            sealed_price(&c, &job, &me, &salt, cost, 4, &params),
            Some(price)
        );
        let other = Hash([4; 32]);
        assert_eq!(sealed_price(&c, &job, &me, &other, cost, 4, &params), None);
    }

    #[test]
    fn a_slash_below_the_minimum_is_topped_up_but_a_leave_or_an_ejection_is_not() {
        let min = Amount(1_000);
        let cop = |stake: u128, slashed: u128| agora_market::Coprocessor {
            stake: Amount(stake),
            locked: Amount::ZERO,
            unbonding: Amount::ZERO,
            capacity: 4,
            load: 0,
            logit: agora_types::Fixed::ONE,
            active: stake >= 1_000,
            completed: 0,
            failed: 1,
            earned: Amount::ZERO,
            slashed: Amount(slashed),
            strikes: 0,
            clean_streak: 0,
            ejected: false,
            recent_load: agora_types::Fixed::ZERO,
            recent_at: 0,
        };
        let rich = Amount(1_000_000);
        // Staked 1 050, a 100 timeout slash left 950: back up to the configured 1 200.
        let slashed = cop(950, 100);
        assert_eq!(
            top_up_after_slash(&slashed, Amount::ZERO, 1_200, min, rich),
            Some(Amount(250))
        );
        // Configured below the minimum: to the minimum. Too poor to get there: nothing.
        assert_eq!(
            top_up_after_slash(&slashed, Amount::ZERO, 500, min, rich),
            Some(Amount(50))
        );
        assert_eq!(
            top_up_after_slash(&slashed, Amount::ZERO, 1_200, min, Amount(20)),
            None
        );
        // restake off, still healthy, or no slash since it was last healthy (a partial leave).
        assert_eq!(
            top_up_after_slash(&slashed, Amount::ZERO, 0, min, rich),
            None
        );
        assert_eq!(
            top_up_after_slash(&cop(1_000, 100), Amount::ZERO, 1_200, min, rich),
            None
        );
        assert_eq!(
            top_up_after_slash(&slashed, Amount(100), 1_200, min, rich),
            None
        );
        // A full leave (nothing staked), a leave still unbonding, and an ejection: never.
        assert_eq!(
            top_up_after_slash(&cop(0, 100), Amount::ZERO, 1_200, min, rich),
            None
        );
        let leaving = agora_market::Coprocessor {
            unbonding: Amount(500),
            ..cop(500, 100)
        };
        assert_eq!(
            top_up_after_slash(&leaving, Amount::ZERO, 1_200, min, rich),
            None
        );
        let ejected = agora_market::Coprocessor {
            ejected: true,
            ..cop(950, 100)
        };
        assert_eq!(
            top_up_after_slash(&ejected, Amount::ZERO, 1_200, min, rich),
            None
        );
    }
}
