//! Vote certificates: more than 2/3 of voting power of signatures on one block at one
//! `(height, round)`. Commit certificates (precommits) are stored with every block and verify
//! offline with only the validator set and the chain id.

use agora_crypto::{Domain, Signature};
use agora_types::{Address, Hash};

use crate::context::{BlockId, ConsHeight, ConsVote, NilOrVal, Round, ValAddr, VoteType};
use crate::validators::ValidatorSet;

/// Why a certificate does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate is for height {found}, expected {expected}")]
    Height { expected: u64, found: u64 },
    #[error("certificate is for another block")]
    Block,
    #[error("certificate signers are not sorted and distinct")]
    Unsorted,
    #[error("certificate signer {0} is not a validator")]
    UnknownSigner(Address),
    #[error("certificate has {signed} of {total} voting power, not a quorum")]
    NoQuorum { signed: u64, total: u64 },
    #[error("certificate has a bad signature")]
    BadSignature,
    #[error("certificate has {0} signatures, too many")]
    TooLarge(usize),
}

/// Signatures of one vote type on one block at `(height, round)`, sorted by signer address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub height: u64,
    pub round: u32,
    pub block_hash: Hash,
    pub signatures: Vec<(Address, Signature)>,
}

/// A certificate of precommits: proof that a block was decided.
pub type CommitCertificate = Certificate;

impl Certificate {
    /// Build from signatures in any order (sorted and deduplicated here).
    pub fn new(
        height: u64,
        round: u32,
        block_hash: Hash,
        mut signatures: Vec<(Address, Signature)>,
    ) -> Certificate {
        signatures.sort_by_key(|a| a.0);
        signatures.dedup_by(|a, b| a.0 == b.0);
        Certificate {
            height,
            round,
            block_hash,
            signatures,
        }
    }

    /// The vote each signature is over.
    pub fn vote_for(&self, vote_type: VoteType, signer: Address) -> ConsVote {
        ConsVote {
            vote_type,
            height: ConsHeight(self.height),
            round: Round::new(self.round),
            value: NilOrVal::Val(BlockId(self.block_hash)),
            validator: ValAddr(signer),
        }
    }

    /// Verify as a commit certificate (precommits). Returns the signed voting power.
    pub fn verify(&self, vs: &ValidatorSet, chain_id: &Hash) -> Result<u64, CertError> {
        self.verify_as(VoteType::Precommit, vs, chain_id)
    }

    /// Verify as a polka certificate (prevotes).
    pub fn verify_polka(&self, vs: &ValidatorSet, chain_id: &Hash) -> Result<u64, CertError> {
        self.verify_as(VoteType::Prevote, vs, chain_id)
    }

    /// Structure, membership, quorum, then every signature (batched, one pass).
    pub fn verify_as(
        &self,
        vote_type: VoteType,
        vs: &ValidatorSet,
        chain_id: &Hash,
    ) -> Result<u64, CertError> {
        if self.signatures.len() > vs.len() {
            return Err(CertError::TooLarge(self.signatures.len()));
        }
        let mut signed: u64 = 0;
        for (i, (a, _)) in self.signatures.iter().enumerate() {
            if i > 0 && self.signatures[i - 1].0 >= *a {
                return Err(CertError::Unsorted);
            }
            let p = vs.power_of(a).ok_or(CertError::UnknownSigner(*a))?;
            signed = signed.checked_add(p).ok_or(CertError::NoQuorum {
                signed,
                total: vs.total_power(),
            })?;
        }
        if !vs.is_quorum(signed) {
            return Err(CertError::NoQuorum {
                signed,
                total: vs.total_power(),
            });
        }
        let msgs: Vec<Vec<u8>> = self
            .signatures
            .iter()
            .map(|(a, _)| self.vote_for(vote_type, *a).signing_bytes())
            .collect();
        let items: Vec<(Address, &[u8], Signature)> = self
            .signatures
            .iter()
            .zip(&msgs)
            .map(|((a, s), m)| (*a, m.as_slice(), *s))
            .collect();
        agora_crypto::verify_batch(Domain::Vote, chain_id, &items)
            .map_err(|_| CertError::BadSignature)?;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_crypto::Keypair;

    const CHAIN: Hash = Hash([3; 32]);

    fn setup(n: u64) -> (Vec<Keypair>, ValidatorSet) {
        let keys: Vec<Keypair> = (0..n).map(Keypair::for_test).collect();
        let vs = ValidatorSet::from_stakes(
            &keys
                .iter()
                .map(|k| (k.address(), 10u128))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        (keys, vs)
    }

    fn cert(keys: &[Keypair], block: Hash) -> Certificate {
        let c = Certificate::new(5, 1, block, vec![]);
        let sigs = keys
            .iter()
            .map(|k| {
                (
                    k.address(),
                    k.sign(
                        Domain::Vote,
                        &CHAIN,
                        &c.vote_for(VoteType::Precommit, k.address()).signing_bytes(),
                    ),
                )
            })
            .collect();
        Certificate::new(5, 1, block, sigs)
    }

    #[test]
    fn quorum_certificate_verifies_offline() {
        let (keys, vs) = setup(4);
        let c = cert(&keys[..3], Hash([1; 32]));
        assert_eq!(c.verify(&vs, &CHAIN), Ok(30));
        // Wrong vote type, chain or a tampered block do not verify.
        assert_eq!(c.verify_polka(&vs, &CHAIN), Err(CertError::BadSignature));
        assert_eq!(c.verify(&vs, &Hash([4; 32])), Err(CertError::BadSignature));
        let mut bad = c.clone();
        bad.block_hash = Hash([2; 32]);
        assert_eq!(bad.verify(&vs, &CHAIN), Err(CertError::BadSignature));
    }

    #[test]
    fn minority_duplicates_and_strangers_are_rejected() {
        let (keys, vs) = setup(4);
        let c = cert(&keys[..2], Hash([1; 32]));
        assert_eq!(
            c.verify(&vs, &CHAIN),
            Err(CertError::NoQuorum {
                signed: 20,
                total: 40
            })
        );
        let mut dup = cert(&keys[..3], Hash([1; 32]));
        let first = dup.signatures[0];
        dup.signatures.insert(0, first);
        assert_eq!(dup.verify(&vs, &CHAIN), Err(CertError::Unsorted));
        let stranger = Keypair::for_test(99);
        let mut s = cert(&keys[..3], Hash([1; 32]));
        s.signatures.push((stranger.address(), s.signatures[0].1));
        s = Certificate::new(s.height, s.round, s.block_hash, s.signatures);
        assert!(matches!(
            s.verify(&vs, &CHAIN),
            Err(CertError::UnknownSigner(_))
        ));
    }
}
