//! Boot-time RNG check (DESIGN.md): TF-M under QEMU restarts the same random
//! stream after every reset. The device keeps the first random block of the
//! previous boot; if this boot draws the same block, the RNG is marked broken
//! and random key generation and session set-up are refused, while importing
//! known values and signing keep working.

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
}
