//! The audit ring: the last [`CAPACITY`] key operations, in one ITS asset.
//!
//! Layout (little-endian): a header — `"TPA1"`, the number of entries held
//! (u16), the slot of the oldest (u16), the sequence number the next entry
//! gets (u64), a CRC-32 of those 16 bytes — then [`CAPACITY`] slots of
//! [`ENTRY_LEN`] bytes, each sealed with its own CRC-32. Sequence numbers
//! start at 1 and never repeat or go back: a reader can tell that entries
//! were dropped (the ring wrapped) by the gap before the oldest.
//!
//! A header that does not check makes the whole ring untrusted
//! ([`Error::Corrupted`]): nothing is read and nothing is appended (an
//! append would have to reset it, which would erase the evidence). An entry
//! that does not check is returned as corrupted, in its place, so the reader
//! sees where the damage is; the entries around it stay trusted.

use crate::{sealed_ok, seal, u16_at, u32_at, u64_at, uid, Error, Storage};

/// Entries the ring keeps.
pub const CAPACITY: usize = 64;
/// Bytes per entry: seq u64, op u8, reserved u8, result i32 (as the PSA
/// status or group code the caller got), key ID u32, reserved u16, CRC-32.
pub const ENTRY_LEN: usize = 8 + 1 + 1 + 4 + 4 + 2 + 4;

const MAGIC: &[u8; 4] = b"TPA1";
const HEADER_LEN: usize = 4 + 2 + 2 + 8 + 4;
/// Bytes of the stored ring (the scratch buffer of [`append_in`] and
/// [`read_in`]).
pub const LEN: usize = HEADER_LEN + CAPACITY * ENTRY_LEN;

/// One audit entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its sequence number (1, 2, …; assigned by the partition).
    pub seq: u64,
    /// The operation (the non-secure side's code: generate, import, …).
    pub op: u8,
    /// The key ID it was about.
    pub key_id: u32,
    /// Its result (0 success, else the error code the caller got).
    pub result: i32,
    /// The stored entry did not check: only its slot is known, nothing in
    /// it is to be trusted.
    pub corrupted: bool,
}

/// What [`read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRead {
    /// Entries written to the caller's slice.
    pub count: usize,
    /// The sequence number of the oldest entry the ring still holds (0 when
    /// empty): entries before it were dropped by the ring.
    pub oldest: u64,
    /// The sequence number the next entry will get.
    pub next: u64,
}

struct Header {
    len: usize,
    head: usize,
    next_seq: u64,
}

fn load(storage: &impl Storage, buf: &mut [u8; LEN]) -> Result<Option<Header>, Error> {
    let n = match storage.get(uid::AUDIT, buf)? {
        None => return Ok(None),
        Some(n) => n,
    };
    let bad = Error::Corrupted(uid::AUDIT);
    if n != LEN || &buf[..4] != MAGIC || !sealed_ok(&buf[..HEADER_LEN]) {
        return Err(bad);
    }
    let (len, head, next_seq) = (u16_at(buf, 4) as usize, u16_at(buf, 6) as usize, u64_at(buf, 8));
    if len > CAPACITY || head >= CAPACITY || next_seq < len as u64 + 1 {
        return Err(bad);
    }
    Ok(Some(Header { len, head, next_seq }))
}

fn entry_at(buf: &[u8; LEN], slot: usize) -> AuditEntry {
    let at = HEADER_LEN + slot * ENTRY_LEN;
    let rec = &buf[at..at + ENTRY_LEN];
    if !sealed_ok(rec) {
        return AuditEntry { corrupted: true, ..AuditEntry::default() };
    }
    AuditEntry {
        seq: u64_at(rec, 0),
        op: rec[8],
        result: u32_at(rec, 10) as i32,
        key_id: u32_at(rec, 14),
        corrupted: false,
    }
}

/// Appends an entry; its sequence number. Refused when the ring is
/// corrupted (see the module documentation).
// Not inlined: its buffer stays out of its callers' frames (the
// partition's stack is 4 KiB, tfm-partition/tfmprov/tfmprov_partition.yaml).
#[inline(never)]
pub fn append(storage: &mut impl Storage, op: u8, key_id: u32, result: i32) -> Result<u64, Error> {
    append_in(storage, &mut [0u8; LEN], op, key_id, result)
}

/// [`append`] with the caller's scratch buffer for the ring (the
/// non-secure side's is on its heap: its calls have 3 KiB of stack).
pub fn append_in(storage: &mut impl Storage, buf: &mut [u8; LEN], op: u8, key_id: u32, result: i32) -> Result<u64, Error> {
    let h = load(storage, buf)?.unwrap_or(Header { len: 0, head: 0, next_seq: 1 });
    let seq = h.next_seq;
    let next_seq = seq.checked_add(1).ok_or(Error::Overflow(0))?;
    // The slot after the newest; when full, that is the oldest, which goes.
    let slot = (h.head + h.len) % CAPACITY;
    let (len, head) = if h.len < CAPACITY { (h.len + 1, h.head) } else { (CAPACITY, (h.head + 1) % CAPACITY) };
    let at = HEADER_LEN + slot * ENTRY_LEN;
    let rec = &mut buf[at..at + ENTRY_LEN];
    rec.fill(0);
    rec[..8].copy_from_slice(&seq.to_le_bytes());
    rec[8] = op;
    rec[10..14].copy_from_slice(&(result as u32).to_le_bytes());
    rec[14..18].copy_from_slice(&key_id.to_le_bytes());
    seal(rec);
    buf[..4].copy_from_slice(MAGIC);
    buf[4..6].copy_from_slice(&(len as u16).to_le_bytes());
    buf[6..8].copy_from_slice(&(head as u16).to_le_bytes());
    buf[8..16].copy_from_slice(&next_seq.to_le_bytes());
    seal(&mut buf[..HEADER_LEN]);
    storage.set(uid::AUDIT, buf)?;
    Ok(seq)
}

/// The entries with sequence number `from` or later, oldest first, as many
/// as fit `out`. A corrupted entry takes its place with `corrupted` set
/// (its sequence number is the one its slot should hold).
// Not inlined: its buffer stays out of its callers' frames (the
// partition's stack is 4 KiB, tfm-partition/tfmprov/tfmprov_partition.yaml).
#[inline(never)]
pub fn read(storage: &impl Storage, from: u64, out: &mut [AuditEntry]) -> Result<AuditRead, Error> {
    read_in(storage, &mut [0u8; LEN], from, out)
}

/// [`read`] with the caller's scratch buffer for the ring.
pub fn read_in(storage: &impl Storage, buf: &mut [u8; LEN], from: u64, out: &mut [AuditEntry]) -> Result<AuditRead, Error> {
    let Some(h) = load(storage, buf)? else {
        return Ok(AuditRead { count: 0, oldest: 0, next: 1 });
    };
    let oldest = h.next_seq - h.len as u64;
    let skip = from.saturating_sub(oldest).min(h.len as u64) as usize;
    let mut count = 0;
    for (i, slot_out) in (skip..h.len).zip(out.iter_mut()) {
        let expected = oldest + i as u64;
        let mut e = entry_at(buf, (h.head + i) % CAPACITY);
        // An entry that checks but sits out of order is damage too.
        if e.corrupted || e.seq != expected {
            e = AuditEntry { seq: expected, corrupted: true, ..AuditEntry::default() };
        }
        *slot_out = e;
        count += 1;
    }
    Ok(AuditRead { count, oldest: if h.len == 0 { 0 } else { oldest }, next: h.next_seq })
}
