//! Safe code behind each C function: the device static and the rules for
//! copying answers into the caller's buffers. [`crate::ffi`] only turns raw
//! pointers into slices and calls these.
//!
//! # Why a spin mutex that never spins
//!
//! The C glue calls in from several Zephyr threads: `main` (init, factory at
//! boot), the SMP transport's work queue, the shell thread and the MQTT
//! thread. The [`Device`] (and PSA behind it) must be used by one at a time.
//! The C side serialises its calls with a `k_mutex` (a sleeping lock with
//! priority inheritance, `src/tfmprov_glue.c`). Rust keeps its own guard for
//! memory safety, but never waits on it: [`DEVICE`] is only ever
//! `try_lock`ed, and contention is reported as busy. Spinning would be wrong
//! on a preemptive single core (a higher-priority thread spinning on the lock
//! never lets the lower-priority holder run), and a `critical-section`
//! (interrupts masked) cannot be held across a PSA call, which is a
//! TrustZone call into TF-M that takes milliseconds and that Zephyr's TF-M
//! NS interface itself guards with a `k_mutex`.
#![deny(unsafe_code)]

use alloc::string::String;
use core::ffi::CStr;
use alloc::vec::Vec;
use spin::mutex::SpinMutex;
use tfmprov_cose::remote::{self, Direction};
use tfmprov_cose::topic::{self, Kind};
use tfmprov_device::psa::rng::RngHealth;
use tfmprov_device::{Device, Error, Response};
use tfmprov_smp::{GroupRc, HandlerError, MgmtErr, Op};

use crate::*;

/// The one device of this firmware, created by [`init`].
static DEVICE: SpinMutex<Option<Device>> = SpinMutex::new(None);

/// Why the device could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// [`init`] has not succeeded.
    NotInitialized,
    /// Another call holds it.
    Busy,
}

impl Unavailable {
    /// The `TFMPROV_ERR_*` code.
    pub fn code(self) -> i32 {
        match self {
            Unavailable::NotInitialized => TFMPROV_ERR_NOT_INITIALIZED,
            Unavailable::Busy => TFMPROV_ERR_BUSY,
        }
    }

    /// The SMP answer: `-MGMT_ERR_EBADSTATE` / `-MGMT_ERR_EBUSY`.
    pub fn smp_code(self) -> i32 {
        match self {
            Unavailable::NotInitialized => -i32::from(MgmtErr::EBadState.code()),
            Unavailable::Busy => -i32::from(MgmtErr::EBusy.code()),
        }
    }
}

/// Runs `f` with the device, without ever waiting for the lock.
pub fn with_device<R>(f: impl FnOnce(&mut Device) -> R) -> Result<R, Unavailable> {
    let mut guard = DEVICE.try_lock().ok_or(Unavailable::Busy)?;
    let device = guard.as_mut().ok_or(Unavailable::NotInitialized)?;
    Ok(f(device))
}

/// The `TFMPROV_ERR_DEVICE_BASE - rc` code of a device error.
pub fn device_error_code(e: &Error) -> i32 {
    TFMPROV_ERR_DEVICE_BASE - i32::from(e.group_rc().code())
}

/// `tfmprov_init`: boots the device (PSA init, boot RNG check) once.
pub fn init(device_id: &str) -> i32 {
    let Some(mut slot) = DEVICE.try_lock() else {
        return TFMPROV_ERR_BUSY;
    };
    if slot.is_some() {
        return TFMPROV_ERR_ALREADY_INITIALIZED;
    }
    match Device::boot_with(device_id, vault()) {
        Ok(device) => {
            let broken = device.rng_health() == RngHealth::Repeating;
            *slot = Some(device);
            if broken {
                TFMPROV_RNG_BROKEN
            } else {
                TFMPROV_OK
            }
        }
        Err(e) => device_error_code(&e),
    }
}

/// Where the counters and the audit log live: the secure partition when
/// the firmware is built with it (feature `partition`, Kconfig
/// `TFMPROV_PARTITION`), else the non-secure fallback.
fn vault() -> tfmprov_device::vault::Vault {
    #[cfg(feature = "partition")]
    return tfmprov_device::vault::Vault::partition(tfmprov_partition_client::Tfm);
    #[cfg(not(feature = "partition"))]
    tfmprov_device::vault::Vault::NonSecure
}

/// Host tests only: drops the device so that the next [`init`] boots anew.
#[cfg(not(target_os = "none"))]
pub fn deinit() {
    let mut slot = DEVICE.lock();
    if let Some(device) = slot.take() {
        device.shutdown();
    }
}

/// Fills `rsp` and `data` from a successful response. `Err` is
/// `-MGMT_ERR_EMSGSIZE` when the bytes do not fit `data`.
pub fn describe_response(response: &Response, data: &mut [u8], rsp: &mut TfmprovSmpRsp) -> Result<(), i32> {
    *rsp = TfmprovSmpRsp::default();
    let bytes: &[u8] = match response {
        Response::Key { id, public } => {
            rsp.fields = TFMPROV_RSP_ID | TFMPROV_RSP_PUB;
            rsp.id = *id;
            public
        }
        Response::Status { id, present } => {
            rsp.fields = TFMPROV_RSP_ID | TFMPROV_RSP_PRESENT;
            rsp.id = *id;
            rsp.present = *present;
            &[]
        }
        Response::Empty => &[],
        Response::Csr(der) => {
            rsp.fields = TFMPROV_RSP_CSR;
            der
        }
        Response::Cert(der) => {
            rsp.fields = TFMPROV_RSP_CERT;
            der
        }
        Response::Audit(log) => {
            rsp.fields = TFMPROV_RSP_LOG;
            log
        }
    };
    let dst = data.get_mut(..bytes.len()).ok_or(-i32::from(MgmtErr::EMsgSize.code()))?;
    dst.copy_from_slice(bytes);
    rsp.data_len = bytes.len();
    Ok(())
}

/// The C return value of a handler error: a group rc (> 0) or `-MGMT_ERR_x`.
pub fn handler_error_code(e: HandlerError) -> i32 {
    match e {
        // A group error must be non-zero to be an error at all.
        HandlerError::Group(GroupRc::Ok) => -i32::from(MgmtErr::EUnknown.code()),
        HandlerError::Group(rc) => i32::from(rc.code()),
        HandlerError::Mgmt(MgmtErr::EOk) => -i32::from(MgmtErr::EUnknown.code()),
        HandlerError::Mgmt(e) => -i32::from(e.code()),
    }
}

/// `tfmprov_smp_handle`: one request of groups 64/65/66.
pub fn smp_handle(group: u16, cmd: u8, op: u8, req: &[u8], data: &mut [u8], rsp: &mut TfmprovSmpRsp) -> i32 {
    *rsp = TfmprovSmpRsp::default();
    let Some(op) = Op::from_u8(op) else {
        return -i32::from(MgmtErr::EInval.code());
    };
    let answer = with_device(|device| device.handle_command(op, group, cmd, req));
    match answer {
        Err(unavailable) => unavailable.smp_code(),
        Ok(Err(e)) => handler_error_code(e),
        Ok(Ok(response)) => match describe_response(&response, data, rsp) {
            Ok(()) => TFMPROV_OK,
            Err(code) => code,
        },
    }
}

/// `tfmprov_smp_v1_rc`: the MGMT_ERR an SMP v1 client gets for a group rc
/// (Zephyr calls this through `mgmt_group.mg_translate_error`).
pub fn smp_v1_rc(group_rc: u16) -> i32 {
    let mgmt = GroupRc::from_code(group_rc).map_or(MgmtErr::EUnknown, GroupRc::to_mgmt);
    i32::from(mgmt.code())
}

/// Copies `text` into `out` as a NUL-terminated C string, truncating at a
/// character boundary if needed. Returns the bytes written before the NUL
/// and whether all of `text` fit. An empty `out` gets nothing.
pub fn write_text(out: &mut [u8], text: &str) -> (usize, bool) {
    let Some(room) = out.len().checked_sub(1) else {
        return (0, text.is_empty());
    };
    let mut n = text.len().min(room);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    let (head, tail) = out.split_at_mut(n);
    head.copy_from_slice(&text.as_bytes()[..n]);
    if let Some(nul) = tail.first_mut() {
        *nul = 0;
    }
    (n, n == text.len())
}

/// `tfmprov_shell`: runs one `prov ...` command; the text (result or error
/// message) always goes to `out`. Returns the code and the text length.
pub fn shell(args: &[&str], out: &mut [u8]) -> (i32, usize) {
    let (code, text) = match with_device(|device| device.shell(args)) {
        Ok(Ok(text)) => (TFMPROV_OK, text),
        Ok(Err(e)) => {
            let mut t = tfmprov_device::text::Text::new();
            t.str("error: ");
            e.describe(&mut t);
            (device_error_code(&e), t.into_string())
        }
        Err(unavailable) => (unavailable.code(), String::from(strerror_str(unavailable.code()))),
    };
    let (len, complete) = write_text(out, &text);
    if complete || code != TFMPROV_OK {
        (code, len)
    } else {
        (TFMPROV_ERR_BUFFER_TOO_SMALL, len)
    }
}

/// The topic kind of a C `kind`.
pub fn kind(kind: u8) -> Option<Kind> {
    match kind {
        TFMPROV_MQTT_DATA => Some(Kind::Data),
        TFMPROV_MQTT_SESSION => Some(Kind::Session),
        TFMPROV_MQTT_SEALED => Some(Kind::Sealed),
        TFMPROV_MQTT_ERRORS => Some(Kind::Errors),
        _ => None,
    }
}

/// The topic of a C `kind` for `device_id`, or `None` for an unknown kind.
fn topic_of(kind_raw: u8, device_id: &str) -> Option<String> {
    match kind_raw {
        TFMPROV_MQTT_CMD => Some(remote::envelope_topic(topic::DEFAULT_PREFIX, device_id, Direction::Command)),
        TFMPROV_MQTT_REPLY => Some(remote::envelope_topic(topic::DEFAULT_PREFIX, device_id, Direction::Reply)),
        other => kind(other).map(|k| topic::topic(topic::DEFAULT_PREFIX, device_id, k)),
    }
}

/// `tfmprov_mqtt_topic`: `prov/{device_id}/{kind}`, NUL-terminated. A topic
/// that does not fit is not truncated (that would be another topic): `out`
/// gets the empty string and the call fails.
pub fn mqtt_topic(kind_raw: u8, out: &mut [u8]) -> i32 {
    let name = match with_device(|device| topic_of(kind_raw, device.device_id())) {
        Ok(Some(name)) => name,
        Ok(None) => {
            write_text(out, "");
            return TFMPROV_ERR_INVALID_ARGUMENT;
        }
        Err(unavailable) => {
            write_text(out, "");
            return unavailable.code();
        }
    };
    if name.len() >= out.len() {
        write_text(out, "");
        return TFMPROV_ERR_BUFFER_TOO_SMALL;
    }
    write_text(out, &name);
    TFMPROV_OK
}

/// `tfmprov_mqtt_qos`: the QoS DESIGN.md gives the topic (the highest it
/// allows: data 1, session 2, sealed 1, errors 1, cmd 1, reply 1), or an
/// error code.
pub fn mqtt_qos(kind_raw: u8) -> i32 {
    match kind_raw {
        TFMPROV_MQTT_CMD | TFMPROV_MQTT_REPLY => 1,
        other => kind(other).map_or(TFMPROV_ERR_INVALID_ARGUMENT, |k| i32::from(k.qos())),
    }
}

/// `tfmprov_mqtt_set_key`: the key that signs telemetry.
pub fn mqtt_set_key(key_id: u32) -> i32 {
    let id = match tfmprov_device::psa::ids::DeviceKeyId::new(key_id.into()) {
        Ok(id) => id,
        Err(e) => return device_error_code(&Error::Psa(e)),
    };
    match with_device(|device| device.set_telemetry_key(id)) {
        Ok(()) => TFMPROV_OK,
        Err(unavailable) => unavailable.code(),
    }
}

/// The caller's clock for a session message: `payload` is the uptime in
/// milliseconds as 8 big-endian bytes (`tfmprov_mqtt_next` kind 1).
pub fn session_clock(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.try_into().ok()?))
}

/// Builds the next message of `kind` (data / session / sealed).
fn next_message(device: &mut Device, kind: Kind, payload: &[u8]) -> Result<Vec<u8>, i32> {
    let built = match kind {
        Kind::Data => device.data_message(payload),
        Kind::Session => {
            let now_ms = session_clock(payload).ok_or(TFMPROV_ERR_INVALID_ARGUMENT)?;
            device.session_message(now_ms)
        }
        Kind::Sealed => device.sealed_message(payload),
        Kind::Errors => return Err(TFMPROV_ERR_INVALID_ARGUMENT),
    };
    built.map_err(|e| device_error_code(&e))
}

/// `tfmprov_mqtt_next`: builds the next message of `kind` into `out` and
/// returns its length. A message that does not fit is an error (its `seq`
/// is consumed; the server's replay window tolerates the gap).
pub fn mqtt_next(kind_raw: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, i32> {
    let kind = kind(kind_raw).ok_or(TFMPROV_ERR_INVALID_ARGUMENT)?;
    let message = with_device(|device| next_message(device, kind, payload)).map_err(Unavailable::code)??;
    copy_out(&message, out)
}

/// Copies a built message into the caller's buffer; its length.
fn copy_out(message: &[u8], out: &mut [u8]) -> Result<usize, i32> {
    let dst = out.get_mut(..message.len()).ok_or(TFMPROV_ERR_BUFFER_TOO_SMALL)?;
    dst.copy_from_slice(message);
    Ok(message.len())
}

/// `tfmprov_mqtt_command`: one `prov/{id}/cmd` body in, the
/// `prov/{id}/reply` body to publish out. Every command Rust can answer
/// (refused ones included) gets a reply; an error means no reply could be
/// built (no cloud certificate, storage failing) and the C side must not
/// acknowledge the command, so that the broker delivers it again.
///
/// The firmware has no wall clock, so the command's `exp` is not checked
/// here (docs/remote.md); `cseq` order still refuses a stale copy.
pub fn mqtt_command(msg: &[u8], out: &mut [u8]) -> Result<usize, i32> {
    let reply = with_device(|device| device.remote_command(msg, None)).map_err(Unavailable::code)?;
    copy_out(&reply.map_err(|e| device_error_code(&e))?, out)
}

/// `tfmprov_mqtt_announce`: the signed KAK announcement for
/// `prov/{id}/reply`, published once per connection.
pub fn mqtt_announce(out: &mut [u8]) -> Result<usize, i32> {
    let message = with_device(|device| device.kak_announcement()).map_err(Unavailable::code)?;
    copy_out(&message.map_err(|e| device_error_code(&e))?, out)
}

/// `tfmprov_mqtt_tls_cert`: certificate `which` (`TFMPROV_TLS_*`) of the
/// device's TLS identity into `out`, read again at each connection (a key
/// switched with `use-key`, a certificate replaced, are used at the next
/// one).
pub fn mqtt_tls_cert(which: u8, out: &mut [u8]) -> Result<usize, i32> {
    use tfmprov_device::certs::TlsCert;
    let which = match which {
        TFMPROV_TLS_LEAF => TlsCert::Leaf,
        TFMPROV_TLS_INTERMEDIATE => TlsCert::Intermediate,
        TFMPROV_TLS_ROOT => TlsCert::Root,
        _ => return Err(TFMPROV_ERR_INVALID_ARGUMENT),
    };
    let cert = with_device(|device| device.tls_certificate(which)).map_err(Unavailable::code)?;
    copy_out(&cert.map_err(|e| device_error_code(&e))?, out)
}

/// `tfmprov_mqtt_tls_key`: the PSA ID of the key that signs the handshake.
pub fn mqtt_tls_key() -> Result<u32, i32> {
    let key = with_device(|device| device.active_telemetry_key()).map_err(Unavailable::code)?;
    key.map(|k| k.get()).map_err(|e| device_error_code(&e))
}

/// `tfmprov_mqtt_tls_check_broker`: the broker's TLS leaf certificate
/// carries the pinned key; the mismatch code otherwise.
pub fn mqtt_tls_check_broker(presented: &[u8]) -> i32 {
    match with_device(|device| device.check_broker_key(presented)) {
        Ok(Ok(())) => TFMPROV_OK,
        Ok(Err(e)) => device_error_code(&e),
        Err(unavailable) => unavailable.code(),
    }
}

/// `tfmprov_mqtt_session_due`: 1 when a new session message must be sent
/// before the next sealed one (none yet, or the rotation policy says so), 0
/// when not, or an error code.
pub fn mqtt_session_due(now_ms: u64) -> i32 {
    match with_device(|device| device.session_due(now_ms)) {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(unavailable) => unavailable.code(),
    }
}

/// `tfmprov_mqtt_sample`: the sample telemetry payload
/// `{"n": counter, "t": uptime_ms}` (CBOR) into `out`.
pub fn mqtt_sample(counter: u64, uptime_ms: u64, out: &mut [u8]) -> Result<usize, i32> {
    copy_out(&tfmprov_device::telemetry::sample_payload(counter, uptime_ms), out)
}

/// `tfmprov_mqtt_on_error`: one log line for an `errors` topic report
/// (truncated to `out`, always NUL-terminated). Needs no device.
pub fn mqtt_on_error(msg: &[u8], out: &mut [u8]) -> i32 {
    let line = tfmprov_device::telemetry::describe_error_report(msg);
    match write_text(out, &line) {
        (_, true) => TFMPROV_OK,
        (_, false) => TFMPROV_ERR_BUFFER_TOO_SMALL,
    }
}

/// `tfmprov_strerror`: a fixed, NUL-terminated message for every code of
/// this ABI (static storage: the C side may keep the pointer).
pub fn strerror(code: i32) -> &'static CStr {
    match code {
        TFMPROV_OK => c"ok",
        TFMPROV_RNG_BROKEN => {
            c"the RNG repeated its first output of the previous boot: random keys and sessions are refused (known-value import and signing still work)"
        }
        TFMPROV_ERR_NOT_INITIALIZED => c"device not initialised (tfmprov_init failed or was not called)",
        TFMPROV_ERR_BUSY => c"device busy (concurrent call)",
        TFMPROV_ERR_INVALID_ARGUMENT => c"invalid argument (NULL pointer, non-UTF-8 text or unknown kind)",
        TFMPROV_ERR_BUFFER_TOO_SMALL => c"output buffer too small",
        TFMPROV_ERR_ALREADY_INITIALIZED => c"device already initialised",
        c if c < TFMPROV_ERR_DEVICE_BASE => {
            let rc = u16::try_from(TFMPROV_ERR_DEVICE_BASE - c).ok().and_then(GroupRc::from_code);
            match rc {
                Some(GroupRc::Unknown) => c"device error: unknown",
                Some(GroupRc::NotFound) => c"device error: not found",
                Some(GroupRc::Exists) => c"device error: already exists",
                Some(GroupRc::InvalidArgument) => c"device error: invalid argument",
                Some(GroupRc::StorageFull) => c"device error: storage full",
                Some(GroupRc::CryptoFailure) => c"device error: crypto failure",
                Some(GroupRc::Mismatch) => c"device error: mismatch",
                Some(GroupRc::TooLarge) => c"device error: too large",
                Some(GroupRc::Locked) => c"device error: locked",
                Some(GroupRc::Ok) | None => c"unknown error code",
            }
        }
        _ => c"unknown error code",
    }
}

/// [`strerror`] as a Rust string.
pub fn strerror_str(code: i32) -> &'static str {
    strerror(code).to_str().unwrap_or("unknown error code")
}
