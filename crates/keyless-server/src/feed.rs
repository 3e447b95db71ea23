//! What a server keeps in memory about the store (the RBAC index, disabled
//! principals, storage accounts and their keys, the signing keys, the tenants),
//! and how it follows changes made by other servers sharing the store.
//!
//! A change is applied here at once and announced on the store's change feed
//! (PostgreSQL `NOTIFY`); every other server applies it when the announcement
//! arrives, within milliseconds. A server that loses the feed reloads
//! everything when it is back, and every server reloads everything every
//! [`BACKSTOP`] as well, for an announcement lost with the server that was
//! about to send it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use keyless_core::Error;
use keyless_store::{PgListener, PostgresStore};

use crate::state::{AppState, SharedState};

/// How often every server reloads everything, whatever the feed said.
pub(crate) const BACKSTOP: Duration = Duration::from_secs(30);

/// One change to what servers keep in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Role definitions, role assignments or subscriptions.
    Rbac,
    /// A principal was disabled (or deleted), or enabled again.
    Principal { object_id: String, disabled: bool },
    /// A storage account: its keys, network rules or properties.
    Account(String),
    /// The signing keys (a rotation).
    SigningKeys,
    /// A new tenant.
    Tenant(String),
    /// A job started (its tokens are honoured) or ended (they are refused).
    Job { id: String, live: bool },
    /// A job's cancel was asked for: the server running it cancels it.
    Cancel(String),
}

impl Change {
    fn encode(&self) -> String {
        match self {
            Self::Rbac => "rbac".into(),
            Self::Principal {
                object_id,
                disabled,
            } => format!("principal {object_id} {}", u8::from(*disabled)),
            Self::Account(name) => format!("account {name}"),
            Self::SigningKeys => "signing-keys".into(),
            Self::Tenant(id) => format!("tenant {id}"),
            Self::Job { id, live } => format!("job {id} {}", u8::from(*live)),
            Self::Cancel(id) => format!("cancel {id}"),
        }
    }

    fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let change = match (words.next()?, words.next(), words.next()) {
            ("rbac", None, None) => Self::Rbac,
            ("principal", Some(id), Some(flag @ ("0" | "1"))) => Self::Principal {
                object_id: id.to_owned(),
                disabled: flag == "1",
            },
            ("account", Some(name), None) => Self::Account(name.to_owned()),
            ("signing-keys", None, None) => Self::SigningKeys,
            ("tenant", Some(id), None) => Self::Tenant(id.to_owned()),
            ("job", Some(id), Some(flag @ ("0" | "1"))) => Self::Job {
                id: id.to_owned(),
                live: flag == "1",
            },
            ("cancel", Some(id), None) => Self::Cancel(id.to_owned()),
            _ => return None,
        };
        words.next().is_none().then_some(change)
    }
}

impl AppState {
    /// Applies `change` to this server's memory and tells the others.
    pub(crate) async fn changed(&self, change: Change) -> Result<(), Error> {
        self.apply(&change).await?;
        let announced = format!("{} {}", self.instance, change.encode());
        crate::metrics::change("sent");
        if let Err(e) = self.store.announce(&announced).await {
            // The change is in the store; the others learn of it from their
            // next full reload.
            tracing::warn!(error = %e, change = ?change, "could not announce a change to the other servers");
        }
        Ok(())
    }

    async fn apply(&self, change: &Change) -> Result<(), Error> {
        match change {
            Change::Rbac => self.reload_rbac().await?,
            Change::Principal {
                object_id,
                disabled,
            } => self.verifier.set_disabled(object_id, *disabled),
            Change::Account(name) => self.forget_account_keys(name),
            Change::SigningKeys => {
                let ring =
                    crate::signing::load_ring(self.store.as_ref(), &self.master(), self.now())
                        .await?;
                self.verifier.set_ring(ring);
            }
            Change::Tenant(id) => {
                self.verifier.add_tenant(id);
                self.reload_rbac().await?;
            }
            Change::Job { id, live: true } => self.verifier.open_job(id),
            Change::Job { id, live: false } => self.verifier.close_job(id),
            Change::Cancel(id) => self.jobs.cancel_if_running(id),
        }
        Ok(())
    }

    /// Reads everything this server keeps in memory afresh from the store.
    pub(crate) async fn reload_all(&self) -> Result<(), Error> {
        let mut disabled = Vec::new();
        for tenant in self.store.tenants().await? {
            self.verifier.add_tenant(&tenant.id.to_string());
            disabled.extend(
                self.store
                    .principals(tenant.id, None)
                    .await?
                    .into_iter()
                    .filter(|p| !p.enabled)
                    .map(|p| p.object_id.to_string()),
            );
        }
        self.verifier.replace_disabled(disabled);
        self.forget_all_accounts();
        let ring =
            crate::signing::load_ring(self.store.as_ref(), &self.master(), self.now()).await?;
        if ring.current().kid() != self.verifier.ring().current().kid() {
            self.verifier.set_ring(ring);
        }
        self.reload_rbac().await
    }
}

/// Follows the change feed of `store` until `shutdown`: applies what other
/// servers announce, reloads everything after the feed was lost and every
/// [`BACKSTOP`]. `ready` is true while the feed is followed.
pub(crate) async fn follow(
    state: SharedState,
    store: PostgresStore,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut listener: Option<PgListener> = None;
    let mut backstop = tokio::time::interval(BACKSTOP);
    backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(feed) = listener.as_mut() else {
            match store.listen().await {
                Ok(l) => {
                    listener = Some(l);
                    // Whatever was announced before we listened is read now.
                    reload(&state, &ready).await;
                }
                Err(e) => {
                    ready.store(false, Ordering::Release);
                    tracing::warn!(error = %e, "the change feed is not followed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
            continue;
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = backstop.tick() => reload(&state, &ready).await,
            received = feed.try_recv() => match received {
                Ok(Some(note)) => {
                    let Some((from, text)) = note.payload().split_once(' ') else { continue };
                    if from == state.instance {
                        continue;
                    }
                    match Change::decode(text) {
                        Some(change) => {
                            crate::metrics::change("received");
                            if let Err(e) = state.apply(&change).await {
                                tracing::warn!(error = %e, ?change, "could not apply a change; reloading everything");
                                reload(&state, &ready).await;
                            }
                        }
                        None => tracing::warn!(payload = %note.payload(), "an unknown change on the feed"),
                    }
                }
                // The connection dropped and was made again: announcements in
                // between are lost.
                Ok(None) => {
                    tracing::warn!("the change feed was interrupted; reloading everything");
                    reload(&state, &ready).await;
                }
                Err(e) => {
                    ready.store(false, Ordering::Release);
                    tracing::warn!(error = %e, "the change feed failed; reconnecting");
                    listener = None;
                }
            },
        }
    }
}

async fn reload(state: &AppState, ready: &AtomicBool) {
    match state.reload_all().await {
        Ok(()) => ready.store(true, Ordering::Release),
        Err(e) => {
            ready.store(false, Ordering::Release);
            tracing::error!(error = %e, "could not reload from the store");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn changes_read_back_as_written_and_nothing_else_is_read() {
        for change in [
            Change::Rbac,
            Change::Principal {
                object_id: "0a1b".into(),
                disabled: true,
            },
            Change::Principal {
                object_id: "0a1b".into(),
                disabled: false,
            },
            Change::Account("acct".into()),
            Change::SigningKeys,
            Change::Tenant("t".into()),
            Change::Job {
                id: "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/jobs/j".into(),
                live: true,
            },
            Change::Cancel("/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/jobs/j".into()),
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        for junk in [
            "",
            "rbac x",
            "principal a 2",
            "account",
            "account a b",
            "cancel",
            "cancel a b",
            "drop",
        ] {
            assert_eq!(Change::decode(junk), None, "{junk:?}");
        }
    }
}
