//! The one token verification function every listener uses.
//!
//! A token is accepted when: it is a compact JWS with `alg` `RS256`; its `kid`
//! names a key of the ring (current or previous); the signature verifies; its
//! `tid` is a tenant this server hosts and `iss` is that tenant's issuer; the time
//! window holds within a small skew; and its audience is one the caller accepts.
//! Verified claims are cached by the whole token until they expire, so a repeated
//! token costs a hash lookup and a comparison instead of an RSA operation.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use quick_cache::Weighter;
use quick_cache::sync::{Cache, DefaultLifecycle};
use thiserror::Error;

use crate::claims::Claims;
use crate::jwt;
use crate::keys::KeyRing;

/// Seconds of clock skew tolerated on `nbf` and `exp`.
pub const SKEW_SECONDS: i64 = 60;

/// Why a token was refused. Messages are safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// Not a compact JWS with JSON parts.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// `alg` is not RS256 (`none` and HMAC algorithms included).
    #[error("the token's algorithm `{0}` is not accepted; tokens must be signed with RS256")]
    Algorithm(String),
    /// No key of the ring has this id.
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// The tenant is not hosted here.
    #[error("the token's tenant `{0}` is not known to this server")]
    UnknownTenant(String),
    /// `iss` does not match the tenant's issuer.
    #[error("the token's issuer `{0}` is not the issuer of its tenant")]
    Issuer(String),
    /// Past `exp`.
    #[error("the token expired at {0} (seconds since the epoch)")]
    Expired(i64),
    /// Before `nbf`.
    #[error("the token is not valid before {0} (seconds since the epoch)")]
    NotYetValid(i64),
    /// The token was issued to a job that has ended.
    #[error("the token was issued to job `{0}`, which has ended")]
    JobEnded(String),
    /// The token's principal was disabled or deleted after it was issued.
    #[error("the token's principal `{0}` is disabled or was deleted")]
    PrincipalDisabled(String),
    /// The audience is not one the resource accepts.
    #[error("the token's audience `{got}` is not valid here; expected `{expected}`")]
    Audience {
        /// The token's `aud`.
        got: String,
        /// The accepted audience.
        expected: String,
    },
}

impl VerifyError {
    /// Whether the refusal is because the token ran out (clients then fetch a new one).
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired(_))
    }
}

#[derive(Debug)]
struct State {
    ring: KeyRing,
    tenants: HashSet<String>,
}

/// The tokens whose verification is kept, about…
const CACHED_TOKENS: usize = 16_384;
/// …and the bytes they may take at most (tokens and claims), whatever their
/// number. A hit is checked for its lifetime again, so an expired token that
/// lingers until it is evicted is refused all the same.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A cached verification's weight: its token, and about as much again for the claims.
#[derive(Debug, Clone)]
struct ByLength;

impl Weighter<String, Arc<Claims>> for ByLength {
    fn weight(&self, token: &String, _: &Arc<Claims>) -> u64 {
        2 * token.len() as u64 + 256
    }
}

/// Verifies access tokens against the server's key ring and tenants.
pub struct TokenVerifier {
    issuer_base: String,
    state: RwLock<Arc<State>>,
    cache: Cache<String, Arc<Claims>, ByLength, foldhash::fast::RandomState>,
    /// Jobs whose tokens are honoured: a token naming a job (`xms_job`) works
    /// only while its job is in this set.
    live_jobs: RwLock<HashSet<String>>,
    /// Principals (object ids, lowercase) whose tokens are refused at once,
    /// whatever their lifetime: disabled or deleted since the tokens were issued.
    disabled: RwLock<HashSet<String>>,
}

impl TokenVerifier {
    /// A verifier for tokens issued under `issuer_base` (`https://host:port`) by the
    /// keys of `ring` for the tenants `tenants`.
    pub fn new(
        issuer_base: impl Into<String>,
        ring: KeyRing,
        tenants: impl IntoIterator<Item = String>,
    ) -> Self {
        let tenants = tenants
            .into_iter()
            .map(|t| t.to_ascii_lowercase())
            .collect();
        Self {
            issuer_base: issuer_base.into(),
            state: RwLock::new(Arc::new(State { ring, tenants })),
            cache: Cache::with(
                CACHED_TOKENS,
                CACHE_BYTES,
                ByLength,
                foldhash::fast::RandomState::default(),
                DefaultLifecycle::default(),
            ),
            live_jobs: RwLock::new(HashSet::new()),
            disabled: RwLock::new(HashSet::new()),
        }
    }

    /// The issuer of tokens of `tenant_id`.
    pub fn issuer(&self, tenant_id: &str) -> String {
        format!("{}/{}/v2.0", self.issuer_base, tenant_id)
    }

    /// The key ring tokens are signed with now.
    pub fn ring(&self) -> KeyRing {
        self.state().ring.clone()
    }

    /// Replaces the key ring (after a rotation) and forgets cached results.
    pub fn set_ring(&self, ring: KeyRing) {
        let tenants = self.state().tenants.clone();
        self.replace(State { ring, tenants });
    }

    /// Adds a tenant whose tokens are accepted.
    pub fn add_tenant(&self, tenant_id: &str) {
        let state = self.state();
        let mut tenants = state.tenants.clone();
        tenants.insert(tenant_id.to_ascii_lowercase());
        self.replace(State {
            ring: state.ring.clone(),
            tenants,
        });
    }

    /// Verifies `token` for one of `audiences` at time `now`.
    ///
    /// # Errors
    /// The [`VerifyError`] that says why the token is refused.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[&str],
        now: i64,
    ) -> Result<Arc<Claims>, VerifyError> {
        let claims = match self.cache.get(token) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_uncached(token)?);
                self.cache.insert(token.to_owned(), Arc::clone(&claims));
                claims
            }
        };
        check_window(&claims, now)?;
        check_audience(&claims.aud, audiences)?;
        if let Some(job) = &claims.xms_job
            && !self.job_is_live(job)
        {
            return Err(VerifyError::JobEnded(job.clone()));
        }
        if self.is_disabled(&claims.oid) {
            return Err(VerifyError::PrincipalDisabled(claims.oid.clone()));
        }
        Ok(claims)
    }

    /// Refuses (`true`) or honours again (`false`) every token of the principal
    /// `object_id`.
    pub fn set_disabled(&self, object_id: &str, disabled: bool) {
        let mut set = match self.disabled.write() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        if disabled {
            set.insert(object_id.to_ascii_lowercase());
        } else {
            set.remove(&object_id.to_ascii_lowercase());
        }
    }

    /// Replaces the whole set of principals whose tokens are refused (after the
    /// directory was read afresh).
    pub fn replace_disabled(&self, object_ids: impl IntoIterator<Item = String>) {
        let fresh: HashSet<String> = object_ids
            .into_iter()
            .map(|id| id.to_ascii_lowercase())
            .collect();
        match self.disabled.write() {
            Ok(mut set) => *set = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// Whether every token of the principal `object_id` is refused.
    pub fn is_disabled(&self, object_id: &str) -> bool {
        let set = match self.disabled.read() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        !set.is_empty() && set.contains(&object_id.to_ascii_lowercase())
    }

    /// Starts honouring tokens issued to `job`.
    pub fn open_job(&self, job: &str) {
        match self.live_jobs.write() {
            Ok(mut set) => set.insert(job.to_owned()),
            Err(poisoned) => poisoned.into_inner().insert(job.to_owned()),
        };
    }

    /// Stops honouring every token issued to `job`, at once.
    pub fn close_job(&self, job: &str) {
        match self.live_jobs.write() {
            Ok(mut set) => set.remove(job),
            Err(poisoned) => poisoned.into_inner().remove(job),
        };
    }

    /// Whether tokens issued to `job` are honoured.
    pub fn job_is_live(&self, job: &str) -> bool {
        match self.live_jobs.read() {
            Ok(set) => set.contains(job),
            Err(poisoned) => poisoned.into_inner().contains(job),
        }
    }

    /// Everything [`TokenVerifier::verify`] checks except the time window and the
    /// audience, without the cache.
    ///
    /// # Errors
    /// The [`VerifyError`] that says why the token is refused.
    pub fn verify_uncached(&self, token: &str) -> Result<Claims, VerifyError> {
        let parts = jwt::split(token).map_err(|_| VerifyError::Malformed)?;
        if parts.header.alg != "RS256" {
            return Err(VerifyError::Algorithm(parts.header.alg));
        }
        let state = self.state();
        let key = parts
            .header
            .kid
            .as_deref()
            .and_then(|kid| state.ring.find(kid))
            .ok_or(VerifyError::UnknownKey)?;
        if !key.verify(parts.signed.as_bytes(), &parts.signature) {
            return Err(VerifyError::Signature);
        }
        let claims: Claims = jwt::claims(&parts).map_err(|_| VerifyError::Malformed)?;
        if !state.tenants.contains(&claims.tid.to_ascii_lowercase()) {
            return Err(VerifyError::UnknownTenant(claims.tid));
        }
        if claims.iss != self.issuer(&claims.tid) {
            return Err(VerifyError::Issuer(claims.iss));
        }
        Ok(claims)
    }

    fn state(&self) -> Arc<State> {
        match self.state.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, state: State) {
        match self.state.write() {
            Ok(mut guard) => *guard = Arc::new(state),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(state),
        }
        self.cache.clear();
    }
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer_base", &self.issuer_base)
            .finish_non_exhaustive()
    }
}

fn check_window(claims: &Claims, now: i64) -> Result<(), VerifyError> {
    if now >= claims.exp + SKEW_SECONDS {
        return Err(VerifyError::Expired(claims.exp));
    }
    if now + SKEW_SECONDS < claims.nbf {
        return Err(VerifyError::NotYetValid(claims.nbf));
    }
    Ok(())
}

/// Compares audiences as Azure does: case-insensitively, with or without a trailing `/`.
pub fn same_audience(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn check_audience(aud: &str, accepted: &[&str]) -> Result<(), VerifyError> {
    if accepted.iter().any(|a| same_audience(a, aud)) {
        return Ok(());
    }
    Err(VerifyError::Audience {
        got: aud.to_owned(),
        expected: accepted.join("` or `"),
    })
}

#[cfg(test)]
mod tests;
