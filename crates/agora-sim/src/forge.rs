//! What byzantine validators send instead of their honest messages, shared by both simulators:
//! a second proposal for the same height and round, a conflicting vote, replayed and garbled
//! bytes. Every forgery is signed with the validator's real key, so only the protocol's rules —
//! never a bad signature — can catch it.

use agora_consensus::context::{BlockId, NilOrVal, SignedProposal, SignedVote};
use agora_consensus::{wire, Block, Message, ProposalMsg};
use agora_crypto::{Domain, Keypair};
use agora_types::Hash;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A byzantine validator's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Byz {
    /// Two different proposals for one height and round, to two halves of the network.
    Equivocate,
    /// Each vote together with a conflicting one.
    DoubleVote,
    /// Sends nothing (votes and proposals withheld).
    Silent,
    /// Re-sends old messages along with new ones.
    Replay,
    /// Random bytes and bit-flipped copies along with the real message.
    Garbage,
}

pub const BEHAVIOURS: [Byz; 5] = [
    Byz::Equivocate,
    Byz::DoubleVote,
    Byz::Silent,
    Byz::Replay,
    Byz::Garbage,
];

/// If `bytes` is a proposal: the same proposal for a different block (its time moved by 1 ms),
/// signed by `key`.
pub fn equivocating_proposal(key: &Keypair, chain: &Hash, bytes: &[u8]) -> Option<Vec<u8>> {
    let Ok(Message::Proposal(p)) = wire::decode(bytes) else {
        return None;
    };
    let mut b: Block = (*p.signed.message.value.block).clone();
    b.header.time += 1;
    let mut alt = p.signed.message.clone();
    alt.value = agora_consensus::context::BlockValue::new(b);
    let sig = key.sign(Domain::Proposal, chain, &alt.signing_bytes());
    Some(wire::encode(&Message::Proposal(Box::new(ProposalMsg {
        signed: SignedProposal::new(alt, sig),
        polka: p.polka.clone(),
    }))))
}

/// If `bytes` is a vote: a vote for the same height, round and step with another value, signed
/// by `key`.
pub fn conflicting_vote(
    key: &Keypair,
    chain: &Hash,
    bytes: &[u8],
    rng: &mut ChaCha8Rng,
) -> Option<Vec<u8>> {
    let Ok(Message::Vote(v)) = wire::decode(bytes) else {
        return None;
    };
    let mut alt = v.message.clone();
    alt.value = match alt.value {
        NilOrVal::Nil => NilOrVal::Val(BlockId(Hash::of(&rng.random::<u64>().to_be_bytes()))),
        NilOrVal::Val(_) => NilOrVal::Nil,
    };
    let sig = key.sign(Domain::Vote, chain, &alt.signing_bytes());
    Some(wire::encode(&Message::Vote(SignedVote::new(alt, sig))))
}

/// Random bytes, and `bytes` with one bit flipped.
pub fn garbage(bytes: &[u8], rng: &mut ChaCha8Rng) -> (Vec<u8>, Vec<u8>) {
    let len = rng.random_range(0..200);
    let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    let mut flipped = bytes.to_vec();
    if !flipped.is_empty() {
        let k = rng.random_range(0..flipped.len());
        flipped[k] ^= 1 << rng.random_range(0..8);
    }
    (junk, flipped)
}
