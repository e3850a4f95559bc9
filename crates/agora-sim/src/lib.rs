//! Deterministic simulation of Agora's replicated core.
//!
//! [`consensus`] drives N nodes of the real `agora-consensus` replica over a simulated network
//! with one seeded RNG (latency, jitter, drops, duplicates, partitions, crash-restart from the
//! store, clock drift, byzantine nodes) and checks safety and liveness invariants on every run.
//! Everything is a function of the seed, so a failure replays exactly from its seed.

pub mod consensus;

pub use consensus::{
    run_consensus_seed, run_consensus_seeds, ConsensusSimOptions, SeedOutcome, Summary,
};
