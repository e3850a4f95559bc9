//! Valid inputs for every target: real encoded envelopes, transactions, job specs, votes,
//! proposals, blocks, certificates, evidence, blob requests and answers, small wasm programs and
//! API documents. `examples/write_seeds.rs` writes them to `fuzz/corpus/<target>/`; the corpus
//! test checks that each one still reaches the accepting path of its decoder.

use agora_blobs::transfer::{encode_request, Want};
use agora_client::api::{AccountNonces, ErrorBody, Status, TxAccepted};
use agora_client::{TestnetFile, TestnetNode};
use agora_consensus::block::Block;
use agora_consensus::context::{
    BlockId, BlockValue, ConsHeight, ConsProposal, ConsVote, NilOrVal, Round, SignedProposal,
    SignedVote, ValAddr, VoteType,
};
use agora_consensus::wire::{self, Message, ProposalMsg};
use agora_consensus::{Certificate, Evidence};
use agora_crypto::{Domain, Keypair};
use agora_market::{
    encode_envelope, AttestationKind, AuctionSpec, BidKind, DeclineReason, JobSpec, Outcome,
    Transaction, TxBuilder, TxKind,
};
use agora_proto::v1 as pb;
use agora_types::{Address, Amount, Hash};
use prost::Message as _;

use crate::blobs::{SEED_BLOB, SEED_JOB};
use crate::consensus::CHAIN;
use crate::market::{fixture_genesis, market_fixture};

/// One seed: its target, a file name, the bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// A spec the fixture market accepts.
pub fn valid_spec(sealed: bool) -> JobSpec {
    JobSpec {
        module_hash: Hash([1; 32]),
        input_hash: Hash([2; 32]),
        module_size: 1000,
        input_size: 10,
        args: vec!["--n".into(), "7".into()],
        fuel_limit: 1_000_000,
        memory_limit: 1 << 20,
        replicas: 2,
        audit_bps: 100,
        auction: if sealed {
            AuctionSpec::Sealed {
                commit_ms: 2_000,
                reveal_ms: 2_000,
            }
        } else {
            AuctionSpec::Dutch {
                start_price: Amount(10),
                duration_ms: 5_000,
            }
        },
        max_price: Amount(100),
        deadline_ms: 60_000,
        min_reputation_bps: 0,
    }
}

fn tx_kinds() -> Vec<(&'static str, TxKind)> {
    let job = Hash([3; 32]);
    let who = Keypair::for_test(7).address();
    vec![
        (
            "transfer",
            TxKind::Transfer {
                to: who,
                amount: Amount(5),
            },
        ),
        (
            "stake",
            TxKind::Stake {
                amount: Amount(1_000),
                capacity: 2,
            },
        ),
        ("unstake", TxKind::Unstake { amount: Amount(1) }),
        ("submit_dutch", TxKind::SubmitJob(valid_spec(false))),
        ("submit_sealed", TxKind::SubmitJob(valid_spec(true))),
        ("cancel", TxKind::CancelJob { job_id: job }),
        (
            "bid_dutch",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Dutch {
                    min_price: Amount(9),
                },
            },
        ),
        (
            "bid_reveal",
            TxKind::Bid {
                job_id: job,
                bid: BidKind::Reveal {
                    price: Amount(9),
                    salt: Hash([4; 32]),
                },
            },
        ),
        (
            "result",
            TxKind::Result {
                job_id: job,
                result_hash: Hash([5; 32]),
                fuel_used: 77,
                outcome: Outcome::Success,
                output_size: 3,
            },
        ),
        (
            "attestation",
            TxKind::Attestation(agora_market::Attestation {
                kind: AttestationKind::Liveness,
                job_id: Hash::ZERO,
                result_hash: Hash::ZERO,
                subject: who,
                alive: false,
            }),
        ),
        (
            "decline",
            TxKind::Decline(agora_market::DeclineNotice {
                job_id: job,
                coprocessor: Keypair::for_test(100).address(),
                reason: DeclineReason::AtCapacity,
                detail: "busy".into(),
            }),
        ),
    ]
}

fn vote(key: &Keypair, t: VoteType, value: Option<Hash>, chain: &Hash) -> SignedVote {
    let v = ConsVote {
        vote_type: t,
        height: ConsHeight(5),
        round: Round::new(1),
        value: value.map_or(NilOrVal::Nil, |h| NilOrVal::Val(BlockId(h))),
        validator: ValAddr(key.address()),
    };
    let sig = key.sign(Domain::Vote, chain, &v.signing_bytes());
    SignedVote::new(v, sig)
}

fn cert(block: Hash, signers: u64) -> Certificate {
    let c = Certificate::new(5, 1, block, vec![]);
    let sigs = (0..signers)
        .map(|i| {
            let k = Keypair::for_test(i);
            let bytes = c.vote_for(VoteType::Precommit, k.address()).signing_bytes();
            (k.address(), k.sign(Domain::Vote, &CHAIN, &bytes))
        })
        .collect();
    Certificate::new(5, 1, block, sigs)
}

fn block(txs: Vec<Vec<u8>>, with_commit: bool) -> Block {
    Block::new(
        6,
        1_700_000_001_000,
        Hash([1; 32]),
        Hash([2; 32]),
        Keypair::for_test(1).address(),
        with_commit.then(|| cert(Hash([1; 32]), 3)),
        vec![9; 80],
        txs,
    )
}

fn proposal(key: &Keypair, b: Block, pol_round: Option<u32>) -> ProposalMsg {
    let p = ConsProposal {
        height: ConsHeight(6),
        round: Round::new(pol_round.map_or(0, |r| r + 1)),
        value: BlockValue::new(b),
        pol_round: pol_round.map_or(Round::Nil, Round::new),
        proposer: ValAddr(key.address()),
    };
    let sig = key.sign(Domain::Proposal, &CHAIN, &p.signing_bytes());
    ProposalMsg {
        signed: SignedProposal::new(p, sig),
        polka: pol_round.map(|_| cert(Hash([8; 32]), 3)),
    }
}

/// Frame answers as `blob_response` cuts them: `u16` LE length, then the bytes.
fn frames(answers: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in answers {
        out.extend_from_slice(&(a.len() as u16).to_le_bytes());
        out.extend_from_slice(a);
    }
    out
}

fn blob_answer(index: usize, chunk: usize, hash: Hash) -> Vec<u8> {
    let start = index * chunk;
    let end = (start + chunk).min(SEED_BLOB.len());
    pb::BlobResponse {
        found: true,
        total: SEED_BLOB.len() as u64,
        data: SEED_BLOB[start..end].to_vec().into(),
        hash: hash.as_bytes().to_vec().into(),
    }
    .encode_to_vec()
}

const WAT_HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

const WAT_LOOP: &str = r#"(module
  (func (export "_start") (local i32)
    (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br $l))))"#;

const WAT_TRAP: &str = r#"(module (func (export "_start") unreachable))"#;

const WAT_GROW: &str = r#"(module
  (memory 1)
  (func (export "_start") (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))"#;

const WAT_EXIT: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $r (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 32))
    (drop (call $r (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.load8_u (i32.const 64)))))"#;

const WAT_NO_START: &str = r#"(module (func (export "main")))"#;

/// The seed programs by name.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("hello", WAT_HELLO),
    ("loop", WAT_LOOP),
    ("trap", WAT_TRAP),
    ("grow", WAT_GROW),
    ("exit", WAT_EXIT),
    ("no_start", WAT_NO_START),
];

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let f = market_fixture();
    let client = TxBuilder::new(Keypair::for_test(100), f.chain_id);

    // Transactions and their envelopes.
    for (i, (name, kind)) in tx_kinds().into_iter().enumerate() {
        let tx = Transaction {
            nonce: i as u64 % 3,
            kind: kind.clone(),
        };
        out.push(("transaction", format!("{name}.bin"), tx.encode()));
        out.push(("envelope", format!("{name}.bin"), client.bytes(0, kind)));
    }
    let notice = client.signed_decline(Hash([3; 32]), DeclineReason::PriceBelowReserve, "low");
    out.push((
        "envelope",
        "decline_notice.bin".into(),
        encode_envelope(&notice),
    ));
    for sealed in [false, true] {
        let name = if sealed { "sealed.bin" } else { "dutch.bin" };
        let spec = pb::JobSpec::from(&valid_spec(sealed)).encode_to_vec();
        out.push(("job_spec", name.into(), spec));
    }

    // Consensus messages.
    let k1 = Keypair::for_test(1);
    let b = block(vec![client.bytes(0, tx_kinds()[0].1.clone())], true);
    let msgs = [
        (
            "prevote_nil",
            Message::Vote(vote(&k1, VoteType::Prevote, None, &CHAIN)),
        ),
        (
            "precommit",
            Message::Vote(vote(&k1, VoteType::Precommit, Some(b.hash()), &CHAIN)),
        ),
        (
            "proposal",
            Message::Proposal(Box::new(proposal(&k1, b.clone(), None))),
        ),
        (
            "reproposal",
            Message::Proposal(Box::new(proposal(&k1, block(vec![], false), Some(0)))),
        ),
        (
            "sync_request",
            Message::SyncRequest {
                from_height: 3,
                max_blocks: 8,
            },
        ),
        (
            "sync_response",
            Message::SyncResponse(vec![(b.clone(), cert(b.hash(), 3))]),
        ),
        ("tx", Message::Tx(client.bytes(1, tx_kinds()[1].1.clone()))),
    ];
    for (name, m) in msgs {
        out.push(("consensus_message", format!("{name}.bin"), wire::encode(&m)));
    }
    let tagged = |tag: u8, bytes: Vec<u8>| [vec![tag], bytes].concat();
    out.push((
        "consensus_block",
        "block.bin".into(),
        tagged(0, wire::encode_block(&b)),
    ));
    out.push((
        "consensus_block",
        "cert.bin".into(),
        tagged(1, wire::encode_cert(&cert(Hash([1; 32]), 3))),
    ));
    let k0 = Keypair::for_test(0);
    let double_vote = Evidence::DoubleVote(Box::new((
        vote(&k0, VoteType::Prevote, Some(Hash([1; 32])), &CHAIN),
        vote(&k0, VoteType::Prevote, Some(Hash([2; 32])), &CHAIN),
    )));
    out.push((
        "consensus_block",
        "double_vote.bin".into(),
        tagged(2, double_vote.encode()),
    ));
    let double_proposal = Evidence::DoubleProposal(Box::new((
        proposal(&k0, block(vec![], false), None),
        proposal(&k0, block(vec![b"x".to_vec()], false), None),
    )));
    out.push((
        "consensus_block",
        "double_proposal.bin".into(),
        tagged(3, double_proposal.encode()),
    ));

    // Blob transfer.
    let blob = Hash::of(SEED_BLOB);
    out.push((
        "blob_request",
        "blob.bin".into(),
        encode_request(&Want::Blob(blob), 0, 1 << 18),
    ));
    out.push((
        "blob_request",
        "output.bin".into(),
        encode_request(&Want::Output(SEED_JOB), 2, 64),
    ));
    let chunks = SEED_BLOB.len().div_ceil(64);
    let honest: Vec<Vec<u8>> = (0..chunks).map(|i| blob_answer(i, 64, blob)).collect();
    out.push((
        "blob_response",
        "blob.bin".into(),
        tagged(0, frames(&honest)),
    ));
    out.push((
        "blob_response",
        "output.bin".into(),
        tagged(1, frames(&honest)),
    ));
    let lying: Vec<Vec<u8>> = (0..chunks)
        .map(|i| blob_answer(i, 64, Hash([6; 32])))
        .collect();
    out.push((
        "blob_response",
        "other_hash.bin".into(),
        tagged(1, frames(&lying)),
    ));
    out.push((
        "blob_response",
        "not_found.bin".into(),
        tagged(0, frames(&[pb::BlobResponse::default().encode_to_vec()])),
    ));

    // Programs, as text and as binaries.
    #[cfg(feature = "exec")]
    for (name, wat) in PROGRAMS {
        out.push((
            "wasm_module",
            format!("{name}.wat"),
            wat.as_bytes().to_vec(),
        ));
        let bin = agora_exec::assemble(wat.as_bytes()).expect("seed programs assemble");
        out.push(("wasm_module", format!("{name}.wasm"), bin));
    }

    // Documents.
    let status = Status {
        version: "0.1.0".into(),
        peer_id: "12D3KooW".into(),
        address: Address([1; 32]).to_hex(),
        roles: vec!["operator".into()],
        height: 12,
        app_hash: Hash([2; 32]).to_hex(),
        last_block_time: Some(1_700_000_000_000),
        peers: 3,
        syncing: false,
        chain_id: Some(f.chain_id.to_hex()),
        last_block_age_ms: Some(400),
        halted: false,
        halt_after_ms: 3_000,
    };
    out.push(("api_json", "status.json".into(), doc(0, &status)));
    let error = ErrorBody {
        error: "no such API route: /v1/nope".into(),
    };
    out.push(("api_json", "error.json".into(), doc(1, &error)));
    let nonces = AccountNonces {
        nonce: 4,
        pending_nonce: Some(6),
    };
    out.push(("api_json", "nonces.json".into(), doc(2, &nonces)));
    let accepted = TxAccepted {
        tx_hash: Hash([3; 32]).to_hex(),
        signer: Address([4; 32]).to_hex(),
    };
    out.push(("api_json", "tx_accepted.json".into(), doc(3, &accepted)));
    let testnet = TestnetFile {
        nodes: vec![TestnetNode {
            name: "op0".into(),
            role: "operator".into(),
            peer_id: "12D3KooW".into(),
            address: Address([1; 32]).to_hex(),
            listen: "/ip4/127.0.0.1/tcp/4001".into(),
            api: "http://127.0.0.1:8080".into(),
            pid: Some(42),
            ..Default::default()
        }],
        client_key: "client.key".into(),
        ..Default::default()
    };
    out.push(("api_json", "testnet.json".into(), doc(4, &testnet)));
    out.push((
        "api_json",
        "hash.txt".into(),
        tagged(5, format!(" {} ", f.chain_id.to_hex()).into_bytes()),
    ));
    out.push((
        "api_json",
        "genesis.json".into(),
        doc(7, &fixture_genesis()),
    ));

    // Canonical encodings, behind the type selector of `canonical`.
    {
        use agora_market::canon::Canon;
        use agora_market::{Coprocessor, EventRecord, MarketEvent, Outcome};
        use agora_types::{Fixed, Height, Timestamp};
        let rec = |event| EventRecord {
            height: Height(41),
            time: Timestamp(1_700_000_000_000),
            event,
        };
        let (job, c) = (Hash([7; 32]), Keypair::for_test(3).address());
        let events = [
            (
                "settled",
                MarketEvent::Settled {
                    job,
                    result_hash: Hash([9; 32]),
                    refund: Amount(900),
                    outcome: Outcome::Success,
                    fuel_used: 66_669,
                },
            ),
            (
                "paid",
                MarketEvent::Paid {
                    job,
                    coprocessor: c,
                    amount: Amount(105),
                    fee: Amount(5),
                },
            ),
            (
                "slashed",
                MarketEvent::Slashed {
                    coprocessor: c,
                    amount: Amount(50),
                    to_client: Amount(25),
                    burned: Amount(25),
                    reason: "wrong result".into(),
                },
            ),
            (
                "audit_mismatch",
                MarketEvent::AuditMismatch {
                    job,
                    auditor: c,
                    tiebreaker: Some(c),
                },
            ),
        ];
        for (name, e) in events {
            out.push((
                "canonical",
                format!("{name}.bin"),
                tagged(0, rec(e).to_canonical()),
            ));
        }
        let cop = Coprocessor {
            stake: Amount(100_000),
            locked: Amount(2_000),
            unbonding: Amount::ZERO,
            capacity: 4,
            load: 1,
            logit: Fixed(1 << 31),
            active: true,
            completed: 12,
            failed: 1,
            earned: Amount(1_260),
            slashed: Amount(50),
            strikes: 1,
            clean_streak: 3,
            ejected: false,
            recent_load: Fixed(1 << 30),
            recent_at: 1_700_000_000_500,
        };
        out.push((
            "canonical",
            "coprocessor.bin".into(),
            tagged(2, cop.to_canonical()),
        ));
        let bonds: std::collections::BTreeMap<Address, Amount> = [
            (c, Amount(10)),
            (Keypair::for_test(4).address(), Amount(20)),
        ]
        .into();
        out.push((
            "canonical",
            "bonds.bin".into(),
            tagged(3, bonds.to_canonical()),
        ));
    }
    out
}

/// A JSON document for `api_json`, behind its selector byte.
fn doc<T: serde::Serialize>(tag: u8, v: &T) -> Vec<u8> {
    let text = serde_json::to_vec(v).expect("seed documents serialise");
    [vec![tag], text].concat()
}
