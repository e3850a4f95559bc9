//! Plain domain types shared by every Agora crate: identifiers, hashes, money and time.
//!
//! Nothing here does I/O or reads a clock. Money is an integer number of base units with only
//! checked arithmetic, and the fixed-point type gives replicated state a deterministic
//! substitute for floating point, so every replica computes the same bits.

mod amount;
pub mod fixed;
mod ids;

pub use amount::{Amount, AmountError};
pub use fixed::{Fixed, FixedError};
pub use ids::{Address, Hash, Height, IdError, JobId, Round, Timestamp};
