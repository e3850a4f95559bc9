//! A verifiable random function: ECVRF-EDWARDS25519-SHA512-TAI of RFC 9381 (§5, suite 0x03).
//!
//! A VRF output is a hash of an input (`alpha`) that only the holder of a secret key can
//! compute, and that anyone can check against the public key with the proof that comes with it.
//! Unlike an ed25519 signature, the output is *unique*: for one key and one input there is
//! exactly one output that verifies, so a block proposer who proves over the previous seed
//! cannot grind the next seed by trying many proofs.
//!
//! The VRF key is the node's ed25519 key: the secret scalar and the nonce key come from the
//! same 32-byte seed by the RFC 8032 expansion (RFC 9381 §5.5), so the VRF public key is exactly
//! the account [`Address`]. Verification validates the key (RFC 9381 §5.4.5: a key that is not
//! a point, or has small order, is refused), decodes points strictly (a non-canonical encoding is
//! not a point) and refuses a non-canonical `s`, so no one but the prover can re-encode a valid
//! proof into another valid one. Proofs themselves are not unique (a prover with another nonce
//! makes another valid proof); their output is, so consumers key on the output, never the proof.

use std::fmt;

use agora_types::{Address, Hash};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha512};

use crate::Keypair;

/// The suite string of ECVRF-EDWARDS25519-SHA512-TAI.
const SUITE: u8 = 0x03;
/// Length of the challenge `c` in a proof (cLen).
const C_LEN: usize = 16;
/// Length of an encoded point (ptLen) and of an encoded scalar (qLen).
const PT_LEN: usize = 32;

/// The blake3 context under which [`VrfOutput::to_hash`] condenses an output.
const OUTPUT_HASH_CONTEXT: &str = "agora/v1/vrf-output";

/// Why a VRF proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VrfError {
    #[error("vrf proof must be {} bytes, got {got}", VrfProof::LEN)]
    Length { got: usize },
    #[error("vrf public key is not a curve point")]
    InvalidPublicKey,
    #[error("vrf public key has small order")]
    SmallOrderKey,
    #[error("vrf proof gamma is not a curve point")]
    InvalidGamma,
    #[error("vrf proof scalar s is not below the group order")]
    NonCanonicalScalar,
    #[error("no curve point for this vrf input after 256 tries")]
    NoCurvePoint,
    #[error("vrf proof does not verify")]
    BadProof,
}

/// A VRF proof `pi`: `Gamma (32) ‖ c (16) ‖ s (32)`, as RFC 9381 encodes it.
///
/// The bytes are not checked on construction: [`verify`] decides whether they prove anything.
/// `Ord` so it can live in sorted, replicated structures.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VrfProof(pub [u8; 80]);

/// A VRF output `beta`: the 64-byte SHA-512 string of RFC 9381.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VrfOutput(pub [u8; 64]);

impl VrfProof {
    pub const LEN: usize = 80;

    /// A proof from exactly [`VrfProof::LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<VrfProof, VrfError> {
        bytes
            .try_into()
            .map(VrfProof)
            .map_err(|_| VrfError::Length { got: bytes.len() })
    }

    pub fn as_bytes(&self) -> &[u8; 80] {
        &self.0
    }

    /// The output this proof commits to (RFC 9381 `ECVRF_proof_to_hash`), *without* checking
    /// the proof: right for one's own proofs, meaningless for someone else's until [`verify`]
    /// has accepted it (which returns the same output).
    pub fn to_output(&self) -> Result<VrfOutput, VrfError> {
        let memo = crate::memo::made_key("agora/v1/vrf-output-memo", &[0; 32], &self.0);
        if let Some(out) = memo.as_ref().and_then(crate::memo::vrf_known) {
            return Ok(VrfOutput(out));
        }
        let (gamma, _, _) = self.decode()?;
        let out = gamma_to_output(&gamma);
        if let Some(key) = memo {
            crate::memo::vrf_remember(key, out.0);
        }
        Ok(out)
    }

    /// `ECVRF_decode_proof`: Gamma a canonical point, `c` 16 bytes, `s` below the group order.
    fn decode(&self) -> Result<(EdwardsPoint, Scalar, Scalar), VrfError> {
        let (gamma, rest) = self.0.split_at(PT_LEN);
        let (c, s) = rest.split_at(C_LEN);
        let gamma = string_to_point(gamma).ok_or(VrfError::InvalidGamma)?;
        let c = challenge_scalar(c);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(s);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(VrfError::NonCanonicalScalar)?;
        Ok((gamma, c, s))
    }
}

impl VrfOutput {
    pub const LEN: usize = 64;

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The output condensed to a [`Hash`]: blake3 in derive-key mode over all 64 bytes of
    /// `beta`, under the context `"agora/v1/vrf-output"` (not a truncation of `beta`).
    pub fn to_hash(&self) -> Hash {
        Hash::derive(OUTPUT_HASH_CONTEXT, &self.0)
    }
}

impl fmt::Debug for VrfProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfProof({})", hex::encode(&self.0[..6]))
    }
}

impl fmt::Debug for VrfOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfOutput({})", hex::encode(&self.0[..6]))
    }
}

impl Serialize for VrfProof {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for VrfProof {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        VrfProof::from_slice(&bytes).map_err(serde::de::Error::custom)
    }
}

impl Keypair {
    /// Prove the VRF on `alpha` (RFC 9381 `ECVRF_prove`). Deterministic: the same key and
    /// input always give the same proof. The output is `proof.to_output()`, or what [`verify`]
    /// returns to anyone holding the address.
    ///
    /// # Panics
    ///
    /// Only if 256 consecutive SHA-512 strings all fail to decode to a curve point, which
    /// happens with probability about 2^-256 for any `alpha`.
    pub fn vrf_prove(&self, alpha: &[u8]) -> VrfProof {
        let public = self.address();
        let memo = crate::memo::made_key("agora/v1/vrf-prove-memo", public.as_bytes(), alpha);
        if let Some(pi) = memo.as_ref().and_then(crate::memo::proved) {
            return VrfProof(pi);
        }
        let proof = self.vrf_prove_uncached(alpha);
        if let Some(key) = memo {
            crate::memo::remember_proved(key, proof.0);
        }
        proof
    }

    fn vrf_prove_uncached(&self, alpha: &[u8]) -> VrfProof {
        let (x, nonce_key) = expand_seed(&self.seed());
        let public = self.address();
        let h = encode_to_curve(public.as_bytes(), alpha)
            .expect("try-and-increment finds a point with probability 1 - 2^-256");
        let h_string = h.compress().to_bytes();
        let gamma = h * x;
        let k = nonce(&nonce_key, &h_string);
        let c_bytes = challenge(
            public.as_bytes(),
            &h_string,
            &gamma,
            &EdwardsPoint::mul_base(&k),
            &(h * k),
        );
        let s = k + challenge_scalar(&c_bytes) * x;

        let mut pi = [0u8; VrfProof::LEN];
        pi[..PT_LEN].copy_from_slice(gamma.compress().as_bytes());
        pi[PT_LEN..PT_LEN + C_LEN].copy_from_slice(&c_bytes);
        pi[PT_LEN + C_LEN..].copy_from_slice(s.as_bytes());
        VrfProof(pi)
    }
}

/// Verify that `proof` is `public`'s VRF proof on `alpha` (RFC 9381 `ECVRF_verify` with
/// `validate_key = TRUE`) and return its output.
pub fn verify(public: &Address, alpha: &[u8], proof: &VrfProof) -> Result<VrfOutput, VrfError> {
    let memo = crate::memo::vrf_key(public.as_bytes(), alpha, &proof.0);
    if let Some(out) = memo.as_ref().and_then(crate::memo::vrf_known) {
        return Ok(VrfOutput(out));
    }
    let out = verify_uncached(public, alpha, proof)?;
    if let Some(key) = memo {
        crate::memo::vrf_remember(key, out.0);
    }
    Ok(out)
}

fn verify_uncached(
    public: &Address,
    alpha: &[u8],
    proof: &VrfProof,
) -> Result<VrfOutput, VrfError> {
    let y = string_to_point(public.as_bytes()).ok_or(VrfError::InvalidPublicKey)?;
    if y.is_small_order() {
        return Err(VrfError::SmallOrderKey);
    }
    let (gamma, c, s) = proof.decode()?;
    let h = encode_to_curve(public.as_bytes(), alpha).ok_or(VrfError::NoCurvePoint)?;
    // U = s·B − c·Y and V = s·H − c·Gamma; all inputs are public, so variable time is fine.
    let u = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-c, &y, &s);
    let v = EdwardsPoint::vartime_multiscalar_mul([s, -c], [h, gamma]);
    let expected = challenge(public.as_bytes(), h.compress().as_bytes(), &gamma, &u, &v);
    if expected[..] != proof.0[PT_LEN..PT_LEN + C_LEN] {
        return Err(VrfError::BadProof);
    }
    Ok(gamma_to_output(&gamma))
}

/// The RFC 8032 key expansion (RFC 9381 §5.5): SHA-512 of the seed; the first half clamped is
/// the secret scalar `x` (reduced mod the group order, which changes no product with a point of
/// the prime-order subgroup), the second half is the nonce key.
fn expand_seed(seed: &[u8; 32]) -> (Scalar, [u8; 32]) {
    let digest = Sha512::digest(seed);
    let mut lower = [0u8; 32];
    let mut upper = [0u8; 32];
    lower.copy_from_slice(&digest[..32]);
    upper.copy_from_slice(&digest[32..]);
    (Scalar::from_bytes_mod_order(clamp_integer(lower)), upper)
}

/// `string_to_point` of RFC 9381 §5.5: RFC 8032 §5.1.3 decoding, which refuses `y ≥ p` and
/// `x = 0` with the sign bit set. curve25519-dalek's decompression accepts both, so a decoded
/// point counts only if it re-encodes to the very same bytes.
fn string_to_point(bytes: &[u8]) -> Option<EdwardsPoint> {
    let compressed = CompressedEdwardsY::from_slice(bytes).ok()?;
    let point = compressed.decompress()?;
    (point.compress() == compressed).then_some(point)
}

/// `ECVRF_encode_to_curve_try_and_increment` (RFC 9381 §5.4.1.1) with the public key as salt.
fn encode_to_curve(salt: &[u8; 32], alpha: &[u8]) -> Option<EdwardsPoint> {
    (0..=u8::MAX).find_map(|ctr| {
        let hash = Sha512::new()
            .chain_update([SUITE, 0x01])
            .chain_update(salt)
            .chain_update(alpha)
            .chain_update([ctr, 0x00])
            .finalize();
        let h = string_to_point(&hash[..PT_LEN])?.mul_by_cofactor();
        (!h.is_identity()).then_some(h)
    })
}

/// `ECVRF_nonce_generation_RFC8032` (RFC 9381 §5.4.2.2).
fn nonce(nonce_key: &[u8; 32], h_string: &[u8; 32]) -> Scalar {
    let digest = Sha512::new()
        .chain_update(nonce_key)
        .chain_update(h_string)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&digest);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// `ECVRF_challenge_generation` (RFC 9381 §5.4.3) over `Y, H, Gamma, U, V`; returns the
/// truncated challenge string (cLen bytes).
fn challenge(
    y_string: &[u8; 32],
    h_string: &[u8; 32],
    gamma: &EdwardsPoint,
    u: &EdwardsPoint,
    v: &EdwardsPoint,
) -> [u8; C_LEN] {
    let digest = Sha512::new()
        .chain_update([SUITE, 0x02])
        .chain_update(y_string)
        .chain_update(h_string)
        .chain_update(gamma.compress().as_bytes())
        .chain_update(u.compress().as_bytes())
        .chain_update(v.compress().as_bytes())
        .chain_update([0x00])
        .finalize();
    let mut c = [0u8; C_LEN];
    c.copy_from_slice(&digest[..C_LEN]);
    c
}

/// The challenge as a scalar: little-endian, and below 2^128 so always canonical.
fn challenge_scalar(c: &[u8]) -> Scalar {
    let mut bytes = [0u8; 32];
    bytes[..c.len()].copy_from_slice(c);
    Scalar::from_bytes_mod_order(bytes)
}

/// `ECVRF_proof_to_hash` from a decoded Gamma (RFC 9381 §5.2).
fn gamma_to_output(gamma: &EdwardsPoint) -> VrfOutput {
    let digest = Sha512::new()
        .chain_update([SUITE, 0x03])
        .chain_update(gamma.mul_by_cofactor().compress().as_bytes())
        .chain_update([0x00])
        .finalize();
    let mut beta = [0u8; VrfOutput::LEN];
    beta.copy_from_slice(&digest);
    VrfOutput(beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;

    /// RFC 9381 Appendix B.3, Examples 16–18: SK (seed), PK, alpha, H, pi, beta.
    const VECTORS: [[&str; 6]; 3] = [
        [
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "91bbed02a99461df1ad4c6564a5f5d829d0b90cfc7903e7a5797bd658abf3318",
            "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f\
             26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12\
             68a1b0db10836d9826a528ca76567805",
            "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff\
             66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
        ],
        [
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "5b659fc3d4e9263fd9a4ed1d022d75eaacc20df5e09f9ea937502396598dc551",
            "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593\
             3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d\
             a3ef39226bbc355bdc9850112c8f4b02",
            "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb\
             5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
        ],
        [
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "bf4339376f5542811de615e3313d2b36f6f53c0acfebb482159711201192576a",
            "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80\
             96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a\
             2d41b00b05081ed0f58ee5e31b3a970e",
            "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45\
             2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
        ],
    ];

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("test vector hex")
    }

    /// The group order L, little-endian.
    fn group_order() -> [u8; 32] {
        // -1 mod L is canonical and its low byte is 0xec, so adding one does not carry.
        let mut l = (-Scalar::ONE).to_bytes();
        l[0] += 1;
        l
    }

    /// `a + b` for 256-bit little-endian integers (no overflow for the inputs used here).
    fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "test addition overflowed");
        out
    }

    #[test]
    fn rfc9381_vectors_match_byte_for_byte() {
        for [sk, pk, alpha, h, pi, beta] in VECTORS {
            let seed: [u8; 32] = unhex(sk).try_into().unwrap();
            let key = Keypair::from_seed(seed);
            let alpha = unhex(alpha);
            assert_eq!(key.address().to_hex(), pk, "public key");

            let salt = key.address().0;
            let point = encode_to_curve(&salt, &alpha).expect("vector input maps to a point");
            assert_eq!(
                hex::encode(point.compress().as_bytes()),
                h,
                "encode_to_curve"
            );

            let proof = key.vrf_prove(&alpha);
            assert_eq!(hex::encode(proof.0), pi, "proof");
            let output = proof.to_output().expect("own proof decodes");
            assert_eq!(hex::encode(output.0), beta, "proof_to_hash");

            let given = VrfProof::from_slice(&unhex(pi)).unwrap();
            let verified = verify(&key.address(), &alpha, &given).expect("rfc proof verifies");
            assert_eq!(hex::encode(verified.0), beta, "verify output");
        }
    }

    #[test]
    fn secret_scalar_is_the_ed25519_one() {
        // The RFC lists x for Example 16 as the clamped integer; ours is that mod L.
        let (x, _) = expand_seed(&unhex(VECTORS[0][0]).try_into().unwrap());
        let listed: [u8; 32] =
            unhex("307c83864f2833cb427a2ef1c00a013cfdff2768d980c0a3a520f006904de94f")
                .try_into()
                .unwrap();
        assert_eq!(x, Scalar::from_bytes_mod_order(listed));
        for n in 0..8 {
            let key = Keypair::for_test(n);
            let (x, _) = expand_seed(&key.seed());
            assert_eq!(EdwardsPoint::mul_base(&x).compress().0, key.address().0);
        }
    }

    #[test]
    fn round_trip_with_a_keypair() {
        let key = Keypair::for_test(1);
        for alpha in [&b""[..], b"seed", &[7u8; 200]] {
            let proof = key.vrf_prove(alpha);
            assert_eq!(proof, key.vrf_prove(alpha), "prove is deterministic");
            let output = verify(&key.address(), alpha, &proof).expect("own proof verifies");
            assert_eq!(Ok(output), proof.to_output());
        }
        assert_ne!(
            key.vrf_prove(b"a").to_output(),
            key.vrf_prove(b"b").to_output()
        );
    }

    #[test]
    fn tampering_with_any_component_is_rejected() {
        let key = Keypair::for_test(2);
        let proof = key.vrf_prove(b"block 7");
        for i in 0..VrfProof::LEN {
            for bit in [0x01, 0x80] {
                let mut bad = proof;
                bad.0[i] ^= bit;
                let result = verify(&key.address(), b"block 7", &bad);
                assert!(
                    result.is_err(),
                    "byte {i} bit {bit:#x} flipped still verifies"
                );
                if (PT_LEN..PT_LEN + C_LEN).contains(&i) {
                    assert_eq!(result, Err(VrfError::BadProof), "c byte {i}");
                }
            }
        }
    }

    #[test]
    fn s_plus_group_order_is_refused() {
        // s + L satisfies the verification equations as well; only the canonical check
        // stops this second encoding of the same proof.
        let key = Keypair::for_test(3);
        let proof = key.vrf_prove(b"x");
        let mut s = [0u8; 32];
        s.copy_from_slice(&proof.0[PT_LEN + C_LEN..]);
        let mut bad = proof;
        bad.0[PT_LEN + C_LEN..].copy_from_slice(&add_le(&s, &group_order()));
        assert_eq!(
            verify(&key.address(), b"x", &bad),
            Err(VrfError::NonCanonicalScalar)
        );
        assert_eq!(bad.to_output(), Err(VrfError::NonCanonicalScalar));
        let mut max = proof;
        max.0[PT_LEN + C_LEN..].copy_from_slice(&[0xff; 32]);
        assert_eq!(
            verify(&key.address(), b"x", &max),
            Err(VrfError::NonCanonicalScalar)
        );
    }

    #[test]
    fn gamma_must_be_a_canonical_point() {
        let key = Keypair::for_test(4);
        let proof = key.vrf_prove(b"x");
        // y = p + 1 is a non-canonical encoding of y = 1 (the identity).
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert!(CompressedEdwardsY(non_canonical).decompress().is_some());
        let mut bad = proof;
        bad.0[..PT_LEN].copy_from_slice(&non_canonical);
        assert_eq!(
            verify(&key.address(), b"x", &bad),
            Err(VrfError::InvalidGamma)
        );
        // A y that is on no curve point.
        let off_curve = (0u8..=255)
            .map(|b| [b; 32])
            .find(|bytes| CompressedEdwardsY(*bytes).decompress().is_none())
            .expect("some repeated byte is not a y-coordinate");
        bad.0[..PT_LEN].copy_from_slice(&off_curve);
        assert_eq!(
            verify(&key.address(), b"x", &bad),
            Err(VrfError::InvalidGamma)
        );
    }

    #[test]
    fn wrong_alpha_and_wrong_key_are_rejected() {
        let key = Keypair::for_test(5);
        let other = Keypair::for_test(6);
        let proof = key.vrf_prove(b"height 10");
        assert_eq!(
            verify(&key.address(), b"height 11", &proof),
            Err(VrfError::BadProof)
        );
        assert_eq!(
            verify(&other.address(), b"height 10", &proof),
            Err(VrfError::BadProof)
        );
    }

    #[test]
    fn small_order_and_invalid_keys_are_rejected() {
        let proof = Keypair::for_test(7).vrf_prove(b"x");
        for point in EIGHT_TORSION {
            let public = Address(point.compress().0);
            assert_eq!(
                verify(&public, b"x", &proof),
                Err(VrfError::SmallOrderKey),
                "{public:?}"
            );
        }
        // A small-order key that does verify a crafted proof must still be refused: with
        // Y = identity, Gamma = identity, s = 0, U and V are the identity for any c.
        assert!(EIGHT_TORSION[0].is_identity());
        let identity = Address(EIGHT_TORSION[0].compress().0);
        let mut crafted = [0u8; VrfProof::LEN];
        crafted[..PT_LEN].copy_from_slice(&identity.0);
        let h = encode_to_curve(&identity.0, b"x").unwrap();
        let c = challenge(
            &identity.0,
            h.compress().as_bytes(),
            &EIGHT_TORSION[0],
            &EIGHT_TORSION[0],
            &EIGHT_TORSION[0],
        );
        crafted[PT_LEN..PT_LEN + C_LEN].copy_from_slice(&c);
        assert_eq!(
            verify(&identity, b"x", &VrfProof(crafted)),
            Err(VrfError::SmallOrderKey)
        );

        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert_eq!(
            verify(&Address(non_canonical), b"x", &proof),
            Err(VrfError::InvalidPublicKey)
        );
        // x = 0 with the sign bit set (y = 1) is refused by RFC 8032 decoding.
        let mut negative_zero = identity.0;
        negative_zero[31] |= 0x80;
        assert_eq!(
            verify(&Address(negative_zero), b"x", &proof),
            Err(VrfError::InvalidPublicKey)
        );
    }

    #[test]
    fn from_slice_refuses_wrong_lengths() {
        let proof = Keypair::for_test(8).vrf_prove(b"x");
        assert_eq!(VrfProof::from_slice(&proof.0), Ok(proof));
        for len in [0, 32, 79, 81, 160] {
            assert_eq!(
                VrfProof::from_slice(&vec![0; len]),
                Err(VrfError::Length { got: len })
            );
        }
    }

    #[test]
    fn proof_serde_round_trips_as_hex() {
        let proof = Keypair::for_test(9).vrf_prove(b"x");
        let json = serde_json::to_string(&proof).unwrap();
        assert_eq!(json, format!("\"{}\"", hex::encode(proof.0)));
        assert_eq!(serde_json::from_str::<VrfProof>(&json).unwrap(), proof);
        assert!(serde_json::from_str::<VrfProof>("\"00ff\"").is_err());
    }

    #[test]
    fn output_hash_is_blake3_of_the_whole_output_under_its_context() {
        // Pinned: the chain's audit seed is this hash, so it must not change silently.
        let beta = VrfOutput(unhex(VECTORS[0][5]).try_into().unwrap());
        assert_eq!(
            beta.to_hash().to_hex(),
            "6ce90a5410ac1864aacb2a3e4af1ca051b1f7af5e235d6b21db35be14c4799ed"
        );
        assert_ne!(beta.to_hash().0[..], beta.0[..32], "not a truncation");
        let mut other = beta;
        other.0[63] ^= 1;
        assert_ne!(beta.to_hash(), other.to_hash(), "the last byte counts");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_key_and_input_round_trips(
            seed in any::<[u8; 32]>(),
            alpha in proptest::collection::vec(any::<u8>(), 0..100),
            flip in 0..VrfProof::LEN,
        ) {
            let key = Keypair::from_seed(seed);
            let proof = key.vrf_prove(&alpha);
            let output = verify(&key.address(), &alpha, &proof);
            prop_assert_eq!(output, proof.to_output());
            prop_assert!(output.is_ok());
            let mut longer = alpha.clone();
            longer.push(0);
            prop_assert_eq!(verify(&key.address(), &longer, &proof), Err(VrfError::BadProof));
            let mut bad = proof;
            bad.0[flip] ^= 0x01;
            prop_assert!(verify(&key.address(), &alpha, &bad).is_err());
        }
    }
}
