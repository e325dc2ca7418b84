//! The crate's one error type ([`Error`]) and the reasons a CSR is refused ([`Refusal`]).

use std::fmt;
use std::path::PathBuf;

/// Why a certificate signing request was refused.
///
/// Every variant is a problem with the *request* (HTTP 400); its `Display` text is
/// the reason sent back to the client and written to the request log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is not a DER PKCS#10 request, a PEM `CERTIFICATE REQUEST`, or
    /// (EST) base64 of DER. The string says what failed to parse.
    Malformed(String),
    /// The request's version is not v1 (INTEGER 0).
    UnsupportedVersion,
    /// The public key is not an EC key on P-256 (prime256v1). The string names what it is.
    KeyNotP256(String),
    /// The key is declared P-256 but its point does not decode to a valid curve point.
    InvalidPublicKey,
    /// The request is signed with something other than ecdsa-with-SHA256 (string: what).
    SignatureAlgorithm(String),
    /// The self-signature over the request does not verify with the request's key.
    BadSignature,
    /// The subject has no commonName.
    MissingCn,
    /// The subject has more than one commonName.
    MultipleCn,
    /// The commonName does not match `[A-Za-z0-9._-]{1,64}` (string: the CN, possibly cut).
    CnNotAllowed(String),
    /// An O or OU attribute is unusable (wrong string type, empty, too long, control chars).
    BadAttribute(String),
    /// A server certificate request without a usable name (string: why).
    BadServerName(String),
    /// A certificate profile that cannot be issued as asked: an unknown
    /// profile or parameter, an operator name that is not the request's CN.
    BadProfile(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(what) => write!(f, "malformed CSR: {what}"),
            Refusal::UnsupportedVersion => f.write_str("CSR version is not v1"),
            Refusal::KeyNotP256(what) => write!(f, "key is not P-256 ({what})"),
            Refusal::InvalidPublicKey => f.write_str("public key is not a valid P-256 point"),
            Refusal::SignatureAlgorithm(what) => {
                write!(
                    f,
                    "CSR signature algorithm is not ecdsa-with-SHA256 ({what})"
                )
            }
            Refusal::BadSignature => f.write_str("CSR signature does not verify"),
            Refusal::MissingCn => f.write_str("CSR subject has no CN"),
            Refusal::BadServerName(why) => write!(f, "server certificate names: {why}"),
            Refusal::BadProfile(why) => write!(f, "certificate profile: {why}"),
            Refusal::MultipleCn => f.write_str("CSR subject has more than one CN"),
            Refusal::CnNotAllowed(cn) => {
                write!(
                    f,
                    "CN {cn:?} not allowed: it must match [A-Za-z0-9._-]{{1,64}}"
                )
            }
            Refusal::BadAttribute(what) => write!(f, "CSR subject attribute not allowed: {what}"),
        }
    }
}

/// Errors of the CA library, its HTTP server and its HTTP client.
///
/// HTTP mapping (see [`Error::http_status`]): [`Error::Refused`] is 400,
/// [`Error::TooLarge`] is 413, everything else the server can hit is 500 (with a
/// generic body; the details go to the log). [`Error::Http`], [`Error::Transport`]
/// and [`Error::BadResponse`] only come from the [`crate::client`] functions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CSR was refused; the [`Refusal`] says why.
    #[error("CSR refused: {0}")]
    Refused(Refusal),
    /// The request body is larger than the limit ([`crate::MAX_BODY_BYTES`]).
    #[error("request body too large (limit {limit} bytes)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Invalid [`crate::CaConfig`] (for example `validity_days == 0`).
    #[error("invalid CA configuration: {0}")]
    Config(String),
    /// The CA state (key/certificate files, imported CAs) is inconsistent or unusable.
    #[error("CA state {path}: {reason}")]
    State {
        /// The file or directory concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file of the CA state failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The log's database (SQLite or PostgreSQL) failed.
    #[error("database error: {0}")]
    Db(#[from] tfmprov_db::DbError),
    /// Building or encoding a certificate failed (an internal error, not bad input).
    #[error("certificate encoding error: {0}")]
    Encoding(String),
    /// The HTTP server could not run (accept loop I/O error).
    #[error("HTTP server error: {0}")]
    Server(#[source] std::io::Error),
    /// A revocation names a serial this CA never issued (404).
    #[error("no certificate with serial {0} was issued by this CA")]
    UnknownSerial(String),
    /// A revocation request that cannot be read (400).
    #[error("bad revocation request: {0}")]
    BadRevocation(String),
    /// The request has no operator credential with the scope it needs (401 /
    /// 403, answered with the [`tfmprov_auth::Denied`] as it is).
    #[error("{}", .0.reason)]
    Denied(tfmprov_auth::Denied),
    /// The operators and audit log failed.
    #[error("operators / audit log: {0}")]
    Auth(#[from] tfmprov_auth::Error),
    /// Client: the CA server answered with a non-success status; `message` is its text.
    #[error("CA server answered HTTP {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The response body (the refusal reason for 400).
        message: String,
    },
    /// Client: the CA server could not be reached or the exchange failed.
    #[error("cannot talk to CA server: {0}")]
    Transport(String),
    /// Client: the CA server answered 200 with something that is not what was expected.
    #[error("unexpected answer from CA server: {0}")]
    BadResponse(String),
}

impl Error {
    /// The HTTP status this error is answered with by the server.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Refused(_) => 400,
            Error::TooLarge { .. } => 413,
            Error::Denied(d) => d.status,
            Error::UnknownSerial(_) => 404,
            Error::BadRevocation(_) => 400,
            _ => 500,
        }
    }

    /// The refusal, if this error is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn state(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::State {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn encoding(e: impl fmt::Display) -> Self {
        Error::Encoding(e.to_string())
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Refused(r)
    }
}
