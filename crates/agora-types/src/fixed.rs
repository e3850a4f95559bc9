//! Deterministic fixed-point arithmetic for replicated state.
//!
//! [`Fixed`] is a signed Q31.32 number stored in an `i64`: 32 integer bits (with sign) and 32
//! fractional bits, so values range over about ±2.1·10⁹ with a resolution of 2⁻³² ≈ 2.3·10⁻¹⁰.
//! Every operation is integer arithmetic with a fixed rounding rule, so every replica computes
//! the same bits on every platform. The transcendental functions (`exp`, `ln`, `pow`,
//! `sigmoid`) evaluate fixed-length series in a wider Q2.62 intermediate held in `i128` and
//! round once at the end; they are accurate to a few units in the last place, and—more to the
//! point—bit-exact everywhere (pinned by tests).
//!
//! Text form (serde, `Display`, `FromStr`) is an exact decimal, e.g. `"0.25"` or `"-3"`: every
//! Q32 value has a finite decimal expansion, so printing and parsing round-trip exactly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A signed Q31.32 fixed-point number. The raw field is the value times 2³².
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed(pub i64);

/// Failure to parse a [`Fixed`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixedError {
    #[error("invalid fixed-point number {0:?}")]
    Invalid(String),
    #[error("fixed-point number {0:?} out of range")]
    OutOfRange(String),
}

const FRAC_BITS: u32 = 32;
/// 1.0 in the Q2.62 intermediate format.
const ONE62: i128 = 1 << 62;
/// ln(2) · 2⁶², rounded to nearest.
const LN2_Q62: i128 = 3_196_577_161_300_663_915;
/// Number of series terms; enough for full Q62 precision over the reduced ranges used.
const EXP_TERMS: i128 = 24;
const LN_TERMS: i128 = 24;

impl Fixed {
    pub const ZERO: Fixed = Fixed(0);
    pub const ONE: Fixed = Fixed(1 << FRAC_BITS);
    pub const HALF: Fixed = Fixed(1 << (FRAC_BITS - 1));
    pub const MAX: Fixed = Fixed(i64::MAX);
    pub const MIN: Fixed = Fixed(i64::MIN);
    /// The smallest positive value, 2⁻³².
    pub const EPSILON: Fixed = Fixed(1);

    /// The raw Q32 representation.
    pub const fn raw(self) -> i64 {
        self.0
    }

    pub const fn from_raw(raw: i64) -> Fixed {
        Fixed(raw)
    }

    /// An integer value (every `i32` is representable).
    pub const fn from_int(n: i32) -> Fixed {
        Fixed((n as i64) << FRAC_BITS)
    }

    /// `num / den`, rounded toward negative infinity; `None` if `den == 0` or out of range.
    pub fn from_ratio(num: i64, den: i64) -> Option<Fixed> {
        if den == 0 {
            return None;
        }
        let q = ((num as i128) << FRAC_BITS).div_euclid(den as i128);
        let q = if den < 0 && ((num as i128) << FRAC_BITS).rem_euclid(den as i128) != 0 {
            // div_euclid rounds toward +inf for negative divisors; keep one rule: floor.
            q - 1
        } else {
            q
        };
        i64::try_from(q).ok().map(Fixed)
    }

    /// `bps / 10_000` (basis points).
    pub fn from_bps(bps: u32) -> Fixed {
        Fixed((((bps as i128) << FRAC_BITS) / 10_000) as i64)
    }

    /// The integer part, rounded toward negative infinity.
    pub const fn floor_int(self) -> i64 {
        self.0 >> FRAC_BITS
    }

    /// A lossy `f64` view, for reports and plots only: never feed it back into replicated state.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / (1u64 << FRAC_BITS) as f64
    }

    pub fn checked_add(self, o: Fixed) -> Option<Fixed> {
        self.0.checked_add(o.0).map(Fixed)
    }

    pub fn checked_sub(self, o: Fixed) -> Option<Fixed> {
        self.0.checked_sub(o.0).map(Fixed)
    }

    /// Product, rounded toward negative infinity; `None` on overflow.
    pub fn checked_mul(self, o: Fixed) -> Option<Fixed> {
        let p = (self.0 as i128 * o.0 as i128) >> FRAC_BITS;
        i64::try_from(p).ok().map(Fixed)
    }

    /// Quotient, rounded toward negative infinity; `None` on division by zero or overflow.
    pub fn checked_div(self, o: Fixed) -> Option<Fixed> {
        if o.0 == 0 {
            return None;
        }
        let n = (self.0 as i128) << FRAC_BITS;
        let d = o.0 as i128;
        let mut q = n / d;
        if (n % d != 0) && ((n < 0) != (d < 0)) {
            q -= 1;
        }
        i64::try_from(q).ok().map(Fixed)
    }

    pub fn saturating_add(self, o: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(o.0))
    }

    pub fn saturating_sub(self, o: Fixed) -> Fixed {
        Fixed(self.0.saturating_sub(o.0))
    }

    pub fn saturating_mul(self, o: Fixed) -> Fixed {
        let p = (self.0 as i128 * o.0 as i128) >> FRAC_BITS;
        Fixed(p.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    /// Multiply by an integer, saturating.
    pub fn saturating_mul_int(self, n: i64) -> Fixed {
        Fixed(self.0.saturating_mul(n))
    }

    pub fn saturating_neg(self) -> Fixed {
        Fixed(self.0.saturating_neg())
    }

    pub fn clamp(self, lo: Fixed, hi: Fixed) -> Fixed {
        if self < lo {
            lo
        } else if self > hi {
            hi
        } else {
            self
        }
    }

    /// `floor(self · n)` for a non-negative integer `n` (money times a ratio); saturates at 0
    /// for negative values and at `u128::MAX` on overflow.
    pub fn mul_u128_floor(self, n: u128) -> u128 {
        if self.0 <= 0 {
            return 0;
        }
        let r = self.0 as u128;
        let (hi, lo) = (n >> 64, n & u64::MAX as u128);
        // n·r / 2³² computed as (hi·r·2⁶⁴ + lo·r) / 2³² without overflowing u128 when possible.
        let lo_part = (lo * r) >> FRAC_BITS;
        let hi_part = (hi * r).checked_shl(32).filter(|v| (v >> 32) == hi * r);
        match hi_part {
            Some(h) => h.saturating_add(lo_part),
            None => u128::MAX,
        }
    }

    /// eˣ, saturating at [`Fixed::MAX`] for large `x` and flushing to zero below about −22.2.
    pub fn exp(self) -> Fixed {
        // ln(2³¹) ≈ 21.49 is the largest exponent whose result fits.
        if self.0 > (21i64 << FRAC_BITS) + (1i64 << 31) {
            return Fixed::MAX;
        }
        if self.0 < -(23i64 << FRAC_BITS) {
            return Fixed::ZERO;
        }
        let x62 = (self.0 as i128) << 30;
        // k = round(x / ln 2), r = x − k·ln 2, |r| ≤ ln(2)/2.
        let k = if x62 >= 0 {
            (x62 + LN2_Q62 / 2) / LN2_Q62
        } else {
            -((-x62 + LN2_Q62 / 2) / LN2_Q62)
        };
        let r = x62 - k * LN2_Q62;
        let e = exp_q62_small(r);
        // result (Q32) = e · 2ᵏ / 2³⁰
        let shift = k - 30;
        let v: i128 = if shift >= 0 {
            if shift >= 64 {
                return Fixed::MAX;
            }
            e.checked_shl(shift as u32)
                .filter(|v| v >> shift == e)
                .unwrap_or(i128::MAX)
        } else {
            let s = (-shift) as u32;
            if s >= 127 {
                0
            } else {
                (e + (1i128 << (s - 1))) >> s
            }
        };
        Fixed(v.min(i64::MAX as i128) as i64)
    }

    /// Natural logarithm; `None` for `x ≤ 0`.
    pub fn ln(self) -> Option<Fixed> {
        if self.0 <= 0 {
            return None;
        }
        Some(Fixed(round_q62_to_q32(ln_q62(self.0))))
    }

    /// `self^e` for `self ≥ 0`, computed as `exp(e · ln self)`; `0^e = 0` for `e > 0`,
    /// `x^0 = 1`. `None` for a negative base or `0^e` with `e ≤ 0`.
    pub fn pow(self, e: Fixed) -> Option<Fixed> {
        if e == Fixed::ZERO {
            return Some(Fixed::ONE);
        }
        if self.0 < 0 {
            return None;
        }
        if self.0 == 0 {
            return if e.0 > 0 { Some(Fixed::ZERO) } else { None };
        }
        if e == Fixed::ONE {
            return Some(self);
        }
        let l = ln_q62(self.0); // Q62
                                // e (Q32) · l (Q62) → Q62 product, then down to Q32 for exp.
        let prod = (e.0 as i128).checked_mul(l)? >> 32; // Q62
        let as_q32 = round_q62_to_q32(prod);
        Some(Fixed(as_q32).exp())
    }

    /// The logistic function σ(x) = 1 / (1 + e⁻ˣ), in [0, 1].
    pub fn sigmoid(self) -> Fixed {
        if self.0 >= 0 {
            let e = self.saturating_neg().exp().0 as i128; // (0, 1]
            let one = Fixed::ONE.0 as i128;
            Fixed(((one * one + (one + e) / 2) / (one + e)) as i64)
        } else {
            let e = self.exp().0 as i128;
            let one = Fixed::ONE.0 as i128;
            Fixed(((e * one + (one + e) / 2) / (one + e)) as i64)
        }
    }
}

/// eʳ for |r| ≤ ~0.35 in Q62, by a Taylor series.
fn exp_q62_small(r: i128) -> i128 {
    let mut sum = ONE62;
    let mut term = ONE62;
    for i in 1..=EXP_TERMS {
        term = ((term * r) >> 62) / i;
        if term == 0 {
            break;
        }
        sum += term;
    }
    sum
}

/// ln of a positive Q32 raw value, in Q62.
fn ln_q62(raw: i64) -> i128 {
    let msb = 63 - raw.leading_zeros() as i32; // position of the top bit
    let n = msb - FRAC_BITS as i32; // x = m · 2ⁿ with m ∈ [1, 2)
    let m = (raw as i128) << (62 - msb); // Q62, in [1, 2)
                                         // ln m = 2·atanh(z), z = (m − 1)/(m + 1) ∈ [0, 1/3)
    let z = ((m - ONE62) << 62) / (m + ONE62);
    let z2 = (z * z) >> 62;
    let mut pow = z;
    let mut sum = 0i128;
    let mut k = 1i128;
    while k < 2 * LN_TERMS {
        sum += pow / k;
        pow = (pow * z2) >> 62;
        if pow == 0 {
            break;
        }
        k += 2;
    }
    2 * sum + n as i128 * LN2_Q62
}

fn round_q62_to_q32(v: i128) -> i64 {
    let r = (v + (1i128 << 29)) >> 30;
    r.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < 0;
        let mag = (self.0 as i128).unsigned_abs();
        let int = mag >> FRAC_BITS;
        let frac = mag & 0xffff_ffff;
        if neg {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if frac != 0 {
            // frac / 2³² = frac · 5³² / 10³², exact.
            let digits = frac * 5u128.pow(32);
            let s = format!("{digits:032}");
            write!(f, ".{}", s.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

impl FromStr for Fixed {
    type Err = FixedError;

    /// Parse an exact decimal (`-12.5`, `0.0001`), rounding to the nearest Q32 value.
    fn from_str(s: &str) -> Result<Fixed, FixedError> {
        let t = s.trim();
        let invalid = || FixedError::Invalid(s.to_owned());
        let (neg, body) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int_s, frac_s) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int_s.is_empty() && frac_s.is_empty() {
            return Err(invalid());
        }
        if !int_s.bytes().all(|b| b.is_ascii_digit()) || !frac_s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let int: u128 = if int_s.is_empty() {
            0
        } else {
            int_s
                .parse()
                .map_err(|_| FixedError::OutOfRange(s.to_owned()))?
        };
        // The first 33 fractional digits decide the nearest Q32 value: every midpoint between
        // two Q32 values, (2k + 1) / 2³³, has exactly 33, so later digits never move an input
        // across one.
        let frac_digits = &frac_s[..frac_s.len().min(33)];
        let frac_raw: u128 = if frac_digits.is_empty() {
            0
        } else {
            let num: u128 = frac_digits.parse().map_err(|_| invalid())?;
            let den = 10u128.pow(frac_digits.len() as u32);
            // num · 2³² / den rounded half up, in two 16-bit steps: num < 10³³ < 2¹¹⁰, so
            // neither shifted value overflows.
            let (q1, r1) = ((num << 16) / den, (num << 16) % den);
            let (q2, r2) = ((r1 << 16) / den, (r1 << 16) % den);
            (q1 << 16) + q2 + u128::from(2 * r2 >= den)
        };
        let mag = int
            .checked_mul(1u128 << FRAC_BITS)
            .and_then(|v| v.checked_add(frac_raw))
            .ok_or_else(|| FixedError::OutOfRange(s.to_owned()))?;
        let v: i128 = if neg { -(mag as i128) } else { mag as i128 };
        i64::try_from(v)
            .map(Fixed)
            .map_err(|_| FixedError::OutOfRange(s.to_owned()))
    }
}

impl Serialize for Fixed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Fixed {
    /// Accepts the exact decimal string form, or a whole number.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Fixed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string such as \"0.25\" or a whole number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Fixed, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Fixed, E> {
                i32::try_from(v)
                    .map(Fixed::from_int)
                    .map_err(|_| E::custom("out of range"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Fixed, E> {
                i32::try_from(v)
                    .map(Fixed::from_int)
                    .map_err(|_| E::custom("out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(s: &str) -> Fixed {
        s.parse().unwrap()
    }

    #[test]
    fn basic_arithmetic_is_exact_on_dyadic_values() {
        assert_eq!(fx("1.5").checked_mul(fx("2")), Some(fx("3")));
        assert_eq!(fx("3").checked_div(fx("4")), Some(fx("0.75")));
        assert_eq!(Fixed::from_ratio(1, 4), Some(fx("0.25")));
        assert_eq!(Fixed::from_ratio(1, 0), None);
        assert_eq!(Fixed::from_bps(2_500), fx("0.25"));
        assert_eq!(Fixed::MAX.checked_add(Fixed::EPSILON), None);
        assert_eq!(Fixed::MAX.saturating_add(Fixed::ONE), Fixed::MAX);
        assert_eq!(Fixed::MAX.saturating_mul(fx("2")), Fixed::MAX);
        assert_eq!(Fixed::MIN.saturating_mul(fx("2")), Fixed::MIN);
        assert_eq!(Fixed::ONE.checked_div(Fixed::ZERO), None);
        assert_eq!(fx("-1").checked_div(fx("3")).unwrap().0, -1431655766); // floor
    }

    #[test]
    fn text_form_round_trips_exactly() {
        for raw in [
            0i64,
            1,
            -1,
            1 << 32,
            123_456_789_012,
            -987_654_321,
            i64::MAX,
            i64::MIN + 1,
        ] {
            let f = Fixed(raw);
            assert_eq!(f.to_string().parse::<Fixed>(), Ok(f), "{f}");
        }
        assert_eq!(fx("0.5").to_string(), "0.5");
        assert_eq!(fx("-2.25").to_string(), "-2.25");
        assert!("1.2.3".parse::<Fixed>().is_err());
        assert!("abc".parse::<Fixed>().is_err());
        assert!("99999999999".parse::<Fixed>().is_err());
        // Rounding to nearest, ties away from zero, is decided by up to 33 digits (the
        // midpoint 2⁻³³ has 33); once these parsed to 0 by looking at 27 digits only.
        assert_eq!(fx("0.000000000116415321826934814453125"), Fixed(1));
        assert_eq!(fx("-0.000000000116415321826934814453125"), Fixed(-1));
        assert_eq!(fx("0.000000000116415321826934814453124999"), Fixed(0));
        assert_eq!(fx("0.0000000001164153218269348146"), Fixed(1));
        assert_eq!(fx("0.99999999988358467817306518554687500"), Fixed::ONE);
        let json = serde_json::to_string(&fx("0.125")).unwrap();
        assert_eq!(json, "\"0.125\"");
        assert_eq!(serde_json::from_str::<Fixed>("3").unwrap(), fx("3"));
    }

    #[test]
    fn sigmoid_matches_f64_within_tolerance() {
        let mut x = -30.0f64;
        while x <= 30.0 {
            let f = Fixed((x * 4294967296.0) as i64);
            let want = 1.0 / (1.0 + (-f.to_f64()).exp());
            let got = f.sigmoid().to_f64();
            assert!(
                (got - want).abs() < 3e-9,
                "sigmoid({x}) = {got}, want {want}"
            );
            x += 0.173;
        }
        assert_eq!(Fixed::ZERO.sigmoid(), Fixed::HALF);
        assert_eq!(Fixed::MAX.sigmoid(), Fixed::ONE);
        assert_eq!(Fixed::MIN.sigmoid(), Fixed::ZERO);
    }

    #[test]
    fn exp_ln_pow_match_f64() {
        let mut x = -20.0f64;
        while x <= 21.0 {
            let f = Fixed((x * 4294967296.0) as i64);
            let want = f.to_f64().exp();
            let got = f.exp().to_f64();
            assert!(
                (got - want).abs() <= want * 1e-9 + 3e-10,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0931;
        }
        let mut y = 0.001f64;
        while y < 1e9 {
            let f = Fixed((y * 4294967296.0) as i64);
            let want = f.to_f64().ln();
            let got = f.ln().unwrap().to_f64();
            assert!((got - want).abs() < 1e-9, "ln({y}) = {got}, want {want}");
            y *= 1.37;
        }
        assert_eq!(Fixed::ZERO.ln(), None);
        for (b, e) in [(0.5, 2.0), (0.3, 1.7), (2.0, 10.0), (0.9, 0.5), (7.5, 3.25)] {
            let fb = Fixed((b * 4294967296.0) as i64);
            let fe = Fixed((e * 4294967296.0) as i64);
            let want = fb.to_f64().powf(fe.to_f64());
            let got = fb.pow(fe).unwrap().to_f64();
            assert!(
                (got - want).abs() <= want * 1e-8 + 1e-9,
                "{b}^{e} = {got}, want {want}"
            );
        }
        assert_eq!(Fixed::ZERO.pow(fx("2")), Some(Fixed::ZERO));
        assert_eq!(fx("-1").pow(fx("2")), None);
        assert_eq!(fx("3").pow(Fixed::ZERO), Some(Fixed::ONE));
        assert_eq!(fx("30").exp(), Fixed::MAX);
        assert_eq!(fx("-40").exp(), Fixed::ZERO);
    }

    /// Pinned raw values: any change to the algorithms that alters a single bit fails here,
    /// because replicas running different builds must agree exactly.
    #[test]
    fn transcendental_results_are_pinned() {
        let pinned = [
            fx("0.5").sigmoid().0,
            fx("-1.25").sigmoid().0,
            fx("3").sigmoid().0,
            fx("1").exp().0,
            fx("-2.5").exp().0,
            fx("10").ln().unwrap().0,
            fx("0.5").pow(fx("1.5")).unwrap().0,
            fx("0.75").pow(fx("2")).unwrap().0,
        ];
        assert_eq!(
            pinned,
            [
                2_673_442_471,
                956_489_813,
                4_091_274_722,
                11_674_931_555,
                352_552_385,
                9_889_527_671,
                1_518_500_250,
                2_415_919_104,
            ]
        );
    }

    #[test]
    fn mul_u128_floor_scales_money() {
        assert_eq!(fx("0.25").mul_u128_floor(1_000), 250);
        assert_eq!(
            fx("1.5").mul_u128_floor(u64::MAX as u128),
            (u64::MAX as u128) * 3 / 2
        );
        assert_eq!(fx("-1").mul_u128_floor(5), 0);
        assert_eq!(Fixed::MAX.mul_u128_floor(u128::MAX), u128::MAX);
    }

    proptest::proptest! {
        #[test]
        fn sigmoid_is_monotone_and_bounded(a in proptest::num::i64::ANY, b in proptest::num::i64::ANY) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (sl, sh) = (Fixed(lo).sigmoid(), Fixed(hi).sigmoid());
            proptest::prop_assert!(sl <= sh);
            proptest::prop_assert!(sl >= Fixed::ZERO && sh <= Fixed::ONE);
        }

        #[test]
        fn mul_div_round_trip_is_close(a in -1_000_000i64..1_000_000, b in 1i64..1_000_000) {
            let fa = Fixed::from_int(a as i32);
            let fb = Fixed::from_ratio(b, 1000).unwrap();
            let back = fa.checked_mul(fb).unwrap().checked_div(fb).unwrap();
            proptest::prop_assert!((back.0 - fa.0).abs() <= 1 << 12);
        }
    }
}
