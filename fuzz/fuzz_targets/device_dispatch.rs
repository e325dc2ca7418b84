//! The device's SMP dispatcher (groups 0/64/65/66) over the real PSA (Mbed
//! TLS), fed arbitrary packets: it must answer or ignore, never panic.
//! The device boots once in a temporary directory (PSA is process-global).
#![no_main]

use std::sync::{Mutex, OnceLock};
use tfmprov_device::Device;

static DEVICE: OnceLock<Mutex<Device>> = OnceLock::new();

fn device() -> &'static Mutex<Device> {
    DEVICE.get_or_init(|| {
        // The directory is kept (not removed) for the life of the process.
        let dir = tempfile::tempdir().expect("temp dir").keep();
        std::env::set_current_dir(&dir).expect("chdir");
        let mut dev = Device::boot("fuzz-dev").expect("boot");
        // A key and a certificate-less slot so that reads reach real state.
        let _ = dev.shell(&["factory"]);
        Mutex::new(dev)
    })
}

fn run(data: &[u8]) {
    let mut dev = device().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rsp) = dev.handle_packet(data) {
        assert!(rsp.len() >= 8, "a response always has a header");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
