//! The Agora market: the replicated state machine that BFT consensus orders (design §3–§9).
//!
//! Accounts and transfers, coprocessor staking, the job lifecycle with escrow, reverse Dutch and
//! sealed second-price auctions scored by expected benefit with a load penalty, GAS reputation
//! in fixed point, verification by replica majority or optimistic audits, slashing and rewards,
//! and the resilience rules that freeze market clocks while the chain itself is unhealthy.
//!
//! It is shaped as a pure function of its inputs: [`Market::apply_block`] takes the block's
//! context (height, agreed timestamp, commit power, randomness seed) and its encoded signed
//! transactions and returns receipts, events and the new app hash. It never reads a clock,
//! touches the network or the disk, or iterates a hash map; money is checked `u128`, curves are
//! [`agora_types::Fixed`]. So every replica — and the simulator — computes the same bits, and a
//! bad transaction is a rejection in its receipt, never a panic or a half-applied change.
//!
//! The app hash commits to a state hash chained over each block's changed entries in key order
//! (incremental, never a rehash of the whole state) and to the Merkle root of the block's events
//! in their canonical encoding ([`canon`]), so a certified header proves any event (ADR 016). [`Market::to_snapshot_bytes`] gives the node a deterministic
//! snapshot to persist, and blocks after it are replayed with `apply_block`.

// Purity, enforced (docs/architecture.md, "Invariants"; the banned types, clocks and threads
// are in this crate's clippy.toml): no floating point, and no panicking unwrap outside tests
// (`expect` stating the invariant that makes it infallible is allowed).
#![deny(clippy::float_arithmetic)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod canon;
mod market;
mod model;
mod ordering;
mod params;
mod tx;
mod views;

pub use market::{
    app_hash, BlockError, InvariantError, Market, SnapshotError, VoteDecoder, VoteKey,
};
pub use model::{
    gas_update, load_excess, load_handicap, reserve_price, score, tie_break, Account, Assignment,
    AuctionRound, Audit, BlockContext, BlockResult, Coprocessor, DeclineRecord, EventRecord,
    Health, Job, JobState, MarketEvent, Operator, Rejection, ResultRecord, SlotStatus, TxReceipt,
    TxStatus,
};
pub use ordering::{order_by_nonce, tx_slot};
pub use params::{amount_text, Genesis, GenesisAccount, GenesisError, GenesisOperator, Params};
pub use tx::{
    decode_envelope, encode_envelope, result_hash, sealed_commitment, Attestation, AttestationKind,
    AuctionSpec, BidKind, DeclineNotice, DeclineReason, DecodeError, Evidence, JobSpec, Outcome,
    Transaction, TxBuilder, TxKind,
};
pub use views::{
    AccountView, BidView, CoprocessorView, JobSummary, JobView, MarketStatus, OperatorView,
    SlotView,
};
