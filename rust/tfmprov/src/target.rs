//! A device to talk to: its id and its SMP link.

use anyhow::{anyhow, bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tfmprov_transport::{Client, Link};

/// A device id and how to reach it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The device id (CN of its certificate).
    pub device_id: String,
    /// Its SMP link.
    pub link: Link,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.link {
            Link::Udp(a) => write!(f, "{}@udp:{a}", self.device_id),
            Link::Serial(p) => write!(f, "{}@serial:{}", self.device_id, p.display()),
        }
    }
}

/// Parses `udp:HOST:PORT` / `serial:PATH` (or a bare `HOST:PORT` for UDP).
pub fn parse_link(s: &str) -> Result<Link> {
    if let Some(rest) = s.strip_prefix("serial:") {
        if rest.is_empty() {
            bail!("serial link needs a path: serial:/dev/ttyACM0");
        }
        return Ok(Link::Serial(PathBuf::from(rest)));
    }
    let addr = s.strip_prefix("udp:").unwrap_or(s);
    let addr: SocketAddr = addr.parse().with_context(|| format!("{addr:?} is not HOST:PORT (e.g. 127.0.0.1:1337)"))?;
    Ok(Link::Udp(addr))
}

/// Parses `ID@udp:HOST:PORT` or `ID@serial:PATH`.
pub fn parse_target(s: &str) -> Result<Target> {
    let (id, link) = s.split_once('@').ok_or_else(|| anyhow!("{s:?}: expected DEVICE_ID@udp:HOST:PORT or DEVICE_ID@serial:PATH"))?;
    if !tfmprov_device::csr::valid_device_id(id) {
        bail!("{id:?} is not a valid device id ([A-Za-z0-9._-]{{1,64}})");
    }
    Ok(Target { device_id: id.to_string(), link: parse_link(link)? })
}

/// SMP timeouts and retries.
#[derive(Clone, Copy, Debug)]
pub struct LinkOptions {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions { timeout: Duration::from_millis(2000), retries: 2 }
    }
}

/// Opens an SMP client on a link.
pub fn connect(link: &Link, opts: LinkOptions) -> Result<Client> {
    Client::connect(link, opts.timeout, opts.retries).with_context(|| format!("connecting to {link:?}"))
}
