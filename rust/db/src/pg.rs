//! A PostgreSQL connection on its own thread.
//!
//! The `postgres` crate's blocking client drives an async client on a
//! runtime of its own and refuses to run inside another runtime's worker,
//! which is where the MQTT task makes its (rare) registry and session
//! lookups. So the client lives on a dedicated thread and each call is a
//! closure sent to it; the caller waits for the answer, exactly as it would
//! wait for a rusqlite call. Prepared statements are cached per connection.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::mpsc::{channel, sync_channel, Sender};

use bytes::BytesMut;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::{DbError, Value};

struct State {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl State {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// A connection (its thread ends when this is dropped).
pub struct PgConn {
    jobs: Sender<Job>,
}

impl PgConn {
    /// Connect (plain TCP or a Unix socket as the URL says; TLS to the
    /// database is not built in: see docs/deploy.md).
    pub fn connect(url: &str) -> Result<PgConn, DbError> {
        let (jobs, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = sync_channel::<Result<(), postgres::Error>>(1);
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("agg-postgres".into())
            .spawn(move || {
                let client = match Client::connect(&url, NoTls) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut state = State { client, statements: HashMap::new() };
                // Ends when the PgConn (the last sender) is dropped.
                while let Ok(job) = rx.recv() {
                    job(&mut state);
                }
            })
            .map_err(|_| DbError::Closed)?;
        ready_rx.recv().map_err(|_| DbError::Closed)??;
        Ok(PgConn { jobs })
    }

    fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut State) -> R + Send + 'static) -> Result<R, DbError> {
        let (tx, rx) = sync_channel(1);
        self.jobs
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| DbError::Closed)?;
        rx.recv().map_err(|_| DbError::Closed)
    }

    pub fn execute(&self, sql: &str, args: Vec<Value>) -> Result<u64, DbError> {
        let sql = sql.to_owned();
        self.call(move |s| {
            let st = s.statement(&sql)?;
            let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            s.client.execute(&st, &params)
        })?
        .map_err(DbError::from)
    }

    pub fn query(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Vec<Value>>, DbError> {
        let sql = sql.to_owned();
        self.call(move |s| -> Result<Vec<Vec<Value>>, DbError> {
            let st = s.statement(&sql)?;
            let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            let rows = s.client.query(&st, &params)?;
            rows.iter().map(row_values).collect()
        })?
    }

    /// Statements without parameters or results (BEGIN, COMMIT, DDL).
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        let sql = sql.to_owned();
        self.call(move |s| s.client.batch_execute(&sql))?.map_err(DbError::from)
    }
}

fn row_values(r: &postgres::Row) -> Result<Vec<Value>, DbError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let t = col.type_();
        let v = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(i64::from(v)))
        } else if *t == Type::TEXT || *t == Type::VARCHAR {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else if *t == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else {
            return Err(DbError::Corrupt(format!("column {} has type {t}, which the aggregator does not use", col.name())));
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(out)
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Text(v) => v.as_str().to_sql(ty, out),
            Value::Blob(v) => v.as_slice().to_sql(ty, out),
        }
    }

    // Each variant checks the column type when it is encoded.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
