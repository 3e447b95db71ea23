//! Password sign-ins under attack: smart lockout and a bounded hashing pool.
//!
//! Entra's shape: after [`USER_THRESHOLD`] wrong passwords for one user name
//! within [`WINDOW`] seconds, that name is locked for [`LOCKOUT`] seconds
//! (`AADSTS50053`), the right password included; an address that fails
//! [`ADDRESS_THRESHOLD`] times in the window is locked the same way, whatever
//! names it tries. Names are counted whether or not they exist, so a lockout
//! says nothing about existence.
//!
//! Password hashes cost about 19 MiB and a core's worth of time each: at most
//! as many run at once as the machine has cores, and the rest wait their turn
//! instead of growing the process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use tokio::sync::Semaphore;

use keyless_auth::secret;

/// Wrong passwords for one name within the window before it locks.
pub(crate) const USER_THRESHOLD: u32 = 10;
/// Wrong passwords from one address within the window before it locks.
pub(crate) const ADDRESS_THRESHOLD: u32 = 30;
/// Seconds over which failures are counted.
pub(crate) const WINDOW: i64 = 60;
/// Seconds a lock lasts.
pub(crate) const LOCKOUT: i64 = 60;
/// Names and addresses tracked at most; the oldest windows go first.
const TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Name(u64),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: i64,
    count: u32,
    locked_until: i64,
}

/// The sign-in guard of a server.
#[derive(Debug)]
pub(crate) struct SignIns {
    hashing: Semaphore,
    failures: Mutex<HashMap<Key, Failures>>,
    /// Keys the names' hashes, so the table holds no user names.
    seed: [u8; 16],
}

impl Default for SignIns {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let mut seed = [0u8; 16];
        seed.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self {
            hashing: Semaphore::new(cores),
            failures: Mutex::new(HashMap::new()),
            seed,
        }
    }
}

impl SignIns {
    /// Whether a sign-in for `name` from `address` is locked out now.
    pub(crate) fn locked(&self, name: &str, address: Option<IpAddr>, now: i64) -> bool {
        let table = self.table();
        self.keys(name, address)
            .iter()
            .flatten()
            .any(|k| table.get(k).is_some_and(|f| f.locked_until > now))
    }

    /// Counts a wrong password for `name` from `address`.
    pub(crate) fn failed(&self, name: &str, address: Option<IpAddr>, now: i64) {
        let keys = self.keys(name, address);
        let mut table = self.table();
        if table.len() >= TRACKED {
            table.retain(|_, f| f.locked_until > now || f.since + WINDOW > now);
            if table.len() >= TRACKED {
                return;
            }
        }
        for key in keys.into_iter().flatten() {
            let threshold = match key {
                Key::Name(_) => USER_THRESHOLD,
                Key::Address(_) => ADDRESS_THRESHOLD,
            };
            let f = table.entry(key).or_insert(Failures {
                since: now,
                count: 0,
                locked_until: 0,
            });
            if f.since + WINDOW <= now {
                *f = Failures {
                    since: now,
                    count: 0,
                    locked_until: f.locked_until,
                };
            }
            f.count += 1;
            if f.count >= threshold {
                f.locked_until = now + LOCKOUT;
            }
        }
    }

    /// Forgets the failures of `name` after a right password.
    pub(crate) fn succeeded(&self, name: &str) {
        let key = self.name_key(name);
        self.table().remove(&key);
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

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn name_key(&self, name: &str) -> Key {
        let mut input = self.seed.to_vec();
        input.extend_from_slice(name.trim().to_ascii_lowercase().as_bytes());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.as_ref().get(..8).unwrap_or(&[0; 8]));
        Key::Name(u64::from_le_bytes(first))
    }

    fn keys(&self, name: &str, address: Option<IpAddr>) -> [Option<Key>; 2] {
        [Some(self.name_key(name)), address.map(Key::Address)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_locks_after_its_threshold_whatever_the_address_and_unlocks_after_the_lockout() {
        let s = SignIns::default();
        for n in 0..USER_THRESHOLD {
            assert!(!s.locked("Alice@x", None, 100));
            let from = IpAddr::from([127, 0, 0, u8::try_from(n % 200).unwrap_or(1) + 1]);
            s.failed("alice@x", Some(from), 100);
        }
        assert!(s.locked("ALICE@x", None, 101));
        assert!(!s.locked("bob@x", None, 101));
        assert!(!s.locked("alice@x", None, 100 + LOCKOUT));
    }

    #[test]
    fn an_address_locks_after_its_threshold_across_names() {
        let s = SignIns::default();
        let from = Some(IpAddr::from([127, 0, 0, 9]));
        for n in 0..ADDRESS_THRESHOLD {
            s.failed(&format!("user{n}@x"), from, 100);
        }
        assert!(s.locked("someone-new@x", from, 100));
        assert!(!s.locked("someone-new@x", Some(IpAddr::from([127, 0, 0, 8])), 100));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up_and_success_clears_them() {
        let s = SignIns::default();
        for n in 0..USER_THRESHOLD - 1 {
            s.failed("carol@x", None, i64::from(n) * WINDOW);
        }
        assert!(!s.locked("carol@x", None, i64::from(USER_THRESHOLD) * WINDOW));
        for _ in 0..USER_THRESHOLD - 1 {
            s.failed("dave@x", None, 5);
        }
        s.succeeded("dave@x");
        s.failed("dave@x", None, 6);
        assert!(!s.locked("dave@x", None, 6));
    }
}
