//! The C ABI between the Zephyr application (`src/*.c` at the repository
//! root) and the [`tfmprov_device`] crate, built as a `no_std` staticlib for
//! Cortex-M33 (`thumbv8m.main-none-eabi`, or `-eabihf` with
//! `CONFIG_FP_HARDABI`). `include/tfmprov.h` is generated from this crate by
//! cbindgen (`scripts/check-header`).
//!
//! Layout:
//! - [`ffi`]: the only module with `unsafe`: the `extern "C"` functions,
//!   pointer/length checks, the global allocator (Zephyr's `k_aligned_alloc`
//!   / `k_free`) and the panic handler;
//! - [`state`]: safe code behind each C function: the device static, the
//!   SMP response descriptor, text and byte copy-out rules;
//! - this file: the return codes and the response descriptor shared with C.
//!
//! Everything the firmware decides is here or in `tfmprov-device`, where the
//! host tests reach it; the C glue only moves bytes and calls Zephyr APIs.
//! See `docs/firmware.md`.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// On the host (tests, `cargo build --workspace`) link std so that its panic
// handler and allocator are used; on the device (`target_os = "none"`) the
// crate is pure `core` + `alloc` and `ffi` provides both.
#[cfg(not(target_os = "none"))]
extern crate std;

extern crate alloc;

pub mod ffi;
pub mod state;

/// `sizeof(psa_key_attributes_t)` in this library: the bindgen view of the
/// PSA headers it was built against (`MBEDTLS_INCLUDE_DIR`).
pub const PSA_KEY_ATTRIBUTES_SIZE: usize = core::mem::size_of::<psa_crypto::ffi::psa_key_attributes_t>();

/// Parses a decimal `usize` at compile time (`None` if not all digits).
const fn parse_usize(s: &str) -> Option<usize> {
    let mut rest = s.as_bytes();
    if rest.is_empty() {
        return None;
    }
    let mut value: usize = 0;
    while let [digit, tail @ ..] = rest {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = match value.checked_mul(10) {
            Some(x) => match x.checked_add((*digit - b'0') as usize) {
                Some(y) => y,
                None => return None,
            },
            None => return None,
        };
        rest = tail;
    }
    Some(value)
}

// The C side and Rust must agree on the PSA key attributes struct, which
// Rust allocates and TF-M's client code fills in. The build passes the C
// compiler's `sizeof(psa_key_attributes_t)` (same headers, same defines,
// same `-fshort-enums`) as TFMPROV_C_SIZEOF_PSA_KEY_ATTRIBUTES; a mismatch
// fails this build. (scripts/cross-build and the Zephyr CMakeLists.txt
// measure it; `tfmprov_psa_key_attributes_size()` lets C re-check at boot.)
const _: () = match option_env!("TFMPROV_C_SIZEOF_PSA_KEY_ATTRIBUTES") {
    None => {}
    Some(s) => match parse_usize(s) {
        Some(c_size) => assert!(
            c_size == PSA_KEY_ATTRIBUTES_SIZE,
            "sizeof(psa_key_attributes_t) differs between C and Rust: check the PSA headers, defines and -fshort-enums"
        ),
        None => panic!("TFMPROV_C_SIZEOF_PSA_KEY_ATTRIBUTES is not a decimal number"),
    },
};

/// Success.
pub const TFMPROV_OK: i32 = 0;
/// `tfmprov_init` only: booted, but the boot RNG check found the random
/// stream repeating (DESIGN.md): random keys and sessions are refused, known
/// values and signing work. The C side logs `tfmprov_strerror(1)`.
pub const TFMPROV_RNG_BROKEN: i32 = 1;
/// `tfmprov_init` has not succeeded yet.
pub const TFMPROV_ERR_NOT_INITIALIZED: i32 = -1;
/// Another call holds the device (the C side serialises calls, so this is a
/// glue bug, reported instead of waited for).
pub const TFMPROV_ERR_BUSY: i32 = -2;
/// A NULL pointer, text that is not UTF-8, or an unknown `kind`.
pub const TFMPROV_ERR_INVALID_ARGUMENT: i32 = -3;
/// The output buffer is too small (text output is still NUL-terminated).
pub const TFMPROV_ERR_BUFFER_TOO_SMALL: i32 = -4;
/// `tfmprov_init` was already called successfully.
pub const TFMPROV_ERR_ALREADY_INITIALIZED: i32 = -5;
/// Base of the device errors: a device error whose DESIGN.md group return
/// code is `rc` (1..=9) is returned as `TFMPROV_ERR_DEVICE_BASE - rc`
/// (-17 unknown .. -25 locked).
pub const TFMPROV_ERR_DEVICE_BASE: i32 = -16;
/// The device error "not found" (group code 2): nothing stored at the ID.
pub const TFMPROV_ERR_NOT_FOUND: i32 = TFMPROV_ERR_DEVICE_BASE - 2;
/// The device error "mismatch" (group code 7): for
/// `tfmprov_mqtt_tls_check_broker`, the broker's key is not the pinned one.
pub const TFMPROV_ERR_MISMATCH: i32 = TFMPROV_ERR_DEVICE_BASE - 7;

/// `tfmprov_smp_rsp.fields`: the response has `"id": uint`.
pub const TFMPROV_RSP_ID: u32 = 1 << 0;
/// `tfmprov_smp_rsp.fields`: the response has `"pub": bstr` (`data`).
pub const TFMPROV_RSP_PUB: u32 = 1 << 1;
/// `tfmprov_smp_rsp.fields`: the response has `"present": bool`.
pub const TFMPROV_RSP_PRESENT: u32 = 1 << 2;
/// `tfmprov_smp_rsp.fields`: the response has `"csr": bstr` (`data`).
pub const TFMPROV_RSP_CSR: u32 = 1 << 3;
/// `tfmprov_smp_rsp.fields`: the response has `"cert": bstr` (`data`).
pub const TFMPROV_RSP_CERT: u32 = 1 << 4;
/// `tfmprov_smp_rsp.fields`: the response has `"log": bstr` (`data`, the
/// CBOR audit log of docs/smp.md).
pub const TFMPROV_RSP_LOG: u32 = 1 << 5;

/// `tfmprov_mqtt_*` kind: the signed `data` message.
pub const TFMPROV_MQTT_DATA: u8 = 0;
/// `tfmprov_mqtt_*` kind: the `session` message (new session key).
pub const TFMPROV_MQTT_SESSION: u8 = 1;
/// `tfmprov_mqtt_*` kind: the `sealed` message (under the session key).
pub const TFMPROV_MQTT_SEALED: u8 = 2;
/// `tfmprov_mqtt_*` kind: the `errors` topic (server to device).
pub const TFMPROV_MQTT_ERRORS: u8 = 3;
/// `tfmprov_mqtt_*` kind: the `cmd` topic (remote commands, server to
/// device; subscribe with QoS 1 and a persistent session).
pub const TFMPROV_MQTT_CMD: u8 = 4;
/// `tfmprov_mqtt_*` kind: the `reply` topic (answers to remote commands and
/// the KAK announcement, device to server).
pub const TFMPROV_MQTT_REPLY: u8 = 5;

/// `tfmprov_mqtt_tls_cert`: the device's certificate for the telemetry key
/// (the TLS client certificate).
pub const TFMPROV_TLS_LEAF: u8 = 0;
/// `tfmprov_mqtt_tls_cert`: the intermediate CA certificate (0x3F000002),
/// sent after the leaf; not found when none is stored.
pub const TFMPROV_TLS_INTERMEDIATE: u8 = 1;
/// `tfmprov_mqtt_tls_cert`: the CA root (0x3F000000) the broker's chain
/// must verify to.
pub const TFMPROV_TLS_ROOT: u8 = 2;

/// The successful answer of one SMP request of groups 64/65/66, as the C
/// handler encodes it with zcbor: for every bit set in `fields`, in bit
/// order, one map entry (`"id"`, `"pub"`, `"present"`, `"csr"`, `"cert"`).
/// The byte strings are `data[0..data_len]` of the caller's buffer.
/// `fields == 0` is the empty map `{}`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TfmprovSmpRsp {
    /// `TFMPROV_RSP_*` bits.
    pub fields: u32,
    /// The key ID (with `TFMPROV_RSP_ID`).
    pub id: u32,
    /// Whether the key exists (with `TFMPROV_RSP_PRESENT`).
    pub present: bool,
    /// Bytes of `pub` / `csr` / `cert` written to the caller's `data`.
    pub data_len: usize,
}
