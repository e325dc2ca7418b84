//! Certificate slots: the certificate of device key K at K + 0x10000000,
//! peer certificates at 0x3F000000.. (DESIGN.md).

use crate::Error;
use alloc::vec::Vec;
use const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;
use der::Decode;
use tfmprov_psa::ids::CertTarget;
use tfmprov_psa::{Psa, MAX_BLOB_LEN};
use x509_cert::Certificate;

/// The public key (uncompressed point) in a DER certificate.
pub fn certificate_public_key(der: &[u8]) -> Result<Vec<u8>, Error> {
    let cert = parse(der)?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(Error::Mismatch);
    }
    spki.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or(Error::InvalidArgument("certificate public key has unused bits"))
}

fn parse(der: &[u8]) -> Result<Certificate, Error> {
    Certificate::from_der(der).map_err(|_| Error::InvalidArgument("cert is not a DER X.509 certificate"))
}

/// Stores a certificate. At a device key ID the certificate's public key must
/// be that key's ([`Error::Mismatch`] otherwise); a peer certificate is
/// stored without that check. Larger than 4096 bytes is [`Error::TooLarge`].
pub fn store(psa: &mut Psa, target: CertTarget, der: &[u8]) -> Result<(), Error> {
    if der.len() > MAX_BLOB_LEN {
        return Err(Error::TooLarge);
    }
    parse(der)?;
    if let CertTarget::DeviceKey(id) = target {
        let key = psa.public_key(id)?;
        let cert_key = certificate_public_key(der)?;
        if cert_key.as_slice() != key.as_slice() {
            return Err(Error::Mismatch);
        }
    }
    psa.store_cert(target.slot(), der)?;
    Ok(())
}

/// Reads a certificate back.
pub fn get(psa: &Psa, target: CertTarget) -> Result<Vec<u8>, Error> {
    Ok(psa.load_cert(target.slot())?)
}
