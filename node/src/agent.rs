//! The node's market agent: the coprocessor side (stake, bid, decline, execute, commit, serve)
//! and the operator side (audit when selected).
//!
//! Shape: one task wakes on every committed block and reads the replicated market (a read lock
//! held only while it decides). Every decision is derived from the state again each block —
//! "an auction I have not bid in this round", "a slot of mine with no result", "an audit
//! assigned to me with no attestation" — so a restart or a lost transaction never leaves the
//! agent confused; a small in-flight table only stops it from sending the same transaction twice
//! while the first is on its way. Executions and audits run as their own tasks (blob fetches,
//! then the sandbox on the blocking pool, bounded by the executor's concurrency) and hand their
//! transaction back to the agent, which alone owns the key's nonce sequence.
//!
//! Nonces: transactions are pipelined with consecutive nonces. A transaction rejected when its
//! block is applied does not consume its nonce, which leaves a gap the later ones wait behind;
//! when the account's nonce on chain has not moved for [`NONCE_STALL_BLOCKS`] blocks while
//! transactions are outstanding, the agent restarts the sequence from the chain's nonce and
//! re-derives what is still needed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use agora_consensus::{ConsensusError, MempoolError};
use agora_crypto::Keypair;
use agora_exec::{AsyncExecutor, ExecConfig, OwnedJob};
use agora_market::{
    reserve_price, AuctionSpec, DeclineReason, Job, JobState, Market, Outcome, SlotStatus,
    TxBuilder, TxKind,
};
use agora_net::NetworkHandle;
use agora_types::{Address, Amount, Hash, JobId};
use tokio::sync::{mpsc, oneshot, watch};

use crate::app::SharedMarket;
use crate::blobsvc::{encode_output, BlobService};
use crate::chain::ChainCommand;
use crate::config::CoprocessorSection;
use crate::daemon::ChainView;

/// Blocks, and time, without progress of our nonce (while transactions are outstanding) before
/// the agent restarts its nonce sequence from the chain.
pub const NONCE_STALL_BLOCKS: u32 = 4;
const NONCE_STALL_TIME: std::time::Duration = std::time::Duration::from_secs(3);
/// Blocks after which an in-flight action with no visible effect may be sent again.
const RESEND_AFTER_BLOCKS: u64 = 8;
/// Transactions outstanding at once (the market accepts nonces up to 64 ahead).
const MAX_OUTSTANDING: u64 = 48;
/// Blob fetches (module and input of jobs to bid on) running at once.
const MAX_FETCHES: usize = 8;

/// What this node's agent does.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub coprocessor: bool,
    pub operator: bool,
    pub section: CoprocessorSection,
}

/// Something the agent sends at most once at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Stake,
    Bid(JobId, u32),
    Reveal(JobId, u32),
    Decline(JobId, DeclineReason),
    Result(JobId),
    Audit(JobId),
}

/// A finished execution or audit, handed back to the agent loop to be signed and sent.
struct Finished {
    action: Action,
    job: JobId,
    audit: bool,
    end: RunEnd,
}

/// How an execution or audit task ended.
enum RunEnd {
    /// A transaction to send.
    Tx(Box<TxKind>),
    /// Nothing now (e.g. the module could not be fetched yet): try again on a later block.
    Retry,
    /// Nothing honest to commit (the run did not end deterministically).
    GiveUp,
}

/// Everything a spawned execution needs.
struct Shared {
    /// Blob fetches running at once.
    fetches: Arc<tokio::sync::Semaphore>,
    net: NetworkHandle,
    blobs: Arc<BlobService>,
    exec: AsyncExecutor,
    wrong_output: bool,
    metrics: Arc<crate::metrics::Metrics>,
}

pub struct Agent {
    cfg: AgentConfig,
    builder: TxBuilder,
    me: Address,
    market: SharedMarket,
    commands: mpsc::Sender<ChainCommand>,
    shared: Arc<Shared>,
    next_nonce: u64,
    chain_nonce: u64,
    stalled_blocks: u32,
    /// When our nonce on chain last moved (or the first transaction went out after that).
    progress_at: std::time::Instant,
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
    /// Jobs with an execution or audit task started (or given up on), until the job closes.
    started: BTreeSet<(JobId, bool)>,
    /// Results and attestations computed, kept until the chain shows them (a transaction can
    /// be refused or dropped; the execution is not repeated for that).
    computed: BTreeMap<Action, TxKind>,
    finished_tx: mpsc::Sender<Finished>,
    finished_rx: mpsc::Receiver<Finished>,
    /// Jobs whose module and input are being fetched before we bid; a finished fetch sends
    /// the job id here (wake the agent to bid at once) with whether it succeeded.
    fetching: BTreeMap<JobId, Option<bool>>,
    fetched_tx: mpsc::Sender<(JobId, bool)>,
    fetched_rx: mpsc::Receiver<(JobId, bool)>,
}

impl Agent {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: AgentConfig,
        key: Keypair,
        chain_id: Hash,
        market: SharedMarket,
        commands: mpsc::Sender<ChainCommand>,
        net: NetworkHandle,
        blobs: Arc<BlobService>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<Agent> {
        let params = market.read().expect("market lock").params().clone();
        let exec = AsyncExecutor::new(ExecConfig {
            max_module_bytes: params.max_module_bytes as usize,
            max_input_bytes: params.max_input_bytes as usize,
            max_output_bytes: params.max_output_bytes as usize,
            max_fuel: params.max_fuel,
            max_memory_bytes: params.max_memory_bytes,
            concurrency: cfg.section.capacity.max(1) as usize,
            ..ExecConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))?;
        let me = key.address();
        let salt_key = Hash::derive("agora/v1/sealed-salt-key", &key.seed());
        let (finished_tx, finished_rx) = mpsc::channel(256);
        let (fetched_tx, fetched_rx) = mpsc::channel(256);
        Ok(Agent {
            shared: Arc::new(Shared {
                fetches: Arc::new(tokio::sync::Semaphore::new(MAX_FETCHES)),
                net,
                blobs,
                exec,
                wrong_output: cfg.section.fault == "wrong_output",
                metrics,
            }),
            cfg,
            builder: TxBuilder::new(key, chain_id),
            me,
            market,
            commands,
            next_nonce: 0,
            chain_nonce: 0,
            stalled_blocks: 0,
            progress_at: std::time::Instant::now(),
            height: 0,
            nonce_height: 0,
            inflight: BTreeMap::new(),
            healthy_slashed: None,
            salt_key,
            started: BTreeSet::new(),
            computed: BTreeMap::new(),
            finished_tx,
            finished_rx,
            fetching: BTreeMap::new(),
            fetched_tx,
            fetched_rx,
        })
    }

    /// Run until `shutdown` resolves.
    pub async fn run(
        mut self,
        mut chain: watch::Receiver<ChainView>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        if self.shared.wrong_output {
            tracing::warn!(target: "node.agent", "fault injection: this coprocessor commits wrong results");
        }
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                changed = chain.changed() => {
                    if changed.is_err() { break }
                    let h = chain.borrow_and_update().height;
                    if h != self.height {
                        self.height = h;
                        self.step().await;
                    }
                }
                Some((job, ok)) = self.fetched_rx.recv() => {
                    self.fetching.insert(job, Some(ok));
                    if ok {
                        self.step().await;
                    }
                }
                Some(f) = self.finished_rx.recv() => {
                    match f.end {
                        RunEnd::Tx(kind) => {
                            self.computed.insert(f.action, (*kind).clone());
                            self.send(f.action, *kind).await
                        }
                        RunEnd::Retry => {
                            self.started.remove(&(f.job, f.audit));
                        }
                        RunEnd::GiveUp => {}
                    }
                }
            }
        }
    }

    /// One block's worth of decisions.
    async fn step(&mut self) {
        let mut todo: Vec<(Action, TxKind)> = Vec::new();
        let mut spawn: Vec<(Job, bool)> = Vec::new();
        {
            let market = self.market.clone();
            let m = market.read().expect("market lock");
            self.track_nonce(m.nonce(&self.me));
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
                self.coprocessor_step(&m, &mut todo, &mut spawn);
            }
            if self.cfg.operator {
                self.operator_step(&m, &mut todo, &mut spawn);
            }
        }
        for (job, audit) in spawn {
            self.spawn_run(job, audit);
        }
        for (action, kind) in todo {
            if self.next_nonce.saturating_sub(self.chain_nonce) >= MAX_OUTSTANDING {
                break;
            }
            self.send(action, kind).await;
        }
    }

    fn track_nonce(&mut self, on_chain: u64) {
        if on_chain != self.chain_nonce || self.next_nonce <= on_chain {
            self.chain_nonce = on_chain;
            self.stalled_blocks = 0;
            self.progress_at = std::time::Instant::now();
        } else if self.nonce_height != self.height {
            self.stalled_blocks += 1;
            if self.stalled_blocks >= NONCE_STALL_BLOCKS
                && self.progress_at.elapsed() >= NONCE_STALL_TIME
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
        todo: &mut Vec<(Action, TxKind)>,
        spawn: &mut Vec<(Job, bool)>,
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
                todo.push((
                    Action::Stake,
                    TxKind::Stake {
                        amount,
                        capacity: sec.capacity,
                    },
                ));
            }
        }
        let Some(cop) = cop.filter(|c| c.active) else {
            return;
        };
        let now = m.market_time();
        for id in m.open_jobs() {
            let Some(job) = m.job(id) else { continue };
            // Slots of ours to execute, or whose result is still to land.
            if job
                .assignments
                .get(&me)
                .is_some_and(|a| a.status == SlotStatus::Executing)
            {
                self.resend_or_run(job, false, todo, spawn);
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
                            todo.push((
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
            if self.inflight.contains_key(&Action::Bid(*id, round)) {
                continue;
            }
            // Bid only on what we can run: module and input first (a finished fetch wakes us).
            let decision = match self.decide(m, job, cop.load, cop.free_collateral()) {
                Ok(_) if !self.have_inputs(job) => match self.fetching.get(id) {
                    None => {
                        self.fetching.insert(*id, None);
                        self.prefetch(job);
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
                    todo.push((Action::Bid(*id, round), TxKind::Bid { job_id: *id, bid }));
                }
                Err((reason, detail)) => {
                    let key = Action::Decline(*id, reason);
                    let said = job
                        .declines
                        .iter()
                        .any(|d| d.coprocessor == me && d.reason == reason);
                    if !said && !self.inflight.contains_key(&key) {
                        todo.push((
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

    fn operator_step(
        &mut self,
        m: &Market,
        todo: &mut Vec<(Action, TxKind)>,
        spawn: &mut Vec<(Job, bool)>,
    ) {
        for id in m.open_jobs() {
            let Some(job) = m.job(id) else { continue };
            if !awaits_attestation(job, &self.me) {
                continue;
            }
            self.resend_or_run(job, true, todo, spawn);
        }
    }

    /// Our result (or audit attestation) for `job`: send it again if it was computed and is no
    /// longer in flight, else start computing it unless that has begun.
    fn resend_or_run(
        &self,
        job: &Job,
        audit: bool,
        todo: &mut Vec<(Action, TxKind)>,
        spawn: &mut Vec<(Job, bool)>,
    ) {
        let action = if audit {
            Action::Audit(job.id)
        } else {
            Action::Result(job.id)
        };
        if let Some(kind) = self.computed.get(&action) {
            if !self.inflight.contains_key(&action) {
                todo.push((action, kind.clone()));
            }
        } else if !self.started.contains(&(job.id, audit)) {
            spawn.push((job.clone(), audit));
        }
    }

    /// Whether the job's module and input are in the local blob store.
    fn have_inputs(&self, job: &Job) -> bool {
        let store = &self.shared.blobs.store;
        store.contains(&job.spec.module_hash) && store.contains(&job.spec.input_hash)
    }

    /// Fetch a job's module and input in the background (at most [`MAX_FETCHES`] at once); the
    /// outcome comes back through `fetched`.
    fn prefetch(&self, job: &Job) {
        let shared = self.shared.clone();
        let spec = job.spec.clone();
        let id = job.id;
        let done = self.fetched_tx.clone();
        tokio::spawn(async move {
            let Ok(_permit) = shared.fetches.clone().acquire_owned().await else {
                return;
            };
            let mut ok = true;
            for (hash, size) in [
                (spec.module_hash, spec.module_size),
                (spec.input_hash, spec.input_size),
            ] {
                if let Err(e) = shared.blobs.blob(&shared.net, hash, size, &[]).await {
                    tracing::info!(target: "node.agent", job = %id.short(), error = %format!("{e:#}"), "cannot fetch a job's blobs; not bidding");
                    ok = false;
                    break;
                }
            }
            let _ = done.send((id, ok)).await;
        });
    }

    /// Start executing (or auditing) a job; its transaction comes back through `finished`.
    fn spawn_run(&mut self, job: Job, audit: bool) {
        self.started.insert((job.id, audit));
        let shared = self.shared.clone();
        let done = self.finished_tx.clone();
        let action = if audit {
            Action::Audit(job.id)
        } else {
            Action::Result(job.id)
        };
        tokio::spawn(async move {
            let end = run_job(&shared, &job, audit).await;
            let _ = done
                .send(Finished {
                    action,
                    job: job.id,
                    audit,
                    end,
                })
                .await;
        });
    }

    /// Sign `kind` with the next nonce and hand it to the chain task.
    async fn send(&mut self, action: Action, kind: TxKind) {
        let nonce = self.next_nonce;
        let name = kind.name();
        let counted = counted_as(&kind);
        let bytes = self.builder.bytes(nonce, kind);
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(ChainCommand::SubmitTx { tx: bytes, reply })
            .await
            .is_err()
        {
            return;
        }
        match rx.await {
            Ok(Ok(())) => {
                let agent = self.shared.metrics.agent();
                match counted {
                    Some(Counted::Bid(kind)) => agent.bid(kind),
                    Some(Counted::Decline(reason)) => agent.decline(reason),
                    None => {}
                }
                self.next_nonce += 1;
                self.inflight.insert(action, self.height);
                tracing::debug!(target: "node.agent", ?action, nonce, tx = name, "sent");
            }
            Ok(Err(e)) => {
                self.shared.metrics.agent().refused();
                tracing::info!(target: "node.agent", ?action, nonce, tx = name, error = %e, "transaction refused");
                // Our own earlier tx still holds this nonce here (after a sequence restart):
                // go on past it rather than refusing every later action the same way (ADR 008).
                if let ConsensusError::Mempool(MempoolError::NoncePending { next_free, .. }) = e {
                    self.next_nonce = self.next_nonce.max(next_free);
                }
                // Try again after a while, from the chain's view of things.
                self.inflight.insert(action, self.height);
            }
            Err(_) => {}
        }
    }
}

/// What a sent transaction counts as in the agent's metrics.
enum Counted {
    Bid(&'static str),
    Decline(DeclineReason),
}

fn counted_as(kind: &TxKind) -> Option<Counted> {
    match kind {
        TxKind::Bid { bid, .. } => Some(Counted::Bid(match bid {
            agora_market::BidKind::Dutch { .. } => "dutch",
            agora_market::BidKind::Commit { .. } => "sealed_commit",
            agora_market::BidKind::Reveal { .. } => "sealed_reveal",
        })),
        TxKind::Decline(d) => Some(Counted::Decline(d.reason)),
        _ => None,
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

/// Fetch, execute and turn the outcome into a transaction: a `Result` for our slot or an audit
/// attestation.
async fn run_job(shared: &Shared, job: &Job, audit: bool) -> RunEnd {
    let spec = &job.spec;
    let prefer: Vec<Address> = job.assignments.keys().copied().collect();
    let fetch = |hash, size| shared.blobs.blob(&shared.net, hash, size, &prefer);
    let module = match fetch(spec.module_hash, spec.module_size).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(target: "node.agent", job = %job.id.short(), error = %format!("{e:#}"), "cannot get the module");
            return RunEnd::Retry;
        }
    };
    let input = match fetch(spec.input_hash, spec.input_size).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(target: "node.agent", job = %job.id.short(), error = %format!("{e:#}"), "cannot get the input");
            return RunEnd::Retry;
        }
    };
    let r = shared
        .exec
        .run(OwnedJob {
            job_id: job.id,
            module: module.into(),
            input: input.into(),
            args: spec.args.clone(),
            fuel: spec.fuel_limit,
            memory_limit_bytes: spec.memory_limit,
        })
        .await;
    shared
        .metrics
        .agent()
        .executed(audit, market_outcome(&r.outcome), r.fuel_used);
    let Some(outcome) = market_outcome(&r.outcome) else {
        tracing::error!(target: "node.agent", job = %job.id.short(), outcome = %r.outcome, "execution did not end deterministically; not committing");
        return RunEnd::GiveUp;
    };
    let mut stdout = r.stdout;
    if shared.wrong_output && !audit {
        stdout.extend_from_slice(b"\n(corrupted)");
    }
    let result_hash = agora_market::result_hash(outcome, r.exit_code, r.fuel_used, &stdout);
    tracing::info!(
        target: "node.agent",
        job = %job.id.short(),
        audit,
        outcome = %r.outcome,
        fuel = r.fuel_used,
        bytes = stdout.len(),
        ms = r.elapsed.as_millis() as u64,
        result = %result_hash.short(),
        "executed"
    );
    if audit {
        return RunEnd::Tx(Box::new(TxKind::Attestation(agora_market::Attestation {
            kind: agora_market::AttestationKind::Audit,
            job_id: job.id,
            result_hash,
            subject: Address::default(),
            alive: true,
        })));
    }
    let output = encode_output(r.exit_code, &stdout);
    if let Err(e) = shared.blobs.record_output(&job.id, &output) {
        tracing::error!(target: "node.agent", job = %job.id.short(), error = %format!("{e:#}"), "cannot store the output; not committing");
        return RunEnd::Retry;
    }
    RunEnd::Tx(Box::new(TxKind::Result {
        job_id: job.id,
        result_hash,
        fuel_used: r.fuel_used,
        outcome,
        output_size: stdout.len() as u64,
    }))
}

/// The committed form of a sandbox outcome; `None` for outcomes that are not a property of
/// the program (wall-clock safety net, internal errors), which are never committed.
pub fn market_outcome(o: &agora_exec::Outcome) -> Option<Outcome> {
    use agora_exec::Outcome as E;
    match o {
        E::Success | E::Exit(_) => Some(Outcome::Success),
        E::Trap(_) | E::InvalidModule(_) | E::InvalidInput(_) | E::OutputTooLarge => {
            Some(Outcome::Trap)
        }
        E::OutOfFuel => Some(Outcome::FuelExhausted),
        E::MemoryExceeded => Some(Outcome::Memory),
        E::Timeout | E::Internal(_) => None,
    }
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

    #[test]
    fn only_deterministic_outcomes_are_committed() {
        use agora_exec::Outcome as E;
        assert_eq!(market_outcome(&E::Success), Some(Outcome::Success));
        assert_eq!(market_outcome(&E::Exit(3)), Some(Outcome::Success));
        assert_eq!(market_outcome(&E::Trap("x".into())), Some(Outcome::Trap));
        assert_eq!(
            market_outcome(&E::InvalidModule("x".into())),
            Some(Outcome::Trap)
        );
        assert_eq!(market_outcome(&E::OutOfFuel), Some(Outcome::FuelExhausted));
        assert_eq!(market_outcome(&E::MemoryExceeded), Some(Outcome::Memory));
        assert_eq!(market_outcome(&E::Timeout), None);
        assert_eq!(market_outcome(&E::Internal("x".into())), None);
        for o in [E::Timeout, E::Internal("x".into())] {
            assert!(!o.is_deterministic());
        }
    }
}
