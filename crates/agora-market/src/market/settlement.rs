//! Settlement (design §8): winners paid their price less the protocol fee, which operators share
//! by stake; dissenters slashed with escalation, part of each slash to the client and the rest
//! burned; auditors paid; unused escrow refunded. A job that ends without a payout is closed
//! here too, releasing every lock it holds.

use agora_types::{Address, Amount, JobId};

use super::{bps, Market};
use crate::model::{JobState, MarketEvent, Rejection, SlotStatus};
use crate::tx::Outcome;

impl Market {
    /// Pay `winners`, slash `losers`, distribute the protocol fee, pay auditors, refund the rest.
    pub(super) fn settle(
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
            self.slash(id, c, collateral, rate, job.client, "wrong result")?;
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
    pub(super) fn close_job(
        &mut self,
        id: &JobId,
        state: JobState,
        reason: &str,
    ) -> Result<(), Rejection> {
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

    /// Slash `rate` of `collateral` from `c` and release the lock: part to `client`, rest burned.
    /// The event goes in `job`'s record too, so a job's events account for every unit its
    /// client paid or got back (the compensation included).
    pub(super) fn slash(
        &mut self,
        job: &JobId,
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
        self.emit_job(
            job,
            MarketEvent::Slashed {
                coprocessor: *c,
                amount,
                to_client,
                burned,
                reason: reason.into(),
            },
        );
        self.update_activity(c);
        Ok(amount)
    }
}
