//! Deterministic simulation of Agora's replicated core.
//!
//! [`consensus`] drives N nodes of the real `agora-consensus` replica over a simulated network
//! with one seeded RNG (latency, jitter, drops, duplicates, partitions, crash-restart from the
//! store, clock drift, byzantine nodes) and checks safety and liveness invariants on every run.
//! [`network`] does the same with whole nodes: the replica, the market application and the
//! agents' decisions of `agora-node`, with clients submitting jobs and transfers and a simulated
//! executor, under crashes, partitions, message faults, clock skew and byzantine operators,
//! coprocessors and clients. Its [`Rig`] is the same network driven by a test.
//! Everything is a function of the seed, so a failure replays exactly from its seed.

pub mod consensus;
mod forge;
pub mod network;

pub use consensus::{
    run_consensus_seed, run_consensus_seeds, ConsensusSimOptions, SeedOutcome, Summary,
};
pub use network::{
    run_network_seed, run_network_seeds, run_network_seeds_with, NetworkSeedOutcome,
    NetworkSimOptions, NetworkSummary, Rig, RigFault,
};
