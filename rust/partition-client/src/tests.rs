//! The client against the partition's own logic in-process (what the host
//! simulator does), and against answers a partition built from other
//! sources could give.

extern crate std;

use std::vec::Vec;

use super::*;
use tfmprov_partition::testing::MemIts;
use tfmprov_partition::Partition;

type Rng = fn(&mut [u8]) -> Result<(), i32>;

fn rng(b: &mut [u8]) -> Result<(), i32> {
    b.fill(3);
    Ok(())
}

/// A client whose calls go to the partition's dispatch, as psa_call would
/// (the PSA status of a refusal, the answer's length otherwise).
fn in_process(p: &mut Partition<MemIts, Rng>) -> Client<impl Call + '_> {
    Client::new(move |op: i32, input: &[u8], out: &mut [u8]| p.dispatch(op, input, out).map_err(|e| e.psa_status()))
}

#[test]
fn every_operation_round_trips_through_the_partition() {
    let mut p: Partition<MemIts, Rng> = Partition::new(MemIts::default(), rng);
    p.boot_rng_check().unwrap();
    let mut c = in_process(&mut p);
    assert_eq!(c.counter(1), Ok(0));
    assert_eq!((c.increment(1), c.increment(1), c.increment(2)), (Ok(1), Ok(2), Ok(1)));
    assert_eq!(c.counter(1), Ok(2));
    assert_eq!((c.advance(1, 1000), c.advance(1, 10), c.counter(1)), (Ok(1000), Ok(1000), Ok(1000)));
    for i in 0..100u32 {
        assert_eq!(c.audit_append((i % 5) as u8, i, -(i as i32)), Ok(u64::from(i) + 1));
    }
    // More than one call's worth (READ_MAX is 16), from a sequence number on.
    let mut out = [AuditEntry::default(); 50];
    let r = c.audit_read(40, &mut out).unwrap();
    assert_eq!((r.count, r.oldest, r.next), (50, 37, 101));
    assert_eq!(out.iter().map(|e| e.key_id).collect::<Vec<_>>(), (39..89).collect::<Vec<u32>>());
    assert!(out.iter().all(|e| !e.corrupted && e.result == -(e.key_id as i32)));
    // All of it, and nothing newer.
    let mut all = [AuditEntry::default(); 80];
    assert_eq!(c.audit_read(0, &mut all).unwrap().count, 64);
    assert_eq!(c.audit_read(101, &mut all).unwrap().count, 0);
    assert_eq!(c.audit_read(0, &mut []).unwrap().count, 0);
    assert_eq!(c.rng_record(), Ok(RngRecord { boots: 1, health: RngHealth::FirstBoot }));
}

#[test]
fn refusals_and_odd_answers_are_errors_not_values() {
    // The partition's refusals arrive as PSA statuses and are decoded.
    let mut p: Partition<MemIts, Rng> = Partition::new(MemIts::default(), rng);
    let mut c = in_process(&mut p);
    assert_eq!(c.rng_record(), Err(Error::InvalidArgument), "no record before the boot check");
    for id in 0..16 {
        c.increment(id).unwrap();
    }
    assert_eq!(c.increment(99), Err(Error::TableFull));

    // A service that answers with the wrong length or content.
    let mut short = Client::new(|_: i32, _: &[u8], _: &mut [u8]| Ok(4));
    assert_eq!(short.counter(1), Err(Error::BadAnswer));
    let mut too_long = Client::new(|_: i32, _: &[u8], out: &mut [u8]| Ok(out.len() + 1));
    assert_eq!(too_long.increment(1), Err(Error::BadAnswer));
    let mut bad_health = Client::new(|_: i32, _: &[u8], out: &mut [u8]| {
        out[8] = 9;
        Ok(9)
    });
    assert_eq!(bad_health.rng_record(), Err(Error::BadAnswer));
    // An audit answer claiming more entries than asked for, or than it holds.
    let mut liar = Client::new(|_: i32, _: &[u8], out: &mut [u8]| {
        out[16] = 20;
        out[17] = 0;
        Ok(18)
    });
    assert_eq!(liar.audit_read(0, &mut [AuditEntry::default(); 4]), Err(Error::BadAnswer));
    let mut failing = Client::new(|_: i32, _: &[u8], _: &mut [u8]| Err(-146));
    assert_eq!(failing.counter(1), Err(Error::Storage(-146)));
}
