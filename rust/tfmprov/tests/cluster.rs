//! Issue 14: more than one aggregator. Separate `tfmprov aggregator serve`
//! processes on one database (PostgreSQL, or one SQLite file) and one
//! mosquitto, each a member of the same shared subscription group; one is
//! killed with SIGKILL mid-stream and restarted under its instance name.
//! Every scenario runs on both databases.
//!
//! What must hold: every message stored exactly once; no refusal other than
//! a redelivered duplicate of a message that *is* stored (reported as code 6:
//! the killed instance had committed it but not acknowledged it); sessions
//! and sealed messages work when they reach different instances; the backlog
//! case of issue 14 across two instances.

#[path = "../../aggregator/tests/common/mod.rs"]
mod common;
mod cluster_support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use cluster_support::Cluster;
use common::*;
use rumqttc::QoS;
use tfmprov_aggregator::client;
use tfmprov_cose::{ErrorReport, RejectCode};

/// Every report on `prov/+/errors` received so far: (topic, report).
async fn drain_reports(c: &mut TestClient) -> Vec<(String, ErrorReport)> {
    let mut out = Vec::new();
    while let Some(p) = c.recv(Duration::from_millis(300)).await {
        out.push((p.topic.clone(), ErrorReport::from_cbor(&p.payload).expect("report decodes")));
    }
    out
}

/// Only code 6, and only for messages that are stored.
fn assert_only_redelivered_duplicates(reports: &[(String, ErrorReport)], stored: &BTreeSet<(String, u64)>) {
    for (topic, r) in reports {
        assert_eq!(r.reject_code(), Some(RejectCode::Replay), "{topic}: {r:?}");
        let id = topic.strip_prefix("prov/").and_then(|t| t.strip_suffix("/errors")).expect("errors topic");
        let seq = r.seq.expect("seq in a replay report");
        assert!(stored.contains(&(id.to_owned(), seq)), "{topic} refused seq {seq}, which is not stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_postgresql() {
    two_instances_store_every_message_once_across_a_sigkill(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_sqlite() {
    two_instances_store_every_message_once_across_a_sigkill(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_on_postgresql() {
    backlog_across_two_instances_is_all_stored(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_on_sqlite() {
    backlog_across_two_instances_is_all_stored(false).await
}

/// 10 000 messages from 50 devices through two instances; instance b is
/// killed with SIGKILL while they flow and restarted afterwards.
async fn two_instances_store_every_message_once_across_a_sigkill(postgres: bool) {
    let mut cl = Cluster::start(postgres);
    let (n_dev, per) = (50usize, 200u64);
    let mut devs = Vec::new();
    for i in 0..n_dev {
        let d = cl.pki.device(&format!("fleet-{i:02}"));
        let (base, token, id, chain) = (cl.a().base.clone(), cl.token(), d.id.clone(), d.chain_pem.clone());
        tokio::task::spawn_blocking(move || client::register(&base, &token, &id, &chain, Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("register");
        devs.push(d);
    }
    let mut watcher = TestClient::connect(cl.mosq.addr(), "watcher").await;
    watcher.subscribe("prov/+/errors").await;

    let mut publishers = Vec::new();
    for d in &devs {
        let msgs: Vec<Vec<u8>> = (1..=per).map(|s| d.sign_fast(s, format!("m{s}").as_bytes())).collect();
        let (c, topic) = (TestClient::connect(cl.mosq.addr(), &d.id).await, d.data_topic());
        publishers.push(tokio::spawn(async move {
            for m in msgs {
                c.publish(&topic, m, QoS::AtLeastOnce).await;
                // Spread the stream over time so that the kill lands mid-stream.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            c
        }));
    }
    let total = n_dev as u64 * per;
    // Kill b once a fifth is stored: it holds received, unacknowledged and
    // possibly committed-but-unacknowledged messages.
    let cl_ref = &cl;
    tokio::task::block_in_place(|| cl_ref.wait_stored(total / 5, Duration::from_secs(120)));
    let killed_at = cl.stored_count();
    cl.b.take().expect("b").sigkill();
    let mut clients = Vec::new();
    for p in publishers {
        clients.push(p.await.unwrap());
    }
    // mosquitto keeps b's share in b's persistent session until b is back.
    std::thread::sleep(Duration::from_millis(500));
    cl.b = Some(cl.instance("b"));
    let cl_ref = &cl;
    tokio::task::block_in_place(|| cl_ref.wait_stored(total, Duration::from_secs(180)));
    std::thread::sleep(Duration::from_millis(500));

    let rows = cl.stored();
    assert_eq!(rows.len() as u64, total, "every message stored once (b killed at {killed_at} stored)");
    let mut per_dev: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for (id, kid, seq) in &rows {
        assert_eq!(kid.len(), 8);
        assert!(per_dev.entry(id.clone()).or_default().insert(*seq), "{id} seq {seq} twice");
    }
    for d in &devs {
        assert_eq!(per_dev.get(&d.id).map(|s| s.len()), Some(per as usize), "{}", d.id);
    }
    let stored: BTreeSet<(String, u64)> = rows.into_iter().map(|(id, _, seq)| (id, seq)).collect();
    let reports = drain_reports(&mut watcher).await;
    assert_only_redelivered_duplicates(&reports, &stored);
    for inst in [cl.a.as_ref().unwrap(), cl.b.as_ref().unwrap()] {
        let s = inst.stats();
        assert_eq!(s.rejected_total(), s.rejected_for(RejectCode::Replay), "{}: {s:?}", inst.name);
    }
    eprintln!(
        "{}: stored {total}; b killed at {killed_at}; {} redelivered duplicates reported; a accepted {}, b (after restart) {}",
        if postgres { "PostgreSQL" } else { "SQLite" },
        reports.len(),
        cl.a().stats().accepted,
        cl.b.as_ref().unwrap().stats().accepted
    );
    drop(clients);
}

/// The backlog case (1..=200, 800, 201..=799) with the messages spread over
/// two instances by the broker: all 800 stored, nothing reported; a true
/// duplicate, whichever instance gets it, refused.
async fn backlog_across_two_instances_is_all_stored(postgres: bool) {
    let cl = Cluster::start(postgres);
    let dev = cl.pki.device("backlog-x");
    let (base, token, id, chain) = (cl.a().base.clone(), cl.token(), dev.id.clone(), dev.chain_pem.clone());
    tokio::task::spawn_blocking(move || client::register(&base, &token, &id, &chain, Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("register");
    let mut c = TestClient::connect(cl.mosq.addr(), "backlog-x").await;
    c.subscribe(&dev.errors_topic()).await;
    let order: Vec<u64> = (1..=200).chain([800]).chain(201..=799).collect();
    for &seq in &order {
        c.publish(&dev.data_topic(), dev.sign_fast(seq, format!("m{seq}").as_bytes()), QoS::AtLeastOnce).await;
    }
    let cl_ref = &cl;
    tokio::task::block_in_place(|| cl_ref.wait_stored(800, Duration::from_secs(60)));
    assert!(c.recv(Duration::from_millis(500)).await.is_none(), "no report for a never-seen seq");
    let a = cl.a().stats().accepted;
    let b = cl.b.as_ref().unwrap().stats().accepted;
    assert_eq!(a + b, 800);
    assert!(a > 0 && b > 0, "both instances took a share (a {a}, b {b})");
    for seq in [3u64, 400, 800, 799] {
        c.publish(&dev.data_topic(), dev.sign_fast(seq, b"again"), QoS::AtLeastOnce).await;
        let p = c.recv(Duration::from_secs(10)).await.expect("a report");
        let r = ErrorReport::from_cbor(&p.payload).unwrap();
        assert_eq!((r.reject_code(), r.seq), (Some(RejectCode::Replay), Some(seq)));
    }
    assert_eq!(cl.stored_count(), 800);
}
