//! The aggregator's own keys (issue 5), all in the state directory:
//!
//! - the **cloud identity**: a P-256 key pair (`cloud_key.pem`, PKCS#8, mode
//!   0600) and its certificate signed by the CA (`cloud_cert.pem`: the cloud
//!   leaf, then the intermediate). Devices encrypt their session keys to it
//!   (ECDH-ES + HKDF-256); the lead's enrollment stores the leaf on the device
//!   at peer ID 0x3F000001. Imported, enrolled at the CA on first start, or
//!   absent ([`CloudIdentity`]).
//! - the **storage key** (`storage.key`, 32 random bytes, mode 0600, created
//!   on first start): AES-256-GCM key that wraps the session keys kept in
//!   SQLite, so the database alone does not give them away.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::{OsRng, RngCore};
use rustls_pki_types::UnixTime;
use tfmprov_cose::{Kid, P256_POINT_LEN};
use zeroize::Zeroizing;

use crate::chain::{verify_leaf_chain, Roots};
use crate::error::Error;

/// The cloud private key in the state directory (PKCS#8 PEM, mode 0600).
pub const CLOUD_KEY_FILE: &str = "cloud_key.pem";
/// The cloud certificate chain in the state directory (PEM: leaf, then intermediate).
pub const CLOUD_CERT_FILE: &str = "cloud_cert.pem";
/// The key that wraps stored session keys (32 raw bytes, mode 0600).
pub const STORAGE_KEY_FILE: &str = "storage.key";
/// CN of the certificate requested by [`CloudIdentity::EnrollAt`].
pub const CLOUD_CN: &str = "cloud";
/// HTTP timeout of the enrollment request ([`CloudIdentity::EnrollAt`]).
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the aggregator's cloud key pair and certificate come from.
///
/// Whatever the choice, an identity already in the state directory is
/// reused (after checking that key and certificate belong together); it is
/// never replaced silently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CloudIdentity {
    /// Use the identity in the state directory if there is one; otherwise run
    /// without session support (logged as a warning): `session` messages are
    /// then rejected with `UnknownSession` (8), as for a cloud kid that is
    /// not ours, and `sealed` messages find no session (`UnknownSession`).
    #[default]
    None,
    /// First start: copy this key (PEM, PKCS#8 or SEC1, P-256) and
    /// certificate chain (PEM, leaf first; the leaf must be the key's and the
    /// chain must verify to the configured CA root) into the state directory.
    Import {
        /// PEM private key file.
        key: PathBuf,
        /// PEM certificate chain file (leaf, then intermediates).
        cert: PathBuf,
    },
    /// First start: generate a P-256 key, send a CSR with CN "cloud" to the
    /// project's CA (`POST {ca_url}/v1/csr`), store the key and the returned
    /// chain.
    EnrollAt {
        /// Base URL of the CA server (`http://HOST:PORT`).
        ca_url: String,
    },
}

/// The loaded cloud identity.
pub(crate) struct CloudKey {
    secret: p256::SecretKey,
    /// Its public point (uncompressed).
    pub point: [u8; P256_POINT_LEN],
    /// kid = SHA-256(SPKI DER)[0..8], as the device computes it from the certificate.
    pub kid: Kid,
    /// `cloud_cert.pem` as stored (leaf first).
    pub chain_pem: String,
}

impl std::fmt::Debug for CloudKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudKey").field("kid", &hex::encode(self.kid)).finish_non_exhaustive()
    }
}

/// A crypto step of the server side failed (the cause is deliberately not detailed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CryptoFailed;

impl CloudKey {
    /// ECDH with our static key: the shared secret's x-coordinate. Refuses a
    /// point that is not on P-256.
    pub(crate) fn ecdh(&self, peer: &[u8; 65]) -> Result<[u8; 32], CryptoFailed> {
        let peer = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| CryptoFailed)?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        let mut out = [0u8; 32];
        out.copy_from_slice(shared.raw_secret_bytes());
        Ok(out)
    }
}

impl CloudKey {
    /// ES256 over the ToBeSigned bytes (RFC 6979 deterministic, as the
    /// device signs): remote commands.
    pub(crate) fn sign(&self, tbs: &[u8]) -> Result<[u8; 64], CryptoFailed> {
        use p256::ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::from(&self.secret);
        let sig: p256::ecdsa::Signature = sk.sign(tbs);
        Ok(sig.to_bytes().into())
    }
}

/// ECDH-ES sender side: a fresh ephemeral key with the peer's static point;
/// (ephemeral public point, shared x-coordinate).
pub(crate) fn ecdh_ephemeral(peer: &[u8; 65]) -> Result<([u8; 65], [u8; 32]), CryptoFailed> {
    let peer = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| CryptoFailed)?;
    let eph = p256::ecdh::EphemeralSecret::random(&mut rand_core::OsRng);
    let ep = p256::PublicKey::from(&eph).to_encoded_point(false);
    let mut public = [0u8; P256_POINT_LEN];
    public.copy_from_slice(ep.as_bytes());
    let mut shared = [0u8; 32];
    shared.copy_from_slice(eph.diffie_hellman(&peer).raw_secret_bytes());
    Ok((public, shared))
}

/// AES-128-GCM encryption: ciphertext || tag.
pub(crate) fn aes128gcm_encrypt(key: &[u8; 16], iv: &[u8; 12], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, CryptoFailed> {
    Aes128Gcm::new(key.into()).encrypt(iv.into(), Payload { msg: pt, aad }).map_err(|_| CryptoFailed)
}

/// HKDF-SHA256 without salt.
pub(crate) fn hkdf_sha256(ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, CryptoFailed> {
    let mut out = vec![0u8; len];
    hkdf::Hkdf::<sha2::Sha256>::new(None, ikm).expand(info, &mut out).map_err(|_| CryptoFailed)?;
    Ok(out)
}

/// AES-128-GCM decryption of ciphertext || tag.
pub(crate) fn aes128gcm_decrypt(key: &[u8; 16], iv: &[u8; 12], aad: &[u8], ct: &[u8]) -> Result<Vec<u8>, CryptoFailed> {
    Aes128Gcm::new(key.into()).decrypt(iv.into(), Payload { msg: ct, aad }).map_err(|_| CryptoFailed)
}

fn point_of(secret: &p256::SecretKey) -> [u8; P256_POINT_LEN] {
    let ep = secret.public_key().to_encoded_point(false);
    let mut out = [0u8; P256_POINT_LEN];
    out.copy_from_slice(ep.as_bytes());
    out
}

fn cloud_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Cloud(format!("{}: {what}", path.display()))
}

/// Writes `data` atomically with `mode` (the CA's helper: a key is never
/// readable by others, not even for a moment).
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    tfmprov_ca::store::write_file_atomic(path, data, mode).map_err(|e| cloud_err(path, e))
}

fn warn_if_open(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "secret key file is readable by group/others (expected mode 0600)");
        }
    }
}

fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

/// A P-256 private key from PEM: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
fn read_key(path: &Path) -> Result<p256::SecretKey, Error> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| cloud_err(path, e))?);
    warn_if_open(path);
    if let Some(block) = pem_block(&text, "PRIVATE KEY") {
        return p256::SecretKey::from_pkcs8_pem(block)
            .map_err(|e| cloud_err(path, format!("not a P-256 PKCS#8 key: {e}")));
    }
    if let Some(block) = pem_block(&text, "EC PRIVATE KEY") {
        return p256::SecretKey::from_sec1_pem(block)
            .map_err(|e| cloud_err(path, format!("not a P-256 SEC1 key: {e}")));
    }
    Err(cloud_err(path, "no \"PRIVATE KEY\" or \"EC PRIVATE KEY\" PEM block"))
}

fn write_key(path: &Path, secret: &p256::SecretKey) -> Result<(), Error> {
    let pem = secret
        .to_pkcs8_pem(der::pem::LineEnding::LF)
        .map_err(|e| cloud_err(path, format!("cannot encode the key: {e}")))?;
    write_file(path, pem.as_bytes(), 0o600)
}

/// The leaf's point and kid, and the chain normalised to PEM, without any
/// trust decision (used for an identity already in the state directory).
fn leaf_of(chain_pem: &str, path: &Path) -> Result<([u8; P256_POINT_LEN], Kid), Error> {
    let certs = x509_cert::Certificate::load_pem_chain(chain_pem.as_bytes())
        .map_err(|e| cloud_err(path, format!("not a PEM certificate chain: {e}")))?;
    let leaf = certs.first().ok_or_else(|| cloud_err(path, "no certificate"))?;
    let spki = &leaf.tbs_certificate.subject_public_key_info;
    let point: [u8; P256_POINT_LEN] = spki
        .subject_public_key
        .as_bytes()
        .and_then(|b| <[u8; P256_POINT_LEN]>::try_from(b).ok())
        .filter(|p| p[0] == 0x04)
        .ok_or_else(|| cloud_err(path, "leaf key is not an uncompressed P-256 point"))?;
    p256::PublicKey::from_sec1_bytes(&point).map_err(|_| cloud_err(path, "leaf key is not a P-256 point"))?;
    Ok((point, kid_of(&point)))
}

/// kid of a P-256 point: SHA-256 of its SubjectPublicKeyInfo DER, first 8 bytes.
pub(crate) fn kid_of(point: &[u8; P256_POINT_LEN]) -> Kid {
    let d = ring::digest::digest(&ring::digest::SHA256, &tfmprov_cose::p256_spki_der(point));
    let mut full = [0u8; 32];
    full.copy_from_slice(d.as_ref());
    tfmprov_cose::kid_from_spki_digest(&full)
}

/// Chain check for a new identity: verifies to the configured root(s)
/// (webpki: signatures, validity, CA constraints, EKU clientAuth if present),
/// leaf keyUsage (if present) allows digitalSignature or keyAgreement, CN
/// `expected_cn` if given, canonical P-256 key equal to `secret`'s.
fn check_new_chain(
    roots: &Roots,
    secret: &p256::SecretKey,
    chain_pem: &str,
    expected_cn: Option<&str>,
    path: &Path,
) -> Result<CloudKey, Error> {
    let leaf = verify_leaf_chain(
        roots,
        expected_cn,
        chain_pem,
        UnixTime::now(),
        |ku| ku.digital_signature() || ku.key_agreement(),
        "digitalSignature or keyAgreement",
    )
    .map_err(|r| cloud_err(path, r))?;
    if leaf.point != point_of(secret) {
        return Err(cloud_err(path, "the certificate is not the cloud key's (public keys differ)"));
    }
    Ok(CloudKey { secret: secret.clone(), point: leaf.point, kid: leaf.kid, chain_pem: leaf.chain_pem })
}

/// Load the identity stored in the state directory: key and certificate
/// must belong together (fatal otherwise); a chain that no longer verifies
/// to the configured root (expired, other root) is only a warning, so that
/// data ingestion keeps running.
fn load_existing(roots: &Roots, key_path: &Path, cert_path: &Path) -> Result<CloudKey, Error> {
    let secret = read_key(key_path)?;
    let chain_pem = fs::read_to_string(cert_path).map_err(|e| cloud_err(cert_path, e))?;
    let (point, kid) = leaf_of(&chain_pem, cert_path)?;
    if point != point_of(&secret) {
        return Err(Error::Cloud(format!(
            "{} and {} do not belong together (public keys differ); restore the matching pair or remove both",
            key_path.display(),
            cert_path.display()
        )));
    }
    if let Err(r) = verify_leaf_chain(roots, None, &chain_pem, UnixTime::now(), |ku| {
        ku.digital_signature() || ku.key_agreement()
    }, "digitalSignature or keyAgreement")
    {
        tracing::warn!(path = %cert_path.display(), reason = %r, "cloud certificate does not verify to the configured CA root");
    }
    Ok(CloudKey { secret, point, kid, chain_pem })
}

/// A CSR (DER) for `secret` with subject CN=cloud, signed ecdsa-with-SHA256.
fn cloud_csr(secret: &p256::SecretKey) -> Result<Vec<u8>, Error> {
    tfmprov_ca::server_identity::csr(&p256::ecdsa::SigningKey::from(secret), CLOUD_CN)
        .map_err(|e| Error::Cloud(format!("CSR: {e}")))
}

/// Enroll `secret` at the CA and return the checked identity.
fn enroll(roots: &Roots, secret: &p256::SecretKey, ca_url: &str, ca_token: &str, cert_path: &Path) -> Result<CloudKey, Error> {
    let csr = cloud_csr(secret)?;
    let chain = tfmprov_ca::client::submit_csr(ca_url, ca_token, &csr, ENROLL_TIMEOUT)
        .map_err(|e| Error::Cloud(format!("enrollment at {ca_url} failed: {e}")))?;
    let ck = check_new_chain(roots, secret, &chain, Some(CLOUD_CN), cert_path)?;
    write_file(cert_path, ck.chain_pem.as_bytes(), 0o644)?;
    tracing::info!(kid = %hex::encode(ck.kid), ca_url, "cloud identity enrolled");
    Ok(ck)
}

/// Open (or create, per `choice`) the cloud identity in `state_dir`.
/// `Ok(None)`: no identity, the aggregator runs without session support.
/// `ca_token`: the operator token shown to the CA when enrolling.
pub(crate) fn open(state_dir: &Path, choice: &CloudIdentity, roots: &Roots, ca_token: &str) -> Result<Option<CloudKey>, Error> {
    fs::create_dir_all(state_dir).map_err(|e| cloud_err(state_dir, e))?;
    let key_path = state_dir.join(CLOUD_KEY_FILE);
    let cert_path = state_dir.join(CLOUD_CERT_FILE);
    let (has_key, has_cert) = (key_path.exists(), cert_path.exists());
    match (has_key, has_cert, choice) {
        (true, true, _) => {
            let ck = load_existing(roots, &key_path, &cert_path)?;
            if let CloudIdentity::Import { key, .. } = choice {
                // Given again with a state that exists: it must be the same key.
                if point_of(&read_key(key)?) != ck.point {
                    return Err(Error::Cloud(format!(
                        "{} holds another cloud identity than {}; remove {} and {} to replace it",
                        state_dir.display(),
                        key.display(),
                        CLOUD_KEY_FILE,
                        CLOUD_CERT_FILE
                    )));
                }
            }
            tracing::info!(kid = %hex::encode(ck.kid), "cloud identity loaded");
            Ok(Some(ck))
        }
        (false, true, _) => Err(Error::Cloud(format!(
            "{} exists without {}: restore the key or remove the certificate",
            cert_path.display(),
            key_path.display()
        ))),
        // A key without a certificate: an enrollment that did not finish.
        // Enroll again with the same key; anything else refuses to guess.
        (true, false, CloudIdentity::EnrollAt { ca_url }) => {
            let secret = read_key(&key_path)?;
            enroll(roots, &secret, ca_url, ca_token, &cert_path).map(Some)
        }
        (true, false, _) => Err(Error::Cloud(format!(
            "{} exists without {}: restore the certificate, remove the key, or enroll (EnrollAt)",
            key_path.display(),
            cert_path.display()
        ))),
        (false, false, CloudIdentity::None) => {
            tracing::warn!(
                state_dir = %state_dir.display(),
                "no cloud identity: session and sealed messages will be rejected (unknown session)"
            );
            Ok(None)
        }
        (false, false, CloudIdentity::Import { key, cert }) => {
            let secret = read_key(key)?;
            let chain = fs::read_to_string(cert).map_err(|e| cloud_err(cert, e))?;
            let ck = check_new_chain(roots, &secret, &chain, None, cert)?;
            write_key(&key_path, &secret)?;
            write_file(&cert_path, ck.chain_pem.as_bytes(), 0o644)?;
            tracing::info!(kid = %hex::encode(ck.kid), "cloud identity imported");
            Ok(Some(ck))
        }
        (false, false, CloudIdentity::EnrollAt { ca_url }) => {
            // The key is stored first: if the enrollment fails, the next start
            // retries it with the same key.
            let secret = p256::SecretKey::random(&mut OsRng);
            write_key(&key_path, &secret)?;
            enroll(roots, &secret, ca_url, ca_token, &cert_path).map(Some)
        }
    }
}

/// The AES-256-GCM key that wraps session keys at rest.
pub(crate) struct StorageKey(Zeroizing<[u8; 32]>);

/// AAD of a wrapped session key: device id || session id (4 bytes BE). The
/// session id has a fixed length at the end, so the split is unambiguous.
fn wrap_aad(device_id: &str, session_id: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(device_id.len() + 4);
    aad.extend_from_slice(device_id.as_bytes());
    aad.extend_from_slice(&session_id.to_be_bytes());
    aad
}

impl StorageKey {
    /// Load `storage.key` from `state_dir`, creating it (32 random bytes,
    /// mode 0600) if missing.
    pub(crate) fn open(state_dir: &Path) -> Result<StorageKey, Error> {
        fs::create_dir_all(state_dir).map_err(|e| cloud_err(state_dir, e))?;
        let path = state_dir.join(STORAGE_KEY_FILE);
        if path.exists() {
            let bytes = Zeroizing::new(fs::read(&path).map_err(|e| cloud_err(&path, e))?);
            warn_if_open(&path);
            let key = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| cloud_err(&path, format!("holds {} bytes, expected 32", bytes.len())))?;
            return Ok(StorageKey(Zeroizing::new(key)));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut key[..]);
        write_file(&path, &key[..], 0o600)?;
        tracing::info!(path = %path.display(), "storage key created");
        Ok(StorageKey(key))
    }

    /// Wrap a session key: (random 12-byte nonce, ciphertext || tag).
    pub(crate) fn wrap(&self, device_id: &str, session_id: u32, key: &[u8; 16]) -> Result<([u8; 12], Vec<u8>), CryptoFailed> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let aad = wrap_aad(device_id, session_id);
        let ct = Aes256Gcm::new((&*self.0).into())
            .encrypt((&nonce).into(), Payload { msg: key, aad: &aad })
            .map_err(|_| CryptoFailed)?;
        Ok((nonce, ct))
    }

    /// Unwrap a stored session key (fails if the row was altered or moved to
    /// another device / session id, or the storage key is another one).
    pub(crate) fn unwrap(
        &self,
        device_id: &str,
        session_id: u32,
        nonce: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 16]>, CryptoFailed> {
        let nonce = <[u8; 12]>::try_from(nonce).map_err(|_| CryptoFailed)?;
        let aad = wrap_aad(device_id, session_id);
        let pt = Zeroizing::new(
            Aes256Gcm::new((&*self.0).into())
                .decrypt((&nonce).into(), Payload { msg: wrapped, aad: &aad })
                .map_err(|_| CryptoFailed)?,
        );
        let key = <[u8; 16]>::try_from(pt.as_slice()).map_err(|_| CryptoFailed)?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Encode};

    #[test]
    fn wrap_round_trip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let sk = StorageKey::open(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(STORAGE_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = [7u8; 16];
        let (nonce, wrapped) = sk.wrap("dev-1", 5, &key).unwrap();
        assert_eq!(wrapped.len(), 32);
        assert!(!wrapped.windows(16).any(|w| w == key), "the wrapped blob is not the key");
        assert_eq!(*sk.unwrap("dev-1", 5, &nonce, &wrapped).unwrap(), key);
        assert!(sk.unwrap("dev-2", 5, &nonce, &wrapped).is_err(), "bound to the device");
        assert!(sk.unwrap("dev-1", 6, &nonce, &wrapped).is_err(), "bound to the session id");
        let mut bad = wrapped.clone();
        bad[0] ^= 1;
        assert!(sk.unwrap("dev-1", 5, &nonce, &bad).is_err());
        // Reopened: the same key.
        let again = StorageKey::open(dir.path()).unwrap();
        assert_eq!(*again.unwrap("dev-1", 5, &nonce, &wrapped).unwrap(), key);
        // A corrupt key file is refused, not replaced.
        fs::write(dir.path().join(STORAGE_KEY_FILE), b"short").unwrap();
        assert!(matches!(StorageKey::open(dir.path()), Err(Error::Cloud(_))));
    }

    struct TestPki {
        roots: Roots,
        dir: tempfile::TempDir,
        inter: rcgen::Certificate,
        inter_params: rcgen::CertificateParams,
        inter_key: rcgen::KeyPair,
    }

    fn ca_params(cn: &str) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        p
    }

    fn pki() -> TestPki {
        let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let root_params = ca_params("root");
        let root = root_params.self_signed(&root_key).unwrap();
        let inter_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let inter_params = ca_params("intermediate");
        let inter = inter_params.signed_by(&inter_key, &rcgen::Issuer::from_params(&root_params, &root_key)).unwrap();
        TestPki { roots: Roots::from_pem(&root.pem()).unwrap(), dir: tempfile::tempdir().unwrap(), inter, inter_params, inter_key }
    }

    impl TestPki {
        /// (key file, chain file) of a new leaf (CN "cloud") under the intermediate.
        fn identity(&self, name: &str) -> (PathBuf, PathBuf) {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, "cloud");
            let cert = p.signed_by(&key, &rcgen::Issuer::from_params(&self.inter_params, &self.inter_key)).unwrap();
            let (k, c) = (self.dir.path().join(format!("{name}.key")), self.dir.path().join(format!("{name}.pem")));
            fs::write(&k, key.serialize_pem()).unwrap();
            fs::write(&c, format!("{}{}", cert.pem(), self.inter.pem())).unwrap();
            (k, c)
        }
    }

    #[test]
    fn import_then_reuse_and_refusals() {
        let pki = pki();
        let state = tempfile::tempdir().unwrap();
        let (k1, c1) = pki.identity("one");
        let (k2, c2) = pki.identity("two");

        // Nothing there, no choice: no identity.
        assert!(open(state.path(), &CloudIdentity::None, &pki.roots, "").unwrap().is_none());
        // Key and certificate that do not belong together.
        let mixed = CloudIdentity::Import { key: k1.clone(), cert: c2.clone() };
        assert!(matches!(open(state.path(), &mixed, &pki.roots, ""), Err(Error::Cloud(_))));
        assert!(!state.path().join(CLOUD_KEY_FILE).exists(), "nothing stored on refusal");
        // A chain that does not verify to the configured root.
        let other = pki_roots_only();
        let one = CloudIdentity::Import { key: k1.clone(), cert: c1.clone() };
        assert!(matches!(open(state.path(), &one, &other, ""), Err(Error::Cloud(_))));

        let first = open(state.path(), &one, &pki.roots, "").unwrap().unwrap();
        let mode = fs::metadata(state.path().join(CLOUD_KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Reused: with no choice, with the same import, even with EnrollAt (no CA contacted).
        for choice in [CloudIdentity::None, one.clone(), CloudIdentity::EnrollAt { ca_url: "http://127.0.0.1:9".into() }] {
            let again = open(state.path(), &choice, &pki.roots, "").unwrap().unwrap();
            assert_eq!((again.kid, again.point), (first.kid, first.point));
        }
        // Another identity given for a state that has one: refused, not replaced.
        let two = CloudIdentity::Import { key: k2, cert: c2 };
        assert!(matches!(open(state.path(), &two, &pki.roots, ""), Err(Error::Cloud(_))));

        // Stored key and certificate no longer matching: refused.
        fs::copy(&pki.identity("three").1, state.path().join(CLOUD_CERT_FILE)).unwrap();
        assert!(matches!(open(state.path(), &CloudIdentity::None, &pki.roots, ""), Err(Error::Cloud(_))));
        // A certificate without its key: refused.
        fs::remove_file(state.path().join(CLOUD_KEY_FILE)).unwrap();
        assert!(matches!(open(state.path(), &CloudIdentity::None, &pki.roots, ""), Err(Error::Cloud(_))));
        // A key without a certificate (unfinished enrollment) and no CA: refused.
        fs::remove_file(state.path().join(CLOUD_CERT_FILE)).unwrap();
        fs::copy(&k1, state.path().join(CLOUD_KEY_FILE)).unwrap();
        assert!(matches!(open(state.path(), &CloudIdentity::None, &pki.roots, ""), Err(Error::Cloud(_))));
        let down = CloudIdentity::EnrollAt { ca_url: "http://127.0.0.1:9".into() };
        let err = open(state.path(), &down, &pki.roots, "").unwrap_err();
        assert!(err.to_string().contains("enrollment"), "{err}");
    }

    fn pki_roots_only() -> Roots {
        pki().roots
    }

    #[test]
    fn csr_has_cn_cloud_and_verifies() {
        let secret = p256::SecretKey::random(&mut OsRng);
        let der = cloud_csr(&secret).unwrap();
        let req = x509_cert::request::CertReq::from_der(&der).unwrap();
        assert_eq!(req.info.subject.to_string(), "CN=cloud");
        let spki = req.info.public_key.to_der().unwrap();
        assert_eq!(spki, tfmprov_cose::p256_spki_der(&point_of(&secret)));
    }
}
