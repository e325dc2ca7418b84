//! The aggregator's CRL check (`tfmprov_aggregator::verify_crl`, what the
//! CRL refresher runs on every `GET /v1/crl` answer): whatever the bytes, no
//! panic, and nothing is accepted that the issuer did not sign. The issuer
//! is a fixed P-256 CA; the corpus seed is a CRL it signed (fuzz/seeds),
//! so mutations reach the signature check and the extension parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A P-256 CA certificate (generated once with openssl; its key signed
/// `seeds/crl_verify/valid.der` and is not needed here).
const ISSUER_PEM: &str = include_str!("../seeds/crl_issuer.pem");

fuzz_target!(|data: &[u8]| {
    if let Ok(serials) = tfmprov_aggregator::verify_crl(data, ISSUER_PEM) {
        // Accepted: it parsed as a CRL signed by the issuer, so every
        // revoked serial is hex of at most 20 octets (RFC 5280 4.1.2.2).
        assert!(serials.iter().all(|s| s.len() <= 42 && s.bytes().all(|b| b.is_ascii_hexdigit())), "{serials:?}");
    }
});
