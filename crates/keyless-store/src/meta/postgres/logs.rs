//! The request logs (storage, vault) of every server sharing the database.

use keyless_core::Error;

use super::{PostgresStore, db_error};

/// One request's record, with the columns queries select on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// When the request was received, microseconds since the epoch.
    pub at_us: i64,
    /// The storage account (or vault).
    pub account: String,
    /// The caller's object id.
    pub requester_object_id: Option<String>,
    /// A user's UPN.
    pub requester_upn: Option<String>,
    /// `container/blob` (or the vault path).
    pub path: String,
    /// The HTTP status.
    pub status: u16,
    /// The record as served, JSON.
    pub body: String,
}

/// What a log query selects.
#[derive(Debug, Clone, Default)]
pub struct LogQuery<'a> {
    /// Only this account.
    pub account: &'a str,
    /// Only records at or after this time, microseconds since the epoch.
    pub since_us: Option<i64>,
    /// Only this requester: object id, or UPN (case-blind).
    pub principal: Option<&'a str>,
    /// Only paths starting with this.
    pub path_prefix: Option<&'a str>,
    /// Only this status.
    pub status: Option<u16>,
    /// At most this many.
    pub limit: usize,
}

/// `text` as a PostgreSQL `text` can hold it: NUL, which a request's path may
/// carry (refused requests are logged too), becomes U+FFFD. The record's body is
/// JSON, which escapes NUL, so what a query returns is exact; the columns that
/// filters read, and the filters themselves, are mapped alike, so a prefix with
/// a NUL still finds its records. Left as it was, one such path made every
/// append fail, and the log's writer retried it for ever.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

/// An error of [`PostgresStore::log_append`]: [`keyless_core::ErrorKind::InvalidInput`] when
/// PostgreSQL refused what the rows hold (SQLSTATE classes 22, a data
/// exception; 23, a constraint; 54, a limit such as an index row's size), as
/// [`db_error`] maps the rest, which a retry may clear.
fn append_error(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e
        && db
            .code()
            .is_some_and(|code| matches!(code.get(..2), Some("22" | "23" | "54")))
    {
        return Error::invalid(format!(
            "the request log refused a record: {}",
            db.message()
        ));
    }
    db_error(e)
}

impl PostgresStore {
    /// Appends records to the log `log`, in their order, in one statement.
    ///
    /// # Errors
    /// When the database refuses or cannot be reached; nothing is written then.
    /// [`keyless_core::ErrorKind::InvalidInput`] when it refuses what a record holds, which no retry
    /// changes (the records may then go one at a time, to find which).
    pub async fn log_append(&self, log: &str, rows: &[LogRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&LogRow) -> Option<String>| {
            rows.iter()
                .map(|r| f(r).map(|v| storable(&v)))
                .collect::<Vec<_>>()
        };
        let at: Vec<i64> = rows.iter().map(|r| r.at_us).collect();
        let status: Vec<i32> = rows.iter().map(|r| i32::from(r.status)).collect();
        sqlx::query(
            "INSERT INTO request_logs (log, at_us, account, requester_object_id, requester_upn, path, status, body)
             SELECT $1, at_us, account, oid, upn, path, status, body
             FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[])
                WITH ORDINALITY AS r(at_us, account, oid, upn, path, status, body, n)
             ORDER BY n",
        )
        .bind(log)
        .bind(&at)
        .bind(column(|r| Some(r.account.clone())))
        .bind(column(|r| r.requester_object_id.clone()))
        .bind(column(|r| r.requester_upn.clone()))
        .bind(column(|r| Some(r.path.clone())))
        .bind(&status)
        .bind(column(|r| Some(r.body.clone())))
        .execute(&self.pool)
        .await
        .map_err(append_error)?;
        Ok(())
    }

    /// The records of `log` that `q` selects, oldest first, as written (JSON).
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn log_query(&self, log: &str, q: &LogQuery<'_>) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT body FROM request_logs
             WHERE log = $1 AND account = $2 AND ($3::bigint IS NULL OR at_us >= $3)
                AND ($4::text IS NULL OR requester_object_id = $4 OR lower(requester_upn) = lower($4))
                AND ($5::text IS NULL OR starts_with(path, $5)) AND ($6::int IS NULL OR status = $6)
             ORDER BY seq LIMIT $7",
        )
        .bind(log)
        .bind(q.account)
        .bind(q.since_us)
        .bind(q.principal.map(storable))
        .bind(q.path_prefix.map(storable))
        .bind(q.status.map(i32::from))
        .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(body,)| body).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile path must not stop the log: a NUL in it once made PostgreSQL
    /// refuse the whole batch, again on every retry.
    #[tokio::test]
    async fn a_path_with_a_nul_is_logged_and_found_by_its_prefix() {
        let Some(store) = crate::meta::conformance::postgres().await else {
            return;
        };
        let log = format!("test-{}", uuid::Uuid::new_v4());
        let row = |path: &str, body: &str| LogRow {
            at_us: 1,
            account: "acct".into(),
            requester_object_id: Some("o\0id".into()),
            requester_upn: None,
            path: path.into(),
            status: 400,
            body: body.into(),
        };
        let rows = [
            row("c/a\0b", r#"{"Path":"c/a\u0000b"}"#),
            row("c/plain", r#"{"Path":"c/plain"}"#),
        ];
        store.log_append(&log, &rows).await.unwrap();
        let query = |prefix: &'static str| LogQuery {
            account: "acct",
            path_prefix: Some(prefix),
            limit: 10,
            ..LogQuery::default()
        };
        assert_eq!(
            store.log_query(&log, &query("c/a\0")).await.unwrap(),
            [r#"{"Path":"c/a\u0000b"}"#]
        );
        assert_eq!(store.log_query(&log, &query("c/")).await.unwrap().len(), 2);
        let by_principal = LogQuery {
            principal: Some("o\0id"),
            ..query("c/")
        };
        assert_eq!(store.log_query(&log, &by_principal).await.unwrap().len(), 2);
    }
}
