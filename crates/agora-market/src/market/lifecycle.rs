//! The job lifecycle (design §4): submission with escrow, cancellation before award, result
//! commits, and the end-of-block step that moves every open job on — its auction, its deadlines,
//! its verification — plus the clock boundary the node should wake up for next.

use std::collections::BTreeMap;

use agora_types::{Address, Amount, Hash, JobId, Timestamp};

use super::{reject, Key, Market};
use crate::model::{AuctionRound, Job, JobState, MarketEvent, Rejection, ResultRecord, SlotStatus};
use crate::tx::{JobSpec, Outcome};

/// A checked job submission.
pub(super) struct Submit<'t> {
    client: Address,
    id: JobId,
    spec: &'t JobSpec,
    escrow: Amount,
}

/// A checked cancellation.
pub(super) struct Cancel {
    job: JobId,
}

/// A checked result commit by one of a job's winners.
pub(super) struct Delivery {
    who: Address,
    job: JobId,
    result_hash: Hash,
    fuel_used: u64,
    outcome: Outcome,
    output_size: u64,
}

impl Market {
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
        self.validate_auction(spec)
    }

    /// What a job locks at submission: max price × replicas, plus the audit fee for `k = 1`.
    fn escrow_for(&self, spec: &JobSpec) -> Result<Amount, Rejection> {
        let base = spec.max_price.checked_mul(spec.replicas as u128)?;
        if spec.replicas == 1 {
            Ok(base.checked_add(self.s.params.audit_fee)?)
        } else {
            Ok(base)
        }
    }

    pub(super) fn check_submit<'t>(
        &self,
        client: Address,
        id: JobId,
        spec: &'t JobSpec,
    ) -> Result<Submit<'t>, Rejection> {
        self.validate_spec(spec)?;
        if self.s.open_jobs.len() as u64 >= self.s.params.max_open_jobs as u64 {
            return Err(Rejection::Limit("too many open jobs".into()));
        }
        if self.s.jobs.contains_key(&id) {
            return reject("duplicate job");
        }
        let escrow = self.escrow_for(spec)?;
        self.need_funds(&client, escrow)?;
        Ok(Submit {
            client,
            id,
            spec,
            escrow,
        })
    }

    pub(super) fn apply_submit(&mut self, t: Submit<'_>) -> Result<(), Rejection> {
        let Submit {
            client,
            id,
            spec,
            escrow,
        } = t;
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

    pub(super) fn check_cancel(&self, who: Address, id: &JobId) -> Result<Cancel, Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        if job.client != who {
            return Err(Rejection::NotAllowed("only the client may cancel".into()));
        }
        if job.state != JobState::Auction || !job.assignments.is_empty() {
            return Err(Rejection::NotAllowed("job already awarded".into()));
        }
        Ok(Cancel { job: *id })
    }

    pub(super) fn apply_cancel(&mut self, t: Cancel) -> Result<(), Rejection> {
        self.emit_job(&t.job, MarketEvent::Cancelled { job: t.job });
        self.close_job(&t.job, JobState::Refunded, "cancelled by client")
    }

    pub(super) fn check_result(
        &self,
        who: Address,
        id: &JobId,
        result_hash: Hash,
        fuel_used: u64,
        outcome: Outcome,
        output_size: u64,
    ) -> Result<Delivery, Rejection> {
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
        Ok(Delivery {
            who,
            job: *id,
            result_hash,
            fuel_used,
            outcome,
            output_size,
        })
    }

    pub(super) fn apply_result(&mut self, t: Delivery) -> Result<(), Rejection> {
        let Delivery {
            who,
            job: id,
            result_hash,
            fuel_used,
            outcome,
            output_size,
        } = t;
        let height = self.s.height;
        let a = self
            .job_mut(&id)?
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
            &id,
            MarketEvent::ResultCommitted {
                job: id,
                coprocessor: who,
                result_hash,
            },
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // end of block

    /// After the block's transactions: unbondings due, pruning, then every open job one step.
    /// A job whose step fails (a bug) is reported as an event; the others go on.
    pub(super) fn end_block(&mut self) {
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

    /// The next block time at which a market clock passes a boundary that changes something:
    /// an auction phase or clock boundary of the job's kind, an execution or audit deadline
    /// passing. The node asks consensus for a block then instead of waiting for the next
    /// heartbeat, so phases and deadlines act on time. `None` when nothing is pending or while
    /// the market clocks are frozen.
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
            if job.state == JobState::Auction {
                self.auction_due(job, &mut consider);
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
}
