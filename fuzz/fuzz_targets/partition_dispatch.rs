//! The secure partition's request handling (tfmprov-partition `wire`): any
//! sequence of calls with any bytes, over an in-memory ITS that may also
//! hold damaged records. No panic; counters never go down; the audit ring's
//! sequence numbers never go back.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use tfmprov_partition::testing::MemIts;
use tfmprov_partition::{wire, Partition};

fuzz_target!(|data: &[u8]| {
    let rng = |b: &mut [u8]| {
        b.fill(7);
        Ok(())
    };
    let mut p = Partition::new(MemIts::default(), rng);
    let _ = p.boot_rng_check();
    let mut seen: HashMap<u32, u64> = HashMap::new();
    let mut last_seq = 0u64;
    let mut out = [0u8; wire::MAX_ANSWER];
    // Calls: [op, len, bytes…]; op 0xFF damages a stored byte instead.
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (input, next) = tail.split_at(len);
        rest = next;
        if *op == 0xFF {
            if let [uid_sel, at, x, ..] = input {
                let uid = [tfmprov_partition::uid::COUNTERS, tfmprov_partition::uid::AUDIT, tfmprov_partition::uid::RNG][usize::from(*uid_sel) % 3];
                if let Some(d) = p.storage_mut().0.get_mut(&uid) {
                    let i = usize::from(*at) % d.len().max(1);
                    if let Some(b) = d.get_mut(i) {
                        *b ^= *x | 1;
                    }
                }
            }
            continue;
        }
        let op = i32::from(*op % 8);
        if let Ok(n) = p.dispatch(op, input, &mut out) {
            assert!(n <= out.len());
            if op == wire::COUNTER_READ || op == wire::COUNTER_INCREMENT || op == wire::COUNTER_ADVANCE {
                let id = u32::from_le_bytes(input[..4].try_into().unwrap());
                let v = u64::from_le_bytes(out[..8].try_into().unwrap());
                let before = seen.insert(id, v).unwrap_or(0);
                assert!(v >= before, "counter {id} went from {before} to {v}");
            }
            if op == wire::AUDIT_APPEND {
                let seq = u64::from_le_bytes(out[..8].try_into().unwrap());
                assert!(seq > last_seq, "audit seq {seq} after {last_seq}");
                last_seq = seq;
            }
        }
    }
});
