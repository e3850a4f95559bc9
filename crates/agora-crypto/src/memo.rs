//! A per-thread memo of signatures and VRF proofs already found valid, for simulators that run
//! every replica of a network in one thread: each of N simulated nodes checks the same vote, and
//! ed25519 and VRF verification are pure functions of (key, message, signature or proof), so the
//! second to N-th checks of one triple can take the first one's answer. Only successes are
//! remembered (a bad signature is checked again every time), and the memo exists only inside
//! [`with_memo`]; a node never enables it, so its verification is untouched.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// Entries before the memo starts over (32 bytes each).
const MAX_ENTRIES: usize = 1 << 20;

thread_local! {
    static MEMO: RefCell<Option<BTreeSet<[u8; 32]>>> = const { RefCell::new(None) };
    static VRF: RefCell<BTreeMap<[u8; 32], [u8; 64]>> = const { RefCell::new(BTreeMap::new()) };
}

/// Run `f` with the memo on for this thread (off again afterwards, also on a panic).
pub fn with_memo<T>(f: impl FnOnce() -> T) -> T {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            MEMO.with(|m| *m.borrow_mut() = None);
            VRF.with(|m| m.borrow_mut().clear());
        }
    }
    MEMO.with(|m| *m.borrow_mut() = Some(BTreeSet::new()));
    let _off = Off;
    f()
}

/// How a signature was found valid: batch verification is cofactored and accepts a few
/// signatures the strict single check refuses, so each mode remembers only its own answers.
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
    VRF.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MAX_ENTRIES / 4 {
            m.clear();
        }
        m.insert(key, output);
    });
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
        });
        assert!(super::key(super::Mode::Strict, k.address().as_bytes(), b"m", &sig.0).is_none());
        assert!(verify(&k.address(), Domain::Vote, &chain, b"m", &bad).is_err());
    }
}
