//! Boot-time RNG check (DESIGN.md): the device keeps the first random block
//! of the previous boot; if this boot draws the same block, the RNG is
//! marked broken and random key generation and session set-up are refused,
//! while importing known values and signing keep working.
//!
//! What it catches, and what it cannot. On TF-M 2.2 the crypto service's
//! DRBG is seeded from the platform's entropy source and, where there is
//! none (MPS2-AN521 under QEMU), from an NV seed: an ITS file that TF-M
//! rewrites at every boot. So a reset continues the stream (measured under
//! QEMU: every boot's block differed), and the check catches a device whose
//! stream restarts while its storage persists: an NV seed that is not
//! written back, an entropy source stuck at a constant, a secure image that
//! lost its seed update. It cannot catch a repeat across storage that starts
//! empty each time (a fresh emulator, or two devices flashed from the same
//! seed image): there is no previous block to compare with, and those
//! streams were seen to be identical. That is why every signature is
//! deterministic (RFC 6979) whatever the check says, and why random keys on
//! such targets must not be trusted to be unique: production devices need a
//! real entropy source (the nRF5340's CryptoCell RNG) or a per-device seed.

use crate::blobs::StateId;
use crate::{Error, Psa};

/// Size of the block compared across boots.
pub const RNG_BLOCK_LEN: usize = 32;

/// The outcome of the boot check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RngHealth {
    /// First boot, nothing to compare with yet.
    FirstBoot,
    /// This boot's block differs from the previous one.
    Ok,
    /// This boot's block equals the previous boot's: the stream repeats.
    Repeating,
}

impl Psa {
    /// Runs the boot RNG check with PSA's own random generator.
    pub fn boot_rng_check(&mut self) -> Result<RngHealth, Error> {
        self.boot_rng_check_with(|block| {
            psa_crypto::operations::other::generate_random(block).map_err(Error::from)
        })
    }

    /// Runs the boot RNG check drawing the block with `draw` (tests pass a
    /// repeating source here).
    pub fn boot_rng_check_with(
        &mut self,
        draw: impl FnOnce(&mut [u8; RNG_BLOCK_LEN]) -> Result<(), Error>,
    ) -> Result<RngHealth, Error> {
        let mut block = [0u8; RNG_BLOCK_LEN];
        draw(&mut block)?;
        let previous = self.load_state(StateId::RngBlock)?;
        let health = match previous {
            None => RngHealth::FirstBoot,
            Some(prev) if prev.as_slice() == block.as_slice() => RngHealth::Repeating,
            Some(_) => RngHealth::Ok,
        };
        self.rng_broken = health == RngHealth::Repeating;
        if !self.rng_broken {
            // Keep this boot's block for the next boot's comparison. A
            // repeating block is already stored: nothing to write.
            self.store_state(StateId::RngBlock, &block)?;
        }
        Ok(health)
    }

    /// Takes the boot check's result from elsewhere: the secure partition
    /// runs the check where the non-secure side cannot rewrite the previous
    /// block (`tfmprov_device::vault`). A repeating stream refuses random
    /// keys and sessions here as after this crate's own check.
    pub fn adopt_rng_health(&mut self, health: RngHealth) {
        self.rng_broken = health == RngHealth::Repeating;
    }
}
