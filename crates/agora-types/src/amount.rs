use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in integer base units.
///
/// Only checked arithmetic is offered: an overflow or underflow is an error the caller must
/// handle, never a silent wrap.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u128);

/// Checked-arithmetic failure on an [`Amount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount overflow")]
    Overflow,
    #[error("amount underflow")]
    Underflow,
    #[error("division by zero")]
    DivisionByZero,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(u128::MAX);

    pub const fn new(units: u128) -> Self {
        Amount(units)
    }

    pub const fn get(self) -> u128 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(AmountError::Underflow)
    }

    pub fn checked_mul(self, factor: u128) -> Result<Amount, AmountError> {
        self.0
            .checked_mul(factor)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    pub fn checked_div(self, divisor: u128) -> Result<Amount, AmountError> {
        self.0
            .checked_div(divisor)
            .map(Amount)
            .ok_or(AmountError::DivisionByZero)
    }

    /// `self * num / den`, rounded down, without intermediate overflow for `num <= den`.
    pub fn mul_ratio(self, num: u128, den: u128) -> Result<Amount, AmountError> {
        if den == 0 {
            return Err(AmountError::DivisionByZero);
        }
        let (q, r) = (self.0 / den, self.0 % den);
        let whole = q.checked_mul(num).ok_or(AmountError::Overflow)?;
        let part = r.checked_mul(num).ok_or(AmountError::Overflow)? / den;
        whole
            .checked_add(part)
            .map(Amount)
            .ok_or(AmountError::Overflow)
    }

    /// Sum of an iterator of amounts, failing on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(iter: I) -> Result<Amount, AmountError> {
        iter.into_iter().try_fold(Amount::ZERO, Amount::checked_add)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u128> for Amount {
    fn from(v: u128) -> Self {
        Amount(v)
    }
}

impl From<u64> for Amount {
    fn from(v: u64) -> Self {
        Amount(v as u128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_overflows_at_max() {
        assert_eq!(
            Amount::MAX.checked_add(Amount(1)),
            Err(AmountError::Overflow)
        );
        assert_eq!(Amount(2).checked_add(Amount(3)), Ok(Amount(5)));
    }

    #[test]
    fn sub_underflows_below_zero() {
        assert_eq!(
            Amount(2).checked_sub(Amount(3)),
            Err(AmountError::Underflow)
        );
        assert_eq!(Amount(3).checked_sub(Amount(3)), Ok(Amount::ZERO));
    }

    #[test]
    fn mul_and_div_are_checked() {
        assert_eq!(Amount::MAX.checked_mul(2), Err(AmountError::Overflow));
        assert_eq!(Amount(7).checked_div(0), Err(AmountError::DivisionByZero));
        assert_eq!(Amount(7).checked_div(2), Ok(Amount(3)));
    }

    #[test]
    fn mul_ratio_does_not_overflow_on_large_values() {
        let big = Amount(u128::MAX - 1);
        assert_eq!(big.mul_ratio(1, 2), Ok(Amount((u128::MAX - 1) / 2)));
        assert_eq!(Amount(1000).mul_ratio(3, 10), Ok(Amount(300)));
        assert_eq!(Amount(10).mul_ratio(1, 0), Err(AmountError::DivisionByZero));
    }

    #[test]
    fn checked_sum_reports_overflow() {
        assert_eq!(Amount::checked_sum([Amount(1), Amount(2)]), Ok(Amount(3)));
        assert!(Amount::checked_sum([Amount::MAX, Amount(1)]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn mul_ratio_matches_wide_arithmetic(a in 0u128..u64::MAX as u128, n in 0u128..1_000_000, d in 1u128..1_000_000) {
            proptest::prop_assert_eq!(Amount(a).mul_ratio(n, d).unwrap(), Amount(a * n / d));
        }
    }
}
