//! Where the device keeps what must never go backwards, and what the
//! non-secure image must not be able to rewrite (issue 15): the telemetry
//! `seq` reservation, the session id, the audit log of key operations and
//! the boot RNG check.
//!
//! Two homes, chosen at boot:
//!
//! - [`Vault::Partition`]: the provisioning secure partition
//!   (`tfm-partition/tfmprov`, logic in `tfmprov-partition`), reached
//!   through `tfmprov-partition-client`: `psa_call` on TF-M (firmware
//!   feature `partition`), the same logic in-process in the host
//!   simulator. Counter [`COUNTER_SEQ`] is the end of the last reserved
//!   block of sequence numbers, counter [`COUNTER_SESSION_ID`] the last
//!   session id; the audit ring and the RNG record are the partition's.
//!   A reflashed or compromised non-secure image can move a counter
//!   forward, never back, and can append to the log, never edit it.
//! - [`Vault::NonSecure`], when the partition is not built: the counters
//!   stay in the state records 0x3E000001/0x3E000002 and the RNG check is
//!   the non-secure one (`tfmprov_psa::rng`), as before the partition
//!   existed; the audit ring is kept in PSA Protected Storage
//!   ([`AUDIT_UID`], TF-M's PS service, which has its own flash area), by
//!   the partition's own ring code, so its format, checks and answers are
//!   the same. This protects against a reset, not against the non-secure
//!   image itself.
//!
//! Why the key operations run on the non-secure side and are only logged
//! into the partition (issue 15, point 5): TF-M's crypto service keys every
//! persistent key by its owner, the calling client. A key the partition
//! generated would be the partition's: the non-secure side could not sign
//! with it under its DESIGN.md ID (SMP, MQTT, TLS through
//! `mbedtls_pk_setup_opaque`), so the partition would have to proxy every
//! use, and the key-ID map would no longer be PSA's. So the non-secure side
//! runs each operation and appends it with its result; the partition numbers
//! the entries and the non-secure side cannot edit or remove them.
//!
//! A device that moves from the fallback to the partition keeps its
//! counters: at boot the state records' values are carried into the
//! partition's counters (which only go up) and then removed.
//!
//! Each home is a cargo feature (`nonsecure-vault`, the default, and
//! `partition-vault`), so that the firmware links the code of its one home
//! only (the Rust part's 64 KiB budget); the host simulator has both.

#[cfg(not(any(feature = "nonsecure-vault", feature = "partition-vault")))]
compile_error!("tfmprov-device needs a home for its state: feature nonsecure-vault and/or partition-vault");

use crate::telemetry::{be_u32, be_u64};
use crate::Error;
#[cfg(feature = "partition-vault")]
use alloc::boxed::Box;
pub use tfmprov_partition::{AuditEntry, AuditRead};
#[cfg(feature = "partition-vault")]
use tfmprov_partition_client::{Call, Client};
use tfmprov_psa::rng::RngHealth;
use tfmprov_psa::{Psa, StateId};

/// The partition counter holding the end of the last reserved `seq` block.
pub const COUNTER_SEQ: u32 = 1;
/// The partition counter holding the last session id.
pub const COUNTER_SESSION_ID: u32 = 2;
/// The Protected Storage UID of the fallback audit ring (the partition
/// keeps its ring under the same number in its own ITS namespace).
pub const AUDIT_UID: u64 = tfmprov_partition::uid::AUDIT;
/// Entries one audit read answers at most (the whole ring).
pub const AUDIT_MAX: usize = tfmprov_partition::audit::CAPACITY;

/// The key operations the audit log records (an entry's `op`; docs/smp.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AuditOp {
    /// A random key generated at a free ID.
    Generate = 1,
    /// A known value imported at a free ID.
    Import = 2,
    /// A random key generated in place of an existing one.
    GenerateReplace = 3,
    /// A known value imported in place of an existing key.
    ImportReplace = 4,
    /// A key destroyed with its certificate.
    Destroy = 5,
    /// A CSR signed with a key.
    Csr = 6,
    /// A certificate stored (key certificate or peer slot).
    StoreCert = 7,
    /// The telemetry key switched (remote `use-key`).
    UseKey = 8,
}

impl AuditOp {
    /// The name of operation code `op` (shell and CLI output).
    pub fn name(op: u8) -> &'static str {
        match op {
            1 => "generate",
            2 => "import",
            3 => "generate-replace",
            4 => "import-replace",
            5 => "destroy",
            6 => "csr",
            7 => "store-cert",
            8 => "use-key",
            _ => "unknown",
        }
    }
}

/// The audit log as text: a heading, then one line per entry. The shell's
/// `prov audit` and the host's `tfmprov keys audit` / `remote audit` print
/// it with this one function.
pub fn audit_text(secure: bool, oldest: u64, next: u64, missed: u64, entries: &[AuditEntry]) -> alloc::string::String {
    let mut t = crate::text::Text::new();
    t.str(if secure { "audit log (secure partition): " } else { "audit log (non-secure fallback): " });
    t.str("oldest #").dec(oldest).str(", next #").dec(next).str(", missed ").dec(missed).str("\n");
    for e in entries {
        t.str("#").dec(e.seq).str(" ");
        if e.corrupted {
            t.str("corrupted record (not trusted)\n");
        } else {
            t.padded(AuditOp::name(e.op), 16).str(" id ").id(e.key_id);
            t.str(" rc ").signed(e.result.into()).str("\n");
        }
    }
    t.into_string()
}

/// A [`Call`] behind a box, so that [`Vault`] is one type whatever carries
/// the calls (TF-M's `psa_call`, or the simulator's in-process partition).
#[cfg(feature = "partition-vault")]
pub struct BoxedCall(Box<dyn Call + Send>);

#[cfg(feature = "partition-vault")]
impl Call for BoxedCall {
    fn call(&mut self, op: i32, input: &[u8], output: &mut [u8]) -> Result<usize, i32> {
        self.0.call(op, input, output)
    }
}

/// Where the state lives (see the module documentation).
pub enum Vault {
    /// The secure partition.
    #[cfg(feature = "partition-vault")]
    Partition(Client<BoxedCall>),
    /// No partition: state records, the non-secure RNG check, the audit
    /// ring in Protected Storage.
    #[cfg(feature = "nonsecure-vault")]
    NonSecure,
}

/// The fallback ring's storage: Protected Storage through the PSA handle.
#[cfg(feature = "nonsecure-vault")]
struct Ps<'a>(&'a mut Psa);

#[cfg(feature = "nonsecure-vault")]
fn ps_error(e: tfmprov_psa::Error) -> tfmprov_partition::Error {
    match e {
        tfmprov_psa::Error::StorageFull => tfmprov_partition::Error::Storage(-142),
        // More than a ring: not the ring this code wrote.
        tfmprov_psa::Error::TooLarge(_) => tfmprov_partition::Error::Corrupted(AUDIT_UID),
        other => tfmprov_partition::Error::Storage(other.psa_status().unwrap_or(-132)),
    }
}

#[cfg(feature = "nonsecure-vault")]
impl tfmprov_partition::Storage for Ps<'_> {
    fn get(&self, uid: u64, out: &mut [u8]) -> Result<Option<usize>, tfmprov_partition::Error> {
        self.0.storage_get(uid, out).map_err(ps_error)
    }

    fn set(&mut self, uid: u64, data: &[u8]) -> Result<(), tfmprov_partition::Error> {
        self.0.storage_set(uid, data).map_err(ps_error)
    }
}

/// The seq reservation's state record (0x3E000002), if any.
fn load_seq(psa: &Psa) -> Result<Option<u64>, Error> {
    let v = psa.load_state(StateId::Seq)?;
    v.map(|v| be_u64(&v).ok_or(Error::InvalidArgument("corrupt seq record"))).transpose()
}

/// The session id's state record (0x3E000001), if any.
fn load_session_id(psa: &Psa) -> Result<Option<u32>, Error> {
    let v = psa.load_state(StateId::SessionId)?;
    v.map(|v| be_u32(&v).ok_or(Error::InvalidArgument("corrupt session id record"))).transpose()
}

/// The fallback ring's scratch buffer, on the heap: the non-secure side's
/// calls have 3 KiB of stack, the ring is 1.5 KiB.
#[cfg(feature = "nonsecure-vault")]
fn ring_buffer() -> alloc::boxed::Box<[u8; tfmprov_partition::audit::LEN]> {
    let v = alloc::vec![0u8; tfmprov_partition::audit::LEN].into_boxed_slice();
    match v.try_into() {
        Ok(b) => b,
        Err(_) => unreachable!("the vector has the array's length"),
    }
}

// Without the fallback, the partition needs neither the PSA handle nor the
// last session id for some operations.
#[cfg_attr(not(feature = "nonsecure-vault"), allow(unused_variables))]
impl Vault {
    /// The partition, reached through `call`.
    #[cfg(feature = "partition-vault")]
    pub fn partition(call: impl Call + Send + 'static) -> Vault {
        Vault::Partition(Client::new(BoxedCall(Box::new(call))))
    }

    /// Whether the state is in the secure partition.
    pub fn is_secure(&self) -> bool {
        #[cfg(feature = "partition-vault")]
        return matches!(self, Vault::Partition(_));
        #[cfg(not(feature = "partition-vault"))]
        false
    }

    /// Host only: tells TF-M's ITS model (`tfmprov_psa::its`) what this
    /// home keeps in ITS besides the key store: the partition's two files
    /// (its counter table with this device's two counters, its RNG record),
    /// or nothing.
    #[cfg(not(target_os = "none"))]
    pub(crate) fn model_its(&self) {
        let files: &[usize] = if self.is_secure() {
            &[tfmprov_partition::counters::stored_len(2), tfmprov_partition::rng::STORED_LEN]
        } else {
            &[]
        };
        tfmprov_psa::its::model_partition_files(files);
    }

    /// The boot RNG check's result. The partition ran its check when the
    /// secure image booted; without it the non-secure check runs now.
    pub(crate) fn boot_rng(&mut self, psa: &mut Psa) -> Result<RngHealth, Error> {
        match self {
            #[cfg(feature = "partition-vault")]
            Vault::Partition(c) => {
                let health = match c.rng_record()?.health {
                    tfmprov_partition::RngHealth::FirstBoot => RngHealth::FirstBoot,
                    tfmprov_partition::RngHealth::Ok => RngHealth::Ok,
                    tfmprov_partition::RngHealth::Repeating => RngHealth::Repeating,
                };
                psa.adopt_rng_health(health);
                Ok(health)
            }
            #[cfg(feature = "nonsecure-vault")]
            Vault::NonSecure => Ok(psa.boot_rng_check()?),
        }
    }

    /// At boot: the end of the last reserved `seq` block and the last
    /// session id. With the partition, values the state records still hold
    /// (a device that ran without it) are carried over first.
    pub(crate) fn load_counters(&mut self, psa: &mut Psa) -> Result<(u64, u32), Error> {
        match self {
            #[cfg(feature = "nonsecure-vault")]
            Vault::NonSecure => Ok((load_seq(psa)?.unwrap_or(0), load_session_id(psa)?.unwrap_or(0))),
            #[cfg(feature = "partition-vault")]
            Vault::Partition(c) => {
                // Raised first, removed after: a reset in between raises
                // again to the same values, which changes nothing.
                if let Some(v) = load_seq(psa)? {
                    c.advance(COUNTER_SEQ, v)?;
                    psa.delete_state(StateId::Seq)?;
                }
                if let Some(v) = load_session_id(psa)? {
                    c.advance(COUNTER_SESSION_ID, v.into())?;
                    psa.delete_state(StateId::SessionId)?;
                }
                let last = c.counter(COUNTER_SESSION_ID)?;
                // Above u32: no id left to hand out, which the next
                // session reports; the last one is the largest there is.
                Ok((c.counter(COUNTER_SEQ)?, u32::try_from(last).unwrap_or(u32::MAX)))
            }
        }
    }

    /// Reserves sequence numbers up to `until` (exclusive), stored before
    /// any is used; the end actually stored. The partition answers more
    /// than asked only if its counter was already further (then the caller
    /// continues from there).
    pub(crate) fn reserve_seq(&mut self, psa: &mut Psa, until: u64) -> Result<u64, Error> {
        match self {
            #[cfg(feature = "partition-vault")]
            Vault::Partition(c) => Ok(c.advance(COUNTER_SEQ, until)?),
            #[cfg(feature = "nonsecure-vault")]
            Vault::NonSecure => {
                psa.store_state(StateId::Seq, &until.to_be_bytes())?;
                Ok(until)
            }
        }
    }

    /// The next session id after `last`, stored before it is returned.
    pub(crate) fn next_session_id(&mut self, psa: &mut Psa, last: u32) -> Result<u32, Error> {
        const EXHAUSTED: Error = Error::InvalidArgument("session ids exhausted");
        match self {
            #[cfg(feature = "partition-vault")]
            Vault::Partition(c) => u32::try_from(c.increment(COUNTER_SESSION_ID)?).map_err(|_| EXHAUSTED),
            #[cfg(feature = "nonsecure-vault")]
            Vault::NonSecure => {
                let id = last.checked_add(1).ok_or(EXHAUSTED)?;
                psa.store_state(StateId::SessionId, &id.to_be_bytes())?;
                Ok(id)
            }
        }
    }

    /// Appends a key operation and its result to the audit log; the entry's
    /// sequence number.
    pub(crate) fn audit_append(&mut self, psa: &mut Psa, op: AuditOp, key_id: u32, result: i32) -> Result<u64, Error> {
        match self {
            #[cfg(feature = "partition-vault")]
            Vault::Partition(c) => Ok(c.audit_append(op as u8, key_id, result)?),
            #[cfg(feature = "nonsecure-vault")]
            Vault::NonSecure => {
                Ok(tfmprov_partition::audit::append_in(&mut Ps(psa), &mut ring_buffer(), op as u8, key_id, result)?)
            }
        }
    }

    /// The audit entries from sequence number `from` on, oldest first, as
    /// many as fit `out`.
    pub fn audit_read(&mut self, psa: &mut Psa, from: u64, out: &mut [AuditEntry]) -> Result<AuditRead, Error> {
        match self {
            #[cfg(feature = "partition-vault")]
            Vault::Partition(c) => Ok(c.audit_read(from, out)?),
            #[cfg(feature = "nonsecure-vault")]
            Vault::NonSecure => Ok(tfmprov_partition::audit::read_in(&Ps(psa), &mut ring_buffer(), from, out)?),
        }
    }
}

impl From<tfmprov_partition::Error> for Error {
    fn from(e: tfmprov_partition::Error) -> Self {
        Error::Vault(e)
    }
}

/// The result code an audit entry records: 0, or the group rc the caller got.
fn result_code<T, E: Clone + Into<Error>>(result: &Result<T, E>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => i32::from(e.clone().into().group_rc().code()),
    }
}

impl crate::Device {
    /// Records a key operation and its outcome in the audit log. The
    /// operation has happened whatever the log says, so a failure to write
    /// the entry does not change its answer: it is counted, and the count
    /// is reported with the log ([`crate::Device::audit_log`]).
    pub(crate) fn audit<T, E: Clone + Into<Error>>(&mut self, op: AuditOp, key_id: u32, result: &Result<T, E>) {
        if self.vault.audit_append(&mut self.psa, op, key_id, result_code(result)).is_err() {
            self.audit_missed = self.audit_missed.saturating_add(1);
        }
    }

    /// Whether the counters and the audit log are in the secure partition.
    pub fn vault_is_secure(&self) -> bool {
        self.vault.is_secure()
    }

    /// The audit entries from sequence number `from` on (oldest first, the
    /// whole ring at most), with the ring's oldest and next numbers.
    pub fn audit_entries(&mut self, from: u64) -> Result<(alloc::vec::Vec<AuditEntry>, AuditRead), Error> {
        let mut entries = alloc::vec![AuditEntry::default(); AUDIT_MAX];
        let read = self.vault.audit_read(&mut self.psa, from, &mut entries)?;
        entries.truncate(read.count);
        Ok((entries, read))
    }

    /// The audit log from sequence number `from` on, as the CBOR `AuditLog`
    /// of docs/smp.md (`tfmprov_smp::AuditLog`): `{"secure", "oldest",
    /// "next", "missed", "entries": [* [seq, op, id, rc] / [seq]]}`, a
    /// corrupted entry reduced to its sequence number.
    pub fn audit_log(&mut self, from: u64) -> Result<alloc::vec::Vec<u8>, Error> {
        let (entries, read) = self.audit_entries(from)?;
        let mut e = tfmprov_cbor::Enc::with_capacity(48 + entries.len() * 20);
        e.map(5).text("secure").bool(self.vault.is_secure());
        e.text("oldest").uint(read.oldest).text("next").uint(read.next);
        e.text("missed").uint(self.audit_missed.into());
        e.text("entries").array(entries.len() as u64);
        for a in &entries {
            if a.corrupted {
                e.array(1).uint(a.seq);
            } else {
                e.array(4).uint(a.seq).uint(a.op.into()).uint(a.key_id.into()).int(a.result.into());
            }
        }
        Ok(e.finish())
    }
}
