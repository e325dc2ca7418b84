//! The partition's logic over a file-backed ITS (one file per asset,
//! replaced by rename as `psa_its_set` replaces an asset): restarts are new
//! `Partition`s over the same directory.

extern crate std;

use std::vec::Vec;

use super::*;
use crate::audit::CAPACITY;
use crate::host::FileIts;

type Rng = std::boxed::Box<dyn FnMut(&mut [u8]) -> Result<(), i32>>;

/// A partition over `dir` whose RNG fills every block with `fill`.
fn boot(dir: &std::path::Path, fill: u8) -> Partition<FileIts, Rng> {
    let rng: Rng = std::boxed::Box::new(move |b: &mut [u8]| {
        b.fill(fill);
        Ok(())
    });
    Partition::new(FileIts::new(dir), rng)
}

fn flip(dir: &std::path::Path, uid: u64, at: usize) {
    let path = dir.join(std::format!("{uid:016x}"));
    let mut data = std::fs::read(&path).unwrap();
    data[at] ^= 0x01;
    std::fs::write(path, data).unwrap();
}

fn asset(dir: &std::path::Path, uid: u64) -> Vec<u8> {
    std::fs::read(dir.join(std::format!("{uid:016x}"))).unwrap()
}

#[test]
fn the_seal_is_the_ieee_crc32() {
    // zlib's crc32("123456789"), the standard check value.
    let mut rec = *b"123456789\0\0\0\0";
    seal(&mut rec);
    assert_eq!(u32_at(&rec, 9), 0xCBF4_3926);
    assert!(sealed_ok(&rec));
    rec[0] ^= 1;
    assert!(!sealed_ok(&rec));
    assert!(!sealed_ok(&[1, 2, 3]));
}

#[test]
fn counters_survive_a_restart_and_never_decrease() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    assert_eq!(p.counter(7).unwrap(), 0, "never incremented");
    assert_eq!((p.increment(7).unwrap(), p.increment(7).unwrap(), p.increment(7).unwrap()), (1, 2, 3));
    assert_eq!(p.increment(0xFFFF_FFFF).unwrap(), 1, "counters are independent");
    drop(p);
    let mut p = boot(dir.path(), 2);
    assert_eq!(p.counter(7).unwrap(), 3);
    assert_eq!(p.increment(7).unwrap(), 4);
    // A store that fails (a reset during psa_its_set) changes nothing: the
    // value handed out is never one a later increment gives again.
    p.storage_mut().fail_sets = 1;
    assert_eq!(p.increment(7), Err(Error::Storage(-146)));
    assert_eq!(p.counter(7).unwrap(), 4);
    assert_eq!(p.increment(7).unwrap(), 5);
}

#[test]
fn advance_raises_a_counter_never_lowers_it_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    assert_eq!(p.advance(1, 0).unwrap(), 0, "nothing to raise");
    assert_eq!(p.advance(1, 1000).unwrap(), 1000);
    assert_eq!(p.advance(1, 2000).unwrap(), 2000);
    assert_eq!(p.advance(1, 1500).unwrap(), 2000, "a lower request answers the stored value");
    assert_eq!(p.increment(1).unwrap(), 2001);
    drop(p);
    let mut p = boot(dir.path(), 2);
    assert_eq!(p.counter(1).unwrap(), 2001);
    p.storage_mut().fail_sets = 1;
    assert_eq!(p.advance(1, 3000), Err(Error::Storage(-146)));
    assert_eq!(p.counter(1).unwrap(), 2001, "a failed store hands out nothing");
    let mut out = [0u8; 8];
    let mut req = [0u8; 12];
    req[..4].copy_from_slice(&1u32.to_le_bytes());
    req[4..].copy_from_slice(&4000u64.to_le_bytes());
    assert_eq!(p.dispatch(wire::COUNTER_ADVANCE, &req, &mut out), Ok(8));
    assert_eq!(u64::from_le_bytes(out), 4000);
    assert_eq!(p.counter(1).unwrap(), 4000);
}

#[test]
fn an_increment_at_the_maximum_fails_and_the_counter_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    assert_eq!(p.advance(9, u64::MAX - 1).unwrap(), u64::MAX - 1);
    assert_eq!(p.increment(9).unwrap(), u64::MAX);
    assert_eq!(p.increment(9), Err(Error::Overflow(9)));
    assert_eq!(p.increment(9), Err(Error::Overflow(9)));
    assert_eq!(p.counter(9).unwrap(), u64::MAX);
    assert_eq!(p.advance(9, 5).unwrap(), u64::MAX, "never lowered");
    assert_eq!(p.counter(9).unwrap(), u64::MAX);
    assert_eq!(Error::Overflow(9).psa_status(), -133);
}

#[test]
fn the_counter_table_holds_sixteen_and_refuses_the_seventeenth() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    for id in 0..counters::MAX_COUNTERS as u32 {
        assert_eq!(p.increment(id).unwrap(), 1);
    }
    assert_eq!(p.increment(100), Err(Error::TableFull));
    assert_eq!(p.counter(100).unwrap(), 0);
    assert_eq!(p.increment(3).unwrap(), 2, "the others still count");
}

#[test]
fn a_corrupted_counter_table_is_reported_not_trusted_nor_reset() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    p.increment(1).unwrap();
    p.increment(2).unwrap();
    let good = asset(dir.path(), uid::COUNTERS);
    for at in 0..good.len() {
        std::fs::write(dir.path().join(std::format!("{:016x}", uid::COUNTERS)), &good).unwrap();
        flip(dir.path(), uid::COUNTERS, at);
        let damaged = asset(dir.path(), uid::COUNTERS);
        assert_eq!(p.counter(1), Err(Error::Corrupted(uid::COUNTERS)), "byte {at}");
        assert_eq!(p.increment(1), Err(Error::Corrupted(uid::COUNTERS)), "byte {at}");
        assert_eq!(asset(dir.path(), uid::COUNTERS), damaged, "left as it was, byte {at}");
    }
    // Truncated or grown: the same.
    for len in [0, 3, 11, good.len() - 1] {
        std::fs::write(dir.path().join(std::format!("{:016x}", uid::COUNTERS)), &good[..len]).unwrap();
        assert_eq!(p.counter(1), Err(Error::Corrupted(uid::COUNTERS)), "length {len}");
    }
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(dir.path().join(std::format!("{:016x}", uid::COUNTERS)), &longer).unwrap();
    assert_eq!(p.counter(1), Err(Error::Corrupted(uid::COUNTERS)));
}

#[test]
fn the_ring_keeps_the_newest_entries_in_order_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    let empty = p.audit_read(0, &mut [AuditEntry::default(); 4]).unwrap();
    assert_eq!(empty, AuditRead { count: 0, oldest: 0, next: 1 });
    for i in 1..=100u64 {
        assert_eq!(p.audit_append((i % 7) as u8, 0x1000 + i as u32, -(i as i32)).unwrap(), i);
        if i == 50 {
            drop(p);
            p = boot(dir.path(), 1);
        }
    }
    let mut all = [AuditEntry::default(); CAPACITY + 8];
    let r = p.audit_read(0, &mut all).unwrap();
    assert_eq!((r.count, r.oldest, r.next), (CAPACITY, 100 - CAPACITY as u64 + 1, 101));
    for (k, e) in all[..r.count].iter().enumerate() {
        let seq = r.oldest + k as u64;
        assert_eq!(*e, AuditEntry { seq, op: (seq % 7) as u8, key_id: 0x1000 + seq as u32, result: -(seq as i32), corrupted: false });
    }
    // From a sequence number on, and as many as fit.
    let mut three = [AuditEntry::default(); 3];
    let r = p.audit_read(90, &mut three).unwrap();
    assert_eq!((r.count, three.map(|e| e.seq)), (3, [90, 91, 92]));
    let r = p.audit_read(101, &mut three).unwrap();
    assert_eq!(r.count, 0, "nothing newer");
}

#[test]
fn a_corrupted_entry_is_reported_in_place_and_a_corrupted_header_stops_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    for i in 1..=5 {
        p.audit_append(1, i, 0).unwrap();
    }
    // Entry 3's key ID byte: reported as corrupted, in its place.
    let header = 20;
    flip(dir.path(), uid::AUDIT, header + 2 * audit::ENTRY_LEN + 14);
    let mut out = [AuditEntry::default(); 8];
    let r = p.audit_read(0, &mut out).unwrap();
    assert_eq!(r.count, 5);
    assert_eq!(out[..5].iter().map(|e| (e.seq, e.corrupted)).collect::<Vec<_>>(), [(1, false), (2, false), (3, true), (4, false), (5, false)]);
    assert_eq!(out[2].key_id, 0, "nothing of it is trusted");
    // Appending still works (the header checks); the damaged entry stays visible.
    assert_eq!(p.audit_append(2, 6, 0).unwrap(), 6);
    assert!(p.audit_read(3, &mut out).unwrap().count == 4 && out[0].corrupted);
    // The header damaged: nothing is read, nothing appended, nothing reset.
    flip(dir.path(), uid::AUDIT, 9);
    let damaged = asset(dir.path(), uid::AUDIT);
    assert_eq!(p.audit_read(0, &mut out), Err(Error::Corrupted(uid::AUDIT)));
    assert_eq!(p.audit_append(1, 7, 0), Err(Error::Corrupted(uid::AUDIT)));
    assert_eq!(asset(dir.path(), uid::AUDIT), damaged);
}

#[test]
fn the_boot_rng_record_finds_a_repeating_stream_and_keeps_count() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(boot(dir.path(), 1).rng_record(), Err(Error::InvalidArgument), "no record before the first check");
    assert_eq!(boot(dir.path(), 1).boot_rng_check().unwrap(), RngRecord { boots: 1, health: RngHealth::FirstBoot });
    assert_eq!(boot(dir.path(), 2).boot_rng_check().unwrap(), RngRecord { boots: 2, health: RngHealth::Ok });
    assert_eq!(boot(dir.path(), 2).boot_rng_check().unwrap(), RngRecord { boots: 3, health: RngHealth::Repeating });
    assert_eq!(boot(dir.path(), 3).rng_record().unwrap(), RngRecord { boots: 3, health: RngHealth::Repeating });
    assert_eq!(boot(dir.path(), 3).boot_rng_check().unwrap(), RngRecord { boots: 4, health: RngHealth::Ok });
    // A failing RNG is an error, the record unchanged.
    let failing: Rng = std::boxed::Box::new(|_: &mut [u8]| Err(-151));
    let mut p = Partition::new(FileIts::new(dir.path()), failing);
    assert_eq!(p.boot_rng_check(), Err(Error::Rng(-151)));
    assert_eq!(p.rng_record().unwrap().boots, 4);
    // Corrupted: reported, left as it is.
    flip(dir.path(), uid::RNG, 20);
    let damaged = asset(dir.path(), uid::RNG);
    assert_eq!(boot(dir.path(), 9).boot_rng_check(), Err(Error::Corrupted(uid::RNG)));
    assert_eq!(asset(dir.path(), uid::RNG), damaged);
}

#[test]
fn the_wire_protocol_serves_each_operation_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    p.boot_rng_check().unwrap();
    let mut out = [0u8; wire::MAX_ANSWER];
    let call = |p: &mut Partition<FileIts, Rng>, op: i32, input: &[u8], out: &mut [u8]| p.dispatch(op, input, out);

    assert_eq!(call(&mut p, wire::COUNTER_INCREMENT, &5u32.to_le_bytes(), &mut out), Ok(8));
    assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 1);
    assert_eq!(call(&mut p, wire::COUNTER_READ, &5u32.to_le_bytes(), &mut out), Ok(8));
    assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), 1);
    for i in 0..40u32 {
        let mut req = [0u8; 9];
        req[0] = 4;
        req[1..5].copy_from_slice(&i.to_le_bytes());
        req[5..9].copy_from_slice(&(-7i32).to_le_bytes());
        assert_eq!(call(&mut p, wire::AUDIT_APPEND, &req, &mut out), Ok(8));
        assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), u64::from(i) + 1);
    }
    // The ring read in chunks of at most READ_MAX, by sequence number.
    let mut seen = Vec::new();
    let mut from = 0u64;
    loop {
        let mut req = [0u8; 10];
        req[..8].copy_from_slice(&from.to_le_bytes());
        req[8..].copy_from_slice(&100u16.to_le_bytes());
        let n = call(&mut p, wire::AUDIT_READ, &req, &mut out).unwrap();
        let count = usize::from(u16::from_le_bytes([out[16], out[17]]));
        assert!(count <= wire::READ_MAX && n == 18 + count * wire::ENTRY_LEN);
        if count == 0 {
            break;
        }
        for k in 0..count {
            let e = wire::decode_entry(out[18 + k * wire::ENTRY_LEN..][..wire::ENTRY_LEN].try_into().unwrap());
            assert_eq!((e.op, e.result, e.corrupted), (4, -7, false));
            seen.push(e.key_id);
            from = e.seq + 1;
        }
    }
    assert_eq!(seen, (0..40).collect::<Vec<u32>>());
    assert_eq!(call(&mut p, wire::RNG_RECORD, &[], &mut out), Ok(9));
    assert_eq!((u64::from_le_bytes(out[..8].try_into().unwrap()), out[8]), (1, 0));

    // Every other length, an unknown operation, a small buffer: refused.
    for op in [wire::COUNTER_READ, wire::COUNTER_INCREMENT, wire::AUDIT_APPEND, wire::AUDIT_READ, wire::RNG_RECORD, wire::COUNTER_ADVANCE] {
        let good = [4, 4, 9, 10, 0, 12][(op - 1) as usize];
        for len in (0..40).filter(|&l| l != good) {
            assert_eq!(call(&mut p, op, &[0xA5; 40][..len], &mut out), Err(Error::InvalidArgument), "op {op} length {len}");
        }
    }
    for op in [0, 7, -1, i32::MAX] {
        assert_eq!(call(&mut p, op, &[], &mut out), Err(Error::InvalidArgument));
    }
    assert_eq!(call(&mut p, wire::COUNTER_READ, &5u32.to_le_bytes(), &mut out[..7]), Err(Error::BufferTooSmall));
    assert_eq!(p.counter(5).unwrap(), 1, "reads changed nothing");
    assert_eq!(Error::from_psa_status(Error::Corrupted(1).psa_status()), Error::Corrupted(0));
}

/// Whatever an asset holds (every length, patterns, every single-byte
/// change of a good one), loading it is an error or a value, never a panic.
#[test]
fn any_stored_bytes_load_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = boot(dir.path(), 1);
    p.increment(1).unwrap();
    p.audit_append(1, 1, 0).unwrap();
    p.boot_rng_check().unwrap();
    let goods: Vec<(u64, Vec<u8>)> = [uid::COUNTERS, uid::AUDIT, uid::RNG].iter().map(|&u| (u, asset(dir.path(), u))).collect();
    let mut out = [AuditEntry::default(); 4];
    for (u, good) in &goods {
        let path = dir.path().join(std::format!("{u:016x}"));
        let mut variants: Vec<Vec<u8>> = (0..good.len().min(300)).map(|l| good[..l].to_vec()).collect();
        variants.extend([0x00u8, 0xFF, 0x5A].iter().map(|&b| std::vec![b; good.len()]));
        for i in 0..good.len() {
            let mut v = good.clone();
            v[i] = v[i].wrapping_add(0x80);
            variants.push(v);
        }
        for v in variants {
            std::fs::write(&path, &v).unwrap();
            let _ = p.counter(1);
            let _ = p.increment(2);
            let _ = p.audit_read(0, &mut out);
            let _ = p.audit_append(1, 2, 3);
            let _ = p.rng_record();
            let _ = p.boot_rng_check();
        }
        std::fs::write(&path, good).unwrap();
    }
}
