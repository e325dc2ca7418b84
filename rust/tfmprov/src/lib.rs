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
/// text: a heading, then one line per entry, as the device's `prov audit`
/// prints it.
pub fn audit_text(log: &tfmprov_smp::AuditLog) -> anyhow::Result<String> {
    use std::fmt::Write;
    let records = log.records().map_err(|e| anyhow::anyhow!("the device's audit log is malformed: {e:?}"))?;
    let home = if log.secure { "secure partition" } else { "non-secure fallback" };
    let mut t = format!("audit log ({home}): oldest #{}, next #{}, missed {}\n", log.oldest, log.next, log.missed);
    for r in records {
        match r.what {
            Some((op, id, rc)) => {
                writeln!(t, "#{} {:<16} id 0x{id:08x} rc {rc}", r.seq, tfmprov_device::vault::AuditOp::name(op))?
            }
            None => writeln!(t, "#{} corrupted record (not trusted)", r.seq)?,
        }
    }
    Ok(t)
}
