//! BFT consensus for Agora: Tendermint rounds from malachite's core driver, wrapped in a
//! host ([`Replica`]) that does everything the driver leaves out.
//!
//! Shape: the replica is sans-IO. The caller passes network bytes, ticks and txs, each with its
//! own clock reading (`now`, ms), and gets back [`Effect`]s (broadcast, send, sync request,
//! committed block, evidence, next wakeup). Storage sits behind [`KvStore`] (sled in the node,
//! [`MemStore`] in the simulator), and the replicated state machine behind [`Application`].
//! The same code thus runs in the node and, deterministically, in `agora-sim`.
//!
//! What the replica adds around the driver, and why:
//! - every vote, proposal and certificate is decoded fallibly and signature-checked before the
//!   driver sees it (the driver trusts its inputs; a wrong-proposer proposal would panic it);
//! - a per-height input WAL plus a signing guard (`cons_signed`), flushed before any signed
//!   message is returned, so a restart replays to the same votes and lock and never signs a
//!   conflicting vote;
//! - stake-weighted proposer choice that passes over validators missing from the recent
//!   blocks' `last_commit`s, voting power mapped from `u128` stake, timeouts that adapt to the
//!   decision latency observed (bounded by the configured ones), a round lookahead bound,
//!   future-height buffering, rebroadcast for liveness;
//! - commit certificates that verify offline, block sync that verifies them, and equivocation
//!   evidence drained from the driver after every input;
//! - blocks that carry the previous height's certificate (`last_commit`) and their proposer's VRF
//!   proof over the previous seed ([`seed`]), so participation and randomness are replicated
//!   facts no single proposer chooses;
//! - a heartbeat: a proposer with no txs waits until `empty_block_interval_ms` after the last
//!   block before proposing an empty one, and the others count their propose timeout from the
//!   moment a block is due, so the heartbeat never adds to it;
//! - a bounded [`Mempool`] with one tx per `(signer, nonce)` slot, whose own submissions are
//!   stored, reloaded on open and broadcast again while they wait (ADR 008).

// Purity, enforced (docs/architecture.md, "Invariants"; the banned types, clocks and threads
// are in this crate's clippy.toml): no floating point, and no panicking unwrap outside tests
// (`expect` stating the invariant that makes it infallible is allowed).
#![deny(clippy::float_arithmetic)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod app;
pub mod block;
pub mod cert;
pub mod context;
pub mod forge;
pub mod mempool;
pub mod replica;
pub mod seed;
pub mod store;
pub mod validators;
pub mod wire;

pub use app::{Application, BlockInfo, KvApp};
pub use block::{Block, BlockHeader};
pub use cert::{CertError, Certificate, CommitCertificate};
pub use mempool::{Mempool, MempoolError};
pub use replica::{Config, ConsensusError, Effect, Genesis, Replica, Stats};
pub use store::{KvStore, MemStore, SledStore, StorageError};
pub use validators::{voting_powers, ValidatorSet, ValidatorSetError};
pub use wire::{Evidence, Message, ProposalMsg, WireError};
