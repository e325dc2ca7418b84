use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, STOP_POLL_INTERVAL};

/// Zephyr's default SMP UDP port (`CONFIG_MCUMGR_TRANSPORT_UDP_PORT`).
pub const DEFAULT_UDP_PORT: u16 = 1337;

/// Device side: one SMP packet per UDP datagram (Zephyr's UDP transport; default port
/// [`DEFAULT_UDP_PORT`]). Each datagram is passed to `handler`; a returned packet is sent
/// back to the datagram's source.
///
/// Blocks; returns `Ok(())` when `stop` is set (checked every 100 ms) or `Err` on a socket
/// error. The socket is switched to blocking mode with a 100 ms read timeout. Failing to
/// send one response (e.g. the peer's port is gone) is logged and does not stop the server.
pub fn serve_udp(
    socket: UdpSocket,
    stop: &AtomicBool,
    mut handler: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<(), Error> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(STOP_POLL_INTERVAL))?;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                        | ErrorKind::ConnectionRefused
                        | ErrorKind::ConnectionReset
                ) =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        if let Some(rsp) = handler(datagram) {
            if let Err(e) = socket.send_to(&rsp, peer) {
                tracing::warn!(%peer, error = %e, "SMP/UDP: could not send response");
            }
        } else {
            tracing::debug!(%peer, len = n, "SMP/UDP: datagram not answered");
        }
    }
    Ok(())
}
