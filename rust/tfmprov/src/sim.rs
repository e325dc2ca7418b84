//! `tfmprov device-sim`: the firmware core (tfmprov-device) running on the
//! host against Mbed TLS's PSA, reachable the way a Zephyr device is: SMP
//! over UDP (one packet per datagram) and over a serial line with the SMP
//! console framing, on a pseudo-terminal linked at a path.
//!
//! PSA keeps its key files in the current directory and is process-global,
//! so one simulated device is one process, working in its state directory.

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tfmprov_device::psa::rng::RngHealth;
use tfmprov_device::vault::Vault;
use tfmprov_device::Device;

/// Device simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Directory holding the device's persistent keys and state.
    pub state: PathBuf,
    /// Device id.
    pub device_id: String,
    /// SMP over UDP on this address (port 0 picks a free one).
    pub smp_udp: Option<SocketAddr>,
    /// SMP over a PTY linked at this path.
    pub smp_serial: Option<PathBuf>,
    /// MQTT telemetry, if any.
    pub telemetry: Option<TelemetryConfig>,
    /// Keep the counters, the audit log and the RNG record in a simulated
    /// secure partition (the partition's own logic, its assets in
    /// `<state>/partition`), as firmware built with CONFIG_TFMPROV_PARTITION;
    /// else the non-secure fallback.
    pub partition: bool,
}

/// MQTT telemetry of the simulator.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Broker URL, `mqtt://HOST:PORT` or `mqtts://HOST:PORT` (mutual TLS:
    /// the device's certificate and PSA key; the broker's chain checked to
    /// the root on the device and its key pinned).
    pub url: String,
    /// Time between messages.
    pub interval: Duration,
    /// Stop after this many messages (None: until stopped).
    pub count: Option<u64>,
    /// Topic prefix.
    pub prefix: String,
}

/// A booted simulator device shared by the transports.
pub type SharedDevice = Arc<Mutex<Device>>;

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// Runs the simulator until `stop` is set. `ready` is called once with the
/// UDP address actually bound (useful with port 0).
pub fn run(cfg: SimConfig, stop: Arc<AtomicBool>, ready: impl FnOnce(Option<SocketAddr>)) -> Result<()> {
    let state = absolute(&cfg.state)?;
    let serial_link = cfg.smp_serial.as_deref().map(absolute).transpose()?;
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    std::env::set_current_dir(&state).with_context(|| format!("entering {}", state.display()))?;
    let vault = if cfg.partition {
        let dir = state.join("partition");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let call = tfmprov_partition_client::host::boot(&dir, |b: &mut [u8]| {
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, b);
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("secure partition boot failed: {e}"))?;
        Vault::partition(call)
    } else {
        Vault::NonSecure
    };
    let device = Device::boot_with(&cfg.device_id, vault).map_err(|e| anyhow::anyhow!("device boot failed: {e}"))?;
    match device.rng_health() {
        RngHealth::Repeating => tracing::error!(
            "RNG check: this boot's first random block equals the previous boot's; random keys and sessions are refused"
        ),
        h => tracing::info!("RNG check: {h:?}"),
    }
    let device: SharedDevice = Arc::new(Mutex::new(device));

    let mut threads = Vec::new();
    let mut udp_addr = None;
    if let Some(addr) = cfg.smp_udp {
        let socket = UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"))?;
        udp_addr = Some(socket.local_addr()?);
        let (dev, stop) = (device.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let r = tfmprov_transport::serve_udp(socket, &stop, |pkt| lock(&dev).handle_packet(pkt));
            if let Err(e) = r {
                tracing::error!("SMP/UDP stopped: {e}");
            }
        }));
    }
    if let Some(link) = serial_link.clone() {
        let (dev, stop) = (device.clone(), stop.clone());
        // Create the PTY before announcing readiness.
        let (tx, rx) = std::sync::mpsc::channel();
        threads.push(std::thread::spawn(move || {
            let r = tfmprov_transport::serve_serial_ready(&link, &stop, || { let _ = tx.send(()); }, |pkt| lock(&dev).handle_packet(pkt));
            if let Err(e) = r {
                tracing::error!("SMP/serial stopped: {e}");
            }
        }));
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
    if let Some(t) = cfg.telemetry.clone() {
        let (dev, stop) = (device.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            if let Err(e) = telemetry(&dev, &t, &stop) {
                tracing::error!("telemetry stopped: {e:#}");
            }
        }));
    }
    ready(udp_addr);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Locks the device, recovering from a poisoned lock (a panicking
/// transport thread must not take the device down with it).
pub fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, Device> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

/// Splits `mqtt://HOST:PORT` or `mqtts://HOST:PORT` into (tls, host, port).
pub fn parse_mqtt_url(url: &str) -> Result<(bool, String, u16)> {
    let (tls, rest) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => bail!("{url:?}: expected mqtt://HOST:PORT or mqtts://HOST:PORT"),
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("{url:?}: missing :PORT"))?;
    Ok((tls, host.to_string(), port.parse().with_context(|| format!("{url:?}: bad port"))?))
}

/// The rustls configuration of a device on `mqtts`: its certificate chain
/// and its telemetry key, which signs the handshake through PSA (never
/// exported); the broker verified to the CA root on the device and pinned
/// to the key of the broker certificate stored at enrollment. The identity
/// is read again at every handshake, so a key switched by a remote
/// `use-key` (or a certificate replaced) is presented from the next
/// connection on, as the firmware does; root and pin are read once, here.
pub fn device_tls(dev: &SharedDevice) -> Result<rustls::ClientConfig> {
    let id = lock(dev).tls_identity().map_err(|e| anyhow::anyhow!("mqtts: {e}"))?;
    let roots = tfmprov_tls::roots(&[id.root.clone().into()])?;
    let source = dev.clone();
    let identity = move || {
        let id = lock(&source).tls_identity().map_err(|e| e.to_string())?;
        let chain = id.chain.iter().map(|c| c.clone().into()).collect();
        let signer = source.clone();
        let key = tfmprov_tls::ExternalP256Key::new(move |digest| {
            lock(&signer).sign_digest(id.key, digest).map_err(|e| e.to_string())
        });
        Ok(tfmprov_tls::ClientIdentity { chain, key: Arc::new(key) })
    };
    Ok(tfmprov_tls::client_config_per_handshake(tfmprov_tls::ServerCheck::Pinned(roots, id.broker_pin), identity)?)
}

/// Publishes telemetry until stopped (or `count` messages): every interval a
/// signed `data` message, and, once the cloud certificate is on the device,
/// a `session` message whenever a session is due and a `sealed` message.
/// Reports that come back on the device's errors topic are logged.
pub fn telemetry(dev: &SharedDevice, cfg: &TelemetryConfig, stop: &AtomicBool) -> Result<()> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    use tfmprov_cose::{topic, Kind};
    let (tls, host, port) = parse_mqtt_url(&cfg.url)?;
    let device_id = lock(dev).device_id().to_string();
    let mut options = MqttOptions::new(format!("sim-{device_id}"), host, port);
    if tls {
        options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(device_tls(dev)?))));
    }
    options.set_keep_alive(Duration::from_secs(30));
    // Persistent: remote commands queued while the device is away reach it.
    options.set_clean_session(false);
    // A command is acknowledged only after its reply is queued: a device
    // that loses power while executing gets the command again (and answers
    // it from its stored reply if it had run it), instead of losing it.
    options.set_manual_acks(true);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut connection) = Client::new(options, 64);
    let errors_topic = topic(&cfg.prefix, &device_id, Kind::Errors);
    let cmd_topic = tfmprov_cose::envelope_topic(&cfg.prefix, &device_id, tfmprov_cose::Direction::Command);
    let reply_topic = tfmprov_cose::envelope_topic(&cfg.prefix, &device_id, tfmprov_cose::Direction::Reply);
    client.subscribe(&errors_topic, QoS::AtLeastOnce)?;
    client.subscribe(&cmd_topic, QoS::AtLeastOnce)?;
    // The field path of the key-agreement key (docs/remote.md "Keys"):
    // announced, signed, once per start, so that the server can reach a
    // device whose KAK it lacks or has wrong. Needs a telemetry key.
    match lock(dev).kak_announcement() {
        Ok(a) => client.publish(&reply_topic, QoS::AtLeastOnce, false, a)?,
        Err(e) => tracing::debug!("{device_id}: no key-agreement key announcement: {e}"),
    }
    let id_for_log = device_id.clone();
    let (dev_for_cmds, client_for_replies) = (dev.clone(), client.clone());
    // Set once we disconnect on purpose: connection errors after that end
    // the event loop instead of reconnecting.
    let closing = Arc::new(AtomicBool::new(false));
    let closing_events = closing.clone();
    let events = std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                // A remote command: the device's Rust core does everything;
                // this loop only hands the bytes over and publishes the reply
                // (what the firmware's C glue does).
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                    // The simulator knows the time: expired commands are refused.
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs());
                    let reply = lock(&dev_for_cmds).remote_command(&p.payload, now);
                    match reply {
                        Ok(r) => {
                            if let Err(e) = client_for_replies.try_publish(&reply_topic, QoS::AtLeastOnce, false, r) {
                                tracing::warn!("{id_for_log}: cannot publish a reply: {e}");
                                continue; // not acknowledged: the broker sends it again
                            }
                        }
                        Err(e) => tracing::warn!("{id_for_log}: remote command not answered: {e}"),
                    }
                    let _ = client_for_replies.try_ack(&p);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    tracing::warn!(
                        "{id_for_log}: errors topic: {}",
                        tfmprov_device::telemetry::describe_error_report(&p.payload)
                    );
                    let _ = client_for_replies.try_ack(&p);
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => break,
                Err(_) if closing_events.load(Ordering::Relaxed) => break,
                Err(e) => {
                    tracing::debug!("{id_for_log}: MQTT connection: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    });
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && cfg.count.is_none_or(|c| sent < c) {
        let now_ms = start.elapsed().as_millis() as u64;
        let payload = tfmprov_device::telemetry::sample_payload(sent, now_ms);
        // The messages are made under the device's lock and published after
        // it is released: on TLS, a reconnection's handshake signs through
        // the device while a full request queue blocks a publish.
        let mut out = Vec::with_capacity(3);
        {
            let mut d = lock(dev);
            match d.data_message(&payload) {
                Ok(m) => out.push((Kind::Data, QoS::AtLeastOnce, m)),
                // No telemetry key yet: stay connected (remote commands may
                // create it: the seed's "request"), publish nothing.
                Err(tfmprov_device::Error::Psa(tfmprov_psa::Error::NotFound(_))) => {
                    drop(d);
                    std::thread::sleep(cfg.interval.min(Duration::from_millis(200)));
                    continue;
                }
                Err(e) => return Err(anyhow::anyhow!("data message: {e}")),
            }
            let cloud_present = d
                .psa()
                .cert_present(tfmprov_psa::ids::PeerId::new(tfmprov_psa::ids::PEER_CLOUD.into())?.into())
                .unwrap_or(false);
            if cloud_present {
                if d.session_due(now_ms) {
                    let session = d.session_message(now_ms).map_err(|e| anyhow::anyhow!("session message: {e}"))?;
                    out.push((Kind::Session, QoS::ExactlyOnce, session));
                }
                let sealed = d.sealed_message(&payload).map_err(|e| anyhow::anyhow!("sealed message: {e}"))?;
                out.push((Kind::Sealed, QoS::AtLeastOnce, sealed));
            }
        }
        for (kind, qos, msg) in out {
            client.publish(topic(&cfg.prefix, &device_id, kind), qos, false, msg)?;
        }
        sent += 1;
        tracing::debug!("{device_id}: published message {sent}");
        let deadline = std::time::Instant::now() + cfg.interval;
        while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(cfg.interval));
        }
    }
    // Let the last QoS 1/2 publishes complete before disconnecting.
    std::thread::sleep(Duration::from_millis(300));
    closing.store(true, Ordering::Relaxed);
    let _ = client.disconnect();
    let _ = events.join();
    tracing::info!("{device_id}: telemetry done, {sent} messages");
    Ok(())
}

/// A `tfmprov device-sim` child process (used by the demo, the tests and the
/// enrollment benchmark). Stopped with SIGTERM when dropped.
pub struct SimProcess {
    /// Device id.
    pub device_id: String,
    /// Where it answers SMP over UDP.
    pub udp: SocketAddr,
    /// Its state directory.
    pub state: PathBuf,
    child: std::process::Child,
}

impl SimProcess {
    /// Starts `exe device-sim` on a free UDP port of 127.0.0.1 and waits for
    /// its ready line. `extra` are more device-sim arguments.
    pub fn spawn(exe: &std::path::Path, state: &std::path::Path, device_id: &str, extra: &[String]) -> Result<SimProcess> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(exe)
            .arg("device-sim")
            .arg("--state")
            .arg(state)
            .args(["--device-id", device_id, "--smp-udp", "127.0.0.1:0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .env("TFMPROV_LOG", std::env::var("TFMPROV_SIM_LOG").unwrap_or_else(|_| "warn".into()))
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("device-sim {device_id} did not start");
            }
        };
        let udp = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("udp="))
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected ready line {line:?}"))?;
        Ok(SimProcess { device_id: device_id.to_string(), udp, state: state.to_path_buf(), child })
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// SIGKILL: the device loses power (nothing is flushed or closed).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid with SIGTERM; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

