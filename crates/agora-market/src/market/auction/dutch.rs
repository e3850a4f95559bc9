//! The reverse Dutch auction (design §5): the offered price rises linearly with market time from
//! `start_price` to the job's max price over `duration_ms`. A coprocessor's acceptance carries
//! the lowest price it takes and stands until the clock reaches it (plus its load handicap);
//! it is then filled where the clock crossed it (ADR 013).

use agora_types::{Address, Amount, JobId};

use super::super::{reject, Market};
use super::MAX_BIDS;
use crate::model::{load_handicap, Job, JobState, Rejection};
use crate::params::Params;
use crate::tx::{AuctionSpec, JobSpec};

/// A checked acceptance.
pub(super) struct Accept {
    min_price: Amount,
}

pub(super) fn validate(
    p: &Params,
    spec: &JobSpec,
    start_price: Amount,
    duration_ms: u64,
) -> Result<(), Rejection> {
    if start_price > spec.max_price {
        return reject("start price above max price");
    }
    if duration_ms < p.min_auction_ms || duration_ms > p.max_auction_ms {
        return reject("auction duration out of range");
    }
    Ok(())
}

/// The round's end, and the market time at which the clock reaches the lowest standing
/// acceptance.
pub(super) fn due(
    job: &Job,
    start_price: Amount,
    duration_ms: u64,
    consider: &mut impl FnMut(u64),
) {
    let opened = job.auction.opened_at;
    consider(opened.saturating_add(duration_ms));
    let span = job.spec.max_price.0.saturating_sub(start_price.0);
    if let Some(low) = job.auction.dutch.values().min() {
        let need = low.0.saturating_sub(start_price.0);
        if span > 0 && need > 0 {
            let e = need.saturating_mul(u128::from(duration_ms)).div_ceil(span);
            consider(opened.saturating_add(e.min(u64::MAX as u128) as u64));
        }
    }
}

/// The clock price of a Dutch job at market time `now` (max price for any other kind).
fn clock_price(job: &Job, now: u64) -> Amount {
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

impl Market {
    /// The current Dutch clock price of a job in auction, if it is a Dutch auction.
    pub fn dutch_price(&self, id: &JobId) -> Option<Amount> {
        let job = self.s.jobs.get(id)?;
        match (&job.spec.auction, job.state) {
            (AuctionSpec::Dutch { .. }, JobState::Auction) => {
                Some(clock_price(job, self.s.market_time))
            }
            _ => None,
        }
    }

    pub(super) fn check_dutch(
        &self,
        job: &Job,
        who: Address,
        min_price: Amount,
    ) -> Result<Accept, Rejection> {
        self.eligible(job, &who)?;
        if min_price > job.spec.max_price {
            return reject("price above the job's max price");
        }
        if job.auction.dutch.contains_key(&who) {
            return reject("already accepted");
        }
        if job.auction.dutch.len() >= MAX_BIDS {
            return Err(Rejection::Limit("too many bids".into()));
        }
        Ok(Accept { min_price })
    }

    pub(super) fn apply_dutch(
        &mut self,
        id: &JobId,
        who: Address,
        a: Accept,
    ) -> Result<(), Rejection> {
        self.job_mut(id)?.auction.dutch.insert(who, a.min_price);
        Ok(())
    }

    /// The clock rose continuously from the last step to now: each acceptance it crossed on
    /// the way is filled at the crossing, its own price, and one standing since before the last
    /// step at the clock of that step (ADR 013). A busy coprocessor's acceptance waits for the
    /// clock to pass its price plus the load handicap, so at a like price the idle are filled
    /// first; it is still paid on its own price.
    pub(super) fn step_dutch(&mut self, id: &JobId, duration_ms: u64) -> Result<(), Rejection> {
        let now = self.s.market_time;
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let elapsed = now.saturating_sub(job.auction.opened_at);
        let price = clock_price(job, now);
        let before = job.auction.stepped_at.unwrap_or(job.auction.opened_at);
        let floor = clock_price(job, before).min(price);
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
        if !fills.is_empty() {
            let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
            let ranked = self.rank(job, &fills, network);
            self.award_ranked(id, ranked, |own| own)?;
            let job = self.job_mut(id)?;
            for c in job.assignments.keys().copied().collect::<Vec<_>>() {
                job.auction.dutch.remove(&c);
            }
        }
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        if job.auction.slots == 0 {
            self.all_awarded(id)
        } else if elapsed >= duration_ms {
            self.round_unfilled(id)
        } else {
            Ok(())
        }
    }
}
