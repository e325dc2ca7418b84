//! The seed's sample provisioning: one random key at an auto-assigned ID, one
//! known-value key at 0x00000002 and one at 0x00000003 (the one that gets a
//! certificate from the intermediate CA, a 2-level chain).
//!
//! It is idempotent: keys already present are kept, so running it again after
//! a reset neither fails nor piles up keys.

use crate::{Device, Error};
use tfmprov_psa::ids::{DeviceKeyId, AUTO_ASSIGN_MIN};
use tfmprov_psa::{KeyOrigin, PublicKey};

/// ID of the first known-value sample key.
pub const SAMPLE_KEY_ID_2: u32 = 0x0000_0002;
/// ID of the known-value sample key that is enrolled into the 2-level chain.
pub const SAMPLE_KEY_ID_3: u32 = 0x0000_0003;

/// Sample-only known values: SHA-256("tfmprov sample key 0x0000000N"). They
/// are public (they are in this source file); a real factory passes its own
/// values over SMP (`keys generate` with `priv`).
pub const SAMPLE_VALUE_2: [u8; 32] = [
    0x93, 0x76, 0x62, 0xef, 0xe4, 0x25, 0x41, 0xb6, 0x18, 0x7e, 0x4d, 0xa9, 0xb0, 0x03, 0x86, 0xb4,
    0xd7, 0x56, 0xe3, 0x37, 0xa0, 0x05, 0xd3, 0xf8, 0x1f, 0x0d, 0x99, 0x37, 0x1d, 0x6b, 0xed, 0xa0,
];
/// See [`SAMPLE_VALUE_2`].
pub const SAMPLE_VALUE_3: [u8; 32] = [
    0x93, 0x39, 0xf7, 0x4e, 0xd5, 0xb0, 0xca, 0x3a, 0xc8, 0x3c, 0x24, 0x6a, 0xde, 0x01, 0x7b, 0x96,
    0xe2, 0x50, 0x92, 0x90, 0x2d, 0x68, 0xb0, 0x46, 0xf6, 0x55, 0xd8, 0xcf, 0x7d, 0x64, 0x1e, 0x00,
];

/// One key of the sample set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleKey {
    /// Its ID.
    pub id: DeviceKeyId,
    /// Its public key.
    pub public: PublicKey,
    /// Whether this run created it (false: it was already there).
    pub created: bool,
}

/// What [`provision_sample_set`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleSet {
    /// The random key at an auto-assigned ID.
    pub random: SampleKey,
    /// The known-value key at 0x00000002.
    pub known: SampleKey,
    /// The known-value key at 0x00000003 (to be enrolled).
    pub chained: SampleKey,
}

fn ensure(dev: &mut Device, id: DeviceKeyId, origin: KeyOrigin<'_>) -> Result<SampleKey, Error> {
    let created = !dev.psa.key_present(id)?;
    if created {
        dev.create_key(Some(id), origin, false)?;
    }
    Ok(SampleKey { id, public: dev.psa.public_key(id)?, created })
}

/// Provisions the sample set with the given known values; the keys it
/// creates go through [`Device::create_key`], so they are in the audit log.
pub fn provision_sample_set(dev: &mut Device, value_2: &[u8; 32], value_3: &[u8; 32]) -> Result<SampleSet, Error> {
    // The random key is the first auto-assigned one; if it exists it is kept.
    let first_auto = DeviceKeyId::new(AUTO_ASSIGN_MIN.into())?;
    let random = if dev.psa.key_present(first_auto)? {
        SampleKey { id: first_auto, public: dev.psa.public_key(first_auto)?, created: false }
    } else {
        let id = dev.create_key(None, KeyOrigin::Random, false)?;
        SampleKey { id, public: dev.psa.public_key(id)?, created: true }
    };
    let known = ensure(dev, DeviceKeyId::new(SAMPLE_KEY_ID_2.into())?, KeyOrigin::Known(value_2))?;
    let chained = ensure(dev, DeviceKeyId::new(SAMPLE_KEY_ID_3.into())?, KeyOrigin::Known(value_3))?;
    Ok(SampleSet { random, known, chained })
}
