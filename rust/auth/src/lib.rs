//! `tfmprov-auth`: who may do what on the CA and the aggregator (issue 13).
//!
//! - **Operators** ([`operators`]): named API tokens with scopes
//!   ([`Scope`]). A token is shown once, when it is made; the database keeps
//!   only its SHA-256, so a copy of the database does not give anyone a
//!   credential. Revoked tokens stay listed (with the time) and are refused.
//!   A server with no operator makes one, `admin` with every scope, at first
//!   start and writes its token to a file only the owner can read
//!   ([`Auth::bootstrap`]).
//! - **Authorization** ([`Auth::authorize`]): `Authorization: Bearer
//!   <token>`; no or unknown or revoked token is 401, a token without the
//!   scope is 403 ([`Denied`], an axum response). Every refusal is written
//!   to the audit log.
//! - **Audit log** ([`audit`]): every certificate issued, registration,
//!   revocation, remote command and refused credential, with time,
//!   operator, subject and result. Each entry carries the SHA-256 of the one
//!   before, so [`Auth::verify_audit`] finds an entry edited, removed or
//!   moved; the last entry's hash (the head) is what to keep elsewhere to
//!   notice a log cut at its end.
//!
//! The tables live in the application's database (one code path over SQLite
//! and PostgreSQL, [`tfmprov_db`]); each application adds [`MIGRATION`] to
//! its own list.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod operators;

use std::sync::{Mutex, MutexGuard};

pub use audit::{AuditEntry, Head, Tamper};
pub use operators::{
    generate_token, is_operator_name, operator_certificate_name, write_secret, Credentials, Denied, Operator, Scope,
    OPERATOR_OU,
};
use tfmprov_db::{Db, DbError};

/// The tables of this crate, for the application's migration list.
pub struct Schema {
    /// What the migration does.
    pub what: &'static str,
    /// SQLite statements.
    pub sqlite: &'static str,
    /// PostgreSQL statements.
    pub postgres: &'static str,
}

/// Operators (token hashes, scopes) and the audit log.
pub const MIGRATION: Schema = Schema {
    what: "operators (hashed API tokens, scopes) and the hash-chained audit log",
    sqlite: "
        CREATE TABLE operators (
            name TEXT PRIMARY KEY,
            token_sha256 BLOB NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            revoked_ms INTEGER
        );
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            result TEXT NOT NULL,
            prev_sha256 BLOB NOT NULL,
            sha256 BLOB NOT NULL
        );",
    postgres: "
        CREATE TABLE operators (
            name TEXT PRIMARY KEY,
            token_sha256 BYTEA NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            revoked_ms BIGINT
        );
        CREATE TABLE audit (
            seq BIGINT PRIMARY KEY,
            time_ms BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            result TEXT NOT NULL,
            prev_sha256 BYTEA NOT NULL,
            sha256 BYTEA NOT NULL
        );",
};

/// Operator certificates: the SHA-256 of the client certificate bound to
/// each operator (after [`MIGRATION`]).
pub const MIGRATION_CERTS: Schema = Schema {
    what: "operator client certificates (SHA-256 bound to an operator)",
    sqlite: "
        ALTER TABLE operators ADD COLUMN cert_sha256 BLOB;
        CREATE UNIQUE INDEX operators_cert ON operators (cert_sha256);",
    postgres: "
        ALTER TABLE operators ADD COLUMN cert_sha256 BYTEA;
        CREATE UNIQUE INDEX operators_cert ON operators (cert_sha256);",
};

/// Everything that can go wrong here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A scope name this program does not know.
    #[error("unknown scope {0:?} (known: sign, devices, commands, audit, revoke, servers, operators)")]
    UnknownScope(String),
    /// A certificate that cannot be bound to an operator.
    #[error("not an operator certificate: {0}")]
    NotOperatorCertificate(String),
    /// An operator name that is empty, too long or not `[A-Za-z0-9._-]`.
    #[error("operator name {0:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    InvalidName(String),
    /// An operator of that name exists.
    #[error("an operator named {0:?} exists")]
    NameTaken(String),
    /// No operator of that name.
    #[error("no operator named {0:?}")]
    NoSuchOperator(String),
    /// The audit log is not consistent.
    #[error("audit log: {0}")]
    Tampered(#[from] audit::Tamper),
    /// The token file could not be written.
    #[error("token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The operators and the audit log of one server, on its own connection to
/// the server's database.
pub struct Auth {
    db: Mutex<Db>,
}

impl Auth {
    /// Uses `db`, whose schema already has [`MIGRATION`].
    pub fn new(db: Db) -> Auth {
        Auth { db: Mutex::new(db) }
    }

    fn db(&self) -> MutexGuard<'_, Db> {
        // A panic while holding it left no half-written state the database
        // would keep (statements are atomic, transactions roll back).
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
