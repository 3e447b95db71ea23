use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::keys::SigningKey;

const BASE: &str = "https://127.0.0.1:10010";
const TID: &str = "6b1a6a57-0f2f-4c43-8a6a-2a3b6f0c0001";
const STORAGE: &str = "https://storage.azure.com";

fn setup() -> (TokenVerifier, Arc<SigningKey>) {
    let key = Arc::new(SigningKey::generate(0).unwrap());
    let ring = KeyRing::new(vec![Arc::clone(&key)]).unwrap();
    (TokenVerifier::new(BASE, ring, [TID.to_owned()]), key)
}

fn claims(tid: &str, aud: &str, exp: i64) -> Claims {
    Claims {
        aud: aud.into(),
        iss: format!("{BASE}/{tid}/v2.0"),
        iat: 1000,
        nbf: 1000,
        exp,
        tid: tid.into(),
        oid: "o".into(),
        sub: "o".into(),
        xms_job: None,
        uti: "u".into(),
        ver: "1.0".into(),
        ..Claims::default()
    }
}

#[test]
fn a_good_token_verifies_and_then_comes_from_the_cache() {
    let (v, key) = setup();
    let token = jwt::sign(&key, &claims(TID, STORAGE, 5000)).unwrap();
    let first = v.verify(&token, &[STORAGE], 2000).unwrap();
    assert_eq!(first.oid, "o");
    let second = v
        .verify(&token, &["https://storage.azure.com/"], 2000)
        .unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "the second verification must be served by the cache"
    );
}

#[test]
fn the_cache_still_checks_expiry_and_audience() {
    let (v, key) = setup();
    let token = jwt::sign(&key, &claims(TID, STORAGE, 5000)).unwrap();
    v.verify(&token, &[STORAGE], 2000).unwrap();
    assert!(
        v.verify(&token, &[STORAGE], 5000 + SKEW_SECONDS)
            .unwrap_err()
            .is_expired()
    );
    assert!(matches!(
        v.verify(&token, &["https://vault.azure.net"], 2000),
        Err(VerifyError::Audience { .. })
    ));
}

/// Storage accepts its own resource and the account's URL: a token minted for
/// one account's URL must not open another account, nor a look-alike host,
/// whatever the cache holds.
#[test]
fn a_token_for_one_accounts_url_is_refused_by_another() {
    let (v, key) = setup();
    let own = "https://victim.blob.core.windows.net";
    let at_victim = [STORAGE, own];
    for aud in [
        "https://victim.blob.core.windows.net",
        "https://VICTIM.blob.core.windows.net/",
    ] {
        let token = jwt::sign(&key, &claims(TID, aud, 5000)).unwrap();
        assert!(v.verify(&token, &at_victim, 2000).is_ok(), "{aud}");
    }
    for aud in [
        "https://attacker.blob.core.windows.net",
        "https://victim.blob.core.windows.net.attacker.example",
        "https://victim.blob.core.windows.net/container",
        "http://victim.blob.core.windows.net",
        "https://victimx.blob.core.windows.net",
    ] {
        let token = jwt::sign(&key, &claims(TID, aud, 5000)).unwrap();
        assert!(
            matches!(
                v.verify(&token, &at_victim, 2000),
                Err(VerifyError::Audience { .. })
            ),
            "{aud}"
        );
    }
    // Verified (and cached) at its own account, then presented at another.
    let attackers = jwt::sign(
        &key,
        &claims(TID, "https://attacker.blob.core.windows.net", 5000),
    )
    .unwrap();
    v.verify(
        &attackers,
        &[STORAGE, "https://attacker.blob.core.windows.net"],
        2000,
    )
    .unwrap();
    assert!(matches!(
        v.verify(&attackers, &at_victim, 2000),
        Err(VerifyError::Audience { .. })
    ));
}

#[test]
fn refusals() {
    let (v, key) = setup();
    let good = jwt::sign(&key, &claims(TID, STORAGE, 5000)).unwrap();

    // Tampered payload: same signature, other claims.
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims(TID, STORAGE, 5000);
    forged.oid = "admin".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    parts[1] = &forged_payload;
    assert_eq!(
        v.verify(&parts.join("."), &[STORAGE], 2000).unwrap_err(),
        VerifyError::Signature
    );

    // alg=none with an empty signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none = format!("{none_header}.{}.", good.split('.').nth(1).unwrap());
    assert_eq!(
        v.verify(&none, &[STORAGE], 2000).unwrap_err(),
        VerifyError::Algorithm("none".into())
    );

    // Signed by a key the server does not hold.
    let stranger = SigningKey::generate(0).unwrap();
    let foreign = jwt::sign(&stranger, &claims(TID, STORAGE, 5000)).unwrap();
    assert_eq!(
        v.verify(&foreign, &[STORAGE], 2000).unwrap_err(),
        VerifyError::UnknownKey
    );

    // Unknown tenant, and a known tenant with another issuer.
    let other_tenant = jwt::sign(
        &key,
        &claims("00000000-0000-0000-0000-000000000009", STORAGE, 5000),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&other_tenant, &[STORAGE], 2000),
        Err(VerifyError::UnknownTenant(_))
    ));
    let mut wrong_iss = claims(TID, STORAGE, 5000);
    wrong_iss.iss = format!("https://evil.example/{TID}/v2.0");
    let wrong_iss = jwt::sign(&key, &wrong_iss).unwrap();
    assert!(matches!(
        v.verify(&wrong_iss, &[STORAGE], 2000),
        Err(VerifyError::Issuer(_))
    ));

    // Not yet valid, and garbage.
    assert!(matches!(
        v.verify(&good, &[STORAGE], 1000 - SKEW_SECONDS - 1),
        Err(VerifyError::NotYetValid(_))
    ));
    assert_eq!(
        v.verify("abc", &[STORAGE], 2000).unwrap_err(),
        VerifyError::Malformed
    );
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_key_leaves_the_ring() {
    let (v, old) = setup();
    let token = jwt::sign(&old, &claims(TID, STORAGE, 5000)).unwrap();
    let new = Arc::new(SigningKey::generate(1).unwrap());
    v.set_ring(KeyRing::new(vec![Arc::clone(&new), Arc::clone(&old)]).unwrap());
    assert!(v.verify(&token, &[STORAGE], 2000).is_ok());
    v.set_ring(KeyRing::new(vec![new]).unwrap());
    assert_eq!(
        v.verify(&token, &[STORAGE], 2000).unwrap_err(),
        VerifyError::UnknownKey
    );
}

#[test]
fn a_job_token_works_only_while_its_job_is_live() {
    let (v, key) = setup();
    let mut c = claims(TID, STORAGE, 5000);
    c.xms_job = Some("job-1".into());
    let token = jwt::sign(&key, &c).unwrap();
    assert_eq!(
        v.verify(&token, &[STORAGE], 2000).unwrap_err(),
        VerifyError::JobEnded("job-1".into())
    );
    v.open_job("job-1");
    v.verify(&token, &[STORAGE], 2000).unwrap();
    // Cached claims are checked against the live set on every use.
    v.close_job("job-1");
    assert_eq!(
        v.verify(&token, &[STORAGE], 2000).unwrap_err(),
        VerifyError::JobEnded("job-1".into())
    );
    // Tokens without a job are not affected.
    let plain = jwt::sign(&key, &claims(TID, STORAGE, 5000)).unwrap();
    v.verify(&plain, &[STORAGE], 2000).unwrap();
}

#[test]
fn a_disabled_principals_tokens_are_refused_at_once_even_when_cached() {
    let (v, key) = setup();
    let c = claims(TID, STORAGE, 5000);
    let token = jwt::sign(&key, &c).unwrap();
    v.verify(&token, &[STORAGE], 2000).unwrap();
    v.set_disabled(&c.oid.to_ascii_uppercase(), true);
    assert_eq!(
        v.verify(&token, &[STORAGE], 2000).unwrap_err(),
        VerifyError::PrincipalDisabled(c.oid.clone())
    );
    v.set_disabled(&c.oid, false);
    v.verify(&token, &[STORAGE], 2000).unwrap();
}
