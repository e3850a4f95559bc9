//! Cost of one VRF proof and one VRF verification (RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI),
//! next to one ed25519 signature and verification for scale.

use agora_crypto::{vrf, Domain, Keypair};
use agora_types::Hash;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let key = Keypair::for_test(1);
    let address = key.address();
    let alpha = Hash::of(b"previous block seed");
    let proof = key.vrf_prove(alpha.as_bytes());
    let chain = Hash::ZERO;
    let signature = key.sign(Domain::Proposal, &chain, alpha.as_bytes());

    c.bench_function("vrf_prove", |b| b.iter(|| key.vrf_prove(alpha.as_bytes())));
    c.bench_function("vrf_verify", |b| {
        b.iter(|| vrf::verify(&address, alpha.as_bytes(), &proof).expect("valid proof"))
    });
    c.bench_function("ed25519_sign", |b| {
        b.iter(|| key.sign(Domain::Proposal, &chain, alpha.as_bytes()))
    });
    c.bench_function("ed25519_verify", |b| {
        b.iter(|| {
            agora_crypto::verify(
                &address,
                Domain::Proposal,
                &chain,
                alpha.as_bytes(),
                &signature,
            )
            .expect("valid signature")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
