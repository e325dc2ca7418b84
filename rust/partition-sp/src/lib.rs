//! The provisioning secure partition as TF-M links it (issue 15): a
//! `no_std`, heap-free staticlib for the secure image
//! (`thumbv8m.main-none-eabi`, built by `tfm-partition/tfmprov/CMakeLists.txt`)
//! whose two entry points the partition's manifest names
//! (`tfm-partition/tfmprov/tfmprov_partition.yaml`, SFN model, one
//! stateless service):
//!
//! - [`ffi::tfmprov_sp_init`]: the partition's init, before the non-secure
//!   image runs: the boot RNG record;
//! - [`ffi::tfmprov_sp_sfn`]: one `psa_call`: the request read with
//!   `psa_read`, served by [`tfmprov_partition::Partition::dispatch`], the
//!   answer written with `psa_write`, the status returned to the SPM.
//!
//! Everything it decides is in `tfmprov-partition`, where host tests reach
//! it; [`ffi`] is the only module with `unsafe`.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// On the host (`cargo build --workspace`) std provides the panic handler;
// in the secure image `ffi` does (psa_panic).
#[cfg(not(target_os = "none"))]
extern crate std;

pub mod ffi;
