//! `tfmprov-db`: the database under the aggregator and the CA, SQLite
//! (embedded default, a file in the state directory) or PostgreSQL
//! (`--db postgres://…`, several instances on one database). One code path
//! for both: every statement of the callers is written once, with
//! `$1, $2, …` placeholders and SQL both engines accept (`ON CONFLICT … DO
//! NOTHING / DO UPDATE`, `COALESCE`, `LIMIT`), and values go through one
//! small [`Value`] type. Only the schema differs (column types), in
//! versioned migrations ([`migrate`]).
//!
//! Blocking API. SQLite through rusqlite; PostgreSQL through the `postgres`
//! crate, whose client runs on its own thread ([`pg`]), so a call is safe
//! from any thread, async runtime workers included (as a rusqlite call is).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod pg;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;
use std::time::Duration;

/// A database error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (connection, statement, constraint); the message
    /// includes the server's own (`postgres::Error` alone says "db error").
    #[error("PostgreSQL: {}", pg_detail(.0))]
    Postgres(#[from] postgres::Error),
    /// The PostgreSQL connection's thread is gone (it panicked or the
    /// connection was closed).
    #[error("PostgreSQL connection closed")]
    Closed,
    /// A stored value does not have the type or length the schema promises.
    #[error("stored data is not what the schema promises: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer version of the aggregator.
    #[error("schema version {found} is newer than this program's {known}: upgrade the aggregator")]
    TooNew {
        /// Version in the database.
        found: i64,
        /// Newest version this program knows.
        known: i64,
    },
}

fn pg_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({}): {}", e, d.code().code(), d.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A value bound to a statement or read from a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (INTEGER / BIGINT; INT4 columns are read into it).
    Int(i64),
    /// UTF-8 text (TEXT).
    Text(String),
    /// Bytes (BLOB / BYTEA).
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row.
#[derive(Debug)]
pub struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, DbError> {
        self.0.get(i).ok_or_else(|| DbError::Corrupt(format!("no column {i}")))
    }

    /// Column `i` as an integer (not NULL).
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            v => Err(DbError::Corrupt(format!("column {i}: expected an integer, got {v:?}"))),
        }
    }

    /// Column `i` as an integer or NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// Column `i` as text (not NULL).
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        match self.at(i)? {
            Value::Text(v) => Ok(v.clone()),
            v => Err(DbError::Corrupt(format!("column {i}: expected text, got {v:?}"))),
        }
    }

    /// Column `i` as text or NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// Column `i` as bytes or NULL.
    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.blob(i).map(Some),
        }
    }

    /// Column `i` as bytes (not NULL).
    pub fn blob(&self, i: usize) -> Result<Vec<u8>, DbError> {
        match self.at(i)? {
            Value::Blob(v) => Ok(v.clone()),
            v => Err(DbError::Corrupt(format!("column {i}: expected bytes, got {v:?}"))),
        }
    }
}

/// Which engine, chosen by [`DbChoice::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbChoice {
    /// `aggregator.sqlite` in the state directory (the default).
    Sqlite,
    /// A PostgreSQL connection string (`postgres://user@host:port/db` or
    /// `postgresql://…`, or the key=value form).
    Postgres(String),
}

impl DbChoice {
    /// `sqlite` (or empty) or a `postgres://` / `postgresql://` URL.
    pub fn parse(s: &str) -> Result<DbChoice, String> {
        match s {
            "" | "sqlite" => Ok(DbChoice::Sqlite),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                url.parse::<postgres::Config>().map_err(|e| format!("{url:?}: {e}"))?;
                Ok(DbChoice::Postgres(url.to_owned()))
            }
            other => Err(format!("{other:?}: expected `sqlite` or a postgres:// URL")),
        }
    }
}

/// One connection.
pub enum Db {
    /// A SQLite connection.
    Sqlite(rusqlite::Connection),
    /// A PostgreSQL connection (on its own thread).
    Postgres(pg::PgConn),
}

/// `$1` → `?1`: SQLite numbers `?NNN` parameters explicitly (a `$1` would be
/// a *named* parameter, numbered by first appearance).
fn sqlite_sql(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return sql.into();
    }
    sql.replace('$', "?").into()
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Result<Value, DbError> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|_| DbError::Corrupt("text is not UTF-8".into()))?)
        }
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(_) => return Err(DbError::Corrupt("unexpected REAL".into())),
    })
}

impl Db {
    /// Open a connection: the SQLite file `state_dir/file` (WAL, 10 s busy
    /// timeout) or PostgreSQL. Migrations are not run here (see [`migrate`]).
    pub fn open(choice: &DbChoice, state_dir: &Path, file: &str) -> Result<Db, DbError> {
        match choice {
            DbChoice::Sqlite => {
                let conn = rusqlite::Connection::open(state_dir.join(file))?;
                conn.busy_timeout(Duration::from_secs(10))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                Ok(Db::Sqlite(conn))
            }
            DbChoice::Postgres(url) => Ok(Db::Postgres(pg::PgConn::connect(url)?)),
        }
    }

    /// Run one statement; the number of rows it changed. Statements are
    /// prepared once per connection and cached by their text.
    pub fn execute(&self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        match self {
            Db::Sqlite(c) => {
                let n = c.prepare_cached(&sqlite_sql(sql))?.execute(rusqlite::params_from_iter(args.iter()))?;
                Ok(n as u64)
            }
            Db::Postgres(p) => p.execute(sql, args),
        }
    }

    /// Run a query; all its rows.
    pub fn query(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut st = c.prepare_cached(&sqlite_sql(sql))?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(sqlite_value(r.get_ref(i)?)?);
                    }
                    out.push(Row(vals));
                }
                Ok(out)
            }
            Db::Postgres(p) => p.query(sql, args).map(|rows| rows.into_iter().map(Row).collect()),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, sql: &str, args: Vec<Value>) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Start a transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock
    /// at once, so that two processes never deadlock upgrading a read lock).
    pub fn begin(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch("BEGIN IMMEDIATE")?),
            Db::Postgres(p) => p.batch("BEGIN"),
        }
    }

    /// Commit the open transaction.
    pub fn commit(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Db::Postgres(p) => p.batch("COMMIT"),
        }
    }

    /// Roll back the open transaction, if any (errors are logged: the caller
    /// is already handling the error that made it roll back).
    pub fn rollback(&self) {
        let res = match self {
            Db::Sqlite(c) if c.is_autocommit() => Ok(()),
            Db::Sqlite(c) => c.execute_batch("ROLLBACK").map_err(DbError::from),
            Db::Postgres(p) => p.batch("ROLLBACK"),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "rollback failed");
        }
    }

    /// `f` inside a transaction: committed if it returns `Ok`, rolled back
    /// otherwise.
    pub fn transaction<T, E: From<DbError>>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E> {
        self.begin()?;
        match f(self) {
            Ok(v) => match self.commit() {
                Ok(()) => Ok(v),
                Err(e) => {
                    self.rollback();
                    Err(e.into())
                }
            },
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Statements without parameters or results (DDL), as one batch.
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(p) => p.batch(sql),
        }
    }

    /// Is this a PostgreSQL connection?
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

/// A schema version: the SQL for SQLite and for PostgreSQL.
pub struct Migration {
    /// 1, 2, …: applied in order, each once.
    pub version: i64,
    /// What it does (stored in `schema_migrations`).
    pub what: &'static str,
    /// The statements for SQLite.
    pub sqlite: &'static str,
    /// The statements for PostgreSQL.
    pub postgres: &'static str,
}

/// Bring the schema to the newest of `migrations` (in order, each in its own
/// transaction with its row in `schema_migrations`). Concurrent starts are
/// safe: PostgreSQL takes an advisory lock for the duration (`lock_key`),
/// SQLite's `BEGIN IMMEDIATE` serialises them; a version already applied is
/// skipped.
pub fn migrate(db: &Db, migrations: &[Migration], lock_key: i64) -> Result<(), DbError> {
    db.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, what TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )?;
    if db.is_postgres() {
        db.execute("SELECT pg_advisory_lock($1)", vec![Value::Int(lock_key)])?;
    }
    let res = (|| {
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        let current = db
            .query_opt("SELECT MAX(version) FROM schema_migrations", vec![])?
            .and_then(|r| r.opt_int(0).ok().flatten())
            .unwrap_or(0);
        if current > known {
            return Err(DbError::TooNew { found: current, known });
        }
        for m in migrations.iter().filter(|m| m.version > current) {
            db.transaction(|db| {
                db.batch(if db.is_postgres() { m.postgres } else { m.sqlite })?;
                db.execute(
                    "INSERT INTO schema_migrations (version, what, applied_at) VALUES ($1, $2, $3)",
                    vec![Value::Int(m.version), m.what.into(), Value::Int(now_ms())],
                )?;
                Ok::<_, DbError>(())
            })?;
            tracing::info!(version = m.version, what = m.what, "database migrated");
        }
        Ok(())
    })();
    if db.is_postgres() {
        let _ = db.execute("SELECT pg_advisory_unlock($1)", vec![Value::Int(lock_key)]);
    }
    res
}

#[cfg(test)]
mod tests;
