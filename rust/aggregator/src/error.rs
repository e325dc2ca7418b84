//! The crate's one error type ([`Error`]) and the reasons a registration is
//! refused ([`Refusal`]).

use std::fmt;

/// Why a registration (`POST /v1/devices`) was refused.
///
/// [`Refusal::Conflict`] and [`Refusal::Revoked`] are HTTP 409, everything else
/// is 400. The `Display` text is the reason sent back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The device id does not match `[A-Za-z0-9._-]{1,64}`.
    BadDeviceId(String),
    /// The body is not JSON `{"device_id", "chain_pem"}` or a PEM chain with
    /// `?device_id=`; says what is wrong.
    BadRequest(String),
    /// The chain is not PEM certificates, or a certificate does not parse.
    BadChain(String),
    /// The chain does not verify to the configured root (signature, validity,
    /// basicConstraints / path length, extended key usage); the string is the
    /// verifier's reason.
    Untrusted(String),
    /// A certificate's keyUsage does not allow its role in the chain.
    KeyUsage(String),
    /// The leaf's CN is missing, repeated or differs from the device id.
    CnMismatch(String),
    /// The leaf key is not an uncompressed P-256 point.
    KeyNotP256(String),
    /// The device id is already registered with another key (HTTP 409).
    Conflict,
    /// The device id was revoked; it cannot be registered again (HTTP 409).
    Revoked,
    /// The CA's CRL lists the leaf certificate (HTTP 409).
    CertificateRevoked,
}

impl Refusal {
    /// The HTTP status for this refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::Conflict | Refusal::Revoked | Refusal::CertificateRevoked => 409,
            _ => 400,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadDeviceId(id) => {
                write!(f, "device id {id:?} is invalid: it must match [A-Za-z0-9._-]{{1,64}}")
            }
            Refusal::BadRequest(w) => write!(f, "bad request: {w}"),
            Refusal::BadChain(w) => write!(f, "bad certificate chain: {w}"),
            Refusal::Untrusted(w) => {
                write!(f, "certificate chain does not verify to the configured root: {w}")
            }
            Refusal::KeyUsage(w) => write!(f, "key usage not allowed: {w}"),
            Refusal::CnMismatch(w) => write!(f, "leaf CN does not match the device id: {w}"),
            Refusal::KeyNotP256(w) => write!(f, "leaf key is not a P-256 key: {w}"),
            Refusal::Conflict => {
                f.write_str("device id is already registered with a different key")
            }
            Refusal::Revoked => f.write_str("device id is revoked and cannot be registered again"),
            Refusal::CertificateRevoked => f.write_str("the certificate is revoked: the CA's CRL lists it"),
        }
    }
}

/// Errors of the aggregator library, its servers and its HTTP client.
///
/// [`Error::Http`], [`Error::Transport`] and [`Error::BadResponse`] only come
/// from the [`crate::client`] functions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A registration was refused; the [`Refusal`] says why.
    #[error("registration refused: {0}")]
    Refused(Refusal),
    /// Invalid [`crate::Config`] (bad broker URL, no root certificate, window size...).
    #[error("invalid aggregator configuration: {0}")]
    Config(String),
    /// File or socket I/O failed (state directory, HTTP listener, CA files).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The database (SQLite or PostgreSQL) failed.
    #[error("database error: {0}")]
    Db(#[from] tfmprov_db::DbError),
    /// The MQTT connection or subscription failed.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// The embedded broker could not be started.
    #[error("embedded broker: {0}")]
    Broker(String),
    /// The cloud identity (`cloud_key.pem` + `cloud_cert.pem`) or the
    /// storage key (`storage.key`) cannot be loaded, imported or enrolled:
    /// unreadable or mismatched files, a certificate that does not verify to
    /// the configured root, the CA refused or could not be reached.
    #[error("cloud identity: {0}")]
    Cloud(String),
    /// (client) The server answered with a non-success status; `message` is its body.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The response body (the server's reason).
        message: String,
    },
    /// (client) The request could not be sent or the answer not read.
    #[error("HTTP transport: {0}")]
    Transport(String),
    /// (client) The server's answer is not what the API promises.
    #[error("unexpected answer from the aggregator: {0}")]
    BadResponse(String),
    /// The request has no operator credential with the scope it needs (401 /
    /// 403, answered as it is).
    #[error("{}", .0.reason)]
    Denied(tfmprov_auth::Denied),
    /// The operators and audit log failed.
    #[error("operators / audit log: {0}")]
    Auth(#[from] tfmprov_auth::Error),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Refused(r)
    }
}
