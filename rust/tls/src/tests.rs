//! Handshakes in memory between the configurations of this crate, over an
//! rcgen PKI (root -> intermediate -> leaves).

use super::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::PrivatePkcs8KeyDer;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

struct Leaf {
    der: CertificateDer<'static>,
    key: KeyPair,
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = p256();
    let cert = match parent {
        None => params.self_signed(&key).unwrap(),
        Some(p) => params.signed_by(&key, &Issuer::from_params(&p.params, &p.key)).unwrap(),
    };
    Ca { der: cert.der().clone(), params, key }
}

fn leaf(issuer: &Ca, cn: &str, server: bool) -> Leaf {
    let names = if server { vec!["localhost".to_string()] } else { Vec::new() };
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages =
        vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    let key = p256();
    let cert = params.signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key)).unwrap();
    Leaf { der: cert.der().clone(), key }
}

/// An external key whose closure signs with `key` (what PSA does on the
/// device), in software.
fn signing_with(key: p256::ecdsa::SigningKey) -> ExternalP256Key {
    ExternalP256Key::new(move |digest| {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let sig: p256::ecdsa::Signature = key.sign_prehash(digest).map_err(|e| e.to_string())?;
        Ok(sig.to_bytes().into())
    })
}

fn key_der(k: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))
}

/// Runs the handshake to its end; the first error of either side.
fn handshake(client: rustls::ClientConfig, server: rustls::ServerConfig) -> Result<rustls::ServerConnection, rustls::Error> {
    let mut c = rustls::ClientConnection::new(Arc::new(client), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(s);
        }
    }
    panic!("handshake did not finish in 20 rounds");
}

struct Pki {
    root: Ca,
    inter: Ca,
}

fn pki_named(name: &str) -> Pki {
    let root = ca(&format!("{name} root"), None);
    let inter = ca(&format!("{name} intermediate"), Some(&root));
    Pki { root, inter }
}

fn pki() -> Pki {
    pki_named("tfmprov")
}

fn server(p: &Pki, l: &Leaf, auth: ClientAuth) -> rustls::ServerConfig {
    server_config(vec![l.der.clone(), p.inter.der.clone()], key_der(&l.key), auth).unwrap()
}

fn root_store(p: &Pki) -> Arc<RootCertStore> {
    roots(std::slice::from_ref(&p.root.der)).unwrap()
}

#[test]
fn pinned_key_connects_and_another_key_with_a_valid_chain_is_refused() {
    let p = pki();
    let (good, other) = (leaf(&p.inter, "broker", true), leaf(&p.inter, "broker", true));
    let pin = spki_sha256(&good.der).unwrap();

    let ok = handshake(client_config(ServerCheck::Pinned(root_store(&p), pin), None).unwrap(), server(&p, &good, ClientAuth::None));
    assert!(ok.is_ok(), "{ok:?}");

    // Same CA, same name: only the key differs. The chain alone accepts it...
    let chain_only = handshake(client_config(ServerCheck::Chain(root_store(&p)), None).unwrap(), server(&p, &other, ClientAuth::None));
    assert!(chain_only.is_ok(), "{chain_only:?}");
    // ...the pin does not.
    let err = handshake(client_config(ServerCheck::Pinned(root_store(&p), pin), None).unwrap(), server(&p, &other, ClientAuth::None))
        .unwrap_err();
    assert!(err.to_string().contains("not the pinned key"), "{err}");
}

#[test]
fn the_pin_does_not_replace_the_chain() {
    // A server whose key is pinned but whose certificate comes from another
    // CA is still refused: pinning is in addition to the chain.
    let p = pki();
    let stranger = pki_named("stranger");
    let l = leaf(&stranger.inter, "broker", true);
    let pin = spki_sha256(&l.der).unwrap();
    let err = handshake(client_config(ServerCheck::Pinned(root_store(&p), pin), None).unwrap(), server(&stranger, &l, ClientAuth::None))
        .unwrap_err();
    assert!(matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)), "{err:?}");
}

#[test]
fn external_key_authenticates_the_client_and_is_used_for_each_handshake() {
    let p = pki();
    let srv = leaf(&p.inter, "broker", true);
    let dev = leaf(&p.inter, "dev-1", false);
    use p256::pkcs8::DecodePrivateKey;
    let signer = p256::ecdsa::SigningKey::from_pkcs8_der(&dev.key.serialize_der()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let key = ExternalP256Key::new(move |digest| {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        counted.fetch_add(1, Ordering::SeqCst);
        let sig: p256::ecdsa::Signature = signer.sign_prehash(digest).map_err(|e| e.to_string())?;
        Ok(sig.to_bytes().into())
    });
    for _ in 0..2 {
        let identity = ClientIdentity { chain: vec![dev.der.clone(), p.inter.der.clone()], key: Arc::new(key.clone()) };
        let s = handshake(
            client_config(ServerCheck::Chain(root_store(&p)), Some(identity)).unwrap(),
            server(&p, &srv, ClientAuth::Required(root_store(&p))),
        )
        .unwrap();
        let peer = s.peer_certificates().expect("client certificate");
        assert_eq!(peer[0], dev.der);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one signature per handshake, made by the closure");
}

#[test]
fn external_key_that_signs_with_another_key_is_refused() {
    let p = pki();
    let srv = leaf(&p.inter, "broker", true);
    let dev = leaf(&p.inter, "dev-1", false);
    let wrong = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let key = signing_with(wrong);
    let identity = ClientIdentity { chain: vec![dev.der.clone(), p.inter.der.clone()], key: Arc::new(key) };
    let err = handshake(
        client_config(ServerCheck::Chain(root_store(&p)), Some(identity)).unwrap(),
        server(&p, &srv, ClientAuth::Required(root_store(&p))),
    )
    .unwrap_err();
    assert!(matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)), "{err:?}");
}

#[test]
fn failing_external_key_is_a_clear_error_not_a_panic() {
    let p = pki();
    let srv = leaf(&p.inter, "broker", true);
    let dev = leaf(&p.inter, "dev-1", false);
    let key = ExternalP256Key::new(|_| Err("PSA_ERROR_INVALID_HANDLE (-136): no key 0x10001".into()));
    let identity = ClientIdentity { chain: vec![dev.der.clone()], key: Arc::new(key) };
    let err = handshake(
        client_config(ServerCheck::Chain(root_store(&p)), Some(identity)).unwrap(),
        server(&p, &srv, ClientAuth::Required(root_store(&p))),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no key 0x10001"), "{err}");
}

#[test]
fn client_certificates_required_optional_and_from_another_ca() {
    let p = pki();
    let srv = leaf(&p.inter, "broker", true);
    let none = || client_config(ServerCheck::Chain(root_store(&p)), None).unwrap();
    // Required: no certificate, no connection.
    let err = handshake(none(), server(&p, &srv, ClientAuth::Required(root_store(&p)))).unwrap_err();
    assert!(matches!(err, rustls::Error::NoCertificatesPresented), "{err:?}");
    // Optional: connects, without a peer certificate.
    let s = handshake(none(), server(&p, &srv, ClientAuth::Optional(root_store(&p)))).unwrap();
    assert!(s.peer_certificates().is_none());
    // A certificate from another CA is refused even where optional.
    let stranger = pki_named("stranger");
    let dev = leaf(&stranger.inter, "dev-x", false);
    let identity = ClientIdentity {
        chain: vec![dev.der.clone(), stranger.inter.der.clone()],
        key: rustls::crypto::ring::sign::any_ecdsa_type(&key_der(&dev.key)).unwrap(),
    };
    let err = handshake(
        client_config(ServerCheck::Chain(root_store(&p)), Some(identity)).unwrap(),
        server(&p, &srv, ClientAuth::Optional(root_store(&p))),
    )
    .unwrap_err();
    assert!(matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)), "{err:?}");

    // An expired certificate from the right CA is refused too, saying so
    // (what the servers log as "HTTPS: handshake refused").
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "station-old");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = p256();
    let old = params.signed_by(&key, &Issuer::from_params(&p.inter.params, &p.inter.key)).unwrap();
    let identity = ClientIdentity {
        chain: vec![old.der().clone(), p.inter.der.clone()],
        key: rustls::crypto::ring::sign::any_ecdsa_type(&key_der(&key)).unwrap(),
    };
    let err = handshake(
        client_config(ServerCheck::Chain(root_store(&p)), Some(identity)).unwrap(),
        server(&p, &srv, ClientAuth::Optional(root_store(&p))),
    )
    .unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. } | rustls::CertificateError::Expired)),
        "{err:?}"
    );
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn pin_of_garbage_is_an_error_and_helpers_refuse_empty_input() {
    assert!(matches!(spki_sha256(b"\x30\x03\x02\x01\x00"), Err(Error::BadCertificate(_))));
    assert!(matches!(pem_certificates("no pem here"), Err(Error::BadPem(_))));
    assert!(matches!(roots(&[]), Err(Error::NoTrustAnchor(_))));
}

/// A server sends records a device's 4 KiB Mbed TLS buffer can take: 10,000
/// bytes of application data leave in records of at most
/// [`MAX_RECORD_PLAINTEXT`] bytes of plaintext (read from the record headers
/// on the wire: plaintext plus the AEAD's tag, at most 256 bytes more).
#[test]
fn servers_send_records_a_device_can_take() {
    use std::io::Write;
    let p = pki();
    let l = leaf(&p.inter, "broker", true);
    let mut s = handshake(client_config(ServerCheck::Chain(root_store(&p)), None).unwrap(), server(&p, &l, ClientAuth::None))
        .unwrap();
    s.writer().write_all(&[0x5a; 10_000]).unwrap();
    let mut wire = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut wire).unwrap();
    }
    let mut lens = Vec::new();
    let mut rest = wire.as_slice();
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        lens.push(len);
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty());
    assert!(lens.len() >= 3, "{lens:?}");
    assert!(lens.iter().all(|&n| n <= MAX_RECORD_PLAINTEXT + 256), "{lens:?}");
    assert!(lens.iter().any(|&n| n > MAX_RECORD_PLAINTEXT - 64), "records are filled: {lens:?}");
}

/// An identity read at every handshake: one client configuration, the key
/// and certificate switched between connections (a device's key rotation),
/// each connection presents the current one; when none can be had, no
/// certificate is sent and a server that requires one refuses.
#[test]
fn a_per_handshake_identity_follows_a_key_switch() {
    use p256::pkcs8::DecodePrivateKey;
    let p = pki();
    let srv = leaf(&p.inter, "broker", true);
    let devs = [leaf(&p.inter, "dev-old", false), leaf(&p.inter, "dev-new", false)];
    let identities: Vec<ClientIdentity> = devs
        .iter()
        .map(|d| {
            let key = signing_with(p256::ecdsa::SigningKey::from_pkcs8_der(&d.key.serialize_der()).unwrap());
            ClientIdentity { chain: vec![d.der.clone(), p.inter.der.clone()], key: Arc::new(key) }
        })
        .collect();
    // 0: the old key, 1: the new one, 2: nothing to present.
    let current = Arc::new(AtomicUsize::new(0));
    let now = current.clone();
    let config = Arc::new(
        client_config_per_handshake(ServerCheck::Chain(root_store(&p)), move || match now.load(Ordering::SeqCst) {
            i @ (0 | 1) => Ok(ClientIdentity { chain: identities[i].chain.clone(), key: identities[i].key.clone() }),
            _ => Err("no telemetry key certificate".into()),
        })
        .unwrap(),
    );
    for (i, want) in [(0, &devs[0]), (1, &devs[1]), (1, &devs[1])] {
        current.store(i, Ordering::SeqCst);
        let s = handshake((*config).clone(), server(&p, &srv, ClientAuth::Required(root_store(&p)))).unwrap();
        assert_eq!(s.peer_certificates().expect("client certificate")[0], want.der, "identity {i}");
    }
    current.store(2, Ordering::SeqCst);
    let err = handshake((*config).clone(), server(&p, &srv, ClientAuth::Required(root_store(&p)))).unwrap_err();
    assert!(matches!(err, rustls::Error::NoCertificatesPresented), "{err:?}");
}

