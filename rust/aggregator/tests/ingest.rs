//! End-to-end ingestion tests. Every scenario runs three times: on a real
//! mosquitto (started here on a free port) and on the embedded rumqttd, both
//! with SQLite, and on mosquitto with PostgreSQL (a fresh database on the
//! test server: `PgServer`).

mod common;

use common::*;
use rumqttc::QoS;
use tfmprov_aggregator::client;
use tfmprov_cose::RejectCode;

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
    registered_device_messages_are_stored,
    flipped_byte_is_rejected_and_reported,
    unknown_device_is_rejected,
    revoked_device_is_rejected,
    replayed_messages_are_rejected,
    backlog_after_a_newer_message_is_all_stored,
    backlog_after_a_restart_is_all_stored,
    seq_beyond_the_horizon_has_its_own_code,
    metrics_page_counts_what_happened,
    chain_from_another_root_is_refused,
    kid_mismatch_is_rejected,
    garbage_never_blocks_valid_messages,
    qos1_duplicate_is_stored_once,
    restart_keeps_replay_state,
    pycose_sign1_is_accepted,
    burst_from_many_devices_is_all_accepted,
);

async fn messages(h: &Harness, id: &str) -> Vec<tfmprov_aggregator::StoredMessage> {
    let (base, id) = (h.base.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || client::messages(&base, &id, 1000))
        .await
        .unwrap()
        .expect("messages")
}

async fn registered_device_messages_are_stored(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-1");
    h.register(&dev).await.expect("register");
    let c = h.client("sensor-1").await;
    for seq in 1..=5u64 {
        c.publish(&dev.data_topic(), dev.sign(seq, format!("reading {seq}").as_bytes()), QoS::AtLeastOnce).await;
    }
    c.publish(&dev.data_topic(), dev.sign(6, b"qos0 reading"), QoS::AtMostOnce).await;
    let s = h.wait_stats("6 accepted", |s| s.accepted == 6).await;
    assert_eq!(s.rejected_total(), 0, "{s:?}");

    let stored = messages(&h, "sensor-1").await;
    let mut seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    seqs.sort();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    for m in &stored {
        assert_eq!(m.kid, hex::encode(dev.kid));
        let want = if m.seq == 6 { "qos0 reading".to_owned() } else { format!("reading {}", m.seq) };
        assert_eq!(m.payload, hex::encode(want));
        assert!(m.received_at > 0);
    }
    // The HTTP stats agree with the in-process ones.
    let base = h.base.clone();
    let http = tokio::task::spawn_blocking(move || client::stats(&base)).await.unwrap().unwrap();
    assert_eq!(http.accepted, 6);
    assert_eq!(http.rejected.len(), RejectCode::ALL.len(), "every reason is listed");
    h.stop().await;
}

async fn flipped_byte_is_rejected_and_reported(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-2");
    h.register(&dev).await.unwrap();
    let mut c = h.client("sensor-2").await;
    c.subscribe(&dev.errors_topic()).await;

    // One flipped byte in the signature.
    let good = dev.sign(1, b"temperature=21.5");
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    c.publish(&dev.data_topic(), bad, QoS::AtLeastOnce).await;
    let (topic, r) = c.next_error().await;
    assert_eq!(topic, dev.errors_topic());
    assert_eq!(r.reject_code(), Some(RejectCode::BadSignature), "{r:?}");
    assert_eq!(r.reason, "bad signature");
    assert_eq!(r.kid.as_deref(), Some(&dev.kid[..]));
    assert_eq!(r.seq, Some(1));

    // One flipped byte in the payload.
    let pos = good.windows(4).position(|w| w == b"temp").expect("payload in message");
    let mut bad = good.clone();
    bad[pos] ^= 0x20;
    c.publish(&dev.data_topic(), bad, QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::BadSignature));

    // The forgeries did not use up seq 1: the genuine message is accepted.
    c.publish(&dev.data_topic(), good, QoS::AtLeastOnce).await;
    let s = h.wait_stats("1 accepted", |s| s.accepted == 1).await;
    assert_eq!(s.rejected_for(RejectCode::BadSignature), 2);
    assert_eq!(s.rejected_total(), 2);
    assert_eq!(messages(&h, "sensor-2").await.len(), 1);
    h.stop().await;
}

async fn unknown_device_is_rejected(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("ghost"); // never registered
    let mut c = h.client("ghost").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&dev.data_topic(), dev.sign(1, b"boo"), QoS::AtLeastOnce).await;
    let (topic, r) = c.next_error().await;
    assert_eq!(topic, "prov/ghost/errors");
    assert_eq!(r.reject_code(), Some(RejectCode::UnknownDevice));
    assert_eq!(r.reason, "unknown device");
    let s = h.wait_stats("1 unknown", |s| s.rejected_for(RejectCode::UnknownDevice) == 1).await;
    assert_eq!(s.accepted, 0);
    h.stop().await;
}

async fn revoked_device_is_rejected(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-3");
    h.register(&dev).await.unwrap();
    let mut c = h.client("sensor-3").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&dev.data_topic(), dev.sign(1, b"before"), QoS::AtLeastOnce).await;
    h.wait_stats("1 accepted", |s| s.accepted == 1).await;

    let (base, token) = (h.base.clone(), h.token.clone());
    let rec = tokio::task::spawn_blocking(move || client::revoke(&base, &token, "sensor-3")).await.unwrap().unwrap();
    assert!(rec.revoked);
    assert!(rec.revoked_at.is_some());

    c.publish(&dev.data_topic(), dev.sign(2, b"after"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::Revoked), "{r:?}");
    assert_eq!(r.reason, "revoked");
    let s = h.wait_stats("1 revoked", |s| s.rejected_for(RejectCode::Revoked) == 1).await;
    assert_eq!(s.accepted, 1);

    // Revocation is final, and visible.
    let err = h.register(&dev).await.expect_err("re-registration of a revoked id");
    assert!(matches!(err, tfmprov_aggregator::Error::Http { status: 409, .. }), "{err}");
    let base = h.base.clone();
    let info = tokio::task::spawn_blocking(move || client::device(&base, "sensor-3")).await.unwrap().unwrap();
    assert!(info.expect("record kept").revoked);
    assert_eq!(messages(&h, "sensor-3").await.len(), 1);
    h.stop().await;
}

async fn replayed_messages_are_rejected(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-4");
    h.register(&dev).await.unwrap();
    let mut c = h.client("sensor-4").await;
    c.subscribe(&dev.errors_topic()).await;

    let m1 = dev.sign(1, b"one");
    c.publish(&dev.data_topic(), m1.clone(), QoS::AtLeastOnce).await;
    h.wait_stats("1 accepted", |s| s.accepted == 1).await;
    c.publish(&dev.data_topic(), m1, QoS::AtLeastOnce).await; // replay
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::Replay));
    assert_eq!(r.reason, "replay or duplicate");
    assert_eq!(r.seq, Some(1));

    // seq 1 is now far below the 128-wide window: still refused (by the store).
    c.publish(&dev.data_topic(), dev.sign(1000, b"thousand"), QoS::AtLeastOnce).await;
    h.wait_stats("2 accepted", |s| s.accepted == 2).await;
    c.publish(&dev.data_topic(), dev.sign(1, b"one again"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!((r.reject_code(), r.seq), (Some(RejectCode::Replay), Some(1)));
    // Never seen, far below the window: accepted, once.
    c.publish(&dev.data_topic(), dev.sign(30, b"late"), QoS::AtLeastOnce).await;
    h.wait_stats("3 accepted", |s| s.accepted == 3).await;
    c.publish(&dev.data_topic(), dev.sign(30, b"late"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!((r.reject_code(), r.seq), (Some(RejectCode::Replay), Some(30)));
    // Inside the window and unseen: accepted, once.
    c.publish(&dev.data_topic(), dev.sign(990, b"in window"), QoS::AtLeastOnce).await;
    h.wait_stats("4 accepted", |s| s.accepted == 4).await;
    c.publish(&dev.data_topic(), dev.sign(990, b"in window"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.seq, Some(990));
    let s = h.wait_stats("4 replays", |s| s.rejected_for(RejectCode::Replay) == 4).await;
    assert_eq!(s.accepted, 4);
    assert_eq!(s.rejected_total(), 4);
    let seqs: Vec<u64> = messages(&h, "sensor-4").await.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 1000, 30, 990]);
    h.stop().await;
}

/// Seq 1..=200, then 800, then the backlog 201..=799 (what a client does
/// when it reconnects and sends a fresh reading before its queue).
fn backlog_order() -> Vec<u64> {
    (1..=200).chain([800]).chain(201..=799).collect()
}

/// Publish `seqs` in order (QoS 1) and wait until all were handled.
async fn publish_seqs(h: &Harness, c: &TestClient, dev: &Device, seqs: &[u64], accepted_before: u64) -> tfmprov_aggregator::Stats {
    let msgs: Vec<Vec<u8>> = seqs.iter().map(|&s| dev.sign_fast(s, format!("m{s}").as_bytes())).collect();
    for m in msgs {
        c.publish(&dev.data_topic(), m, QoS::AtLeastOnce).await;
    }
    let want = accepted_before + seqs.len() as u64;
    h.wait_stats("every message handled", |s| s.accepted + s.rejected_total() >= want).await
}

/// No report arrives on the errors topic within a short wait.
async fn assert_no_report(c: &mut TestClient) {
    if let Some(p) = c.recv(std::time::Duration::from_millis(500)).await {
        let r = tfmprov_cose::ErrorReport::from_cbor(&p.payload);
        panic!("unexpected report on {}: {r:?}", p.topic);
    }
}

async fn backlog_after_a_newer_message_is_all_stored(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("backlog-1");
    h.register(&dev).await.unwrap();
    let mut c = h.client("backlog-1").await;
    c.subscribe(&dev.errors_topic()).await;
    let s = publish_seqs(&h, &c, &dev, &backlog_order(), 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (800, 0), "{s:?}");
    assert_no_report(&mut c).await;
    let mut seqs: Vec<u64> = messages(&h, "backlog-1").await.iter().map(|m| m.seq).collect();
    assert_eq!(seqs.len(), 800);
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=800).collect::<Vec<_>>());

    // True duplicates are still refused: below the window (5, 300), inside it (790, 800).
    for seq in [5u64, 300, 790, 800] {
        c.publish(&dev.data_topic(), dev.sign_fast(seq, b"again"), QoS::AtLeastOnce).await;
        let (_, r) = c.next_error().await;
        assert_eq!((r.reject_code(), r.seq), (Some(RejectCode::Replay), Some(seq)));
    }
    let s = h.wait_stats("4 replays", |s| s.rejected_for(RejectCode::Replay) == 4).await;
    assert_eq!(s.accepted, 800);
    assert_eq!(messages(&h, "backlog-1").await.len(), 800);
    h.stop().await;
}

/// The aggregator restarts between the newer message and the backlog.
async fn backlog_after_a_restart_is_all_stored(kind: BrokerKind) {
    let mut h = Harness::start(kind).await;
    let dev = h.pki.device("backlog-2");
    h.register(&dev).await.unwrap();
    let order = backlog_order();
    {
        let c = h.client("backlog-2").await;
        let s = publish_seqs(&h, &c, &dev, &order[..201], 0).await;
        assert_eq!((s.accepted, s.rejected_total()), (201, 0), "{s:?}");
    }
    h.restart().await;
    let mut c = h.client("backlog-2b").await;
    c.subscribe(&dev.errors_topic()).await;
    let s = publish_seqs(&h, &c, &dev, &order[201..], 0).await;
    assert_eq!((s.accepted, s.rejected_total()), (599, 0), "{s:?}");
    assert_no_report(&mut c).await;
    // And across the restart, a replay of the first part is still refused.
    c.publish(&dev.data_topic(), dev.sign_fast(100, b"again"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!((r.reject_code(), r.seq), (Some(RejectCode::Replay), Some(100)));
    assert_eq!(messages(&h, "backlog-2").await.len(), 800);
    h.stop().await;
}

/// A configured horizon refuses older seqs unseen, with code 11 (not 6).
async fn seq_beyond_the_horizon_has_its_own_code(kind: BrokerKind) {
    let h = Harness::start_with(kind, |cfg| cfg.replay_horizon = 1000).await;
    let dev = h.pki.device("horizon-1");
    h.register(&dev).await.unwrap();
    let mut c = h.client("horizon-1").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&dev.data_topic(), dev.sign(5000, b"new"), QoS::AtLeastOnce).await;
    h.wait_stats("1 accepted", |s| s.accepted == 1).await;
    // 1000 below: at the horizon, accepted.
    c.publish(&dev.data_topic(), dev.sign(4000, b"at the horizon"), QoS::AtLeastOnce).await;
    h.wait_stats("2 accepted", |s| s.accepted == 2).await;
    c.publish(&dev.data_topic(), dev.sign(3999, b"beyond"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::SeqTooOld), "{r:?}");
    assert_eq!(r.reason, "seq beyond the replay horizon");
    assert_eq!((r.code, r.seq, r.kid.as_deref()), (11, Some(3999), Some(&dev.kid[..])));
    let s = h.wait_stats("1 refused", |s| s.rejected_for(RejectCode::SeqTooOld) == 1).await;
    assert_eq!((s.accepted, s.rejected_total()), (2, 1));
    h.stop().await;
}

async fn chain_from_another_root_is_refused(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let other = Pki::new("other");
    let dev = other.device("sensor-5");
    let err = h.register(&dev).await.expect_err("chain from another root");
    match err {
        tfmprov_aggregator::Error::Http { status, message } => {
            assert_eq!(status, 400);
            assert!(message.contains("does not verify to the configured root"), "{message}");
        }
        e => panic!("unexpected {e}"),
    }
    // Not registered: its messages are from an unknown device.
    let mut c = h.client("sensor-5").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&dev.data_topic(), dev.sign(1, b"x"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::UnknownDevice));
    h.stop().await;
}

async fn kid_mismatch_is_rejected(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-6");
    let other = h.pki.device("sensor-7");
    h.register(&dev).await.unwrap();
    h.register(&other).await.unwrap();
    let mut c = h.client("sensor-6").await;
    c.subscribe(&dev.errors_topic()).await;
    // sensor-7's message on sensor-6's topic.
    c.publish(&dev.data_topic(), other.sign(1, b"not mine"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::KidMismatch), "{r:?}");
    assert_eq!(r.kid.as_deref(), Some(&other.kid[..]));
    // Own key, but naming another kid.
    c.publish(&dev.data_topic(), dev.sign_with_kid(&other.kid, 2, b"lying kid"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::KidMismatch));
    let s = h.wait_stats("2 kid mismatches", |s| s.rejected_for(RejectCode::KidMismatch) == 2).await;
    assert_eq!(s.accepted, 0);
    h.stop().await;
}

async fn garbage_never_blocks_valid_messages(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-8");
    h.register(&dev).await.unwrap();
    let mut c = h.client("sensor-8").await;
    c.subscribe(&dev.errors_topic()).await;
    let good = dev.sign(1, b"fine");
    let nested: Vec<u8> = std::iter::repeat_n(0x81u8, 100_000).chain([0x00]).collect();
    let garbage: Vec<(Vec<u8>, RejectCode)> = vec![
        (Vec::new(), RejectCode::MalformedCose),
        (b"\xff\x00not cbor at all".to_vec(), RejectCode::MalformedCose),
        (good[..good.len() / 2].to_vec(), RejectCode::MalformedCose),
        (nested[..16_000].to_vec(), RejectCode::MalformedCose),
        (vec![0xa5; 100 * 1024], RejectCode::TooLarge),
        (nested, RejectCode::TooLarge),
        (dev.sign(2, &vec![7u8; 20 * 1024]), RejectCode::TooLarge),
    ];
    let n = garbage.len();
    for (g, _) in &garbage {
        c.publish(&dev.data_topic(), g.clone(), QoS::AtLeastOnce).await;
    }
    c.publish(&dev.data_topic(), good, QoS::AtLeastOnce).await;
    let mut codes = Vec::new();
    for _ in 0..n {
        codes.push(c.next_error().await.1.reject_code().expect("known code"));
    }
    let mut want: Vec<RejectCode> = garbage.iter().map(|(_, c)| *c).collect();
    codes.sort_by_key(|c| c.code());
    want.sort_by_key(|c| c.code());
    assert_eq!(codes, want);
    let s = h.wait_stats("the valid message", |s| s.accepted == 1).await;
    assert_eq!(s.rejected_for(RejectCode::MalformedCose), 4);
    assert_eq!(s.rejected_for(RejectCode::TooLarge), 3);

    // A topic whose device id is not valid is counted (no errors topic for it).
    c.publish("prov/has space/data", dev.sign(3, b"x"), QoS::AtLeastOnce).await;
    h.wait_stats("invalid id counted", |s| s.rejected_for(RejectCode::UnknownDevice) >= 1).await;
    // Still alive and accepting.
    c.publish(&dev.data_topic(), dev.sign(4, b"still fine"), QoS::AtLeastOnce).await;
    h.wait_stats("second valid message", |s| s.accepted == 2).await;
    h.stop().await;
}

async fn qos1_duplicate_is_stored_once(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-9");
    h.register(&dev).await.unwrap();
    let msg = dev.sign(1, b"exactly once");
    let (broker, topic) = (h.broker, dev.data_topic());
    tokio::task::spawn_blocking(move || {
        let mut raw = RawClient::connect(broker, "sensor-9-raw");
        // The device did not get the PUBACK in time and re-sends: same packet id, DUP set.
        raw.publish_qos1(&topic, &msg, 7, false);
        raw.publish_qos1(&topic, &msg, 7, true);
    })
    .await
    .unwrap();
    let s = h.wait_stats("1 accepted + 1 duplicate", |s| {
        s.accepted == 1 && s.rejected_for(RejectCode::Replay) == 1
    })
    .await;
    assert_eq!(s.rejected_total(), 1);
    let stored = messages(&h, "sensor-9").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload, hex::encode("exactly once"));
    h.stop().await;
}

async fn restart_keeps_replay_state(kind: BrokerKind) {
    let mut h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-10");
    h.register(&dev).await.unwrap();
    {
        let c = h.client("sensor-10").await;
        for seq in 1..=3 {
            c.publish(&dev.data_topic(), dev.sign(seq, b"before restart"), QoS::AtLeastOnce).await;
        }
        h.wait_stats("3 accepted", |s| s.accepted == 3).await;
    }
    h.restart().await;
    let mut c = h.client("sensor-10b").await;
    c.subscribe(&dev.errors_topic()).await;
    c.publish(&dev.data_topic(), dev.sign(2, b"before restart"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::Replay), "the window survived the restart");
    c.publish(&dev.data_topic(), dev.sign(4, b"after restart"), QoS::AtLeastOnce).await;
    let s = h.wait_stats("1 accepted after restart", |s| s.accepted == 1).await;
    assert_eq!(s.rejected_for(RejectCode::Replay), 1);
    assert_eq!(messages(&h, "sensor-10").await.len(), 4);
    h.stop().await;
}

/// pycose (an implementation nobody on the team wrote) signs with the
/// registered key; the aggregator must accept it.
async fn pycose_sign1_is_accepted(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("sensor-py");
    h.register(&dev).await.unwrap();
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: create the venv (python3 -m venv .venv && .venv/bin/pip install -r tests/host/requirements.txt)",
        python.display()
    );
    let script = r#"
import sys
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.messages import Sign1Message
d, x, y, kid, seq, payload = sys.argv[1:7]
key = EC2Key(crv=P256, d=bytes.fromhex(d), x=bytes.fromhex(x), y=bytes.fromhex(y))
m = Sign1Message(phdr={Algorithm: Es256, KID: bytes.fromhex(kid), -65537: int(seq)}, payload=bytes.fromhex(payload))
m.key = key
print(m.encode(tag=True).hex())
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(hex::encode(dev.d()))
        .arg(hex::encode(&dev.point[1..33]))
        .arg(hex::encode(&dev.point[33..65]))
        .arg(hex::encode(dev.kid))
        .arg("42")
        .arg(hex::encode(b"signed by pycose"))
        .output()
        .expect("run python");
    assert!(out.status.success(), "pycose failed: {}", String::from_utf8_lossy(&out.stderr));
    let msg = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).expect("hex from pycose");
    let c = h.client("sensor-py").await;
    c.publish(&dev.data_topic(), msg, QoS::AtLeastOnce).await;
    let s = h.wait_stats("pycose message accepted", |s| s.accepted == 1).await;
    assert_eq!(s.rejected_total(), 0, "{s:?}");
    let stored = messages(&h, "sensor-py").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].seq, 42);
    assert_eq!(stored[0].payload, hex::encode(b"signed by pycose"));
    h.stop().await;
}

/// Many devices publishing at once (bounded: 10 x 100 messages): all are
/// accepted, none is mistaken for a replay (the verify pool must not reorder
/// a device's messages), each stored once.
async fn burst_from_many_devices_is_all_accepted(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let (n_dev, per) = (10usize, 100u64);
    let mut devs = Vec::new();
    for i in 0..n_dev {
        let d = h.pki.device(&format!("burst-{i}"));
        h.register(&d).await.unwrap();
        devs.push(d);
    }
    let mut tasks = Vec::new();
    for d in &devs {
        let msgs: Vec<Vec<u8>> = (1..=per).map(|s| d.sign_fast(s, format!("m{s}").as_bytes())).collect();
        let (c, topic) = (h.client(&d.id).await, d.data_topic());
        tasks.push(tokio::spawn(async move {
            for m in msgs {
                c.publish(&topic, m, QoS::AtLeastOnce).await;
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    let total = n_dev as u64 * per;
    let s = h.wait_stats("the whole burst", |s| s.accepted + s.rejected_total() >= total).await;
    assert_eq!(s.accepted, total, "{s:?}");
    assert_eq!(s.rejected_total(), 0, "{s:?}");
    for d in &devs {
        assert_eq!(messages(&h, &d.id).await.len(), per as usize);
    }
    drop(clients);
    h.stop().await;
}

/// `GET /metrics`: the counts of what happened, in the Prometheus text
/// format (OpenMetrics 1.0), parsed by the strict OpenMetrics parser of the
/// Python `prometheus_client` (not ours).
async fn metrics_page_counts_what_happened(kind: BrokerKind) {
    let h = Harness::start(kind).await;
    let dev = h.pki.device("metered-1");
    h.register(&dev).await.unwrap();
    h.register(&dev).await.unwrap(); // unchanged
    let other = Pki::new("other").device("metered-2");
    assert!(h.register(&other).await.is_err()); // refused
    let mut c = h.client("metered-1").await;
    c.subscribe(&dev.errors_topic()).await;
    let m = dev.sign(1, b"one");
    c.publish(&dev.data_topic(), m.clone(), QoS::AtLeastOnce).await;
    c.publish(&dev.data_topic(), dev.sign(2, b"two"), QoS::AtLeastOnce).await;
    h.wait_stats("2 accepted", |s| s.accepted == 2).await;
    c.publish(&dev.data_topic(), m, QoS::AtLeastOnce).await;
    c.next_error().await;
    h.wait_stats("1 replay", |s| s.rejected_for(RejectCode::Replay) == 1).await;

    let url = format!("{}/metrics", h.base);
    let (ctype, page) = tokio::task::spawn_blocking(move || {
        let mut resp = ureq::get(&url).call().expect("GET /metrics");
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (ctype, resp.body_mut().read_to_string().expect("body"))
    })
    .await
    .unwrap();
    assert!(ctype.starts_with("application/openmetrics-text; version=1.0.0"), "{ctype}");
    for line in [
        "tfmprov_aggregator_messages_accepted_total 2",
        "tfmprov_aggregator_messages_rejected_total{code=\"6\",reason=\"replay or duplicate\"} 1",
        "tfmprov_aggregator_messages_rejected_total{code=\"11\",reason=\"seq beyond the replay horizon\"} 0",
        "tfmprov_aggregator_registrations_total{result=\"created\"} 1",
        "tfmprov_aggregator_registrations_total{result=\"unchanged\"} 1",
        "tfmprov_aggregator_registrations_total{result=\"refused\"} 1",
        "tfmprov_aggregator_ingest_latency_seconds_count 2",
        "tfmprov_aggregator_queue_depth{queue=\"write\"} 0",
        "# TYPE tfmprov_aggregator_ingest_latency_seconds histogram",
    ] {
        assert!(page.lines().any(|l| l == line), "missing {line:?} in\n{page}");
    }
    // An independent parser reads every family and agrees on the numbers.
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
acc = [s.value for s in fams["tfmprov_aggregator_messages_accepted"].samples if s.name.endswith("_total")]
rej = {s.labels["code"]: s.value for s in fams["tfmprov_aggregator_messages_rejected"].samples if s.name.endswith("_total")}
print(fams["tfmprov_aggregator_ingest_latency_seconds"].type, int(acc[0]), int(rej["6"]), len(rej))
"#;
    let mut child = std::process::Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv python (tests/host/requirements.txt)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), page.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client parser: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("histogram 2 1 {}", RejectCode::ALL.len()));
    h.stop().await;
}
