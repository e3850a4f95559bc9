//! Resilience (design §4, §9): the market watches the chain's own health — the gap between
//! block times and the power that signed the last commit — and freezes its clocks while the
//! chain is unhealthy, so no one is slashed for a timeout the network caused and no Dutch price
//! rises during a stall. Outside a stall, a winner past its deadline is slashed and its slot
//! re-auctioned without the client. Coprocessors that decline a job publish why.

use agora_types::{Address, JobId, Timestamp};

use super::Market;
use crate::model::{BlockContext, DeclineRecord, JobState, MarketEvent, Rejection, SlotStatus};
use crate::tx::DeclineNotice;

/// A checked decline notice.
pub(super) struct Decline<'t> {
    who: Address,
    notice: &'t DeclineNotice,
}

impl Market {
    /// Watch the chain's own health (block gap, commit power) and freeze or resume the market
    /// clocks; each switch is an event.
    pub(super) fn observe_health(&mut self, ctx: &BlockContext, prev_time: Timestamp) {
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

    /// Slash and re-auction the slots past their deadline, unless the chain is unhealthy.
    pub(super) fn check_deadlines(&mut self, id: &JobId) -> Result<(), Rejection> {
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
            let slashed = self.slash(id, c, collateral, rate, client, "timeout")?;
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

    pub(super) fn check_decline<'t>(
        &self,
        who: Address,
        d: &'t DeclineNotice,
    ) -> Result<Decline<'t>, Rejection> {
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
        Ok(Decline { who, notice: d })
    }

    pub(super) fn apply_decline(&mut self, t: Decline<'_>) -> Result<(), Rejection> {
        let Decline { who, notice: d } = t;
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
}
