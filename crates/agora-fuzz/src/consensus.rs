//! Consensus messages as peers send them: `wire::decode` for the gossip and stream traffic,
//! blocks and certificates (sync and the store), equivocation evidence (evidence transactions).

use std::sync::OnceLock;

use agora_consensus::block::Block;
use agora_consensus::wire::{
    self, MAX_BLOCK_TXS, MAX_CERT_SIGNATURES, MAX_ROUND, MAX_SEED_PROOF_BYTES, MAX_SYNC_BLOCKS,
    MAX_TX_BYTES,
};
use agora_consensus::{Certificate, Evidence, Message, ProposalMsg, ValidatorSet};
use agora_crypto::Keypair;
use agora_types::Hash;

/// The chain the consensus targets check signatures for.
pub const CHAIN: Hash = Hash([7; 32]);

/// Validators 0..4 of `Keypair::for_test`, 10 stake each: what the certificate seeds are signed
/// by.
pub fn consensus_validators() -> &'static ValidatorSet {
    static VS: OnceLock<ValidatorSet> = OnceLock::new();
    VS.get_or_init(|| {
        let stakes: Vec<_> = (0..4)
            .map(|i| (Keypair::for_test(i).address(), 10u128))
            .collect();
        ValidatorSet::from_stakes(&stakes).expect("fixture validator set")
    })
}

fn check_block(b: &Block) {
    assert!(b.txs.len() <= MAX_BLOCK_TXS, "block with too many txs");
    assert!(
        b.txs.iter().all(|t| t.len() <= MAX_TX_BYTES),
        "oversized tx"
    );
    assert!(
        b.header.seed_proof.len() <= MAX_SEED_PROOF_BYTES,
        "seed proof"
    );
    assert!(b.txs_match(), "decoded block's txs do not match its header");
    assert!(
        b.last_commit_matches(),
        "decoded block's last commit does not match"
    );
    if let Some(c) = &b.last_commit {
        check_cert(c);
    }
}

fn check_cert(c: &Certificate) {
    assert!(
        c.signatures.len() <= MAX_CERT_SIGNATURES,
        "certificate too large"
    );
    assert!(c.round <= MAX_ROUND, "certificate round");
}

fn check_proposal(p: &ProposalMsg) {
    let m = &p.signed.message;
    check_block(&m.value.block);
    assert_eq!(m.value.id.0, m.value.block.hash(), "proposal value id");
    assert!(m.round.as_i64() <= i64::from(MAX_ROUND));
    let pol = m.pol_round.as_i64();
    assert!(
        (-1..=i64::from(MAX_ROUND)).contains(&pol),
        "pol_round {pol}"
    );
    if let Some(c) = &p.polka {
        check_cert(c);
    }
}

/// `wire::decode`, the entry point of every consensus byte a peer sends.
///
/// Asserts: a decoded message is within the wire limits (block size, tx size, seed proof,
/// rounds, certificate and sync-response sizes) and its block matches its header; it re-encodes
/// to bytes that decode to the same message, and that encoding is a fixpoint.
pub fn consensus_message(data: &[u8]) {
    let Ok(m) = wire::decode(data) else {
        return;
    };
    match &m {
        Message::Proposal(p) => check_proposal(p),
        Message::Vote(v) => {
            assert!(v.message.round.as_i64() <= i64::from(MAX_ROUND))
        }
        Message::SyncRequest { .. } => {}
        Message::SyncResponse(blocks) => {
            assert!(blocks.len() <= MAX_SYNC_BLOCKS, "sync response too large");
            for (b, c) in blocks {
                check_block(b);
                check_cert(c);
            }
        }
        Message::Tx(t) => assert!(t.len() <= MAX_TX_BYTES, "oversized tx"),
    }
    let bytes = wire::encode(&m);
    let again = wire::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(again, m);
    assert_eq!(
        wire::encode(&again),
        bytes,
        "message encoding is not a fixpoint"
    );
}

/// Blocks, certificates and evidence; the first byte picks the decoder, the rest is its input.
///
/// Asserts: every decoded value round-trips as in [`consensus_message`]; a certificate that
/// verifies against the fixture validator set has sorted, distinct member signers whose power
/// is a quorum and equals the reported power; evidence that verifies names two distinct,
/// conflicting messages of one offender at one height and round.
pub fn consensus_block(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let Ok(b) = wire::decode_block(rest) else {
                return;
            };
            check_block(&b);
            let bytes = wire::encode_block(&b);
            let again = wire::decode_block(&bytes).expect("an encoded block decodes");
            assert_eq!(again, b);
            assert_eq!(again.hash(), b.hash());
            assert_eq!(wire::encode_block(&again), bytes);
        }
        1 => {
            let Ok(c) = wire::decode_cert(rest) else {
                return;
            };
            check_cert(&c);
            let bytes = wire::encode_cert(&c);
            let again = wire::decode_cert(&bytes).expect("an encoded certificate decodes");
            assert_eq!(again, c);
            assert_eq!(wire::encode_cert(&again), bytes);
            let vs = consensus_validators();
            for r in [c.verify(vs, &CHAIN), c.verify_polka(vs, &CHAIN)] {
                let Ok(power) = r else { continue };
                let mut sum = 0u64;
                for (i, (a, _)) in c.signatures.iter().enumerate() {
                    assert!(i == 0 || c.signatures[i - 1].0 < *a, "unsorted signers");
                    sum += vs.power_of(a).expect("signer is a validator");
                }
                assert_eq!(sum, power, "reported power");
                assert!(vs.is_quorum(power), "verified certificate without a quorum");
            }
        }
        2 => {
            let Ok(e) = Evidence::decode_vote(rest) else {
                return;
            };
            check_evidence(&e);
            let Evidence::DoubleVote(pair) = &e else {
                panic!("decode_vote gave proposal evidence")
            };
            for v in [&pair.0, &pair.1] {
                assert!(v.message.round.as_i64() <= i64::from(MAX_ROUND));
            }
        }
        _ => {
            let Ok(e) = Evidence::decode_proposal(rest) else {
                return;
            };
            check_evidence(&e);
            let Evidence::DoubleProposal(pair) = &e else {
                panic!("decode_proposal gave vote evidence")
            };
            check_proposal(&pair.0);
            check_proposal(&pair.1);
        }
    }
}

fn check_evidence(e: &Evidence) {
    let bytes = e.encode();
    let again = match e {
        Evidence::DoubleVote(_) => Evidence::decode_vote(&bytes),
        Evidence::DoubleProposal(_) => Evidence::decode_proposal(&bytes),
    }
    .expect("encoded evidence decodes");
    assert_eq!(&again, e);
    assert_eq!(again.encode(), bytes, "evidence encoding is not a fixpoint");
    if e.verify(&CHAIN).is_ok() {
        match e {
            Evidence::DoubleVote(p) => {
                let (a, b) = (&p.0.message, &p.1.message);
                assert_eq!(a.validator, b.validator);
                assert_eq!(
                    (a.height, a.round, a.vote_type),
                    (b.height, b.round, b.vote_type)
                );
                assert_ne!(a.value, b.value, "verified evidence of one vote");
            }
            Evidence::DoubleProposal(p) => {
                let (a, b) = (&p.0.signed.message, &p.1.signed.message);
                assert_eq!(a.proposer, b.proposer);
                assert_eq!((a.height, a.round), (b.height, b.round));
                assert_ne!(a, b, "verified evidence of one proposal");
            }
        }
        assert_eq!(e.offender(), {
            match e {
                Evidence::DoubleVote(p) => p.0.message.validator.0,
                Evidence::DoubleProposal(p) => p.1.signed.message.proposer.0,
            }
        });
    }
}
