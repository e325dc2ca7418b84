//! The `tfmprov` command's library: each subcommand's work lives here so the
//! binary stays a thin argument parser and tests can drive the same code.
//!
//! - [`sim`]: `device-sim`, the firmware core as a device on the host;
//! - [`target`]: naming a device and its SMP link (`ID@udp:HOST:PORT`);
//! - [`enroll`]: key, CSR, CA, certificate storage, registration, for one device;
//! - [`batch`]: many devices with a progress bar and a summary;
//! - [`demo`]: the whole system on its embedded defaults;
//! - [`credential`]: the operator token the CLI sends;
//! - [`admin`]: operators and the audit log of a server.

pub mod admin;
pub mod batch;
pub mod credential;
pub mod demo;
pub mod enroll;
pub mod remote;
pub mod sim;
pub mod target;

/// A device's audit log (`tfmprov keys audit`, `tfmprov remote audit`) as
/// text, by the device's own formatter (`prov audit` prints the same).
pub fn audit_text(log: &tfmprov_smp::AuditLog) -> anyhow::Result<String> {
    use tfmprov_device::vault::AuditEntry;
    let records = log.records().map_err(|e| anyhow::anyhow!("the device's audit log is malformed: {e:?}"))?;
    let entries: Vec<AuditEntry> = records
        .iter()
        .map(|r| match r.what {
            Some((op, key_id, result)) => AuditEntry { seq: r.seq, op, key_id, result, corrupted: false },
            None => AuditEntry { seq: r.seq, corrupted: true, ..AuditEntry::default() },
        })
        .collect();
    Ok(tfmprov_device::vault::audit_text(log.secure, log.oldest, log.next, log.missed, &entries))
}
