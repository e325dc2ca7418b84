//! End-to-end ingestion tests. Every scenario runs twice: on a real
//! mosquitto (started here on a free port) and on the embedded rumqttd.

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
    };
}

for_both_brokers!(
    registered_device_messages_are_stored,
    flipped_byte_is_rejected_and_reported,
    unknown_device_is_rejected,
    revoked_device_is_rejected,
    replayed_and_too_old_messages_are_rejected,
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

    let base = h.base.clone();
    let rec = tokio::task::spawn_blocking(move || client::revoke(&base, "sensor-3")).await.unwrap().unwrap();
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

async fn replayed_and_too_old_messages_are_rejected(kind: BrokerKind) {
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

    c.publish(&dev.data_topic(), dev.sign(100, b"hundred"), QoS::AtLeastOnce).await;
    h.wait_stats("2 accepted", |s| s.accepted == 2).await;
    // 100 - 30 >= 64 (default window): too old, even though never seen.
    c.publish(&dev.data_topic(), dev.sign(30, b"old"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.reject_code(), Some(RejectCode::Replay));
    assert_eq!(r.seq, Some(30));
    // Inside the window and unseen: accepted, once.
    c.publish(&dev.data_topic(), dev.sign(50, b"late"), QoS::AtLeastOnce).await;
    h.wait_stats("3 accepted", |s| s.accepted == 3).await;
    c.publish(&dev.data_topic(), dev.sign(50, b"late"), QoS::AtLeastOnce).await;
    let (_, r) = c.next_error().await;
    assert_eq!(r.seq, Some(50));
    let s = h.wait_stats("3 replays", |s| s.rejected_for(RejectCode::Replay) == 3).await;
    assert_eq!(s.accepted, 3);
    assert_eq!(s.rejected_total(), 3);
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
