//! The secure image's C API, used here only: the PSA service calls
//! (`psa/service.h`), ITS (`psa/internal_trusted_storage.h`), Protected
//! Storage (`psa/protected_storage.h`) and the RNG (`psa/crypto.h`, served
//! by TF-M's crypto partition), as TF-M 2.2.2 declares them. The layout of `psa_msg_t` is checked against the C
//! headers when the partition is built (`tfm-partition/tfmprov/layout.c`).
//!
//! Only built into the secure image: on the host the functions below do
//! not exist, and nothing here is compiled (`target_os = "none"`).

#[cfg(target_os = "none")]
mod secure {
    use core::ffi::c_void;
    use tfmprov_partition::{Error, Partition, Storage};

    /// `psa_msg_t` (TF-M 2.2.2 `interface/include/psa/service.h`): 48 bytes
    /// on Cortex-M33.
    #[repr(C)]
    pub struct PsaMsg {
        /// The call's type: the operation (`tfmprov_partition::wire`).
        pub kind: i32,
        /// The message handle for psa_read / psa_write.
        pub handle: i32,
        /// The caller: negative for a non-secure client.
        pub client_id: i32,
        /// Unused by stateless services.
        pub rhandle: *mut c_void,
        /// Bytes in each input vector.
        pub in_size: [usize; 4],
        /// Room in each output vector.
        pub out_size: [usize; 4],
    }

    extern "C" {
        fn psa_read(msg_handle: i32, invec_idx: u32, buffer: *mut c_void, num_bytes: usize) -> usize;
        fn psa_write(msg_handle: i32, outvec_idx: u32, buffer: *const c_void, num_bytes: usize);
        fn psa_panic() -> !;
        fn psa_its_set(uid: u64, data_length: usize, p_data: *const c_void, create_flags: u32) -> i32;
        fn psa_its_get(uid: u64, data_offset: usize, data_size: usize, p_data: *mut c_void, p_data_length: *mut usize) -> i32;
        fn psa_ps_set(uid: u64, data_length: usize, p_data: *const c_void, create_flags: u32) -> i32;
        fn psa_ps_get(uid: u64, data_offset: usize, data_size: usize, p_data: *mut c_void, p_data_length: *mut usize) -> i32;
        fn psa_generate_random(output: *mut u8, output_size: usize) -> i32;
    }

    const PSA_SUCCESS: i32 = 0;
    /// `PSA_ERROR_DOES_NOT_EXIST`: no such asset.
    const PSA_ERROR_DOES_NOT_EXIST: i32 = -140;
    /// The largest request: an audit append (9 bytes) or read (10).
    const MAX_REQUEST: usize = 16;

    /// The partition's storage: the counters and the RNG record in ITS
    /// (`psa_its_*`), the audit ring in Protected Storage (`psa_ps_*`, its
    /// own flash area: 1.6 KB in ITS would take the room of a certificate).
    /// Both keep each asset under the partition's own client ID, out of the
    /// non-secure side's reach, and replace an asset all or nothing.
    pub struct Its;

    impl Storage for Its {
        fn get(&self, uid: u64, out: &mut [u8]) -> Result<Option<usize>, Error> {
            let mut len = 0usize;
            let get = if uid == tfmprov_partition::uid::AUDIT { psa_ps_get } else { psa_its_get };
            // SAFETY: `out` is valid for `out.len()` writable bytes and `len`
            // is a writable usize; the service writes at most `out.len()`
            // bytes (both read min(size, stored) from offset 0).
            let status = unsafe { get(uid, 0, out.len(), out.as_mut_ptr().cast(), &mut len) };
            match status {
                PSA_SUCCESS => Ok(Some(len.min(out.len()))),
                PSA_ERROR_DOES_NOT_EXIST => Ok(None),
                s => Err(Error::Storage(s)),
            }
        }

        fn set(&mut self, uid: u64, data: &[u8]) -> Result<(), Error> {
            let set = if uid == tfmprov_partition::uid::AUDIT { psa_ps_set } else { psa_its_set };
            // SAFETY: `data` is valid for `data.len()` bytes; the service copies it.
            match unsafe { set(uid, data.len(), data.as_ptr().cast(), 0) } {
                PSA_SUCCESS => Ok(()),
                s => Err(Error::Storage(s)),
            }
        }
    }

    fn rng(out: &mut [u8]) -> Result<(), i32> {
        // SAFETY: `out` is valid for `out.len()` writable bytes.
        match unsafe { psa_generate_random(out.as_mut_ptr(), out.len()) } {
            PSA_SUCCESS => Ok(()),
            s => Err(s),
        }
    }

    fn partition() -> Partition<Its, fn(&mut [u8]) -> Result<(), i32>> {
        Partition::new(Its, rng)
    }

    /// The partition's init (manifest `entry_init`): the boot RNG record.
    /// A failure is logged in the record's absence, not fatal: the other
    /// services stay available.
    #[no_mangle]
    pub extern "C" fn tfmprov_sp_init() -> i32 {
        let _ = partition().boot_rng_check();
        PSA_SUCCESS
    }

    /// One `psa_call` to the service (manifest service `TFMPROV_SP`, SFN
    /// `tfmprov_sp_sfn`).
    ///
    /// # Safety
    /// `msg` is the SPM's message for this call.
    #[no_mangle]
    pub unsafe extern "C" fn tfmprov_sp_sfn(msg: *const PsaMsg) -> i32 {
        // SAFETY: the SPM passes a valid message for the duration of the call.
        let Some(msg) = (unsafe { msg.as_ref() }) else { return Error::InvalidArgument.psa_status() };
        if msg.in_size[0] > MAX_REQUEST {
            return Error::InvalidArgument.psa_status();
        }
        let mut request = [0u8; MAX_REQUEST];
        // SAFETY: `request` has room for MAX_REQUEST >= in_size[0] bytes.
        let n = unsafe { psa_read(msg.handle, 0, request.as_mut_ptr().cast(), msg.in_size[0]) };
        let mut answer = [0u8; tfmprov_partition::wire::MAX_ANSWER];
        let room = msg.out_size[0].min(answer.len());
        match partition().dispatch(msg.kind, &request[..n.min(MAX_REQUEST)], &mut answer[..room]) {
            Ok(len) => {
                // SAFETY: `answer` holds `len` <= out_size[0] bytes.
                unsafe { psa_write(msg.handle, 0, answer.as_ptr().cast(), len) };
                PSA_SUCCESS
            }
            Err(e) => e.psa_status(),
        }
    }

    /// A panic in the secure partition: the SPM's psa_panic (no return).
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        // SAFETY: psa_panic takes no argument and never returns.
        unsafe { psa_panic() }
    }
}

#[cfg(target_os = "none")]
pub use secure::*;
