//! `tfmprov-ca`: the provisioning CA (seed 001, "CA Server Script").
//!
//! A two-level CA (root -> intermediate -> device leaf), all P-256 / ecdsa-with-SHA256.
//! The CA checks a device's PKCS#10 request (self-signature, P-256 key, CN rule of
//! DESIGN.md `[A-Za-z0-9._-]{1,64}`), issues a client-auth leaf signed by the
//! intermediate, and logs every request (issued or refused) in SQLite, flagging a
//! re-key when a known CN comes with another key.
//!
//! * [`Ca`]: the library (open/create the state, sign, query the log);
//! * [`serve`] / [`router`]: the HTTP API (`/v1/csr`, `/v1/ca`, `/v1/devices`,
//!   EST `/.well-known/est/cacerts` + `simpleenroll`, `/healthz`, `/metrics`);
//! * [`client`]: a blocking HTTP client for the `tfmprov` CLI.
//!
//! State directory layout: see [`store`] constants (`root_cert.pem`, `root_key.pem`,
//! `intermediate_cert.pem`, `intermediate_key.pem`, `ca.sqlite`). `docs/CA.md` in the
//! repository describes the choices (validity, subject, transport security).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod certs;
pub mod server_identity;
pub mod client;
mod csr;
mod db;
mod error;
mod http;
mod metrics;
pub mod store;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use der::Encode;
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};

pub use csr::{cn_allowed, csr_der_from_body, csr_der_from_est_body};
pub use db::{DeviceRecord, RequestRecord};
pub use certs::{LeafProfile, ServerName};

/// The CA's HTTPS key in its state directory ([`Ca::server_identity`]).
pub const HTTPS_KEY_FILE: &str = "https.key";
/// The CA's HTTPS certificate chain in its state directory.
pub const HTTPS_CERT_FILE: &str = "https.crt";
pub use error::{Error, Refusal};
pub use http::{router, serve, serve_https};

/// Largest request body (and CSR) accepted: 64 KiB. Larger is HTTP 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The first operator's token file in the state directory.
pub const ADMIN_TOKEN_FILE: &str = "operator.token";
/// Default leaf validity in days.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
/// Largest accepted `validity_days` (100 years; the leaf is cut at the intermediate's
/// notAfter anyway).
pub const MAX_VALIDITY_DAYS: u32 = 36_500;

/// Existing CA certificates and keys to import on first start (instead of generating).
///
/// Keys: PEM, PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`), P-256.
/// Certificates: PEM, one per file. The intermediate must be a CA certificate signed
/// (ecdsa-with-SHA256) by the root. The root key is optional: without it the root
/// stays offline and only the intermediate key is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedCas {
    /// Root CA certificate (PEM).
    pub root_cert: PathBuf,
    /// Root CA private key (PEM), if it is to be kept with the CA.
    pub root_key: Option<PathBuf>,
    /// Intermediate CA certificate (PEM).
    pub intermediate_cert: PathBuf,
    /// Intermediate CA private key (PEM).
    pub intermediate_key: PathBuf,
}

/// How to open a CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaConfig {
    /// Directory holding the keys, certificates and `ca.sqlite` (created with mode
    /// 0700 when missing).
    pub state_dir: PathBuf,
    /// Leaf validity in days (1..=[`MAX_VALIDITY_DAYS`], default 365).
    pub validity_days: u32,
    /// CAs to import when the state directory holds none yet. Given with an existing
    /// state, they must be the same certificates, else [`Error::State`].
    pub import: Option<ImportedCas>,
    /// Where the log goes: `ca.sqlite` in the state directory (default) or
    /// PostgreSQL. The keys and certificates stay in the state directory.
    pub database: tfmprov_db::DbChoice,
    /// The first operator's token file (default `operator.token` in the
    /// state directory): at the first start, with no operator at all, the
    /// token it holds becomes `admin`'s, or a new one is written there
    /// ([`tfmprov_auth::Auth::bootstrap`]).
    pub admin_token_file: Option<PathBuf>,
}

impl CaConfig {
    /// A configuration with the default validity and no import.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        CaConfig {
            state_dir: state_dir.into(),
            validity_days: DEFAULT_VALIDITY_DAYS,
            import: None,
            database: tfmprov_db::DbChoice::Sqlite,
            admin_token_file: None,
        }
    }
}

/// A certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The leaf certificate (DER).
    pub leaf_der: Vec<u8>,
    /// PEM: the leaf, then the intermediate.
    pub chain_pem: String,
    /// The device id (the CN).
    pub device_id: String,
    /// The leaf's serial number (lowercase hex).
    pub serial_hex: String,
    /// SHA-256 (hex) of the device key's SubjectPublicKeyInfo DER.
    pub spki_sha256: String,
    /// True when the CN was known with a different key (latest issued certificate).
    pub rekey: bool,
}

/// A revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    /// Its serial (lowercase hex).
    pub serial_hex: String,
    /// The device (the CN).
    pub device_id: String,
    /// When it was revoked (Unix seconds).
    pub revoked_at: u64,
}

/// How long a CRL is valid (its nextUpdate): 1 hour. Clients fetch it more
/// often (the aggregator every `--crl-interval`, 60 s by default).
pub const CRL_VALIDITY: Duration = Duration::from_secs(3600);

/// The CA: root and intermediate certificates, the intermediate's key, the log.
pub struct Ca {
    validity_days: u32,
    state_dir: PathBuf,
    root: certs::CaCert,
    intermediate: certs::CaCert,
    intermediate_key: SigningKey,
    has_root_key: bool,
    db: db::Db,
    auth: tfmprov_auth::Auth,
    metrics: metrics::Metrics,
    /// The last CRL number handed out.
    crl_number: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("state_dir", &self.state_dir)
            .field("validity_days", &self.validity_days)
            .field("has_root_key", &self.has_root_key)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ca {
    /// Opens the CA in `cfg.state_dir`, creating it on first start.
    ///
    /// First start (no CA files in the directory): generates a root CA and an
    /// intermediate CA (P-256, ecdsa-with-SHA256), or imports `cfg.import`; keys are
    /// written as PKCS#8 PEM with mode 0600, certificates as PEM. Later starts load
    /// them and check that they belong together. A directory with only some of the
    /// files is refused ([`Error::State`]), never overwritten.
    pub fn open_or_create(cfg: &CaConfig) -> Result<Ca, Error> {
        if cfg.validity_days == 0 || cfg.validity_days > MAX_VALIDITY_DAYS {
            return Err(Error::Config(format!(
                "validity_days must be 1..={MAX_VALIDITY_DAYS}, got {}",
                cfg.validity_days
            )));
        }
        let state = store::open_or_create(&cfg.state_dir, cfg.import.as_ref())?;
        let db = db::Db::open(&cfg.database, &cfg.state_dir, store::DB_FILE)?;
        // Its own connection (the log's is held while signing).
        let auth = tfmprov_auth::Auth::new(tfmprov_db::Db::open(&cfg.database, &cfg.state_dir, store::DB_FILE)?);
        let token_file = cfg.admin_token_file.clone().unwrap_or_else(|| cfg.state_dir.join(ADMIN_TOKEN_FILE));
        auth.bootstrap(&token_file)?;
        Ok(Ca {
            validity_days: cfg.validity_days,
            state_dir: cfg.state_dir.clone(),
            root: state.root,
            intermediate: state.intermediate,
            intermediate_key: state.intermediate_key,
            has_root_key: state.has_root_key,
            db,
            auth,
            metrics: metrics::Metrics::new(),
            crl_number: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The CA's own HTTPS identity: `https.key` and `https.crt` in the state
    /// directory, issued by this CA at the first start for `names` (CN
    /// `tfmprov-ca`, logged and audited like any certificate, actor `ca`)
    /// and reused after.
    pub fn server_identity(&self, names: &[String]) -> Result<server_identity::ServerIdentity, Error> {
        server_identity::open(
            &self.state_dir.join(HTTPS_KEY_FILE),
            &self.state_dir.join(HTTPS_CERT_FILE),
            "tfmprov-ca",
            names,
            &self.root_pem(),
            // Operators may authenticate with a client certificate from this
            // CA instead of a token (bound with `tfmprov operator bind-cert`).
            tfmprov_tls::ClientAuth::Optional,
            |csr| {
                let issued = self.sign_server_csr_from(csr, "local", names);
                let (subject, result) = match &issued {
                    Ok(i) => (format!("{} serial {}", i.device_id, i.serial_hex), "ok".to_owned()),
                    Err(e) => ("CSR".to_owned(), e.to_string()),
                };
                self.auth.append("ca", "certificate.issue", &subject, &result).map_err(|e| e.to_string())?;
                issued.map(|i| i.chain_pem).map_err(|e| e.to_string())
            },
        )
    }

    /// The operators and the audit log.
    pub fn auth(&self) -> &tfmprov_auth::Auth {
        &self.auth
    }

    /// Counters since start in the Prometheus text format (`GET /metrics`).
    pub fn metrics_text(&self) -> String {
        self.metrics.text()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Whether the root key is kept in the state directory (false for an imported CA
    /// with an offline root).
    pub fn has_root_key(&self) -> bool {
        self.has_root_key
    }

    /// The leaf validity in days.
    pub fn validity_days(&self) -> u32 {
        self.validity_days
    }

    /// The root CA certificate (PEM).
    pub fn root_pem(&self) -> String {
        self.root.pem.clone()
    }

    /// The intermediate CA certificate (PEM).
    pub fn intermediate_pem(&self) -> String {
        self.intermediate.pem.clone()
    }

    /// The root CA certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The intermediate CA certificate (DER).
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate.der
    }

    /// Checks a DER PKCS#10 request and issues a leaf (see [`Ca::sign_csr_from`]);
    /// logged with source `local`.
    pub fn sign_csr(&self, csr_der: &[u8]) -> Result<Issued, Error> {
        self.sign_csr_from(csr_der, "local")
    }

    /// Checks a DER PKCS#10 request and issues a leaf signed by the intermediate.
    ///
    /// Checks: well-formed DER (no trailing bytes), version v1, P-256 key, signature
    /// ecdsa-with-SHA256 that verifies, exactly one CN matching `[A-Za-z0-9._-]{1,64}`,
    /// O/OU (optional) 1..64 characters. The leaf: random positive 16-byte serial,
    /// validity now-5 min .. now+`validity_days` (cut at the intermediate's
    /// notAfter), subject = the CSR's CN/O/OU (other attributes and requested
    /// extensions are not copied), basicConstraints CA:FALSE (critical), keyUsage
    /// digitalSignature (critical), extKeyUsage clientAuth, SKI, AKI = intermediate's
    /// SKI. Every call is written to the request log with `source` and its outcome.
    pub fn sign_csr_from(&self, csr_der: &[u8], source: &str) -> Result<Issued, Error> {
        self.sign_csr_as(csr_der, source, &LeafProfile::Device)
    }

    /// [`Ca::sign_csr_from`] for a TLS server: the leaf has extKeyUsage
    /// serverAuth and a subjectAltName of `names` (each an IP address or a
    /// host name, [`ServerName::parse`]; 1 to 16 of them).
    pub fn sign_server_csr_from(&self, csr_der: &[u8], source: &str, names: &[String]) -> Result<Issued, Error> {
        let parsed = if names.is_empty() || names.len() > 16 {
            Err(format!("{} names given, 1 to 16 needed", names.len()))
        } else {
            names.iter().map(|n| ServerName::parse(n)).collect::<Result<Vec<_>, _>>()
        };
        match parsed {
            Ok(p) => self.sign_csr_as(csr_der, source, &LeafProfile::Server(p)),
            Err(why) => {
                let err = Error::Refused(Refusal::BadServerName(why));
                self.log_failure(source, "refused", &err.to_string(), None, None);
                Err(err)
            }
        }
    }

    /// [`Ca::sign_csr_from`] for an operator (a provisioning station): the
    /// leaf has extKeyUsage clientAuth and the subject `CN=<name>,
    /// OU=tfmprov operator` ([`tfmprov_auth::OPERATOR_OU`]); the request's CN
    /// must be `name`, an operator name (`[A-Za-z0-9._-]{1,64}`). It acts for
    /// no one until bound to that operator on a server
    /// (`tfmprov operator bind-cert`).
    pub fn sign_operator_csr_from(&self, csr_der: &[u8], source: &str, name: &str) -> Result<Issued, Error> {
        if !tfmprov_auth::is_operator_name(name) {
            let why = format!("operator name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
            let err = Error::Refused(Refusal::BadProfile(why));
            self.log_failure(source, "refused", &err.to_string(), None, None);
            return Err(err);
        }
        self.sign_csr_as(csr_der, source, &LeafProfile::Operator(name.to_owned()))
    }

    fn sign_csr_as(&self, csr_der: &[u8], source: &str, profile: &LeafProfile) -> Result<Issued, Error> {
        if csr_der.len() > MAX_BODY_BYTES {
            let err = Error::TooLarge {
                limit: MAX_BODY_BYTES,
            };
            self.log_failure(source, "refused", &err.to_string(), None, None);
            return Err(err);
        }
        let mut hints = csr::CsrHints::default();
        let checked = match csr::check_csr(csr_der, &mut hints) {
            Ok(c) => c,
            Err(refusal) => {
                let spki_hash = hints.spki_der.as_deref().map(spki_sha256);
                tracing::warn!(source, cn = ?hints.cn, reason = %refusal, "CSR refused");
                self.log_failure(
                    source,
                    "refused",
                    &refusal.to_string(),
                    hints.cn.as_deref(),
                    spki_hash.as_deref(),
                );
                return Err(Error::Refused(refusal));
            }
        };
        // An operator certificate is for the operator the request names.
        if let LeafProfile::Operator(name) = profile {
            if checked.cn != *name {
                let err = Error::Refused(Refusal::BadProfile(format!("the request's CN must be the operator name {name:?}")));
                self.log_failure(source, "refused", &err.to_string(), Some(&checked.cn), None);
                return Err(err);
            }
        }
        match self.issue(&checked, source, profile) {
            Ok(issued) => {
                self.metrics.issued(issued.rekey);
                Ok(issued)
            }
            Err(err) => {
                tracing::error!(source, cn = %checked.cn, error = %err, "issuing failed");
                let hash = spki_sha256(&checked.spki_der);
                self.log_failure(
                    source,
                    "error",
                    &err.to_string(),
                    Some(&checked.cn),
                    Some(&hash),
                );
                Err(err)
            }
        }
    }

    fn issue(&self, csr: &csr::CheckedCsr, source: &str, profile: &LeafProfile) -> Result<Issued, Error> {
        let now = SystemTime::now();
        let (cert, serial) = certs::make_leaf(
            &self.intermediate,
            &self.intermediate_key,
            csr,
            profile,
            self.validity_days,
            now,
        )?;
        let leaf_der = cert.to_der().map_err(Error::encoding)?;
        let serial_hex = hex::encode(serial);
        let spki_hash = spki_sha256(&csr.spki_der);
        let not_after = cert
            .tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs();
        let issued_at = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rekey = self.db.record_issue(
            &db::NewIssue {
                serial_hex: &serial_hex,
                device_id: &csr.cn,
                spki_sha256: &spki_hash,
                issued_at,
                not_after,
                cert_der: &leaf_der,
            },
            source,
        )?;
        tracing::info!(source, device_id = %csr.cn, serial = %serial_hex, rekey, "certificate issued");
        let mut chain_pem = certs::cert_pem(&leaf_der)?;
        chain_pem.push_str(&self.intermediate.pem);
        Ok(Issued {
            leaf_der,
            chain_pem,
            device_id: csr.cn.clone(),
            serial_hex,
            spki_sha256: spki_hash,
            rekey,
        })
    }

    /// Writes a request that failed before reaching [`Ca::sign_csr_from`] (bad HTTP
    /// body, too large) to the request log. Logging failures are only traced.
    pub fn log_refusal(&self, source: &str, reason: &str) {
        self.log_failure(source, "refused", reason, None, None);
    }

    fn log_failure(
        &self,
        source: &str,
        outcome: &str,
        reason: &str,
        device_id: Option<&str>,
        spki_hash: Option<&str>,
    ) {
        self.metrics.failed(outcome);
        if let Err(e) =
            self.db
                .record_failure(unix_now(), source, outcome, reason, device_id, spki_hash)
        {
            tracing::error!(error = %e, "cannot write the request log");
        }
    }

    /// Revokes the certificate with serial `serial_hex` (lowercase hex, as
    /// the CA's log and [`Issued::serial_hex`] show it): the next CRL lists
    /// it. Revoking twice keeps the first time. A serial this CA never
    /// issued is [`Error::UnknownSerial`].
    pub fn revoke(&self, serial_hex: &str, reason: &str) -> Result<Revoked, Error> {
        let serial = serial_hex.trim().to_ascii_lowercase();
        match self.db.revoke(&serial, reason, unix_now())? {
            Some((device_id, revoked_at)) => {
                tracing::warn!(serial = %serial, device_id = %device_id, reason, "certificate revoked");
                Ok(Revoked { serial_hex: serial, device_id, revoked_at })
            }
            None => Err(Error::UnknownSerial(serial)),
        }
    }

    /// The CRL now (DER, RFC 5280 v2): every revoked certificate, signed by
    /// the intermediate, valid for [`CRL_VALIDITY`]. Its CRL number is the
    /// time in seconds, kept strictly increasing within the process.
    pub fn crl_der(&self) -> Result<Vec<u8>, Error> {
        let revoked = self
            .db
            .revoked()?
            .into_iter()
            .map(|(hex_serial, at)| Ok((hex::decode(&hex_serial).map_err(Error::encoding)?, at)))
            .collect::<Result<Vec<_>, Error>>()?;
        let now = SystemTime::now();
        let secs = unix_now();
        let next = |last: u64| Some(secs.max(last + 1));
        let last = self
            .crl_number
            .fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, next)
            .unwrap_or_default();
        let number = secs.max(last + 1);
        certs::make_crl(&self.intermediate, &self.intermediate_key, &revoked, now, now + CRL_VALIDITY, number)
    }

    /// The devices known to the CA (latest certificate per CN), sorted by device id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, Error> {
        self.db.devices()
    }

    /// The last `limit` entries of the request log, oldest first.
    pub fn requests(&self, limit: usize) -> Result<Vec<RequestRecord>, Error> {
        self.db.requests(limit)
    }

    /// An issued certificate (DER) by its serial (hex), if this CA issued it.
    pub fn certificate(&self, serial_hex: &str) -> Result<Option<Vec<u8>>, Error> {
        self.db.certificate(&serial_hex.to_ascii_lowercase())
    }

    /// DER of a PKCS#7 (CMS SignedData) certs-only bundle with the intermediate and
    /// the root (EST `cacerts`).
    pub fn cacerts_pkcs7(&self) -> Result<Vec<u8>, Error> {
        certs::certs_only_pkcs7(&[&self.intermediate.cert, &self.root.cert])
    }

    /// DER of a PKCS#7 certs-only bundle holding one certificate (EST `simpleenroll`).
    pub fn pkcs7_of(&self, cert_der: &[u8]) -> Result<Vec<u8>, Error> {
        use der::Decode;
        let cert = x509_cert::Certificate::from_der(cert_der).map_err(Error::encoding)?;
        certs::certs_only_pkcs7(&[&cert])
    }
}

/// SHA-256 of a DER SubjectPublicKeyInfo, lowercase hex (the device key's id in the log).
pub fn spki_sha256(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// Timeout used by [`client::fetch_ca`].
pub const CLIENT_DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
