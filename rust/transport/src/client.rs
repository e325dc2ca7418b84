//! Host-side SMP client.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tfmprov_smp::{
    cmd, decode_body, encode_body, group, response_error, CertGetReq, CertGetRsp, CertStoreReq,
    CsrCreateReq, CsrCreateRsp, EchoReq, EchoRsp, EmptyRsp, GroupRc, Header, KeyGenerateReq,
    KeyGenerateRsp, KeyIdReq, KeyPublicRsp, KeyStatusRsp, MgmtErr, Op, ParamsRsp, ResponseError,
    HEADER_LEN,
};

use crate::serial::SerialPort;
use crate::{Error, DEFAULT_UDP_PORT, MAX_PACKET};

/// Where the device is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// SMP over UDP, one packet per datagram.
    Udp(SocketAddr),
    /// SMP console framing over a serial device (or a PTY link of the simulator).
    Serial(PathBuf),
}

impl std::str::FromStr for Link {
    type Err = Error;

    /// `udp:HOST:PORT`, `udp:HOST` (port 1337), `serial:PATH`, a bare socket address
    /// (`127.0.0.1:1337`, `[::1]:1337`), or anything else as a serial device path.
    fn from_str(s: &str) -> Result<Link, Error> {
        use std::net::ToSocketAddrs;
        if let Some(path) = s.strip_prefix("serial:") {
            return Ok(Link::Serial(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("udp:") {
            let resolved = if let Ok(a) = addr.parse::<SocketAddr>() {
                Some(a)
            } else if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
                Some(SocketAddr::new(ip, DEFAULT_UDP_PORT))
            } else {
                let host_port = addr.to_socket_addrs();
                let host_only = || (addr, DEFAULT_UDP_PORT).to_socket_addrs();
                host_port
                    .or_else(|_| host_only())
                    .ok()
                    .and_then(|mut it| it.next())
            };
            return resolved
                .map(Link::Udp)
                .ok_or_else(|| Error::Protocol(format!("cannot resolve UDP address {addr:?}")));
        }
        match s.parse::<SocketAddr>() {
            Ok(addr) => Ok(Link::Udp(addr)),
            Err(_) => Ok(Link::Serial(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Udp(addr) => write!(f, "udp:{addr}"),
            Link::Serial(path) => write!(f, "serial:{}", path.display()),
        }
    }
}

#[derive(Debug)]
enum Channel {
    Udp(UdpSocket),
    Serial(SerialPort),
}

/// SMP client (host side) with timeout and retries.
///
/// * Requests use the SMP v2 header (version 1), so group errors come back as
///   `{"err": {"group", "rc"}}`.
/// * Each request takes the next sequence number (starting from a time-derived value);
///   retries resend the same packet with the same sequence number, so a late answer to an
///   earlier attempt is still accepted. Responses with another sequence number, group,
///   command or op are discarded.
/// * A retried write may execute twice if only the response was lost (e.g. a second
///   `key_generate` then reports `Exists`).
#[derive(Debug)]
pub struct Client {
    channel: Channel,
    timeout: Duration,
    retries: u32,
    seq: u8,
}

impl Client {
    /// Opens the link: a UDP socket connected to the device, or the serial device in raw
    /// mode (pending input is flushed). `timeout` is the wait per attempt, `retries` the
    /// number of extra attempts after the first.
    pub fn connect(link: &Link, timeout: Duration, retries: u32) -> Result<Client, Error> {
        let channel = match link {
            Link::Udp(addr) => {
                let local: SocketAddr = match addr {
                    SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Channel::Udp(socket)
            }
            Link::Serial(path) => Channel::Serial(SerialPort::open(path)?),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seq = (nanos ^ std::process::id()).to_le_bytes()[0];
        Ok(Client {
            channel,
            timeout,
            retries,
            seq,
        })
    }

    /// The sequence number the next request will use.
    pub fn next_seq(&self) -> u8 {
        self.seq
    }

    /// Changes the per-attempt timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends one request (SMP v2 header) and returns the CBOR body of the matching
    /// response, whatever it contains (an error body included; see [`Client::call`]).
    pub fn request(&mut self, op: Op, group: u16, cmd: u8, body: &[u8]) -> Result<Vec<u8>, Error> {
        let len = u16::try_from(body.len()).map_err(|_| Error::TooLarge(body.len()))?;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let header = Header {
            op,
            version: 1,
            flags: 0,
            len,
            group,
            seq,
            cmd,
        };
        let mut packet = Vec::with_capacity(HEADER_LEN + body.len());
        packet.extend_from_slice(&header.encode());
        packet.extend_from_slice(body);
        let expected_op = op.response();

        for attempt in 0..=self.retries {
            if attempt > 0 {
                tracing::debug!(attempt, seq, group, cmd, "SMP: no response, retrying");
            }
            self.send(&packet)?;
            let deadline = Instant::now() + self.timeout;
            while let Some(rsp) = self.recv(deadline)? {
                let h = match Header::decode(&rsp) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(error = %e, "SMP: undecodable packet discarded");
                        continue;
                    }
                };
                if (h.seq, h.group, h.cmd, h.op) != (seq, group, cmd, expected_op) {
                    tracing::debug!(?h, seq, "SMP: unrelated response discarded");
                    continue;
                }
                let rsp_body = rsp.get(HEADER_LEN..).unwrap_or_default();
                if usize::from(h.len) != rsp_body.len() {
                    return Err(Error::Protocol(format!(
                        "response header announces {} body bytes, {} received",
                        h.len,
                        rsp_body.len()
                    )));
                }
                return Ok(rsp_body.to_vec());
            }
        }
        Err(Error::Timeout {
            attempts: self.retries.saturating_add(1),
            timeout: self.timeout,
        })
    }

    /// Sends `req` (CBOR-encoded) and decodes the response as `Rsp`. `{"err": {...}}` with a
    /// nonzero rc becomes [`Error::Group`], `{"rc": N != 0}` becomes [`Error::Mgmt`] (or
    /// [`Error::UnknownRc`] for codes outside the known tables); a body that is not the
    /// expected shape is an [`Error::Protocol`].
    pub fn call<Req: Serialize, Rsp: DeserializeOwned>(
        &mut self,
        op: Op,
        group: u16,
        cmd: u8,
        req: &Req,
    ) -> Result<Rsp, Error> {
        let body = self.request(op, group, cmd, &encode_body(req))?;
        match response_error(&body) {
            Ok(None) => {}
            Ok(Some(ResponseError::Group { group, rc })) => {
                return Err(match GroupRc::from_code(rc) {
                    Some(rc) => Error::Group { group, rc },
                    None => Error::UnknownRc {
                        group: Some(group),
                        rc: i64::from(rc),
                    },
                })
            }
            Ok(Some(ResponseError::Mgmt(rc))) => {
                return Err(match u16::try_from(rc).ok().and_then(MgmtErr::from_code) {
                    Some(e) => Error::Mgmt(e),
                    None => Error::UnknownRc { group: None, rc },
                })
            }
            Err(_) => {
                return Err(Error::Protocol(format!(
                    "group {group} command {cmd}: response body is not a CBOR map"
                )))
            }
        }
        decode_body(&body).map_err(|_| {
            Error::Protocol(format!(
                "group {group} command {cmd}: unexpected response body {}",
                hex(&body)
            ))
        })
    }

    /// Keys group, generate: `id` `None` = auto-assign, `private` `None` = random key.
    pub fn key_generate(
        &mut self,
        id: Option<u32>,
        private: Option<&[u8]>,
        replace: bool,
    ) -> Result<KeyGenerateRsp, Error> {
        let req = KeyGenerateReq {
            id: id.map(u64::from),
            private: private.map(<[u8]>::to_vec),
            replace: replace.then_some(true),
        };
        self.call(Op::Write, group::KEYS, cmd::KEYS_GENERATE, &req)
    }

    /// Keys group, public key of `id`.
    pub fn key_public(&mut self, id: u32) -> Result<KeyPublicRsp, Error> {
        let req = KeyIdReq { id: u64::from(id) };
        self.call(Op::Read, group::KEYS, cmd::KEYS_PUBLIC, &req)
    }

    /// Keys group, the public key of the device's key-agreement key
    /// (docs/remote.md; created on the device at the first read).
    pub fn kak_public(&mut self) -> Result<Vec<u8>, Error> {
        let rsp: KeyPublicRsp = self.call(Op::Read, group::KEYS, cmd::KEYS_KAK, &tfmprov_smp::EmptyRsp {})?;
        Ok(rsp.public)
    }

    /// Keys group, the device's audit log of key operations from sequence
    /// number `from` on (`None`: the oldest it holds), decoded and checked.
    pub fn key_audit(&mut self, from: Option<u64>) -> Result<tfmprov_smp::AuditLog, Error> {
        let rsp: tfmprov_smp::AuditRsp =
            self.call(Op::Read, group::KEYS, cmd::KEYS_AUDIT, &tfmprov_smp::AuditReq { from })?;
        tfmprov_smp::AuditLog::decode(&rsp.log)
            .map_err(|_| Error::Protocol(format!("keys audit: the log is not an AuditLog: {}", hex(&rsp.log))))
    }

    /// Keys group, whether a key exists at `id`.
    pub fn key_status(&mut self, id: u32) -> Result<bool, Error> {
        let req = KeyIdReq { id: u64::from(id) };
        let rsp: KeyStatusRsp = self.call(Op::Read, group::KEYS, cmd::KEYS_STATUS, &req)?;
        Ok(rsp.present)
    }

    /// Keys group, destroy the key `id` and its certificate.
    pub fn key_destroy(&mut self, id: u32) -> Result<(), Error> {
        let req = KeyIdReq { id: u64::from(id) };
        let _: EmptyRsp = self.call(Op::Write, group::KEYS, cmd::KEYS_DESTROY, &req)?;
        Ok(())
    }

    /// CSR group: a DER PKCS#10 request for key `id` with the given subject.
    pub fn csr_create(
        &mut self,
        id: u32,
        cn: &str,
        o: Option<&str>,
        ou: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        let req = CsrCreateReq {
            id: u64::from(id),
            cn: cn.to_string(),
            o: o.map(str::to_string),
            ou: ou.map(str::to_string),
        };
        let rsp: CsrCreateRsp = self.call(Op::Write, group::CSR, cmd::CSR_CREATE, &req)?;
        Ok(rsp.csr)
    }

    /// Certs group: store a DER certificate at `id`.
    pub fn cert_store(&mut self, id: u32, der: &[u8]) -> Result<(), Error> {
        let req = CertStoreReq {
            id: u64::from(id),
            cert: der.to_vec(),
        };
        let _: EmptyRsp = self.call(Op::Write, group::CERTS, cmd::CERTS_STORE, &req)?;
        Ok(())
    }

    /// Certs group: the DER certificate stored at `id`.
    pub fn cert_get(&mut self, id: u32) -> Result<Vec<u8>, Error> {
        let req = CertGetReq { id: u64::from(id) };
        let rsp: CertGetRsp = self.call(Op::Read, group::CERTS, cmd::CERTS_GET, &req)?;
        Ok(rsp.cert)
    }

    /// OS group echo (write).
    pub fn echo(&mut self, text: &str) -> Result<String, Error> {
        let req = EchoReq {
            d: text.to_string(),
        };
        let rsp: EchoRsp = self.call(Op::Write, group::OS, cmd::OS_ECHO, &req)?;
        Ok(rsp.r)
    }

    /// OS group MCUmgr parameters (buffer size and count).
    pub fn params(&mut self) -> Result<ParamsRsp, Error> {
        self.call(Op::Read, group::OS, cmd::OS_PARAMS, &EmptyRsp {})
    }

    fn send(&mut self, packet: &[u8]) -> Result<(), Error> {
        match &mut self.channel {
            Channel::Udp(socket) => loop {
                match socket.send(packet) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // ICMP port unreachable from an earlier datagram: the device may be
                    // restarting; the attempt will time out and be retried.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            },
            Channel::Serial(port) => port.send(packet),
        }
    }

    fn recv(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, Error> {
        match &mut self.channel {
            Channel::Udp(socket) => {
                let mut buf = vec![0u8; MAX_PACKET];
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    socket
                        .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            return Ok(Some(buf));
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::WouldBlock
                                    | ErrorKind::TimedOut
                                    | ErrorKind::Interrupted
                                    | ErrorKind::ConnectionRefused
                            ) =>
                        {
                            if e.kind() == ErrorKind::ConnectionRefused {
                                // Nothing listens (yet); wait out this attempt.
                                let left = deadline.saturating_duration_since(Instant::now());
                                std::thread::sleep(left.min(Duration::from_millis(50)));
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Channel::Serial(port) => port.recv(deadline),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes.iter().take(64) {
        let _ = write!(s, "{b:02x}");
    }
    if bytes.len() > 64 {
        s.push_str("...");
    }
    s
}
