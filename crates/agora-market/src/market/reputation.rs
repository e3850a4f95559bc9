//! Reputation (design §6): the GAS update of a coprocessor's logit after each verified outcome
//! and each operator liveness report, and strikes — proven wrong results, forgiven by a run of
//! clean ones — that eject a coprocessor at the limit.

use agora_types::{Address, Hash};

use super::{Key, Market};
use crate::model::{gas_update, MarketEvent, Rejection};
use crate::tx::Attestation;

/// A checked liveness report by an operator about a coprocessor.
pub(super) struct Liveness {
    operator: Address,
    subject: Address,
    alive: bool,
    /// The (operator, subject) pair's rate-limit key.
    key: Hash,
}

impl Market {
    pub(super) fn check_liveness(
        &self,
        who: Address,
        a: &Attestation,
    ) -> Result<Liveness, Rejection> {
        self.is_operator(&who)?;
        if !self.s.coprocessors.contains_key(&a.subject) {
            return Err(Rejection::NotAllowed("subject is not a coprocessor".into()));
        }
        let key = Hash::derive(
            "agora/v1/liveness",
            &[who.as_bytes().as_slice(), a.subject.as_bytes()].concat(),
        );
        let now = self.s.time.0;
        if let Some(last) = self.s.liveness_last.get(&key) {
            if now.saturating_sub(*last) < self.s.params.liveness_interval_ms {
                return Err(Rejection::Limit("liveness reported too recently".into()));
            }
        }
        Ok(Liveness {
            operator: who,
            subject: a.subject,
            alive: a.alive,
            key,
        })
    }

    pub(super) fn apply_liveness(&mut self, t: Liveness) -> Result<(), Rejection> {
        self.s.liveness_last.insert(t.key, self.s.time.0);
        self.emit(MarketEvent::LivenessReported {
            operator: t.operator,
            coprocessor: t.subject,
            alive: t.alive,
        });
        self.reputation(&t.subject, t.alive);
        Ok(())
    }

    /// One GAS step of `c`'s logit on outcome `success`.
    pub(super) fn reputation(&mut self, c: &Address, success: bool) {
        let params = &self.s.params;
        if let Some(cop) = self.s.coprocessors.get_mut(c) {
            cop.logit = gas_update(cop.logit, success, params);
            let reputation_bps = cop.reputation_bps();
            self.dirty.insert(Key::Coprocessor(*c));
            self.emit(MarketEvent::ReputationUpdated {
                coprocessor: *c,
                outcome: success,
                reputation_bps,
            });
        }
    }

    /// Count a proven wrong result; `max_strikes` unforgiven ones eject the coprocessor.
    pub(super) fn strike(&mut self, c: &Address) -> Result<(), Rejection> {
        let max = self.s.params.max_strikes;
        let cop = self.cop_mut(c)?;
        cop.strikes = cop.strikes.saturating_add(1);
        cop.clean_streak = 0;
        let strikes = cop.strikes;
        if max == 0 || strikes < max || cop.ejected {
            return Ok(());
        }
        cop.ejected = true;
        self.emit(MarketEvent::CoprocessorEjected {
            coprocessor: *c,
            strikes,
        });
        self.update_activity(c);
        Ok(())
    }
}
