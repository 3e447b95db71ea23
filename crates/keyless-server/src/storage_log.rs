//! The storage log: one record per data-plane request, naming the identity that
//! made it, appended durably as JSON lines under `<data dir>/logs/storage/`, or,
//! when servers share a PostgreSQL store, as rows of the store's request log that
//! every one of them queries.
//!
//! Requests hand their record to a bounded queue and go on; one writer thread
//! drains whatever has queued, writes it in one go and syncs it. When the queue is
//! full, requests wait for room (back-pressure): a record is never dropped. The
//! current file rolls over by size and by age; the column names follow Azure's
//! `StorageBlobLogs` table.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use keyless_core::Error;

/// Records queued before requests wait.
const QUEUE: usize = 16 * 1024;
/// The current file rolls over past this size…
const ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// …or this age.
const ROTATE_AGE: Duration = Duration::from_secs(24 * 3600);
/// The least time between two syncs: under load, records gather for this long
/// and go to disk together, instead of waking the writer and syncing per record.
/// A lone record after a quiet spell is written at once.
const LINGER: Duration = Duration::from_millis(20);
const CURRENT: &str = "current.jsonl";

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
    /// The request log `log` of a store other servers share.
    Shared {
        store: keyless_store::PostgresStore,
        log: &'static str,
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
            .map_err(|e| io_error(dir, &e))?;
        let writer = Writer::open(dir.to_path_buf())?;
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
    /// refuses for what it holds is set aside in `aside`, a log in this
    /// server's files, and the log goes on.
    pub fn shared(store: keyless_store::PostgresStore, log: &'static str, aside: Self) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(ship(store.clone(), log, aside, rx));
        Self {
            queue,
            place: Place::Shared { store, log },
        }
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
            Place::Files(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || read(&dir, &filter, limit))
                    .await
                    .map_err(|e| Error::internal(format!("log query failed: {e}")))?
            }
            Place::Shared { store, log } => {
                let since = since_of(&filter)?;
                let query = keyless_store::LogQuery {
                    account: &filter.account,
                    since_us: since.map(|t| t.as_microsecond()),
                    principal: filter.principal.as_deref(),
                    path_prefix: filter
                        .path_prefix
                        .as_deref()
                        .map(|p| p.trim_start_matches('/')),
                    status: filter.status,
                    limit,
                };
                store
                    .log_query(log, &query)
                    .await?
                    .iter()
                    .map(|body| {
                        serde_json::from_str(body)
                            .map_err(|e| Error::internal(format!("a malformed log record: {e}")))
                    })
                    .collect()
            }
        }
    }
}

/// Writes the records queued for a shared log, as many at a time as have
/// queued, until every handle is gone (see [`deliver`]).
async fn ship(
    store: keyless_store::PostgresStore,
    log: &'static str,
    aside: StorageLog,
    mut rx: mpsc::Receiver<Message>,
) {
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let (mut records, mut rows) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(r) => {
                    rows.push(row_of(&r));
                    records.push(*r);
                }
                Message::Flush(done) => waiters.push(done),
            }
            next = if rows.len() < 1000 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        deliver(&store, log, &aside, records, &rows).await;
        for done in waiters.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Appends a batch of records (`rows`, made of `records`) to a shared log; a
/// record is never dropped. While the store cannot take them, the batch is
/// tried again (after 50 ms, then longer, up to 5 s). When it refuses what a
/// record holds, which no retry changes, the records go one at a time, and one
/// it refuses alone is written to `aside`, this server's file log, and said so
/// in the server's log: one such record once held up the log of every server.
async fn deliver(
    store: &keyless_store::PostgresStore,
    log: &'static str,
    aside: &StorageLog,
    records: Vec<Record>,
    rows: &[keyless_store::LogRow],
) {
    if append(store, log, rows).await.is_ok() {
        return;
    }
    for (record, row) in records.into_iter().zip(rows) {
        if rows.len() == 1 || append(store, log, std::slice::from_ref(row)).await.is_err() {
            tracing::error!(
                log,
                "the shared request log refused a record; it is kept in this server's file log"
            );
            aside.append(record).await;
        }
    }
    // Written when the batch's flushes are told, as the others are.
    aside.flush().await;
}

/// Appends `rows`, tried again while the store cannot take them; the error when
/// it refuses what they hold.
async fn append(
    store: &keyless_store::PostgresStore,
    log: &'static str,
    rows: &[keyless_store::LogRow],
) -> Result<(), Error> {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.log_append(log, rows).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == keyless_core::ErrorKind::InvalidInput => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, log, records = rows.len(), "cannot write to the shared request log; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn row_of(r: &Record) -> keyless_store::LogRow {
    let at = r
        .time_generated
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .unwrap_or_default();
    keyless_store::LogRow {
        at_us: at,
        account: r.account_name.clone(),
        requester_object_id: r.requester_object_id.clone(),
        requester_upn: r.requester_upn.clone(),
        path: r.path.clone(),
        status: r.status_code,
        body: {
            let mut body = Vec::with_capacity(512);
            r.write_json(&mut body);
            String::from_utf8(body).unwrap_or_default()
        },
    }
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

fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::internal(format!("storage log `{}`: {e}", path.display()))
}

/// Log files in the order they were written: rotated ones by name, then the current.
fn files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("storage-") && n.ends_with(".jsonl"))
        })
        .collect();
    rotated.sort();
    rotated.push(dir.join(CURRENT));
    Ok(rotated)
}

fn ends_with_newline(path: &Path) -> Result<bool, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| io_error(path, &e))?;
    file.seek(SeekFrom::End(-1))
        .map_err(|e| io_error(path, &e))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last).map_err(|e| io_error(path, &e))?;
    Ok(last == *b"\n")
}

fn read(dir: &Path, filter: &Filter, limit: usize) -> Result<Vec<Record>, Error> {
    let since = since_of(filter)?;
    let mut out = Vec::new();
    for path in files(dir)? {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| io_error(&path, &e))?;
            // A line cut short by a crash is skipped, not fatal.
            let Ok(record) = serde_json::from_str::<Record>(&line) else {
                continue;
            };
            if filter.matches(&record, since.as_ref()) {
                out.push(record);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

struct Writer {
    dir: PathBuf,
    file: File,
    size: u64,
    opened: SystemTime,
}

impl Writer {
    fn open(dir: PathBuf) -> Result<Self, Error> {
        let path = dir.join(CURRENT);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, &e))?;
        let mut meta = file.metadata().map_err(|e| io_error(&path, &e))?;
        if meta.len() > 0 && !ends_with_newline(&path)? {
            // The last record was cut short by a crash: end its line, so the next
            // record starts on its own.
            (&file).write_all(b"\n").map_err(|e| io_error(&path, &e))?;
            meta = file.metadata().map_err(|e| io_error(&path, &e))?;
        }
        let opened = meta
            .created()
            .or_else(|_| meta.modified())
            .unwrap_or_else(|_| SystemTime::now());
        Ok(Self {
            dir,
            size: meta.len(),
            file,
            opened,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut waiters = Vec::new();
        let mut synced: Option<std::time::Instant> = None;
        while let Some(first) = rx.blocking_recv() {
            if let Some(rest) = synced.and_then(|t| LINGER.checked_sub(t.elapsed())) {
                std::thread::sleep(rest);
            }
            let mut next = Some(first);
            // Take everything queued, up to a batch.
            while let Some(message) = next {
                match message {
                    Message::Record(r) => {
                        r.write_json(&mut buf);
                        buf.push(b'\n');
                    }
                    Message::Flush(done) => waiters.push(done),
                }
                next = if buf.len() < 1024 * 1024 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !buf.is_empty() {
                self.write_until_written(&buf);
                buf.clear();
                synced = Some(std::time::Instant::now());
            }
            for done in waiters.drain(..) {
                let _ = done.send(());
            }
            if let Err(e) = self.maybe_rotate() {
                tracing::error!(error = %e, "cannot rotate the storage log");
            }
        }
    }

    /// Appends `bytes` and syncs them, trying again while that fails (a full
    /// disk): after a pause (50 ms, then longer, up to 5 s), with the file cut
    /// back to its last whole batch, so that no half record is left for the
    /// next to run into, and opened again. A record is never dropped; requests
    /// wait for room in the queue meanwhile, as with a shared log.
    fn write_until_written(&mut self, bytes: &[u8]) {
        let mut delay = Duration::from_millis(50);
        while let Err(e) = self.write(bytes) {
            tracing::error!(error = %e, records = bytes.iter().filter(|b| **b == b'\n').count(), "cannot write the storage log; retrying");
            let _ = self.file.set_len(self.size);
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
            match Self::open(self.dir.clone()) {
                Ok(reopened) => *self = reopened,
                Err(e) => tracing::error!(error = %e, "cannot open the storage log again"),
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn maybe_rotate(&mut self) -> Result<(), Error> {
        let old = self.opened.elapsed().unwrap_or_default() > ROTATE_AGE;
        if self.size == 0 || (self.size < ROTATE_BYTES && !old) {
            return Ok(());
        }
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.3fZ");
        let current = self.dir.join(CURRENT);
        let rotated = self.dir.join(format!("storage-{stamp}.jsonl"));
        std::fs::rename(&current, &rotated).map_err(|e| io_error(&rotated, &e))?;
        *self = Self::open(self.dir.clone())?;
        self.opened = SystemTime::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(account: &str, path: &str, status: u16, upn: Option<&str>) -> Record {
        Record {
            time_generated: "2026-11-22T10:00:00Z".into(),
            account_name: account.into(),
            path: path.into(),
            status_code: status,
            requester_upn: upn.map(Into::into),
            requester_object_id: upn.map(|_| "oid-1".into()),
            ..Record::default()
        }
    }

    #[test]
    fn caller_addresses_read_as_display_writes_them() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mut addresses: Vec<IpAddr> = (0..=255u8)
            .map(|o| IpAddr::V4(Ipv4Addr::new(o, 255 - o, o / 10, o % 100)))
            .collect();
        addresses.extend([
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V4(Ipv4Addr::new(10, 0, 100, 9)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
        ]);
        for ip in addresses {
            assert_eq!(caller_ip(ip), ip.to_string());
        }
    }

    #[test]
    fn a_record_is_written_as_serde_json_writes_it() {
        let full = Record {
            time_generated: "2026-11-22T10:00:00Z".into(),
            account_name: "acct".into(),
            operation_name: "GetBlob".into(),
            method: "GET".into(),
            path: "data/dir/a b.csv".into(),
            status_code: 403,
            status_text: "AuthorizationPermissionMismatch".into(),
            authentication_type: "OAuth".into(),
            requester_object_id: Some("6f0c1a52-0000-4000-8000-000000000001".into()),
            requester_tenant_id: Some("72f988bf-0000-4000-8000-000000000002".into()),
            requester_app_id: Some("app".into()),
            requester_upn: Some("ann@t.local".into()),
            requester_principal_type: Some("User".into()),
            job_id: Some("job-1".into()),
            caller_ip_address: "127.0.0.1".into(),
            request_body_size: u64::MAX,
            response_body_size: 4096,
            duration_ms: 0.123_456_7,
            correlation_id: "1c5c7a3e-0000-4000-8000-000000000003".into(),
            explanation: Some("ann may not read: no assignment".into()),
        };
        // Whatever a path or an explanation holds: quotes, backslashes, every
        // control character, DEL, non-ASCII text, and escapes past a vector's width.
        let controls: String = (0u8..0x20).map(char::from).collect();
        let tricky = [
            "say \"hi\"",
            "C:\\dir\\file",
            controls.as_str(),
            "\u{7f}caf\u{e9} \u{1f600} \u{2028}\u{2029} \u{20ac}",
            "a long plain path that fills more than one vector register, then a \" at its end\"",
            "",
        ];
        let mut records = vec![Record::default(), full.clone()];
        for text in tricky {
            records.push(Record {
                path: text.into(),
                explanation: Some(text.into()),
                requester_upn: Some(text.into()),
                duration_ms: 1e-7,
                ..full.clone()
            });
        }
        records.push(Record {
            duration_ms: 12_345.678,
            ..Record::default()
        });
        for record in records {
            let mut ours = Vec::new();
            record.write_json(&mut ours);
            // serde_json's bytes, the line separators escaped: one line per record.
            assert_eq!(
                String::from_utf8(ours.clone()).unwrap(),
                escape_line_separators(serde_json::to_string(&record).unwrap())
            );
            assert!(!String::from_utf8_lossy(&ours).contains(['\u{2028}', '\u{2029}']));
            let back: Record = serde_json::from_slice(&ours).unwrap();
            assert_eq!(back, record);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_are_durable_filtered_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = StorageLog::open(dir.path()).unwrap();
        log.append(record("a", "data/x.csv", 200, Some("ann@t.local")))
            .await;
        log.append(record("a", "data/y.csv", 403, Some("bob@t.local")))
            .await;
        log.append(record("b", "data/x.csv", 200, None)).await;
        log.flush().await;
        // Rotate by hand, as the size limit would; both files are read, in order.
        std::fs::rename(dir.path().join(CURRENT), dir.path().join("storage-1.jsonl")).unwrap();
        let log = StorageLog::open(dir.path()).unwrap();
        log.append(record("a", "other/z", 201, Some("ann@t.local")))
            .await;
        filters_hold(&log).await;
    }

    /// Records that cannot be written (a full disk: the log's file is `/dev/full`)
    /// are held, not dropped, and written once the file can take them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_wait_out_a_full_disk_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join(CURRENT);
        std::os::unix::fs::symlink("/dev/full", &current).unwrap();
        let log = StorageLog::open(dir.path()).unwrap();
        log.append(record("a", "data/kept", 201, Some("ann@t.local")))
            .await;
        let held = tokio::time::timeout(Duration::from_millis(500), log.flush()).await;
        assert!(
            held.is_err(),
            "the log said a record was written to a full disk"
        );
        // Room again: the writer opens the file anew.
        std::fs::remove_file(&current).unwrap();
        let all = Filter {
            account: "a".into(),
            ..Filter::default()
        };
        let found = tokio::time::timeout(Duration::from_secs(30), log.query(all, 10))
            .await
            .expect("the record was not written once there was room")
            .unwrap();
        assert_eq!(
            found.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["data/kept"]
        );
    }

    /// A store in a new database of the PostgreSQL server `KEYLESS_TEST_POSTGRES_URL`
    /// names; `None` (the test skipped) when it names none.
    async fn fresh_store() -> Option<keyless_store::PostgresStore> {
        let Ok(url) = std::env::var("KEYLESS_TEST_POSTGRES_URL") else {
            eprintln!("KEYLESS_TEST_POSTGRES_URL is not set: skipped");
            return None;
        };
        Some(
            keyless_store::PostgresStore::connect_fresh(&url)
                .await
                .unwrap(),
        )
    }

    /// Several servers' log in a shared PostgreSQL store answers the same queries
    /// the same way (when `KEYLESS_TEST_POSTGRES_URL` names a server).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_log_is_filtered_as_files_are() {
        let Some(store) = fresh_store().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let aside = StorageLog::open(&dir.path().join("refused")).unwrap();
        let one = StorageLog::shared(store.clone(), "storage", aside.clone());
        let other = StorageLog::shared(store.clone(), "storage", aside.clone());
        one.append(record("a", "data/x.csv", 200, Some("ann@t.local")))
            .await;
        one.flush().await;
        other
            .append(record("a", "data/y.csv", 403, Some("bob@t.local")))
            .await;
        other.append(record("b", "data/x.csv", 200, None)).await;
        other.flush().await;
        one.append(record("a", "other/z", 201, Some("ann@t.local")))
            .await;
        filters_hold(&one).await;
        // Another log of the same store holds none of these.
        let vault = StorageLog::shared(store, "vault", aside);
        let none = vault
            .query(
                Filter {
                    account: "a".into(),
                    ..Filter::default()
                },
                10,
            )
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    /// A record the shared store refuses for what it holds is kept in the
    /// server's file, and neither its batch nor later records are held up (when
    /// `KEYLESS_TEST_POSTGRES_URL` names a server).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_the_shared_log_refuses_is_set_aside_and_the_log_goes_on() {
        let Some(store) = fresh_store().await else {
            return;
        };
        // Whatever a future record holds that PostgreSQL refuses (a NUL once),
        // here a trigger refuses one path as a data exception.
        sqlx::raw_sql(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.path = 'data/poison' THEN
                 RAISE EXCEPTION 'refused' USING ERRCODE = '22023';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs
               FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let aside_dir = dir.path().join("logs").join("storage-refused");
        let aside = StorageLog::open(&aside_dir).unwrap();
        let log = StorageLog::shared(store, "storage", aside.clone());
        let written = async {
            for path in ["data/before", "data/poison", "data/after"] {
                log.append(record("a", path, 201, Some("ann@t.local")))
                    .await;
            }
            log.flush().await;
            log.append(record("a", "data/later", 200, None)).await;
            let all = Filter {
                account: "a".into(),
                ..Filter::default()
            };
            log.query(all, 10).await
        };
        let found = tokio::time::timeout(Duration::from_secs(30), written)
            .await
            .expect("the log is held up")
            .unwrap();
        assert_eq!(
            found.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["data/before", "data/after", "data/later"]
        );
        let kept = aside
            .query(
                Filter {
                    account: "a".into(),
                    ..Filter::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].path, "data/poison");
        assert_eq!(kept[0].requester_upn.as_deref(), Some("ann@t.local"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(aside_dir.join(CURRENT))
                .unwrap()
                .permissions(),
        ) & 0o777;
        assert_eq!(mode & 0o077, 0, "the file is the server's alone: {mode:o}");
    }

    /// The queries over records a/data/x.csv (ann, 200), a/data/y.csv (bob, 403),
    /// b/data/x.csv and a/other/z (ann, 201), written in that order.
    async fn filters_hold(log: &StorageLog) {
        let all = |f: Filter| {
            let log = log.clone();
            async move { log.query(f, 100).await.unwrap() }
        };
        let a = all(Filter {
            account: "a".into(),
            ..Filter::default()
        })
        .await;
        assert_eq!(
            a.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["data/x.csv", "data/y.csv", "other/z"]
        );
        let denied = all(Filter {
            account: "a".into(),
            status: Some(403),
            ..Filter::default()
        })
        .await;
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].requester_upn.as_deref(), Some("bob@t.local"));
        let ann = all(Filter {
            account: "a".into(),
            principal: Some("ANN@t.local".into()),
            path_prefix: Some("/data/".into()),
            ..Filter::default()
        })
        .await;
        assert_eq!(ann.len(), 1);
        let later = all(Filter {
            account: "a".into(),
            since: Some("2026-11-22T10:00:01Z".into()),
            ..Filter::default()
        })
        .await;
        assert!(later.is_empty());
        assert!(
            log.query(
                Filter {
                    account: "a".into(),
                    since: Some("yesterday".into()),
                    ..Filter::default()
                },
                10
            )
            .await
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_line_cut_short_by_a_crash_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let whole = serde_json::to_string(&record("a", "c/b", 200, None)).unwrap();
        std::fs::write(
            dir.path().join(CURRENT),
            format!("{whole}\n{}", &whole[..20]),
        )
        .unwrap();
        let log = StorageLog::open(dir.path()).unwrap();
        log.append(record("a", "c/after", 200, None)).await;
        let found = log
            .query(
                Filter {
                    account: "a".into(),
                    ..Filter::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(
            found.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["c/b", "c/after"]
        );
    }
}
