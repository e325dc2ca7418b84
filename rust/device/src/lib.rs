//! The provisioning device: everything the firmware decides, in Rust, so the
//! host tests reach it. The Zephyr C glue passes raw bytes in and out; the
//! host simulator runs this same crate against Mbed TLS's PSA.
//!
//! - [`Device`] owns the one [`Psa`] handle and serves SMP groups 64/65/66
//!   ([`Device::handle_command`], [`Device::handle_packet`]);
//! - [`csr`] builds PKCS#10 requests signed through PSA;
//! - [`certs`] keeps certificates in their DESIGN.md slots;
//! - [`factory`] provisions the seed's sample set;
//! - [`shell`] parses the `prov ...` shell commands;
//! - [`telemetry`] builds the signed / session / sealed MQTT messages.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod certs;
pub mod csr;
mod dispatch;
pub mod factory;
pub mod shell;
pub mod telemetry;

#[cfg(test)]
mod tests;

pub use dispatch::Response;
pub use tfmprov_psa as psa;

use alloc::string::String;
use tfmprov_psa::rng::RngHealth;
use tfmprov_psa::Psa;
use tfmprov_smp::GroupRc;

/// Everything a device operation can refuse, each with its DESIGN.md group
/// return code ([`Error::group_rc`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A PSA-layer failure (ID out of range, not found, exists, storage, RNG, ...).
    Psa(tfmprov_psa::Error),
    /// An argument is malformed.
    InvalidArgument(&'static str),
    /// The certificate's public key is not the key it is stored for.
    Mismatch,
    /// More than 4096 bytes of certificate.
    TooLarge,
    /// DER encoding or decoding failed.
    Der(der::Error),
    /// A COSE message could not be built.
    Cose(&'static str),
    /// A sealed message needs a session: send a session message first.
    NoSession,
}

impl Error {
    /// The group return code of DESIGN.md for this error.
    pub fn group_rc(&self) -> GroupRc {
        use tfmprov_psa::Error as P;
        match self {
            Error::Psa(P::InvalidId(_)) | Error::Psa(P::InvalidArgument(_)) | Error::InvalidArgument(_) => {
                GroupRc::InvalidArgument
            }
            Error::Psa(P::NotFound(_)) => GroupRc::NotFound,
            Error::Psa(P::Exists(_)) => GroupRc::Exists,
            Error::Psa(P::StorageFull) => GroupRc::StorageFull,
            Error::Psa(P::RngBroken) | Error::Psa(P::Psa(_)) | Error::Cose(_) => GroupRc::CryptoFailure,
            Error::Psa(P::TooLarge(_)) | Error::TooLarge => GroupRc::TooLarge,
            Error::Psa(P::Busy) => GroupRc::Locked,
            Error::Mismatch => GroupRc::Mismatch,
            Error::Der(_) => GroupRc::InvalidArgument,
            Error::NoSession => GroupRc::NotFound,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Psa(e) => write!(f, "{e}"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Mismatch => write!(f, "the certificate's public key is not this key's"),
            Error::TooLarge => write!(f, "certificate larger than {} bytes", tfmprov_psa::MAX_BLOB_LEN),
            Error::Der(e) => write!(f, "DER: {e}"),
            Error::Cose(what) => write!(f, "COSE: {what}"),
            Error::NoSession => write!(f, "no active session"),
        }
    }
}

impl core::error::Error for Error {}

impl From<tfmprov_psa::Error> for Error {
    fn from(e: tfmprov_psa::Error) -> Self {
        Error::Psa(e)
    }
}

impl From<der::pem::Error> for Error {
    fn from(_: der::pem::Error) -> Self {
        Error::InvalidArgument("PEM encoding failed")
    }
}

impl From<der::Error> for Error {
    fn from(e: der::Error) -> Self {
        Error::Der(e)
    }
}

/// The device: PSA plus the little state the firmware keeps between calls.
pub struct Device {
    psa: Psa,
    device_id: String,
    rng: RngHealth,
    telemetry: telemetry::State,
}

impl Device {
    /// Boots the device: PSA init, the boot RNG check (DESIGN.md), and the
    /// telemetry counters. A repeating RNG does not fail the boot: it is
    /// reported by [`Device::rng_health`] and refuses random keys later.
    pub fn boot(device_id: &str) -> Result<Device, Error> {
        if !csr::valid_device_id(device_id) {
            return Err(Error::InvalidArgument("device id must match [A-Za-z0-9._-]{1,64}"));
        }
        let mut psa = Psa::init()?;
        let rng = psa.boot_rng_check()?;
        let telemetry = telemetry::State::load(&mut psa)?;
        Ok(Device { psa, device_id: device_id.into(), rng, telemetry })
    }

    /// The boot RNG check's result.
    pub fn rng_health(&self) -> RngHealth {
        self.rng
    }

    /// The device id (CN of its certificate, MQTT topic component).
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Direct access to the PSA layer (host tools and tests).
    pub fn psa(&mut self) -> &mut Psa {
        &mut self.psa
    }

    /// Host only: shuts PSA down so that another Device can boot in this
    /// process (tests, simulator restarts).
    #[cfg(not(target_os = "none"))]
    pub fn shutdown(self) {
        self.psa.shutdown();
    }
}
