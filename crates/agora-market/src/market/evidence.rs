//! Accountability of operators (design §2, §8): proven equivocation — two different votes
//! signed by one operator for one (height, round, step), or two different proposals for one
//! (height, round) — slashes and jails it for good; a tie-breaker that proves an audit wrong
//! slashes the auditor the same way.

use agora_crypto::Domain;
use agora_types::{Address, Hash};

use super::{bps, reject, Key, Market, VoteKey};
use crate::model::{MarketEvent, Rejection};
use crate::tx::Evidence;

/// Checked equivocation evidence: the operator it proves against and its dedup key.
pub(super) struct Proven {
    operator: Address,
    key: Hash,
}

impl Market {
    pub(super) fn check_evidence(&self, e: &Evidence) -> Result<Proven, Rejection> {
        let decoder = self
            .vote_decoder
            .ok_or_else(|| Rejection::NotAllowed("evidence is not accepted on this node".into()))?;
        if !self.s.operators.contains_key(&e.operator) {
            return reject("not an operator");
        }
        if e.vote_a == e.vote_b {
            return reject("votes are identical");
        }
        let (ka, kb) = match (decoder(&e.vote_a), decoder(&e.vote_b)) {
            (Some(a), Some(b)) => (a, b),
            _ => return reject("undecodable vote"),
        };
        if ka != kb {
            return reject("votes are for different heights, rounds or steps");
        }
        // Both payloads are of one kind (the slot says which), signed in that kind's domain.
        let domain = if ka.step == VoteKey::PROPOSAL_STEP {
            Domain::Proposal
        } else {
            Domain::Vote
        };
        let chain = self.genesis_hash;
        for (v, s) in [(&e.vote_a, &e.signature_a), (&e.vote_b, &e.signature_b)] {
            agora_crypto::verify(&e.operator, domain, &chain, v, s)
                .map_err(|_| Rejection::BadSignature)?;
        }
        let mut key_bytes = e.operator.as_bytes().to_vec();
        key_bytes.extend_from_slice(&ka.height.to_le_bytes());
        key_bytes.extend_from_slice(&ka.round.to_le_bytes());
        key_bytes.push(ka.step);
        let key = Hash::derive("agora/v1/evidence", &key_bytes);
        if self.s.evidence_seen.contains(&key) {
            return reject("evidence already processed");
        }
        if !self.takes_evidence_against(&e.operator) {
            return reject("operator is already jailed for equivocation");
        }
        Ok(Proven {
            operator: e.operator,
            key,
        })
    }

    pub(super) fn apply_evidence(&mut self, t: Proven) -> Result<(), Rejection> {
        self.s.evidence_seen.insert(t.key);
        self.slash_operator(&t.operator, "equivocation")?;
        if let Some(o) = self.s.operators.get_mut(&t.operator) {
            o.jailed = true;
        }
        Ok(())
    }

    /// Burn `evidence_slash_bps` of an operator's stake.
    pub(super) fn slash_operator(&mut self, op: &Address, reason: &str) -> Result<(), Rejection> {
        let rate = self.s.params.evidence_slash_bps;
        let o = self.s.operators.get_mut(op).ok_or(Rejection::Overflow)?;
        let amount = bps(o.stake, rate)?;
        o.stake = o.stake.checked_sub(amount)?;
        self.s.burned = self.s.burned.checked_add(amount)?;
        self.dirty.insert(Key::Operator(*op));
        self.emit(MarketEvent::OperatorSlashed {
            operator: *op,
            amount,
            reason: reason.into(),
        });
        Ok(())
    }
}
