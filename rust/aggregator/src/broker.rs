//! The broker side: the embedded rumqttd, and the MQTT client options
//! (TCP or TLS with rustls on *ring*) for whichever broker is used.

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::BrokerChoice;
use crate::error::Error;

/// Largest publish the embedded broker accepts from a client (larger ones
/// make it drop the client). Above [`crate::Config::max_message`] so that
/// too-large messages reach the aggregator and are reported.
pub const EMBEDDED_MAX_PAYLOAD: usize = 1024 * 1024;

/// Largest MQTT packet the aggregator's client reads (the MQTT maximum).
/// rumqttc drops the connection on a larger packet, and the broker would
/// redeliver the same QoS 1 packet forever; so the client takes anything
/// and the aggregator rejects it by size. Limit sizes on the broker
/// (mosquitto: `message_size_limit`).
const CLIENT_MAX_INCOMING: usize = 268_435_455 + 5;

/// Start rumqttd on `listen` in background threads; returns the bound address.
///
/// rumqttd cannot report its bound port nor be stopped: port 0 is resolved
/// by binding a socket first, and the broker lives until the process exits.
pub(crate) fn start_embedded(listen: SocketAddr) -> Result<SocketAddr, Error> {
    // Resolve port 0 and fail early (with a clear error) if the address is taken.
    let addr = {
        let probe = TcpListener::bind(listen)
            .map_err(|e| Error::Broker(format!("cannot listen on {listen}: {e}")))?;
        probe.local_addr()?
    };
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: EMBEDDED_MAX_PAYLOAD,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "tfmprov-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 2000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    };
    let handle = std::thread::Builder::new()
        .name("agg-embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })?;
    // Ready when it accepts connections; gone if its thread ended (bind failed).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if handle.is_finished() {
            return Err(Error::Broker(format!("rumqttd failed to listen on {addr}")));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            return Err(Error::Broker(format!("rumqttd did not start listening on {addr}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// MQTT client options of the aggregator for `broker` (already started if embedded).
pub(crate) fn client_options(
    client_id: &str,
    broker: &BrokerChoice,
    embedded_addr: Option<SocketAddr>,
) -> Result<MqttOptions, Error> {
    let mut opts = match (broker, embedded_addr) {
        (BrokerChoice::Embedded { .. }, Some(addr)) => {
            MqttOptions::new(client_id, addr.ip().to_string(), addr.port())
        }
        (BrokerChoice::External { ca_file, client_cert, .. }, _) => {
            let (tls, host, port) = broker.endpoint()?;
            let mut o = MqttOptions::new(client_id, host, port);
            if tls {
                let ca = ca_file.as_deref().ok_or_else(|| Error::Config("mqtts needs a CA file".into()))?;
                o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(
                    tls_config(ca, client_cert.as_ref())?,
                ))));
            }
            o
        }
        (BrokerChoice::Embedded { .. }, None) => {
            return Err(Error::Broker("embedded broker not started".into()))
        }
    };
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(100)
        .set_max_packet_size(CLIENT_MAX_INCOMING, 64 * 1024);
    Ok(opts)
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// rustls client configuration on the *ring* provider: broker verified with
/// the CA file, optional client certificate.
pub(crate) fn tls_config(
    ca_file: &Path,
    client_cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = read(ca_file)?;
    for c in CertificateDer::pem_reader_iter(BufReader::new(ca.as_slice())) {
        let c = c.map_err(|e| Error::Config(format!("{}: {e}", ca_file.display())))?;
        roots
            .add(c)
            .map_err(|e| Error::Config(format!("{}: {e}", ca_file.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::Config(format!("{}: no PEM CERTIFICATE", ca_file.display())));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Config(format!("{}: {e}", cert.display())))?;
            if certs.is_empty() {
                return Err(Error::Config(format!("{}: no PEM CERTIFICATE", cert.display())));
            }
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| Error::Config(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::Config(format!("TLS client certificate: {e}")))
        }
    }
}
