//! The chain's seed: deterministic randomness every replica agrees on and no single proposer
//! can choose (ADR 009).
//!
//! Each block carries its proposer's VRF proof (RFC 9381, ECVRF-EDWARDS25519-SHA512-TAI, keyed
//! by the validator's ed25519 key) over the previous block's seed; the block's seed is the
//! proof's output. A VRF output is unique for a key and input, so the proposer's only choice is
//! to propose or not: it cannot grind through candidate seeds the way it could through ed25519
//! signatures, which are not unique. The first block chains from a seed derived from the chain
//! id.

use agora_crypto::{vrf, Keypair};
use agora_types::{Address, Hash};

/// The seed before the first block.
pub fn genesis_seed(chain_id: &Hash) -> Hash {
    Hash::derive("agora/v1/genesis-seed", chain_id.as_bytes())
}

/// The VRF input for the block after one with seed `prev`: domain tag, chain id, previous seed.
fn alpha(chain_id: &Hash, prev: &Hash) -> Vec<u8> {
    [
        &b"agora/v1/seed"[..],
        &[0],
        chain_id.as_bytes(),
        prev.as_bytes(),
    ]
    .concat()
}

/// The proof a proposer puts in its block.
pub fn prove(key: &Keypair, chain_id: &Hash, prev: &Hash) -> Vec<u8> {
    key.vrf_prove(&alpha(chain_id, prev)).0.to_vec()
}

/// The seed a block's proof yields, if the proof is `proposer`'s over `prev`.
pub fn verify(proposer: &Address, chain_id: &Hash, prev: &Hash, proof: &[u8]) -> Option<Hash> {
    let proof = vrf::VrfProof::from_slice(proof).ok()?;
    vrf::verify(proposer, &alpha(chain_id, prev), &proof)
        .ok()
        .map(|out| out.to_hash())
}

/// The seed of a block whose proof was verified when the block was accepted (a stored block):
/// the VRF output is a function of the proof alone.
pub fn output(proof: &[u8]) -> Option<Hash> {
    vrf::VrfProof::from_slice(proof)
        .ok()?
        .to_output()
        .ok()
        .map(|out| out.to_hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_chain_and_only_the_proposer_can_make_them() {
        let chain = Hash([7; 32]);
        let k = Keypair::for_test(1);
        let other = Keypair::for_test(2);
        let s0 = genesis_seed(&chain);
        let p1 = prove(&k, &chain, &s0);
        let s1 = verify(&k.address(), &chain, &s0, &p1).expect("valid proof");
        assert_eq!(output(&p1), Some(s1));
        assert_eq!(output(&p1[..10]), None);
        // Unique: proving again gives the same seed.
        assert_eq!(
            verify(&k.address(), &chain, &s0, &prove(&k, &chain, &s0)),
            Some(s1)
        );
        // Another key, another previous seed, another chain or a tampered proof: refused.
        assert_eq!(verify(&other.address(), &chain, &s0, &p1), None);
        assert_eq!(verify(&k.address(), &chain, &s1, &p1), None);
        assert_eq!(verify(&k.address(), &Hash([8; 32]), &s0, &p1), None);
        let mut bad = p1.clone();
        bad[40] ^= 1;
        assert_eq!(verify(&k.address(), &chain, &s0, &bad), None);
        assert_eq!(verify(&k.address(), &chain, &s0, &p1[..79]), None);
        assert_eq!(verify(&k.address(), &chain, &s0, &[]), None);
        // The next seed differs from the last.
        let s2 = verify(&k.address(), &chain, &s1, &prove(&k, &chain, &s1)).unwrap();
        assert_ne!(s1, s2);
        assert_ne!(s0, s1);
    }
}
