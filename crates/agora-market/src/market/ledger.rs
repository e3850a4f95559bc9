//! The ledger (design §3): balances, transfers, coprocessor stakes and their unbonding, and
//! whether a stake keeps a coprocessor active. Every change of a balance goes through
//! [`Market::credit`] and [`Market::debit`], which check the arithmetic and mark the entry for
//! the app hash.

use agora_types::{Address, Amount, Fixed, Timestamp};

use super::{reject, Key, Market, Unbonding};
use crate::model::{Coprocessor, MarketEvent, Rejection};

/// Most unbondings pending at once, chain-wide.
const MAX_UNBONDING: usize = 100_000;

/// A checked transfer.
pub(super) struct Transfer {
    from: Address,
    to: Address,
    amount: Amount,
}

/// A checked stake (a new coprocessor or a top-up).
pub(super) struct Stake {
    who: Address,
    amount: Amount,
    capacity: u32,
    new_stake: Amount,
}

/// A checked start of unbonding.
pub(super) struct Unstake {
    who: Address,
    amount: Amount,
    new_stake: Amount,
    new_unbonding: Amount,
}

impl Market {
    pub(super) fn credit(&mut self, to: Address, amount: Amount) -> Result<(), Rejection> {
        let a = self.s.accounts.entry(to).or_default();
        a.balance = a.balance.checked_add(amount)?;
        self.dirty.insert(Key::Account(to));
        Ok(())
    }

    pub(super) fn debit(&mut self, from: Address, amount: Amount) -> Result<(), Rejection> {
        let have = self.balance(&from);
        let new = have
            .checked_sub(amount)
            .map_err(|_| Rejection::InsufficientFunds { need: amount, have })?;
        self.s.accounts.entry(from).or_default().balance = new;
        self.dirty.insert(Key::Account(from));
        Ok(())
    }

    pub(super) fn need_funds(&self, who: &Address, amount: Amount) -> Result<(), Rejection> {
        let have = self.balance(who);
        if have < amount {
            return Err(Rejection::InsufficientFunds { need: amount, have });
        }
        Ok(())
    }

    pub(super) fn check_transfer(
        &self,
        from: Address,
        to: Address,
        amount: Amount,
    ) -> Result<Transfer, Rejection> {
        if amount.is_zero() {
            return reject("zero amount");
        }
        self.need_funds(&from, amount)?;
        self.balance(&to).checked_add(amount)?;
        Ok(Transfer { from, to, amount })
    }

    pub(super) fn apply_transfer(&mut self, t: Transfer) -> Result<(), Rejection> {
        self.debit(t.from, t.amount)?;
        self.credit(t.to, t.amount)
    }

    pub(super) fn check_stake(
        &self,
        who: Address,
        amount: Amount,
        capacity: u32,
    ) -> Result<Stake, Rejection> {
        let p = &self.s.params;
        if capacity == 0 || capacity > p.max_capacity {
            return reject(format!("capacity must be 1..={}", p.max_capacity));
        }
        self.need_funds(&who, amount)?;
        let existing = self.s.coprocessors.get(&who);
        let new_stake = existing
            .map(|c| c.stake)
            .unwrap_or_default()
            .checked_add(amount)?;
        if existing.is_none() && new_stake < p.min_stake {
            return Err(Rejection::NotEligible(format!(
                "stake below minimum {}",
                p.min_stake
            )));
        }
        Ok(Stake {
            who,
            amount,
            capacity,
            new_stake,
        })
    }

    pub(super) fn apply_stake(&mut self, t: Stake) -> Result<(), Rejection> {
        let Stake {
            who,
            amount,
            capacity,
            new_stake,
        } = t;
        self.debit(who, amount)?;
        let f0 = self.s.params.gas_f0;
        let c = self.s.coprocessors.entry(who).or_insert(Coprocessor {
            stake: Amount::ZERO,
            locked: Amount::ZERO,
            unbonding: Amount::ZERO,
            capacity,
            load: 0,
            logit: f0,
            active: false,
            completed: 0,
            failed: 0,
            earned: Amount::ZERO,
            slashed: Amount::ZERO,
            strikes: 0,
            clean_streak: 0,
            ejected: false,
            recent_load: Fixed::ZERO,
            recent_at: 0,
        });
        c.stake = new_stake;
        c.capacity = capacity;
        self.dirty.insert(Key::Coprocessor(who));
        self.emit(MarketEvent::CoprocessorStaked {
            coprocessor: who,
            stake: new_stake,
            capacity,
        });
        self.update_activity(&who);
        Ok(())
    }

    pub(super) fn check_unstake(&self, who: Address, amount: Amount) -> Result<Unstake, Rejection> {
        let c = self
            .s
            .coprocessors
            .get(&who)
            .ok_or_else(|| Rejection::NotAllowed("not a coprocessor".into()))?;
        if amount.is_zero() {
            return reject("zero amount");
        }
        let free = c.free_collateral();
        if amount > free {
            return Err(Rejection::InsufficientFunds {
                need: amount,
                have: free,
            });
        }
        let new_stake = c.stake.checked_sub(amount)?;
        let new_unbonding = c.unbonding.checked_add(amount)?;
        if self.s.unbonding.len() >= MAX_UNBONDING {
            return Err(Rejection::Limit("unbonding queue full".into()));
        }
        Ok(Unstake {
            who,
            amount,
            new_stake,
            new_unbonding,
        })
    }

    pub(super) fn apply_unstake(&mut self, t: Unstake) -> Result<(), Rejection> {
        let Unstake {
            who,
            amount,
            new_stake,
            new_unbonding,
        } = t;
        let release_at = Timestamp(
            self.s
                .time
                .0
                .saturating_add(self.s.params.unbonding_delay_ms),
        );
        let c = self.cop_mut(&who)?;
        c.stake = new_stake;
        c.unbonding = new_unbonding;
        self.s.unbonding.push_back(Unbonding {
            coprocessor: who,
            amount,
            release_at,
        });
        self.emit(MarketEvent::UnbondingStarted {
            coprocessor: who,
            amount,
            release_at,
        });
        self.update_activity(&who);
        Ok(())
    }

    /// Pay out the unbondings whose delay has passed (end of block).
    pub(super) fn release_unbonding(&mut self) {
        while let Some(u) = self.s.unbonding.front() {
            if u.release_at > self.s.time {
                break;
            }
            let Some(u) = self.s.unbonding.pop_front() else {
                break;
            };
            let ok = self.s.coprocessors.get_mut(&u.coprocessor).map(|c| {
                c.unbonding = c.unbonding.checked_sub(u.amount).unwrap_or_default();
            });
            if ok.is_some() && self.credit(u.coprocessor, u.amount).is_ok() {
                self.dirty.insert(Key::Coprocessor(u.coprocessor));
                self.emit(MarketEvent::UnbondingReleased {
                    coprocessor: u.coprocessor,
                    amount: u.amount,
                });
            }
        }
    }

    /// A coprocessor is active (may bid) while its stake is at least the minimum and it is not
    /// ejected; each switch is an event.
    pub(super) fn update_activity(&mut self, a: &Address) {
        let min = self.s.params.min_stake;
        let Some(c) = self.s.coprocessors.get_mut(a) else {
            return;
        };
        let should = c.stake >= min && !c.ejected;
        if c.active != should {
            c.active = should;
            let stake = c.stake;
            self.dirty.insert(Key::Coprocessor(*a));
            self.emit(if should {
                MarketEvent::CoprocessorActivated {
                    coprocessor: *a,
                    stake,
                }
            } else {
                MarketEvent::CoprocessorDeactivated {
                    coprocessor: *a,
                    stake,
                }
            });
        }
    }
}
