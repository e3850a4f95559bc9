//! A per-thread memo of signatures and VRF proofs already found valid, for simulators that run
//! every replica of a network in one thread: each of N simulated nodes checks the same vote, and
//! ed25519 and VRF verification are pure functions of (key, message, signature or proof), so the
//! second to N-th checks of one triple can take the first one's answer. Only successes are
//! remembered (a bad signature is checked again every time), and the memo exists only inside
//! [`with_memo`]; a node never enables it, so its verification is untouched.
//!
//! Signing and VRF proving are deterministic too (RFC 8032, RFC 9381), so the memo also keeps
//! the signatures, proofs and proof outputs it has made: a simulator that runs a seed twice to
//! check its determinism pays for the curve arithmetic once.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// Entries before the memo starts over (32 bytes each).
const MAX_ENTRIES: usize = 1 << 20;

thread_local! {
    static MEMO: RefCell<Option<BTreeSet<[u8; 32]>>> = const { RefCell::new(None) };
    static VRF: RefCell<BTreeMap<[u8; 32], [u8; 64]>> = const { RefCell::new(BTreeMap::new()) };
    static SIGNED: RefCell<BTreeMap<[u8; 32], [u8; 64]>> = const { RefCell::new(BTreeMap::new()) };
    static PROVED: RefCell<BTreeMap<[u8; 32], [u8; 80]>> = const { RefCell::new(BTreeMap::new()) };
}

/// Run `f` with the memo on for this thread (off again afterwards, also on a panic).
pub fn with_memo<T>(f: impl FnOnce() -> T) -> T {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            MEMO.with(|m| *m.borrow_mut() = None);
            VRF.with(|m| m.borrow_mut().clear());
            SIGNED.with(|m| m.borrow_mut().clear());
            PROVED.with(|m| m.borrow_mut().clear());
        }
    }
    MEMO.with(|m| *m.borrow_mut() = Some(BTreeSet::new()));
    let _off = Off;
    f()
}

/// How a signature was found valid: batch verification is cofactored and accepts a few
/// signatures the strict single check refuses, so each mode remembers only its own answers (a
/// batch may take the strict check's answer, never the reverse).
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Strict,
    Batch,
}

/// The memo key of one verification, if the memo is on.
pub(crate) fn key(
    mode: Mode,
    signer: &[u8; 32],
    preimage: &[u8],
    signature: &[u8; 64],
) -> Option<[u8; 32]> {
    let on = MEMO.with(|m| m.borrow().is_some());
    on.then(|| {
        let mut h = blake3::Hasher::new_derive_key(match mode {
            Mode::Strict => "agora/v1/verify-memo/strict",
            Mode::Batch => "agora/v1/verify-memo/batch",
        });
        h.update(signer);
        h.update(signature);
        h.update(preimage);
        *h.finalize().as_bytes()
    })
}

pub(crate) fn known(key: &[u8; 32]) -> bool {
    MEMO.with(|m| m.borrow().as_ref().is_some_and(|s| s.contains(key)))
}

pub(crate) fn remember(key: [u8; 32]) {
    MEMO.with(|m| {
        if let Some(s) = m.borrow_mut().as_mut() {
            if s.len() >= MAX_ENTRIES {
                s.clear();
            }
            s.insert(key);
        }
    });
}

/// The memo key of a VRF verification, if the memo is on.
pub(crate) fn vrf_key(public: &[u8; 32], alpha: &[u8], proof: &[u8]) -> Option<[u8; 32]> {
    let on = MEMO.with(|m| m.borrow().is_some());
    on.then(|| {
        let mut h = blake3::Hasher::new_derive_key("agora/v1/verify-memo/vrf");
        h.update(public);
        h.update(proof);
        h.update(alpha);
        *h.finalize().as_bytes()
    })
}

/// The output of a VRF proof already verified.
pub(crate) fn vrf_known(key: &[u8; 32]) -> Option<[u8; 64]> {
    VRF.with(|m| m.borrow().get(key).copied())
}

pub(crate) fn vrf_remember(key: [u8; 32], output: [u8; 64]) {
    VRF.with(|m| bounded_insert(&mut m.borrow_mut(), key, output));
}

/// The memo key of something made with a secret key (a signature or a VRF proof): the public
/// key stands for the secret, as one determines the other.
pub(crate) fn made_key(context: &str, public: &[u8; 32], input: &[u8]) -> Option<[u8; 32]> {
    let on = MEMO.with(|m| m.borrow().is_some());
    on.then(|| {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(public);
        h.update(input);
        *h.finalize().as_bytes()
    })
}

pub(crate) fn signed(key: &[u8; 32]) -> Option<[u8; 64]> {
    SIGNED.with(|m| m.borrow().get(key).copied())
}

pub(crate) fn remember_signed(key: [u8; 32], signature: [u8; 64]) {
    SIGNED.with(|m| bounded_insert(&mut m.borrow_mut(), key, signature));
}

pub(crate) fn proved(key: &[u8; 32]) -> Option<[u8; 80]> {
    PROVED.with(|m| m.borrow().get(key).copied())
}

pub(crate) fn remember_proved(key: [u8; 32], proof: [u8; 80]) {
    PROVED.with(|m| bounded_insert(&mut m.borrow_mut(), key, proof));
}

fn bounded_insert<V>(m: &mut BTreeMap<[u8; 32], V>, key: [u8; 32], value: V) {
    if m.len() >= MAX_ENTRIES / 4 {
        m.clear();
    }
    m.insert(key, value);
}

#[cfg(test)]
mod tests {
    use crate::{verify, Domain, Keypair};
    use agora_types::Hash;

    #[test]
    fn the_memo_remembers_only_valid_signatures_and_only_inside_its_scope() {
        let k = Keypair::for_test(1);
        let chain = Hash([3; 32]);
        let sig = k.sign(Domain::Vote, &chain, b"m");
        let mut bad = sig;
        bad.0[0] ^= 1;
        super::with_memo(|| {
            for _ in 0..3 {
                assert!(verify(&k.address(), Domain::Vote, &chain, b"m", &sig).is_ok());
                assert!(verify(&k.address(), Domain::Vote, &chain, b"m", &bad).is_err());
                assert!(verify(&k.address(), Domain::Vote, &chain, b"other", &sig).is_err());
                assert!(verify(&k.address(), Domain::Proposal, &chain, b"m", &sig).is_err());
            }
            let key = super::key(
                super::Mode::Strict,
                k.address().as_bytes(),
                &crate::preimage(Domain::Vote, &chain, b"m"),
                &sig.0,
            )
            .unwrap();
            assert!(super::known(&key));
            // The batch takes the strict answer; the strict check never takes a batch answer.
            let items = [(k.address(), &b"m"[..], sig)];
            assert!(crate::verify_batch(Domain::Vote, &chain, &items).is_ok());
            let other = Keypair::for_test(2);
            let theirs = other.sign(Domain::Vote, &chain, b"m");
            let batch = [(other.address(), &b"m"[..], theirs)];
            assert!(crate::verify_batch(Domain::Vote, &chain, &batch).is_ok());
            let strict = super::key(
                super::Mode::Strict,
                other.address().as_bytes(),
                &crate::preimage(Domain::Vote, &chain, b"m"),
                &theirs.0,
            )
            .unwrap();
            assert!(!super::known(&strict));
        });
        assert!(super::key(super::Mode::Strict, k.address().as_bytes(), b"m", &sig.0).is_none());
        assert!(super::signed(&[0; 32]).is_none());
        assert!(verify(&k.address(), Domain::Vote, &chain, b"m", &bad).is_err());
    }
}

#[cfg(test)]
mod made {
    use crate::{Domain, Keypair};
    use agora_types::Hash;

    #[test]
    fn remembered_signatures_and_proofs_are_the_ones_made_without_the_memo() {
        let (k, other) = (Keypair::for_test(7), Keypair::for_test(8));
        let chain = Hash([5; 32]);
        let sig = k.sign(Domain::Vote, &chain, b"m");
        let proof = k.vrf_prove(b"alpha");
        super::with_memo(|| {
            for _ in 0..2 {
                assert_eq!(k.sign(Domain::Vote, &chain, b"m"), sig);
                assert_ne!(k.sign(Domain::Vote, &chain, b"n"), sig);
                assert_ne!(other.sign(Domain::Vote, &chain, b"m"), sig);
                assert_ne!(k.sign(Domain::Proposal, &chain, b"m"), sig);
                assert_eq!(k.vrf_prove(b"alpha").as_bytes(), proof.as_bytes());
                assert_ne!(other.vrf_prove(b"alpha").as_bytes(), proof.as_bytes());
                assert_eq!(
                    k.vrf_prove(b"alpha").to_output().unwrap().as_bytes(),
                    proof.to_output().unwrap().as_bytes()
                );
            }
        });
    }
}
