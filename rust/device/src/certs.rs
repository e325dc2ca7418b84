//! Certificate slots: the certificate of device key K at K + 0x10000000,
//! peer certificates at 0x3F000000.. (DESIGN.md).
//!
//! The device does not need a decoded certificate, only two facts: that the
//! bytes are one DER X.509 certificate (RFC 5280 section 4.1, checked down to
//! the fields of the TBSCertificate) and its subject public key. So it walks
//! the DER with `der`'s reader and keeps borrowed slices, instead of decoding
//! an `x509_cert::Certificate` (names, extensions and all): measured on
//! Cortex-M33 that decoder alone was 8.2 KiB of code and a 2.6 KiB stack
//! frame, on the certificate and session paths (docs/firmware.md).

use crate::Error;
use alloc::vec::Vec;
use const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;
use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use tfmprov_psa::ids::CertTarget;
use tfmprov_psa::{Psa, MAX_BLOB_LEN};

const NOT_A_CERTIFICATE: Error = Error::InvalidArgument("cert is not a DER X.509 certificate");

/// Reads one element and checks its tag.
fn expect<'a, R: Reader<'a>>(r: &mut R, tag: Tag) -> der::Result<AnyRef<'a>> {
    let any = AnyRef::decode(r)?;
    if any.tag() != tag {
        return Err(der::ErrorKind::TagUnexpected { expected: Some(tag), actual: any.tag() }.into());
    }
    Ok(any)
}

/// The SubjectPublicKeyInfo of a DER certificate, after checking its outer
/// structure: `SEQUENCE { tbsCertificate, signatureAlgorithm, signature }`
/// with nothing after it, and the TBSCertificate's fields in order
/// (`[0] version` optional, serial, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, then the optional unique IDs and extensions).
pub fn subject_public_key_info(cert: &[u8]) -> Result<SubjectPublicKeyInfoRef<'_>, Error> {
    let walk = || -> der::Result<SubjectPublicKeyInfoRef<'_>> {
        let mut reader = SliceReader::new(cert)?;
        let spki = reader.sequence(|c| {
            let spki = c.sequence(|tbs| {
                let version = Tag::ContextSpecific { constructed: true, number: TagNumber::N0 };
                if tbs.peek_tag()? == version {
                    AnyRef::decode(tbs)?;
                }
                expect(tbs, Tag::Integer)?; // serialNumber
                expect(tbs, Tag::Sequence)?; // signature
                expect(tbs, Tag::Sequence)?; // issuer
                expect(tbs, Tag::Sequence)?; // validity
                expect(tbs, Tag::Sequence)?; // subject
                let spki = SubjectPublicKeyInfoRef::decode(tbs)?;
                while !tbs.is_finished() {
                    AnyRef::decode(tbs)?; // issuerUniqueID, subjectUniqueID, extensions
                }
                Ok(spki)
            })?;
            AlgorithmIdentifierRef::decode(c)?;
            BitStringRef::decode(c)?;
            Ok(spki)
        })?;
        reader.finish(spki)
    };
    walk().map_err(|_| NOT_A_CERTIFICATE)
}

/// The public key (uncompressed point) in a DER certificate; a certificate
/// whose key is not an EC key is [`Error::Mismatch`].
pub fn certificate_public_key(der: &[u8]) -> Result<&[u8], Error> {
    let spki = subject_public_key_info(der)?;
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(Error::Mismatch);
    }
    spki.subject_public_key.as_bytes().ok_or(Error::InvalidArgument("certificate public key has unused bits"))
}

/// Stores a certificate. At a device key ID the certificate's public key must
/// be that key's ([`Error::Mismatch`] otherwise); a peer certificate is
/// stored without that check. Larger than one ITS asset holds
/// ([`MAX_BLOB_LEN`], derived from the TF-M configuration) is
/// [`Error::TooLarge`], before PSA sees it. A refused or failed store leaves
/// the previous certificate as it was (`tfmprov_psa`'s atomic blob store).
pub fn store(psa: &mut Psa, target: CertTarget, der: &[u8]) -> Result<(), Error> {
    if der.len() > MAX_BLOB_LEN {
        return Err(Error::TooLarge);
    }
    let cert_key = certificate_public_key(der).or_else(|e| match (e, target) {
        // A peer certificate may carry any key type.
        (Error::Mismatch, CertTarget::Peer(_)) => Ok(&[][..]),
        (e, _) => Err(e),
    })?;
    if let CertTarget::DeviceKey(id) = target {
        if cert_key != psa.public_key(id)?.as_slice() {
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
