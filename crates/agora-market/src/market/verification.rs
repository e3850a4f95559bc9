//! Verification (design §8): for `k ≥ 2` replicas, majority of result hashes (no majority: one
//! more replica, bounded); for `k = 1`, an optimistic result with a seeded chance of an audit by
//! a stake-drawn operator, a tie-breaker on mismatch, and the auditors' attestations.

use std::collections::BTreeMap;

use agora_types::{Address, Hash, JobId};

use super::Market;
use crate::model::{Audit, JobState, MarketEvent, Rejection};
use crate::tx::Attestation;

/// A checked audit attestation by the selected auditor or tie-breaker.
pub(super) struct AuditVote {
    job: JobId,
    first: bool,
    result_hash: Hash,
}

impl Market {
    /// An operator that is not jailed.
    pub(super) fn is_operator(&self, who: &Address) -> Result<(), Rejection> {
        match self.s.operators.get(who) {
            Some(o) if !o.jailed => Ok(()),
            Some(_) => Err(Rejection::NotAllowed("operator is jailed".into())),
            None => Err(Rejection::NotAllowed("not an operator".into())),
        }
    }

    pub(super) fn check_audit(
        &self,
        who: Address,
        a: &Attestation,
    ) -> Result<AuditVote, Rejection> {
        self.is_operator(&who)?;
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
        Ok(AuditVote {
            job: a.job_id,
            first,
            result_hash: a.result_hash,
        })
    }

    pub(super) fn apply_audit(&mut self, t: AuditVote) -> Result<(), Rejection> {
        let job = self.job_mut(&t.job)?;
        let audit = job.audit.as_mut().ok_or(Rejection::Overflow)?;
        if t.first {
            audit.attested = Some(t.result_hash);
        } else {
            audit.tiebreaker_attested = Some(t.result_hash);
        }
        Ok(())
    }

    /// Once every live slot has committed a result: settle by majority (`k ≥ 2`), or settle
    /// optimistically or open an audit (`k = 1`).
    pub(super) fn try_verify(&mut self, id: &JobId) -> Result<(), Rejection> {
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

    /// An audit in progress: settle on agreement, draw a tie-breaker on mismatch, decide by it,
    /// or let the optimistic result stand when the auditor stays silent past the window.
    pub(super) fn step_audit(&mut self, id: &JobId) -> Result<(), Rejection> {
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
}
