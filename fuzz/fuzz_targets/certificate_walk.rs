//! The device's certificate walk (tfmprov-device `certs`): whatever the
//! bytes, no panic; and when it finds a key, the bytes are a certificate
//! x509-cert can decode with that same key.
#![no_main]

use der::Decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spki) = tfmprov_device::certs::subject_public_key_info(data) {
        let full = x509_cert::Certificate::from_der(data);
        if let Ok(cert) = full {
            let theirs = cert.tbs_certificate.subject_public_key_info.subject_public_key;
            assert_eq!(Some(spki.subject_public_key.raw_bytes()), Some(theirs.raw_bytes()));
        }
    }
});
