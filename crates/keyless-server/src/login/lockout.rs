//! Password sign-ins under attack: smart lockout and a bounded hashing pool.
//!
//! Entra's shape: after [`USER_THRESHOLD`] wrong passwords for one user name
//! within [`WINDOW`] seconds, that name is locked for [`LOCKOUT`] seconds
//! (`AADSTS50053`), the right password included; an address that fails
//! [`ADDRESS_THRESHOLD`] times in the window is locked the same way, whatever
//! names it tries. Names are counted whether or not they exist, so a lockout
//! says nothing about existence. The failures are counted in the metadata
//! store, so every server sharing it counts them together; the store holds
//! keyed digests of the names and addresses, never the names themselves.
//!
//! Password hashes cost about 19 MiB and a core's worth of time each: at most
//! as many run at once as the machine has cores, and the rest wait their turn
//! instead of growing the process.

use std::net::IpAddr;
use std::sync::OnceLock;

use tokio::sync::Semaphore;

use keyless_auth::secret;
use keyless_core::Error;
use keyless_store::MetaStore;

/// Wrong passwords for one name within the window before it locks.
pub(crate) const USER_THRESHOLD: u32 = 10;
/// Wrong passwords from one address within the window before it locks.
pub(crate) const ADDRESS_THRESHOLD: u32 = 30;
/// Seconds over which failures are counted.
pub(crate) const WINDOW: i64 = 60;
/// Seconds a lock lasts.
pub(crate) const LOCKOUT: i64 = 60;

/// The setting that keeps the key of the digests, shared by the servers.
const KEY_SETTING: &str = "sign-in.key";

/// The sign-in guard of a server.
#[derive(Debug)]
pub(crate) struct SignIns {
    hashing: Semaphore,
    /// Keys the digests of names and addresses ([`SignIns::open`]).
    key: OnceLock<String>,
}

impl Default for SignIns {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            hashing: Semaphore::new(cores),
            key: OnceLock::new(),
        }
    }
}

impl SignIns {
    /// Takes the key of the digests from the store, made there on first use.
    ///
    /// # Errors
    /// When the store cannot be read or written.
    pub(crate) async fn open(&self, store: &dyn MetaStore) -> Result<(), Error> {
        let key = match store.setting(KEY_SETTING).await? {
            Some(key) => key,
            None => {
                let key = secret::random_token()?;
                store.setting_set(KEY_SETTING, &key).await?;
                // Two servers starting at once: the last write is everyone's.
                store.setting(KEY_SETTING).await?.unwrap_or(key)
            }
        };
        let _ = self.key.set(key);
        Ok(())
    }

    /// Whether a sign-in for `name` from `address` is locked out now.
    pub(crate) async fn locked(
        &self,
        store: &dyn MetaStore,
        name: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<bool, Error> {
        for (key, _) in self.keys(name, address).into_iter().flatten() {
            if store.sign_in_locked_until(&key).await? > now {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Counts a wrong password for `name` from `address`.
    pub(crate) async fn failed(
        &self,
        store: &dyn MetaStore,
        name: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<(), Error> {
        for (key, threshold) in self.keys(name, address).into_iter().flatten() {
            store
                .sign_in_failed(&key, now, WINDOW, threshold, LOCKOUT)
                .await?;
        }
        Ok(())
    }

    /// Forgets the failures of `name` after a right password.
    pub(crate) async fn succeeded(&self, store: &dyn MetaStore, name: &str) -> Result<(), Error> {
        store.sign_in_forget(&self.name_key(name)).await
    }

    /// Checks `password` against `hash`, or hashes it against nothing when there
    /// is no hash (an unknown user), so both take the same time. Waits for a
    /// free core first.
    pub(crate) async fn verify(&self, password: &str, hash: Option<String>) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || match hash {
            Some(h) => secret::verify_password(&password, &h),
            None => {
                let _ = secret::hash_password(&password);
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    fn digest(&self, kind: &str, value: &str) -> String {
        let key = self.key.get().map_or("", String::as_str);
        let digest = secret::digest_secret(&format!("{key}\n{kind}\n{value}"));
        format!("{kind}:{}", digest.get(..32).unwrap_or(&digest))
    }

    fn name_key(&self, name: &str) -> String {
        self.digest("name", &name.trim().to_ascii_lowercase())
    }

    fn keys(&self, name: &str, address: Option<IpAddr>) -> [Option<(String, u32)>; 2] {
        [
            Some((self.name_key(name), USER_THRESHOLD)),
            address.map(|a| (self.digest("address", &a.to_string()), ADDRESS_THRESHOLD)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, keyless_store::SqliteStore, SignIns) {
        let dir = tempfile::tempdir().unwrap();
        let store = keyless_store::SqliteStore::open(&dir.path().join("meta.sqlite"))
            .await
            .unwrap();
        let s = SignIns::default();
        s.open(&store).await.unwrap();
        (dir, store, s)
    }

    #[tokio::test]
    async fn a_name_locks_after_its_threshold_whatever_the_address_and_unlocks_after_the_lockout() {
        let (_dir, db, s) = store().await;
        for n in 0..USER_THRESHOLD {
            assert!(!s.locked(&db, "Alice@x", None, 100).await.unwrap());
            let from = IpAddr::from([127, 0, 0, u8::try_from(n % 200).unwrap_or(1) + 1]);
            s.failed(&db, "alice@x", Some(from), 100).await.unwrap();
        }
        assert!(s.locked(&db, "ALICE@x", None, 101).await.unwrap());
        assert!(!s.locked(&db, "bob@x", None, 101).await.unwrap());
        assert!(!s.locked(&db, "alice@x", None, 100 + LOCKOUT).await.unwrap());
    }

    #[tokio::test]
    async fn an_address_locks_after_its_threshold_across_names() {
        let (_dir, db, s) = store().await;
        let from = Some(IpAddr::from([127, 0, 0, 9]));
        for n in 0..ADDRESS_THRESHOLD {
            s.failed(&db, &format!("user{n}@x"), from, 100)
                .await
                .unwrap();
        }
        assert!(s.locked(&db, "someone-new@x", from, 100).await.unwrap());
        let elsewhere = Some(IpAddr::from([127, 0, 0, 8]));
        assert!(
            !s.locked(&db, "someone-new@x", elsewhere, 100)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn failures_outside_the_window_do_not_add_up_and_success_clears_them() {
        let (_dir, db, s) = store().await;
        for n in 0..USER_THRESHOLD - 1 {
            s.failed(&db, "carol@x", None, i64::from(n) * WINDOW)
                .await
                .unwrap();
        }
        let later = i64::from(USER_THRESHOLD) * WINDOW;
        assert!(!s.locked(&db, "carol@x", None, later).await.unwrap());
        for _ in 0..USER_THRESHOLD - 1 {
            s.failed(&db, "dave@x", None, 5).await.unwrap();
        }
        s.succeeded(&db, "dave@x").await.unwrap();
        s.failed(&db, "dave@x", None, 6).await.unwrap();
        assert!(!s.locked(&db, "dave@x", None, 6).await.unwrap());
    }

    #[tokio::test]
    async fn the_store_holds_no_name_and_servers_sharing_it_share_the_key() {
        let (_dir, db, s) = store().await;
        s.failed(&db, "erin@x", Some(IpAddr::from([127, 0, 0, 7])), 100)
            .await
            .unwrap();
        assert!(!s.name_key("erin@x").contains("erin"));
        // A second server on the same store counts under the same keys.
        let other = SignIns::default();
        other.open(&db).await.unwrap();
        assert_eq!(other.name_key("Erin@X"), s.name_key("erin@x"));
    }
}
