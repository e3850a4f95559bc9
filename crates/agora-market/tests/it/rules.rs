//! The market rules of ADR 013: where a Dutch acceptance fills, the load handicap, the thin
//! sealed round, and strikes that escalate slashing and eject repeat liars.

use agora_market::*;
use agora_types::{Amount, Fixed, Hash, JobId};

use crate::harness::*;

fn accept(h: &mut Harness, who: &str, job: JobId, min: u128) -> Vec<u8> {
    h.tx(
        who,
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(min),
            },
        },
    )
}

fn price_of(h: &Harness, job: &JobId, who: &str) -> Option<u128> {
    h.market
        .job(job)
        .unwrap()
        .assignments
        .get(&h.addr(who))
        .map(|a| a.price.0)
}

#[test]
fn a_dutch_acceptance_is_filled_where_the_clock_crossed_it() {
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 4);
    // Clock: 100 at opening, +90 per 1 s block. cop0 asks 300, crossed between 280 and 370.
    let job = h.submit(dutch(1));
    let bid = accept(&mut h, "cop0", job, 300);
    h.block(vec![bid]);
    while h.market.job(&job).unwrap().state == JobState::Auction {
        h.block(vec![]);
    }
    assert_eq!(
        price_of(&h, &job, "cop0"),
        Some(300),
        "paid its price, not the block's 370"
    );
    // An acceptance below the clock of the last step is paid that clock: it was standing when
    // the clock passed there.
    let job = h.submit(dutch(1));
    h.block(vec![]);
    h.block(vec![]);
    let bid = accept(&mut h, "cop1", job, 100);
    h.block(vec![bid]);
    assert_eq!(
        price_of(&h, &job, "cop1"),
        Some(280),
        "the clock of the previous step"
    );
}

#[test]
fn a_busy_coprocessor_waits_for_its_load_handicap_so_an_idle_one_wins() {
    let mut h = Harness::with_params(Params {
        load_penalty_weight: Fixed::ONE,
        ..params()
    });
    h.stake_all(2, 50_000, 4);
    // Keep cop0 busy with two slots (utilisation 1/2 while the network runs at 2/8).
    for _ in 0..2 {
        let j = h.submit(dutch(1));
        let bid = accept(&mut h, "cop0", j, 100);
        h.block(vec![bid]);
        while h.market.job(&j).unwrap().state == JobState::Auction {
            h.block(vec![]);
        }
    }
    assert_eq!(h.market.coprocessor(&h.addr("cop0")).unwrap().load, 2);
    let job = h.submit(dutch(1));
    // cop0 asks 100, cop1 asks 250: without the handicap cop0 would fill at once.
    let bids = vec![
        accept(&mut h, "cop0", job, 100),
        accept(&mut h, "cop1", job, 250),
    ];
    h.block(bids);
    let (half, quarter) = (
        Fixed::from_ratio(1, 2).unwrap(),
        Fixed::from_ratio(1, 4).unwrap(),
    );
    let handicap = load_handicap(Amount(1_000), half, quarter, h.market.params());
    assert_eq!(handicap, Amount(250), "w · (1/2 − 1/4) · V");
    while h.market.job(&job).unwrap().state == JobState::Auction {
        h.block(vec![]);
    }
    assert_eq!(
        price_of(&h, &job, "cop0"),
        None,
        "the busy coprocessor lost"
    );
    assert_eq!(
        price_of(&h, &job, "cop1"),
        Some(250),
        "the idle one won at its own price"
    );
}

#[test]
fn a_thin_sealed_round_clears_at_its_highest_winning_bid_not_the_max_price() {
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 4);
    let job = h.submit(spec(
        2,
        AuctionSpec::Sealed {
            commit_ms: 3_000,
            reveal_ms: 3_000,
        },
    ));
    let salt = |i: u8| Hash([i; 32]);
    let mut commits = Vec::new();
    for (i, (who, price)) in [("cop0", 300u128), ("cop1", 450)].into_iter().enumerate() {
        let c = sealed_commitment(&job, &h.addr(who), Amount(price), &salt(i as u8));
        commits.push(h.tx(
            who,
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Commit { commitment: c },
            },
        ));
    }
    h.block(commits);
    h.block(vec![]);
    h.block(vec![]);
    let mut reveals = Vec::new();
    for (i, (who, price)) in [("cop0", 300u128), ("cop1", 450)].into_iter().enumerate() {
        reveals.push(h.tx(
            who,
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Reveal {
                    price: Amount(price),
                    salt: salt(i as u8),
                },
            },
        ));
    }
    h.block(reveals);
    while h.market.job(&job).unwrap().state == JobState::Auction {
        h.block(vec![]);
    }
    // Two reveals for two slots: no losing reveal sets a second price.
    assert_eq!(price_of(&h, &job, "cop0"), Some(450));
    assert_eq!(price_of(&h, &job, "cop1"), Some(450));
}

/// A three-replica job where `honest` agree and `liar` commits something else.
fn job_with_a_liar(h: &mut Harness, honest: [&str; 2], liar: &str) -> JobId {
    let job = h.submit(dutch(3));
    let bids = vec![
        accept(h, honest[0], job, 100),
        accept(h, honest[1], job, 100),
        accept(h, liar, job, 100),
    ];
    h.block(bids);
    h.block(vec![]);
    let txs = vec![
        result_tx(h, honest[0], job, b"truth"),
        result_tx(h, honest[1], job, b"truth"),
        result_tx(h, liar, job, b"lie"),
    ];
    h.block(txs);
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Settled);
    job
}

#[test]
fn repeated_proven_faults_escalate_the_slash_and_eject_the_liar() {
    let mut h = Harness::new();
    h.stake_all(3, 5_000, 4);
    let p = h.market.params().clone();
    assert_eq!((p.max_strikes, p.slash_bps), (2, 5_000));
    let liar = h.addr("cop2");
    let mut slashed = Vec::new();
    for n in 1..=2u32 {
        let before = h.market.coprocessor(&liar).unwrap().stake.0;
        job_with_a_liar(&mut h, ["cop0", "cop1"], "cop2");
        let c = h.market.coprocessor(&liar).unwrap();
        slashed.push(before - c.stake.0);
        assert_eq!(c.strikes, n);
    }
    // Collateral 1000: 50 %, then 100 % (2 × 50 %).
    assert_eq!(slashed, vec![500, 1_000]);
    let c = h.market.coprocessor(&liar).unwrap();
    assert!(c.ejected && !c.active, "two strikes eject");
    assert!(
        c.stake.0 >= p.min_stake.0,
        "ejected with stake to spare: not a stake rule"
    );
    let ejected = h
        .market
        .recent_events(256)
        .into_iter()
        .filter(|e| {
            matches!(e.event, MarketEvent::CoprocessorEjected { coprocessor, strikes: 2 }
                if coprocessor == liar)
        })
        .count();
    assert_eq!(ejected, 1);
    // Staking more does not bring it back, and its bids are refused.
    let stake = h.tx(
        "cop2",
        TxKind::Stake {
            amount: Amount(10_000),
            capacity: 4,
        },
    );
    h.block(vec![stake]);
    assert!(!h.market.coprocessor(&liar).unwrap().active);
    let job = h.submit(dutch(1));
    let bid = accept(&mut h, "cop2", job, 100);
    let r = h.block(vec![bid]);
    assert!(
        !r.receipts[0].applied(),
        "an ejected coprocessor cannot bid"
    );
    // The honest majority kept a clean record.
    for who in ["cop0", "cop1"] {
        let c = h.market.coprocessor(&h.addr(who)).unwrap();
        assert_eq!((c.strikes, c.ejected, c.active), (0, false, true));
    }
    h.market.check_invariants().unwrap();
}

#[test]
fn accepted_results_forgive_a_strike_and_without_strikes_nothing_escalates() {
    let mut h = Harness::with_params(Params {
        strike_forgive: 2,
        ..params()
    });
    h.stake_all(4, 50_000, 4);
    let cop2 = h.addr("cop2");
    job_with_a_liar(&mut h, ["cop0", "cop1"], "cop2");
    assert_eq!(h.market.coprocessor(&cop2).unwrap().strikes, 1);
    job_with_a_liar(&mut h, ["cop1", "cop2"], "cop3");
    assert_eq!(
        h.market.coprocessor(&cop2).unwrap().strikes,
        1,
        "one of two"
    );
    job_with_a_liar(&mut h, ["cop1", "cop2"], "cop3");
    let c = h.market.coprocessor(&cop2).unwrap();
    assert_eq!(
        (c.strikes, c.clean_streak),
        (0, 0),
        "two accepted results forgave it"
    );

    // max_strikes = 0: every proven fault costs the plain factor and nobody is ejected.
    let mut h = Harness::with_params(Params {
        max_strikes: 0,
        ..params()
    });
    h.stake_all(3, 50_000, 4);
    let liar = h.addr("cop2");
    for _ in 0..4 {
        let before = h.market.coprocessor(&liar).unwrap().stake.0;
        job_with_a_liar(&mut h, ["cop0", "cop1"], "cop2");
        assert_eq!(before - h.market.coprocessor(&liar).unwrap().stake.0, 500);
    }
    assert!(h.market.coprocessor(&liar).unwrap().active);
}

#[test]
fn utilisation_is_remembered_so_one_block_jobs_still_spread() {
    let p = params();
    assert_eq!(p.load_memory_ms, 10_000);
    let mut h = Harness::new();
    h.stake_all(2, 50_000, 4);
    // cop0 runs a job for one block: its load returns to 0 but its recent utilisation does not.
    let j = h.submit(dutch(1));
    let bid = accept(&mut h, "cop0", j, 100);
    h.block(vec![bid]);
    assert_eq!(price_of(&h, &j, "cop0"), Some(100));
    h.block(vec![]);
    let tx = result_tx(&mut h, "cop0", j, b"out");
    h.block(vec![tx]);
    let now = h.market.market_time();
    let c = h.market.coprocessor(&h.addr("cop0")).unwrap();
    assert_eq!(c.load, 0);
    let recent = c.recent_utilisation(now, p.load_memory_ms);
    assert!(
        recent > Fixed::ZERO && recent < Fixed::from_ratio(1, 4).unwrap(),
        "{recent:?}"
    );
    assert_eq!(c.utilisation(now, p.load_memory_ms), recent);
    // It decays: a minute later it is all but gone.
    assert!(
        c.recent_utilisation(now + 60_000, p.load_memory_ms) < Fixed::from_ratio(1, 100).unwrap()
    );
    // So at a like price the next job goes to cop1, which has not worked lately.
    let j = h.submit(dutch(1));
    let bids = vec![
        accept(&mut h, "cop0", j, 100),
        accept(&mut h, "cop1", j, 100),
    ];
    h.block(bids);
    assert_eq!(price_of(&h, &j, "cop1"), Some(100));
    assert_eq!(price_of(&h, &j, "cop0"), None);
}
