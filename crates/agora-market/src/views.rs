//! Serde views for the JSON API: what `agora job status`, `agora account` and friends show.

use agora_types::{Address, Amount, Fixed, Hash, Height, JobId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::market::Market;
use crate::model::{DeclineRecord, EventRecord, Health, JobState, SlotStatus};
use crate::tx::{AuctionSpec, JobSpec, Outcome};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidView {
    pub coprocessor: Address,
    /// `dutch`, `sealed_commit` or `sealed_reveal`.
    pub kind: String,
    /// Dutch minimum or revealed sealed price; `None` while a sealed bid is hidden.
    pub price: Option<Amount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    pub coprocessor: Address,
    pub price: Amount,
    pub collateral: Amount,
    pub round: u32,
    pub deadline: u64,
    pub status: SlotStatus,
    pub result_hash: Option<Hash>,
    pub fuel_used: Option<u64>,
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub id: JobId,
    pub client: Address,
    pub state: JobState,
    pub spec: JobSpec,
    pub submitted_height: Height,
    pub submitted_at: Timestamp,
    pub auction_round: u32,
    pub reauctions: u32,
    /// Current Dutch clock price while in auction.
    pub clock_price: Option<Amount>,
    pub bids: Vec<BidView>,
    /// Coprocessors currently holding (or paid for) a slot.
    pub winners: Vec<Address>,
    /// Highest price among winners (what the client pays per replica at most).
    pub price: Option<Amount>,
    pub slots: Vec<SlotView>,
    pub escrow: Amount,
    pub result_hash: Option<Hash>,
    pub outcome: Option<Outcome>,
    pub failure: Option<String>,
    pub auditor: Option<Address>,
    pub events: Vec<EventRecord>,
    /// Reasons coprocessors gave for declining (`agora job why`).
    pub why_not: Vec<DeclineRecord>,
}

/// One line of `agora job list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: JobId,
    pub client: Address,
    pub state: JobState,
    pub submitted_height: Height,
    pub replicas: u32,
    pub max_price: Amount,
    pub result_hash: Option<Hash>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoprocessorView {
    pub address: Address,
    pub stake: Amount,
    pub locked: Amount,
    pub unbonding: Amount,
    pub capacity: u32,
    pub load: u32,
    pub reputation_bps: u32,
    pub logit: Fixed,
    pub active: bool,
    pub completed: u64,
    pub failed: u64,
    pub earned: Amount,
    pub slashed: Amount,
    /// Unforgiven proven wrong results (ADR 013).
    pub strikes: u32,
    /// Ejected for repeated proven faults: never active again.
    pub ejected: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorView {
    pub address: Address,
    pub stake: Amount,
    pub jailed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub address: Address,
    pub balance: Amount,
    pub nonce: u64,
    pub coprocessor: Option<CoprocessorView>,
    pub operator: Option<OperatorView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketStatus {
    pub chain_id: Hash,
    pub height: Height,
    pub time: Timestamp,
    pub market_time: u64,
    pub app_hash: Hash,
    pub health: Health,
    pub supply: Amount,
    pub burned: Amount,
    pub open_jobs: u64,
    pub coprocessors: u64,
}

impl Market {
    pub fn job_view(&self, id: &JobId) -> Option<JobView> {
        let j = self.job(id)?;
        let mut bids: Vec<BidView> = j
            .auction
            .dutch
            .iter()
            .map(|(c, p)| BidView {
                coprocessor: *c,
                kind: "dutch".into(),
                price: Some(*p),
            })
            .collect();
        for c in j.auction.commits.keys() {
            let revealed = j.auction.reveals.get(c).copied();
            bids.push(BidView {
                coprocessor: *c,
                kind: if revealed.is_some() {
                    "sealed_reveal"
                } else {
                    "sealed_commit"
                }
                .into(),
                price: revealed,
            });
        }
        let slots: Vec<SlotView> = j
            .assignments
            .iter()
            .map(|(c, a)| SlotView {
                coprocessor: *c,
                price: a.price,
                collateral: a.collateral,
                round: a.round,
                deadline: a.deadline,
                status: a.status,
                result_hash: a.result.as_ref().map(|r| r.result_hash),
                fuel_used: a.result.as_ref().map(|r| r.fuel_used),
                outcome: a.result.as_ref().map(|r| r.outcome),
            })
            .collect();
        let winning: Vec<&SlotView> = slots
            .iter()
            .filter(|s| !matches!(s.status, SlotStatus::TimedOut | SlotStatus::Released))
            .collect();
        let winners = winning.iter().map(|s| s.coprocessor).collect();
        let price = winning.iter().map(|s| s.price).max();
        Some(JobView {
            id: j.id,
            client: j.client,
            state: j.state,
            spec: j.spec.clone(),
            submitted_height: j.submitted_height,
            submitted_at: j.submitted_at,
            auction_round: j.auction.round,
            reauctions: j.reauctions,
            clock_price: match (&j.spec.auction, j.state) {
                (AuctionSpec::Dutch { .. }, JobState::Auction) => self.dutch_price(id),
                _ => None,
            },
            bids,
            winners,
            price,
            slots,
            escrow: j.held().unwrap_or_default(),
            result_hash: j.result_hash,
            outcome: j.outcome,
            failure: j.failure.clone(),
            auditor: j.audit.as_ref().map(|a| a.auditor),
            events: j.events.clone(),
            why_not: j.declines.clone(),
        })
    }

    /// The most recently submitted jobs (optionally of one client), newest first.
    pub fn job_list(&self, client: Option<&Address>, limit: usize) -> Vec<JobSummary> {
        let mut out: Vec<JobSummary> = self
            .jobs()
            .filter(|(_, j)| client.is_none_or(|c| j.client == *c))
            .map(|(_, j)| JobSummary {
                id: j.id,
                client: j.client,
                state: j.state,
                submitted_height: j.submitted_height,
                replicas: j.spec.replicas,
                max_price: j.spec.max_price,
                result_hash: j.result_hash,
            })
            .collect();
        out.sort_by(|a, b| {
            b.submitted_height
                .cmp(&a.submitted_height)
                .then(a.id.cmp(&b.id))
        });
        out.truncate(limit);
        out
    }

    pub fn coprocessor_view(&self, a: &Address) -> Option<CoprocessorView> {
        let c = self.coprocessor(a)?;
        Some(CoprocessorView {
            address: *a,
            stake: c.stake,
            locked: c.locked,
            unbonding: c.unbonding,
            capacity: c.capacity,
            load: c.load,
            reputation_bps: c.reputation_bps(),
            logit: c.logit,
            active: c.active,
            completed: c.completed,
            failed: c.failed,
            earned: c.earned,
            slashed: c.slashed,
            strikes: c.strikes,
            ejected: c.ejected,
        })
    }

    /// Every registered coprocessor, in address order.
    pub fn coprocessor_list(&self) -> Vec<CoprocessorView> {
        self.coprocessors()
            .filter_map(|(a, _)| self.coprocessor_view(a))
            .collect()
    }

    pub fn account_view(&self, a: &Address) -> AccountView {
        AccountView {
            address: *a,
            balance: self.balance(a),
            nonce: self.nonce(a),
            coprocessor: self.coprocessor_view(a),
            operator: self.operator(a).map(|o| OperatorView {
                address: *a,
                stake: o.stake,
                jailed: o.jailed,
            }),
        }
    }

    pub fn status(&self) -> MarketStatus {
        MarketStatus {
            chain_id: self.chain_id(),
            height: self.height(),
            time: self.time(),
            market_time: self.market_time(),
            app_hash: self.app_hash(),
            health: self.health().clone(),
            supply: self.supply(),
            burned: self.burned(),
            open_jobs: self.open_jobs().count() as u64,
            coprocessors: self.coprocessors().count() as u64,
        }
    }
}
