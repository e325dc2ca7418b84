//! SMP transports for the host: device-side servers (UDP, serial console on a
//! pseudo-terminal) used by the device simulator, and the provisioning [`Client`].
//!
//! * [`serve_udp`]: one SMP packet per UDP datagram (Zephyr's UDP transport, port 1337).
//! * [`serve_serial`] / [`serve_serial_ready`] / [`SerialDevice`]: a raw-mode PTY whose slave path is symlinked at a
//!   chosen path, speaking Zephyr's "SMP over console" framing ([`tfmprov_smp::serial`]).
//! * [`Client`]: SMP v2 requests with timeout and retries over a [`Link`], plus typed
//!   helpers for groups 64/65/66 and OS echo.
//!
//! The servers take the packet handler as `FnMut(&[u8]) -> Option<Vec<u8>>`, typically
//! `|p| tfmprov_smp::handle_packet(p, |h, b| dispatch(h, b))`.

mod client;
mod error;
mod serial;
mod udp;

pub use client::{Client, Link};
pub use error::Error;
pub use serial::{serve_serial, serve_serial_ready, SerialDevice};
pub use udp::{serve_udp, DEFAULT_UDP_PORT};

use std::time::Duration;

/// How often the servers look at their `stop` flag (at most this long between checks).
pub const STOP_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Largest SMP packet the servers and the client accept (header + 16-bit body length).
pub const MAX_PACKET: usize = tfmprov_smp::HEADER_LEN + u16::MAX as usize;
