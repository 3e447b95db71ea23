//! The storage log: one record per data-plane request, naming the identity that
//! made it, appended durably as JSON lines under `<data dir>/logs/storage/`, or,
//! when servers share a PostgreSQL store, as rows of the store's request log that
//! every one of them queries.
//!
//! Requests hand their record to a bounded queue and go on; one writer thread
//! drains whatever has queued, writes it in one go and syncs it. When the queue is
//! full, requests wait for room (back-pressure): a record is never dropped. The
//! current file rolls over by size and by age; the column names follow Azure's
//! `StorageBlobLogs` table. The record and the handle are here; the places
//! records go are `files` and `shared`.

mod files;
mod shared;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use keyless_core::Error;

/// Records queued before requests wait.
const QUEUE: usize = 16 * 1024;

/// One data-plane request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    /// When it was received (RFC 3339).
    pub time_generated: String,
    /// The storage account.
    pub account_name: String,
    /// The operation, as Azure's storage logs name it (`GetBlob`, `PutBlob`, …).
    pub operation_name: String,
    /// The HTTP method.
    pub method: String,
    /// `container/blob`, decoded.
    pub path: String,
    /// The HTTP status.
    pub status_code: u16,
    /// `Success`, or the error code.
    pub status_text: String,
    /// `OAuth` (bearer), `AccountKey` (SharedKey), `SAS`, `UserDelegationSAS` or `Anonymous`.
    pub authentication_type: String,
    /// The caller's object id, for bearer requests.
    pub requester_object_id: Option<String>,
    /// The caller's tenant.
    pub requester_tenant_id: Option<String>,
    /// The application the token was issued to.
    pub requester_app_id: Option<String>,
    /// A user's UPN.
    pub requester_upn: Option<String>,
    /// `User`, `ServicePrincipal` or `ManagedIdentity`.
    pub requester_principal_type: Option<String>,
    /// The job the token was issued for, when a job made the request.
    pub job_id: Option<String>,
    /// The client's address.
    pub caller_ip_address: String,
    /// Request body bytes (as declared).
    pub request_body_size: u64,
    /// Response body bytes (as declared).
    pub response_body_size: u64,
    /// Time to the response head, in milliseconds.
    pub duration_ms: f64,
    /// `x-ms-request-id` of the response.
    pub correlation_id: String,
    /// Why authorization refused the request, when it did.
    pub explanation: Option<String>,
}

impl Record {
    /// Appends the record as one JSON object: the bytes `serde_json` writes for
    /// it, field for field. Written by hand because every data-plane request
    /// writes one, and `serde_json` looks at each byte of each key and value for
    /// characters to escape, with a branch per byte; here the keys are written
    /// as they are, each value is scanned once without a branch per byte, and
    /// only a value that needs escaping goes to `serde_json`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, name: &str| {
            out.extend_from_slice(if first { b"{\"" } else { b",\"" });
            first = false;
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
        };
        let text = |out: &mut Vec<u8>, value: Option<&str>| match value {
            Some(value) => json_string(out, value),
            None => out.extend_from_slice(b"null"),
        };
        key(out, "TimeGenerated");
        json_string(out, &self.time_generated);
        key(out, "AccountName");
        json_string(out, &self.account_name);
        key(out, "OperationName");
        json_string(out, &self.operation_name);
        key(out, "Method");
        json_string(out, &self.method);
        key(out, "Path");
        json_string(out, &self.path);
        key(out, "StatusCode");
        json_number(out, &self.status_code);
        key(out, "StatusText");
        json_string(out, &self.status_text);
        key(out, "AuthenticationType");
        json_string(out, &self.authentication_type);
        key(out, "RequesterObjectId");
        text(out, self.requester_object_id.as_deref());
        key(out, "RequesterTenantId");
        text(out, self.requester_tenant_id.as_deref());
        key(out, "RequesterAppId");
        text(out, self.requester_app_id.as_deref());
        key(out, "RequesterUpn");
        text(out, self.requester_upn.as_deref());
        key(out, "RequesterPrincipalType");
        text(out, self.requester_principal_type.as_deref());
        key(out, "JobId");
        text(out, self.job_id.as_deref());
        key(out, "CallerIpAddress");
        json_string(out, &self.caller_ip_address);
        key(out, "RequestBodySize");
        json_number(out, &self.request_body_size);
        key(out, "ResponseBodySize");
        json_number(out, &self.response_body_size);
        key(out, "DurationMs");
        json_number(out, &self.duration_ms);
        key(out, "CorrelationId");
        json_string(out, &self.correlation_id);
        key(out, "Explanation");
        text(out, self.explanation.as_deref());
        out.push(b'}');
    }
}

/// `CallerIpAddress`: the client's address as `Display` writes it, an IPv4
/// one digit by digit (the formatter's padding machinery cost about a hundredth
/// of a small GET).
pub(crate) fn caller_ip(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// `value` as a JSON string: as it is when nothing in it needs escaping (a
/// control character, `"` or `\`), through `serde_json` otherwise, with the
/// line separators U+2028 and U+2029 escaped besides (see [`escape_line_separators`]).
fn json_string(out: &mut Vec<u8>, value: &str) {
    // 0xE2 leads both line separators' UTF-8.
    let escapes = value.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\') | (b == 0xE2)
    });
    if escapes {
        let json = serde_json::to_string(value).unwrap_or_default();
        out.extend_from_slice(escape_line_separators(json).as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

/// A JSON text with U+2028 and U+2029 written as `\u2028` and `\u2029`. JSON
/// lets them stand unescaped in a string, but some readers of lines end a line
/// there (Python's `str.splitlines`, JavaScript before ES2019): a name holding
/// one would split its record, and the rest could read as a record of its own.
/// Escaped, the text means the same and its only line end is the one after it.
fn escape_line_separators(json: String) -> String {
    if json.contains(['\u{2028}', '\u{2029}']) {
        json.replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    } else {
        json
    }
}

/// A number as `serde_json` writes it (`null` for a float that is not finite).
fn json_number(out: &mut Vec<u8>, value: &impl Serialize) {
    // Writing into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// What a query selects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Only this account.
    pub account: String,
    /// Only records at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only this requester: object id or UPN.
    pub principal: Option<String>,
    /// Only paths starting with this (`container/dir/`).
    pub path_prefix: Option<String>,
    /// Only this status code.
    pub status: Option<u16>,
}

/// The query string of a `/logs` endpoint (a storage account's, a vault's,
/// a registry's).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    since: Option<String>,
    principal: Option<String>,
    path_prefix: Option<String>,
    status: Option<u16>,
    /// At most this many records (10,000 by default, 100,000 at most).
    top: Option<usize>,
}

impl LogQuery {
    /// What the query selects of `account`'s records, and how many at most.
    #[must_use]
    pub fn filter(self, account: String) -> (Filter, usize) {
        let filter = Filter {
            account,
            since: self.since,
            principal: self.principal,
            path_prefix: self.path_prefix,
            status: self.status,
        };
        (filter, self.top.unwrap_or(10_000).min(100_000))
    }
}

impl Filter {
    fn matches(&self, r: &Record, since: Option<&jiff::Timestamp>) -> bool {
        r.account_name == self.account
            && since.is_none_or(|s| {
                r.time_generated
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| t >= *s)
            })
            && self.principal.as_deref().is_none_or(|p| {
                r.requester_object_id.as_deref() == Some(p)
                    || r.requester_upn
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(p))
            })
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| r.path.starts_with(p.trim_start_matches('/')))
            && self.status.is_none_or(|s| r.status_code == s)
    }
}

enum Message {
    Record(Box<Record>),
    Flush(oneshot::Sender<()>),
}

/// The handle requests write through.
#[derive(Debug, Clone)]
pub struct StorageLog {
    queue: mpsc::Sender<Message>,
    place: Place,
}

/// Where the records go.
#[derive(Debug, Clone)]
enum Place {
    /// JSON lines in a directory of this server's.
    Files(PathBuf),
    /// The request log `log` of a store other servers share, with the
    /// directory of this server's file log of the records the store refused.
    Shared {
        store: keyless_store::PostgresStore,
        log: &'static str,
        aside: PathBuf,
    },
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl StorageLog {
    /// Opens (creating) the log directory and starts the writer thread.
    ///
    /// # Errors
    /// When the directory or the current file cannot be opened.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(|e| files::io_error(dir, &e))?;
        let writer = files::Writer::open(dir.to_path_buf())?;
        let (queue, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("storage-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::internal(format!("cannot start the storage log writer: {e}")))?;
        Ok(Self {
            queue,
            place: Place::Files(dir.to_path_buf()),
        })
    }

    /// The log `log` (`storage`, `vault`) of a PostgreSQL store several servers
    /// share: records are written in batches by a task of their own, retried
    /// until the store takes them (requests wait for room meanwhile, as with
    /// files), and a query reads every server's records. A record the store
    /// refuses for what it holds is set aside in a log in this server's files,
    /// under `aside` (opened, and created, as [`Self::open`] does), and the log
    /// goes on; a query through this server finds it there, in its place in
    /// time among the store's records.
    ///
    /// # Errors
    /// When `aside` cannot be opened.
    pub fn shared(
        store: keyless_store::PostgresStore,
        log: &'static str,
        aside: &Path,
    ) -> Result<Self, Error> {
        let set_aside = Self::open(aside)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(shared::ship(store.clone(), log, set_aside, rx));
        Ok(Self {
            queue,
            place: Place::Shared {
                store,
                log,
                aside: aside.to_path_buf(),
            },
        })
    }

    /// Queues a record, waiting for room when the queue is full.
    pub async fn append(&self, record: Record) {
        if self
            .queue
            .send(Message::Record(Box::new(record)))
            .await
            .is_err()
        {
            tracing::error!("the storage log writer has stopped; a record was not written");
        }
    }

    /// Waits until every record queued so far is on disk.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The records `filter` selects, oldest first, at most `limit`.
    ///
    /// # Errors
    /// When a log file cannot be read.
    pub async fn query(&self, filter: Filter, limit: usize) -> Result<Vec<Record>, Error> {
        self.flush().await;
        match &self.place {
            Place::Files(dir) => read_files(dir.clone(), filter, limit).await,
            // The flush above waited for the records set aside so far too.
            Place::Shared { store, log, aside } => {
                let kept = shared::query(store, log, &filter, limit).await?;
                let set_aside = read_files(aside.clone(), filter, limit).await?;
                Ok(in_time_order(kept, set_aside, limit))
            }
        }
    }
}

/// The records of the file log in `dir` that `filter` selects, read on a
/// blocking thread.
async fn read_files(dir: PathBuf, filter: Filter, limit: usize) -> Result<Vec<Record>, Error> {
    tokio::task::spawn_blocking(move || files::read(&dir, &filter, limit))
        .await
        .map_err(|e| Error::internal(format!("log query failed: {e}")))?
}

/// Two runs of records, each oldest first, as one, at most `limit`: a record
/// of `b` goes after those of `a` of the same time.
fn in_time_order(a: Vec<Record>, b: Vec<Record>, limit: usize) -> Vec<Record> {
    if b.is_empty() {
        return a;
    }
    let time = |r: &Record| r.time_generated.parse::<jiff::Timestamp>().ok();
    let mut out = Vec::with_capacity((a.len() + b.len()).min(limit));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while out.len() < limit {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if matches!((time(x), time(y)), (Some(x), Some(y)) if y < x) => {
                b.next()
            }
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        let Some(record) = next else { break };
        out.push(record);
    }
    out
}

/// The `since` of a filter, parsed.
fn since_of(filter: &Filter) -> Result<Option<jiff::Timestamp>, Error> {
    filter
        .since
        .as_deref()
        .map(|s| {
            s.parse::<jiff::Timestamp>().map_err(|e| {
                Error::invalid(format!(
                    "`since` must be an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"
                ))
            })
        })
        .transpose()
}
