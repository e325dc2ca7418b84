//! The device's request decoder (tfmprov-smp `decode_request`, on
//! tfmprov-cbor's map reader) against serde + ciborium (`decode_body`, the
//! host's): never a panic, and the same answer for every request type, except
//! where the two differ on purpose: the device is stricter with a tagged
//! field value and a non-text key (which serde would take as a field index),
//! and skips an unassigned simple value under an unknown key (well-formed for
//! RFC 8949; ciborium refuses it). See rust/smp/src/tests/body.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfmprov_smp::*;

fn has_tag_or_int_key(data: &[u8]) -> bool {
    // Conservative: any tag or simple-value byte, or (as ciborium reads it)
    // a top-level key that is not text.
    let non_text_key = match ciborium::de::from_reader::<ciborium::value::Value, _>(data) {
        Ok(ciborium::value::Value::Map(entries)) => entries.iter().any(|(k, _)| !k.is_text()),
        _ => false,
    };
    non_text_key || data.iter().any(|b| b >> 5 == 6 || (0xe0..=0xf3).contains(b) || *b == 0xf8)
}

fn same<T>(data: &[u8])
where
    T: Request + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let device = decode_request::<T>(data);
    let host = decode_body::<T>(data);
    if device != host && !has_tag_or_int_key(data) {
        panic!("device {device:?} != host {host:?} for {data:02x?}");
    }
}

fuzz_target!(|data: &[u8]| {
    same::<KeyGenerateReq>(data);
    same::<KeyIdReq>(data);
    same::<CsrCreateReq>(data);
    same::<CertStoreReq>(data);
    same::<CertGetReq>(data);
    same::<AuditReq>(data);
    // The host's decoder of the device's audit log: an error or a log whose
    // every entry checks, never a panic.
    if let Ok(log) = AuditLog::decode(data) {
        assert!(log.records().is_ok());
    }
    // The map reader alone, with every accessor on every value.
    if let Ok(mut r) = tfmprov_cbor::MapReader::new(data, 8) {
        while let Ok(Some(_)) = r.next_key() {
            if r.uint("v").is_err() && r.bytes("v").is_err() && r.text("v").is_err() && r.bool("v").is_err() && r.skip().is_err() {
                break;
            }
        }
    }
});
