//! The CA's files in the state directory: creating, importing and loading them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use der::pem::LineEnding;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use x509_cert::Certificate;

use crate::certs::{self, CaCert};
use crate::error::Error;
use crate::ImportedCas;

/// File names inside the state directory.
pub const ROOT_CERT_FILE: &str = "root_cert.pem";
/// Root CA private key (PKCS#8 PEM, mode 0600). May be absent for an imported CA
/// whose root key is kept offline.
pub const ROOT_KEY_FILE: &str = "root_key.pem";
/// Intermediate CA certificate (PEM).
pub const INTERMEDIATE_CERT_FILE: &str = "intermediate_cert.pem";
/// Intermediate CA private key (PKCS#8 PEM, mode 0600).
pub const INTERMEDIATE_KEY_FILE: &str = "intermediate_key.pem";
/// The SQLite log.
pub const DB_FILE: &str = "ca.sqlite";

/// Root + intermediate as loaded from (or written to) the state directory.
pub(crate) struct CaState {
    pub root: CaCert,
    pub intermediate: CaCert,
    pub intermediate_key: SigningKey,
    pub has_root_key: bool,
}

struct Paths {
    root_cert: PathBuf,
    root_key: PathBuf,
    int_cert: PathBuf,
    int_key: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Self {
        Paths {
            root_cert: dir.join(ROOT_CERT_FILE),
            root_key: dir.join(ROOT_KEY_FILE),
            int_cert: dir.join(INTERMEDIATE_CERT_FILE),
            int_key: dir.join(INTERMEDIATE_KEY_FILE),
        }
    }
}

/// Opens the CA state in `dir`: creates (or imports) it when the directory holds no
/// CA files, loads it when it does, refuses a half-present state.
pub(crate) fn open_or_create(dir: &Path, import: Option<&ImportedCas>) -> Result<CaState, Error> {
    ensure_dir(dir)?;
    let p = Paths::new(dir);
    let present = [&p.root_cert, &p.root_key, &p.int_cert, &p.int_key].map(|f| f.exists());
    let any = present.iter().any(|x| *x);
    let complete = present[0] && present[2] && present[3]; // root key may be offline

    if !any {
        let new = match import {
            Some(imp) => import_cas(imp)?,
            None => generate()?,
        };
        write_state(&p, &new)?;
        tracing::info!(dir = %dir.display(), imported = import.is_some(), "created CA state");
        return load(&p);
    }
    if !complete {
        let missing: Vec<String> = [&p.root_cert, &p.int_cert, &p.int_key]
            .iter()
            .filter(|f| !f.exists())
            .map(|f| f.display().to_string())
            .collect();
        return Err(Error::state(
            dir,
            format!(
                "incomplete CA state (missing {}); restore the files or use an empty directory",
                missing.join(", ")
            ),
        ));
    }
    let state = load(&p)?;
    if let Some(imp) = import {
        // Re-running the same import is fine; importing other CAs over a state is not.
        let wanted = import_cas(imp)?.state;
        if wanted.root.der != state.root.der || wanted.intermediate.der != state.intermediate.der {
            return Err(Error::state(
                dir,
                "already holds a different CA; import into an empty state directory",
            ));
        }
    }
    Ok(state)
}

fn ensure_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// A state about to be written, with the root key when there is one.
struct NewState {
    state: CaState,
    root_key: Option<SigningKey>,
}

fn generate() -> Result<NewState, Error> {
    let now = SystemTime::now();
    let root_key = SigningKey::random(&mut rand_core::OsRng);
    let int_key = SigningKey::random(&mut rand_core::OsRng);
    let root = certs::make_root(&root_key, now)?;
    let intermediate = certs::make_intermediate(&root, &root_key, &int_key, now)?;
    Ok(NewState {
        state: CaState {
            root,
            intermediate,
            intermediate_key: int_key,
            has_root_key: true,
        },
        root_key: Some(root_key),
    })
}

fn import_cas(imp: &ImportedCas) -> Result<NewState, Error> {
    let root = CaCert::from_cert(read_one_cert(&imp.root_cert)?)?;
    let intermediate = CaCert::from_cert(read_one_cert(&imp.intermediate_cert)?)?;
    let int_key = read_key(&imp.intermediate_key)?;
    let root_key = match &imp.root_key {
        Some(path) => Some(read_key(path)?),
        None => None,
    };
    let has_root_key = root_key.is_some();
    check_pair(
        &root,
        &intermediate,
        &int_key,
        root_key.as_ref(),
        &imp.intermediate_cert,
    )?;
    Ok(NewState {
        state: CaState {
            root,
            intermediate,
            intermediate_key: int_key,
            has_root_key,
        },
        root_key,
    })
}

/// Checks that the intermediate is a P-256 CA signed by the root and that the keys
/// belong to the certificates.
fn check_pair(
    root: &CaCert,
    intermediate: &CaCert,
    int_key: &SigningKey,
    root_key: Option<&SigningKey>,
    where_: &Path,
) -> Result<(), Error> {
    let root_pub =
        certs::p256_key_of(&root.cert).map_err(|r| Error::state(where_, format!("root: {r}")))?;
    let int_pub = certs::p256_key_of(&intermediate.cert)
        .map_err(|r| Error::state(where_, format!("intermediate: {r}")))?;
    if int_key.verifying_key() != &int_pub {
        return Err(Error::state(
            where_,
            "the intermediate key does not match the intermediate certificate",
        ));
    }
    if let Some(k) = root_key {
        if k.verifying_key() != &root_pub {
            return Err(Error::state(
                where_,
                "the root key does not match the root certificate",
            ));
        }
    }
    if !certs::is_ca(&root.cert) || !certs::is_ca(&intermediate.cert) {
        return Err(Error::state(
            where_,
            "root and intermediate must both be CA certificates (basicConstraints CA:TRUE)",
        ));
    }
    if !certs::signed_by(&intermediate.der, &intermediate.cert, &root_pub) {
        return Err(Error::state(
            where_,
            "the intermediate certificate is not signed (ecdsa-with-SHA256) by the root",
        ));
    }
    if !certs::signed_by(&root.der, &root.cert, &root_pub) {
        return Err(Error::state(
            where_,
            "the root certificate is not self-signed (ecdsa-with-SHA256)",
        ));
    }
    if intermediate.cert.tbs_certificate.issuer != root.cert.tbs_certificate.subject {
        return Err(Error::state(
            where_,
            "the intermediate's issuer is not the root's subject",
        ));
    }
    if intermediate.not_after() <= SystemTime::now() {
        tracing::warn!("the intermediate CA certificate has expired; no certificate can be issued");
    }
    Ok(())
}

fn write_state(p: &Paths, new: &NewState) -> Result<(), Error> {
    let state = &new.state;
    if let Some(k) = &new.root_key {
        write_key(&p.root_key, k)?;
    }
    write_key(&p.int_key, &state.intermediate_key)?;
    write_file(&p.root_cert, state.root.pem.as_bytes(), 0o644)?;
    // The intermediate certificate is written last: a crash before it leaves an
    // incomplete state that is refused instead of a half-made CA being used.
    write_file(&p.int_cert, state.intermediate.pem.as_bytes(), 0o644)
}

fn load(p: &Paths) -> Result<CaState, Error> {
    let root = CaCert::from_cert(read_one_cert(&p.root_cert)?)?;
    let intermediate = CaCert::from_cert(read_one_cert(&p.int_cert)?)?;
    let int_key = read_key(&p.int_key)?;
    let has_root_key = p.root_key.exists();
    let root_key = if has_root_key {
        Some(read_key(&p.root_key)?)
    } else {
        None
    };
    check_pair(
        &root,
        &intermediate,
        &int_key,
        root_key.as_ref(),
        &p.int_cert,
    )?;
    Ok(CaState {
        root,
        intermediate,
        intermediate_key: int_key,
        has_root_key,
    })
}

fn read_one_cert(path: &Path) -> Result<Certificate, Error> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let certs = Certificate::load_pem_chain(&bytes)
        .map_err(|e| Error::state(path, format!("not a PEM certificate: {e}")))?;
    match <[Certificate; 1]>::try_from(certs) {
        Ok([cert]) => Ok(cert),
        Err(v) => Err(Error::state(
            path,
            format!("holds {} certificates, expected 1", v.len()),
        )),
    }
}

/// Reads a P-256 private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`,
/// possibly after an `EC PARAMETERS` block as `openssl ecparam -genkey` writes it).
pub(crate) fn read_key(path: &Path) -> Result<SigningKey, Error> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "private key file is readable by group/others (expected mode 0600)");
        }
    }
    let text = zeroize::Zeroizing::new(text);
    for label in ["PRIVATE KEY", "EC PRIVATE KEY"] {
        if let Some(block) = pem_block(&text, label) {
            let key = if label == "PRIVATE KEY" {
                p256::SecretKey::from_pkcs8_pem(block)
                    .map_err(|e| Error::state(path, format!("not a P-256 PKCS#8 key: {e}")))?
            } else {
                p256::SecretKey::from_sec1_pem(block)
                    .map_err(|e| Error::state(path, format!("not a P-256 SEC1 key: {e}")))?
            };
            return Ok(SigningKey::from(key));
        }
    }
    Err(Error::state(
        path,
        "no \"PRIVATE KEY\" or \"EC PRIVATE KEY\" PEM block",
    ))
}

fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

/// Writes a P-256 private key as PKCS#8 PEM, mode 0600 from its creation
/// (the CA's keys, the servers' TLS keys, an operator certificate's key).
pub fn write_key(path: &Path, key: &SigningKey) -> Result<(), Error> {
    let secret = p256::SecretKey::from(key);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(Error::encoding)?;
    write_file(path, pem.as_bytes(), 0o600)
}

pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    write_file_atomic(path, data, mode).map_err(|e| Error::io(path, e))
}

/// Writes `data` to `path` through a temporary file created with `mode` (so a key is
/// never readable by others, not even for a moment), fsync, rename. Also used by the
/// aggregator for its cloud key.
pub fn write_file_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    // The umask may have removed bits we want (0644); set exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}
