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
//! - [`telemetry`] builds the signed / session / sealed MQTT messages;
//! - [`vault`] keeps the counters, the audit log of key operations and the
//!   boot RNG check in the secure partition, or in the non-secure fallback.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod certs;
pub mod csr;
mod dispatch;
pub mod factory;
pub mod remote;
pub mod shell;
pub mod telemetry;
pub mod text;
pub mod vault;

#[cfg(test)]
mod tests;

pub use dispatch::Response;
pub use tfmprov_psa as psa;

use alloc::string::String;
use tfmprov_psa::rng::RngHealth;
use tfmprov_psa::{Psa, Recovery};
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
    /// More certificate than one ITS asset holds
    /// ([`tfmprov_psa::MAX_BLOB_LEN`], from the TF-M configuration).
    TooLarge,
    /// DER encoding or decoding failed.
    Der(der::Error),
    /// A COSE message could not be built.
    Cose(&'static str),
    /// A sealed message needs a session: send a session message first.
    NoSession,
    /// The secure partition (or the fallback's audit storage) refused or
    /// failed ([`vault`]).
    Vault(tfmprov_partition::Error),
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
            Error::Vault(tfmprov_partition::Error::TableFull) => GroupRc::StorageFull,
            Error::Vault(_) => GroupRc::CryptoFailure,
        }
    }
}

impl Error {
    /// Appends the message for this error. The device's one source of error
    /// text (shell, log), written without `core::fmt`.
    pub fn describe(&self, t: &mut text::Text) {
        use tfmprov_psa::Error as P;
        match self {
            Error::Psa(P::InvalidId(id)) => {
                match u32::try_from(*id) {
                    Ok(id) => t.str("key id ").id(id),
                    Err(_) => t.str("key id above 32 bits"),
                };
                t.str(" is outside the range this operation accepts")
            }
            Error::Psa(P::NotFound(id)) => t.str("nothing is stored at id ").id(*id),
            Error::Psa(P::Exists(id)) => t.str("id ").id(*id).str(" is already in use (use replace)"),
            Error::Psa(P::InvalidArgument(what)) | Error::InvalidArgument(what) => t.str("invalid argument: ").str(what),
            Error::Psa(P::StorageFull) => t.str("persistent key storage is full"),
            Error::Psa(P::RngBroken) => t.str("the RNG repeated its output across boots: random keys are refused"),
            Error::Psa(P::TooLarge(_)) | Error::TooLarge => {
                t.str("certificate larger than ").dec(tfmprov_psa::MAX_BLOB_LEN as u64).str(" bytes")
            }
            Error::Psa(P::Busy) => t.str("PSA is already in use by another handle"),
            Error::Psa(e @ P::Psa(_)) => {
                t.str("PSA call failed (status ").signed(i64::from(e.psa_status().unwrap_or(0))).str(")")
            }
            Error::Mismatch => t.str("the certificate's public key is not this key's"),
            Error::Der(_) => t.str("DER encoding failed"),
            Error::Cose(what) => t.str("COSE: ").str(what),
            Error::NoSession => t.str("no active session"),
            Error::Vault(e) => {
                use tfmprov_partition::Error as V;
                t.str("secure state: ");
                match e {
                    V::Corrupted(_) => t.str("a stored record is corrupted (not trusted)"),
                    V::Overflow(_) => t.str("a counter is at its maximum"),
                    V::TableFull => t.str("no room for another counter"),
                    V::BadAnswer => t.str("unexpected answer from the partition"),
                    other => t.str("refused or failed (status ").signed(other.psa_status().into()).str(")"),
                }
            }
        };
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut t = text::Text::new();
        self.describe(&mut t);
        f.write_str(t.as_str())
    }
}

impl core::error::Error for Error {}

impl From<tfmprov_psa::Error> for Error {
    fn from(e: tfmprov_psa::Error) -> Self {
        Error::Psa(e)
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
    recovery: Recovery,
    telemetry: telemetry::State,
    vault: vault::Vault,
    /// Key operations since boot whose audit entry could not be written
    /// (reported with the log, see [`Device::audit_log`]).
    audit_missed: u32,
}

impl Device {
    /// Boots the device without a secure partition ([`vault::Vault::NonSecure`]).
    #[cfg(feature = "nonsecure-vault")]
    pub fn boot(device_id: &str) -> Result<Device, Error> {
        Device::boot_with(device_id, vault::Vault::NonSecure)
    }

    /// Boots the device: PSA init, the boot RNG check (DESIGN.md), and the
    /// telemetry counters, kept in `vault`. A repeating RNG does not fail
    /// the boot: it is reported by [`Device::rng_health`] and refuses
    /// random keys later.
    pub fn boot_with(device_id: &str, mut vault: vault::Vault) -> Result<Device, Error> {
        if !csr::valid_device_id(device_id) {
            return Err(Error::InvalidArgument("device id must match [A-Za-z0-9._-]{1,64}"));
        }
        #[cfg(not(target_os = "none"))]
        vault.model_its();
        let mut psa = Psa::init()?;
        // First: an interrupted store must be finished before anything reads
        // a certificate or a state record.
        let recovery = psa.recover_blob_store()?;
        let rng = vault.boot_rng(&mut psa)?;
        let telemetry = telemetry::State::load(&mut psa, &mut vault)?;
        Ok(Device { psa, device_id: device_id.into(), rng, recovery, telemetry, vault, audit_missed: 0 })
    }

    /// The boot RNG check's result.
    pub fn rng_health(&self) -> RngHealth {
        self.rng
    }

    /// The device id (CN of its certificate, MQTT topic component).
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Direct access to the PSA layer (host tools and tests). Whatever the
    /// caller does with it, the cached telemetry kid is recomputed next time.
    pub fn psa(&mut self) -> &mut Psa {
        self.forget_kid();
        &mut self.psa
    }

    /// What the boot's storage recovery did (an interrupted certificate or
    /// state write finished or rolled back; see `tfmprov_psa::Recovery`).
    pub fn storage_recovery(&self) -> Recovery {
        self.recovery
    }

    /// Host only: shuts PSA down so that another Device can boot in this
    /// process (tests, simulator restarts).
    #[cfg(not(target_os = "none"))]
    pub fn shutdown(self) {
        self.psa.shutdown();
    }
}
