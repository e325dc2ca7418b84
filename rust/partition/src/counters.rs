//! Monotonic counters by ID, in one ITS asset: `"TPC1"`, the number of
//! counters (u32), then per counter its ID (u32) and value (u64), then a
//! CRC-32 of all that (little-endian throughout).
//!
//! Why one asset for all: ITS assets are few (24 on MPS2-AN521, shared with
//! the non-secure side's keys and certificates), and an increment rewrites
//! the asset anyway. A counter never incremented reads 0; the table never
//! shrinks.

use crate::{sealed_ok, seal, u32_at, u64_at, uid, Error, Storage};

/// The most counters the table holds.
pub const MAX_COUNTERS: usize = 16;

/// Bytes of the stored table with `n` counters.
pub const fn stored_len(n: usize) -> usize {
    4 + 4 + n * ENTRY + 4
}

const MAGIC: &[u8; 4] = b"TPC1";
const ENTRY: usize = 12;
const MAX_LEN: usize = 4 + 4 + MAX_COUNTERS * ENTRY + 4;

/// The table as stored: (id, value) pairs, `len` of them.
struct Table {
    entries: [(u32, u64); MAX_COUNTERS],
    len: usize,
}

fn load(storage: &impl Storage) -> Result<Table, Error> {
    let mut buf = [0u8; MAX_LEN];
    let mut table = Table { entries: [(0, 0); MAX_COUNTERS], len: 0 };
    let n = match storage.get(uid::COUNTERS, &mut buf)? {
        None => return Ok(table),
        Some(n) => n,
    };
    let bad = Error::Corrupted(uid::COUNTERS);
    let rec = buf.get(..n).ok_or(bad)?;
    if rec.len() < 12 || &rec[..4] != MAGIC || !sealed_ok(rec) {
        return Err(bad);
    }
    let count = u32_at(rec, 4) as usize;
    if count > MAX_COUNTERS || rec.len() != 4 + 4 + count * ENTRY + 4 {
        return Err(bad);
    }
    for i in 0..count {
        let at = 8 + i * ENTRY;
        table.entries[i] = (u32_at(rec, at), u64_at(rec, at + 4));
    }
    table.len = count;
    Ok(table)
}

fn store(storage: &mut impl Storage, table: &Table) -> Result<(), Error> {
    let mut buf = [0u8; MAX_LEN];
    let len = 4 + 4 + table.len * ENTRY + 4;
    buf[..4].copy_from_slice(MAGIC);
    buf[4..8].copy_from_slice(&(table.len as u32).to_le_bytes());
    for (i, (id, value)) in table.entries[..table.len].iter().enumerate() {
        let at = 8 + i * ENTRY;
        buf[at..at + 4].copy_from_slice(&id.to_le_bytes());
        buf[at + 4..at + 12].copy_from_slice(&value.to_le_bytes());
    }
    seal(&mut buf[..len]);
    storage.set(uid::COUNTERS, &buf[..len])
}

/// Counter `id`: 0 if it was never incremented.
// Not inlined: its buffer stays out of its callers' frames (the
// partition's stack is 4 KiB, tfm-partition/tfmprov/tfmprov_partition.yaml).
#[inline(never)]
pub fn read(storage: &impl Storage, id: u32) -> Result<u64, Error> {
    let table = load(storage)?;
    Ok(table.entries[..table.len].iter().find(|(i, _)| *i == id).map_or(0, |(_, v)| *v))
}

/// Increments counter `id` and returns its new value; at `u64::MAX` it
/// fails with [`Error::Overflow`] and stays. The new value is stored before
/// it is returned: a caller never uses a value that a reset could hand out
/// again.
pub fn increment(storage: &mut impl Storage, id: u32) -> Result<u64, Error> {
    update(storage, id, |v| v.checked_add(1).ok_or(Error::Overflow(id)))
}

/// Raises counter `id` to at least `at_least` and returns its value (the
/// larger of the two; stored only if it changed). Never lowers a counter:
/// a request below the stored value answers the stored value. This is how
/// the non-secure side reserves a block of sequence numbers (the counter
/// is the end of the last block) and carries over the values it kept
/// before the partition existed; a compromised caller can only move a
/// counter forward.
pub fn advance(storage: &mut impl Storage, id: u32, at_least: u64) -> Result<u64, Error> {
    update(storage, id, |v| Ok(v.max(at_least)))
}

/// Sets counter `id` (0 if absent) to `next(current)`, storing the table
/// before the value is returned; an unchanged value writes nothing, and a
/// counter still at 0 takes no slot in the table.
// Not inlined: its buffer stays out of its callers' frames (the
// partition's stack is 4 KiB, tfm-partition/tfmprov/tfmprov_partition.yaml).
#[inline(never)]
fn update(storage: &mut impl Storage, id: u32, next: impl FnOnce(u64) -> Result<u64, Error>) -> Result<u64, Error> {
    let mut table = load(storage)?;
    let at = table.entries[..table.len].iter().position(|(i, _)| *i == id);
    let current = at.map_or(0, |k| table.entries[k].1);
    let new = next(current)?;
    if new == current {
        return Ok(current);
    }
    match at {
        Some(k) => table.entries[k].1 = new,
        None => {
            *table.entries.get_mut(table.len).ok_or(Error::TableFull)? = (id, new);
            table.len += 1;
        }
    }
    store(storage, &table)?;
    Ok(new)
}
