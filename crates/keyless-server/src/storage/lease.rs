//! Leases on blobs and containers: the state a stored lease is in at a given
//! time, the checks writes and deletes face while one is held, and Lease Blob /
//! Lease Container (acquire, renew, change, release, break).

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use keyless_core::{Error, ErrorKind};
use keyless_store::{Container, Lease};

use super::Ctx;
use super::blob::{Modify, insert};
use super::conditions::{Conditions, condition_error};
use super::error::StorageError;
use super::names;
use super::xml::http_date;

/// Lease times are kept in milliseconds: a lease of 15 seconds must neither end
/// early nor outlive its holder's sleep by most of a second. The server clock's
/// seconds, with the sub-second part of the system's.
pub(crate) fn now(state: &crate::state::SharedState) -> i64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::from(d.subsec_millis()));
    state.now() * 1000 + millis
}

/// Where a lease stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Available,
    Leased,
    Expired,
    Breaking,
    Broken,
}

impl State {
    pub(crate) fn of(lease: Option<&Lease>, now: i64) -> Self {
        let Some(lease) = lease else {
            return Self::Available;
        };
        match (lease.broken_at, lease.expires_at) {
            (Some(at), _) if now < at => Self::Breaking,
            (Some(_), _) => Self::Broken,
            (None, Some(at)) if now >= at => Self::Expired,
            _ => Self::Leased,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Leased => "leased",
            Self::Expired => "expired",
            Self::Breaking => "breaking",
            Self::Broken => "broken",
        }
    }

    /// Whether writes need the lease id.
    fn active(self) -> bool {
        matches!(self, Self::Leased | Self::Breaking)
    }
}

/// `x-ms-lease-status`, `-state` and, while leased, `-duration`.
pub(crate) fn headers(h: &mut HeaderMap, lease: Option<&Lease>, now: i64) {
    let state = State::of(lease, now);
    let status = if state.active() { "locked" } else { "unlocked" };
    h.insert(names::X_MS_LEASE_STATUS, HeaderValue::from_static(status));
    h.insert(
        names::X_MS_LEASE_STATE,
        HeaderValue::from_static(state.name()),
    );
    if let (State::Leased, Some(l)) = (state, lease) {
        let duration = if l.duration < 0 { "infinite" } else { "fixed" };
        h.insert(
            names::X_MS_LEASE_DURATION,
            HeaderValue::from_static(duration),
        );
    }
}

/// The lease elements of a listing's `<Properties>`.
pub(crate) fn xml(lease: Option<&Lease>, now: i64) -> String {
    let state = State::of(lease, now);
    let status = if state.active() { "locked" } else { "unlocked" };
    let mut out = format!(
        "<LeaseStatus>{status}</LeaseStatus><LeaseState>{}</LeaseState>",
        state.name()
    );
    if let (State::Leased, Some(l)) = (state, lease) {
        let duration = if l.duration < 0 { "infinite" } else { "fixed" };
        out.push_str(&format!("<LeaseDuration>{duration}</LeaseDuration>"));
    }
    out
}

/// How a lease check failed, carried through the store's precondition as the
/// error's message and turned into Azure's reply by [`refusal`].
const MISSING: &str = "lease id missing";
const MISMATCH: &str = "lease id mismatch";
const NOT_PRESENT: &str = "no lease";

/// What a request presenting `presented` (its `x-ms-lease-id`) may do to something
/// holding `lease`: writes to a leased resource need its id; a read or write that
/// names a lease needs that lease to be the one held.
pub(crate) fn check(
    lease: Option<&Lease>,
    presented: Option<&str>,
    now: i64,
    write: bool,
) -> Result<(), Error> {
    let state = State::of(lease, now);
    let failed = |what: &str| Error::new(ErrorKind::PreconditionFailed, what);
    match (presented, lease) {
        (None, _) if write && state.active() => Err(failed(MISSING)),
        (None, _) => Ok(()),
        (Some(id), Some(l)) if state.active() => {
            if l.id == id {
                Ok(())
            } else {
                Err(failed(MISMATCH))
            }
        }
        (Some(_), _) => Err(failed(NOT_PRESENT)),
    }
}

/// The reply for a failed [`check`] on a blob or a container, if `e` is one.
pub(crate) fn refusal(e: &Error, on_container: bool) -> Option<StorageError> {
    if e.kind() != ErrorKind::PreconditionFailed {
        return None;
    }
    let what = if on_container { "container" } else { "blob" };
    let (code, message) = match e.message() {
        MISSING => (
            "LeaseIdMissing",
            format!(
                "There is currently a lease on the {what} and no lease ID was specified in the request."
            ),
        ),
        MISMATCH if on_container => (
            "LeaseIdMismatchWithContainerOperation",
            "The lease ID specified did not match the lease ID for the container.".to_owned(),
        ),
        MISMATCH => (
            "LeaseIdMismatchWithBlobOperation",
            "The lease ID specified did not match the lease ID for the blob.".to_owned(),
        ),
        NOT_PRESENT if on_container => (
            "LeaseNotPresentWithContainerOperation",
            "There is currently no lease on the container.".to_owned(),
        ),
        NOT_PRESENT => (
            "LeaseNotPresentWithBlobOperation",
            "There is currently no lease on the blob.".to_owned(),
        ),
        _ => return None,
    };
    Some(StorageError::new(
        StatusCode::PRECONDITION_FAILED,
        code,
        message,
    ))
}

fn conflict(code: &'static str, message: &str) -> StorageError {
    StorageError::new(StatusCode::CONFLICT, code, message)
}

/// What a lease action answers besides the resource's ETag.
struct Outcome {
    lease: Option<Lease>,
    status: StatusCode,
    lease_id: Option<String>,
    lease_time: Option<i64>,
}

/// Applies the request's `x-ms-lease-action` to `current` at `now` (ms);
/// `modified` is when the resource last changed (seconds; an expired lease
/// renews only if nothing changed since it expired).
fn act(
    ctx: &Ctx,
    current: Option<&Lease>,
    now: i64,
    modified: i64,
) -> Result<Outcome, StorageError> {
    let h = |name: &str| ctx.header(name);
    let required = |name: &'static str| {
        h(name).ok_or_else(|| {
            StorageError::bad(
                "MissingRequiredHeader",
                format!(
                    "An HTTP header that's mandatory for this request is not specified: {name}"
                ),
            )
        })
    };
    let bad_value = |name: &str, why: &str| {
        StorageError::bad(
            "InvalidHeaderValue",
            format!(
                "The value for one of the HTTP headers is not in the correct format: {name} {why}"
            ),
        )
    };
    let state = State::of(current, now);
    let held = current.map(|l| l.id.as_str());
    let mismatch = || {
        conflict(
            "LeaseIdMismatchWithLeaseOperation",
            "The lease ID specified did not match the lease ID for the blob or container.",
        )
    };
    let not_present = || {
        conflict(
            "LeaseNotPresentWithLeaseOperation",
            "There is currently no lease on the blob or container.",
        )
    };
    let ok = |lease: Option<Lease>, id: Option<String>| Outcome {
        lease,
        status: StatusCode::OK,
        lease_id: id,
        lease_time: None,
    };
    match required("x-ms-lease-action")?.to_ascii_lowercase().as_str() {
        "acquire" => {
            let duration: i64 = required("x-ms-lease-duration")?
                .trim()
                .parse()
                .ok()
                .filter(|d| *d == -1 || (15..=60).contains(d))
                .ok_or_else(|| {
                    bad_value(
                        "x-ms-lease-duration",
                        "is -1 (infinite) or 15 to 60 seconds",
                    )
                })?;
            let id = match h("x-ms-proposed-lease-id") {
                Some(p) if !p.is_empty() => p.to_owned(),
                Some(_) => return Err(bad_value("x-ms-proposed-lease-id", "is empty")),
                None => uuid::Uuid::new_v4().to_string(),
            };
            match state {
                State::Breaking => {
                    return Err(if held == h("x-ms-proposed-lease-id") {
                        conflict(
                            "LeaseIsBreakingAndCannotBeAcquired",
                            "There is already a breaking lease on the blob or container.",
                        )
                    } else {
                        mismatch()
                    });
                }
                State::Leased if held != Some(id.as_str()) => {
                    return Err(conflict(
                        "LeaseAlreadyPresent",
                        "There is already a lease present.",
                    ));
                }
                _ => {}
            }
            let lease = Lease {
                id: id.clone(),
                duration,
                expires_at: (duration > 0).then_some(now + duration * 1000),
                broken_at: None,
            };
            Ok(Outcome {
                status: StatusCode::CREATED,
                ..ok(Some(lease), Some(id))
            })
        }
        "renew" => {
            let id = required("x-ms-lease-id")?;
            let Some(l) = current else {
                return Err(not_present());
            };
            if l.id != id {
                return Err(mismatch());
            }
            match state {
                State::Breaking | State::Broken => Err(conflict(
                    "LeaseIsBrokenAndCannotBeRenewed",
                    "The lease ID matched, but the lease has been broken explicitly and cannot be renewed.",
                )),
                // Changed since it expired (to the second the change is known by).
                State::Expired
                    if l.expires_at
                        .is_some_and(|at| modified >= at.div_euclid(1000)) =>
                {
                    Err(mismatch())
                }
                _ => {
                    let lease = Lease {
                        expires_at: (l.duration > 0).then_some(now + l.duration * 1000),
                        ..l.clone()
                    };
                    Ok(ok(Some(lease), Some(id.to_owned())))
                }
            }
        }
        "change" => {
            let id = required("x-ms-lease-id")?;
            let proposed = required("x-ms-proposed-lease-id")?;
            let Some(l) = current else {
                return Err(not_present());
            };
            match state {
                State::Leased if l.id == id || l.id == proposed => {
                    let lease = Lease {
                        id: proposed.to_owned(),
                        ..l.clone()
                    };
                    Ok(ok(Some(lease), Some(proposed.to_owned())))
                }
                State::Leased => Err(mismatch()),
                State::Breaking if l.id == id => Err(conflict(
                    "LeaseIsBreakingAndCannotBeChanged",
                    "The lease ID matched, but the lease is currently in breaking state and cannot be changed.",
                )),
                State::Breaking => Err(mismatch()),
                _ => Err(not_present()),
            }
        }
        "release" => {
            let id = required("x-ms-lease-id")?;
            match current {
                None => Err(not_present()),
                Some(l) if l.id != id => Err(mismatch()),
                Some(_) => Ok(ok(None, None)),
            }
        }
        "break" => {
            let asked = h("x-ms-lease-break-period")
                .map(|p| {
                    p.trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|p| (0..=60).contains(p))
                        .ok_or_else(|| bad_value("x-ms-lease-break-period", "is 0 to 60 seconds"))
                })
                .transpose()?;
            let Some(l) = current else {
                return Err(not_present());
            };
            // Milliseconds left before the lease breaks, if nothing were asked.
            let remaining = match state {
                State::Available => return Err(not_present()),
                State::Expired | State::Broken => 0,
                State::Breaking => l.broken_at.map_or(0, |at| at - now),
                State::Leased if l.duration < 0 => asked.map_or(0, |a| a * 1000),
                State::Leased => l.expires_at.map_or(0, |at| at - now),
            };
            let period = asked
                .map_or(remaining, |a| (a * 1000).min(remaining))
                .max(0);
            let lease = Lease {
                broken_at: Some(match state {
                    State::Broken => l.broken_at.unwrap_or(now),
                    _ => now + period,
                }),
                ..l.clone()
            };
            Ok(Outcome {
                lease: Some(lease),
                status: StatusCode::ACCEPTED,
                lease_id: None,
                // Whole seconds, rounded to the nearest as Azure's emulator
                // does: a client that polls until this reads 0 finds the lease
                // broken within half a second of it.
                lease_time: Some((period + 500) / 1000),
            })
        }
        other => Err(bad_value(
            "x-ms-lease-action",
            &format!("`{other}` is not one of acquire, renew, change, release, break"),
        )),
    }
}

fn reply(outcome: &Outcome, etag: &str, last_modified: i64) -> Response {
    let mut h = HeaderMap::new();
    insert(&mut h, header::ETAG, etag);
    insert(&mut h, header::LAST_MODIFIED, &http_date(last_modified));
    if let Some(id) = &outcome.lease_id {
        insert(&mut h, HeaderName::from_static("x-ms-lease-id"), id);
    }
    if let Some(t) = outcome.lease_time {
        insert(
            &mut h,
            HeaderName::from_static("x-ms-lease-time"),
            &t.to_string(),
        );
    }
    (outcome.status, h).into_response()
}

/// Lease Blob: the lease changes neither the blob's ETag nor its time.
pub(crate) async fn blob(ctx: &Ctx) -> Result<Response, StorageError> {
    let conditions = Conditions::from(ctx)?;
    let now = now(&ctx.state);
    let (b, outcome) = super::blob::modify(ctx, &conditions, Modify::Lease, |b| {
        let outcome = act(ctx, b.state.lease.as_ref(), now, b.last_modified)?;
        b.state.lease.clone_from(&outcome.lease);
        Ok(outcome)
    })
    .await?;
    Ok(reply(&outcome, &b.etag, b.last_modified))
}

/// Lease Container.
pub(crate) async fn container(ctx: &Ctx) -> Result<Response, StorageError> {
    let conditions = Conditions::from(ctx)?;
    let mut c = super::container::load(ctx).await?;
    conditions
        .check(Some((c.etag.as_str(), c.last_modified)), false)
        .map_err(|e| condition_error(e, false))?;
    let now = now(&ctx.state);
    let before = c.state.lease.clone();
    let outcome = act(ctx, before.as_ref(), now, c.last_modified)?;
    c.state.lease.clone_from(&outcome.lease);
    let check = |current: &Container| {
        if current.etag == c.etag && current.state.lease == before {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Conflict,
                "the container changed during the lease operation; retry",
            ))
        }
    };
    ctx.state.store.container_update(&c, &check).await?;
    Ok(reply(&outcome, &c.etag, c.last_modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(duration: i64, expires_at: Option<i64>, broken_at: Option<i64>) -> Lease {
        Lease {
            id: "L".into(),
            duration,
            expires_at,
            broken_at,
        }
    }

    #[test]
    fn states_follow_the_clock() {
        assert_eq!(State::of(None, 0), State::Available);
        assert_eq!(State::of(Some(&lease(-1, None, None)), 99), State::Leased);
        let fixed = lease(15, Some(115), None);
        assert_eq!(State::of(Some(&fixed), 114), State::Leased);
        assert_eq!(State::of(Some(&fixed), 115), State::Expired);
        let breaking = lease(-1, None, Some(10));
        assert_eq!(State::of(Some(&breaking), 9), State::Breaking);
        assert_eq!(State::of(Some(&breaking), 10), State::Broken);
    }

    #[test]
    fn writes_to_a_leased_blob_need_its_id() {
        let held = lease(-1, None, None);
        let code = |presented, write| {
            check(Some(&held), presented, 0, write)
                .err()
                .and_then(|e| refusal(&e, false))
                .map(|e| e.code())
        };
        assert_eq!(code(None, true), Some("LeaseIdMissing"));
        assert_eq!(code(None, false), None, "reads need no lease id");
        assert_eq!(code(Some("L"), true), None);
        assert_eq!(
            code(Some("X"), true),
            Some("LeaseIdMismatchWithBlobOperation")
        );
        assert_eq!(
            code(Some("X"), false),
            Some("LeaseIdMismatchWithBlobOperation")
        );
        // No lease (or a broken one): a write naming a lease is refused.
        let e = check(None, Some("L"), 0, true).unwrap_err();
        assert_eq!(
            refusal(&e, true).unwrap().code(),
            "LeaseNotPresentWithContainerOperation"
        );
        let broken = lease(-1, None, Some(0));
        assert!(check(Some(&broken), None, 5, true).is_ok());
    }
}
