//! The partition's `psa_call` protocol: the operation is the call's `type`,
//! the request its first input vector, the answer its first output vector,
//! all fixed little-endian layouts (no parser to get wrong in the secure
//! image). A request of the wrong length is [`Error::InvalidArgument`].
//!
//! | op | request | answer |
//! | --- | --- | --- |
//! | [`COUNTER_READ`] 1 | id u32 | value u64 |
//! | [`COUNTER_INCREMENT`] 2 | id u32 | new value u64 |
//! | [`AUDIT_APPEND`] 3 | op u8, key ID u32, result i32 | seq u64 |
//! | [`AUDIT_READ`] 4 | from u64, max u16 | oldest u64, next u64, count u16, then count × [`ENTRY_LEN`] |
//! | [`RNG_RECORD`] 5 | — | boots u64, health u8 |
//! | [`COUNTER_ADVANCE`] 6 | id u32, at least u64 | value u64 (never lowered) |
//!
//! An entry on the wire: seq u64, op u8, flags u8 (bit 0: corrupted),
//! result i32, key ID u32.

use crate::audit::AuditEntry;
use crate::{u32_at, u64_at, u16_at, Error, Partition, Storage};

/// Reads a counter.
pub const COUNTER_READ: i32 = 1;
/// Increments a counter.
pub const COUNTER_INCREMENT: i32 = 2;
/// Appends to the audit ring.
pub const AUDIT_APPEND: i32 = 3;
/// Reads the audit ring.
pub const AUDIT_READ: i32 = 4;
/// Reads the boot RNG record.
pub const RNG_RECORD: i32 = 5;

/// Raises a counter to at least a value (never lowers it).
pub const COUNTER_ADVANCE: i32 = 6;

/// Bytes per audit entry on the wire.
pub const ENTRY_LEN: usize = 18;
/// The most entries one [`AUDIT_READ`] answers (the partition's stack holds
/// them; read again from the next sequence number for more).
pub const READ_MAX: usize = 16;
/// The largest answer: an [`AUDIT_READ`] of [`READ_MAX`] entries.
pub const MAX_ANSWER: usize = 8 + 8 + 2 + READ_MAX * ENTRY_LEN;

fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), Error> {
    out.get_mut(at..at + bytes.len()).ok_or(Error::BufferTooSmall)?.copy_from_slice(bytes);
    Ok(())
}

fn exact<const N: usize>(input: &[u8]) -> Result<&[u8; N], Error> {
    input.try_into().map_err(|_| Error::InvalidArgument)
}

/// Serves one call (see the table above); the answer's length.
pub fn dispatch<S: Storage, R: FnMut(&mut [u8]) -> Result<(), i32>>(
    p: &mut Partition<S, R>,
    op: i32,
    input: &[u8],
    out: &mut [u8],
) -> Result<usize, Error> {
    match op {
        COUNTER_READ | COUNTER_INCREMENT => {
            let id = u32::from_le_bytes(*exact::<4>(input)?);
            let v = if op == COUNTER_READ { p.counter(id)? } else { p.increment(id)? };
            put(out, 0, &v.to_le_bytes())?;
            Ok(8)
        }
        COUNTER_ADVANCE => {
            let req = exact::<12>(input)?;
            let v = p.advance(u32_at(req, 0), u64_at(req, 4))?;
            put(out, 0, &v.to_le_bytes())?;
            Ok(8)
        }
        AUDIT_APPEND => {
            let req = exact::<9>(input)?;
            let seq = p.audit_append(req[0], u32_at(req, 1), u32_at(req, 5) as i32)?;
            put(out, 0, &seq.to_le_bytes())?;
            Ok(8)
        }
        AUDIT_READ => audit_read(p, exact::<10>(input)?, out),
        RNG_RECORD => {
            if !input.is_empty() {
                return Err(Error::InvalidArgument);
            }
            let r = p.rng_record()?;
            put(out, 0, &r.boots.to_le_bytes())?;
            put(out, 8, &[r.health.code()])?;
            Ok(9)
        }
        _ => Err(Error::InvalidArgument),
    }
}

/// [`AUDIT_READ`]. Not inlined: its entries stay out of the other
/// operations' frames (the partition's stack is 4 KiB).
#[inline(never)]
fn audit_read<S: Storage, R: FnMut(&mut [u8]) -> Result<(), i32>>(
    p: &Partition<S, R>,
    req: &[u8; 10],
    out: &mut [u8],
) -> Result<usize, Error> {
    let max = (u16_at(req, 8) as usize).min(READ_MAX);
    let mut entries = [AuditEntry::default(); READ_MAX];
    let r = p.audit_read(u64_at(req, 0), &mut entries[..max])?;
    put(out, 0, &r.oldest.to_le_bytes())?;
    put(out, 8, &r.next.to_le_bytes())?;
    put(out, 16, &(r.count as u16).to_le_bytes())?;
    for (i, e) in entries[..r.count].iter().enumerate() {
        put(out, 18 + i * ENTRY_LEN, &encode_entry(e))?;
    }
    Ok(18 + r.count * ENTRY_LEN)
}

/// An entry as it goes on the wire.
pub fn encode_entry(e: &AuditEntry) -> [u8; ENTRY_LEN] {
    let mut b = [0u8; ENTRY_LEN];
    b[..8].copy_from_slice(&e.seq.to_le_bytes());
    b[8] = e.op;
    b[9] = u8::from(e.corrupted);
    b[10..14].copy_from_slice(&(e.result as u32).to_le_bytes());
    b[14..18].copy_from_slice(&e.key_id.to_le_bytes());
    b
}

/// An entry from the wire (the non-secure client's side).
pub fn decode_entry(b: &[u8; ENTRY_LEN]) -> AuditEntry {
    AuditEntry { seq: u64_at(b, 0), op: b[8], corrupted: b[9] & 1 != 0, result: u32_at(b, 10) as i32, key_id: u32_at(b, 14) }
}
