//! The audit log: one row per event, each carrying the SHA-256 of the one
//! before (seed 004: "audit logs of every key operation").
//!
//! Entry `n`'s hash is SHA-256 over the previous entry's hash (32 zero
//! bytes for the first), then `n`, the time (both 8 bytes big-endian), then
//! actor, action, subject and result, each as a 4-byte big-endian length and
//! its UTF-8. Editing a field changes that entry's hash; removing or moving
//! an entry breaks the sequence numbers or the next entry's link. Only a cut
//! at the end leaves a consistent log: [`Head`] is the last entry's
//! sequence number and hash, for the operator to keep elsewhere and check
//! with [`Auth::verify_audit`].

use sha2::{Digest, Sha256};
use tfmprov_db::{now_ms, Value};

use crate::{Auth, Error};

/// PostgreSQL advisory lock that orders appends across instances.
const AUDIT_LOCK: i64 = 0x7466_6D70_6175_6431; // "tfmpaud1"
/// Longest subject or result kept (longer ones are cut, marked with `…`).
const MAX_FIELD: usize = 512;

/// One entry, as `GET /v1/audit` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// 1, 2, …
    pub seq: i64,
    /// Unix ms.
    pub time_ms: i64,
    /// The operator's name, or `-` for an unauthenticated caller.
    pub actor: String,
    /// What happened: `certificate.issue`, `device.register`,
    /// `device.revoke`, `device.kak`, `command.submit`, `rotation.start`,
    /// `auth.refused`, `operator.add`, `operator.revoke`.
    pub action: String,
    /// What it happened to: a device ID, a certificate's subject and
    /// serial, or the refused request (`POST /v1/csr`).
    pub subject: String,
    /// `ok`, or why not.
    pub result: String,
    /// The previous entry's hash (hex).
    pub prev_sha256: String,
    /// This entry's hash (hex).
    pub sha256: String,
}

/// The end of the log: its last sequence number and hash (0 and 64 zeros
/// for an empty log).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// Entries in the log.
    pub seq: i64,
    /// The last entry's hash (hex).
    pub sha256: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.sha256)
    }
}

impl std::str::FromStr for Head {
    type Err = String;
    fn from_str(s: &str) -> Result<Head, String> {
        let (seq, hash) = s.split_once(':').ok_or("expected SEQ:SHA256")?;
        let seq = seq.parse().map_err(|_| format!("{seq:?} is not a sequence number"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hash:?} is not a SHA-256 in hex"));
        }
        Ok(Head { seq, sha256: hash.to_ascii_lowercase() })
    }
}

/// What [`Auth::verify_audit`] found wrong: the first inconsistency.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// Entry `seq`'s fields do not give its hash: it was edited.
    #[error("entry {seq} was edited: its fields do not give its hash")]
    Edited {
        /// The entry.
        seq: i64,
    },
    /// A sequence number is missing: entries were removed (or renumbered).
    #[error("entry {expected} is missing (the next one is {found}): entries were removed")]
    Missing {
        /// The number that should come next.
        expected: i64,
        /// The one that does.
        found: i64,
    },
    /// Entry `seq` does not link to the entry before it: entries were
    /// removed, moved or replaced before it.
    #[error("entry {seq} does not link to entry {}: entries before it were removed, moved or replaced", seq - 1)]
    BrokenLink {
        /// The entry.
        seq: i64,
    },
    /// The log ends before the head the operator kept: it was cut.
    #[error("the log ends at entry {found}, before the kept head {expected}: entries at its end were removed")]
    Truncated {
        /// The kept head's sequence number.
        expected: i64,
        /// The log's last one.
        found: i64,
    },
    /// The entry at the kept head's number has another hash: the log was
    /// rewritten from there or before.
    #[error("entry {seq}'s hash is not the kept head's: the log was rewritten")]
    Rewritten {
        /// The entry.
        seq: i64,
    },
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The hash of an entry (module docs).
pub fn entry_hash(prev: &[u8], seq: i64, time_ms: i64, fields: [&str; 4]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    for f in fields {
        h.update((f.len() as u32).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().into()
}

fn entry_of(r: &tfmprov_db::Row) -> Result<(AuditEntry, Vec<u8>, Vec<u8>), Error> {
    let prev = r.blob(6)?;
    let hash = r.blob(7)?;
    Ok((
        AuditEntry {
            seq: r.int(0)?,
            time_ms: r.int(1)?,
            actor: r.text(2)?,
            action: r.text(3)?,
            subject: r.text(4)?,
            result: r.text(5)?,
            prev_sha256: hex::encode(&prev),
            sha256: hex::encode(&hash),
        },
        prev,
        hash,
    ))
}

const COLUMNS: &str = "seq, time_ms, actor, action, subject, result, prev_sha256, sha256";

impl Auth {
    /// Appends an entry; its sequence number. Appends from several
    /// instances on one PostgreSQL database are ordered by an advisory lock,
    /// on SQLite by the write transaction.
    pub fn append(&self, actor: &str, action: &str, subject: &str, result: &str) -> Result<i64, Error> {
        let (subject, result) = (cut(subject), cut(result));
        let db = self.db();
        db.transaction(|db| {
            if db.is_postgres() {
                db.execute("SELECT pg_advisory_xact_lock($1)", vec![Value::Int(AUDIT_LOCK)])?;
            }
            let last = db.query_opt("SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1", vec![])?;
            let (seq, prev) = match last {
                Some(r) => (r.int(0)? + 1, r.blob(1)?),
                None => (1, vec![0u8; 32]),
            };
            let time = now_ms();
            let hash = entry_hash(&prev, seq, time, [actor, action, &subject, &result]);
            db.execute(
                &format!("INSERT INTO audit ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                vec![
                    Value::Int(seq),
                    Value::Int(time),
                    actor.into(),
                    action.into(),
                    subject.as_str().into(),
                    result.as_str().into(),
                    Value::Blob(prev),
                    Value::Blob(hash.to_vec()),
                ],
            )?;
            Ok::<_, Error>(seq)
        })
    }

    /// Up to `limit` entries after `after`, oldest first.
    pub fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditEntry>, Error> {
        let rows = self.db().query(
            &format!("SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
            vec![Value::Int(after), Value::Int(i64::from(limit))],
        )?;
        rows.iter().map(|r| entry_of(r).map(|(e, _, _)| e)).collect()
    }

    /// Checks the whole chain (module docs) and, if given, that it still
    /// reaches `kept` (a head noted earlier); the head now. The first
    /// inconsistency is [`Error::Tampered`].
    pub fn verify_audit(&self, kept: Option<&Head>) -> Result<Head, Error> {
        let mut expected = 1i64;
        let mut prev = vec![0u8; 32];
        let mut at_kept = None;
        // Pages, so that a long log is not held in memory at once; from the
        // lowest number there is, so that a row slipped in below 1 shows.
        let mut last_seen = i64::MIN;
        loop {
            let rows = self.db().query(
                &format!("SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT 1000"),
                vec![Value::Int(last_seen)],
            )?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let (e, stored_prev, stored_hash) = entry_of(r)?;
                if e.seq != expected {
                    return Err(Error::Tampered(Tamper::Missing { expected, found: e.seq }));
                }
                if stored_prev != prev {
                    return Err(Error::Tampered(Tamper::BrokenLink { seq: e.seq }));
                }
                let hash = entry_hash(&prev, e.seq, e.time_ms, [&e.actor, &e.action, &e.subject, &e.result]);
                if hash[..] != stored_hash[..] {
                    return Err(Error::Tampered(Tamper::Edited { seq: e.seq }));
                }
                if kept.is_some_and(|k| k.seq == e.seq) {
                    at_kept = Some(e.sha256.clone());
                }
                prev = stored_hash;
                last_seen = e.seq;
                expected += 1;
            }
        }
        let head = Head { seq: expected - 1, sha256: hex::encode(&prev) };
        if let Some(k) = kept {
            if k.seq > head.seq {
                return Err(Error::Tampered(Tamper::Truncated { expected: k.seq, found: head.seq }));
            }
            if k.seq > 0 && at_kept.as_deref() != Some(k.sha256.as_str()) {
                return Err(Error::Tampered(Tamper::Rewritten { seq: k.seq }));
            }
        }
        Ok(head)
    }
}
