//! Conditional headers, ETags and ranges.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderName, StatusCode, header};

use keyless_core::{Error, ErrorKind};
use keyless_store::{Blob, Container};

use super::Ctx;
use super::error::StorageError;
use super::names;
use super::xml::parse_http_date;

/// A fresh strong ETag, quoted, in Azure's `"0x…"` style.
pub(crate) fn new_etag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = (nanos as u64) ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48);
    format!("\"0x{n:016X}\"")
}

/// The conditional headers of a request (none by default): the four of HTTP,
/// `x-ms-if-tags` and the lease id it presents.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    if_tags: Option<super::tags::Expr>,
    lease_id: Option<String>,
    /// The time leases are judged at (milliseconds).
    now: i64,
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<i64>,
    if_unmodified_since: Option<i64>,
    /// Whether `If-None-Match: *` means "create only" (Put Blob, Put Block List,
    /// Copy Blob); Azure ignores it on the other writes to an existing blob.
    star_creates: bool,
}

/// What failed, as the store carries it through its precondition callback.
const NOT_MODIFIED: &str = "not modified";
const EXISTS: &str = "the blob exists";
const UNSATISFIABLE: &str = "If-None-Match: * on a read";

impl Conditions {
    pub(crate) fn from(ctx: &Ctx) -> Result<Self, StorageError> {
        // Most requests carry no condition: one pass over their few headers
        // rather than a lookup of each name.
        let conditional = ctx.headers.keys().any(|name| {
            let name = name.as_str();
            name.starts_with("if-") || name == "x-ms-if-tags" || name == "x-ms-lease-id"
        });
        let condition = |name: &HeaderName| if conditional { ctx.header(name) } else { None };
        let date = |name: HeaderName| -> Result<Option<i64>, StorageError> {
            condition(&name)
                .map(|v| {
                    parse_http_date(v).ok_or_else(|| {
                        StorageError::bad(
                            "InvalidHeaderValue",
                            format!("`{name}` is not an RFC 1123 date"),
                        )
                    })
                })
                .transpose()
        };
        // A SAS that may create but not write makes its writes create-only, checked
        // inside the store's write, so a blob appearing after the dispatcher's check
        // is not overwritten either.
        let star_creates = matches!(
            ctx.op,
            super::operation::Operation::PutBlob
                | super::operation::Operation::PutBlockList
                | super::operation::Operation::CopyBlob
        );
        let create_only =
            star_creates && matches!(&ctx.auth, super::auth::Auth::Sas(sas) if !sas.grants('w'));
        Ok(Self {
            if_tags: condition(&names::X_MS_IF_TAGS)
                .map(super::tags::condition)
                .transpose()?,
            lease_id: condition(&names::X_MS_LEASE_ID).map(str::to_owned),
            now: super::lease::now(&ctx.state),
            if_match: condition(&header::IF_MATCH).map(str::to_owned),
            if_none_match: if create_only {
                Some("*".to_owned())
            } else {
                condition(&header::IF_NONE_MATCH).map(str::to_owned)
            },
            if_modified_since: date(header::IF_MODIFIED_SINCE)?,
            if_unmodified_since: date(header::IF_UNMODIFIED_SINCE)?,
            star_creates,
        })
    }

    /// Checks every condition against a blob (`None`: there is none): its ETag and
    /// time, its tags, and its lease (`read`s need no lease id, writes do).
    pub(crate) fn blob(&self, current: Option<&Blob>, read: bool) -> Result<(), Error> {
        super::lease::check(
            current.and_then(|b| b.state.lease.as_ref()),
            self.lease_id.as_deref(),
            self.now,
            !read,
        )?;
        self.blob_without_lease(current, read)
    }

    /// [`Self::blob`] without the lease (for the lease operations themselves).
    pub(crate) fn blob_without_lease(
        &self,
        current: Option<&Blob>,
        read: bool,
    ) -> Result<(), Error> {
        self.check(current.map(|c| (c.etag.as_str(), c.last_modified)), read)?;
        if let Some(expr) = &self.if_tags {
            match current {
                Some(b) if expr.matches(&b.container, &b.state.tags) => {}
                _ => {
                    return Err(Error::new(
                        ErrorKind::PreconditionFailed,
                        "condition not met",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the HTTP conditions and a presented lease id against a container.
    pub(crate) fn container(&self, current: &Container, write: bool) -> Result<(), Error> {
        super::lease::check(
            current.state.lease.as_ref(),
            self.lease_id.as_deref(),
            self.now,
            write,
        )?;
        self.check(Some((current.etag.as_str(), current.last_modified)), false)
    }

    /// Checks the conditions against the current state (`None`: nothing exists).
    /// For reads a failed `If-None-Match`/`If-Modified-Since` is "not modified".
    pub(crate) fn check(&self, current: Option<(&str, i64)>, read: bool) -> Result<(), Error> {
        let failed = || Error::new(ErrorKind::PreconditionFailed, "condition not met");
        let matches = |list: &str, etag: &str| {
            list.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t == etag)
        };
        if let Some(list) = &self.if_match {
            match current {
                Some((etag, _)) if matches(list, etag) => {}
                _ => return Err(failed()),
            }
        }
        if let Some(list) = &self.if_none_match {
            if read && list.trim() == "*" {
                return Err(Error::new(ErrorKind::InvalidInput, UNSATISFIABLE));
            }
            match current {
                None => {}
                Some(_) if list.trim() == "*" && self.star_creates => {
                    return Err(Error::new(ErrorKind::AlreadyExists, EXISTS));
                }
                Some(_) if list.trim() == "*" => {}
                Some((etag, _)) if matches(list, etag) => {
                    return Err(if read {
                        Error::new(ErrorKind::PreconditionFailed, NOT_MODIFIED)
                    } else {
                        failed()
                    });
                }
                Some(_) => {}
            }
        }
        if let (Some(since), Some((_, modified))) = (self.if_modified_since, current)
            && modified <= since
        {
            return Err(if read {
                Error::new(ErrorKind::PreconditionFailed, NOT_MODIFIED)
            } else {
                failed()
            });
        }
        if let (Some(since), Some((_, modified))) = (self.if_unmodified_since, current)
            && modified > since
        {
            return Err(failed());
        }
        Ok(())
    }
}

/// Maps a failed condition to the reply Azure gives.
pub(crate) fn condition_error(e: Error, blob_write: bool) -> StorageError {
    if let Some(refused) = super::lease::refusal(&e, false) {
        return refused;
    }
    match (e.kind(), e.message()) {
        (ErrorKind::PreconditionFailed, NOT_MODIFIED) => {
            StorageError::new(StatusCode::NOT_MODIFIED, "ConditionNotMet", "not modified")
        }
        (ErrorKind::PreconditionFailed, _) => StorageError::condition_not_met(),
        (ErrorKind::AlreadyExists, EXISTS) if blob_write => StorageError::new(
            StatusCode::CONFLICT,
            "BlobAlreadyExists",
            "The specified blob already exists.",
        ),
        (ErrorKind::NotFound, _) => StorageError::blob_not_found(),
        (ErrorKind::InvalidInput, UNSATISFIABLE) => StorageError::bad(
            "UnsatisfiableCondition",
            "The request includes an unsatisfiable condition for this operation.",
        ),
        _ => e.into(),
    }
}

/// A byte range `bytes=start-end` (inclusive) or `bytes=start-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: u64,
    pub(crate) end: Option<u64>,
}

impl Range {
    /// Parses `x-ms-range` (preferred) or `Range`.
    pub(crate) fn from(ctx: &Ctx) -> Result<Option<Self>, StorageError> {
        let Some(text) = ctx
            .header(names::X_MS_RANGE)
            .or_else(|| ctx.header(header::RANGE))
        else {
            return Ok(None);
        };
        // Azure ignores a range it cannot read and answers with the whole blob.
        Ok(Self::parse(text))
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let spec = text.trim().strip_prefix("bytes=")?;
        let (start, end) = spec.split_once('-')?;
        let start: u64 = start.trim().parse().ok()?;
        let end = match end.trim() {
            "" => None,
            e => Some(e.parse::<u64>().ok()?),
        };
        if end.is_some_and(|e| e < start) {
            return None;
        }
        Some(Self { start, end })
    }

    /// The (offset, length) this range covers of `size` bytes, or `None` when unsatisfiable.
    pub(crate) fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if self.start >= size {
            return None;
        }
        let last = self.end.map_or(size - 1, |e| e.min(size - 1));
        Some((self.start, last - self.start + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            Range::parse("bytes=0-99"),
            Some(Range {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            Range::parse("bytes=5-"),
            Some(Range {
                start: 5,
                end: None
            })
        );
        for bad in ["bytes=9-3", "bytes=-5", "items=0-1", "bytes=a-b", ""] {
            assert_eq!(Range::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Range {
                start: 10,
                end: Some(1000)
            }
            .resolve(100),
            Some((10, 90))
        );
        assert_eq!(
            Range {
                start: 100,
                end: None
            }
            .resolve(100),
            None
        );
        assert_eq!(
            Range {
                start: 0,
                end: None
            }
            .resolve(0),
            None
        );
    }

    #[test]
    fn conditions_follow_http() {
        let c = Conditions {
            if_none_match: Some("*".into()),
            star_creates: true,
            ..Conditions::default()
        };
        assert!(c.check(None, false).is_ok());
        assert_eq!(
            c.check(Some(("\"a\"", 0)), false).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        // On a read, `*` is unsatisfiable; on other writes to a blob that exists, ignored.
        assert_eq!(
            c.check(Some(("\"a\"", 0)), true).unwrap_err().message(),
            UNSATISFIABLE
        );
        let other_write = Conditions {
            star_creates: false,
            ..c
        };
        assert!(other_write.check(Some(("\"a\"", 0)), false).is_ok());
        let c = Conditions {
            if_match: Some("\"a\"".into()),
            ..Conditions::default()
        };
        assert!(c.check(Some(("\"a\"", 0)), false).is_ok());
        assert!(c.check(Some(("\"b\"", 0)), false).is_err());
        assert!(c.check(None, false).is_err());
        let c = Conditions {
            if_none_match: Some("\"a\"".into()),
            ..Conditions::default()
        };
        assert_eq!(
            c.check(Some(("\"a\"", 0)), true).unwrap_err().message(),
            NOT_MODIFIED
        );
        let c = Conditions {
            if_unmodified_since: Some(100),
            ..Conditions::default()
        };
        assert!(c.check(Some(("\"a\"", 100)), false).is_ok());
        assert!(c.check(Some(("\"a\"", 101)), false).is_err());
        assert!(new_etag() != new_etag());
    }
}
