//! Whole nodes in one process, driven by the test ([`Rig`]): the market and agent behaviours
//! that real-process tests used to be the only check of, in simulated seconds.

use agora_market::{AuctionSpec, DeclineReason, JobState, MarketEvent, SlotStatus};
use agora_sim::{Rig, RigFault};
use agora_types::{Amount, JobId};

fn state(rig: &Rig, id: &JobId) -> Option<JobState> {
    rig.with_market(|m| m.job(id).map(|j| j.state))
}

/// Wait until all `n` coprocessors have staked and are active.
fn staked(rig: &mut Rig, n: usize) {
    assert!(
        rig.run_until(10_000, |m| m
            .coprocessors()
            .filter(|(_, c)| c.active)
            .count()
            == n),
        "{n} coprocessors did not become active"
    );
}

fn settled_or_closed(rig: &mut Rig, id: JobId, limit_ms: u64) -> JobState {
    rig.run_until(limit_ms, |m| m.job(&id).is_some_and(|j| j.state.is_final()));
    rig.check().unwrap();
    state(rig, &id).expect("the job is on chain")
}

/// Coprocessors stake, then bid on, run and commit a job; the quorum settles it, and every
/// coprocessor that committed the (one correct) result is paid.
#[test]
fn a_job_goes_from_submission_to_settlement_on_three_replicas() {
    let mut rig = Rig::new(4, 3, 1);
    staked(&mut rig, 3);
    let spec = rig.job_spec(3, 5_000);
    let id = rig.submit_job(0, spec).unwrap();
    assert_eq!(settled_or_closed(&mut rig, id, 30_000), JobState::Settled);
    rig.with_market(|m| {
        let job = m.job(&id).unwrap();
        assert_eq!(job.assignments.len(), 3);
        assert!(job
            .assignments
            .values()
            .all(|a| a.status == SlotStatus::Paid));
        let results: Vec<_> = job
            .assignments
            .values()
            .map(|a| a.result.as_ref().unwrap().result_hash)
            .collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(job.result_hash, Some(results[0]));
        m.check_invariants().unwrap();
    });
}

/// A coprocessor that commits a wrong result is outvoted and slashed; the job settles on the
/// majority's result and the honest replicas are paid.
#[test]
fn a_wrong_result_is_outvoted_and_slashed() {
    let mut rig = Rig::new(4, 3, 2);
    let liar = 4;
    rig.set_fault(liar, RigFault::WrongResults);
    staked(&mut rig, 3);
    let spec = rig.job_spec(3, 5_000);
    let id = rig.submit_job(1, spec).unwrap();
    assert_eq!(settled_or_closed(&mut rig, id, 30_000), JobState::Settled);
    let liar = rig.address(liar);
    rig.with_market(|m| {
        let job = m.job(&id).unwrap();
        assert_eq!(job.assignments[&liar].status, SlotStatus::Slashed);
        let honest: Vec<_> = job
            .assignments
            .iter()
            .filter(|(a, _)| **a != liar)
            .collect();
        assert_eq!(honest.len(), 2);
        assert!(honest.iter().all(|(_, s)| s.status == SlotStatus::Paid));
        assert!(m.coprocessor(&liar).unwrap().slashed.0 > 0);
    });
}

/// A winner that never commits misses its deadline: it is slashed for the timeout and its slot
/// is auctioned again, without the client doing anything, and the job still settles.
#[test]
fn a_winner_that_never_delivers_is_replaced_by_a_reauction() {
    let mut rig = Rig::new(4, 3, 3);
    let mute = 5;
    rig.set_fault(mute, RigFault::NeverDelivers);
    staked(&mut rig, 3);
    // Two replicas of three coprocessors: the mute one wins a slot unless it is left out.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let spec = rig.job_spec(2, 5_000);
        ids.push(rig.submit_job(0, spec).unwrap());
        rig.run_for(300);
    }
    for id in &ids {
        assert_eq!(settled_or_closed(&mut rig, *id, 60_000), JobState::Settled);
    }
    let mute = rig.address(mute);
    rig.with_market(|m| {
        let timed_out = ids
            .iter()
            .filter(|id| {
                m.job(id).unwrap().assignments.get(&mute).map(|a| a.status)
                    == Some(SlotStatus::TimedOut)
            })
            .count();
        assert!(timed_out > 0, "the mute coprocessor won no slot");
        assert!(ids.iter().any(|id| m.job(id).unwrap().reauctions > 0));
        // Where it timed out, the slot went to another coprocessor, which was paid: every
        // replica of the job is paid, none of them the mute one.
        for id in &ids {
            let job = m.job(id).unwrap();
            if job.assignments.get(&mute).map(|a| a.status) == Some(SlotStatus::TimedOut) {
                let paid: Vec<_> = job
                    .assignments
                    .iter()
                    .filter(|(_, a)| a.status == SlotStatus::Paid)
                    .map(|(c, _)| *c)
                    .collect();
                assert_eq!(paid.len(), 2, "every replica paid");
                assert!(!paid.contains(&mute));
            }
        }
    });
}

/// A job whose price is below every coprocessor's reserve gets no bid: each coprocessor says
/// why on chain, and the client is refunded when the auction ends.
#[test]
fn an_untakeable_job_is_refunded_and_explained() {
    let mut rig = Rig::new(4, 2, 4);
    staked(&mut rig, 2);
    let client = rig.client();
    let before = rig.with_market(|m| m.balance(&client));
    let spec = rig.job_spec(1, 5);
    let id = rig.submit_job(2, spec).unwrap();
    assert_eq!(settled_or_closed(&mut rig, id, 30_000), JobState::Refunded);
    rig.with_market(|m| {
        let job = m.job(&id).unwrap();
        assert_eq!(job.declines.len(), 2, "{:?}", job.declines);
        assert!(job
            .declines
            .iter()
            .all(|d| d.reason == DeclineReason::PriceBelowReserve));
        // Only the transaction itself was paid for, never the escrow.
        assert_eq!(m.balance(&client), before);
    });
}

/// An executing coprocessor that crashes comes back from its store, finds its slot again and
/// commits; the job settles with nothing lost.
#[test]
fn a_coprocessor_crashed_mid_job_restarts_from_its_store_and_commits() {
    let mut rig = Rig::new(4, 1, 5);
    rig.set_exec_ms(3_000, 3_000);
    let cop = 4;
    staked(&mut rig, 1);
    let mut spec = rig.job_spec(1, 5_000);
    spec.deadline_ms = 20_000;
    let id = rig.submit_job(0, spec).unwrap();
    assert!(rig.run_until(10_000, |m| m
        .job(&id)
        .is_some_and(|j| j.state == JobState::Executing)));
    rig.crash(cop);
    rig.run_for(2_000);
    rig.restart(cop);
    assert_eq!(settled_or_closed(&mut rig, id, 40_000), JobState::Settled);
    let cop = rig.address(cop);
    rig.with_market(|m| {
        let job = m.job(&id).unwrap();
        assert_eq!(job.assignments[&cop].status, SlotStatus::Paid);
        assert_eq!(m.coprocessor(&cop).unwrap().slashed.0, 0);
    });
}

/// One operator of four cut off from the others: the chain goes on with the other three, and
/// jobs still settle; reconnected, it catches up.
#[test]
fn an_isolated_operator_stops_neither_the_chain_nor_jobs_and_catches_up() {
    let mut rig = Rig::new(4, 2, 6);
    staked(&mut rig, 2);
    rig.isolate(3);
    let h = rig.height();
    let spec = rig.job_spec(2, 5_000);
    let id = rig.submit_job(0, spec).unwrap();
    assert_eq!(settled_or_closed(&mut rig, id, 40_000), JobState::Settled);
    assert!(rig.height() > h + 5);
    rig.reconnect(3);
    rig.run_for(10_000);
    rig.check().unwrap();
}

fn has_event(rig: &Rig, id: &JobId, pick: impl Fn(&MarketEvent) -> bool) -> bool {
    rig.with_market(|m| m.job(id).unwrap().events.iter().any(|e| pick(&e.event)))
}

/// One operator of four paused (cut off, its own clock running on, then back with a stale
/// view): sealed auctions with 2 s commit and reveal phases settle, and no bidder forfeits its
/// bond to the pause (the resilience rule of design §9: a fault that is not the bidder's own
/// costs it nothing).
#[test]
fn a_paused_operator_costs_no_bidder_its_bond() {
    let mut rig = Rig::new(4, 3, 7);
    staked(&mut rig, 3);
    rig.isolate(3);
    let ids: Vec<JobId> = (0..6)
        .map(|i| {
            let mut spec = rig.job_spec(2, 5_000);
            spec.auction = AuctionSpec::Sealed {
                commit_ms: 2_000,
                reveal_ms: 2_000,
            };
            rig.submit_job(i % 3, spec).unwrap()
        })
        .collect();
    for id in &ids {
        assert_eq!(settled_or_closed(&mut rig, *id, 60_000), JobState::Settled);
        assert!(
            !has_event(&rig, id, |e| matches!(e, MarketEvent::BondForfeited { .. })),
            "a bond was forfeited to the pause"
        );
    }
    rig.reconnect(3);
    rig.run_for(10_000);
    rig.check().unwrap();
    rig.with_market(|m| m.check_invariants().unwrap());
}

/// One operator of four dead for good: once the activity window shows it absent, it is never
/// drawn as auditor, and audited jobs settle on a live operator's attestation.
#[test]
fn a_dead_operator_is_never_drawn_as_auditor_and_costs_no_job() {
    let mut rig = Rig::new(4, 2, 8);
    staked(&mut rig, 2);
    let dead = rig.address(3);
    rig.crash(3);
    let h = rig.height();
    assert!(rig.run_until(60_000, |m| m.height().0 >= h + 20));
    let ids: Vec<JobId> = (0..4)
        .map(|i| {
            let mut spec = rig.job_spec(1, 5_000);
            spec.audit_bps = 10_000;
            spec.auction = AuctionSpec::Dutch {
                start_price: agora_types::Amount(100),
                duration_ms: 1_000,
            };
            rig.submit_job(i % 3, spec).unwrap()
        })
        .collect();
    for id in &ids {
        assert_eq!(settled_or_closed(&mut rig, *id, 60_000), JobState::Settled);
        assert!(has_event(&rig, id, |e| matches!(
            e,
            MarketEvent::AuditSelected { .. }
        )));
        let auditor = rig.with_market(|m| m.job(id).unwrap().audit.clone().unwrap().auditor);
        assert_ne!(auditor, dead, "an absent operator was drawn as auditor");
    }
}

/// Many transactions from one key, sent through different nodes in a burst: each node orders
/// them by nonce, and every one reaches a block.
#[test]
fn a_burst_of_transactions_from_one_key_through_every_node_all_land() {
    let mut rig = Rig::new(4, 1, 9);
    staked(&mut rig, 1);
    let to = rig.address(4);
    let before = rig.with_market(|m| m.balance(&to));
    for i in 0..24 {
        rig.transfer(i % 5, to, 10).unwrap();
    }
    assert!(
        rig.run_until(30_000, |m| m.balance(&to)
            == before.checked_add(Amount(240)).unwrap()),
        "not every transfer landed"
    );
    rig.check().unwrap();
}

/// Half the operators cut off while a job runs: the chain stalls for four times the job's
/// deadline. The market sees the stall when blocks resume (design §9): its clocks froze, the
/// deadline moved with them, and the winner, whose result waited in the mempool, is paid and
/// not slashed for the network's fault.
#[test]
fn a_stalled_chain_costs_no_winner_its_slot() {
    let mut rig = Rig::new(4, 1, 10);
    rig.set_exec_ms(1_000, 1_000);
    staked(&mut rig, 1);
    let spec = rig.job_spec(1, 5_000);
    let id = rig.submit_job(0, spec).unwrap();
    assert!(rig.run_until(10_000, |m| m
        .job(&id)
        .is_some_and(|j| j.state == JobState::Executing)));
    rig.isolate(2);
    rig.isolate(3);
    let h = rig.height();
    rig.run_for(20_000);
    assert!(rig.height() <= h + 1, "blocks without a quorum");
    rig.reconnect(2);
    rig.reconnect(3);
    assert_eq!(settled_or_closed(&mut rig, id, 40_000), JobState::Settled);
    let cop = rig.address(4);
    rig.with_market(|m| {
        let job = m.job(&id).unwrap();
        assert_eq!(job.assignments[&cop].status, SlotStatus::Paid);
        assert!(
            !job.events
                .iter()
                .any(|e| matches!(e.event, MarketEvent::TimedOut { .. })),
            "a timeout caused by the network"
        );
        assert_eq!(m.coprocessor(&cop).unwrap().slashed.0, 0);
        assert!(m.health().stalls >= 1, "the stall went unseen");
        m.check_invariants().unwrap();
    });
}
