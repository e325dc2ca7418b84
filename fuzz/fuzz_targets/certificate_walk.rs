//! The device's certificate walks (tfmprov-device `certs`): whatever the
//! bytes, no panic; when `der`'s walk finds a key, the bytes are a
//! certificate x509-cert can decode with that same key; and the plain TLV
//! walk the device links (`certificate_public_key`, and `certificate_spki`,
//! the bytes the broker pin compares) agrees with `der`'s.
#![no_main]

use der::Decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spki = tfmprov_device::certs::subject_public_key_info(data);
    if let Ok(spki) = &spki {
        let full = x509_cert::Certificate::from_der(data);
        if let Ok(cert) = full {
            let theirs = cert.tbs_certificate.subject_public_key_info.subject_public_key;
            assert_eq!(Some(spki.subject_public_key.raw_bytes()), Some(theirs.raw_bytes()));
        }
    }
    let spki_der = spki.as_ref().ok().and_then(|s| der::Encode::to_der(s).ok());
    assert_eq!(tfmprov_device::certs::certificate_spki(data).ok().map(<[u8]>::to_vec), spki_der);
    let ours = tfmprov_device::certs::certificate_public_key(data).ok();
    let oracle = spki.ok().and_then(|s| {
        (s.algorithm.oid == const_oid::db::rfc5912::ID_EC_PUBLIC_KEY).then(|| s.subject_public_key.as_bytes()).flatten()
    });
    assert_eq!(ours, oracle);
});
