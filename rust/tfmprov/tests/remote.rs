//! Remote provisioning end to end (issue 12, docs/remote.md): the CA and the
//! aggregator in this process, on the embedded broker and on a real
//! mosquitto, a real `tfmprov device-sim` enrolled by `tfmprov factory`
//! (which registers its key-agreement key), and commands sent with
//! `tfmprov remote` through MQTT. A subscriber to `#` records everything the
//! broker carries.

#[path = "../../aggregator/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use tfmprov::demo::Servers;
use tfmprov::sim::SimProcess;

const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");

fn tfmprov(args: &[&str]) -> std::process::Output {
    Command::new(EXE).args(args).env("TFMPROV_LOG", "warn").output().expect("run tfmprov")
}

fn ok(args: &[&str]) -> String {
    let out = tfmprov(args);
    assert!(
        out.status.success(),
        "tfmprov {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Everything published on the broker: (topic, payload).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A subscriber to `#` on `mqtt_url` (mqtt://HOST:PORT), recording in the background.
fn eavesdrop(mqtt_url: &str) -> (Client, Seen) {
    let (host, port) = tfmprov::sim::parse_mqtt_url(mqtt_url).unwrap();
    let mut o = MqttOptions::new("eavesdropper", host, port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(o, 100);
    client.subscribe("#", QoS::AtLeastOnce).unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => s.lock().unwrap().push((p.topic.clone(), p.payload.to_vec())),
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    (client, seen)
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn on_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Servers::start(dir.path()).unwrap();
    remote_commands_through_the_broker_end_to_end_encrypted(dir.path(), &servers);
}

#[test]
fn on_mosquitto() {
    let mosq = common::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let broker = tfmprov_aggregator::BrokerChoice::External { url: mosq.url(), ca_file: None, client_cert: None };
    let servers = Servers::start_on(dir.path(), broker).unwrap();
    remote_commands_through_the_broker_end_to_end_encrypted(dir.path(), &servers);
}

fn remote_commands_through_the_broker_end_to_end_encrypted(dir: &Path, servers: &Servers) {
    let state = dir.join("dev-r");
    // Enrolled at the factory (SMP over UDP): key 3, its chain, the cloud
    // certificate, and the key-agreement key registered at the aggregator.
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-r", &[]).unwrap();
    let target = format!("dev-r@udp:{}", sim.udp);
    ok(&["factory", "--ca", &servers.ca_url, "--aggregator", &servers.aggregator_url, "--device", &target]);
    sim.stop();
    // In the field: connected to the broker only.
    let (watcher, seen) = eavesdrop(&servers.mqtt_url);
    let args: Vec<String> = ["--mqtt", &servers.mqtt_url, "--interval", "300"].iter().map(|s| s.to_string()).collect();
    let sim = SimProcess::spawn(Path::new(EXE), &state, "dev-r", &args).unwrap();
    wait_for("telemetry", Duration::from_secs(20), || servers.stats().accepted >= 1);

    let agg = servers.aggregator_url.as_str();
    let out = ok(&["remote", "status", "--device", "dev-r", "--aggregator", agg, "--id", "3"]);
    assert!(out.contains("dev-r status cseq 1: answered rc 0"), "{out}");
    assert!(out.contains("\"present\":true"), "{out}");
    let out = ok(&["remote", "generate", "--device", "dev-r", "--aggregator", agg, "--id", "0x20"]);
    assert!(out.contains("generate cseq 2: answered rc 0"), "{out}");
    let new_pub = out.split("\"pub\":\"").nth(1).and_then(|r| r.split('"').next()).expect("pub in the result").to_owned();
    assert_eq!(new_pub.len(), 130);
    let out = ok(&["remote", "public", "--device", "dev-r", "--aggregator", agg, "--id", "0x20"]);
    assert!(out.contains(&new_pub), "the same key read back: {out}");
    let out = ok(&["remote", "destroy", "--device", "dev-r", "--aggregator", agg, "--id", "0x20"]);
    assert!(out.contains("destroy cseq 4: answered rc 0"), "{out}");
    // A group error comes back with its code (and exit status 1).
    let o = tfmprov(&["remote", "public", "--device", "dev-r", "--aggregator", agg, "--id", "0x20"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("answered rc 2"), "{}", String::from_utf8_lossy(&o.stdout));

    // The broker carried commands and replies, and nothing of them in clear.
    std::thread::sleep(Duration::from_millis(300));
    let seen = seen.lock().unwrap().clone();
    let cmds: Vec<&Vec<u8>> = seen.iter().filter(|(t, _)| t == "prov/dev-r/cmd").map(|(_, p)| p).collect();
    let replies = seen.iter().filter(|(t, _)| t == "prov/dev-r/reply").count();
    assert_eq!((cmds.len(), replies), (5, 5), "five commands, five replies");
    let new_pub_bytes = hex::decode(&new_pub).unwrap();
    for (topic, payload) in seen.iter().filter(|(t, _)| t.ends_with("/cmd") || t.ends_with("/reply")) {
        for word in [&b"status"[..], b"generate", b"destroy", b"public", b"cseq", b"\"rc\"", b"present"] {
            assert!(!payload.windows(word.len()).any(|w| w == word), "{word:?} in clear on {topic}");
        }
        assert!(!payload.windows(new_pub_bytes.len()).any(|w| w == new_pub_bytes), "the new public key in clear on {topic}");
    }

    // A command replayed from the broker's traffic (the generate, cseq 2):
    // the device refuses it as stale; key 0x20 stays destroyed.
    let generate = cmds[1].clone();
    watcher.publish("prov/dev-r/cmd", QoS::AtLeastOnce, false, generate).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let o = tfmprov(&["remote", "status", "--device", "dev-r", "--aggregator", agg, "--id", "0x20"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"present\":false"), "replaying generate did not run it again: {out}");
    drop(sim);
}
