//! The C ABI (`include/tfmprov.h`). This is the only module with `unsafe`:
//! each function checks its pointers, turns them into slices and calls the
//! safe code of [`crate::state`]. Plus, on the device only, the global
//! allocator and the panic handler.
//!
//! Pointer rules for every function: a pointer with a length may be NULL only
//! when the length is 0; a NULL where data is needed is
//! `TFMPROV_ERR_INVALID_ARGUMENT` (`-MGMT_ERR_EINVAL` for the SMP call), never
//! a crash. Buffers are only used during the call.

use alloc::vec::Vec;
use core::ffi::{c_char, CStr};
use core::ptr;

use crate::state;
use crate::{TfmprovSmpRsp, TFMPROV_ERR_BUFFER_TOO_SMALL, TFMPROV_ERR_INVALID_ARGUMENT, TFMPROV_OK};

/// Most arguments `tfmprov_shell` accepts (Zephyr's shell passes at most
/// `CONFIG_SHELL_ARGC_MAX`, 20 by default).
const MAX_ARGS: usize = 64;

/// `len` bytes at `ptr` as a slice; `None` for NULL with `len > 0` or a
/// length no object can have.
///
/// # Safety
/// If `ptr` is not NULL it must be valid for reads of `len` bytes, not
/// written by anyone else, for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, len in range, and the caller guarantees `len`
    // readable bytes that nobody writes for 'a.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// `len` writable bytes at `ptr`; `None` for NULL with `len > 0`.
///
/// # Safety
/// If `ptr` is not NULL it must be valid for reads and writes of `len` bytes
/// and not accessed by anyone else for `'a`.
unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, len in range, exclusive and valid per the caller.
    Some(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// A NUL-terminated C string as UTF-8; `None` for NULL or non-UTF-8.
///
/// # Safety
/// If `ptr` is not NULL it must point to a NUL-terminated string that stays
/// unchanged for `'a`.
unsafe fn text<'a>(ptr: *const c_char) -> Option<&'a str> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per the caller.
    unsafe { CStr::from_ptr(ptr) }.to_str().ok()
}

/// Boots the device: `psa_crypto_init`, the boot RNG check, the telemetry
/// counters. Returns `TFMPROV_OK`, `TFMPROV_RNG_BROKEN` (booted, random keys
/// refused: log `tfmprov_strerror`) or a negative `TFMPROV_ERR_*`.
///
/// # Safety
/// `device_id` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_init(device_id: *const c_char) -> i32 {
    // SAFETY: forwarded from this function's contract.
    match unsafe { text(device_id) } {
        Some(id) => state::init(id),
        None => TFMPROV_ERR_INVALID_ARGUMENT,
    }
}

/// Handles one SMP request of groups 64/65/66. `req[0..req_len]` is the
/// request's CBOR map. Returns 0 and fills `*rsp` (bytes in
/// `data[0..rsp->data_len]`), a DESIGN.md group rc (> 0: answer with
/// `smp_add_cmd_err`) or `-MGMT_ERR_x` (< 0: return `-rc` from the handler).
///
/// # Safety
/// `req` is valid for `req_len` bytes, `data` for `data_cap` writable bytes,
/// `rsp` is NULL or points to a writable `struct tfmprov_smp_rsp`; none of
/// them overlap.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_smp_handle(
    group: u16,
    cmd: u8,
    op: u8,
    req: *const u8,
    req_len: usize,
    data: *mut u8,
    data_cap: usize,
    rsp: *mut TfmprovSmpRsp,
) -> i32 {
    const EINVAL: i32 = -3; // -MGMT_ERR_EINVAL
    if rsp.is_null() {
        return EINVAL;
    }
    // SAFETY: non-NULL, and per the contract writable, aligned and not
    // aliased by `req` or `data` during this call.
    let rsp = unsafe { &mut *rsp };
    *rsp = TfmprovSmpRsp::default();
    // SAFETY: forwarded from this function's contract.
    let (Some(req), Some(data)) = (unsafe { bytes(req, req_len) }, unsafe { bytes_mut(data, data_cap) }) else {
        return EINVAL;
    };
    state::smp_handle(group, cmd, op, req, data, rsp)
}

/// The MGMT_ERR an SMP v1 client gets instead of group rc `group_rc`
/// (for `struct mgmt_group.mg_translate_error`).
#[no_mangle]
pub extern "C" fn tfmprov_smp_v1_rc(group_rc: u16) -> i32 {
    state::smp_v1_rc(group_rc)
}

/// Runs one shell command (`argv` with or without the leading "prov").
/// The text to print (result or error message) is always written to `out`
/// NUL-terminated (when `out_cap > 0`); `*out_len` gets its length. Returns
/// `TFMPROV_OK` or a `TFMPROV_ERR_*` code.
///
/// # Safety
/// `argv` points to `argc` NUL-terminated strings; `out` is valid for
/// `out_cap` writable bytes; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_shell(
    argc: usize,
    argv: *const *const c_char,
    out: *mut c_char,
    out_cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let Some(out) = (unsafe { bytes_mut(out.cast::<u8>(), out_cap) }) else {
        return TFMPROV_ERR_INVALID_ARGUMENT;
    };
    // SAFETY: forwarded from this function's contract.
    let (code, len) = match unsafe { shell_args(argc, argv) } {
        Some(args) => state::shell(&args, out),
        None => {
            let (len, _) = state::write_text(out, "error: invalid arguments (NULL, too many or not UTF-8)");
            (TFMPROV_ERR_INVALID_ARGUMENT, len)
        }
    };
    if !out_len.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_len.write(len) };
    }
    code
}

/// The argument vector of `tfmprov_shell` as UTF-8 strings; `None` for a
/// NULL vector or string, more than [`MAX_ARGS`] or non-UTF-8.
///
/// # Safety
/// `argv` is NULL or points to `argc` pointers, each NULL or a
/// NUL-terminated string, unchanged for `'a`.
unsafe fn shell_args<'a>(argc: usize, argv: *const *const c_char) -> Option<Vec<&'a str>> {
    if argc > MAX_ARGS {
        return None;
    }
    if argc == 0 {
        return Some(Vec::new());
    }
    if argv.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and argc (<= MAX_ARGS) pointers are readable there
    // per the contract.
    let ptrs = unsafe { core::slice::from_raw_parts(argv, argc) };
    // SAFETY: each pointer is NULL or a NUL-terminated string per the contract.
    ptrs.iter().map(|&p| unsafe { text(p) }).collect()
}

/// Writes the MQTT topic of `kind` (`TFMPROV_MQTT_*`) to `out`,
/// NUL-terminated: `prov/{device_id}/{data|session|sealed|errors|cmd|reply}`.
///
/// # Safety
/// `out` is valid for `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_topic(kind: u8, out: *mut c_char, cap: usize) -> i32 {
    // SAFETY: forwarded from this function's contract.
    match unsafe { bytes_mut(out.cast::<u8>(), cap) } {
        Some(out) => state::mqtt_topic(kind, out),
        None => TFMPROV_ERR_INVALID_ARGUMENT,
    }
}

/// The MQTT QoS to publish (or subscribe) `kind` with: data 1, session 2,
/// sealed 1, errors 1, cmd 1, reply 1; a negative `TFMPROV_ERR_*` for an unknown kind.
#[no_mangle]
pub extern "C" fn tfmprov_mqtt_qos(kind: u8) -> i32 {
    state::mqtt_qos(kind)
}

/// Chooses the device key (0x00000001..0x0FFFFFFF) that signs `data` and
/// `session` messages; the default is 0x00000003, the sample key enrolled
/// into the chain. Returns `TFMPROV_OK`, or `TFMPROV_ERR_DEVICE_BASE - 4`
/// (invalid argument) for an ID outside the device-key range. The key need
/// not exist yet: messages fail with not found until it does.
#[no_mangle]
pub extern "C" fn tfmprov_mqtt_set_key(key_id: u32) -> i32 {
    state::mqtt_set_key(key_id)
}

/// Builds the next `data` (kind 0, signs `payload`), `session` (kind 1, a new
/// session key; `payload` is the caller's uptime in milliseconds as 8
/// big-endian bytes, the clock of the rotation policy) or `sealed` (kind 2,
/// encrypts `payload` under the session key) message into `out`; `*out_len`
/// gets its length.
///
/// # Safety
/// `payload` is valid for `len` bytes, `out` for `cap` writable bytes,
/// `out_len` is writable; they do not overlap.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_next(
    kind: u8,
    payload: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: forwarded from this function's contract.
    unsafe { build_into(payload, len, out, cap, out_len, |payload, out| state::mqtt_next(kind, payload, out)) }
}

/// 1 when a `session` message must be published before the next `sealed`
/// one (no session yet, or the rotation policy's message count or age is
/// reached at `now_ms`, the caller's uptime), 0 when not; negative
/// `TFMPROV_ERR_*` on error.
#[no_mangle]
pub extern "C" fn tfmprov_mqtt_session_due(now_ms: u64) -> i32 {
    state::mqtt_session_due(now_ms)
}

/// Writes the sample telemetry payload, CBOR `{"n": counter, "t": uptime_ms}`,
/// to `out`; `*out_len` gets its length.
///
/// # Safety
/// `out` is valid for `cap` writable bytes and `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_sample(
    counter: u64,
    uptime_ms: u64,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: no input; the rest forwarded from this function's contract.
    unsafe { build_into(ptr::null(), 0, out, cap, out_len, |_, out| state::mqtt_sample(counter, uptime_ms, out)) }
}

/// Writes certificate `which` of the device's mutual-TLS identity to `out`,
/// DER; `*out_len` gets its length: `TFMPROV_TLS_LEAF` (the certificate of
/// the key `tfmprov_mqtt_tls_key` names), `TFMPROV_TLS_INTERMEDIATE`
/// (0x3F000002; not found when none is stored: send the leaf alone) or
/// `TFMPROV_TLS_ROOT` (0x3F000000, the trust anchor for the broker's
/// chain); `TFMPROV_ERR_DEVICE_BASE - 2` (not found) when it is not stored.
/// The private key never leaves PSA: the TLS stack signs with its ID.
///
/// # Safety
/// `out` is valid for `cap` writable bytes and `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_tls_cert(which: u8, out: *mut u8, cap: usize, out_len: *mut usize) -> i32 {
    // SAFETY: no input; the rest forwarded from this function's contract.
    unsafe { build_into(ptr::null(), 0, out, cap, out_len, |_, out| state::mqtt_tls_cert(which, out)) }
}

/// Writes to `*key_id` the PSA ID of the key that signs the TLS handshake:
/// the telemetry key (`tfmprov_mqtt_set_key`, or the key a remote `use-key`
/// switched to since). Read it at each connection.
///
/// # Safety
/// `key_id` is writable.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_tls_key(key_id: *mut u32) -> i32 {
    if key_id.is_null() {
        return TFMPROV_ERR_INVALID_ARGUMENT;
    }
    let (code, id) = match state::mqtt_tls_key() {
        Ok(id) => (TFMPROV_OK, id),
        Err(code) => (code, 0),
    };
    // SAFETY: non-NULL, and writable per the contract.
    unsafe { key_id.write(id) };
    code
}

/// Checks the broker's TLS leaf certificate (DER, as the TLS stack received
/// it) against the key pinned at enrollment: `TFMPROV_OK` when its
/// SubjectPublicKeyInfo is that of the broker certificate stored at
/// 0x3F000003 (the key the pin names), `TFMPROV_ERR_MISMATCH` when it
/// carries another key, another `TFMPROV_ERR_*` when the certificate is
/// malformed or no pin is stored. Called from the TLS
/// stack's verify callback; the chain and the name are checked there too.
///
/// # Safety
/// `cert` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_tls_check_broker(cert: *const u8, len: usize) -> i32 {
    // SAFETY: forwarded from this function's contract.
    match unsafe { bytes(cert, len) } {
        Some(cert) => state::mqtt_tls_check_broker(cert),
        None => TFMPROV_ERR_INVALID_ARGUMENT,
    }
}

/// The shape of every call that builds a message: `len` bytes of input at
/// `input` (none: NULL and 0), the message written to `out`, its length to
/// `*out_len` (0 on error), the code returned. NULL where data is needed is
/// `TFMPROV_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `input` is NULL or valid for `len` bytes, `out` NULL or valid for `cap`
/// writable bytes, `out_len` NULL or writable; they do not overlap.
unsafe fn build_into(
    input: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
    build: impl FnOnce(&[u8], &mut [u8]) -> Result<usize, i32>,
) -> i32 {
    if out_len.is_null() {
        return TFMPROV_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded from this function's contract.
    let (Some(input), Some(out)) = (unsafe { bytes(input, len) }, unsafe { bytes_mut(out, cap) }) else {
        return TFMPROV_ERR_INVALID_ARGUMENT;
    };
    let (code, n) = match build(input, out) {
        Ok(n) => (TFMPROV_OK, n),
        Err(code) => (code, 0),
    };
    // SAFETY: non-NULL, and writable per the contract.
    unsafe { out_len.write(n) };
    code
}

/// Handles one remote command, the body of a message received on
/// `prov/{id}/cmd`: `out` gets the body to publish on `prov/{id}/reply`
/// (QoS 1), `*out_len` its length. Commands that are refused (bad
/// signature, replayed, stale) are answered too, with the refusal. Only
/// after that reply is published may the command be acknowledged (PUBACK):
/// on an error code nothing was answered, and the command must stay
/// unacknowledged so that the broker delivers it again. A copy of the last
/// command (a QoS 1 redelivery) never runs twice: a write is answered with
/// its stored reply, a read is read again.
///
/// # Safety
/// `msg` is valid for `len` bytes, `out` for `cap` writable bytes,
/// `out_len` is writable; they do not overlap.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_command(
    msg: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: forwarded from this function's contract.
    unsafe { build_into(msg, len, out, cap, out_len, state::mqtt_command) }
}

/// Writes the signed announcement of the device's key-agreement key (for
/// `prov/{id}/reply`, QoS 1, once per connection; docs/remote.md) to `out`;
/// `*out_len` gets its length. Uses the telemetry key and its next `seq`.
///
/// # Safety
/// `out` is valid for `cap` writable bytes and `out_len` is writable.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_announce(out: *mut u8, cap: usize, out_len: *mut usize) -> i32 {
    // SAFETY: no input; the rest forwarded from this function's contract.
    unsafe { build_into(ptr::null(), 0, out, cap, out_len, |_, out| state::mqtt_announce(out)) }
}

/// Decodes an `errors` topic report into one log line in `out`
/// (NUL-terminated, truncated to `cap`).
///
/// # Safety
/// `msg` is valid for `len` bytes, `out` for `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tfmprov_mqtt_on_error(msg: *const u8, len: usize, out: *mut c_char, cap: usize) -> i32 {
    // SAFETY: forwarded from this function's contract.
    let (Some(msg), Some(out)) = (unsafe { bytes(msg, len) }, unsafe { bytes_mut(out.cast::<u8>(), cap) }) else {
        return TFMPROV_ERR_INVALID_ARGUMENT;
    };
    if out.is_empty() {
        return TFMPROV_ERR_BUFFER_TOO_SMALL;
    }
    state::mqtt_on_error(msg, out)
}

/// A static, NUL-terminated message for any code returned by this ABI
/// (except the SMP call's group rc / MGMT_ERR codes).
#[no_mangle]
pub extern "C" fn tfmprov_strerror(rc: i32) -> *const c_char {
    state::strerror(rc).as_ptr()
}

/// `sizeof(psa_key_attributes_t)` as this library was compiled; the C side
/// checks it against its own at boot (see docs/firmware.md).
#[no_mangle]
pub extern "C" fn tfmprov_psa_key_attributes_size() -> usize {
    crate::PSA_KEY_ATTRIBUTES_SIZE
}

const _: () = assert!(TFMPROV_OK == 0);

/// Zephyr's system heap as Rust's global allocator: one heap for C and Rust,
/// sized by `CONFIG_HEAP_MEM_POOL_SIZE`, thread-safe (the heap's spinlock is
/// held only inside the allocator, never across a PSA call).
#[cfg(target_os = "none")]
mod zephyr_heap {
    use core::alloc::{GlobalAlloc, Layout};
    use core::ffi::c_void;

    extern "C" {
        /// Zephyr `k_aligned_alloc` (kernel/mempool.c): NULL or `size` bytes
        /// aligned to `align` (a power of two, multiple of `sizeof(void *)`).
        fn k_aligned_alloc(align: usize, size: usize) -> *mut c_void;
        /// Zephyr `k_free`: frees a block of `k_aligned_alloc` (NULL is a no-op).
        fn k_free(ptr: *mut c_void);
    }

    struct ZephyrHeap;

    // SAFETY: alloc returns NULL or a block of at least layout.size() bytes
    // with at least layout.align() alignment, owned by the caller until the
    // matching dealloc; k_aligned_alloc/k_free are callable from any thread.
    unsafe impl GlobalAlloc for ZephyrHeap {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let align = layout.align().max(core::mem::size_of::<*mut c_void>());
            // SAFETY: `align` is a power of two and a multiple of
            // sizeof(void *), as k_aligned_alloc requires.
            unsafe { k_aligned_alloc(align, layout.size()) }.cast::<u8>()
        }

        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: per GlobalAlloc's contract `ptr` came from `alloc` above,
            // i.e. from k_aligned_alloc, and is freed once.
            unsafe { k_free(ptr.cast::<c_void>()) }
        }
    }

    #[global_allocator]
    static HEAP: ZephyrHeap = ZephyrHeap;
}

/// A panic is a firmware bug (device paths return errors instead): stop
/// through the C library's `abort()`, which Zephyr routes to its fatal error
/// handler (the `panic = "abort"` profile has no unwinding).
#[cfg(all(not(test), target_os = "none"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    extern "C" {
        fn abort() -> !;
    }
    // SAFETY: abort takes no arguments and does not return.
    unsafe { abort() }
}
