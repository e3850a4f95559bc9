//! Keys, signatures and hashing for Agora.
//!
//! One ed25519 key is one identity: its public key is the account [`Address`], and the libp2p
//! peer id is derived from the same key (see `agora-net`). Every signature is made over a
//! domain-separated preimage ([`Domain`]), so a signed vote can never be replayed as a signed
//! transaction and vice versa. Key files are written with mode 0600 and a corrupt or
//! world-readable key file is a clear error, never a panic. The same key also proves a
//! verifiable random function ([`vrf`], RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI), whose output
//! is unique per key and input where a signature is not.

mod keyfile;
pub mod memo;
pub mod merkle;
pub mod vrf;

use std::fmt;

use agora_types::{Address, Hash};
use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use keyfile::{load_key, save_key, KeyFileError};
pub use vrf::{VrfError, VrfOutput, VrfProof};

/// Failure to verify a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid public key")]
    InvalidPublicKey,
    #[error("bad signature")]
    BadSignature,
    #[error("batch has {sigs} signatures for {msgs} messages")]
    BatchShape { sigs: usize, msgs: usize },
}

/// What a signature is for. The domain tag is part of the signed preimage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// A market transaction envelope.
    Transaction,
    /// A consensus vote (prevote or precommit).
    Vote,
    /// A consensus block proposal.
    Proposal,
    /// A gossiped attestation by an operator.
    Attestation,
    /// A coprocessor's signed reason for declining a job.
    Decline,
    /// A node hello / handshake at connect time.
    Handshake,
}

impl Domain {
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Domain::Transaction => b"agora/v1/tx",
            Domain::Vote => b"agora/v1/vote",
            Domain::Proposal => b"agora/v1/proposal",
            Domain::Attestation => b"agora/v1/attestation",
            Domain::Decline => b"agora/v1/decline",
            Domain::Handshake => b"agora/v1/handshake",
        }
    }
}

/// The bytes actually signed: `tag ‖ 0x00 ‖ len(chain_id) ‖ chain_id ‖ message`.
/// The chain id (genesis hash) keeps signatures from one network valid on no other.
pub fn preimage(domain: Domain, chain_id: &Hash, message: &[u8]) -> Vec<u8> {
    let tag = domain.tag();
    let mut out = Vec::with_capacity(tag.len() + 1 + 32 + message.len());
    out.extend_from_slice(tag);
    out.push(0);
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(message);
    out
}

/// An ed25519 signature (64 bytes). `Ord` so it can live in sorted, replicated structures.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn from_slice(bytes: &[u8]) -> Option<Signature> {
        bytes.try_into().ok().map(Signature)
    }
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..6]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 128];
        hex::encode_to_slice(self.0, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        Signature::from_slice(&bytes)
            .ok_or_else(|| serde::de::Error::custom("signature must be 64 bytes"))
    }
}

/// An ed25519 key pair. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.address().short())
    }
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Keypair {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        Keypair::from_seed(seed)
    }

    /// A key from its 32-byte secret seed (deterministic: tests and simulation use this).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// A deterministic key for tests and simulation: `blake3("agora/test-key" ‖ n)`.
    pub fn for_test(n: u64) -> Keypair {
        Keypair::from_seed(Hash::derive("agora/test-key", &n.to_le_bytes()).0)
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn address(&self) -> Address {
        Address(self.signing.verifying_key().to_bytes())
    }

    /// Sign `message` under `domain` for the network `chain_id`.
    pub fn sign(&self, domain: Domain, chain_id: &Hash, message: &[u8]) -> Signature {
        let preimage = preimage(domain, chain_id, message);
        let public = self.signing.verifying_key().to_bytes();
        let memo = memo::made_key("agora/v1/sign-memo", &public, &preimage);
        if let Some(sig) = memo.as_ref().and_then(memo::signed) {
            return Signature(sig);
        }
        let sig = self.signing.sign(&preimage).to_bytes();
        if let Some(key) = memo {
            memo::remember_signed(key, sig);
        }
        Signature(sig)
    }
}

/// Verify that `signer` signed `message` under `domain` for `chain_id`.
pub fn verify(
    signer: &Address,
    domain: Domain,
    chain_id: &Hash,
    message: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let preimage = preimage(domain, chain_id, message);
    let memo = memo::key(
        memo::Mode::Strict,
        signer.as_bytes(),
        &preimage,
        signature.as_bytes(),
    );
    if memo.as_ref().is_some_and(memo::known) {
        return Ok(());
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(signer.as_bytes())
        .map_err(|_| CryptoError::InvalidPublicKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(signature.as_bytes());
    key.verify_strict(&preimage, &sig)
        .map_err(|_| CryptoError::BadSignature)?;
    if let Some(m) = memo {
        memo::remember(m);
    }
    Ok(())
}

/// Verify many signatures at once (faster than one by one). Fails if any one is bad; callers
/// that need to know which one fall back to [`verify`].
pub fn verify_batch(
    domain: Domain,
    chain_id: &Hash,
    items: &[(Address, &[u8], Signature)],
) -> Result<(), CryptoError> {
    let preimages: Vec<Vec<u8>> = items
        .iter()
        .map(|(_, m, _)| preimage(domain, chain_id, m))
        .collect();
    let memo: Option<Vec<[u8; 32]>> = items
        .iter()
        .zip(&preimages)
        .map(|((a, _, s), p)| memo::key(memo::Mode::Batch, a.as_bytes(), p, s.as_bytes()))
        .collect();
    // A signature the strict check accepted passes the (cofactored) batch equation too.
    let strict = || {
        items.iter().zip(&preimages).filter_map(|((a, _, s), p)| {
            memo::key(memo::Mode::Strict, a.as_bytes(), p, s.as_bytes())
        })
    };
    if memo.as_ref().is_some_and(|keys| {
        keys.iter()
            .zip(strict())
            .all(|(batch, strict)| memo::known(batch) || memo::known(&strict))
    }) {
        return Ok(());
    }
    let msgs: Vec<&[u8]> = preimages.iter().map(|p| p.as_slice()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(s.as_bytes()))
        .collect();
    let keys = items
        .iter()
        .map(|(a, _, _)| ed25519_dalek::VerifyingKey::from_bytes(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CryptoError::InvalidPublicKey)?;
    if sigs.len() != msgs.len() {
        return Err(CryptoError::BatchShape {
            sigs: sigs.len(),
            msgs: msgs.len(),
        });
    }
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).map_err(|_| CryptoError::BadSignature)?;
    for key in memo.into_iter().flatten() {
        memo::remember(key);
    }
    Ok(())
}

/// A signed, opaque payload: who signed it, the bytes, and the signature. The payload is
/// usually an encoded protobuf message; decoding it is the caller's business.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub signer: Address,
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
    pub signature: Signature,
}

impl Envelope {
    pub fn seal(key: &Keypair, domain: Domain, chain_id: &Hash, payload: Vec<u8>) -> Envelope {
        let signature = key.sign(domain, chain_id, &payload);
        Envelope {
            signer: key.address(),
            payload,
            signature,
        }
    }

    pub fn verify(&self, domain: Domain, chain_id: &Hash) -> Result<(), CryptoError> {
        verify(
            &self.signer,
            domain,
            chain_id,
            &self.payload,
            &self.signature,
        )
    }

    /// The envelope's identity: blake3 over signer, payload and signature.
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(self.signer.as_bytes());
        h.update(&(self.payload.len() as u64).to_le_bytes());
        h.update(&self.payload);
        h.update(self.signature.as_bytes());
        Hash(*h.finalize().as_bytes())
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: Hash = Hash([9; 32]);

    #[test]
    fn sign_verify_round_trip() {
        let k = Keypair::for_test(1);
        let sig = k.sign(Domain::Transaction, &CHAIN, b"hello");
        assert_eq!(
            verify(&k.address(), Domain::Transaction, &CHAIN, b"hello", &sig),
            Ok(())
        );
    }

    #[test]
    fn tampered_message_is_rejected() {
        let k = Keypair::for_test(1);
        let sig = k.sign(Domain::Transaction, &CHAIN, b"hello");
        assert_eq!(
            verify(&k.address(), Domain::Transaction, &CHAIN, b"hellp", &sig),
            Err(CryptoError::BadSignature)
        );
        let mut bad = sig;
        bad.0[10] ^= 1;
        assert!(verify(&k.address(), Domain::Transaction, &CHAIN, b"hello", &bad).is_err());
        let other = Keypair::for_test(2);
        assert!(verify(
            &other.address(),
            Domain::Transaction,
            &CHAIN,
            b"hello",
            &sig
        )
        .is_err());
    }

    #[test]
    fn domains_and_chains_are_separated() {
        let k = Keypair::for_test(3);
        let env = Envelope::seal(&k, Domain::Vote, &CHAIN, b"v".to_vec());
        assert!(env.verify(Domain::Vote, &CHAIN).is_ok());
        assert_eq!(
            env.verify(Domain::Transaction, &CHAIN),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            env.verify(Domain::Vote, &Hash([8; 32])),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn batch_verification_agrees_with_single() {
        let keys: Vec<Keypair> = (0..8).map(Keypair::for_test).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let mut items: Vec<(Address, &[u8], Signature)> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| (k.address(), m.as_slice(), k.sign(Domain::Vote, &CHAIN, m)))
            .collect();
        assert!(verify_batch(Domain::Vote, &CHAIN, &items).is_ok());
        items[3].2 .0[0] ^= 0xff;
        assert!(verify_batch(Domain::Vote, &CHAIN, &items).is_err());
    }

    #[test]
    fn deterministic_keys_are_stable() {
        assert_eq!(
            Keypair::for_test(5).address(),
            Keypair::for_test(5).address()
        );
        assert_ne!(
            Keypair::for_test(5).address(),
            Keypair::for_test(6).address()
        );
        let k = Keypair::generate();
        assert_eq!(Keypair::from_seed(k.seed()).address(), k.address());
    }
}
