//! The storage log in a PostgreSQL store several servers share: records written
//! in batches by a task of their own, and queried from every server's.

use std::time::Duration;

use tokio::sync::mpsc;

use keyless_core::Error;

use super::{Filter, Message, Record, StorageLog, since_of};

/// Writes the records queued for a shared log, as many at a time as have
/// queued, until every handle is gone (see [`deliver`]).
pub(super) async fn ship(
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

/// The records of the shared log `log` that `filter` selects, oldest first, at
/// most `limit`.
pub(super) async fn query(
    store: &keyless_store::PostgresStore,
    log: &str,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<Record>, Error> {
    let since = since_of(filter)?;
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
