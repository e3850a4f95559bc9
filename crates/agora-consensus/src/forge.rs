//! What a byzantine validator sends besides its honest messages, for the simulators and for a
//! testnet's byzantine operators (`[consensus] fault`, testing only): a second proposal for the
//! same height and round, and a conflicting vote. Every forgery is signed with the validator's
//! real key, so only the protocol's rules, never a bad signature, can catch it.

use agora_crypto::{Domain, Keypair};
use agora_types::Hash;

use crate::context::{BlockId, BlockValue, NilOrVal, SignedProposal, SignedVote};
use crate::{wire, Block, Message, ProposalMsg};

/// If `bytes` is a proposal: the same proposal for a different block (its time moved by 1 ms),
/// signed by `key`.
pub fn equivocating_proposal(key: &Keypair, chain: &Hash, bytes: &[u8]) -> Option<Vec<u8>> {
    let Ok(Message::Proposal(p)) = wire::decode(bytes) else {
        return None;
    };
    let mut b: Block = (*p.signed.message.value.block).clone();
    b.header.time += 1;
    let mut alt = p.signed.message.clone();
    alt.value = BlockValue::new(b);
    let sig = key.sign(Domain::Proposal, chain, &alt.signing_bytes());
    Some(wire::encode(&Message::Proposal(Box::new(ProposalMsg {
        signed: SignedProposal::new(alt, sig),
        polka: p.polka.clone(),
    }))))
}

/// If `bytes` is a vote: a vote for the same height, round and step with another value, signed
/// by `key` (nil for a vote for a block; for a nil vote, a block id made from `salt()`).
pub fn conflicting_vote(
    key: &Keypair,
    chain: &Hash,
    bytes: &[u8],
    salt: impl FnOnce() -> u64,
) -> Option<Vec<u8>> {
    let Ok(Message::Vote(v)) = wire::decode(bytes) else {
        return None;
    };
    let mut alt = v.message.clone();
    alt.value = match alt.value {
        NilOrVal::Nil => NilOrVal::Val(BlockId(Hash::of(&salt().to_be_bytes()))),
        NilOrVal::Val(_) => NilOrVal::Nil,
    };
    let sig = key.sign(Domain::Vote, chain, &alt.signing_bytes());
    Some(wire::encode(&Message::Vote(SignedVote::new(alt, sig))))
}

/// Whether `bytes` is a proposal or a vote (what a silent validator withholds).
pub fn is_proposal_or_vote(bytes: &[u8]) -> bool {
    matches!(
        wire::decode(bytes),
        Ok(Message::Proposal(_) | Message::Vote(_))
    )
}
