//! Operators: named, scoped API tokens, stored as their SHA-256.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tfmprov_db::{now_ms, Value};

use crate::{Auth, Error};

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Have the CA sign CSRs (`POST /v1/csr`, EST `simpleenroll`).
    Sign,
    /// Register and revoke devices, set their key-agreement keys.
    Devices,
    /// Send remote commands and key rotations, read their answers.
    Commands,
    /// Read the audit log.
    Audit,
    /// Revoke certificates at the CA.
    Revoke,
    /// Have the CA issue TLS server certificates (`POST /v1/csr?profile=server`):
    /// apart from `sign` because such a certificate can stand in for a server.
    Servers,
    /// Have the CA issue operator client certificates
    /// (`POST /v1/csr?profile=operator`). Such a certificate acts for no
    /// one until a server's administrator binds it to an operator
    /// ([`Auth::bind_certificate`]).
    Operators,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 7] =
        [Scope::Sign, Scope::Devices, Scope::Commands, Scope::Audit, Scope::Revoke, Scope::Servers, Scope::Operators];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Sign => "sign",
            Scope::Devices => "devices",
            Scope::Commands => "commands",
            Scope::Audit => "audit",
            Scope::Revoke => "revoke",
            Scope::Servers => "servers",
            Scope::Operators => "operators",
        }
    }

    /// The scope of a name.
    pub fn parse(s: &str) -> Result<Scope, Error> {
        Scope::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| Error::UnknownScope(s.to_owned()))
    }

    /// Scopes from a comma-separated list (`sign,devices`); `all` is every one.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, Error> {
        if s.trim() == "all" {
            return Ok(Scope::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = Scope::parse(part)?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        if out.is_empty() {
            return Err(Error::UnknownScope(s.to_owned()));
        }
        Ok(out)
    }
}

fn join(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// An operator as listed (never its token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Operator {
    /// Its name (the audit log's actor).
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
    /// SHA-256 (hex) of the client certificate bound to it, if any.
    pub certificate_sha256: Option<String>,
}

impl Operator {
    /// Whether it may do `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.revoked_ms.is_none() && self.scopes.contains(&scope)
    }
}

/// A new token: `tfp_` and 43 characters (32 random bytes, base64url).
fn new_token() -> String {
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    format!("tfp_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// `tfp_` and at least 32 base64url characters.
fn looks_like_token(t: &str) -> bool {
    t.strip_prefix("tfp_")
        .is_some_and(|r| r.len() >= 32 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// A new token for an operator file that several servers adopt as their
/// first operator's ([`Auth::bootstrap`]).
pub fn generate_token() -> String {
    new_token()
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `name` can name an operator: 1 to 64 characters of `A-Z a-z
/// 0-9 . _ -` (also what the CA requires of an operator certificate's CN).
pub fn is_operator_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_name(name: &str) -> Result<(), Error> {
    if is_operator_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

fn operator_of(row: &tfmprov_db::Row) -> Result<Operator, Error> {
    let scopes = row.text(1)?;
    Ok(Operator {
        name: row.text(0)?,
        // A scope a newer version wrote is ignored, not fatal.
        scopes: scopes.split(',').filter_map(|s| Scope::parse(s).ok()).collect(),
        created_ms: row.int(2)?,
        revoked_ms: row.opt_int(3)?,
        certificate_sha256: row.opt_blob(4)?.map(hex::encode),
    })
}

/// The columns [`operator_of`] reads.
const OPERATOR_COLUMNS: &str = "name, scopes, created_ms, revoked_ms, cert_sha256";

/// Operator `name`, revoked or not.
fn operator_named(db: &tfmprov_db::Db, name: &str) -> Result<Operator, Error> {
    let row = db
        .query_opt(&format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE name = $1"), vec![name.into()])?
        .ok_or_else(|| Error::NoSuchOperator(name.to_owned()))?;
    operator_of(&row)
}

/// Why a request was refused: 401 (no, unknown or revoked credential) or
/// 403 (a valid one without the scope). The body says which, never more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// 401 or 403.
    pub status: u16,
    /// The reason, for the body and the audit log.
    pub reason: String,
}

impl axum_core::response::IntoResponse for Denied {
    fn into_response(self) -> axum_core::response::Response {
        let mut resp = (
            http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::UNAUTHORIZED),
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.reason),
        )
            .into_response();
        if self.status == 401 {
            resp.headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer realm=\"tfmprov\""));
        }
        resp
    }
}

impl Auth {
    /// A new operator with `scopes`; its token, shown this once.
    pub fn add_operator(&self, name: &str, scopes: &[Scope]) -> Result<(Operator, String), Error> {
        self.add_with_token(name, scopes, new_token())
    }

    fn add_with_token(&self, name: &str, scopes: &[Scope], token: String) -> Result<(Operator, String), Error> {
        check_name(name)?;
        if scopes.is_empty() {
            return Err(Error::UnknownScope(String::new()));
        }
        let now = now_ms();
        let n = self.db().execute(
            "INSERT INTO operators (name, token_sha256, scopes, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            vec![name.into(), Value::Blob(digest(&token)), Value::Text(join(scopes)), Value::Int(now)],
        )?;
        if n == 0 {
            return Err(Error::NameTaken(name.to_owned()));
        }
        self.append("-", "operator.add", name, &format!("ok: {}", join(scopes)))?;
        Ok((Operator { name: name.to_owned(), scopes: scopes.to_vec(), created_ms: now, revoked_ms: None, certificate_sha256: None }, token))
    }

    /// Every operator, revoked ones included, by name.
    pub fn operators(&self) -> Result<Vec<Operator>, Error> {
        let rows = self.db().query(&format!("SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY name"), vec![])?;
        rows.iter().map(operator_of).collect()
    }

    /// Revokes `name`'s token (at once: the next request with it is 401).
    /// Revoking a revoked operator changes nothing.
    pub fn revoke_operator(&self, name: &str) -> Result<Operator, Error> {
        let db = self.db();
        db.execute(
            "UPDATE operators SET revoked_ms = $2 WHERE name = $1 AND revoked_ms IS NULL",
            vec![name.into(), Value::Int(now_ms())],
        )?;
        let op = operator_named(&db, name)?;
        drop(db);
        self.append("-", "operator.revoke", name, "ok")?;
        Ok(op)
    }

    /// At a server's first start (no operator at all): makes `admin` with
    /// every scope, so that the server is never open to anyone and never
    /// unusable. Its token is the one already in `token_file` (a `tfp_`
    /// token, so that one file can open the CA and the aggregator alike, as
    /// `scripts/demo` does), else a new one written there (mode 0600).
    /// `None` when operators exist. Two instances starting together on one
    /// database make one admin: the second one's insert does nothing.
    pub fn bootstrap(&self, token_file: &Path) -> Result<Option<String>, Error> {
        let any = self.db().query_opt("SELECT name FROM operators LIMIT 1", vec![])?;
        if any.is_some() {
            return Ok(None);
        }
        let file_err = |source| Error::TokenFile { path: token_file.display().to_string(), source };
        let given = match std::fs::read_to_string(token_file) {
            Ok(s) => Some(s.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(file_err(e)),
        };
        if let Some(t) = &given {
            if !looks_like_token(t) {
                return Err(file_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "does not hold a tfp_ token (tfp_ and at least 32 base64url characters)",
                )));
            }
        }
        let adopted = given.is_some();
        let token = match self.add_with_token("admin", &Scope::ALL, given.unwrap_or_else(new_token)) {
            Ok((_, token)) => token,
            Err(Error::NameTaken(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if adopted {
            tracing::info!(file = %token_file.display(), "no operator existed: made \"admin\" with every scope and the token in the file");
        } else {
            write_secret(token_file, &token).map_err(file_err)?;
            tracing::warn!(file = %token_file.display(), "no operator existed: made \"admin\" with every scope; its token is in the file");
        }
        Ok(Some(token))
    }

    /// The operator a token belongs to, if it is known and not revoked.
    pub fn authenticate(&self, token: &str) -> Result<Option<Operator>, Error> {
        self.active_operator("token_sha256", digest(token))
    }

    /// The operator a client certificate (its SHA-256) is bound to, if any
    /// and not revoked.
    pub fn authenticate_certificate(&self, sha256: &[u8; 32]) -> Result<Option<Operator>, Error> {
        self.active_operator("cert_sha256", sha256.to_vec())
    }

    fn active_operator(&self, column: &str, hash: Vec<u8>) -> Result<Option<Operator>, Error> {
        let row = self
            .db()
            .query_opt(&format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE {column} = $1"), vec![Value::Blob(hash)])?;
        match row {
            Some(r) => {
                let op = operator_of(&r)?;
                Ok(op.revoked_ms.is_none().then_some(op))
            }
            None => Ok(None),
        }
    }

    /// Binds operator certificate `cert_der` to operator `name`: from then
    /// on a TLS connection authenticated with it acts as `name`, with its
    /// scopes, without a token (a provisioning station's credential).
    /// The certificate must carry the operator role the CA gives
    /// (`OU=tfmprov operator`, [`OPERATOR_OU`]), be issued for that name
    /// (its CN) and allow clientAuth; a device or server certificate is
    /// refused. Replaces an earlier binding; revoking the operator ends
    /// both its credentials.
    pub fn bind_certificate(&self, name: &str, cert_der: &[u8]) -> Result<Operator, Error> {
        let cn = operator_certificate_name(cert_der)?;
        if cn != name {
            return Err(Error::NotOperatorCertificate(format!("issued for operator {cn:?}, not {name:?}")));
        }
        // No other operator can hold it: its CN is this operator's name
        // (names are unique; the column's unique index stands behind that).
        let hash = Sha256::digest(cert_der).to_vec();
        let db = self.db();
        let n = db.execute(
            "UPDATE operators SET cert_sha256 = $2 WHERE name = $1 AND revoked_ms IS NULL",
            vec![name.into(), Value::Blob(hash.clone())],
        )?;
        if n == 0 {
            return Err(Error::NoSuchOperator(name.to_owned()));
        }
        let op = operator_named(&db, name)?;
        drop(db);
        self.append("-", "operator.bind-cert", name, &format!("ok: sha256 {}", hex::encode(&hash)))?;
        Ok(op)
    }

    /// The operator behind a request ([`Credentials`]: its bearer token,
    /// else its TLS client certificate), if it may do `scope`; else the
    /// refusal (written to the audit log with `request`, e.g.
    /// `"POST /v1/csr"`). A database failure is a 503.
    pub fn authorize(&self, credentials: &Credentials, scope: Scope, request: &str) -> Result<Operator, Denied> {
        let refuse = |status: u16, actor: &str, reason: String| {
            if let Err(e) = self.append(actor, "auth.refused", request, &reason) {
                tracing::error!(error = %e, "audit log: refused credential not recorded");
            }
            Denied { status, reason }
        };
        let found = match (&credentials.token, &credentials.client_certificate) {
            (Some(token), _) => self.authenticate(token).map(|op| op.ok_or("unknown or revoked token")),
            (None, Some(cert)) => self
                .authenticate_certificate(cert)
                .map(|op| op.ok_or("the client certificate is not bound to an active operator")),
            (None, None) => {
                return Err(refuse(
                    401,
                    "-",
                    "no credential: send Authorization: Bearer <operator token>, or connect with an operator certificate"
                        .into(),
                ))
            }
        };
        match found {
            Ok(Ok(op)) if op.may(scope) => Ok(op),
            Ok(Ok(op)) => {
                let name = op.name.clone();
                Err(refuse(403, &name, format!("operator {name:?} lacks the {:?} scope", scope.as_str())))
            }
            Ok(Err(why)) => Err(refuse(401, "-", why.into())),
            Err(e) => {
                tracing::error!(error = %e, "operator lookup failed");
                Err(Denied { status: 503, reason: "credential check unavailable".into() })
            }
        }
    }
}

/// The subject OU the CA writes into operator certificates
/// (`POST /v1/csr?profile=operator`): the operator role.
pub const OPERATOR_OU: &str = "tfmprov operator";

/// The operator name (CN) of an operator certificate: DER X.509 whose
/// subject has OU [`OPERATOR_OU`] and whose extKeyUsage allows clientAuth.
pub fn operator_certificate_name(cert_der: &[u8]) -> Result<String, Error> {
    use const_oid::db::{rfc4519, rfc5280};
    use der::Decode;
    let not = |why: &str| Error::NotOperatorCertificate(why.to_owned());
    let cert = x509_cert::Certificate::from_der(cert_der).map_err(|_| not("not a DER X.509 certificate"))?;
    let tbs = &cert.tbs_certificate;
    let attribute = |oid| {
        tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()).filter(move |a| a.oid == oid).filter_map(|a| {
            a.value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| a.value.decode_as::<der::asn1::PrintableStringRef<'_>>().map(|s| s.as_str().to_owned()))
                .ok()
        })
    };
    if !attribute(rfc4519::OU).any(|ou| ou == OPERATOR_OU) {
        return Err(not("no operator role (subject OU \"tfmprov operator\"): a device or server certificate"));
    }
    let eku = tbs
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == rfc5280::ID_CE_EXT_KEY_USAGE)
        .and_then(|e| x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok());
    if !eku.is_some_and(|k| k.0.contains(&rfc5280::ID_KP_CLIENT_AUTH)) {
        return Err(not("extKeyUsage does not allow clientAuth"));
    }
    let mut names = attribute(rfc4519::CN);
    match (names.next(), names.next()) {
        (Some(cn), None) => Ok(cn),
        _ => Err(not("not exactly one CN")),
    }
}

/// What a request presents to say who sends it: an operator token
/// (`Authorization: Bearer`) and the client certificate of its TLS
/// connection, as the server's TLS listener verified it (chain to the CA
/// root, validity; `ConnectInfo<TlsPeer>`), never taken from a header. An
/// axum extractor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The bearer token.
    pub token: Option<String>,
    /// SHA-256 of the client certificate (DER).
    pub client_certificate: Option<[u8; 32]>,
}

impl Credentials {
    /// A request's credentials: its headers and the extensions its server
    /// put there (a plain-HTTP request has no client certificate).
    pub fn of(headers: &http::HeaderMap, extensions: &http::Extensions) -> Credentials {
        let client_certificate = extensions
            .get::<axum::extract::ConnectInfo<tfmprov_tls::TlsPeer>>()
            .and_then(|c| c.0.client_certificate.as_ref())
            .map(|der| Sha256::digest(der.as_ref()).into());
        Credentials { token: bearer(headers).map(str::to_owned), client_certificate }
    }
}

impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for Credentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Credentials::of(&parts.headers, &parts.extensions))
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Writes `secret` and a newline to `path`, readable by the owner only.
pub fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{secret}")?;
    f.sync_all()
}
