//! The server's signing keys: unsealed at start, rotated on a schedule and on
//! demand. The ring keeps the current key and the one before it, so tokens signed
//! just before a rotation stay valid until they expire.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use keyless_auth::{KeyRing, MasterKey, SigningKey};
use keyless_core::Error;
use keyless_store::{MetaStore, SealedSigningKey};

use crate::state::SharedState;

pub(crate) fn context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// Loads the ring from the store, creating the first key when there is none.
pub(crate) async fn load_ring(
    store: &dyn MetaStore,
    master: &MasterKey,
    now: i64,
) -> Result<KeyRing, Error> {
    let mut sealed = store.signing_keys().await?;
    if sealed.is_empty() {
        add_key(store, master, now).await?;
        sealed = store.signing_keys().await?;
    }
    let keys = sealed
        .iter()
        .take(2)
        .map(|s| {
            let der = master.open(&context(&s.kid), &s.sealed)?;
            SigningKey::from_pkcs8(&der, s.created_at).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    KeyRing::new(keys)
}

async fn add_key(store: &dyn MetaStore, master: &MasterKey, now: i64) -> Result<String, Error> {
    let key = tokio::task::spawn_blocking(move || SigningKey::generate(now))
        .await
        .map_err(|e| Error::internal(format!("key generation task failed: {e}")))??;
    let der = key.to_pkcs8()?;
    let sealed = master.seal(&context(key.kid()), der.as_ref())?;
    store
        .signing_key_add(&SealedSigningKey {
            kid: key.kid().to_owned(),
            sealed,
            created_at: now,
        })
        .await?;
    Ok(key.kid().to_owned())
}

/// Makes a new signing key current; the previous one keeps verifying, older ones go.
pub(crate) async fn rotate(state: &SharedState) -> Result<String, Error> {
    let _guard = state.rotation.lock().await;
    let now = state.now();
    let kid = add_key(state.store.as_ref(), &state.master(), now).await?;
    if let Some(oldest_kept) = state.store.signing_keys().await?.get(1) {
        state
            .store
            .signing_keys_prune(oldest_kept.created_at)
            .await?;
    }
    // Every server (this one first) takes the new ring from the store.
    state.changed(crate::feed::Change::SigningKeys).await?;
    tracing::info!(kid = %kid, "signing key rotated");
    Ok(kid)
}

/// Rotates the key whenever the current one is older than the configured period.
pub(crate) async fn rotation_task(state: SharedState, shutdown: CancellationToken) {
    let period = state.config.key_rotation;
    let check = period
        .min(Duration::from_secs(600))
        .max(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(check) => {}
        }
        let age = state.now() - state.verifier.ring().current().created_at();
        if age >= i64::try_from(period.as_secs()).unwrap_or(i64::MAX)
            && let Err(e) = rotate(&state).await
        {
            tracing::error!(error = %e, "scheduled signing key rotation failed");
        }
    }
}
