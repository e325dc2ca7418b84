//! [`Config`] and [`BrokerChoice`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::cloud::CloudIdentity;
use tfmprov_db::DbChoice;
use crate::error::Error;

/// Default address of the embedded broker.
pub const DEFAULT_EMBEDDED_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 1883);
/// Default largest accepted `data` message (bytes of the MQTT payload).
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024;
/// Default replay horizon: 2^24 = 16,777,216 sequence numbers, i.e. a
/// backlog of about 194 days of one message a second sent after a newer
/// message is still accepted. See [`Config::replay_horizon`].
pub const DEFAULT_REPLAY_HORIZON: u64 = 1 << 24;
/// Default [`Config::early_sealed_wait`].
pub const DEFAULT_EARLY_SEALED_WAIT: Duration = Duration::from_secs(10);
/// Largest [`Config::early_sealed_wait`].
pub const MAX_EARLY_SEALED_WAIT: Duration = Duration::from_secs(60);

/// Which MQTT broker the aggregator uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerChoice {
    /// Run rumqttd inside this process, listening on `listen` (port 0 = pick a free one).
    Embedded {
        /// Listen address of the embedded broker.
        listen: SocketAddr,
    },
    /// Connect to an external broker (mosquitto, EMQX, ...).
    External {
        /// `mqtt://HOST[:PORT]` (default port 1883) or `mqtts://HOST[:PORT]` (8883).
        url: String,
        /// PEM CA bundle that verifies the broker's certificate (required for `mqtts`).
        ca_file: Option<PathBuf>,
        /// PEM client certificate chain and PEM private key, for brokers that
        /// require client authentication (`mqtts` only).
        client_cert: Option<(PathBuf, PathBuf)>,
    },
}

impl BrokerChoice {
    /// Parse the CLI's `--broker` value: `embedded` (on 127.0.0.1:1883),
    /// `embedded:ADDR:PORT`, `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
    pub fn parse(
        s: &str,
        ca_file: Option<PathBuf>,
        client_cert: Option<(PathBuf, PathBuf)>,
    ) -> Result<BrokerChoice, Error> {
        if s == "embedded" {
            return Ok(BrokerChoice::Embedded { listen: DEFAULT_EMBEDDED_LISTEN });
        }
        if let Some(addr) = s.strip_prefix("embedded:") {
            let listen = addr
                .parse()
                .map_err(|_| Error::Config(format!("embedded broker address {addr:?} is not ADDR:PORT")))?;
            return Ok(BrokerChoice::Embedded { listen });
        }
        let choice = BrokerChoice::External { url: s.to_owned(), ca_file, client_cert };
        choice.endpoint()?;
        Ok(choice)
    }

    /// (tls, host, port) of an external broker.
    pub(crate) fn endpoint(&self) -> Result<(bool, String, u16), Error> {
        let BrokerChoice::External { url, ca_file, client_cert } = self else {
            return Err(Error::Config("not an external broker".into()));
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(Error::Config(format!(
                "broker {url:?}: expected embedded, mqtt://HOST:PORT or mqtts://HOST:PORT"
            )));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| Error::Config(format!("broker {url:?}: unclosed [")))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(Error::Config(format!("broker {url:?}: junk after ]"))),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                Error::Config(format!("broker {url:?}: port {p:?} is not 1..65535"))
            })?,
            None => default_port,
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(Error::Config(format!("broker {url:?}: bad host")));
        }
        if tls && ca_file.is_none() {
            return Err(Error::Config(format!(
                "broker {url:?}: mqtts needs a CA file (the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt, will do for public brokers)"
            )));
        }
        if !tls && (ca_file.is_some() || client_cert.is_some()) {
            return Err(Error::Config(format!("broker {url:?}: CA file / client certificate need mqtts://")));
        }
        Ok((tls, host, port))
    }
}

/// Everything `tfmprov aggregator serve` configures.
#[derive(Clone, Debug)]
pub struct Config {
    /// State directory: the cloud identity, the storage key and (with
    /// [`DbChoice::Sqlite`]) the database `aggregator.sqlite`.
    pub state_dir: PathBuf,
    /// The database: SQLite in the state directory (default) or PostgreSQL.
    /// Instances sharing one database must also share the state directory's
    /// `storage.key` and cloud identity (docs/deploy.md).
    pub database: DbChoice,
    /// HTTP listen address (port 0 = pick a free one; see [`crate::Running::http_addr`]).
    pub listen: SocketAddr,
    /// PEM of the CA root certificate(s) that registration chains must verify to.
    pub ca_root_pem: String,
    /// The broker.
    pub broker: BrokerChoice,
    /// Topic prefix (`prov`).
    pub topic_prefix: String,
    /// How far below a key's newest accepted `seq` a message may be and still
    /// be considered (default [`DEFAULT_REPLAY_HORIZON`], at least 1). Replay
    /// detection is exact whatever this is: a message is a replay only if
    /// its (device, kid, seq) was stored before. A message further below is
    /// refused unseen with code 11 `SeqTooOld`, never as a replay (code 6).
    pub replay_horizon: u64,
    /// Largest accepted message in bytes (default 16 KiB; at most 64 KiB, the COSE parser's cap).
    pub max_message: usize,
    /// Signature verification threads (default: the number of CPUs).
    pub workers: usize,
    /// The cloud key pair and certificate (session support). Default
    /// [`CloudIdentity::None`]: use the one in the state directory if any.
    pub cloud: CloudIdentity,
    /// How long a `sealed` message for a session id the server does not
    /// have yet (but above the device's newest) waits for its `session`
    /// message before it is rejected as an unknown session (default 10 s, at
    /// most [`MAX_EARLY_SEALED_WAIT`]). Brokers forward the QoS 2 session
    /// message only at its PUBREL, so a sealed message sent right after it
    /// usually arrives first.
    pub early_sealed_wait: Duration,
    /// Run as one of several instances on one database and one broker
    /// (docs/deploy.md): subscribe with MQTT shared subscriptions
    /// `$share/{group}/{prefix}/+/{kind}`, so that the broker hands each
    /// message to one member of the group. Needs an external broker (mosquitto
    /// 2, EMQX) and [`Config::instance`]. Default `None`: plain subscriptions.
    pub share_group: Option<String>,
    /// This instance's name, part of its MQTT client id (`[A-Za-z0-9._-]{1,32}`).
    /// It must be stable across restarts of the instance and differ between
    /// instances: the broker keeps the persistent session (and the messages
    /// the instance had not acknowledged) by client id.
    pub instance: Option<String>,
    /// A remote command not answered within this reads as `timed_out`
    /// (default [`DEFAULT_COMMAND_TIMEOUT`]).
    pub command_timeout: Duration,
    /// The CA that signs the CSRs of rotated keys (`http://HOST:PORT`).
    /// `None` (default): key rotation is refused.
    pub rotation_ca: Option<String>,
    /// Where the CA's CRL is (`http://HOST:PORT/v1/crl`). `None` (default):
    /// no CRL is fetched, devices are revoked only through the API.
    pub crl_url: Option<String>,
    /// How often the CRL is fetched (default [`DEFAULT_CRL_INTERVAL`], 60 s):
    /// a certificate the CA revokes is refused within this long.
    pub crl_interval: Duration,
    /// The first operator's token file (default `operator.token` in the
    /// state directory): at the first start, with no operator at all, the
    /// token it holds becomes `admin`'s, or a new one is written there
    /// ([`tfmprov_auth::Auth::bootstrap`]).
    pub admin_token_file: Option<PathBuf>,
    /// The operator token (scope `sign`) the aggregator shows the CA when it
    /// enrolls its cloud key ([`CloudIdentity::EnrollAt`]) and when it has a
    /// rotated key's CSR signed. `None`: the CA answers 401, and the error
    /// says so.
    pub ca_token: Option<String>,
    /// How long a rotated-out key stays accepted after the device switched
    /// to the new one (default [`crate::DEFAULT_ROTATION_GRACE`], 24 h); a
    /// rotation may give its own.
    pub rotation_grace: Duration,
    /// A TLS listener of the embedded broker for devices (mutual TLS: a
    /// client certificate that verifies to the CA root). `None` (default):
    /// plain MQTT only. The aggregator itself stays on the plain listener,
    /// which should then be on loopback.
    pub broker_tls: Option<BrokerTls>,
    /// HTTPS on the API (`Config::listen`) with a server certificate from
    /// the project's CA. `None` (default): plain HTTP, for loopback.
    pub https: Option<Https>,
    /// An external broker's certificate chain (PEM, leaf first), served at
    /// `GET /v1/broker` so that enrollment gives devices its key to pin
    /// (with the embedded broker's TLS listener, its own chain is served).
    pub external_broker_chain_pem: Option<String>,
}

/// HTTPS on the aggregator's API ([`Config::https`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Https {
    /// The names in its certificate (host names or IP addresses).
    pub names: Vec<String>,
    /// The CA that issues the certificate (`https.key`, `https.crt` in the
    /// state directory) at the first start, with [`Config::ca_token`]
    /// (scope `servers`). `None`: the files must already be there.
    pub ca_url: Option<String>,
}

/// The embedded broker's TLS listener ([`Config::broker_tls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerTls {
    /// Its address (port 0 = pick a free one; [`crate::Running::mqtts_addr`]).
    pub listen: SocketAddr,
    /// The names in its certificate (host names or IP addresses; devices
    /// connect to the first). Default `localhost`, `127.0.0.1`.
    pub names: Vec<String>,
    /// The CA that issues its certificate at the first start
    /// (`http://HOST:PORT`, with [`Config::ca_token`], scope `servers`).
    /// `None`: `broker.key` and `broker.crt` must already be in the state
    /// directory.
    pub ca_url: Option<String>,
}

impl BrokerTls {
    /// On `listen`, names `localhost` and `127.0.0.1`, issued by `ca_url`.
    pub fn new(listen: SocketAddr, ca_url: Option<String>) -> BrokerTls {
        BrokerTls { listen, names: vec!["localhost".into(), "127.0.0.1".into()], ca_url }
    }
}

/// Default [`Config::crl_interval`]: 60 seconds.
pub const DEFAULT_CRL_INTERVAL: Duration = Duration::from_secs(60);

/// Default [`Config::command_timeout`]: 10 minutes.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

impl Config {
    /// A configuration with the defaults: embedded broker on 127.0.0.1:1883,
    /// prefix `prov`, replay horizon 2^24, 16 KiB messages, one verify thread per CPU,
    /// cloud identity [`CloudIdentity::None`].
    pub fn new(state_dir: impl Into<PathBuf>, listen: SocketAddr, ca_root_pem: impl Into<String>) -> Config {
        Config {
            state_dir: state_dir.into(),
            database: DbChoice::Sqlite,
            listen,
            ca_root_pem: ca_root_pem.into(),
            broker: BrokerChoice::Embedded { listen: DEFAULT_EMBEDDED_LISTEN },
            topic_prefix: tfmprov_cose::DEFAULT_PREFIX.to_owned(),
            replay_horizon: DEFAULT_REPLAY_HORIZON,
            max_message: DEFAULT_MAX_MESSAGE,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            cloud: CloudIdentity::None,
            early_sealed_wait: DEFAULT_EARLY_SEALED_WAIT,
            share_group: None,
            instance: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            rotation_ca: None,
            ca_token: None,
            admin_token_file: None,
            crl_url: None,
            crl_interval: DEFAULT_CRL_INTERVAL,
            rotation_grace: crate::DEFAULT_ROTATION_GRACE,
            broker_tls: None,
            https: None,
            external_broker_chain_pem: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.replay_horizon == 0 {
            return Err(Error::Config("replay horizon 0: it must be at least 1".into()));
        }
        if self.max_message == 0 || self.max_message > tfmprov_cose::MAX_MESSAGE_LEN {
            return Err(Error::Config(format!(
                "max message {} not in 1..={}",
                self.max_message,
                tfmprov_cose::MAX_MESSAGE_LEN
            )));
        }
        if self.workers == 0 || self.workers > 256 {
            return Err(Error::Config(format!("workers {} not in 1..=256", self.workers)));
        }
        let p = &self.topic_prefix;
        if p.is_empty() || p.contains(['+', '#', '\0']) || p.starts_with('/') || p.ends_with('/') {
            return Err(Error::Config(format!("topic prefix {p:?} is not a plain topic level")));
        }
        if let BrokerChoice::External { .. } = &self.broker {
            self.broker.endpoint()?;
        }
        if self.early_sealed_wait > MAX_EARLY_SEALED_WAIT {
            return Err(Error::Config(format!(
                "early sealed wait {:?} above {MAX_EARLY_SEALED_WAIT:?}",
                self.early_sealed_wait
            )));
        }
        if let Some(i) = &self.instance {
            let ok = (1..=32).contains(&i.len())
                && i.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(Error::Config(format!("instance name {i:?}: expected [A-Za-z0-9._-]{{1,32}}")));
            }
        }
        if let Some(g) = &self.share_group {
            if g.is_empty() || g.contains(['+', '#', '/', '\0']) {
                return Err(Error::Config(format!("share group {g:?} is not a plain topic level")));
            }
            if matches!(self.broker, BrokerChoice::Embedded { .. }) {
                return Err(Error::Config(
                    "a share group needs an external broker (each instance would start its own embedded one)".into(),
                ));
            }
            if self.instance.is_none() {
                return Err(Error::Config(
                    "a share group needs an instance name (the broker keeps each member's session by client id)".into(),
                ));
            }
        }
        if self.broker_tls.is_some() && !matches!(self.broker, BrokerChoice::Embedded { .. }) {
            return Err(Error::Config(
                "a broker TLS listener is for the embedded broker: configure TLS on the external broker itself".into(),
            ));
        }
        if let Some(t) = &self.broker_tls {
            if t.names.is_empty() {
                return Err(Error::Config("the broker's TLS listener needs at least one name".into()));
            }
        }
        if let Some(pem) = &self.external_broker_chain_pem {
            if matches!(self.broker, BrokerChoice::Embedded { .. }) {
                return Err(Error::Config("a broker certificate file is for an external broker (the embedded one makes its own)".into()));
            }
            tfmprov_tls::pem_certificates(pem).map_err(|e| Error::Config(format!("broker certificate: {e}")))?;
        }
        if self.https.as_ref().is_some_and(|h| h.names.is_empty()) {
            return Err(Error::Config("HTTPS needs at least one name for the certificate".into()));
        }
        if let CloudIdentity::EnrollAt { ca_url } = &self.cloud {
            let rest = ca_url.strip_prefix("https://").or_else(|| ca_url.strip_prefix("http://")).unwrap_or("");
            if rest.trim_end_matches('/').is_empty() {
                return Err(Error::Config(format!(
                    "cloud enrollment CA URL {ca_url:?}: expected https://HOST:PORT (or http:// for a CA on loopback)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(url: &str, ca: bool) -> Result<(bool, String, u16), Error> {
        BrokerChoice::External {
            url: url.into(),
            ca_file: ca.then(|| PathBuf::from("/ca.pem")),
            client_cert: None,
        }
        .endpoint()
    }

    #[test]
    fn broker_urls() {
        assert_eq!(ext("mqtt://127.0.0.1:1884", false).unwrap(), (false, "127.0.0.1".into(), 1884));
        assert_eq!(ext("mqtt://broker.local", false).unwrap(), (false, "broker.local".into(), 1883));
        assert_eq!(ext("mqtts://[::1]:8884", true).unwrap(), (true, "::1".into(), 8884));
        assert_eq!(ext("mqtts://h", true).unwrap(), (true, "h".into(), 8883));
        assert!(ext("mqtts://h:8883", false).is_err(), "mqtts without a CA file");
        assert!(ext("mqtt://h:1883", true).is_err(), "CA file with plain mqtt");
        assert!(ext("http://h:1883", false).is_err());
        assert!(ext("mqtt://h:0", false).is_err());
        assert!(ext("mqtt://h:x", false).is_err());
        assert!(ext("mqtt://:1883", false).is_err());
        assert_eq!(
            BrokerChoice::parse("embedded", None, None).unwrap(),
            BrokerChoice::Embedded { listen: DEFAULT_EMBEDDED_LISTEN }
        );
        assert_eq!(
            BrokerChoice::parse("embedded:127.0.0.1:0", None, None).unwrap(),
            BrokerChoice::Embedded { listen: "127.0.0.1:0".parse().unwrap() }
        );
    }
}
