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
mod links;
pub mod network;

pub use consensus::{
    run_consensus_seed, run_consensus_seeds, ConsensusSimOptions, SeedOutcome, Summary,
};
pub use network::{
    run_network_seed, run_network_seeds, run_network_seeds_with, NetworkSeedOutcome,
    NetworkSimOptions, NetworkSummary, Rig, RigFault,
};

/// Run `one` on every seed of `from..from + count` over `threads` threads (seeds are
/// independent; the result does not depend on the thread count), sorted by seed. A thread
/// that panics contributes one `broken(u64::MAX)` instead of its seeds.
pub(crate) fn run_seeds<T: Send>(
    from: u64,
    count: u64,
    threads: usize,
    one: &(dyn Fn(u64) -> T + Sync),
    broken: &(dyn Fn(u64) -> T + Sync),
    seed_of: impl Fn(&T) -> u64,
) -> Vec<T> {
    let seeds: Vec<u64> = (from..from.saturating_add(count)).collect();
    let threads = threads.max(1);
    let mut out: Vec<T> = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<u64> = seeds.iter().copied().skip(t).step_by(threads).collect();
                s.spawn(move || mine.into_iter().map(one).collect::<Vec<_>>())
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(_) => out.push(broken(u64::MAX)),
            }
        }
    });
    out.sort_by_key(seed_of);
    out
}
