#![allow(missing_docs, reason = "criterion generates undocumented items")]
#![allow(clippy::expect_used, reason = "a benchmark stops at the first failure")]
//! Token signing and verification against the raw RS256 rate of aws-lc-rs on the
//! same machine, in one run: `cargo bench -p keyless-auth --bench tokens`.

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};

use keyless_auth::{Claims, KeyRing, SigningKey, TokenVerifier, jwt};

const BASE: &str = "https://127.0.0.1:10010";
const TID: &str = "6b1a6a57-0f2f-4c43-8a6a-2a3b6f0c0001";
const AUD: &str = "https://storage.azure.com";

fn claims() -> Claims {
    Claims {
        aud: AUD.into(),
        iss: format!("{BASE}/{TID}/v2.0"),
        iat: 1_000,
        nbf: 1_000,
        exp: i64::MAX / 4,
        tid: TID.into(),
        oid: "9f3b2c1e-1111-4a4a-8b8b-0123456789ab".into(),
        sub: "9f3b2c1e-1111-4a4a-8b8b-0123456789ab".into(),
        appid: Some("5e0ad4c2-2222-4b4b-9c9c-0123456789ab".into()),
        azp: Some("5e0ad4c2-2222-4b4b-9c9c-0123456789ab".into()),
        appidacr: Some("1".into()),
        idtyp: Some("app".into()),
        xms_job: None,
        uti: "bench".into(),
        ver: "2.0".into(),
        ..Claims::default()
    }
}

fn bench(c: &mut Criterion) {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
    let spki = pair.public_key().as_der().expect("spki");
    let public = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, spki.as_ref())
        .expect("public key");
    let message = vec![7u8; 900];
    let rng = SystemRandom::new();
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, &message, &mut sig)
        .expect("sign");

    let mut raw = c.benchmark_group("raw_rs256");
    raw.bench_function("sign", |b| {
        b.iter(|| {
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                black_box(&message),
                &mut sig,
            )
            .expect("sign")
        })
    });
    raw.bench_function("verify", |b| {
        b.iter(|| {
            public
                .verify_sig(black_box(&message), black_box(&sig))
                .expect("verify")
        })
    });
    raw.finish();

    let key = Arc::new(SigningKey::generate(0).expect("keygen"));
    let verifier = TokenVerifier::new(
        BASE,
        KeyRing::new(vec![Arc::clone(&key)]).expect("ring"),
        [TID.to_owned()],
    );
    let claims = claims();
    let token = jwt::sign(&key, &claims).expect("token");

    let mut tokens = c.benchmark_group("token");
    tokens.bench_function("issue", |b| {
        b.iter(|| jwt::sign(&key, black_box(&claims)).expect("token"))
    });
    tokens.bench_function("verify_uncached", |b| {
        b.iter(|| verifier.verify_uncached(black_box(&token)).expect("valid"))
    });
    verifier.verify(&token, &[AUD], 2_000).expect("valid");
    tokens.bench_function("verify_cached", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&token), &[AUD], 2_000)
                .expect("valid")
        })
    });
    tokens.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
