//! The pin and the external key against an implementation nobody here
//! wrote: `openssl s_server` presents one broker certificate or another (same
//! CA, same name, another key), and asks for a client certificate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use tfmprov_tls::{client_config, roots, spki_sha256, ClientIdentity, ExternalP256Key, ServerCheck};

struct Cert {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: CertificateDer<'static>,
}

fn issue(cn: &str, issuer: Option<&Cert>, ca: bool, eku: Option<ExtendedKeyUsagePurpose>) -> Cert {
    let names = if ca || eku == Some(ExtendedKeyUsagePurpose::ClientAuth) { vec![] } else { vec!["localhost".to_string()] };
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    params.extended_key_usages = eku.into_iter().collect();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = match issuer {
        None => params.self_signed(&key).unwrap(),
        Some(i) => params.signed_by(&key, &Issuer::from_params(&i.params, &i.key)).unwrap(),
    };
    Cert { pem: cert.pem(), der: cert.der().clone(), params, key }
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `openssl s_server -www` presenting `leaf` (+ `chain`), optionally
/// requiring a client certificate that verifies to `client_ca`.
fn s_server(dir: &Path, leaf: &Cert, chain: &Cert, client_ca: Option<&Cert>) -> Server {
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key, chain) = (w("srv.pem", &leaf.pem), w("srv.key", &leaf.key.serialize_pem()), w("chain.pem", &chain.pem));
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new("openssl");
        cmd.args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .arg("-cert_chain")
            .arg(&chain);
        if let Some(ca) = client_ca {
            cmd.args(["-Verify", "2", "-verify_return_error", "-CAfile"]).arg(w("client-ca.pem", &ca.pem));
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("openssl");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // port taken: try another
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Server { child, addr };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("openssl s_server did not start");
}

/// Handshake, one HTTP request; the page s_server answers with.
fn fetch(addr: SocketAddr, cfg: rustls::ClientConfig) -> Result<String, std::io::Error> {
    let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut page = String::new();
    match tls.read_to_string(&mut page) {
        Ok(_) => Ok(page),
        // s_server -www closes without close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !page.is_empty() => Ok(page),
        Err(e) => Err(e),
    }
}

#[test]
fn pinned_broker_key_against_openssl_s_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = issue("pin root", None, true, None);
    let inter = issue("pin intermediate", Some(&root), true, None);
    let broker = issue("broker", Some(&inter), false, Some(ExtendedKeyUsagePurpose::ServerAuth));
    let impostor = issue("broker", Some(&inter), false, Some(ExtendedKeyUsagePurpose::ServerAuth));

    // The pin is what openssl computes for the certificate's key.
    let cert_path = dir.path().join("broker.pem");
    std::fs::write(&cert_path, &broker.pem).unwrap();
    let pubkey = Command::new("openssl").args(["x509", "-pubkey", "-noout", "-in"]).arg(&cert_path).output().unwrap();
    assert!(pubkey.status.success());
    let mut pkey = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    pkey.stdin.take().unwrap().write_all(&pubkey.stdout).unwrap();
    let spki = pkey.wait_with_output().unwrap();
    assert!(spki.status.success());
    use sha2::Digest;
    let openssl_pin: [u8; 32] = sha2::Sha256::digest(&spki.stdout).into();
    let pin = spki_sha256(&broker.der).unwrap();
    assert_eq!(pin, openssl_pin);

    let trust = roots(std::slice::from_ref(&root.der)).unwrap();
    let pinned = || client_config(ServerCheck::Pinned(trust.clone(), pin), None).unwrap();

    let good = s_server(dir.path(), &broker, &inter, None);
    let page = fetch(good.addr, pinned()).expect("the pinned broker");
    assert!(page.contains("Cipher"), "{page}");
    drop(good);

    let bad = s_server(dir.path(), &impostor, &inter, None);
    // The chain alone would accept the impostor...
    fetch(bad.addr, client_config(ServerCheck::Chain(trust.clone()), None).unwrap()).expect("valid chain");
    // ...the pin refuses it.
    let err = fetch(bad.addr, pinned()).unwrap_err();
    assert!(err.to_string().contains("not the pinned key"), "{err}");
}

#[test]
fn external_key_client_certificate_accepted_by_openssl() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::DecodePrivateKey;
    let dir = tempfile::tempdir().unwrap();
    let root = issue("mtls root", None, true, None);
    let inter = issue("mtls intermediate", Some(&root), true, None);
    let broker = issue("broker", Some(&inter), false, Some(ExtendedKeyUsagePurpose::ServerAuth));
    let dev = issue("dev-1", Some(&inter), false, Some(ExtendedKeyUsagePurpose::ClientAuth));
    let srv = s_server(dir.path(), &broker, &inter, Some(&root));
    let trust = roots(std::slice::from_ref(&root.der)).unwrap();

    let signer = p256::ecdsa::SigningKey::from_pkcs8_der(&dev.key.serialize_der()).unwrap();
    let key = ExternalP256Key::new(move |d| {
        let s: p256::ecdsa::Signature = signer.sign_prehash(d).map_err(|e| e.to_string())?;
        Ok(s.to_bytes().into())
    });
    let identity = ClientIdentity { chain: vec![dev.der.clone(), inter.der.clone()], key: Arc::new(key) };
    let page = fetch(srv.addr, client_config(ServerCheck::Chain(trust.clone()), Some(identity)).unwrap()).expect("mutual TLS");
    assert!(page.contains("Cipher"), "{page}");

    // Without a certificate, s_server (-Verify, -verify_return_error) ends the handshake.
    assert!(fetch(srv.addr, client_config(ServerCheck::Chain(trust), None).unwrap()).is_err());
}
