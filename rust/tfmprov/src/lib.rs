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
