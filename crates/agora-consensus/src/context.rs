//! The malachite `Context`: the concrete types the Tendermint driver runs over.
//!
//! Addresses and heights are newtypes because the driver's traits and our domain types live in
//! foreign crates. Signing bytes are a fixed big-endian layout computed from the message fields
//! alone, so votes can be rebuilt from certificate signatures.

use std::fmt;
use std::sync::Arc;

use agora_crypto::{Keypair, Signature};
use agora_types::{Address, Hash};
use arc_malachitebft_core_types as mt;
pub use mt::{NilOrVal, Round, VoteType};

use crate::block::Block;
use crate::validators::ValidatorSet;

/// A validator address as the driver sees it (our 32-byte ed25519 account address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValAddr(pub Address);

impl fmt::Display for ValAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.short())
    }
}

impl mt::Address for ValAddr {}

/// A block height as the driver sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsHeight(pub u64);

impl fmt::Display for ConsHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl mt::Height for ConsHeight {
    const ZERO: Self = ConsHeight(0);
    const INITIAL: Self = ConsHeight(1);
    fn increment_by(&self, n: u64) -> Self {
        ConsHeight(self.0.saturating_add(n))
    }
    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(ConsHeight)
    }
    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// The identity of a decided value: the block hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub Hash);

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.short())
    }
}

/// The value consensus decides: a block, shared (the driver clones values freely).
/// Equality and order are by block hash.
#[derive(Clone, Debug)]
pub struct BlockValue {
    pub id: BlockId,
    pub block: Arc<Block>,
}

impl BlockValue {
    pub fn new(block: Block) -> BlockValue {
        BlockValue {
            id: BlockId(block.hash()),
            block: Arc::new(block),
        }
    }
}

impl PartialEq for BlockValue {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for BlockValue {}
impl PartialOrd for BlockValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BlockValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl mt::Value for BlockValue {
    type Id = BlockId;
    fn id(&self) -> BlockId {
        self.id
    }
}

/// An unsigned block proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsProposal {
    pub height: ConsHeight,
    pub round: Round,
    pub value: BlockValue,
    pub pol_round: Round,
    pub proposer: ValAddr,
}

impl ConsProposal {
    /// The bytes a proposer signs: `"P" ‖ height ‖ round ‖ pol_round ‖ block hash`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        proposal_signing_bytes(
            self.height.0,
            round_u32(self.round),
            self.pol_round.as_i64(),
            &self.value.id.0,
        )
    }
}

pub(crate) fn proposal_signing_bytes(
    height: u64,
    round: u32,
    pol_round: i64,
    block: &Hash,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 4 + 8 + 32);
    out.push(b'P');
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&pol_round.to_be_bytes());
    out.extend_from_slice(block.as_bytes());
    out
}

impl mt::Proposal<Ctx> for ConsProposal {
    fn height(&self) -> ConsHeight {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockValue {
        &self.value
    }
    fn take_value(self) -> BlockValue {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &ValAddr {
        &self.proposer
    }
}

/// An unsigned prevote or precommit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsVote {
    pub vote_type: VoteType,
    pub height: ConsHeight,
    pub round: Round,
    pub value: NilOrVal<BlockId>,
    pub validator: ValAddr,
}

impl ConsVote {
    /// The bytes a validator signs: `"V" ‖ type ‖ height ‖ round ‖ has_value ‖ block hash`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 1 + 8 + 4 + 1 + 32);
        out.push(b'V');
        out.push(vote_type_code(self.vote_type));
        out.extend_from_slice(&self.height.0.to_be_bytes());
        out.extend_from_slice(&round_u32(self.round).to_be_bytes());
        match &self.value {
            NilOrVal::Nil => {
                out.push(0);
                out.extend_from_slice(&[0u8; 32]);
            }
            NilOrVal::Val(id) => {
                out.push(1);
                out.extend_from_slice(id.0.as_bytes());
            }
        }
        out
    }
}

/// What two conflicting votes of one validator share: the vote's height, round and step
/// (0 prevote, 1 precommit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VoteSlot {
    pub height: u64,
    pub round: u32,
    pub step: u8,
}

/// Parse the bytes a validator signs for a vote ([`ConsVote::signing_bytes`]) back into its
/// [`VoteSlot`]; `None` for anything else. The market judges double-vote evidence with this
/// (every replica installs the same decoder), so it is the one inverse of the signed layout.
pub fn vote_slot(bytes: &[u8]) -> Option<VoteSlot> {
    if bytes.len() != 47 || bytes[0] != b'V' || bytes[1] > 1 || bytes[14] > 1 {
        return None;
    }
    Some(VoteSlot {
        height: u64::from_be_bytes(bytes[2..10].try_into().ok()?),
        round: u32::from_be_bytes(bytes[10..14].try_into().ok()?),
        step: bytes[1],
    })
}

/// The step [`signed_slot`] gives a proposal (votes are 0 and 1).
pub const PROPOSAL_STEP: u8 = 2;

/// Parse the bytes a validator signs for a vote or a proposal back into the slot two
/// conflicting messages share: a vote's [`VoteSlot`] (see [`vote_slot`]), or for a proposal
/// ([`ConsProposal::signing_bytes`]) its height and round with step [`PROPOSAL_STEP`] (a
/// proposer signs one proposal per height and round). `None` for anything else. The market
/// judges equivocation evidence with this, so it is the one inverse of both signed layouts.
pub fn signed_slot(bytes: &[u8]) -> Option<VoteSlot> {
    if bytes.len() == 53 && bytes[0] == b'P' {
        return Some(VoteSlot {
            height: u64::from_be_bytes(bytes[1..9].try_into().ok()?),
            round: u32::from_be_bytes(bytes[9..13].try_into().ok()?),
            step: PROPOSAL_STEP,
        });
    }
    vote_slot(bytes)
}

pub(crate) fn vote_type_code(t: VoteType) -> u8 {
    match t {
        VoteType::Prevote => 0,
        VoteType::Precommit => 1,
    }
}

/// Round as `u32`; `Round::Nil` maps to `u32::MAX` (never signed: the driver only votes in
/// defined rounds).
pub(crate) fn round_u32(r: Round) -> u32 {
    r.as_u32().unwrap_or(u32::MAX)
}

impl mt::Vote<Ctx> for ConsVote {
    fn height(&self) -> ConsHeight {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<BlockId> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<BlockId> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.vote_type
    }
    fn validator_address(&self) -> &ValAddr {
        &self.validator
    }
    fn extension(&self) -> Option<&mt::SignedExtension<Ctx>> {
        None
    }
    fn take_extension(&mut self) -> Option<mt::SignedExtension<Ctx>> {
        None
    }
    fn extend(self, _extension: mt::SignedExtension<Ctx>) -> Self {
        self
    }
}

/// One member of the validator set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    pub address: ValAddr,
    pub public_key: Address,
    pub power: u64,
}

impl mt::Validator<Ctx> for Validator {
    fn address(&self) -> &ValAddr {
        &self.address
    }
    fn public_key(&self) -> &Address {
        &self.public_key
    }
    fn voting_power(&self) -> u64 {
        self.power
    }
}

/// Unused: blocks travel whole inside proposals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoParts;

impl mt::ProposalPart<Ctx> for NoParts {
    fn is_first(&self) -> bool {
        true
    }
    fn is_last(&self) -> bool {
        true
    }
}

/// ed25519 through agora-crypto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519;

impl mt::SigningScheme for Ed25519 {
    type DecodingError = String;
    type Signature = Signature;
    type PublicKey = Address;
    type PrivateKey = Keypair;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, String> {
        Signature::from_slice(bytes).ok_or_else(|| "signature must be 64 bytes".to_owned())
    }
    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }
    fn decode_public_key(bytes: &[u8]) -> Result<Address, String> {
        Address::from_slice(bytes).map_err(|e| e.to_string())
    }
    fn encode_public_key(public_key: &Address) -> Vec<u8> {
        public_key.0.to_vec()
    }
}

/// The consensus context: ties the types together and selects proposers.
#[derive(Clone, Debug, Default)]
pub struct Ctx;

impl mt::Context for Ctx {
    type Address = ValAddr;
    type Height = ConsHeight;
    type ProposalPart = NoParts;
    type Proposal = ConsProposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = mt::LinearTimeouts;
    type Value = BlockValue;
    type Vote = ConsVote;
    type Extension = ();
    type SigningScheme = Ed25519;

    fn select_proposer<'a>(
        &self,
        vs: &'a ValidatorSet,
        height: ConsHeight,
        round: Round,
    ) -> &'a Validator {
        vs.proposer(height.0, round_u32(round))
    }

    fn new_proposal(
        &self,
        height: ConsHeight,
        round: Round,
        value: BlockValue,
        pol_round: Round,
        address: ValAddr,
    ) -> ConsProposal {
        ConsProposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: ConsHeight,
        round: Round,
        value: NilOrVal<BlockId>,
        address: ValAddr,
    ) -> ConsVote {
        ConsVote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value,
            validator: address,
        }
    }

    fn new_precommit(
        &self,
        height: ConsHeight,
        round: Round,
        value: NilOrVal<BlockId>,
        address: ValAddr,
    ) -> ConsVote {
        ConsVote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value,
            validator: address,
        }
    }
}

/// A signed vote.
pub type SignedVote = mt::SignedVote<Ctx>;
/// A signed proposal.
pub type SignedProposal = mt::SignedProposal<Ctx>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_votes_slot_is_read_back_from_its_signing_bytes() {
        for (vote_type, step) in [(VoteType::Prevote, 0), (VoteType::Precommit, 1)] {
            for value in [NilOrVal::Nil, NilOrVal::Val(BlockId(Hash([7; 32])))] {
                let vote = ConsVote {
                    vote_type,
                    height: ConsHeight(42),
                    round: Round::new(3),
                    value,
                    validator: ValAddr(agora_crypto::Keypair::for_test(1).address()),
                };
                let bytes = vote.signing_bytes();
                assert_eq!(
                    vote_slot(&bytes),
                    Some(VoteSlot {
                        height: 42,
                        round: 3,
                        step
                    })
                );
                assert!(vote_slot(&bytes[..46]).is_none());
                let mut bad = bytes.clone();
                bad[0] = b'P';
                assert!(vote_slot(&bad).is_none());
            }
        }
        assert!(vote_slot(b"not a vote").is_none());
    }

    #[test]
    fn signed_slot_reads_proposals_and_votes() {
        let bytes = proposal_signing_bytes(42, 3, -1, &Hash([9; 32]));
        assert_eq!(
            signed_slot(&bytes),
            Some(VoteSlot {
                height: 42,
                round: 3,
                step: PROPOSAL_STEP
            })
        );
        // A proposal is no vote, and a truncated one is nothing.
        assert!(vote_slot(&bytes).is_none());
        assert!(signed_slot(&bytes[..52]).is_none());
        let vote = ConsVote {
            vote_type: VoteType::Precommit,
            height: ConsHeight(42),
            round: Round::new(3),
            value: NilOrVal::Nil,
            validator: ValAddr(agora_crypto::Keypair::for_test(1).address()),
        };
        let v = vote.signing_bytes();
        assert_eq!(signed_slot(&v), vote_slot(&v));
        assert!(signed_slot(b"not signed").is_none());
    }
}
