//! The non-secure side's client of the provisioning secure partition
//! (issue 15; the partition is `tfm-partition/tfmprov` + `rust/partition-sp`).
//!
//! [`Client`] turns the partition's operations into calls and checks every
//! answer's length before it decodes it (`tfmprov_partition::wire` is the
//! one definition of the layouts, shared with the partition). How a call
//! travels is a [`Call`]:
//!
//! - on TF-M (feature `tfm`), [`Tfm`]: `psa_call` on the partition's
//!   stateless handle, with bindings bindgen made from TF-M's non-secure
//!   client headers at build time ([`ffi`], the only `unsafe`);
//! - on the host, any closure: the simulator and the tests run the
//!   partition's logic in-process (`tfmprov_partition::Partition::dispatch`),
//!   so the same client code is exercised against the same service code.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use tfmprov_partition::wire;
pub use tfmprov_partition::{AuditEntry, AuditRead, RngHealth, RngRecord};

/// What a call can end in: the partition's refusal (its PSA status,
/// decoded), or [`Error::BadAnswer`] for an answer of the wrong length or
/// content. One enum with the partition's, so that a caller matches the
/// same variants whichever side found the problem.
pub use tfmprov_partition::Error;

/// One call to the partition's service: operation `op` (`psa_call`'s
/// type), request `input`, answer into `output`; the answer's length, or
/// the PSA status.
pub trait Call {
    /// Makes the call.
    fn call(&mut self, op: i32, input: &[u8], output: &mut [u8]) -> Result<usize, i32>;
}

impl<F: FnMut(i32, &[u8], &mut [u8]) -> Result<usize, i32>> Call for F {
    fn call(&mut self, op: i32, input: &[u8], output: &mut [u8]) -> Result<usize, i32> {
        self(op, input, output)
    }
}

/// The partition's operations over a [`Call`].
pub struct Client<C> {
    call: C,
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

impl<C: Call> Client<C> {
    /// A client making its calls with `call`.
    pub fn new(call: C) -> Self {
        Client { call }
    }

    fn exchange(&mut self, op: i32, input: &[u8], output: &mut [u8]) -> Result<usize, Error> {
        let n = self
            .call
            .call(op, input, output)
            .map_err(Error::from_psa_status)?;
        if n > output.len() {
            return Err(Error::BadAnswer);
        }
        Ok(n)
    }

    fn u64_answer(&mut self, op: i32, input: &[u8]) -> Result<u64, Error> {
        let mut out = [0u8; 8];
        match self.exchange(op, input, &mut out)? {
            8 => Ok(le64(&out)),
            _ => Err(Error::BadAnswer),
        }
    }

    /// Counter `id` (0 if never incremented).
    pub fn counter(&mut self, id: u32) -> Result<u64, Error> {
        self.u64_answer(wire::COUNTER_READ, &id.to_le_bytes())
    }

    /// Increments counter `id`: its new value, already stored in the
    /// secure world (never handed out again, even after a reflash of this
    /// image).
    pub fn increment(&mut self, id: u32) -> Result<u64, Error> {
        self.u64_answer(wire::COUNTER_INCREMENT, &id.to_le_bytes())
    }

    /// Raises counter `id` to at least `at_least`: its value, which is
    /// more than asked if the counter was already further (never lowered).
    pub fn advance(&mut self, id: u32, at_least: u64) -> Result<u64, Error> {
        let mut req = [0u8; 12];
        req[..4].copy_from_slice(&id.to_le_bytes());
        req[4..].copy_from_slice(&at_least.to_le_bytes());
        self.u64_answer(wire::COUNTER_ADVANCE, &req)
    }

    /// Appends a key operation to the audit ring: its sequence number.
    pub fn audit_append(&mut self, op: u8, key_id: u32, result: i32) -> Result<u64, Error> {
        let mut req = [0u8; 9];
        req[0] = op;
        req[1..5].copy_from_slice(&key_id.to_le_bytes());
        req[5..9].copy_from_slice(&result.to_le_bytes());
        self.u64_answer(wire::AUDIT_APPEND, &req)
    }

    /// The audit entries from sequence number `from` on, oldest first, as
    /// many as fit `out` (several calls of at most `wire::READ_MAX` each).
    pub fn audit_read(&mut self, from: u64, out: &mut [AuditEntry]) -> Result<AuditRead, Error> {
        let mut answer = [0u8; wire::MAX_ANSWER];
        let mut read = AuditRead { count: 0, oldest: 0, next: 1 };
        let mut next_from = from;
        loop {
            let room = (out.len() - read.count).min(wire::READ_MAX);
            let mut req = [0u8; 10];
            req[..8].copy_from_slice(&next_from.to_le_bytes());
            req[8..].copy_from_slice(&(room as u16).to_le_bytes());
            let n = self.exchange(wire::AUDIT_READ, &req, &mut answer)?;
            if n < 18 {
                return Err(Error::BadAnswer);
            }
            let count = usize::from(u16::from_le_bytes([answer[16], answer[17]]));
            if count > room || n != 18 + count * wire::ENTRY_LEN {
                return Err(Error::BadAnswer);
            }
            read.oldest = le64(&answer[0..8]);
            read.next = le64(&answer[8..16]);
            for (k, slot) in out[read.count..read.count + count].iter_mut().enumerate() {
                let at = 18 + k * wire::ENTRY_LEN;
                let mut e = [0u8; wire::ENTRY_LEN];
                e.copy_from_slice(&answer[at..at + wire::ENTRY_LEN]);
                *slot = wire::decode_entry(&e);
                next_from = slot.seq + 1;
            }
            read.count += count;
            if count < room || read.count == out.len() || room == 0 {
                return Ok(read);
            }
        }
    }

    /// The partition's record of the last boot's RNG check.
    pub fn rng_record(&mut self) -> Result<RngRecord, Error> {
        let mut out = [0u8; 9];
        match self.exchange(wire::RNG_RECORD, &[], &mut out)? {
            9 => Ok(RngRecord { boots: le64(&out), health: RngHealth::from_code(out[8]).ok_or(Error::BadAnswer)? }),
            _ => Err(Error::BadAnswer),
        }
    }
}

/// The bindings bindgen made from TF-M's `psa/client.h` and
/// `psa_manifest/sid.h` (build.rs), and the [`Call`] over them.
#[cfg(feature = "tfm")]
pub mod ffi {
    #![allow(non_camel_case_types, non_upper_case_globals, missing_docs, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

/// `psa_call` on the partition's stateless service (`TFMPROV_SP_HANDLE`,
/// fixed by the manifest's `stateless_handle`).
#[cfg(feature = "tfm")]
pub struct Tfm;

#[cfg(feature = "tfm")]
impl Call for Tfm {
    fn call(&mut self, op: i32, input: &[u8], output: &mut [u8]) -> Result<usize, i32> {
        let invec = ffi::psa_invec { base: input.as_ptr().cast(), len: input.len() };
        let mut outvec = ffi::psa_outvec { base: output.as_mut_ptr().cast(), len: output.len() };
        let (n_in, n_out) = (usize::from(!input.is_empty()), usize::from(!output.is_empty()));
        // SAFETY: the vectors describe `input` and `output`, valid for their
        // lengths for the duration of the call; the handle is the partition's
        // constant; TF-M writes the answer's length into outvec.len.
        let status = unsafe { ffi::psa_call(ffi::TFMPROV_SP_HANDLE as ffi::psa_handle_t, op, &invec, n_in, &mut outvec, n_out) };
        if status == 0 {
            Ok(outvec.len)
        } else {
            Err(status)
        }
    }
}

/// The partition's logic in this process (feature `host`): what the host
/// simulator and the device's tests call where the firmware calls TF-M.
#[cfg(feature = "host")]
pub mod host {
    extern crate std;
    use std::path::Path;

    use crate::Call;
    use tfmprov_partition::host::FileIts;
    use tfmprov_partition::Partition;

    /// Boots the partition over its assets in `dir` (which must exist) the
    /// way TF-M boots it: the boot RNG check first, drawing with `rng`.
    /// Then every call goes to its dispatch, as `psa_call` would: the
    /// answer's length, or the PSA status of a refusal.
    pub fn boot(
        dir: &Path,
        rng: impl FnMut(&mut [u8]) -> Result<(), i32> + Send + 'static,
    ) -> Result<impl Call + Send + 'static, tfmprov_partition::Error> {
        let mut p = Partition::new(FileIts::new(dir), rng);
        p.boot_rng_check()?;
        Ok(move |op: i32, input: &[u8], out: &mut [u8]| p.dispatch(op, input, out).map_err(|e| e.psa_status()))
    }
}

#[cfg(test)]
mod tests;
