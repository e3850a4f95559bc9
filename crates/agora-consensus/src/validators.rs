//! The validator set: voting power derived deterministically from `u128` stake, and
//! stake-weighted proposer selection.

use std::collections::BTreeSet;

use agora_types::{Address, Hash};
use arc_malachitebft_core_types as mt;

use crate::context::{Ctx, ValAddr, Validator};

/// Largest total voting power: the driver multiplies powers by 3 in `u64`.
pub const MAX_TOTAL_POWER: u64 = u64::MAX / 3;

/// Why a validator set cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    #[error("validator set is empty")]
    Empty,
    #[error("duplicate validator {0}")]
    Duplicate(Address),
    #[error("too many validators: {0}")]
    TooMany(usize),
}

/// Most validators a set may hold (bounds certificate sizes).
pub const MAX_VALIDATORS: usize = 1024;

/// Validators sorted by power descending, then address ascending; all powers > 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    total: u64,
}

/// Map stakes to voting powers: the identity when the total fits under
/// [`MAX_TOTAL_POWER`], else every stake shifted right by the smallest `k` that makes the total
/// fit (a non-zero stake keeps power at least 1). Zero stakes get no power. Pure integer math,
/// so every node derives the same powers.
pub fn voting_powers(stakes: &[u128]) -> Vec<u64> {
    let limit = u128::from(MAX_TOTAL_POWER);
    let mut shift = 0u32;
    loop {
        let mut total: u128 = 0;
        let mut fits = true;
        let powers: Vec<u128> = stakes
            .iter()
            .map(|s| if *s == 0 { 0 } else { (s >> shift).max(1) })
            .collect();
        for p in &powers {
            total = total.saturating_add(*p);
            if total > limit {
                fits = false;
                break;
            }
        }
        if fits {
            return powers.into_iter().map(|p| p as u64).collect();
        }
        shift += 1;
        if shift >= 128 {
            // Only reachable with more non-zero stakes than MAX_TOTAL_POWER: impossible in
            // practice, and every power is 1 then.
            return stakes.iter().map(|s| u64::from(*s != 0)).collect();
        }
    }
}

impl ValidatorSet {
    /// Build from `(address, stake)`; validators with zero stake are left out.
    pub fn from_stakes(stakes: &[(Address, u128)]) -> Result<ValidatorSet, ValidatorSetError> {
        if stakes.len() > MAX_VALIDATORS {
            return Err(ValidatorSetError::TooMany(stakes.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (a, _) in stakes {
            if !seen.insert(*a) {
                return Err(ValidatorSetError::Duplicate(*a));
            }
        }
        let powers = voting_powers(&stakes.iter().map(|(_, s)| *s).collect::<Vec<_>>());
        let mut validators: Vec<Validator> = stakes
            .iter()
            .zip(powers)
            .filter(|(_, p)| *p > 0)
            .map(|((a, _), p)| Validator {
                address: ValAddr(*a),
                public_key: *a,
                power: p,
            })
            .collect();
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        validators.sort_by(|a, b| b.power.cmp(&a.power).then(a.address.cmp(&b.address)));
        let total = validators.iter().map(|v| v.power).sum();
        Ok(ValidatorSet { validators, total })
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn total_power(&self) -> u64 {
        self.total
    }

    pub fn power_of(&self, a: &Address) -> Option<u64> {
        self.get(a).map(|v| v.power)
    }

    pub fn get(&self, a: &Address) -> Option<&Validator> {
        self.validators.iter().find(|v| v.address.0 == *a)
    }

    pub fn contains(&self, a: &Address) -> bool {
        self.get(a).is_some()
    }

    /// Whether `power` is a quorum: strictly more than 2/3 of the total.
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total) * 2
    }

    /// The proposer of `(height, round)` when no validator is passed over: see
    /// [`ValidatorSet::rotation`].
    pub fn proposer(&self, height: u64, round: u32) -> &Validator {
        let order = self.rotation(height, &BTreeSet::new());
        let addr = order[(round as usize) % order.len()];
        self.get(&addr).unwrap_or(&self.validators[0])
    }

    /// The proposers of `height`, round `r` being entry `r mod n`. Round 0 is a stake-weighted
    /// draw from `blake3(height)` among the validators not `passed_over`, so a validator
    /// proposes in proportion to its power; later rounds step through those validators in set
    /// order from there, and the passed-over ones come last (in set order), so every validator
    /// still gets a turn within `n` rounds and a wrong or stale pass-over list can only cost
    /// rounds, never liveness. If every validator is passed over, none is.
    pub fn rotation(&self, height: u64, passed_over: &BTreeSet<Address>) -> Vec<Address> {
        let mut active: Vec<&Validator> = self
            .validators
            .iter()
            .filter(|v| !passed_over.contains(&v.address.0))
            .collect();
        if active.is_empty() {
            active = self.validators.iter().collect();
        }
        let total: u64 = active.iter().map(|v| v.power).sum();
        let h = Hash::derive("agora/v1/proposer", &height.to_be_bytes());
        let x = u128::from_be_bytes(h.0[..16].try_into().unwrap_or([0; 16]));
        let mut target = (x % u128::from(total.max(1))) as u64;
        let mut first = 0;
        for (i, v) in active.iter().enumerate() {
            if target < v.power {
                first = i;
                break;
            }
            target -= v.power;
        }
        let n = active.len();
        let mut order: Vec<Address> = (0..n).map(|i| active[(first + i) % n].address.0).collect();
        let rest: Vec<Address> = self
            .validators
            .iter()
            .map(|v| v.address.0)
            .filter(|a| !order.contains(a))
            .collect();
        order.extend(rest);
        order
    }

    /// A stable digest of the set (addresses and powers), for logs and sync sanity checks.
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new_derive_key("agora/v1/validator-set");
        for v in &self.validators {
            h.update(v.address.0.as_bytes());
            h.update(&v.power.to_be_bytes());
        }
        Hash(*h.finalize().as_bytes())
    }
}

impl mt::ValidatorSet<Ctx> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }
    fn total_voting_power(&self) -> u64 {
        self.total
    }
    fn get_by_address(&self, address: &ValAddr) -> Option<&Validator> {
        self.get(&address.0)
    }
    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> Address {
        Address([i; 32])
    }

    #[test]
    fn small_stakes_map_to_themselves() {
        assert_eq!(voting_powers(&[1, 2, 0, 7]), vec![1, 2, 0, 7]);
    }

    #[test]
    fn huge_stakes_fit_under_the_limit() {
        let stakes = [u128::MAX, u128::MAX / 2, 1, 10u128.pow(30)];
        let p = voting_powers(&stakes);
        let total: u128 = p.iter().map(|x| u128::from(*x)).sum();
        assert!(total <= u128::from(MAX_TOTAL_POWER));
        assert!(p.iter().all(|x| *x >= 1));
        assert!(p[0] > p[1] && p[1] > p[3]);
    }

    #[test]
    fn proposer_is_weighted_and_deterministic() {
        let vs = ValidatorSet::from_stakes(&[(addr(1), 1), (addr(2), 9)]).unwrap();
        let mut heavy = 0;
        for h in 0..1000 {
            let p = vs.proposer(h, 0);
            assert_eq!(p, vs.proposer(h, 0));
            assert_ne!(p, vs.proposer(h, 1));
            if p.address.0 == addr(2) {
                heavy += 1;
            }
        }
        assert!((850..950).contains(&heavy), "{heavy}");
    }

    #[test]
    fn passed_over_validators_propose_last_and_everyone_keeps_a_turn() {
        let vs = ValidatorSet::from_stakes(&[
            (addr(1), 10),
            (addr(2), 10),
            (addr(3), 10),
            (addr(4), 10),
        ])
        .unwrap();
        let dead: BTreeSet<Address> = [addr(3)].into();
        let mut first_was_dead = 0;
        for h in 0..500 {
            let plain = vs.rotation(h, &BTreeSet::new());
            assert_eq!(plain[0], vs.proposer(h, 0).address.0);
            assert_eq!(plain[1], vs.proposer(h, 1).address.0);
            if plain[0] == addr(3) {
                first_was_dead += 1;
            }
            let order = vs.rotation(h, &dead);
            // Round 0 .. n-2 never ask the passed-over validator; round n-1 does.
            assert_eq!(order.len(), 4);
            assert_eq!(order[3], addr(3));
            let distinct: BTreeSet<Address> = order.iter().copied().collect();
            assert_eq!(distinct.len(), 4);
            assert_eq!(order, vs.rotation(h, &dead), "deterministic");
        }
        assert!(first_was_dead > 80, "{first_was_dead}");
        // Passing over everyone passes over no one.
        let all: BTreeSet<Address> = (1..=4).map(addr).collect();
        assert_eq!(vs.rotation(7, &all), vs.rotation(7, &BTreeSet::new()));
    }

    #[test]
    fn duplicates_and_empty_are_rejected() {
        assert_eq!(
            ValidatorSet::from_stakes(&[]),
            Err(ValidatorSetError::Empty)
        );
        assert_eq!(
            ValidatorSet::from_stakes(&[(addr(1), 0)]),
            Err(ValidatorSetError::Empty)
        );
        assert!(matches!(
            ValidatorSet::from_stakes(&[(addr(1), 1), (addr(1), 2)]),
            Err(ValidatorSetError::Duplicate(_))
        ));
    }

    #[test]
    fn quorum_is_strictly_above_two_thirds() {
        let vs = ValidatorSet::from_stakes(&[(addr(1), 1), (addr(2), 1), (addr(3), 1)]).unwrap();
        assert!(!vs.is_quorum(2));
        assert!(vs.is_quorum(3));
    }
}
