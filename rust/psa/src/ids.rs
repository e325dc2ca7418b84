//! The key-ID map of DESIGN.md, as types: a value of [`DeviceKeyId`],
//! [`CertSlot`] or [`PeerId`] is always inside its range, so nothing past the
//! constructor can truncate or wrap an ID into another range.

use crate::Error;

/// Lowest device private key ID.
pub const DEVICE_KEY_MIN: u32 = 0x0000_0001;
/// Highest device private key ID.
pub const DEVICE_KEY_MAX: u32 = 0x0FFF_FFFF;
/// Auto-assigned IDs: the lowest free ID at or above this one.
pub const AUTO_ASSIGN_MIN: u32 = 0x0001_0000;
/// The certificate of key K lives at K + CERT_OFFSET.
pub const CERT_OFFSET: u32 = 0x1000_0000;
/// Peer certificates (CA root, cloud certificate).
pub const PEER_MIN: u32 = 0x3F00_0000;
/// Highest peer certificate ID (and of the PSA user range).
pub const PEER_MAX: u32 = 0x3FFF_FFFF;
/// Peer ID where enrollment stores the CA root.
pub const PEER_CA_ROOT: u32 = PEER_MIN;
/// Peer ID where enrollment stores the cloud (aggregator) certificate.
pub const PEER_CLOUD: u32 = PEER_MIN + 1;
/// Peer ID where enrollment stores the intermediate CA certificate that
/// issued the cloud certificate (its chain is checked to the root).
pub const PEER_INTERMEDIATE: u32 = PEER_MIN + 2;
/// Peer ID where enrollment stores the MQTT broker's TLS certificate: its
/// chain is checked to the root like the cloud certificate's, and its key is
/// the one the device pins (the SHA-256 of its SubjectPublicKeyInfo).
pub const PEER_BROKER: u32 = PEER_MIN + 3;
/// Device state records (docs/ARCHITECTURE.md): not reachable over SMP.
pub const STATE_RNG_BLOCK: u32 = 0x3E00_0000;
/// Session id high-water mark.
pub const STATE_SESSION_ID: u32 = 0x3E00_0001;
/// Telemetry sequence-number reservation.
pub const STATE_SEQ: u32 = 0x3E00_0002;
/// Journal of an atomic blob store: the ID the staged value belongs to
/// (`blobs.rs`).
pub const STATE_BLOB_JOURNAL: u32 = 0x3E00_0003;
/// The staged value of an atomic blob store.
pub const STATE_BLOB_STAGING: u32 = 0x3E00_0004;
/// The device key-agreement key (docs/remote.md): a P-256 key pair with
/// usage DERIVE only, the static key remote commands are encrypted to. A key,
/// not a record, in the state range so that no SMP command reaches it.
pub const STATE_KAK: u32 = 0x3E00_0005;
/// The last remote command executed and its reply ([`crate::StateId::Remote`]).
pub const STATE_REMOTE: u32 = 0x3E00_0006;
/// The telemetry key chosen by a remote `use-key` (a key rotation): u32 BE
/// ([`crate::StateId::TelemetryKey`]).
pub const STATE_TELEMETRY_KEY: u32 = 0x3E00_0007;

/// A device private key ID (0x00000001..=0x0FFFFFFF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceKeyId(u32);

impl DeviceKeyId {
    /// Accepts only IDs of the device-key range; anything else (0, certificate
    /// slots, peer IDs, state IDs, values above 32 bits) is [`Error::InvalidId`].
    pub fn new(raw: u64) -> Result<Self, Error> {
        match u32::try_from(raw) {
            Ok(id) if (DEVICE_KEY_MIN..=DEVICE_KEY_MAX).contains(&id) => Ok(Self(id)),
            _ => Err(Error::InvalidId(raw)),
        }
    }

    /// The raw PSA key ID.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Where this key's certificate is stored.
    pub fn cert_slot(self) -> CertSlot {
        // Cannot overflow: DEVICE_KEY_MAX + CERT_OFFSET = 0x1FFFFFFF.
        CertSlot(self.0 + CERT_OFFSET)
    }
}

/// A peer certificate ID (0x3F000000..=0x3FFFFFFF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerId(u32);

impl PeerId {
    /// Accepts only IDs of the peer range.
    pub fn new(raw: u64) -> Result<Self, Error> {
        match u32::try_from(raw) {
            Ok(id) if (PEER_MIN..=PEER_MAX).contains(&id) => Ok(Self(id)),
            _ => Err(Error::InvalidId(raw)),
        }
    }

    /// The raw PSA key ID.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where a certificate (a RAW_DATA blob) is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertSlot(u32);

impl CertSlot {
    /// The raw PSA key ID of the slot.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl From<PeerId> for CertSlot {
    fn from(p: PeerId) -> Self {
        CertSlot(p.0)
    }
}

/// What a certificate ID given over SMP (`certs store|get`) names: the
/// certificate of a device key, or a peer certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertTarget {
    /// The certificate of this device key (its public key must match).
    DeviceKey(DeviceKeyId),
    /// A peer certificate (stored without a key check).
    Peer(PeerId),
}

impl CertTarget {
    /// Classifies an ID; certificate slot IDs themselves and state IDs are refused.
    pub fn new(raw: u64) -> Result<Self, Error> {
        DeviceKeyId::new(raw)
            .map(CertTarget::DeviceKey)
            .or_else(|_| PeerId::new(raw).map(CertTarget::Peer))
            .map_err(|_| Error::InvalidId(raw))
    }

    /// The ID it was given as (the key's or the peer's).
    pub fn id(self) -> u32 {
        match self {
            CertTarget::DeviceKey(k) => k.get(),
            CertTarget::Peer(p) => p.get(),
        }
    }

    /// The slot the certificate lives in.
    pub fn slot(self) -> CertSlot {
        match self {
            CertTarget::DeviceKey(k) => k.cert_slot(),
            CertTarget::Peer(p) => p.into(),
        }
    }
}
