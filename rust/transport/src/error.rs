use std::path::PathBuf;
use std::time::Duration;

use tfmprov_smp::{GroupRc, MgmtErr};

/// Errors of the SMP transports and client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No matching response arrived within the timeout, on any attempt.
    #[error("no response from the device after {attempts} attempt(s) of {timeout:?} each")]
    Timeout {
        /// Number of times the request was sent.
        attempts: u32,
        /// Time waited after each send.
        timeout: Duration,
    },
    /// An operating-system I/O error (socket, PTY, file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The link path could not be used (e.g. something other than a symlink is there).
    #[error("{}: {reason}", path.display())]
    Link {
        /// The path concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The response does not follow the protocol (bad header, unexpected body).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request body does not fit an SMP packet.
    #[error("request body of {0} bytes exceeds the SMP maximum of 65535")]
    TooLarge(usize),
    /// The device answered with a group return code (SMP v2 `{"err": {...}}`).
    #[error("device returned group {group} error {} ({rc})", rc.code())]
    Group {
        /// Group that reported the error.
        group: u16,
        /// The return code.
        rc: GroupRc,
    },
    /// The device answered with a management error (`{"rc": N}`).
    #[error("device returned {0}")]
    Mgmt(MgmtErr),
    /// The device answered with a return code this client does not know.
    #[error("device returned unknown return code {rc}{}", group.map(|g| format!(" for group {g}")).unwrap_or_default())]
    UnknownRc {
        /// Group of a group error, `None` for `{"rc": N}`.
        group: Option<u16>,
        /// The raw code.
        rc: i64,
    },
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io(e.into())
    }
}
