//! Deterministic fixed-point arithmetic (placeholder: owned by the market work).

/// A signed fixed-point number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed(pub i64);
