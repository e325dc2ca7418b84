//! HTTPS for the servers' axum routers: [`TlsListener`] accepts TCP
//! connections, runs each TLS handshake in its own task (bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up no one), and
//! hands the finished streams to `axum::serve`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Time a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes finished but not yet taken by the server.
const QUEUE: usize = 64;

/// Who is at the other end of a TLS connection: its address, and the leaf
/// of the client certificate it authenticated with, if it sent one (the
/// server's configuration verified it: chain to its roots, validity). The
/// listener's address type, so that a router served with
/// `into_make_service_with_connect_info::<TlsPeer>()` finds it in every
/// request's extensions (`ConnectInfo<TlsPeer>`).
#[derive(Clone, Debug)]
pub struct TlsPeer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The client certificate (DER), if one was presented and verified.
    pub client_certificate: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> TlsPeer {
        stream.remote_addr().clone()
    }
}

/// An axum [`axum::serve::Listener`] that serves TLS on a TCP listener.
/// Dropping it stops accepting.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serves `config` on `tcp` (must be called inside a Tokio runtime).
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "HTTPS listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let client_certificate =
                                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
                            let _ = tx.send((tls, TlsPeer { addr: peer, client_certificate })).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "HTTPS: handshake refused"),
                        Err(_) => tracing::info!(%peer, "HTTPS: handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (only by abort, i.e. never while the
            // listener lives): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(TlsPeer { addr: self.local, client_certificate: None })
    }
}
