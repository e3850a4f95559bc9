//! The node's market agent: the coprocessor side (stake, bid, decline, execute, commit, serve)
//! and the operator side (audit when selected).
//!
//! Shape: the decisions are [`AgentCore`]'s, a function of the replicated market and the agent's
//! own bookkeeping (`decisions.rs`); this module is the thin actor that carries them out. One
//! task wakes on every committed block, reads the market (a read lock held only while the core
//! decides) and carries out the decisions: executions and audits run as their own supervised
//! tasks (blob fetches, then the sandbox on the blocking pool, bounded by the executor's
//! concurrency) and hand their transaction back to the agent, which alone signs with the key's
//! nonce sequence and submits to the chain task.

use std::sync::Arc;

use agora_blobs::encode_output;
use agora_crypto::Keypair;
use agora_exec::{AsyncExecutor, ExecConfig, OwnedJob};
use agora_market::{DeclineReason, Job, Outcome, TxBuilder, TxKind};
use agora_net::NetworkHandle;
use agora_types::{Address, Hash, JobId};
use tokio::sync::{mpsc, oneshot, watch};

use crate::app::SharedMarket;
use crate::blobsvc::BlobService;
use crate::chain::ChainCommand;
use crate::daemon::ChainView;

mod decisions;

pub use decisions::{
    Action, AgentConfig, AgentCore, Decision, RunEnd, NONCE_STALL_BLOCKS, NONCE_STALL_TIME_MS,
};

/// Blob fetches (module and input of jobs to bid on) running at once.
const MAX_FETCHES: usize = 8;

/// A finished execution or audit, handed back to the agent loop to be signed and sent.
struct Finished {
    job: JobId,
    audit: bool,
    end: RunEnd,
}

/// Everything a spawned execution needs.
struct Shared {
    /// Blob fetches running at once.
    fetches: Arc<tokio::sync::Semaphore>,
    net: NetworkHandle,
    blobs: Arc<BlobService>,
    exec: AsyncExecutor,
    /// Testing knob `coprocessor.fault = "wrong_output"`: commit corrupted results.
    wrong_output: bool,
    /// Testing knob `coprocessor.fault = "never_deliver"`: win jobs, never run them.
    never_deliver: bool,
    metrics: Arc<crate::metrics::Metrics>,
}

pub struct Agent {
    core: AgentCore,
    builder: TxBuilder,
    market: SharedMarket,
    commands: mpsc::Sender<ChainCommand>,
    shared: Arc<Shared>,
    height: u64,
    finished_tx: mpsc::Sender<Finished>,
    finished_rx: mpsc::Receiver<Finished>,
    /// A finished fetch sends the job id here (wake the agent to bid at once) with whether it
    /// succeeded.
    fetched_tx: mpsc::Sender<(JobId, bool)>,
    fetched_rx: mpsc::Receiver<(JobId, bool)>,
    /// Fetches and executions run as supervised helpers: a panic in one stops the node.
    tasks: crate::supervise::Supervisor,
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
        tasks: crate::supervise::Supervisor,
    ) -> anyhow::Result<Agent> {
        let params = market
            .read()
            .map_err(|_| anyhow::anyhow!("the market lock is poisoned"))?
            .params()
            .clone();
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
        let (finished_tx, finished_rx) = mpsc::channel(256);
        let (fetched_tx, fetched_rx) = mpsc::channel(256);
        let wrong_output = cfg.section.fault == "wrong_output";
        let never_deliver = cfg.section.fault == "never_deliver";
        Ok(Agent {
            core: AgentCore::new(cfg, key.address(), &key.seed(), crate::chain::now_ms()),
            shared: Arc::new(Shared {
                fetches: Arc::new(tokio::sync::Semaphore::new(MAX_FETCHES)),
                net,
                blobs,
                exec,
                wrong_output,
                never_deliver,
                metrics,
            }),
            builder: TxBuilder::new(key, chain_id),
            market,
            commands,
            height: 0,
            finished_tx,
            finished_rx,
            fetched_tx,
            fetched_rx,
            tasks,
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
        if self.shared.never_deliver {
            tracing::warn!(target: "node.agent", "fault injection: this coprocessor never delivers the jobs it wins");
        }
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                changed = chain.changed() => {
                    if changed.is_err() {
                        // The chain task is gone, which only a shutdown or its failure does:
                        // wait for the stop rather than be taken for the cause.
                        shutdown.await;
                        break;
                    }
                    let h = chain.borrow_and_update().height;
                    if h != self.height {
                        self.height = h;
                        self.step().await;
                    }
                }
                Some((job, ok)) = self.fetched_rx.recv() => {
                    if self.core.fetched(job, ok) {
                        self.step().await;
                    }
                }
                Some(f) = self.finished_rx.recv() => {
                    if let Some((action, kind)) = self.core.finished(f.job, f.audit, f.end) {
                        self.send(action, kind).await;
                    }
                }
            }
        }
    }

    /// One block's worth of decisions, carried out.
    async fn step(&mut self) {
        let decisions = {
            let market = self.market.clone();
            let Ok(m) = market.read() else {
                // A task died changing the market; the supervisor is stopping the node.
                return;
            };
            let store = &self.shared.blobs.store;
            let have_inputs = |job: &Job| {
                store.contains(&job.spec.module_hash) && store.contains(&job.spec.input_hash)
            };
            self.core
                .step(&m, self.height, crate::chain::now_ms(), &have_inputs)
        };
        for d in decisions {
            match d {
                Decision::Fetch(job) => self.prefetch(&job),
                Decision::Run(job, audit) => self.spawn_run(job, audit),
                Decision::Submit(action, kind) => {
                    if self.core.may_submit() {
                        self.send(action, kind).await;
                    }
                }
            }
        }
    }

    /// Fetch a job's module and input in the background (at most [`MAX_FETCHES`] at once); the
    /// outcome comes back through `fetched`.
    fn prefetch(&self, job: &Job) {
        let shared = self.shared.clone();
        let spec = job.spec.clone();
        let id = job.id;
        let done = self.fetched_tx.clone();
        self.tasks.spawn_helper("agent fetch", async move {
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
    fn spawn_run(&self, job: Job, audit: bool) {
        let shared = self.shared.clone();
        let done = self.finished_tx.clone();
        self.tasks.spawn_helper("agent execution", async move {
            let end = run_job(&shared, &job, audit).await;
            let _ = done
                .send(Finished {
                    job: job.id,
                    audit,
                    end,
                })
                .await;
        });
    }

    /// Sign `kind` with the next nonce and hand it to the chain task.
    async fn send(&mut self, action: Action, kind: TxKind) {
        let nonce = self.core.next_nonce();
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
        let Ok(result) = rx.await else { return };
        match &result {
            Ok(()) => {
                let agent = self.shared.metrics.agent();
                match counted {
                    Some(Counted::Bid(kind)) => agent.bid(kind),
                    Some(Counted::Decline(reason)) => agent.decline(reason),
                    None => {}
                }
                tracing::debug!(target: "node.agent", ?action, nonce, tx = name, "sent");
            }
            Err(e) => {
                self.shared.metrics.agent().refused();
                tracing::info!(target: "node.agent", ?action, nonce, tx = name, error = %e, "transaction refused");
            }
        }
        self.core.submitted(action, &result);
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

/// Fetch, execute and turn the outcome into a transaction: a `Result` for our slot or an audit
/// attestation.
async fn run_job(shared: &Shared, job: &Job, audit: bool) -> RunEnd {
    if shared.never_deliver && !audit {
        tracing::info!(target: "node.agent", job = %job.id.short(), "fault injection: not running a job this coprocessor won");
        return RunEnd::GiveUp;
    }
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
