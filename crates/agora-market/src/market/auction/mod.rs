//! Auctions (design §5, §7): what every kind shares — rounds, eligibility, ranking by score with
//! the load penalty, awards — and the dispatch to one module per kind:
//!
//! - [`dutch`]: the reverse Dutch clock;
//! - [`sealed`]: the sealed-bid second-price auction.
//!
//! A kind is its wire variant ([`AuctionSpec`], [`BidKind`]) plus a module with four parts:
//! validating its parameters, checking and applying a bid, stepping the round at the end of a
//! block, and the clock boundaries it is next due at. The dispatch below has one arm per kind in
//! each (ADR 017).

mod dutch;
mod sealed;

use agora_types::{Address, Amount, Fixed, Hash, JobId};

use super::{bps, reject, Market};
use crate::model::{
    score, tie_break, Assignment, AuctionRound, Job, JobState, MarketEvent, Rejection, SlotStatus,
};
use crate::tx::{AuctionSpec, BidKind, JobSpec};
use crate::Coprocessor;

/// Most bids of one kind a round takes.
const MAX_BIDS: usize = 256;

/// A checked bid, of the kind of its job's auction.
pub(in crate::market) struct Bid {
    job: JobId,
    who: Address,
    kind: KindBid,
}

enum KindBid {
    Dutch(dutch::Accept),
    Commit(sealed::Commit),
    Reveal(sealed::Reveal),
}

impl KindBid {
    fn name(&self) -> &'static str {
        match self {
            KindBid::Dutch(_) => "dutch",
            KindBid::Commit(_) => "sealed_commit",
            KindBid::Reveal(_) => "sealed_reveal",
        }
    }
}

impl Market {
    /// The auction parameters of a job spec, by kind.
    pub(in crate::market) fn validate_auction(&self, spec: &JobSpec) -> Result<(), Rejection> {
        let p = &self.s.params;
        match &spec.auction {
            AuctionSpec::Dutch {
                start_price,
                duration_ms,
            } => dutch::validate(p, spec, *start_price, *duration_ms),
            AuctionSpec::Sealed {
                commit_ms,
                reveal_ms,
            } => sealed::validate(p, *commit_ms, *reveal_ms),
        }
    }

    pub(in crate::market) fn check_bid(
        &self,
        who: Address,
        id: &JobId,
        bid: &BidKind,
    ) -> Result<Bid, Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        if job.state != JobState::Auction {
            return Err(Rejection::WrongJobState(job.state));
        }
        let kind = match (bid, &job.spec.auction) {
            (BidKind::Dutch { min_price }, AuctionSpec::Dutch { .. }) => {
                KindBid::Dutch(self.check_dutch(job, who, *min_price)?)
            }
            (BidKind::Commit { commitment }, AuctionSpec::Sealed { commit_ms, .. }) => {
                KindBid::Commit(self.check_commit(job, who, *commitment, *commit_ms)?)
            }
            (
                BidKind::Reveal { price, salt },
                AuctionSpec::Sealed {
                    commit_ms,
                    reveal_ms,
                },
            ) => {
                KindBid::Reveal(self.check_reveal(job, who, *price, salt, *commit_ms, *reveal_ms)?)
            }
            _ => return reject("bid kind does not match the job's auction"),
        };
        Ok(Bid {
            job: *id,
            who,
            kind,
        })
    }

    pub(in crate::market) fn apply_bid(&mut self, bid: Bid) -> Result<(), Rejection> {
        let Bid { job, who, kind } = bid;
        let name = kind.name();
        match kind {
            KindBid::Dutch(a) => self.apply_dutch(&job, who, a)?,
            KindBid::Commit(c) => self.apply_commit(&job, who, c)?,
            KindBid::Reveal(r) => self.apply_reveal(&job, who, r)?,
        }
        self.emit_job(
            &job,
            MarketEvent::BidAccepted {
                job,
                coprocessor: who,
                kind: name.into(),
            },
        );
        Ok(())
    }

    /// One end-of-block step of a job's open round.
    pub(in crate::market) fn step_auction(&mut self, id: &JobId) -> Result<(), Rejection> {
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        match job.spec.auction {
            AuctionSpec::Dutch { duration_ms, .. } => self.step_dutch(id, duration_ms),
            AuctionSpec::Sealed {
                commit_ms,
                reveal_ms,
            } => self.step_sealed(id, commit_ms, reveal_ms),
        }
    }

    /// The market times at which a job's round, in auction, changes something by itself.
    pub(in crate::market) fn auction_due(&self, job: &Job, consider: &mut impl FnMut(u64)) {
        match &job.spec.auction {
            AuctionSpec::Dutch {
                start_price,
                duration_ms,
            } => dutch::due(job, *start_price, *duration_ms, consider),
            AuctionSpec::Sealed {
                commit_ms,
                reveal_ms,
            } => sealed::due(job, *commit_ms, *reveal_ms, consider),
        }
    }

    // -----------------------------------------------------------------------------------------
    // what every kind shares

    /// Open round `round` of a job for `slots` winners, now.
    pub(in crate::market) fn open_round(
        &mut self,
        id: &JobId,
        slots: u32,
        round: u32,
    ) -> Result<(), Rejection> {
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

    /// Collateral required per slot.
    pub(in crate::market) fn collateral(&self, spec: &JobSpec) -> Result<Amount, Rejection> {
        bps(spec.max_price, self.s.params.collateral_bps)
    }

    /// Whether `who` may win a slot of `job` now (design §5: free collateral, reputation, load).
    pub(in crate::market) fn eligible(&self, job: &Job, who: &Address) -> Result<(), Rejection> {
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

    /// Award a slot of `id` to `c` at `price`: its collateral locked, its load up, its deadline
    /// set.
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
        let job = self.job_mut(id)?;
        job.state = JobState::Awarded;
        job.auction.dutch.clear();
        Ok(())
    }

    /// A round ended with slots left: re-auction them (up to the limit), else refund.
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

    /// Award up to the round's open slots to `ranked`, best first, re-checking eligibility
    /// before each (an earlier award may have changed it), each at the price `price_of` gives
    /// its own. Returns how many were awarded; the round's slots are reduced by that.
    fn award_ranked(
        &mut self,
        id: &JobId,
        ranked: Vec<(Address, Amount)>,
        price_of: impl Fn(Amount) -> Amount,
    ) -> Result<u32, Rejection> {
        let slots = self
            .s
            .jobs
            .get(id)
            .ok_or(Rejection::UnknownJob(*id))?
            .auction
            .slots;
        let mut awarded = 0;
        for (c, own) in ranked {
            if awarded >= slots {
                break;
            }
            let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
            if self.eligible(job, &c).is_err() {
                continue;
            }
            self.award(id, c, price_of(own))?;
            awarded += 1;
        }
        self.job_mut(id)?.auction.slots -= awarded;
        Ok(awarded)
    }
}
