//! `tfmprov-partition`: what the provisioning secure partition does
//! (issue 15), as plain logic over the partition's Internal Trusted Storage.
//!
//! The non-secure image can be compromised or reflashed; what must not go
//! backwards or be rewritten by it lives in the secure processing
//! environment:
//!
//! - **Counters** ([`counters`]): monotonic 64-bit counters by ID (the
//!   session id, the message `seq`). Read and increment only; at the
//!   maximum an increment fails ([`Error::Overflow`]) instead of wrapping.
//! - **Audit ring** ([`audit`]): the last [`audit::CAPACITY`] key operations
//!   (operation, key ID, result, the partition's sequence number), oldest
//!   first. The non-secure side can append (the operation it just ran) and
//!   read; it cannot edit, remove or reorder an entry.
//! - **Boot RNG record** ([`rng`]): at each boot the partition draws a block
//!   from TF-M's RNG and compares it with the last boot's, as the
//!   non-secure check does (`rust/psa/src/rng.rs`), but where the
//!   non-secure side cannot rewrite the previous block.
//!
//! Each is one asset (the counters and the RNG record in ITS, the ring in
//! Protected Storage, which has its own flash area), rewritten whole by
//! `psa_its_set` / `psa_ps_set` (TF-M writes the new copy before it drops
//! the old one, so a reset leaves one or the other) and sealed with a CRC-32: a record that does not check is
//! reported ([`Error::Corrupted`]) and never trusted or silently reset (a
//! reset would be the rollback the partition exists to prevent).
//!
//! The requests come as `psa_call`s: [`wire`] defines the operations and
//! their fixed little-endian layouts, and [`Partition::dispatch`] serves
//! one. Storage and randomness are passed in ([`Storage`], a closure), so
//! the same code runs in the secure image (over `psa_its_*`) and in host
//! tests (over files). No heap, no panics on any input.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod counters;
pub mod rng;
pub mod wire;

pub use audit::{AuditEntry, AuditRead};
pub use rng::{RngHealth, RngRecord};

/// UIDs of the partition's assets. TF-M keys ITS and PS assets by the
/// owning client, so these never meet the non-secure side's UIDs. In the
/// secure image the audit ring is kept in Protected Storage and the others
/// in ITS (`rust/partition-sp`).
pub mod uid {
    /// The counter table.
    pub const COUNTERS: u64 = 0x7466_7000_0000_0001;
    /// The audit ring (in Protected Storage).
    pub const AUDIT: u64 = 0x7466_7000_0000_0002;
    /// The boot RNG record.
    pub const RNG: u64 = 0x7466_7000_0000_0003;
}

/// The partition's storage: `psa_its_*` (and `psa_ps_*` for the audit
/// ring) in the secure image, the non-secure Protected Storage for the
/// firmware's fallback ring, files in host tests.
pub trait Storage {
    /// Reads asset `uid` into `out`; its length, `Ok(None)` when absent.
    fn get(&self, uid: u64, out: &mut [u8]) -> Result<Option<usize>, Error>;
    /// Replaces asset `uid` with `data`, atomically (all or nothing).
    fn set(&mut self, uid: u64, data: &[u8]) -> Result<(), Error>;
}

/// Everything that can go wrong, with the PSA status the partition answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A stored record does not check (bad magic, length or CRC): reported,
    /// never trusted, never reset.
    Corrupted(u64),
    /// A counter is at its maximum: it stays there.
    Overflow(u32),
    /// No room for another counter ([`counters::MAX_COUNTERS`]).
    TableFull,
    /// A malformed request (length, operation, argument).
    InvalidArgument,
    /// The answer does not fit the caller's buffer.
    BufferTooSmall,
    /// The storage failed (the PSA status of `psa_its_*`).
    Storage(i32),
    /// The random generator failed (its PSA status).
    Rng(i32),
    /// The non-secure client's view only: an answer of the wrong length or
    /// content, so the partition is not the one the client was built for.
    BadAnswer,
}

impl Error {
    /// The PSA status for `psa_reply` (psa/error.h values).
    pub fn psa_status(self) -> i32 {
        match self {
            Error::Corrupted(_) => -152,          // PSA_ERROR_DATA_CORRUPT
            Error::Overflow(_) => -133,           // PSA_ERROR_NOT_PERMITTED
            Error::TableFull => -142,             // PSA_ERROR_INSUFFICIENT_STORAGE
            Error::InvalidArgument => -135,       // PSA_ERROR_INVALID_ARGUMENT
            Error::BufferTooSmall => -138,        // PSA_ERROR_BUFFER_TOO_SMALL
            Error::Storage(s) | Error::Rng(s) => s,
            Error::BadAnswer => -151, // PSA_ERROR_CORRUPTION_DETECTED
        }
    }

    /// The error a PSA status stands for (the non-secure client's view).
    pub fn from_psa_status(status: i32) -> Error {
        match status {
            -152 => Error::Corrupted(0),
            -133 => Error::Overflow(0),
            -142 => Error::TableFull,
            -135 => Error::InvalidArgument,
            -138 => Error::BufferTooSmall,
            s => Error::Storage(s),
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Corrupted(uid) => write!(f, "stored record {uid:#018x} is corrupted: not trusted"),
            Error::Overflow(id) => write!(f, "counter {id:#010x} is at its maximum"),
            Error::TableFull => write!(f, "no room for another counter"),
            Error::InvalidArgument => f.write_str("malformed request"),
            Error::BufferTooSmall => f.write_str("answer larger than the buffer"),
            Error::Storage(s) => write!(f, "ITS failed (PSA status {s})"),
            Error::Rng(s) => write!(f, "random generator failed (PSA status {s})"),
            Error::BadAnswer => f.write_str("unexpected answer from the secure partition"),
        }
    }
}

/// CRC-32 (IEEE 802.3, as zlib's), computed bit by bit.
const CRC32: crc::Crc<u32, crc::NoTable> = crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);

/// A record sealed with a CRC-32 of everything before it.
fn seal(buf: &mut [u8]) {
    let n = buf.len() - 4;
    let crc = CRC32.checksum(&buf[..n]);
    buf[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Whether a sealed record checks.
fn sealed_ok(buf: &[u8]) -> bool {
    match buf.len().checked_sub(4) {
        Some(n) => CRC32.checksum(&buf[..n]).to_le_bytes() == buf[n..],
        None => false,
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The partition: its storage and its random generator.
pub struct Partition<S, R> {
    storage: S,
    rng: R,
}

impl<S: Storage, R: FnMut(&mut [u8]) -> Result<(), i32>> Partition<S, R> {
    /// Over `storage`, drawing random bytes with `rng` (`psa_generate_random`).
    pub fn new(storage: S, rng: R) -> Self {
        Partition { storage, rng }
    }

    /// The storage (tests corrupt it through this).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Counter `id` (0 if never incremented).
    pub fn counter(&self, id: u32) -> Result<u64, Error> {
        counters::read(&self.storage, id)
    }

    /// Increments counter `id`; its new value.
    pub fn increment(&mut self, id: u32) -> Result<u64, Error> {
        counters::increment(&mut self.storage, id)
    }

    /// Raises counter `id` to at least `at_least`; its value
    /// ([`counters::advance`]: never lowered).
    pub fn advance(&mut self, id: u32, at_least: u64) -> Result<u64, Error> {
        counters::advance(&mut self.storage, id, at_least)
    }

    /// Appends an entry to the audit ring; its sequence number.
    pub fn audit_append(&mut self, op: u8, key_id: u32, result: i32) -> Result<u64, Error> {
        audit::append(&mut self.storage, op, key_id, result)
    }

    /// Entries of the audit ring from sequence number `from` on, oldest
    /// first, into `out`.
    pub fn audit_read(&self, from: u64, out: &mut [AuditEntry]) -> Result<AuditRead, Error> {
        audit::read(&self.storage, from, out)
    }

    /// The boot check: draws this boot's block, compares it with the last
    /// one, stores it. Run once, from the partition's init.
    pub fn boot_rng_check(&mut self) -> Result<RngRecord, Error> {
        rng::boot_check(&mut self.storage, &mut self.rng)
    }

    /// The record of the last boot check.
    pub fn rng_record(&self) -> Result<RngRecord, Error> {
        rng::record(&self.storage)
    }

    /// Serves one `psa_call`: operation `op` (its `type`), request `input`,
    /// answer written to `output`; the answer's length. See [`wire`].
    pub fn dispatch(&mut self, op: i32, input: &[u8], output: &mut [u8]) -> Result<usize, Error> {
        wire::dispatch(self, op, input, output)
    }
}

/// An in-memory [`Storage`] for tests and fuzzing (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    extern crate std;
    use std::collections::HashMap;
    use std::vec::Vec;

    use crate::{Error, Storage};

    /// Assets by UID; `psa_its_get` into a buffer too small is the PSA
    /// status of `psa_its_get` (buffer too small).
    #[derive(Default)]
    pub struct MemIts(pub HashMap<u64, Vec<u8>>);

    impl Storage for MemIts {
        fn get(&self, uid: u64, out: &mut [u8]) -> Result<Option<usize>, Error> {
            match self.0.get(&uid) {
                None => Ok(None),
                Some(d) => {
                    out.get_mut(..d.len()).ok_or(Error::Storage(-138))?.copy_from_slice(d);
                    Ok(Some(d.len()))
                }
            }
        }

        fn set(&mut self, uid: u64, data: &[u8]) -> Result<(), Error> {
            self.0.insert(uid, data.to_vec());
            Ok(())
        }
    }
}

/// A file-backed [`Storage`] (feature `host`): the partition's tests, and
/// the host simulator's partition (`tfmprov sim`), which keeps its assets
/// next to the device's files.
#[cfg(any(test, feature = "host"))]
pub mod host {
    extern crate std;
    use std::path::{Path, PathBuf};

    use crate::{Error, Storage};

    /// One file per asset, named by its UID in hex, replaced by rename as
    /// `psa_its_set` replaces an asset (the old or the new one, never a
    /// mix). `fail_sets` makes the next stores fail, as a reset in the
    /// middle of `psa_its_set` does (the old asset stays).
    pub struct FileIts {
        dir: PathBuf,
        /// Stores still to fail (tests).
        pub fail_sets: usize,
    }

    impl FileIts {
        /// Assets in `dir` (which must exist).
        pub fn new(dir: &Path) -> FileIts {
            FileIts { dir: dir.to_path_buf(), fail_sets: 0 }
        }

        fn path(&self, uid: u64) -> PathBuf {
            self.dir.join(std::format!("{uid:016x}"))
        }
    }

    impl Storage for FileIts {
        fn get(&self, uid: u64, out: &mut [u8]) -> Result<Option<usize>, Error> {
            match std::fs::read(self.path(uid)) {
                Ok(data) => {
                    // psa_its_get of an asset larger than the buffer: an error.
                    let dst = out.get_mut(..data.len()).ok_or(Error::Storage(-138))?;
                    dst.copy_from_slice(&data);
                    Ok(Some(data.len()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(_) => Err(Error::Storage(-146)),
            }
        }

        fn set(&mut self, uid: u64, data: &[u8]) -> Result<(), Error> {
            if self.fail_sets > 0 {
                self.fail_sets -= 1;
                return Err(Error::Storage(-146)); // PSA_ERROR_STORAGE_FAILURE
            }
            let tmp = self.dir.join("tmp");
            std::fs::write(&tmp, data).map_err(|_| Error::Storage(-146))?;
            std::fs::rename(&tmp, self.path(uid)).map_err(|_| Error::Storage(-146))
        }
    }
}

#[cfg(test)]
mod tests;
