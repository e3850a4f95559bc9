//! Protobuf wire format (`agora.v1` consensus messages) and its fallible decoding.
//!
//! Everything a peer sends enters here: sizes are bounded before decoding, every field is
//! checked, and a malformed message is a [`WireError`], never a panic. Signatures are checked
//! later, by the replica, against the validator set.

use agora_crypto::{Domain, Signature};
use agora_proto::v1 as pb;
use agora_types::{Address, Hash};
use prost::Message as _;

use crate::block::{Block, BlockHeader};
use crate::cert::Certificate;
use crate::context::{
    round_u32, vote_type_code, BlockId, BlockValue, ConsHeight, ConsProposal, ConsVote, NilOrVal,
    Round, SignedProposal, SignedVote, ValAddr, VoteType,
};

/// Largest consensus message accepted from the network.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest seed proof accepted on the wire (a VRF proof is 80 bytes).
pub const MAX_SEED_PROOF_BYTES: usize = 128;

/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 10_000;
/// Largest single transaction.
pub const MAX_TX_BYTES: usize = 1024 * 1024;
/// Most blocks in one sync response.
pub const MAX_SYNC_BLOCKS: usize = 32;
/// Most signatures in one certificate on the wire.
pub const MAX_CERT_SIGNATURES: usize = crate::validators::MAX_VALIDATORS;
/// Highest round number accepted on the wire.
pub const MAX_ROUND: u32 = 1 << 20;

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("bad field {0}")]
    Bad(&'static str),
}

/// A proposal as gossiped: the signed proposal and, for a re-proposal, the prevote
/// certificate for its `pol_round`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposalMsg {
    pub signed: SignedProposal,
    pub polka: Option<Certificate>,
}

/// A decoded consensus message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Proposal(Box<ProposalMsg>),
    Vote(SignedVote),
    SyncRequest { from_height: u64, max_blocks: u32 },
    SyncResponse(Vec<(Block, Certificate)>),
    Tx(Vec<u8>),
}

fn hash32(b: &[u8], f: &'static str) -> Result<Hash, WireError> {
    Hash::from_slice(b).map_err(|_| WireError::Bad(f))
}
fn addr32(b: &[u8], f: &'static str) -> Result<Address, WireError> {
    Address::from_slice(b).map_err(|_| WireError::Bad(f))
}
fn sig64(b: &[u8], f: &'static str) -> Result<Signature, WireError> {
    Signature::from_slice(b).ok_or(WireError::Bad(f))
}
fn round(r: u32) -> Result<Round, WireError> {
    if r > MAX_ROUND {
        return Err(WireError::Bad("round"));
    }
    Ok(Round::new(r))
}

pub fn header_to_pb(h: &BlockHeader) -> pb::BlockHeader {
    pb::BlockHeader {
        height: h.height,
        time: h.time,
        prev_hash: h.prev_hash.0.to_vec().into(),
        app_hash: h.app_hash.0.to_vec().into(),
        proposer: h.proposer.0.to_vec().into(),
        txs_hash: h.txs_hash.0.to_vec().into(),
        last_commit_hash: h.last_commit_hash.0.to_vec().into(),
        seed_proof: h.seed_proof.clone().into(),
    }
}

pub fn header_from_pb(h: pb::BlockHeader) -> Result<BlockHeader, WireError> {
    Ok(BlockHeader {
        height: h.height,
        time: h.time,
        prev_hash: hash32(&h.prev_hash, "header.prev_hash")?,
        app_hash: hash32(&h.app_hash, "header.app_hash")?,
        proposer: addr32(&h.proposer, "header.proposer")?,
        txs_hash: hash32(&h.txs_hash, "header.txs_hash")?,
        last_commit_hash: hash32(&h.last_commit_hash, "header.last_commit_hash")?,
        seed_proof: if h.seed_proof.len() <= MAX_SEED_PROOF_BYTES {
            h.seed_proof.to_vec()
        } else {
            return Err(WireError::Bad("header.seed_proof"));
        },
    })
}

pub fn block_to_pb(b: &Block) -> pb::Block {
    pb::Block {
        header: Some(header_to_pb(&b.header)),
        txs: b.txs.iter().map(|t| t.clone().into()).collect(),
        last_commit: b.last_commit.as_ref().map(cert_to_pb),
    }
}

pub fn block_from_pb(b: pb::Block) -> Result<Block, WireError> {
    let h = b.header.ok_or(WireError::Missing("block.header"))?;
    if b.txs.len() > MAX_BLOCK_TXS {
        return Err(WireError::Bad("block.txs"));
    }
    if b.txs.iter().any(|t| t.len() > MAX_TX_BYTES) {
        return Err(WireError::Bad("block.tx size"));
    }
    let block = Block {
        header: header_from_pb(h)?,
        last_commit: b.last_commit.map(cert_from_pb).transpose()?,
        txs: b.txs.into_iter().map(|t| t.to_vec()).collect(),
    };
    if !block.txs_match() {
        return Err(WireError::Bad("header.txs_hash"));
    }
    if !block.last_commit_matches() {
        return Err(WireError::Bad("header.last_commit_hash"));
    }
    Ok(block)
}

pub fn cert_to_pb(c: &Certificate) -> pb::Certificate {
    pb::Certificate {
        height: c.height,
        round: c.round,
        block_hash: c.block_hash.0.to_vec().into(),
        signatures: c
            .signatures
            .iter()
            .map(|(a, s)| pb::VoteSignature {
                validator: a.0.to_vec().into(),
                signature: s.0.to_vec().into(),
            })
            .collect(),
    }
}

pub fn cert_from_pb(c: pb::Certificate) -> Result<Certificate, WireError> {
    if c.signatures.len() > MAX_CERT_SIGNATURES {
        return Err(WireError::Bad("certificate.signatures"));
    }
    round(c.round)?;
    let sigs = c
        .signatures
        .iter()
        .map(|s| {
            Ok((
                addr32(&s.validator, "signature.validator")?,
                sig64(&s.signature, "signature.signature")?,
            ))
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(Certificate {
        height: c.height,
        round: c.round,
        block_hash: hash32(&c.block_hash, "certificate.block_hash")?,
        signatures: sigs,
    })
}

pub fn vote_to_pb(v: &SignedVote) -> pb::Vote {
    let m = &v.message;
    pb::Vote {
        vote_type: u32::from(vote_type_code(m.vote_type)),
        height: m.height.0,
        round: round_u32(m.round),
        value_id: match &m.value {
            NilOrVal::Nil => Default::default(),
            NilOrVal::Val(id) => id.0 .0.to_vec().into(),
        },
        validator: m.validator.0 .0.to_vec().into(),
        signature: v.signature.0.to_vec().into(),
    }
}

pub fn vote_from_pb(v: pb::Vote) -> Result<SignedVote, WireError> {
    let vote_type = match v.vote_type {
        0 => VoteType::Prevote,
        1 => VoteType::Precommit,
        _ => return Err(WireError::Bad("vote.vote_type")),
    };
    let value = if v.value_id.is_empty() {
        NilOrVal::Nil
    } else {
        NilOrVal::Val(BlockId(hash32(&v.value_id, "vote.value_id")?))
    };
    let vote = ConsVote {
        vote_type,
        height: ConsHeight(v.height),
        round: round(v.round)?,
        value,
        validator: ValAddr(addr32(&v.validator, "vote.validator")?),
    };
    Ok(SignedVote::new(
        vote,
        sig64(&v.signature, "vote.signature")?,
    ))
}

pub fn proposal_to_pb(p: &ProposalMsg) -> pb::Proposal {
    let m = &p.signed.message;
    pb::Proposal {
        height: m.height.0,
        round: round_u32(m.round),
        pol_round: m.pol_round.as_i64(),
        block: Some(block_to_pb(&m.value.block)),
        proposer: m.proposer.0 .0.to_vec().into(),
        signature: p.signed.signature.0.to_vec().into(),
        polka: p.polka.as_ref().map(cert_to_pb),
    }
}

pub fn proposal_from_pb(p: pb::Proposal) -> Result<ProposalMsg, WireError> {
    let block = block_from_pb(p.block.ok_or(WireError::Missing("proposal.block"))?)?;
    let pol_round = match p.pol_round {
        -1 => Round::Nil,
        r if (0..=i64::from(MAX_ROUND)).contains(&r) => Round::new(r as u32),
        _ => return Err(WireError::Bad("proposal.pol_round")),
    };
    let proposal = ConsProposal {
        height: ConsHeight(p.height),
        round: round(p.round)?,
        value: BlockValue::new(block),
        pol_round,
        proposer: ValAddr(addr32(&p.proposer, "proposal.proposer")?),
    };
    let polka = p.polka.map(cert_from_pb).transpose()?;
    Ok(ProposalMsg {
        signed: SignedProposal::new(proposal, sig64(&p.signature, "proposal.signature")?),
        polka,
    })
}

/// Encode a message for the network.
pub fn encode(m: &Message) -> Vec<u8> {
    use pb::consensus_message::Kind;
    let kind = match m {
        Message::Proposal(p) => Kind::Proposal(proposal_to_pb(p)),
        Message::Vote(v) => Kind::Vote(vote_to_pb(v)),
        Message::SyncRequest {
            from_height,
            max_blocks,
        } => Kind::SyncRequest(pb::SyncRequest {
            from_height: *from_height,
            max_blocks: *max_blocks,
        }),
        Message::SyncResponse(blocks) => Kind::SyncResponse(pb::SyncResponse {
            blocks: blocks
                .iter()
                .map(|(b, c)| pb::CommittedBlock {
                    block: Some(block_to_pb(b)),
                    cert: Some(cert_to_pb(c)),
                })
                .collect(),
        }),
        Message::Tx(t) => Kind::Tx(t.clone().into()),
    };
    pb::ConsensusMessage { kind: Some(kind) }.encode_to_vec()
}

/// Decode a message from the network. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    use pb::consensus_message::Kind;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let m = pb::ConsensusMessage::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(match m.kind.ok_or(WireError::Missing("kind"))? {
        Kind::Proposal(p) => Message::Proposal(Box::new(proposal_from_pb(p)?)),
        Kind::Vote(v) => Message::Vote(vote_from_pb(v)?),
        Kind::SyncRequest(r) => Message::SyncRequest {
            from_height: r.from_height,
            max_blocks: r.max_blocks,
        },
        Kind::SyncResponse(r) => {
            if r.blocks.len() > MAX_SYNC_BLOCKS {
                return Err(WireError::Bad("sync_response.blocks"));
            }
            let blocks = r
                .blocks
                .into_iter()
                .map(|cb| {
                    let b = block_from_pb(cb.block.ok_or(WireError::Missing("committed.block"))?)?;
                    let c = cert_from_pb(cb.cert.ok_or(WireError::Missing("committed.cert"))?)?;
                    Ok((b, c))
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            Message::SyncResponse(blocks)
        }
        Kind::Tx(t) => {
            if t.len() > MAX_TX_BYTES {
                return Err(WireError::Bad("tx size"));
            }
            Message::Tx(t.to_vec())
        }
    })
}

pub fn encode_block(b: &Block) -> Vec<u8> {
    block_to_pb(b).encode_to_vec()
}
pub fn decode_block(bytes: &[u8]) -> Result<Block, WireError> {
    block_from_pb(pb::Block::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?)
}
pub fn encode_cert(c: &Certificate) -> Vec<u8> {
    cert_to_pb(c).encode_to_vec()
}
pub fn decode_cert(bytes: &[u8]) -> Result<Certificate, WireError> {
    cert_from_pb(pb::Certificate::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?)
}

/// Proof that a validator signed two conflicting consensus messages at one `(height, round)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Two votes of one type, one round, different values.
    DoubleVote(Box<(SignedVote, SignedVote)>),
    /// Two different proposals for one round by its proposer.
    DoubleProposal(Box<(ProposalMsg, ProposalMsg)>),
}

/// Why evidence is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("messages do not conflict")]
    NoConflict,
    #[error("evidence has a bad signature")]
    BadSignature,
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl Evidence {
    /// The validator that equivocated.
    pub fn offender(&self) -> Address {
        match self {
            Evidence::DoubleVote(p) => p.0.message.validator.0,
            Evidence::DoubleProposal(p) => p.0.signed.message.proposer.0,
        }
    }

    pub fn height(&self) -> u64 {
        match self {
            Evidence::DoubleVote(p) => p.0.message.height.0,
            Evidence::DoubleProposal(p) => p.0.signed.message.height.0,
        }
    }

    /// Check the pair conflicts and both halves are signed by the offender for `chain_id`.
    pub fn verify(&self, chain_id: &Hash) -> Result<(), EvidenceError> {
        match self {
            Evidence::DoubleVote(p) => {
                let (a, b) = (&p.0.message, &p.1.message);
                if a.validator != b.validator
                    || a.height != b.height
                    || a.round != b.round
                    || a.vote_type != b.vote_type
                    || a.value == b.value
                {
                    return Err(EvidenceError::NoConflict);
                }
                for v in [&p.0, &p.1] {
                    agora_crypto::verify(
                        &a.validator.0,
                        Domain::Vote,
                        chain_id,
                        &v.message.signing_bytes(),
                        &v.signature,
                    )
                    .map_err(|_| EvidenceError::BadSignature)?;
                }
            }
            Evidence::DoubleProposal(p) => {
                let (a, b) = (&p.0.signed.message, &p.1.signed.message);
                if a.proposer != b.proposer || a.height != b.height || a.round != b.round || a == b
                {
                    return Err(EvidenceError::NoConflict);
                }
                for s in [&p.0.signed, &p.1.signed] {
                    agora_crypto::verify(
                        &a.proposer.0,
                        Domain::Proposal,
                        chain_id,
                        &s.message.signing_bytes(),
                        &s.signature,
                    )
                    .map_err(|_| EvidenceError::BadSignature)?;
                }
            }
        }
        Ok(())
    }

    /// Encode as `agora.v1.VoteEvidence` or `agora.v1.ProposalEvidence` (for an evidence tx).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Evidence::DoubleVote(p) => pb::VoteEvidence {
                first: Some(vote_to_pb(&p.0)),
                second: Some(vote_to_pb(&p.1)),
            }
            .encode_to_vec(),
            Evidence::DoubleProposal(p) => pb::ProposalEvidence {
                first: Some(proposal_to_pb(&p.0)),
                second: Some(proposal_to_pb(&p.1)),
            }
            .encode_to_vec(),
        }
    }

    /// Decode vote evidence encoded by [`Evidence::encode`].
    pub fn decode_vote(bytes: &[u8]) -> Result<Evidence, WireError> {
        let e = pb::VoteEvidence::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
        Ok(Evidence::DoubleVote(Box::new((
            vote_from_pb(e.first.ok_or(WireError::Missing("first"))?)?,
            vote_from_pb(e.second.ok_or(WireError::Missing("second"))?)?,
        ))))
    }

    /// Decode proposal evidence encoded by [`Evidence::encode`].
    pub fn decode_proposal(bytes: &[u8]) -> Result<Evidence, WireError> {
        if bytes.len() > MAX_MESSAGE_BYTES * 2 {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let e =
            pb::ProposalEvidence::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
        Ok(Evidence::DoubleProposal(Box::new((
            proposal_from_pb(e.first.ok_or(WireError::Missing("first"))?)?,
            proposal_from_pb(e.second.ok_or(WireError::Missing("second"))?)?,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_rejected_not_panicking() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for len in 0..300usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        assert_eq!(decode(&[]), Err(WireError::Missing("kind")));
        assert!(matches!(
            decode(&vec![0u8; MAX_MESSAGE_BYTES + 1]),
            Err(WireError::TooLarge(_))
        ));
    }

    #[test]
    fn block_round_trips_and_tampering_is_caught() {
        let b = Block::new(
            3,
            1000,
            Hash([1; 32]),
            Hash([2; 32]),
            Address([3; 32]),
            Some(Certificate::new(
                2,
                1,
                Hash([1; 32]),
                vec![(Address([4; 32]), Signature([5; 64]))],
            )),
            vec![9; 80],
            vec![b"a=1".to_vec()],
        );
        let bytes = encode_block(&b);
        assert_eq!(decode_block(&bytes).unwrap(), b);
        let mut pbb = block_to_pb(&b);
        pbb.txs.push(b"x".to_vec().into());
        assert_eq!(block_from_pb(pbb), Err(WireError::Bad("header.txs_hash")));
        // The header commits to the certificate: dropping or changing a signer is caught.
        let mut pbb = block_to_pb(&b);
        pbb.last_commit = None;
        assert_eq!(
            block_from_pb(pbb),
            Err(WireError::Bad("header.last_commit_hash"))
        );
        let mut pbb = block_to_pb(&b);
        pbb.last_commit.as_mut().unwrap().round = 0;
        assert_eq!(
            block_from_pb(pbb),
            Err(WireError::Bad("header.last_commit_hash"))
        );
        // And the block hash commits to the seed proof.
        let mut other = b.clone();
        other.header.seed_proof[0] ^= 1;
        assert_ne!(other.hash(), b.hash());
        let mut pbb = block_to_pb(&b);
        pbb.header.as_mut().unwrap().seed_proof = vec![0; MAX_SEED_PROOF_BYTES + 1].into();
        assert_eq!(block_from_pb(pbb), Err(WireError::Bad("header.seed_proof")));
    }

    #[test]
    fn vote_round_trips() {
        let v = SignedVote::new(
            ConsVote {
                vote_type: VoteType::Precommit,
                height: ConsHeight(9),
                round: Round::new(2),
                value: NilOrVal::Val(BlockId(Hash([5; 32]))),
                validator: ValAddr(Address([6; 32])),
            },
            Signature([7; 64]),
        );
        let bytes = encode(&Message::Vote(v.clone()));
        assert_eq!(decode(&bytes).unwrap(), Message::Vote(v));
    }
}
