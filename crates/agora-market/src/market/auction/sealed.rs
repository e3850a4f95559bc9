//! The sealed-bid second-price auction (design §5): a commit phase of `blake3(price ‖ salt)`
//! commitments, each holding a small reveal bond, then a reveal phase. The `k` best revealed
//! bids by score win, each paid the `(k+1)`-th best revealed price, never below its own bid nor
//! above max price; a commitment never revealed forfeits its bond to the client.

use agora_types::{Address, Amount, Hash, JobId};

use super::super::{reject, Market};
use super::MAX_BIDS;
use crate::model::{Job, MarketEvent, Rejection};
use crate::params::Params;
use crate::tx::sealed_commitment;

/// A checked commitment, with the bond it holds.
pub(super) struct Commit {
    commitment: Hash,
    bond: Amount,
}

/// A checked reveal, with the bond it returns.
pub(super) struct Reveal {
    price: Amount,
    bond: Amount,
}

pub(super) fn validate(p: &Params, commit_ms: u64, reveal_ms: u64) -> Result<(), Rejection> {
    let in_range = |ms: u64| ms >= p.min_auction_ms && ms <= p.max_auction_ms;
    if !in_range(commit_ms) || !in_range(reveal_ms) {
        return reject("auction phase out of range");
    }
    Ok(())
}

/// The ends of the commit and reveal phases.
pub(super) fn due(job: &Job, commit_ms: u64, reveal_ms: u64, consider: &mut impl FnMut(u64)) {
    consider(job.auction.opened_at.saturating_add(commit_ms));
    consider(job.auction.reveal_end(commit_ms, reveal_ms));
}

impl Market {
    pub(super) fn check_commit(
        &self,
        job: &Job,
        who: Address,
        commitment: Hash,
        commit_ms: u64,
    ) -> Result<Commit, Rejection> {
        let elapsed = self.s.market_time.saturating_sub(job.auction.opened_at);
        if elapsed >= commit_ms {
            return Err(Rejection::NotAllowed("commit phase over".into()));
        }
        self.eligible(job, &who)?;
        if job.auction.commits.contains_key(&who) {
            return reject("already committed");
        }
        if job.auction.commits.len() >= MAX_BIDS {
            return Err(Rejection::Limit("too many bids".into()));
        }
        let bond = self.s.params.reveal_bond;
        self.need_funds(&who, bond)?;
        Ok(Commit { commitment, bond })
    }

    pub(super) fn apply_commit(
        &mut self,
        id: &JobId,
        who: Address,
        c: Commit,
    ) -> Result<(), Rejection> {
        self.debit(who, c.bond)?;
        let job = self.job_mut(id)?;
        job.auction.commits.insert(who, c.commitment);
        job.bonds.insert(who, c.bond);
        Ok(())
    }

    pub(super) fn check_reveal(
        &self,
        job: &Job,
        who: Address,
        price: Amount,
        salt: &Hash,
        commit_ms: u64,
        reveal_ms: u64,
    ) -> Result<Reveal, Rejection> {
        let now = self.s.market_time;
        let elapsed = now.saturating_sub(job.auction.opened_at);
        if elapsed < commit_ms {
            return Err(Rejection::NotAllowed("reveal phase not started".into()));
        }
        if now >= job.auction.reveal_end(commit_ms, reveal_ms) {
            return Err(Rejection::NotAllowed("reveal phase over".into()));
        }
        let Some(c) = job.auction.commits.get(&who) else {
            return Err(Rejection::NotAllowed("no commitment".into()));
        };
        if job.auction.reveals.contains_key(&who) {
            return reject("already revealed");
        }
        if sealed_commitment(&job.id, &who, price, salt) != *c {
            return reject("reveal does not match commitment");
        }
        let bond = job.bonds.get(&who).copied().unwrap_or_default();
        Ok(Reveal { price, bond })
    }

    pub(super) fn apply_reveal(
        &mut self,
        id: &JobId,
        who: Address,
        r: Reveal,
    ) -> Result<(), Rejection> {
        let job = self.job_mut(id)?;
        job.auction.reveals.insert(who, r.price);
        job.bonds.remove(&who);
        self.credit(who, r.bond)
    }

    /// Nothing until the commit phase is over; the first block that shows it over opens the
    /// reveal phase; when that ends, unrevealed bonds are forfeited and the round is decided.
    pub(super) fn step_sealed(
        &mut self,
        id: &JobId,
        commit_ms: u64,
        reveal_ms: u64,
    ) -> Result<(), Rejection> {
        let now = self.s.market_time;
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let elapsed = now.saturating_sub(job.auction.opened_at);
        if elapsed < commit_ms {
            return Ok(());
        }
        if job.auction.reveal_opened_at.is_none() {
            // This block is the first to show the reveal phase open: it runs from here.
            self.job_mut(id)?.auction.reveal_opened_at = Some(now);
            return Ok(());
        }
        if now < job.auction.reveal_end(commit_ms, reveal_ms) {
            return Ok(());
        }
        // Forfeit unrevealed bonds to the client.
        let client = job.client;
        let forfeits: Vec<(Address, Amount)> = job.bonds.iter().map(|(a, b)| (*a, *b)).collect();
        for (c, b) in forfeits {
            self.job_mut(id)?.bonds.remove(&c);
            self.credit(client, b)?;
            self.emit_job(
                id,
                MarketEvent::BondForfeited {
                    job: *id,
                    coprocessor: c,
                    amount: b,
                },
            );
        }
        let job = self.s.jobs.get(id).ok_or(Rejection::UnknownJob(*id))?;
        let max = job.spec.max_price;
        let reveals: Vec<(Address, Amount)> = job
            .auction
            .reveals
            .iter()
            .filter(|(_, p)| **p <= max)
            .map(|(c, p)| (*c, *p))
            .collect();
        let ranked = self.rank(job, &reveals, self.network_utilisation());
        let slots = job.auction.slots as usize;
        let winners: Vec<(Address, Amount)> = ranked.iter().take(slots).copied().collect();
        // Second price: the (slots+1)-th best revealed price. A thin round, with no losing
        // reveal to set it, clears at its highest winning bid rather than at the client's max
        // price (ADR 013). A winner is never paid below its own bid nor above max price.
        let mut prices: Vec<Amount> = ranked.iter().map(|(_, p)| *p).collect();
        prices.sort();
        let highest_winner = winners.iter().map(|(_, p)| *p).max().unwrap_or(max);
        let clearing = prices.get(slots).copied().unwrap_or(highest_winner);
        self.award_ranked(id, winners, |own| clearing.max(own).min(max))?;
        if self.s.jobs.get(id).map(|j| j.auction.slots) == Some(0) {
            self.all_awarded(id)
        } else {
            self.round_unfilled(id)
        }
    }
}
