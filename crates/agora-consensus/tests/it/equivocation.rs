//! A double voter that sends one validator a conflicting vote before each real one cannot keep
//! that validator short of a quorum that exists: the second vote is signed, so it counts toward
//! its own value's certificate (seed 715153848 of the consensus simulator: a heavy honest
//! validator, always shown the nil vote first, never locked, and rounds failed for 8 s).

use agora_consensus::context::{BlockId, NilOrVal, SignedVote};
use agora_consensus::{wire, MemStore, Message};
use agora_crypto::{Domain, Keypair};
use agora_types::Hash;

use super::Net;

/// If `bytes` is a vote: the same vote for the other value (nil for a value, a made-up
/// value for nil), signed by `key`.
pub(super) fn conflicting(key: &Keypair, chain: &Hash, bytes: &[u8]) -> Option<Vec<u8>> {
    let Ok(Message::Vote(v)) = wire::decode(bytes) else {
        return None;
    };
    let mut alt = v.message.clone();
    alt.value = match alt.value {
        NilOrVal::Nil => NilOrVal::Val(BlockId(Hash::of(b"made up"))),
        NilOrVal::Val(_) => NilOrVal::Nil,
    };
    let sig = key.sign(Domain::Vote, chain, &alt.signing_bytes());
    Some(wire::encode(&Message::Vote(SignedVote::new(alt, sig))))
}

/// Four equal validators, one offline: the other three are exactly a quorum, so the victim
/// needs the double voter's real vote, which always reaches it second. Height 1 is still
/// decided in round 0 on every live node, and the victim reports the double votes.
#[test]
fn a_double_voter_cannot_hide_a_quorum_by_sending_its_other_vote_first() {
    let mut net = Net::new(4);
    let proposer = net.genesis.validators.proposer(1, 0).address.0;
    let p = (0..4).find(|i| net.addr(*i) == proposer).unwrap();
    let others: Vec<usize> = (0..4).filter(|i| *i != p).collect();
    let (offline, victim, byz) = (others[0], others[1], others[2]);
    net.double_voter = Some((byz, victim));
    for i in (0..4).filter(|i| *i != offline) {
        net.open(i, Box::new(MemStore::new()));
    }
    for _ in 0..3000 {
        net.step();
        if [p, victim, byz].iter().all(|i| net.height(*i) >= 2) {
            break;
        }
    }
    for i in [p, victim, byz] {
        let r = net.nodes[i].as_ref().unwrap();
        assert!(r.height() >= 2, "node {i} at height {}", r.height());
        let (b, cert) = r.block(1).unwrap().unwrap();
        assert_eq!(cert.block_hash, b.hash());
        assert_eq!(
            cert.round, 0,
            "node {i}: height 1 took {} rounds",
            cert.round
        );
    }
    assert!(
        net.evidence_from.contains(&victim),
        "the victim saw the double votes but reported none"
    );
}
