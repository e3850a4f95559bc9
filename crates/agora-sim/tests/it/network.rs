//! Whole-node simulator runs: full nodes (replica, market, agents) with clients, under the
//! seed's faults. `AGORA_NETSIM_SEEDS` (how many) and `AGORA_NETSIM_SEED` (first) select any
//! range; `agora sim network` runs large ranges.

use agora_sim::{run_network_seed, run_network_seeds, NetworkSimOptions};

use super::env_u64;

fn run(nodes: usize, byzantine: usize, coprocessors: usize, default_seeds: u64, salt: u64) {
    let opts = NetworkSimOptions {
        nodes,
        byzantine,
        coprocessors,
        seeds: env_u64("AGORA_NETSIM_SEEDS").unwrap_or(default_seeds),
        from: env_u64("AGORA_NETSIM_SEED").unwrap_or(salt),
        threads: 2,
        ..NetworkSimOptions::default()
    };
    let s = run_network_seeds(&opts);
    eprintln!("{s}");
    assert_eq!(s.runs, opts.seeds);
    assert!(s.ok(), "{s}");
    assert!(s.heights >= 10 * s.runs, "{s}");
    assert!(s.jobs > 0 && s.settled > 0, "{s}");
}

#[test]
fn four_operators_one_byzantine_with_faulty_coprocessors_and_clients() {
    run(4, 1, 4, 24, 0);
}

#[test]
fn seven_operators_two_byzantine() {
    run(7, 2, 3, 6, 1_000_000);
}

/// A clean network of honest participants settles every job it is given, and the same seed
/// always gives the same trace.
#[test]
fn a_clean_network_settles_every_job_and_a_seed_replays_exactly() {
    let opts = NetworkSimOptions {
        faults: false,
        check_determinism: false,
        ..NetworkSimOptions::default()
    };
    let a = run_network_seed(&opts, 42);
    assert!(a.failure.is_none(), "{:?}", a.failure);
    assert!(a.jobs >= 5, "{a:?}");
    assert_eq!(a.settled, a.jobs, "{a:?}");
    assert_eq!(a.mix, "clean");
    let b = run_network_seed(&opts, 42);
    assert_eq!(a.trace, b.trace);
    let c = run_network_seed(&opts, 43);
    assert_ne!(a.trace, c.trace);
}

/// Seeds that found bugs, run as they were found (4 operators, 1 byzantine, 5 coprocessors):
/// 200921, honest operators sent evidence against a jailed double voter at every height and the
/// chain made blocks back to back; 201863, a coprocessor made inactive (ejected after colluders
/// outvoted it) stopped executing the slots it had already won, and they timed out; 400790
/// and 402123, an equivocating proposer gave a follower another block than the one a quorum
/// precommitted, and the follower waited for the next height's messages before it asked for
/// the decided block (it now asks a signer of the quorum at once).
#[test]
fn regression_seeds() {
    let opts = NetworkSimOptions::default();
    for seed in [200_921, 201_863, 400_790, 402_123] {
        let o = run_network_seed(&opts, seed);
        assert!(o.failure.is_none(), "seed {seed}: {:?}", o.failure);
        assert!(o.heights < 300, "seed {seed}: {} heights", o.heights);
    }
}
