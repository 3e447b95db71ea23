//! Rotating the master key: everything it seals (token-signing keys, storage
//! account keys, the data keys of vault secrets) is resealed under a new key,
//! without touching any secret value.
//!
//! Crash-safe by order: the key file first holds the new key *and* the old one,
//! so whatever state the store is in opens; then everything is resealed; only then
//! does the file keep the new key alone. A rotation cut short is finished by the
//! next one.

use std::path::PathBuf;

use keyless_auth::seal::MasterKey;
use keyless_core::Error;

use crate::state::SharedState;

/// The file the master key lives in.
pub(crate) fn key_file(config: &crate::config::Config) -> PathBuf {
    config
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("master.key"))
}

/// What a rotation resealed.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Resealed {
    signing_keys: usize,
    storage_account_keys: usize,
    registry_passwords: usize,
    secret_versions: usize,
}

/// Rotates the master key; see the module documentation.
pub(crate) async fn rotate(state: &SharedState) -> Result<Resealed, Error> {
    let _one_at_a_time = state.master_rotation.lock().await;
    let path = key_file(&state.config);
    let on_disk = std::fs::read(&path)
        .map_err(|e| Error::internal(format!("cannot read `{}`: {e}", path.display())))?;
    let current = on_disk
        .get(..MasterKey::LEN)
        .ok_or_else(|| Error::internal("the master key file is too short"))?
        .to_vec();
    let new = MasterKey::generate_bytes()?;
    let both = [new.as_slice(), current.as_slice()].concat();
    crate::tls::write_private(&path, &both)?;
    // From here on, new seals use the new key and both keys open.
    state.set_master(MasterKey::from_bytes(&both)?);
    let ring = state.master();
    let new_only = MasterKey::from_bytes(&new)?;
    // Two passes: the second catches what a concurrent write sealed under the old
    // key just before the switch.
    let done = reseal(state, &ring, &new_only).await?;
    reseal(state, &ring, &new_only).await?;
    crate::tls::write_private(&path, &new)?;
    state.set_master(new_only);
    tracing::info!(
        signing_keys = done.signing_keys,
        storage_account_keys = done.storage_account_keys,
        secret_versions = done.secret_versions,
        "master key rotated"
    );
    Ok(done)
}

/// Reseals under `ring` (new key first) whatever `new_only` cannot open yet.
async fn reseal(
    state: &SharedState,
    ring: &MasterKey,
    new_only: &MasterKey,
) -> Result<Resealed, Error> {
    let mut done = Resealed::default();
    let stale = |context: &str, sealed: &[u8]| new_only.open(context, sealed).is_err();
    for key in state.store.signing_keys().await? {
        let context = crate::signing::context(&key.kid);
        if stale(&context, &key.sealed) {
            let sealed = ring.reseal(&context, &key.sealed)?;
            state.store.signing_key_reseal(&key.kid, &sealed).await?;
            done.signing_keys += 1;
        }
    }
    for sub in state.store.subscriptions_all().await? {
        for mut account in state.store.accounts(&sub.id, None).await? {
            let (c1, c2) = (
                format!("storage-key:{}:key1", account.name),
                format!("storage-key:{}:key2", account.name),
            );
            if stale(&c1, &account.key1) || stale(&c2, &account.key2) {
                account.key1 = ring.reseal(&c1, &account.key1)?;
                account.key2 = ring.reseal(&c2, &account.key2)?;
                state.store.account_update(&account).await?;
                done.storage_account_keys += 2;
            }
        }
        for mut registry in state.store.registries(&sub.id, None).await? {
            let (c1, c2) = (
                crate::registry::password_context(&registry.name, "password"),
                crate::registry::password_context(&registry.name, "password2"),
            );
            if stale(&c1, &registry.password1) || stale(&c2, &registry.password2) {
                registry.password1 = ring.reseal(&c1, &registry.password1)?;
                registry.password2 = ring.reseal(&c2, &registry.password2)?;
                state.store.registry_update(&registry).await?;
                done.registry_passwords += 2;
            }
        }
    }
    let mut rewrapped = Vec::new();
    for s in state.store.all_secret_versions().await? {
        let context =
            MasterKey::data_key_context(&crate::vault::context(&s.vault, &s.name, &s.version));
        if stale(&context, &s.wrapped_key) {
            let wrapped = ring.reseal(&context, &s.wrapped_key)?;
            rewrapped.push((s.vault, s.name, s.version, wrapped));
        }
    }
    done.secret_versions = rewrapped.len();
    state.store.secret_keys_rewrap(&rewrapped).await?;
    Ok(done)
}
