//! Replicated state records, events, receipts and the scoring / load-curve formulas.

use std::collections::BTreeMap;

use agora_types::{Address, Amount, Fixed, Hash, Height, JobId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::params::Params;
use crate::tx::{DeclineReason, JobSpec, Outcome};

/// Why a transaction was refused. Recorded in the receipt; never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "code", content = "detail")]
pub enum Rejection {
    #[error("transaction of {size} bytes exceeds the limit of {limit}")]
    Oversized { size: u64, limit: u64 },
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("bad signature")]
    BadSignature,
    #[error("bad nonce: expected {expected}, got {got}")]
    BadNonce { expected: u64, got: u64 },
    #[error("insufficient funds: need {need}, have {have}")]
    InsufficientFunds { need: Amount, have: Amount },
    #[error("unknown job {0}")]
    UnknownJob(JobId),
    #[error("job is {0}")]
    WrongJobState(JobState),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("not eligible: {0}")]
    NotEligible(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("limit reached: {0}")]
    Limit(String),
    #[error("arithmetic overflow")]
    Overflow,
}

impl From<agora_types::AmountError> for Rejection {
    fn from(_: agora_types::AmountError) -> Self {
        Rejection::Overflow
    }
}

/// A job's lifecycle state (design §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Submitted,
    Auction,
    Awarded,
    Executing,
    Verifying,
    Settled,
    Refunded,
    Failed,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Settled | JobState::Refunded | JobState::Failed
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        let s = s.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        f.write_str(s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: Amount,
    pub nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub stake: Amount,
    pub jailed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coprocessor {
    /// Total collateral, including the locked part.
    pub stake: Amount,
    /// Collateral locked by awarded, unsettled slots.
    pub locked: Amount,
    /// Collateral on its way back to the balance.
    pub unbonding: Amount,
    pub capacity: u32,
    /// Awarded slots still executing (no result committed yet): what counts against the
    /// capacity (ADR 007). Collateral stays locked until settlement.
    pub load: u32,
    /// GAS logit; reputation is σ(f).
    pub logit: Fixed,
    pub active: bool,
    pub completed: u64,
    pub failed: u64,
    pub earned: Amount,
    pub slashed: Amount,
    /// Proven wrong results not yet forgiven (ADR 013): each one raises the next wrong-result
    /// slash, and `max_strikes` of them eject the coprocessor.
    #[serde(default)]
    pub strikes: u32,
    /// Accepted results since the last strike or forgiveness.
    #[serde(default)]
    pub clean_streak: u32,
    /// Ejected for repeated proven faults: never active again under this identity.
    #[serde(default)]
    pub ejected: bool,
    /// Utilisation `L/C` smoothed over market time (time constant `load_memory_ms`) as of
    /// `recent_at`: what the load term balances, so that work spreads even when each job holds
    /// a slot for only a block (ADR 013).
    #[serde(default)]
    pub recent_load: Fixed,
    #[serde(default)]
    pub recent_at: u64,
}

impl Coprocessor {
    pub fn free_collateral(&self) -> Amount {
        self.stake.checked_sub(self.locked).unwrap_or_default()
    }

    pub fn reputation(&self) -> Fixed {
        self.logit.sigmoid()
    }

    pub fn reputation_bps(&self) -> u32 {
        fixed_to_bps(self.reputation())
    }

    /// The smoothed utilisation at market time `now`: the stored value decayed towards the
    /// current `L/C` over the time since (`exp(−Δt/τ)`, `τ = memory_ms`).
    pub fn recent_utilisation(&self, now: u64, memory_ms: u64) -> Fixed {
        let current = load_ratio(self.load, self.capacity);
        if memory_ms == 0 {
            return current;
        }
        let dt = now.saturating_sub(self.recent_at).min(1 << 40) as i64;
        let keep = Fixed::from_ratio(dt, memory_ms.min(1 << 40) as i64)
            .map(|x| x.saturating_neg().exp())
            .unwrap_or(Fixed::ZERO);
        let fresh = Fixed::ONE.saturating_sub(keep);
        self.recent_load
            .saturating_mul(keep)
            .saturating_add(current.saturating_mul(fresh))
    }

    /// What the market's load term sees: the current `L/C` or the recent one, whichever is
    /// higher (a coprocessor that just took work is not idle; one that has been busy is not
    /// fresh because its last slot ended).
    pub fn utilisation(&self, now: u64, memory_ms: u64) -> Fixed {
        load_ratio(self.load, self.capacity).max(self.recent_utilisation(now, memory_ms))
    }

    /// Change the load, first folding the time at the old load into the smoothed utilisation.
    pub fn set_load(&mut self, load: u32, now: u64, memory_ms: u64) {
        self.recent_load = self.recent_utilisation(now, memory_ms);
        self.recent_at = now;
        self.load = load;
    }
}

pub(crate) fn fixed_to_bps(f: Fixed) -> u32 {
    f.clamp(Fixed::ZERO, Fixed::ONE).mul_u128_floor(10_000) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Awarded, executing, no result yet.
    Executing,
    /// Result committed, awaiting verification.
    Committed,
    /// Missed the deadline (slashed, slot re-auctioned).
    TimedOut,
    /// Paid at settlement.
    Paid,
    /// Slashed for a wrong result.
    Slashed,
    /// Collateral released without payment (refund, no majority).
    Released,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub result_hash: Hash,
    pub fuel_used: u64,
    pub outcome: Outcome,
    pub output_size: u64,
    pub height: Height,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub price: Amount,
    pub collateral: Amount,
    pub round: u32,
    /// Deadline in market time (block time minus frozen time).
    pub deadline: u64,
    pub status: SlotStatus,
    pub result: Option<ResultRecord>,
}

impl Assignment {
    pub fn is_live(&self) -> bool {
        matches!(self.status, SlotStatus::Executing | SlotStatus::Committed)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionRound {
    pub round: u32,
    /// Market time the round opened.
    pub opened_at: u64,
    /// Slots this round must fill.
    pub slots: u32,
    /// Dutch acceptances: lowest price each bidder takes.
    pub dutch: BTreeMap<Address, Amount>,
    /// Sealed commitments.
    pub commits: BTreeMap<Address, Hash>,
    /// Sealed reveals.
    pub reveals: BTreeMap<Address, Amount>,
    /// Market time of the first block in which the sealed commit phase was over: the reveal
    /// phase lasts `reveal_ms` from there, so bidders always get the whole window after a block
    /// shows it open, however late that block came.
    #[serde(default)]
    pub reveal_opened_at: Option<u64>,
    /// Market time of the last block that stepped this Dutch round's clock: the clock rose
    /// continuously from there to now, so an acceptance it crossed in between is filled where it
    /// crossed, not at the block's clock (ADR 013).
    #[serde(default)]
    pub stepped_at: Option<u64>,
}

impl AuctionRound {
    /// When a sealed round's reveal phase ends (market time).
    pub fn reveal_end(&self, commit_ms: u64, reveal_ms: u64) -> u64 {
        self.reveal_opened_at
            .unwrap_or(self.opened_at.saturating_add(commit_ms))
            .saturating_add(reveal_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    pub auditor: Address,
    pub attested: Option<Hash>,
    /// Tie-breaker selected after a mismatch.
    pub tiebreaker: Option<Address>,
    pub tiebreaker_attested: Option<Hash>,
    /// Market time by which the pending attestation must land.
    pub deadline: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclineRecord {
    pub coprocessor: Address,
    pub reason: DeclineReason,
    pub detail: String,
    pub height: Height,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub client: Address,
    pub spec: JobSpec,
    pub state: JobState,
    pub submitted_height: Height,
    pub submitted_at: Timestamp,
    /// Client money still held for this job.
    pub escrow: Amount,
    /// Sealed-bid bonds held, by bidder.
    pub bonds: BTreeMap<Address, Amount>,
    pub auction: AuctionRound,
    pub assignments: BTreeMap<Address, Assignment>,
    pub reauctions: u32,
    /// Replicas added because the first `k` results had no majority.
    #[serde(default)]
    pub extra_replicas: u32,
    pub audit: Option<Audit>,
    pub result_hash: Option<Hash>,
    pub outcome: Option<Outcome>,
    pub failure: Option<String>,
    /// Block time the job reached a final state; it is pruned `job_retention_ms` later.
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
    pub declines: Vec<DeclineRecord>,
    pub events: Vec<EventRecord>,
}

impl Job {
    /// Results needed before verification: `k` plus any extra replicas.
    pub fn target_replicas(&self) -> u32 {
        self.spec.replicas.saturating_add(self.extra_replicas)
    }

    pub fn live_slots(&self) -> u32 {
        self.assignments.values().filter(|a| a.is_live()).count() as u32
    }

    /// The height of the block that settled the job, from its `Settled` event.
    pub fn settled_at(&self) -> Option<Height> {
        self.events
            .iter()
            .rev()
            .find_map(|r| matches!(r.event, MarketEvent::Settled { .. }).then_some(r.height))
    }

    pub fn held(&self) -> Result<Amount, Rejection> {
        Ok(self
            .escrow
            .checked_add(Amount::checked_sum(self.bonds.values().copied())?)?)
    }
}

/// Something that happened in the market, visible in the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketEvent {
    JobSubmitted {
        job: JobId,
        client: Address,
        escrow: Amount,
    },
    AuctionOpened {
        job: JobId,
        round: u32,
        slots: u32,
    },
    BidAccepted {
        job: JobId,
        coprocessor: Address,
        kind: String,
    },
    Awarded {
        job: JobId,
        coprocessor: Address,
        price: Amount,
        deadline: u64,
    },
    ExtraReplica {
        job: JobId,
        replicas: u32,
        escrow_added: Amount,
    },
    AuctionUnfilled {
        job: JobId,
        round: u32,
        missing: u32,
    },
    BondForfeited {
        job: JobId,
        coprocessor: Address,
        amount: Amount,
    },
    ResultCommitted {
        job: JobId,
        coprocessor: Address,
        result_hash: Hash,
    },
    TimedOut {
        job: JobId,
        coprocessor: Address,
        slashed: Amount,
    },
    AuditSelected {
        job: JobId,
        auditor: Address,
    },
    AuditMismatch {
        job: JobId,
        auditor: Address,
        tiebreaker: Option<Address>,
    },
    Slashed {
        coprocessor: Address,
        amount: Amount,
        to_client: Amount,
        burned: Amount,
        reason: String,
    },
    OperatorSlashed {
        operator: Address,
        amount: Amount,
        reason: String,
    },
    Paid {
        job: JobId,
        coprocessor: Address,
        amount: Amount,
        fee: Amount,
    },
    /// The job's accepted result: `result_hash` covers the outcome, exit code, fuel used and
    /// stdout (see [`crate::result_hash`]); the outcome and fuel are here so that a proof of
    /// this event lets anyone check an output offline.
    Settled {
        job: JobId,
        result_hash: Hash,
        refund: Amount,
        outcome: Outcome,
        fuel_used: u64,
    },
    Refunded {
        job: JobId,
        amount: Amount,
        reason: String,
    },
    Failed {
        job: JobId,
        reason: String,
        refund: Amount,
    },
    Cancelled {
        job: JobId,
    },
    Declined {
        job: JobId,
        coprocessor: Address,
        reason: DeclineReason,
    },
    ReputationUpdated {
        coprocessor: Address,
        outcome: bool,
        reputation_bps: u32,
    },
    CoprocessorStaked {
        coprocessor: Address,
        stake: Amount,
        capacity: u32,
    },
    CoprocessorDeactivated {
        coprocessor: Address,
        stake: Amount,
    },
    CoprocessorActivated {
        coprocessor: Address,
        stake: Amount,
    },
    /// `strikes` proven wrong results: the coprocessor may never bid again (ADR 013).
    CoprocessorEjected {
        coprocessor: Address,
        strikes: u32,
    },
    UnbondingStarted {
        coprocessor: Address,
        amount: Amount,
        release_at: Timestamp,
    },
    UnbondingReleased {
        coprocessor: Address,
        amount: Amount,
    },
    StallDetected {
        gap_ms: u64,
        commit_power_bps: u32,
    },
    StallRecovered {
        frozen_ms: u64,
    },
    LivenessReported {
        operator: Address,
        coprocessor: Address,
        alive: bool,
    },
    InternalError {
        detail: String,
    },
}

impl MarketEvent {
    /// The job an event is about, if it is about one.
    pub fn job(&self) -> Option<&JobId> {
        use MarketEvent::*;
        match self {
            JobSubmitted { job, .. }
            | AuctionOpened { job, .. }
            | BidAccepted { job, .. }
            | Awarded { job, .. }
            | ExtraReplica { job, .. }
            | AuctionUnfilled { job, .. }
            | BondForfeited { job, .. }
            | ResultCommitted { job, .. }
            | TimedOut { job, .. }
            | AuditSelected { job, .. }
            | AuditMismatch { job, .. }
            | Paid { job, .. }
            | Settled { job, .. }
            | Refunded { job, .. }
            | Failed { job, .. }
            | Cancelled { job }
            | Declined { job, .. } => Some(job),
            Slashed { .. }
            | OperatorSlashed { .. }
            | ReputationUpdated { .. }
            | CoprocessorStaked { .. }
            | CoprocessorDeactivated { .. }
            | CoprocessorActivated { .. }
            | CoprocessorEjected { .. }
            | UnbondingStarted { .. }
            | UnbondingReleased { .. }
            | StallDetected { .. }
            | StallRecovered { .. }
            | LivenessReported { .. }
            | InternalError { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub height: Height,
    pub time: Timestamp,
    pub event: MarketEvent,
}

/// Chain health as the market sees it (design §9).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub stalled: bool,
    pub healthy_run: u32,
    /// Total market-clock time frozen so far.
    pub frozen_ms: u64,
    pub stalls: u64,
}

/// What the node tells the market about the block being applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockContext {
    pub height: Height,
    /// The proposer's (consensus-bounded) timestamp.
    pub time: Timestamp,
    pub proposer: Address,
    /// Share of voting power that signed recent commits (the `last_commit`s the recent blocks
    /// carry), basis points.
    pub commit_power_bps: u32,
    /// Deterministic randomness every replica agrees on and no single proposer chooses (the
    /// block's VRF seed). Drives audit selection.
    pub seed: Hash,
    /// Operators that signed none of the recent commits: not drawn as auditors or
    /// tie-breakers while another operator is available.
    #[serde(default)]
    pub absent: Vec<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TxStatus {
    Applied,
    Rejected { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxReceipt {
    pub index: u32,
    /// Envelope hash (the job id for a submission); `None` if the bytes did not decode.
    pub tx_hash: Option<Hash>,
    pub signer: Option<Address>,
    pub kind: Option<String>,
    #[serde(flatten)]
    pub status: TxStatus,
}

impl TxReceipt {
    pub fn applied(&self) -> bool {
        self.status == TxStatus::Applied
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResult {
    pub height: Height,
    pub receipts: Vec<TxReceipt>,
    pub events: Vec<EventRecord>,
    pub app_hash: Hash,
    /// The state half of the app hash: `app_hash = crate::app_hash(state_hash,
    /// crate::canon::events_root(events))`.
    #[serde(default)]
    pub state_hash: Hash,
}

// ---------------------------------------------------------------------------------------------
// formulas

/// The bidding agent's reserve price: `r(L) = base_cost · (1 + κ · (L/C)^γ)` (design §7).
/// A busy coprocessor asks more, an idle one less. `capacity == 0` is treated as full.
pub fn reserve_price(base_cost: Amount, load: u32, capacity: u32, params: &Params) -> Amount {
    let u = load_ratio(load, capacity);
    let curve = u.pow(params.load_gamma).unwrap_or(Fixed::ONE);
    let factor = Fixed::ONE.saturating_add(params.load_kappa.saturating_mul(curve));
    Amount(factor.mul_u128_floor(base_cost.0))
}

fn load_ratio(load: u32, capacity: u32) -> Fixed {
    if capacity == 0 {
        return Fixed::ONE;
    }
    Fixed::from_ratio(load as i64, capacity as i64).unwrap_or(Fixed::ONE)
}

/// How far a coprocessor's utilisation `u` ([`Coprocessor::utilisation`]) runs ahead of the
/// network's `ū` (capacity-weighted mean over active coprocessors); zero at or below it
/// (ADR 013).
pub fn load_excess(utilisation: Fixed, network: Fixed) -> Fixed {
    utilisation.saturating_sub(network).max(Fixed::ZERO)
}

/// The market's load handicap on a bid, in base units: `w · max(0, L/C − ū) · V`. It is
/// subtracted from the score, and a Dutch acceptance is filled only once the clock has passed
/// its price plus this handicap, so work goes to the idle before the busy at a like price.
pub fn load_handicap(value: Amount, utilisation: Fixed, network: Fixed, params: &Params) -> Amount {
    let v = value.0.min(u64::MAX as u128);
    let x = load_excess(utilisation, network);
    Amount(
        params
            .load_penalty_weight
            .saturating_mul(x)
            .mul_u128_floor(v),
    )
}

/// Expected benefit of awarding a slot to a coprocessor (design §5, §7):
/// `U = p·V − (1 − p)·S − b − w·(u − ū)·V`, in base units (may be negative), with `u` the
/// coprocessor's utilisation and `ū` the network's.
pub fn score(
    reputation: Fixed,
    value: Amount,
    exposure: Amount,
    price: Amount,
    utilisation: Fixed,
    network: Fixed,
    params: &Params,
) -> i128 {
    let p = reputation.clamp(Fixed::ZERO, Fixed::ONE);
    let v = value.0.min(u64::MAX as u128);
    let s = exposure.0.min(u64::MAX as u128);
    let pv = p.mul_u128_floor(v) as i128;
    let qs = Fixed::ONE.saturating_sub(p).mul_u128_floor(s) as i128;
    // The load term is centred on the network: busier than `ū` costs score, idler earns it,
    // so an idle newcomer's smaller reputation is offset while it has room.
    let pen = load_handicap(value, utilisation, network, params).0 as i128;
    let spare = network.saturating_sub(utilisation).max(Fixed::ZERO);
    let bonus = params
        .load_penalty_weight
        .saturating_mul(spare)
        .mul_u128_floor(v) as i128;
    pv - qs - price.0.min(u64::MAX as u128) as i128 - pen + bonus
}

/// One GAS step: `f ← clamp(ω + β·f + α·(y − σ(f)))` (design §6).
pub fn gas_update(f: Fixed, success: bool, params: &Params) -> Fixed {
    let y = if success { Fixed::ONE } else { Fixed::ZERO };
    let innovation = y.saturating_sub(f.sigmoid());
    params
        .gas_omega
        .saturating_add(params.gas_beta.saturating_mul(f))
        .saturating_add(params.gas_alpha.saturating_mul(innovation))
        .clamp(params.gas_f_min, params.gas_f_max)
}

/// Tie-break key: `blake3(job id ‖ coprocessor id)`, never the order in a block.
pub fn tie_break(job: &JobId, coprocessor: &Address) -> Hash {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(job.as_bytes());
    buf[32..].copy_from_slice(coprocessor.as_bytes());
    Hash::of(&buf)
}
