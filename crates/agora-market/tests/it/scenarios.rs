//! Stories: each test drives a market through blocks and snapshots what happened.

use agora_market::*;
use agora_types::{Amount, Hash};
use expect_test::expect;

use crate::harness::*;

#[test]
fn dutch_price_rises_until_two_coprocessors_accept() {
    let mut h = Harness::new();
    h.stake_all(3, 5_000, 4);
    let job = h.submit(dutch(2));
    // cop0 takes 400 or more, cop1 700 or more, cop2 wants 950.
    let bids = vec![
        h.tx(
            "cop0",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Dutch {
                    min_price: Amount(400),
                },
            },
        ),
        h.tx(
            "cop1",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Dutch {
                    min_price: Amount(700),
                },
            },
        ),
        h.tx(
            "cop2",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Dutch {
                    min_price: Amount(950),
                },
            },
        ),
    ];
    h.block(bids);
    let mut prices = Vec::new();
    while h.market.job(&job).unwrap().state == JobState::Auction {
        prices.push(h.market.dutch_price(&job).unwrap().0);
        h.block(vec![]);
    }
    assert_eq!(prices, vec![190, 280, 370, 460, 550, 640]);
    let out = b"hello".to_vec();
    let txs = vec![
        result_tx(&mut h, "cop0", job, &out),
        result_tx(&mut h, "cop1", job, &out),
    ];
    h.block(txs);
    let view = h.market.job_view(&job).unwrap();
    assert_eq!(view.state, JobState::Settled);
    assert_eq!(view.winners, vec![h.addr("cop0"), h.addr("cop1")]);
    expect![[r#"
        h2 {"job_submitted":{"job":"job","client":"client","escrow":2000}}
        h2 {"auction_opened":{"job":"job","round":0,"slots":2}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"dutch"}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop1","kind":"dutch"}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop2","kind":"dutch"}}
        h6 {"awarded":{"job":"job","coprocessor":"cop0","price":400,"deadline":1700000011000}}
        h9 {"awarded":{"job":"job","coprocessor":"cop1","price":700,"deadline":1700000014000}}
        h10 {"result_committed":{"job":"job","coprocessor":"cop0","result_hash":"5b9f7e610f5f708d94165463a3f974208e7b25cf4ef59335eb2fb25e448862cb"}}
        h10 {"result_committed":{"job":"job","coprocessor":"cop1","result_hash":"5b9f7e610f5f708d94165463a3f974208e7b25cf4ef59335eb2fb25e448862cb"}}
        h10 {"reputation_updated":{"coprocessor":"cop0","outcome":true,"reputation_bps":7529}}
        h10 {"paid":{"job":"job","coprocessor":"cop0","amount":380,"fee":20}}
        h10 {"reputation_updated":{"coprocessor":"cop1","outcome":true,"reputation_bps":7529}}
        h10 {"paid":{"job":"job","coprocessor":"cop1","amount":665,"fee":35}}
        h10 {"settled":{"job":"job","result_hash":"5b9f7e610f5f708d94165463a3f974208e7b25cf4ef59335eb2fb25e448862cb","refund":900,"outcome":"success","fuel_used":42}}
    "#]].assert_eq(&h.story(&job));
}

#[test]
fn sealed_auction_with_a_non_revealer() {
    let mut h = Harness::new();
    h.stake_all(3, 5_000, 4);
    let job = h.submit(spec(
        1,
        AuctionSpec::Sealed {
            commit_ms: 3_000,
            reveal_ms: 3_000,
        },
    ));
    let salt = |i: u8| Hash([i; 32]);
    let commits = vec![
        h.tx(
            "cop0",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Commit {
                    commitment: sealed_commitment(&job, &h.addr("cop0"), Amount(500), &salt(0)),
                },
            },
        ),
        h.tx(
            "cop1",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Commit {
                    commitment: sealed_commitment(&job, &h.addr("cop1"), Amount(300), &salt(1)),
                },
            },
        ),
        h.tx(
            "cop2",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Commit {
                    commitment: sealed_commitment(&job, &h.addr("cop2"), Amount(200), &salt(2)),
                },
            },
        ),
    ];
    h.block(commits);
    h.block(vec![]);
    h.block(vec![]); // commit phase over
                     // A reveal with the wrong salt is rejected; cop2 never reveals.
    let bad = h.tx(
        "cop0",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Reveal {
                price: Amount(500),
                salt: salt(9),
            },
        },
    );
    h.block(vec![bad]);
    let reveals = vec![
        h.tx(
            "cop0",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Reveal {
                    price: Amount(500),
                    salt: salt(0),
                },
            },
        ),
        h.tx(
            "cop1",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Reveal {
                    price: Amount(300),
                    salt: salt(1),
                },
            },
        ),
    ];
    h.block(reveals);
    while h.market.job(&job).unwrap().state == JobState::Auction {
        h.block(vec![]);
    }
    let view = h.market.job_view(&job).unwrap();
    assert_eq!(view.winners, vec![h.addr("cop1")]);
    assert_eq!(
        view.price,
        Some(Amount(500)),
        "second price: the next best revealed bid"
    );
    let out = b"42".to_vec();
    let tx = result_tx(&mut h, "cop1", job, &out);
    h.block(vec![tx]);
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Settled);
    // The client got the forfeited bond of cop2 back as compensation.
    assert_eq!(
        h.market.balance(&h.addr("cop2")),
        Amount(100_000 - 5_000 - 5)
    );
    expect![[r#"
        h2 {"job_submitted":{"job":"job","client":"client","escrow":1010}}
        h2 {"auction_opened":{"job":"job","round":0,"slots":1}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"sealed_commit"}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop1","kind":"sealed_commit"}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop2","kind":"sealed_commit"}}
        h6 rejected bid: invalid: reveal does not match commitment
        h7 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"sealed_reveal"}}
        h7 {"bid_accepted":{"job":"job","coprocessor":"cop1","kind":"sealed_reveal"}}
        h8 {"bond_forfeited":{"job":"job","coprocessor":"cop2","amount":5}}
        h8 {"awarded":{"job":"job","coprocessor":"cop1","price":500,"deadline":1700000013000}}
        h9 {"result_committed":{"job":"job","coprocessor":"cop1","result_hash":"944d3764879e19b7c443e1098fc2f36320f04b5eb208bd554d686b1e51ea3ffd"}}
        h9 {"reputation_updated":{"coprocessor":"cop1","outcome":true,"reputation_bps":7529}}
        h9 {"paid":{"job":"job","coprocessor":"cop1","amount":475,"fee":25}}
        h9 {"settled":{"job":"job","result_hash":"944d3764879e19b7c443e1098fc2f36320f04b5eb208bd554d686b1e51ea3ffd","refund":510,"outcome":"success","fuel_used":42}}
    "#]].assert_eq(&h.story(&job));
}

#[test]
fn a_lying_replica_is_slashed_while_the_honest_majority_is_paid() {
    let mut h = Harness::new();
    h.stake_all(3, 5_000, 4);
    let job = h.submit(dutch(3));
    let bids: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            h.tx(
                &format!("cop{i}"),
                TxKind::Bid {
                    job_id: job,
                    bid: BidKind::Dutch {
                        min_price: Amount(100),
                    },
                },
            )
        })
        .collect();
    h.block(bids);
    h.block(vec![]);
    let client_before = h.market.balance(&h.addr("client"));
    let txs = vec![
        result_tx(&mut h, "cop0", job, b"right"),
        result_tx(&mut h, "cop1", job, b"wrong"),
        result_tx(&mut h, "cop2", job, b"right"),
    ];
    h.block(txs);
    let view = h.market.job_view(&job).unwrap();
    assert_eq!(view.state, JobState::Settled);
    assert_eq!(
        view.result_hash,
        Some(result_hash(Outcome::Success, 0, 42, b"right"))
    );
    let liar = h.market.coprocessor(&h.addr("cop1")).unwrap();
    assert_eq!(
        liar.stake,
        Amount(5_000 - 500),
        "half of the 1000 collateral is slashed"
    );
    assert!(
        liar.reputation_bps()
            < h.market
                .coprocessor(&h.addr("cop0"))
                .unwrap()
                .reputation_bps()
    );
    assert!(
        h.market.balance(&h.addr("client")) > client_before,
        "refund plus compensation"
    );
    expect![[r#"
        h2 {"job_submitted":{"job":"job","client":"client","escrow":3000}}
        h2 {"auction_opened":{"job":"job","round":0,"slots":3}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"dutch"}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop1","kind":"dutch"}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop2","kind":"dutch"}}
        h3 {"awarded":{"job":"job","coprocessor":"cop0","price":100,"deadline":1700000008000}}
        h3 {"awarded":{"job":"job","coprocessor":"cop2","price":100,"deadline":1700000008000}}
        h3 {"awarded":{"job":"job","coprocessor":"cop1","price":100,"deadline":1700000008000}}
        h5 {"result_committed":{"job":"job","coprocessor":"cop0","result_hash":"9077c023c2d0d5d13501f57d0e4d61939af96c9ebb03840f196850495c094934"}}
        h5 {"result_committed":{"job":"job","coprocessor":"cop1","result_hash":"229a1de252a4f77a18c69f5d14d52cd91d7ea4ea8b8a63426ed464ece16e9828"}}
        h5 {"result_committed":{"job":"job","coprocessor":"cop2","result_hash":"9077c023c2d0d5d13501f57d0e4d61939af96c9ebb03840f196850495c094934"}}
        h5 {"reputation_updated":{"coprocessor":"cop0","outcome":true,"reputation_bps":7529}}
        h5 {"paid":{"job":"job","coprocessor":"cop0","amount":95,"fee":5}}
        h5 {"reputation_updated":{"coprocessor":"cop2","outcome":true,"reputation_bps":7529}}
        h5 {"paid":{"job":"job","coprocessor":"cop2","amount":95,"fee":5}}
        h5 {"slashed":{"coprocessor":"cop1","amount":500,"to_client":250,"burned":250,"reason":"wrong result"}}
        h5 {"reputation_updated":{"coprocessor":"cop1","outcome":false,"reputation_bps":6489}}
        h5 {"settled":{"job":"job","result_hash":"9077c023c2d0d5d13501f57d0e4d61939af96c9ebb03840f196850495c094934","refund":2800,"outcome":"success","fuel_used":42}}
    "#]].assert_eq(&h.story(&job));
}

#[test]
fn a_timeout_is_followed_by_an_automatic_re_auction() {
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 4);
    let job = h.submit(dutch(1));
    let bid = h.tx(
        "cop0",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(100),
            },
        },
    );
    h.block(vec![bid]);
    // cop0 never delivers; the deadline is 5 s of market time.
    for _ in 0..7 {
        h.block(vec![]);
    }
    let j = h.market.job(&job).unwrap();
    assert_eq!(j.state, JobState::Auction);
    assert_eq!(j.auction.round, 1);
    let bid = h.tx(
        "cop1",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(100),
            },
        },
    );
    h.block(vec![bid]);
    h.block(vec![]);
    let tx = result_tx(&mut h, "cop1", job, b"done");
    h.block(vec![tx]);
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Settled);
    assert_eq!(
        h.market.coprocessor(&h.addr("cop0")).unwrap().stake,
        Amount(4_900)
    );
    expect![[r#"
        h2 {"job_submitted":{"job":"job","client":"client","escrow":1010}}
        h2 {"auction_opened":{"job":"job","round":0,"slots":1}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"dutch"}}
        h3 {"awarded":{"job":"job","coprocessor":"cop0","price":100,"deadline":1700000008000}}
        h9 {"slashed":{"coprocessor":"cop0","amount":100,"to_client":50,"burned":50,"reason":"timeout"}}
        h9 {"reputation_updated":{"coprocessor":"cop0","outcome":false,"reputation_bps":6489}}
        h9 {"timed_out":{"job":"job","coprocessor":"cop0","slashed":100}}
        h9 {"auction_opened":{"job":"job","round":1,"slots":1}}
        h11 {"bid_accepted":{"job":"job","coprocessor":"cop1","kind":"dutch"}}
        h11 {"awarded":{"job":"job","coprocessor":"cop1","price":190,"deadline":1700000016000}}
        h13 {"result_committed":{"job":"job","coprocessor":"cop1","result_hash":"d444d7ac3de4940fd823a55eb9b6e0b8bbde002c954a4ddec9b8aaf2f9eb5b07"}}
        h13 {"reputation_updated":{"coprocessor":"cop1","outcome":true,"reputation_bps":7529}}
        h13 {"paid":{"job":"job","coprocessor":"cop1","amount":181,"fee":9}}
        h13 {"settled":{"job":"job","result_hash":"d444d7ac3de4940fd823a55eb9b6e0b8bbde002c954a4ddec9b8aaf2f9eb5b07","refund":820,"outcome":"success","fuel_used":42}}
    "#]].assert_eq(&h.story(&job));
}

#[test]
fn during_a_stall_nobody_is_slashed_and_prices_do_not_rise() {
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 4);
    let job = h.submit(dutch(1));
    let other = h.submit(dutch(1));
    let bid = h.tx(
        "cop0",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(100),
            },
        },
    );
    h.block(vec![bid]);
    let price_before = h.market.dutch_price(&other).unwrap();
    // The network stalls for a minute, then limps with low participation.
    h.commit_power_bps = 5_000;
    h.block_after(60_000, vec![]);
    h.block_after(20_000, vec![]);
    assert!(h.market.health().stalled);
    assert_eq!(
        h.market.dutch_price(&other).unwrap(),
        price_before,
        "clock frozen"
    );
    h.commit_power_bps = 10_000;
    for _ in 0..3 {
        h.block(vec![]);
    }
    assert!(
        !h.market.health().stalled,
        "recovered after a run of healthy blocks"
    );
    // The winner delivers after 80 s of wall time but within its extended deadline.
    let tx = result_tx(&mut h, "cop0", job, b"ok");
    h.block(vec![tx]);
    assert_eq!(h.market.job(&job).unwrap().state, JobState::Settled);
    assert!(!h.log.iter().any(|l| l.contains("slashed")), "{:#?}", h.log);
    let story = h.story(&job).replace(&other.to_hex(), "other");
    expect![[r#"
        h2 {"job_submitted":{"job":"job","client":"client","escrow":1010}}
        h2 {"auction_opened":{"job":"job","round":0,"slots":1}}
        h3 {"job_submitted":{"job":"other","client":"client","escrow":1010}}
        h3 {"auction_opened":{"job":"other","round":0,"slots":1}}
        h4 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"dutch"}}
        h4 {"awarded":{"job":"job","coprocessor":"cop0","price":190,"deadline":1700000009000}}
        h5 {"stall_detected":{"gap_ms":60000,"commit_power_bps":5000}}
        h9 {"stall_recovered":{"frozen_ms":80000}}
        h10 {"result_committed":{"job":"job","coprocessor":"cop0","result_hash":"414f5e2455efd566ca0b249b7df472fbc3b852f411f027fcb0ed1f24baef0a33"}}
        h10 {"reputation_updated":{"coprocessor":"cop0","outcome":true,"reputation_bps":7529}}
        h10 {"paid":{"job":"job","coprocessor":"cop0","amount":181,"fee":9}}
        h10 {"settled":{"job":"job","result_hash":"414f5e2455efd566ca0b249b7df472fbc3b852f411f027fcb0ed1f24baef0a33","refund":820,"outcome":"success","fuel_used":42}}
    "#]].assert_eq(&story);
}

#[test]
fn an_optimistic_result_that_fails_its_audit_is_slashed() {
    let mut h = Harness::with_params(Params {
        audit_bps: 10_000,
        ..params()
    });
    h.stake_all(1, 5_000, 4);
    let job = h.submit(dutch(1));
    let bid = h.tx(
        "cop0",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(100),
            },
        },
    );
    h.block(vec![bid]);
    h.block(vec![]);
    let tx = result_tx(&mut h, "cop0", job, b"lie");
    h.block(vec![tx]);
    let j = h.market.job(&job).unwrap();
    assert_eq!(j.state, JobState::Verifying);
    let auditor = j.audit.as_ref().unwrap().auditor;
    let aname = h
        .actors
        .values()
        .find(|a| a.tx.address() == auditor)
        .unwrap()
        .name
        .clone();
    let truth = result_hash(Outcome::Success, 0, 42, b"truth");
    let tx = h.tx(
        &aname,
        TxKind::Attestation(Attestation {
            kind: AttestationKind::Audit,
            job_id: job,
            result_hash: truth,
            subject: Default::default(),
            alive: true,
        }),
    );
    h.block(vec![tx]);
    let tb = h
        .market
        .job(&job)
        .unwrap()
        .audit
        .as_ref()
        .unwrap()
        .tiebreaker
        .unwrap();
    let tname = h
        .actors
        .values()
        .find(|a| a.tx.address() == tb)
        .unwrap()
        .name
        .clone();
    let tx = h.tx(
        &tname,
        TxKind::Attestation(Attestation {
            kind: AttestationKind::Audit,
            job_id: job,
            result_hash: truth,
            subject: Default::default(),
            alive: true,
        }),
    );
    h.block(vec![tx]);
    let j = h.market.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        h.market.coprocessor(&h.addr("cop0")).unwrap().stake,
        Amount(4_500)
    );
    let story = h
        .story(&job)
        .replace(&aname, "AUDITOR")
        .replace(&tname, "TIEBREAKER");
    expect![[r#"
        h2 {"job_submitted":{"job":"job","client":"client","escrow":1010}}
        h2 {"auction_opened":{"job":"job","round":0,"slots":1}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"dutch"}}
        h3 {"awarded":{"job":"job","coprocessor":"cop0","price":100,"deadline":1700000008000}}
        h5 {"result_committed":{"job":"job","coprocessor":"cop0","result_hash":"d8b40f7102f88fb292ee5d6625b06049490fe80d37b8b6b052ccadebb41646ca"}}
        h5 {"audit_selected":{"job":"job","auditor":"AUDITOR"}}
        h6 {"audit_mismatch":{"job":"job","auditor":"AUDITOR","tiebreaker":"TIEBREAKER"}}
        h7 {"slashed":{"coprocessor":"cop0","amount":500,"to_client":250,"burned":250,"reason":"wrong result"}}
        h7 {"reputation_updated":{"coprocessor":"cop0","outcome":false,"reputation_bps":6489}}
        h7 {"failed":{"job":"job","reason":"the only replica was proven wrong","refund":1000}}
    "#]].assert_eq(&story);
}

#[test]
fn two_replicas_that_disagree_get_a_third_to_break_the_tie() {
    let mut h = Harness::new();
    h.stake_all(3, 5_000, 4);
    let job = h.submit(dutch(2));
    let bids: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            h.tx(
                &format!("cop{i}"),
                TxKind::Bid {
                    job_id: job,
                    bid: BidKind::Dutch {
                        min_price: Amount(100),
                    },
                },
            )
        })
        .collect();
    h.block(bids);
    h.block(vec![]);
    let txs = vec![
        result_tx(&mut h, "cop0", job, b"a"),
        result_tx(&mut h, "cop1", job, b"b"),
    ];
    h.block(txs);
    let j = h.market.job(&job).unwrap();
    assert_eq!((j.state, j.extra_replicas), (JobState::Auction, 1));
    let bid = h.tx(
        "cop2",
        TxKind::Bid {
            job_id: job,
            bid: BidKind::Dutch {
                min_price: Amount(100),
            },
        },
    );
    h.block(vec![bid]);
    let tx = result_tx(&mut h, "cop2", job, b"a");
    h.block(vec![tx]);
    let v = h.market.job_view(&job).unwrap();
    assert_eq!(v.state, JobState::Settled);
    assert_eq!(
        v.result_hash,
        Some(result_hash(Outcome::Success, 0, 42, b"a"))
    );
    assert_eq!(
        h.market.coprocessor(&h.addr("cop1")).unwrap().stake,
        Amount(4_500)
    );
    expect![[r#"
        h2 {"job_submitted":{"job":"job","client":"client","escrow":2000}}
        h2 {"auction_opened":{"job":"job","round":0,"slots":2}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop0","kind":"dutch"}}
        h3 {"bid_accepted":{"job":"job","coprocessor":"cop1","kind":"dutch"}}
        h3 {"awarded":{"job":"job","coprocessor":"cop0","price":100,"deadline":1700000008000}}
        h3 {"awarded":{"job":"job","coprocessor":"cop1","price":100,"deadline":1700000008000}}
        h5 {"result_committed":{"job":"job","coprocessor":"cop0","result_hash":"0d1b0cedddcd0ff9f75226018d355b5b285ca93663f9c32cece7ae858ef11293"}}
        h5 {"result_committed":{"job":"job","coprocessor":"cop1","result_hash":"2134f3aaa19d8844675c471f4934d733846c36285f6b47d4f68f7d86e6a9152f"}}
        h5 {"extra_replica":{"job":"job","replicas":3,"escrow_added":1000}}
        h5 {"auction_opened":{"job":"job","round":1,"slots":1}}
        h6 {"bid_accepted":{"job":"job","coprocessor":"cop2","kind":"dutch"}}
        h6 {"awarded":{"job":"job","coprocessor":"cop2","price":100,"deadline":1700000011000}}
        h7 {"result_committed":{"job":"job","coprocessor":"cop2","result_hash":"0d1b0cedddcd0ff9f75226018d355b5b285ca93663f9c32cece7ae858ef11293"}}
        h7 {"reputation_updated":{"coprocessor":"cop0","outcome":true,"reputation_bps":7529}}
        h7 {"paid":{"job":"job","coprocessor":"cop0","amount":95,"fee":5}}
        h7 {"reputation_updated":{"coprocessor":"cop2","outcome":true,"reputation_bps":7529}}
        h7 {"paid":{"job":"job","coprocessor":"cop2","amount":95,"fee":5}}
        h7 {"slashed":{"coprocessor":"cop1","amount":500,"to_client":250,"burned":250,"reason":"wrong result"}}
        h7 {"reputation_updated":{"coprocessor":"cop1","outcome":false,"reputation_bps":6489}}
        h7 {"settled":{"job":"job","result_hash":"0d1b0cedddcd0ff9f75226018d355b5b285ca93663f9c32cece7ae858ef11293","refund":2800,"outcome":"success","fuel_used":42}}
    "#]].assert_eq(&h.story(&job));
}

#[test]
fn slow_blocks_stretch_sealed_phases_so_no_bond_is_forfeited() {
    // Blocks 5.5 s apart: slower than both 2 s phases, faster than the stall gap (the network
    // with a paused operator). Bidders act on the block that shows them a phase, so their
    // commits and reveals land one block later; neither may be late for it.
    let gap = 5_500;
    let mut h = Harness::new();
    h.stake_all(2, 5_000, 4);
    let job = h.submit(spec(
        1,
        AuctionSpec::Sealed {
            commit_ms: 2_000,
            reveal_ms: 2_000,
        },
    ));
    let salt = |i: u8| Hash([i; 32]);
    let mut commits = Vec::new();
    for (i, price) in [(0u8, 300u128), (1, 400)] {
        let who = format!("cop{i}");
        let commitment = sealed_commitment(&job, &h.addr(&who), Amount(price), &salt(i));
        commits.push(h.tx(
            &who,
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Commit { commitment },
            },
        ));
    }
    h.block_after(gap, commits);
    let mut waited = 0;
    while h
        .market
        .job(&job)
        .unwrap()
        .auction
        .reveal_opened_at
        .is_none()
    {
        h.block_after(gap, vec![]);
        waited += 1;
        assert!(waited < 10, "the reveal phase never opened");
    }
    let mut reveals = Vec::new();
    for (i, price) in [(0u8, 300u128), (1, 400)] {
        reveals.push(h.tx(
            &format!("cop{i}"),
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Reveal {
                    price: Amount(price),
                    salt: salt(i),
                },
            },
        ));
    }
    h.block_after(gap, reveals);
    while h.market.job(&job).unwrap().state == JobState::Auction {
        h.block_after(gap, vec![]);
    }
    let story = h.story(&job);
    assert!(!story.contains("rejected"), "{story}");
    assert!(!story.contains("bond_forfeited"), "{story}");
    assert_eq!(
        h.market.job_view(&job).unwrap().winners,
        vec![h.addr("cop0")]
    );
    // Both bonds came back: each coprocessor holds all it did not stake.
    for who in ["cop0", "cop1"] {
        assert_eq!(
            h.market.balance(&h.addr(who)),
            Amount(100_000 - 5_000),
            "{who}"
        );
    }
    // The slow gaps were frozen beyond one clock step each, without entering the stall mode.
    assert!(!h.market.health().stalled);
    assert!(h.market.health().frozen_ms > 0);
}
