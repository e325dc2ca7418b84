//! The boot RNG record: at each boot the partition draws [`BLOCK_LEN`]
//! bytes from TF-M's RNG and compares them with the previous boot's block
//! (the same check as the non-secure side's, `rust/psa/src/rng.rs`, which
//! says what it catches and what it cannot). Kept in the partition's ITS,
//! the previous block cannot be rewritten by the non-secure image to hide a
//! repeating stream.
//!
//! Layout: `"TPR1"`, boots checked (u64), the last result (u8), three
//! reserved bytes, the block, a CRC-32.

use crate::{sealed_ok, seal, u64_at, uid, Error, Storage};

/// Bytes drawn and compared at each boot.
pub const BLOCK_LEN: usize = 32;

const MAGIC: &[u8; 4] = b"TPR1";
const LEN: usize = 4 + 8 + 4 + BLOCK_LEN + 4;
/// Bytes of the stored record.
pub const STORED_LEN: usize = LEN;

/// The outcome of a boot check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RngHealth {
    /// No previous block to compare with.
    FirstBoot,
    /// This boot's block differs from the previous one.
    Ok,
    /// This boot's block equals the previous one: the stream repeats.
    Repeating,
}

impl RngHealth {
    /// Its code in the record and on the wire.
    pub fn code(self) -> u8 {
        match self {
            RngHealth::FirstBoot => 0,
            RngHealth::Ok => 1,
            RngHealth::Repeating => 2,
        }
    }

    /// The health of a code.
    pub fn from_code(c: u8) -> Option<RngHealth> {
        match c {
            0 => Some(RngHealth::FirstBoot),
            1 => Some(RngHealth::Ok),
            2 => Some(RngHealth::Repeating),
            _ => None,
        }
    }
}

/// The last boot check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngRecord {
    /// Boots checked so far (this one included).
    pub boots: u64,
    /// What the last check found.
    pub health: RngHealth,
}

fn load(storage: &impl Storage) -> Result<Option<(RngRecord, [u8; BLOCK_LEN])>, Error> {
    let mut buf = [0u8; LEN];
    let n = match storage.get(uid::RNG, &mut buf)? {
        None => return Ok(None),
        Some(n) => n,
    };
    let bad = Error::Corrupted(uid::RNG);
    if n != LEN || &buf[..4] != MAGIC || !sealed_ok(&buf) {
        return Err(bad);
    }
    let health = RngHealth::from_code(buf[12]).ok_or(bad)?;
    let mut block = [0u8; BLOCK_LEN];
    block.copy_from_slice(&buf[16..16 + BLOCK_LEN]);
    Ok(Some((RngRecord { boots: u64_at(&buf, 4), health }, block)))
}

/// The boot check (once per boot, from the partition's init): draws a
/// block with `draw`, compares, stores the new record. A corrupted record
/// is reported and left as it is (the check cannot be trusted, and the
/// damage stays visible).
// Not inlined: its buffer stays out of its callers' frames (the
// partition's stack is 4 KiB, tfm-partition/tfmprov/tfmprov_partition.yaml).
#[inline(never)]
pub fn boot_check(
    storage: &mut impl Storage,
    draw: &mut impl FnMut(&mut [u8]) -> Result<(), i32>,
) -> Result<RngRecord, Error> {
    let previous = load(storage)?;
    let mut block = [0u8; BLOCK_LEN];
    draw(&mut block).map_err(Error::Rng)?;
    let (boots, health) = match previous {
        None => (1, RngHealth::FirstBoot),
        Some((r, prev)) if prev == block => (r.boots.saturating_add(1), RngHealth::Repeating),
        Some((r, _)) => (r.boots.saturating_add(1), RngHealth::Ok),
    };
    let mut buf = [0u8; LEN];
    buf[..4].copy_from_slice(MAGIC);
    buf[4..12].copy_from_slice(&boots.to_le_bytes());
    buf[12] = health.code();
    buf[16..16 + BLOCK_LEN].copy_from_slice(&block);
    seal(&mut buf);
    storage.set(uid::RNG, &buf)?;
    Ok(RngRecord { boots, health })
}

/// The last boot check's record ([`Error::InvalidArgument`] before the first).
// Not inlined: its buffer stays out of its callers' frames (the
// partition's stack is 4 KiB, tfm-partition/tfmprov/tfmprov_partition.yaml).
#[inline(never)]
pub fn record(storage: &impl Storage) -> Result<RngRecord, Error> {
    load(storage)?.map(|(r, _)| r).ok_or(Error::InvalidArgument)
}
