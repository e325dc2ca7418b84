//! Issue 5, server side: the cloud identity, `session` messages (Sign1 over
//! COSE_Encrypt to the cloud key) and `sealed` messages (Encrypt0 under the
//! session key). Every scenario runs on mosquitto and on the embedded rumqttd.
//!
//! Session messages are built with `tfmprov_cose::build_session` and
//! RustCrypto (p256, hkdf, aes-gcm) as a device simulator would; sealed
//! messages with `tfmprov_cose::seal` and with pycose (an independent COSE
//! implementation, `.venv/bin/python`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes128Gcm;
use common::*;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use rumqttc::QoS;
use tfmprov_aggregator::{client, CloudIdentity, Error, CLOUD_CERT_FILE, CLOUD_KEY_FILE, SESSIONS_KEPT, STORAGE_KEY_FILE};
use tfmprov_cose::{ErrorReport, RejectCode};

macro_rules! for_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod mosquitto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BrokerKind::Mosquitto).await
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BrokerKind::Embedded).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::BrokerKind::Postgres).await
                }
            )*
        }
    };
}

for_both_brokers!(
    session_then_pycose_sealed_is_accepted,
    sealed_before_its_session_waits_for_it,
    sealed_rejections_are_reported,
    session_rejections_are_reported,
    sessions_survive_a_restart,
    cloud_identity_enrolled_at_the_ca_and_reused,
    without_cloud_identity_sessions_are_unknown,
    old_sessions_are_forgotten,
    sealed_backlog_after_a_newer_message_is_all_stored,
);

// ---------------------------------------------------------------- helpers

/// The cloud public key as a device learns it: from `GET /v1/cloud`.
struct CloudPub {
    chain_pem: String,
    point: [u8; 65],
    kid: [u8; 8],
}

fn cloud_pub_from_pem(chain_pem: &str) -> CloudPub {
    let certs = x509_cert::Certificate::load_pem_chain(chain_pem.as_bytes()).expect("PEM chain");
    let leaf = certs.first().expect("a leaf");
    let point: [u8; 65] = leaf
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .try_into()
        .expect("65-byte point");
    CloudPub { chain_pem: chain_pem.to_owned(), point, kid: kid_of_point(&point) }
}

async fn cloud_pub(h: &Harness) -> CloudPub {
    let base = h.base.clone();
    let pem = tokio::task::spawn_blocking(move || client::cloud_certificate(&base, Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("GET /v1/cloud");
    cloud_pub_from_pem(&pem)
}

/// A cloud key + certificate issued by the test PKI's intermediate, as files
/// for [`CloudIdentity::Import`].
fn import_identity(pki: &Pki, dir: &Path) -> CloudIdentity {
    let cloud = pki.device("cloud");
    let key = dir.join("import_cloud_key.pem");
    let cert = dir.join("import_cloud_cert.pem");
    let pem = der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &cloud.pkcs8_der).unwrap();
    std::fs::write(&key, pem).unwrap();
    std::fs::write(&cert, &cloud.chain_pem).unwrap();
    CloudIdentity::Import { key, cert }
}

/// A harness whose aggregator imported a cloud identity issued by its PKI.
async fn start_with_cloud(kind: BrokerKind) -> (Harness, tempfile::TempDir) {
    let pki = Pki::new("test");
    let files = tempfile::tempdir().unwrap();
    let identity = import_identity(&pki, files.path());
    let h = Harness::start_full(kind, pki, move |cfg| {
        cfg.cloud = identity;
        // Sealed messages for a session id still to come wait 1 s (not 10).
        cfg.early_sealed_wait = Duration::from_secs(1);
    })
    .await;
    (h, files)
}

fn ecdh_ephemeral(peer: &[u8; 65]) -> Result<([u8; 65], [u8; 32]), ()> {
    let peer = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| ())?;
    let eph = p256::ecdh::EphemeralSecret::random(&mut OsRng);
    let mut public = [0u8; 65];
    public.copy_from_slice(p256::PublicKey::from(&eph).to_encoded_point(false).as_bytes());
    let mut s = [0u8; 32];
    s.copy_from_slice(eph.diffie_hellman(&peer).raw_secret_bytes());
    Ok((public, s))
}

fn hkdf_sha256(ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, ()> {
    let mut out = vec![0u8; len];
    hkdf::Hkdf::<sha2::Sha256>::new(None, ikm).expand(info, &mut out).map_err(|_| ())?;
    Ok(out)
}

fn gcm_encrypt(key: &[u8; 16], iv: &[u8; 12], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, ()> {
    Aes128Gcm::new(key.into()).encrypt(iv.into(), Payload { msg: pt, aad }).map_err(|_| ())
}

/// A `session` message: `session_key` for `cloud_point` (named `cloud_kid`),
/// signed by `signer`, naming `device_kid` in the Sign1.
fn session_raw(
    signer: &SigningKey,
    device_kid: &[u8; 8],
    cloud_kid: &[u8; 8],
    cloud_point: &[u8; 65],
    session_id: u32,
    session_key: &[u8; 16],
) -> Vec<u8> {
    let crypto = tfmprov_cose::SessionCrypto::new(ecdh_ephemeral, hkdf_sha256, gcm_encrypt, |buf: &mut [u8]| {
        OsRng.fill_bytes(buf);
        Ok(())
    });
    tfmprov_cose::build_session(session_id, session_key, cloud_kid, cloud_point, device_kid, crypto, |tbs| {
        let s: p256::ecdsa::Signature = signer.sign(tbs);
        let mut out = [0u8; 64];
        out.copy_from_slice(&s.to_bytes());
        Ok(out)
    })
    .expect("build_session")
}

/// The normal case: the device's own key and kid, our cloud key.
fn session(dev: &Device, cloud: &CloudPub, session_id: u32, key: &[u8; 16]) -> Vec<u8> {
    session_raw(&dev.signer, &dev.kid, &cloud.kid, &cloud.point, session_id, key)
}

/// A `sealed` message built by our code (IV = session id || seq, as the device does).
fn sealed(session_id: u32, seq: u64, key: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let iv = tfmprov_cose::sealed_iv(session_id, seq);
    tfmprov_cose::seal(session_id, seq, &iv, plaintext, |aad, pt| gcm_encrypt(key, &iv, aad, pt)).expect("seal")
}

/// A `sealed` message built by pycose (Encrypt0, protected {1: A128GCM,
/// 4: 4-byte session id, -65537: seq}, unprotected {5: random IV}).
fn pycose_sealed(session_id: u32, seq: u64, key: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(python.exists(), "{} missing: create the venv (tests/host/requirements.txt)", python.display());
    let script = r#"
import os, sys
from pycose.algorithms import A128GCM
from pycose.headers import IV, KID, Algorithm
from pycose.keys.symmetric import SymmetricKey
from pycose.messages import Enc0Message
sid, seq, key, payload = sys.argv[1:5]
m = Enc0Message(
    phdr={Algorithm: A128GCM, KID: int(sid).to_bytes(4, "big"), -65537: int(seq)},
    uhdr={IV: os.urandom(12)},
    payload=bytes.fromhex(payload),
)
m.key = SymmetricKey(k=bytes.fromhex(key))
print(m.encode(tag=True).hex())
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(session_id.to_string())
        .arg(seq.to_string())
        .arg(hex::encode(key))
        .arg(hex::encode(plaintext))
        .output()
        .expect("run python");
    assert!(out.status.success(), "pycose failed: {}", String::from_utf8_lossy(&out.stderr));
    hex::decode(String::from_utf8(out.stdout).unwrap().trim()).expect("hex from pycose")
}

fn session_topic(dev: &Device) -> String {
    format!("prov/{}/session", dev.id)
}

fn sealed_topic(dev: &Device) -> String {
    format!("prov/{}/sealed", dev.id)
}

async fn messages(h: &Harness, id: &str) -> Vec<tfmprov_aggregator::StoredMessage> {
    let (base, id) = (h.base.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || client::messages(&base, &id, 1000)).await.unwrap().expect("messages")
}

/// Next error report, checked: topic, code, kid, seq.
async fn expect_error(c: &mut TestClient, dev: &Device, code: RejectCode, kid: &[u8], seq: Option<u64>) -> ErrorReport {
    let (topic, r) = c.next_error().await;
    assert_eq!(topic, dev.errors_topic());
    assert_eq!(r.reject_code(), Some(code), "{r:?}");
    assert_eq!(r.reason, code.reason());
    assert_eq!(r.kid.as_deref(), Some(kid), "kid of {r:?}");
    assert_eq!(r.seq, seq, "seq of {r:?}");
    r
}

fn sid_kid(session_id: u32) -> [u8; 4] {
    session_id.to_be_bytes()
}

const K1: [u8; 16] = *b"session key 0001";
const K2: [u8; 16] = *b"session key 0002";

// ---------------------------------------------------------------- scenarios

/// A session message (RustCrypto) then, without waiting, a sealed message
/// (ours), then a pycose Encrypt0: all accepted, stored as plaintext under
/// kid = the 4-byte session id. A QoS 1 duplicate is stored once.
async fn session_then_pycose_sealed_is_accepted(kind: BrokerKind) {
    let (h, _files) = start_with_cloud(kind).await;
    let dev = h.pki.device("car-1");
    h.register(&dev).await.unwrap();
    let cloud = cloud_pub(&h).await;
    assert_eq!(
        x509_cert::Certificate::load_pem_chain(cloud.chain_pem.as_bytes()).unwrap().len(),
        2,
        "cloud leaf + intermediate"
    );
    let mut c = h.client("car-1").await;
    c.subscribe(&dev.errors_topic()).await;

    // The sealed message follows the session message at once, as the
    // firmware sends them: the broker forwards the QoS 2 session message at
    // its PUBREL, so the sealed one usually arrives first; it must wait for
    // its session, not be refused.
    c.publish(&session_topic(&dev), session(&dev, &cloud, 1, &K1), QoS::ExactlyOnce).await;
    c.publish(&sealed_topic(&dev), sealed(1, 1, &K1, b"first sealed"), QoS::AtLeastOnce).await;
    let s = h.wait_stats("session + sealed", |s| s.accepted == 2 || s.rejected_total() > 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (2, 0), "{s:?}");

    c.publish(&sealed_topic(&dev), pycose_sealed(1, 2, &K1, b"sealed by pycose"), QoS::AtLeastOnce).await;
    let s = h.wait_stats("pycose sealed", |s| s.accepted == 3 || s.rejected_total() > 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (3, 0), "{s:?}");

    // QoS 1 re-send with DUP: stored once, the copy refused as a duplicate.
    let msg = sealed(1, 3, &K1, b"exactly once");
    let (broker, topic) = (h.broker, sealed_topic(&dev));
    tokio::task::spawn_blocking(move || {
        let mut raw = RawClient::connect(broker, "car-1-raw");
        raw.publish_qos1(&topic, &msg, 9, false);
        raw.publish_qos1(&topic, &msg, 9, true);
    })
    .await
    .unwrap();
    expect_error(&mut c, &dev, RejectCode::Replay, &sid_kid(1), Some(3)).await;
    let s = h.wait_stats("dup", |s| s.accepted == 4 && s.rejected_for(RejectCode::Replay) == 1).await;
    assert_eq!(s.rejected_total(), 1, "{s:?}");

    let stored = messages(&h, "car-1").await;
    let got: Vec<(String, u64, String)> = stored.iter().map(|m| (m.kid.clone(), m.seq, m.payload.clone())).collect();
    assert_eq!(
        got,
        vec![
            ("00000001".to_owned(), 1, hex::encode("first sealed")),
            ("00000001".to_owned(), 2, hex::encode("sealed by pycose")),
            ("00000001".to_owned(), 3, hex::encode("exactly once")),
        ]
    );
    h.stop().await;
}

/// A sealed message published before its session message is held (and
/// acknowledged) until the session comes; one whose session never comes is
/// rejected as an unknown session after `early_sealed_wait` (1 s here); one
/// for a session id not above the newest is rejected at once.
async fn sealed_before_its_session_waits_for_it(kind: BrokerKind) {
    let (h, _files) = start_with_cloud(kind).await;
    let dev = h.pki.device("car-9");
    h.register(&dev).await.unwrap();
    let cloud = cloud_pub(&h).await;
    let mut c = h.client("car-9").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&sealed_topic(&dev), sealed(4, 1, &K1, b"early"), QoS::AtLeastOnce).await;
    c.publish(&sealed_topic(&dev), sealed(4, 2, &K1, b"early too"), QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.agg().stats().accepted + h.agg().stats().rejected_total(), 0, "held, not decided");
    c.publish(&session_topic(&dev), session(&dev, &cloud, 4, &K1), QoS::ExactlyOnce).await;
    let s = h.wait_stats("session + 2 early sealed", |s| s.accepted == 3 || s.rejected_total() > 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (3, 0), "{s:?}");
    let stored = messages(&h, "car-9").await;
    assert_eq!(stored.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), vec![hex::encode("early"), hex::encode("early too")]);

    // Session 5 never comes.
    c.publish(&sealed_topic(&dev), sealed(5, 3, &K1, b"orphan"), QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::UnknownSession, &sid_kid(5), Some(3)).await;
    // Session 3 is older than the newest (4): it cannot come any more.
    c.publish(&sealed_topic(&dev), sealed(3, 4, &K1, b"old"), QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::UnknownSession, &sid_kid(3), Some(4)).await;
    let s = h.wait_stats("2 unknown", |s| s.rejected_for(RejectCode::UnknownSession) == 2).await;
    assert_eq!(s.accepted, 3);
    h.stop().await;
}

/// Tampered ciphertext, unknown session id (wrong kid), wrong key, replayed
/// seq: each rejected with its code on the device's errors topic; a forgery
/// does not use up its seq.
async fn sealed_rejections_are_reported(kind: BrokerKind) {
    let (h, _files) = start_with_cloud(kind).await;
    let dev = h.pki.device("car-2");
    h.register(&dev).await.unwrap();
    let cloud = cloud_pub(&h).await;
    let mut c = h.client("car-2").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&session_topic(&dev), session(&dev, &cloud, 7, &K1), QoS::ExactlyOnce).await;
    h.wait_stats("session", |s| s.accepted == 1).await;
    let first = pycose_sealed(7, 1, &K1, b"one");
    c.publish(&sealed_topic(&dev), first.clone(), QoS::AtLeastOnce).await;
    h.wait_stats("sealed 1", |s| s.accepted == 2).await;

    // Tampered ciphertext (last byte = last byte of the GCM tag).
    let good = sealed(7, 2, &K1, b"two");
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    c.publish(&sealed_topic(&dev), bad, QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::DecryptionFailed, &sid_kid(7), Some(2)).await;
    // A flipped ciphertext byte (not the tag) too.
    let pos = good.len() - 16 - 1;
    let mut bad = good.clone();
    bad[pos] ^= 0x80;
    c.publish(&sealed_topic(&dev), bad, QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::DecryptionFailed, &sid_kid(7), Some(2)).await;
    // The genuine seq 2 is still accepted.
    c.publish(&sealed_topic(&dev), good, QoS::AtLeastOnce).await;
    h.wait_stats("sealed 2", |s| s.accepted == 3).await;

    // Wrong kid: a session id the server does not have.
    c.publish(&sealed_topic(&dev), sealed(8, 3, &K1, b"three"), QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::UnknownSession, &sid_kid(8), Some(3)).await;
    // Right session id, another key.
    c.publish(&sealed_topic(&dev), sealed(7, 4, &K2, b"four"), QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::DecryptionFailed, &sid_kid(7), Some(4)).await;
    // Replayed seq.
    c.publish(&sealed_topic(&dev), first, QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::Replay, &sid_kid(7), Some(1)).await;
    // Another device's topic: that device has no session 7.
    let other = h.pki.device("car-2b");
    h.register(&other).await.unwrap();
    let mut c2 = h.client("car-2b").await;
    c2.subscribe(&other.errors_topic()).await;
    c2.publish(&sealed_topic(&other), sealed(7, 5, &K1, b"not yours"), QoS::AtLeastOnce).await;
    expect_error(&mut c2, &other, RejectCode::UnknownSession, &sid_kid(7), Some(5)).await;

    let s = h.wait_stats("all counted", |s| s.rejected_total() == 6).await;
    assert_eq!(s.accepted, 3, "{s:?}");
    assert_eq!(s.rejected_for(RejectCode::DecryptionFailed), 3);
    assert_eq!(s.rejected_for(RejectCode::UnknownSession), 2);
    assert_eq!(s.rejected_for(RejectCode::Replay), 1);
    // The HTTP stats list them too.
    let base = h.base.clone();
    let http = tokio::task::spawn_blocking(move || client::stats(&base)).await.unwrap().unwrap();
    assert_eq!(http.rejected_for(RejectCode::DecryptionFailed), 3);
    let stored = messages(&h, "car-2").await;
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(stored[1].payload, hex::encode("two"));
    assert!(messages(&h, "car-2b").await.is_empty());
    h.stop().await;
}

/// Replayed session messages (the same one, an older one), a session
/// message by another registered device (its kid: KidMismatch; naming ours:
/// BadSignature), one for another cloud key (UnknownSession), one whose
/// session key does not decrypt (DecryptionFailed).
async fn session_rejections_are_reported(kind: BrokerKind) {
    let (h, _files) = start_with_cloud(kind).await;
    let dev = h.pki.device("car-3");
    let other = h.pki.device("car-4");
    h.register(&dev).await.unwrap();
    h.register(&other).await.unwrap();
    let cloud = cloud_pub(&h).await;
    let mut c = h.client("car-3").await;
    c.subscribe(&dev.errors_topic()).await;

    let s1 = session(&dev, &cloud, 1, &K1);
    c.publish(&session_topic(&dev), s1.clone(), QoS::ExactlyOnce).await;
    h.wait_stats("session 1", |s| s.accepted == 1).await;
    // The same session message again (a replay or a duplicate).
    c.publish(&session_topic(&dev), s1.clone(), QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::StaleSession, &sid_kid(1), None).await;
    c.publish(&session_topic(&dev), session(&dev, &cloud, 2, &K2), QoS::ExactlyOnce).await;
    h.wait_stats("session 2", |s| s.accepted == 2).await;
    // A replayed older session message.
    c.publish(&session_topic(&dev), s1, QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::StaleSession, &sid_kid(1), None).await;

    // Signed by another registered device, with its kid, on our topic.
    let forged = session_raw(&other.signer, &other.kid, &cloud.kid, &cloud.point, 3, &K1);
    c.publish(&session_topic(&dev), forged, QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::KidMismatch, &other.kid, None).await;
    // Signed by another registered device, naming our kid.
    let forged = session_raw(&other.signer, &dev.kid, &cloud.kid, &cloud.point, 3, &K1);
    c.publish(&session_topic(&dev), forged, QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::BadSignature, &dev.kid, None).await;

    // For a cloud key that is not ours.
    let stranger = SigningKey::random(&mut OsRng);
    let mut sp = [0u8; 65];
    sp.copy_from_slice(stranger.verifying_key().to_encoded_point(false).as_bytes());
    let sk = kid_of_point(&sp);
    c.publish(&session_topic(&dev), session_raw(&dev.signer, &dev.kid, &sk, &sp, 3, &K1), QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::UnknownSession, &sk, None).await;
    // Naming our cloud kid but encrypted to another key: signature fine,
    // the session key does not decrypt.
    let garbled = session_raw(&dev.signer, &dev.kid, &cloud.kid, &sp, 3, &K1);
    c.publish(&session_topic(&dev), garbled, QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::DecryptionFailed, &sid_kid(3), None).await;

    // None of that moved the session state: session 3 is accepted, and
    // sealed messages under session 1 (still kept) and 3 too.
    c.publish(&session_topic(&dev), session(&dev, &cloud, 3, &K1), QoS::ExactlyOnce).await;
    c.publish(&sealed_topic(&dev), sealed(3, 10, &K1, b"under 3"), QoS::AtLeastOnce).await;
    c.publish(&sealed_topic(&dev), sealed(1, 11, &K1, b"late, under 1"), QoS::AtLeastOnce).await;
    let s = h.wait_stats("3 sessions + 2 sealed", |s| s.accepted == 5 || s.rejected_total() > 6).await;
    assert_eq!(s.accepted, 5, "{s:?}");
    assert_eq!(s.rejected_for(RejectCode::StaleSession), 2);
    assert_eq!(s.rejected_for(RejectCode::KidMismatch), 1);
    assert_eq!(s.rejected_for(RejectCode::BadSignature), 1);
    assert_eq!(s.rejected_for(RejectCode::UnknownSession), 1);
    assert_eq!(s.rejected_for(RejectCode::DecryptionFailed), 1);
    assert_eq!(s.rejected_total(), 6);
    h.stop().await;
}

/// Sessions survive a restart (keys reloaded from the table on first use);
/// the table holds the key wrapped, never in clear.
async fn sessions_survive_a_restart(kind: BrokerKind) {
    let (mut h, _files) = start_with_cloud(kind).await;
    let dev = h.pki.device("car-5");
    h.register(&dev).await.unwrap();
    let cloud = cloud_pub(&h).await;
    let s1 = session(&dev, &cloud, 5, &K1);
    {
        let c = h.client("car-5").await;
        c.publish(&session_topic(&dev), s1.clone(), QoS::ExactlyOnce).await;
        c.publish(&sealed_topic(&dev), sealed(5, 1, &K1, b"before"), QoS::AtLeastOnce).await;
        let s = h.wait_stats("before restart", |s| s.accepted == 2 || s.rejected_total() > 0).await;
        assert_eq!(s.rejected_total(), 0, "{s:?}");
    }
    h.restart().await; // CloudIdentity::None: reuses the identity in the state directory
    let again = cloud_pub(&h).await;
    assert_eq!(again.chain_pem, cloud.chain_pem, "same cloud certificate after restart");

    let mut c = h.client("car-5b").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&sealed_topic(&dev), sealed(5, 2, &K1, b"after"), QoS::AtLeastOnce).await;
    let s = h.wait_stats("after restart", |s| s.accepted == 1 || s.rejected_total() > 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (1, 0), "{s:?}");
    c.publish(&sealed_topic(&dev), sealed(5, 1, &K1, b"before"), QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::Replay, &sid_kid(5), Some(1)).await;
    c.publish(&session_topic(&dev), s1, QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::StaleSession, &sid_kid(5), None).await;
    let stored = messages(&h, "car-5").await;
    assert_eq!(stored.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), vec![hex::encode("before"), hex::encode("after")]);

    // At rest: the wrapped key (AES-256-GCM: 16 + 16 bytes) and its nonce,
    // never the key itself, anywhere in the database files.
    let state = h.state.path().to_owned();
    let rows = h.query_blob_pairs("SELECT nonce, wrapped_key FROM sessions WHERE device_id = 'car-5' AND session_id = 5");
    let (nonce, wrapped) = rows.into_iter().next().expect("the session row");
    assert_eq!(nonce.len(), 12);
    assert_eq!(wrapped.len(), 32);
    assert!(!wrapped.windows(16).any(|w| w == K1));
    for f in ["aggregator.sqlite", "aggregator.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(state.join(f)) {
            assert!(!bytes.windows(16).any(|w| w == K1), "session key in clear in {f}");
        }
    }
    for (f, mode) in [(STORAGE_KEY_FILE, 0o600), (CLOUD_KEY_FILE, 0o600)] {
        let m = std::fs::metadata(state.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "{f}");
    }
    assert_eq!(std::fs::read(state.join(STORAGE_KEY_FILE)).unwrap().len(), 32);
    h.stop().await;
}

/// The project's CA in-process (tfmprov_ca::serve on 127.0.0.1:0), using the
/// harness PKI's root and intermediate.
struct CaServer {
    url: String,
    /// The CA's first operator token.
    token: String,
    ca: Arc<tfmprov_ca::Ca>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tfmprov_ca::Error>>,
    _dir: tempfile::TempDir,
}

impl CaServer {
    async fn start(pki: &Pki) -> CaServer {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, s: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, s).unwrap();
            p
        };
        let import = tfmprov_ca::ImportedCas {
            root_cert: w("root.pem", &pki.root.pem),
            root_key: None,
            intermediate_cert: w("inter.pem", &pki.inter.pem),
            intermediate_key: w("inter_key.pem", &pki.inter.key.serialize_pem()),
        };
        let mut cfg = tfmprov_ca::CaConfig::new(dir.path().join("ca"));
        cfg.import = Some(import);
        let ca = Arc::new(
            tokio::task::spawn_blocking(move || tfmprov_ca::Ca::open_or_create(&cfg)).await.unwrap().expect("CA opens"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let token = admin_token(ca.state_dir());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tfmprov_ca::serve(ca.clone(), listener, async move {
            let _ = rx.await;
        }));
        CaServer { url, token, ca, stop: Some(tx), task, _dir: dir }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("CA stops").unwrap().unwrap();
    }
}

/// `EnrollAt`: key generated, CSR (CN "cloud") to the real CA, key + chain
/// stored; on restart the identity is reused without the CA.
async fn cloud_identity_enrolled_at_the_ca_and_reused(kind: BrokerKind) {
    let pki = Pki::new("test");
    let ca = CaServer::start(&pki).await;
    let (url, token) = (ca.url.clone(), ca.token.clone());
    let mut h = Harness::start_full(kind, pki, |cfg| {
        cfg.cloud = CloudIdentity::EnrollAt { ca_url: url };
        cfg.ca_token = Some(token);
    })
    .await;
    let state = h.state.path().to_owned();
    let key_mode = std::fs::metadata(state.join(CLOUD_KEY_FILE)).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let key_pem = std::fs::read_to_string(state.join(CLOUD_KEY_FILE)).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    let cert_file = std::fs::read_to_string(state.join(CLOUD_CERT_FILE)).unwrap();
    let cloud = cloud_pub(&h).await;
    assert_eq!(cloud.chain_pem, cert_file, "GET /v1/cloud serves cloud_cert.pem");
    let certs = x509_cert::Certificate::load_pem_chain(cert_file.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2, "leaf, then intermediate");
    assert_eq!(certs[0].tbs_certificate.subject.to_string(), "CN=cloud");
    assert_eq!(certs[0].tbs_certificate.issuer, certs[1].tbs_certificate.subject);
    {
        use p256::pkcs8::DecodePrivateKey;
        let sk = p256::SecretKey::from_pkcs8_pem(&key_pem).unwrap();
        assert_eq!(sk.public_key().to_encoded_point(false).as_bytes(), &cloud.point[..], "the key is the certificate's");
    }
    let issued = ca.ca.devices().unwrap();
    assert!(issued.iter().any(|d| d.device_id == "cloud"), "the CA logged the cloud certificate");

    let dev = h.pki.device("car-6");
    h.register(&dev).await.unwrap();
    {
        let c = h.client("car-6").await;
        c.publish(&session_topic(&dev), session(&dev, &cloud, 1, &K1), QoS::ExactlyOnce).await;
        c.publish(&sealed_topic(&dev), sealed(1, 1, &K1, b"enrolled"), QoS::AtLeastOnce).await;
        let s = h.wait_stats("session + sealed", |s| s.accepted == 2 || s.rejected_total() > 0).await;
        assert_eq!(s.rejected_total(), 0, "{s:?}");
    }

    // The CA goes away; a restart with the same EnrollAt reuses the identity.
    let url = ca.url.clone();
    ca.stop().await;
    h.restart_with(|cfg| cfg.cloud = CloudIdentity::EnrollAt { ca_url: url }).await;
    assert_eq!(std::fs::read_to_string(state.join(CLOUD_CERT_FILE)).unwrap(), cert_file);
    assert_eq!(std::fs::read_to_string(state.join(CLOUD_KEY_FILE)).unwrap(), key_pem);
    assert_eq!(cloud_pub(&h).await.chain_pem, cert_file);
    let c = h.client("car-6b").await;
    c.publish(&sealed_topic(&dev), sealed(1, 2, &K1, b"after restart"), QoS::AtLeastOnce).await;
    let s = h.wait_stats("sealed after restart", |s| s.accepted == 1 || s.rejected_total() > 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (1, 0), "{s:?}");
    h.stop().await;
}

/// Default config, empty state: no cloud identity. /v1/cloud is 404, and
/// session and sealed messages are unknown sessions; data still works.
async fn without_cloud_identity_sessions_are_unknown(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let base = h.base.clone();
    let err = tokio::task::spawn_blocking(move || client::cloud_certificate(&base, Duration::from_secs(10)))
        .await
        .unwrap()
        .expect_err("no cloud identity");
    assert!(matches!(err, Error::Http { status: 404, .. }), "{err}");
    assert!(!h.state.path().join(CLOUD_KEY_FILE).exists());

    let dev = h.pki.device("car-7");
    h.register(&dev).await.unwrap();
    let mut c = h.client("car-7").await;
    c.subscribe(&dev.errors_topic()).await;
    // A device holding some (stale) cloud certificate.
    let stale = pki_cloud_pub(&h.pki);
    c.publish(&session_topic(&dev), session(&dev, &stale, 1, &K1), QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::UnknownSession, &stale.kid, None).await;
    c.publish(&sealed_topic(&dev), sealed(1, 1, &K1, b"x"), QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::UnknownSession, &sid_kid(1), Some(1)).await;
    c.publish(&dev.data_topic(), dev.sign(2, b"data still works"), QoS::AtLeastOnce).await;
    let s = h.wait_stats("data", |s| s.accepted == 1).await;
    assert_eq!(s.rejected_for(RejectCode::UnknownSession), 2);
    h.stop().await;
}

fn pki_cloud_pub(pki: &Pki) -> CloudPub {
    let cloud = pki.device("cloud");
    cloud_pub_from_pem(&cloud.chain_pem)
}

/// Only the newest SESSIONS_KEPT sessions of a device are kept.
async fn old_sessions_are_forgotten(kind: BrokerKind) {
    let (h, _files) = start_with_cloud(kind).await;
    let dev = h.pki.device("car-8");
    h.register(&dev).await.unwrap();
    let cloud = cloud_pub(&h).await;
    let mut c = h.client("car-8").await;
    c.subscribe(&dev.errors_topic()).await;
    let n = SESSIONS_KEPT as u32 + 2;
    for sid in 1..=n {
        c.publish(&session_topic(&dev), session(&dev, &cloud, sid, &K1), QoS::ExactlyOnce).await;
        c.publish(&sealed_topic(&dev), sealed(sid, u64::from(sid), &K1, b"s"), QoS::AtLeastOnce).await;
    }
    let total = 2 * u64::from(n);
    let s = h.wait_stats("all sessions", |s| s.accepted == total || s.rejected_total() > 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (total, 0), "{s:?}");
    // Sessions 1 and 2 are forgotten, 3.. are kept.
    c.publish(&sealed_topic(&dev), sealed(1, 100, &K1, b"too late"), QoS::AtLeastOnce).await;
    expect_error(&mut c, &dev, RejectCode::UnknownSession, &sid_kid(1), Some(100)).await;
    c.publish(&sealed_topic(&dev), sealed(3, 101, &K1, b"still fine"), QoS::AtLeastOnce).await;
    h.wait_stats("kept session", |s| s.accepted == total + 1).await;
    let ids = h.query_ints("SELECT session_id FROM sessions WHERE device_id = 'car-8' ORDER BY session_id");
    assert_eq!(ids, (3..=i64::from(n)).collect::<Vec<_>>());
    // Messages of forgotten sessions stay stored.
    assert_eq!(messages(&h, "car-8").await.len(), n as usize + 1);
    h.stop().await;
}

/// Issue 14 for sealed messages: seq 1..=200, 800, then the backlog
/// 201..=799 under one session, with a restart of the aggregator in the
/// middle of the backlog: all 800 stored, no report; true duplicates (below
/// and inside the window) still refused.
async fn sealed_backlog_after_a_newer_message_is_all_stored(kind: BrokerKind) {
    let (mut h, _files) = start_with_cloud(kind).await;
    let dev = h.pki.device("car-9");
    h.register(&dev).await.unwrap();
    let cloud = cloud_pub(&h).await;
    let order: Vec<u64> = (1..=200).chain([800]).chain(201..=799).collect();
    {
        let c = h.client("car-9").await;
        c.publish(&session_topic(&dev), session(&dev, &cloud, 3, &K1), QoS::ExactlyOnce).await;
        // (Early sealed messages are held only up to 32 per device: this test
        // is about the backlog, so the session goes first.)
        h.wait_stats("the session", |s| s.accepted == 1).await;
        for &seq in &order[..400] {
            c.publish(&sealed_topic(&dev), sealed(3, seq, &K1, format!("m{seq}").as_bytes()), QoS::AtLeastOnce).await;
        }
        let s = h.wait_stats("first part", |s| s.accepted + s.rejected_total() >= 401).await;
        assert_eq!((s.accepted, s.rejected_total()), (401, 0), "{s:?}");
    }
    h.restart().await;
    let mut c = h.client("car-9b").await;
    c.subscribe(&dev.errors_topic()).await;
    for &seq in &order[400..] {
        c.publish(&sealed_topic(&dev), sealed(3, seq, &K1, format!("m{seq}").as_bytes()), QoS::AtLeastOnce).await;
    }
    let s = h.wait_stats("the backlog", |s| s.accepted + s.rejected_total() >= 400).await;
    assert_eq!((s.accepted, s.rejected_total()), (400, 0), "{s:?}");
    assert!(c.recv(Duration::from_millis(500)).await.is_none(), "no report for a never-seen seq");
    for seq in [7u64, 500, 795] {
        c.publish(&sealed_topic(&dev), sealed(3, seq, &K1, b"again"), QoS::AtLeastOnce).await;
        expect_error(&mut c, &dev, RejectCode::Replay, &sid_kid(3), Some(seq)).await;
    }
    let stored = messages(&h, "car-9").await;
    assert_eq!(stored.len(), 800);
    let mut seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=800).collect::<Vec<_>>());
    assert!(stored.iter().all(|m| m.payload == hex::encode(format!("m{}", m.seq))));
    h.stop().await;
}

/// Issue 14: two instances on one database, members of one shared
/// subscription on mosquitto. Whichever instance gets the session message,
/// sealed messages under it are accepted by both (the other one finds the
/// session in the database, at once or when its early-sealed wait ends), and
/// an old session message is stale for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_work_across_two_instances_on_sqlite() {
    sessions_work_across_two_instances(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_work_across_two_instances_on_postgresql() {
    sessions_work_across_two_instances(true).await
}

async fn sessions_work_across_two_instances(postgres: bool) {
    let mosq = Mosquitto::start();
    let pg = postgres.then(|| {
        let server = PgServer::get();
        let url = server.fresh_database();
        (server, url)
    });
    let pki = Pki::new("pair");
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let member = |name: &str, cloud: CloudIdentity| {
        let mut cfg = config(
            state.path(),
            &pki.root.pem,
            tfmprov_aggregator::BrokerChoice::External { url: mosq.url(), ca_file: None, client_cert: None },
        );
        cfg.cloud = cloud;
        if let Some((_, url)) = &pg {
            cfg.database = tfmprov_aggregator::DbChoice::Postgres(url.clone());
        }
        cfg.early_sealed_wait = Duration::from_secs(1);
        cfg.share_group = Some("agg".into());
        cfg.instance = Some(name.into());
        cfg
    };
    // a imports the cloud identity into the state directory; b finds it there.
    let a = tfmprov_aggregator::Aggregator::start(member("a", import_identity(&pki, files.path()))).await.expect("a");
    let b = tfmprov_aggregator::Aggregator::start(member("b", CloudIdentity::None)).await.expect("b");
    let base = format!("http://{}", a.http_addr());
    let dev = pki.device("car-x");
    let (bs, id, chain) = (base.clone(), dev.id.clone(), dev.chain_pem.clone());
    let token = common::admin_token(state.path());
    tokio::task::spawn_blocking(move || client::register(&bs, &token, &id, &chain, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    let bs = base.clone();
    let pem = tokio::task::spawn_blocking(move || client::cloud_certificate(&bs, Duration::from_secs(10))).await.unwrap().unwrap();
    let cloud = cloud_pub_from_pem(&pem);

    let mut c = TestClient::connect(mosq.addr(), "car-x").await;
    c.subscribe(&dev.errors_topic()).await;
    let total = |a: &tfmprov_aggregator::Running, b: &tfmprov_aggregator::Running| {
        let (sa, sb) = (a.stats(), b.stats());
        (sa.accepted + sb.accepted, sa.rejected_total() + sb.rejected_total())
    };
    let wait = |want: u64| {
        let (a, b) = (&a, &b);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let (acc, rej) = total(a, b);
                if acc + rej >= want {
                    return (acc, rej);
                }
                assert!(std::time::Instant::now() < deadline, "timed out: {acc} accepted, {rej} rejected of {want}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // A device starts sessions far apart (per boot, per rotation): the next
    // one only after this one is stored. Its sealed messages follow the
    // session message at once, and land on either instance.
    for (sid, key) in [(1u32, &K1), (2, &K2)] {
        c.publish(&session_topic(&dev), session(&dev, &cloud, sid, key), QoS::ExactlyOnce).await;
        for seq in 1..=20u64 {
            c.publish(&sealed_topic(&dev), sealed(sid, seq, key, format!("s{sid} m{seq}").as_bytes()), QoS::AtLeastOnce).await;
        }
        let want = 21 * u64::from(sid);
        let got = wait(want).await;
        assert_eq!(got, (want, 0), "session {sid}: a {:?} b {:?}", a.stats(), b.stats());
    }
    let got = wait(42).await;
    assert_eq!(got, (42, 0), "2 sessions + 40 sealed over two instances: a {:?} b {:?}", a.stats(), b.stats());
    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.accepted > 0 && sb.accepted > 0, "both took a share: a {sa:?} b {sb:?}");
    // Session 1 again: stale whichever instance gets it (2 is stored).
    c.publish(&session_topic(&dev), session(&dev, &cloud, 1, &K1), QoS::ExactlyOnce).await;
    expect_error(&mut c, &dev, RejectCode::StaleSession, &sid_kid(1), None).await;
    let stored = tokio::task::spawn_blocking(move || client::messages(&base, "car-x", 1000)).await.unwrap().unwrap();
    assert_eq!(stored.len(), 40);
    a.shutdown().await;
    b.shutdown().await;
}
