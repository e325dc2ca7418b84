//! Certificate slots: the certificate of device key K at K + 0x10000000,
//! peer certificates at 0x3F000000.. (DESIGN.md).
//!
//! The device does not need a decoded certificate, only two facts: that the
//! bytes are one DER X.509 certificate (RFC 5280 section 4.1, checked down to
//! the fields of the TBSCertificate) and its subject public key. So it walks
//! the DER with a plain TLV walker and keeps borrowed slices, instead of
//! decoding an `x509_cert::Certificate` (names, extensions and all): measured
//! on Cortex-M33 that decoder alone was 8.2 KiB of code and a 2.6 KiB stack
//! frame, and `der`'s typed decoders for the key another 5.4 KiB
//! (docs/firmware.md). [`subject_public_key_info`] keeps the `der` version
//! for the host and as the tests' oracle.

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
/// whose key is not an EC key is [`Error::Mismatch`]. The same structure
/// checks as [`subject_public_key_info`], with the plain walker of
/// [`chain_parts`] instead of `der`'s typed decoders: measured on
/// Cortex-M33, the `der` version was 2.2 KiB of code and the deepest stack
/// of the telemetry path (docs/firmware.md). The tests compare the two.
pub fn certificate_public_key(der: &[u8]) -> Result<&[u8], Error> {
    let (oid, key, _) = walk_public_key(der).ok_or(NOT_A_CERTIFICATE)?;
    if oid != ID_EC_PUBLIC_KEY.as_bytes() {
        return Err(Error::Mismatch);
    }
    match key.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err(Error::InvalidArgument("certificate public key has unused bits")),
    }
}

/// The DER SubjectPublicKeyInfo of a certificate, header included, as it
/// stands in the certificate (the walker of [`certificate_public_key`]
/// accepts only DER, so these are the bytes `der` would encode again): what
/// a key pin hashes (`openssl x509 -pubkey | openssl pkey -pubin -outform
/// DER | sha256`).
pub fn certificate_spki(der: &[u8]) -> Result<&[u8], Error> {
    walk_public_key(der).map(|(_, _, spki)| spki).ok_or(NOT_A_CERTIFICATE)
}

/// `AlgorithmIdentifier ::= SEQUENCE { OID, parameters ANY OPTIONAL }` at
/// `pos`: (OID value start, end, end of the SEQUENCE). The OID must be a
/// valid encoding, as `der` requires.
fn algorithm_identifier(c: &[u8], pos: usize) -> Option<(usize, usize, usize)> {
    let (start, end) = expect_tlv(c, pos, 0x30)?;
    let (oid_start, oid_end) = expect_tlv(c, start, 0x06)?;
    const_oid::ObjectIdentifier::from_bytes(&c[oid_start..oid_end]).ok()?;
    if oid_end != end && tlv(c, oid_end)?.2 != end {
        return None;
    }
    Some((oid_start, oid_end, end))
}

/// A BIT STRING value: the unused-bits count (at most 7, and 0 when there
/// are no bits), then the bits.
fn bit_string_ok(v: &[u8]) -> bool {
    match v {
        [0] => true,
        [unused, _, ..] => *unused <= 7,
        _ => false,
    }
}

/// (key algorithm OID value, subject public key BIT STRING value, the whole
/// SubjectPublicKeyInfo element) of a certificate whose outer and
/// TBSCertificate structure is as RFC 5280 4.1 lays it out.
fn walk_public_key(c: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    const SEQ: u8 = 0x30;
    let (start, end) = expect_tlv(c, 0, SEQ)?;
    if end != c.len() {
        return None;
    }
    let (tbs_start, tbs_end) = expect_tlv(c, start, SEQ)?;
    let alg_end = algorithm_identifier(c, tbs_end)?.2;
    let (sig_start, sig_end) = expect_tlv(c, alg_end, 0x03)?;
    if sig_end != end || !bit_string_ok(&c[sig_start..sig_end]) {
        return None;
    }
    let mut pos = tbs_start;
    if tlv(c, pos)?.0 == 0xa0 {
        pos = tlv(c, pos)?.2; // [0] version
    }
    pos = expect_tlv(c, pos, 0x02)?.1; // serialNumber
    pos = expect_tlv(c, pos, SEQ)?.1; // signature
    pos = expect_tlv(c, pos, SEQ)?.1; // issuer
    pos = expect_tlv(c, pos, SEQ)?.1; // validity
    pos = expect_tlv(c, pos, SEQ)?.1; // subject
    let spki_header = pos;
    let (spki_start, spki_end) = expect_tlv(c, pos, SEQ)?;
    let (oid_start, oid_end, ka_end) = algorithm_identifier(c, spki_start)?;
    let (key_start, key_end) = expect_tlv(c, ka_end, 0x03)?;
    if key_end != spki_end || !bit_string_ok(&c[key_start..key_end]) {
        return None;
    }
    pos = spki_end;
    while pos < tbs_end {
        pos = tlv(c, pos)?.2; // issuerUniqueID, subjectUniqueID, extensions
    }
    (pos == tbs_end).then(|| (&c[oid_start..oid_end], &c[key_start..key_end], &c[spki_header..spki_end]))
}

/// What a chain check needs of a certificate, borrowed from its DER.
#[derive(Debug)]
pub struct ChainParts<'a> {
    /// The TBSCertificate, as signed.
    pub tbs: &'a [u8],
    /// Issuer and subject Names, DER (compared byte for byte).
    pub issuer: &'a [u8],
    /// See `issuer`.
    pub subject: &'a [u8],
    /// The subject public key (an uncompressed P-256 point when it is one).
    pub public_key: &'a [u8],
    /// The signature, raw r || s (ecdsa-with-SHA256 only).
    pub signature: [u8; 64],
    /// basicConstraints cA is TRUE.
    pub is_ca: bool,
}

/// OID 2.5.29.19 (basicConstraints), the OID's value bytes.
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
/// OID 1.2.840.10045.4.3.2 (ecdsa-with-SHA256), the OID's value bytes.
const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

/// One DER element at `pos` in `buf`: (tag, value start, end). Definite
/// lengths of at most 4 bytes, inside `buf`; single-byte tags (all an
/// X.509 certificate uses). A plain walker, not `der`'s typed decoders: it
/// keeps the chain check to a few hundred bytes of code and stack on the
/// device (measured; docs/firmware.md).
fn tlv(buf: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *buf.get(pos)?;
    // The tags `der` knows (its `Tag::try_from`): the universal types a
    // certificate may hold, and low-numbered application, context-specific
    // and private tags; no tag number above 30.
    let known = matches!(tag, 0x01..=0x06 | 0x09 | 0x0a | 0x0c | 0x12..=0x18 | 0x1a | 0x1e | 0x30 | 0x31)
        || (tag >= 0x40 && tag & 0x1f != 0x1f);
    if !known {
        return None;
    }
    let first = *buf.get(pos + 1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*buf.get(pos + 2 + i)?);
        }
        // DER: the shortest form (no long form below 128, no leading zero).
        if len < 0x80 || len >> (8 * (n - 1)) == 0 {
            return None;
        }
        (len, 2 + n)
    };
    let start = pos.checked_add(hdr)?;
    let end = start.checked_add(len)?;
    (end <= buf.len()).then_some((tag, start, end))
}

/// The element at `pos` with tag `want`: (value start, end).
fn expect_tlv(buf: &[u8], pos: usize, want: u8) -> Option<(usize, usize)> {
    let (tag, start, end) = tlv(buf, pos)?;
    (tag == want).then_some((start, end))
}

/// A DER INTEGER's value as a 32-byte big-endian number (leading zero
/// bytes dropped; longer is refused).
fn int32(v: &[u8]) -> Option<[u8; 32]> {
    let mut v = v;
    while v.len() > 1 && v[0] == 0 {
        v = &v[1..];
    }
    if v.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Some(out)
}

/// Walks a certificate for [`ChainParts`]. Only ecdsa-with-SHA256
/// signatures are accepted (DESIGN.md: the whole PKI is P-256).
pub fn chain_parts(cert: &[u8]) -> Result<ChainParts<'_>, Error> {
    walk_chain_parts(cert).ok_or(Error::InvalidArgument("certificate is not an ecdsa-with-SHA256 X.509 certificate"))
}

fn walk_chain_parts(c: &[u8]) -> Option<ChainParts<'_>> {
    const SEQ: u8 = 0x30;
    let (start, end) = expect_tlv(c, 0, SEQ)?;
    if end != c.len() {
        return None;
    }
    // tbsCertificate, signatureAlgorithm, signatureValue
    let (tbs_start, tbs_end) = expect_tlv(c, start, SEQ)?;
    let (alg_start, alg_end) = expect_tlv(c, tbs_end, SEQ)?;
    let (sig_start, sig_end) = expect_tlv(c, alg_end, 0x03)?;
    if sig_end != end {
        return None;
    }
    let (oid_start, oid_end) = expect_tlv(c, alg_start, 0x06)?;
    if &c[oid_start..oid_end] != ECDSA_WITH_SHA256 {
        return None;
    }
    // BIT STRING with no unused bits around SEQUENCE { r INTEGER, s INTEGER }
    if c.get(sig_start) != Some(&0) {
        return None;
    }
    let (rs_start, rs_end) = expect_tlv(c, sig_start + 1, SEQ)?;
    let (r_start, r_end) = expect_tlv(c, rs_start, 0x02)?;
    let (s_start, s_end) = expect_tlv(c, r_end, 0x02)?;
    if s_end != rs_end {
        return None;
    }
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&int32(&c[r_start..r_end])?);
    signature[32..].copy_from_slice(&int32(&c[s_start..s_end])?);

    // TBSCertificate fields.
    let mut pos = tbs_start;
    if tlv(c, pos)?.0 == 0xa0 {
        pos = tlv(c, pos)?.2; // [0] version
    }
    pos = expect_tlv(c, pos, 0x02)?.1; // serialNumber
    pos = expect_tlv(c, pos, SEQ)?.1; // signature
    let issuer_end = expect_tlv(c, pos, SEQ)?.1;
    let issuer = &c[pos..issuer_end];
    let validity_end = expect_tlv(c, issuer_end, SEQ)?.1;
    let subject_end = expect_tlv(c, validity_end, SEQ)?.1;
    let subject = &c[validity_end..subject_end];
    let (spki_start, spki_end) = expect_tlv(c, subject_end, SEQ)?;
    let key_alg_end = expect_tlv(c, spki_start, SEQ)?.1;
    let (key_start, key_end) = expect_tlv(c, key_alg_end, 0x03)?;
    if c.get(key_start) != Some(&0) || key_end != spki_end {
        return None;
    }
    let public_key = &c[key_start + 1..key_end];
    let mut is_ca = false;
    pos = spki_end;
    while pos < tbs_end {
        let (tag, v_start, v_end) = tlv(c, pos)?;
        if tag == 0xa3 {
            // extensions: SEQUENCE OF SEQUENCE { OID, critical BOOLEAN?, OCTET STRING }
            let (mut e, exts_end) = expect_tlv(c, v_start, SEQ)?;
            while e < exts_end {
                let (ext_start, ext_end) = expect_tlv(c, e, SEQ)?;
                let (oid_s, oid_e) = expect_tlv(c, ext_start, 0x06)?;
                let mut q = oid_e;
                if tlv(c, q)?.0 == 0x01 {
                    q = tlv(c, q)?.2;
                }
                let (val_s, _) = expect_tlv(c, q, 0x04)?;
                if &c[oid_s..oid_e] == BASIC_CONSTRAINTS {
                    // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, ... }
                    let (bc_s, bc_e) = expect_tlv(c, val_s, SEQ)?;
                    if bc_s < bc_e {
                        if let Some((0x01, b_s, b_e)) = tlv(c, bc_s) {
                            is_ca = b_e == b_s + 1 && c[b_s] != 0;
                        }
                    }
                }
                e = ext_end;
            }
        }
        pos = v_end;
    }
    if pos != tbs_end {
        return None;
    }
    Some(ChainParts { tbs: &c[start..tbs_end], issuer, subject, public_key, signature, is_ca })
}

/// `child` is signed by `issuer`: the names match and the signature
/// verifies with the issuer's key (through PSA).
fn issued_by(psa: &Psa, child: &ChainParts<'_>, issuer: &ChainParts<'_>) -> Result<(), Error> {
    const BROKEN: Error = Error::InvalidArgument("peer certificate does not chain to the CA root on the device");
    if child.issuer != issuer.subject {
        return Err(BROKEN);
    }
    let key: tfmprov_psa::PublicKey = issuer.public_key.try_into().map_err(|_| BROKEN)?;
    let digest = psa.sha256(child.tbs)?;
    psa.verify_with_public(&key, &digest, &child.signature).map_err(|_| BROKEN)
}

/// The peer certificate at `id`, if one is stored.
fn load_peer(psa: &Psa, id: u32) -> Result<Option<Vec<u8>>, Error> {
    let slot = CertTarget::Peer(tfmprov_psa::ids::PeerId::new(id.into())?).slot();
    Ok(if psa.cert_present(slot)? { Some(psa.load_cert(slot)?) } else { None })
}

/// A peer certificate `der` trusted for what it is (the cloud's, the
/// broker's) chains to the CA root stored on the device (0x3F000000):
/// signed by the root, or by the intermediate at
/// [`tfmprov_psa::ids::PEER_INTERMEDIATE`], which must be a CA signed by the
/// root. Checked when it is stored and each time it is used (a root
/// replaced later makes it unusable). No clock on the device: validity
/// dates are not checked.
pub fn check_peer_chain(psa: &Psa, der: &[u8]) -> Result<(), Error> {
    use tfmprov_psa::ids::{PEER_CA_ROOT, PEER_INTERMEDIATE};
    let load = |id: u32| load_peer(psa, id);
    let root_der = load(PEER_CA_ROOT)?
        .ok_or(Error::InvalidArgument("no CA root on the device to check the peer certificate against"))?;
    let root = chain_parts(&root_der)?;
    let leaf = chain_parts(der)?;
    if issued_by(psa, &leaf, &root).is_ok() {
        return Ok(());
    }
    let inter_der =
        load(PEER_INTERMEDIATE)?.ok_or(Error::InvalidArgument("peer certificate does not chain to the CA root on the device"))?;
    let inter = chain_parts(&inter_der)?;
    if !inter.is_ca {
        return Err(Error::InvalidArgument("the intermediate certificate on the device is not a CA"));
    }
    issued_by(psa, &inter, &root)?;
    issued_by(psa, &leaf, &inter)
}

/// Stores a certificate. At a device key ID the certificate's public key must
/// be that key's ([`Error::Mismatch`] otherwise); the cloud and the broker
/// certificates (0x3F000001, 0x3F000003) must chain to the CA root on the device
/// ([`check_peer_chain`]); other peer certificates are stored as they are. Larger than one ITS asset holds
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
    // The cloud's and the broker's certificates are trusted for what they
    // are (encrypting to the cloud, pinning the broker): both must chain to
    // the root on the device.
    if let CertTarget::Peer(p) = target {
        if p.get() == tfmprov_psa::ids::PEER_CLOUD || p.get() == tfmprov_psa::ids::PEER_BROKER {
            check_peer_chain(psa, der)?;
        }
    }
    psa.store_cert(target.slot(), der)?;
    Ok(())
}

/// What a device needs for mutual TLS with the broker: its certificate
/// chain (the telemetry key's leaf, then the intermediate if stored), the
/// CA root, and the pin of the broker's key. The key itself stays in PSA.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    /// The key that signs the handshake.
    pub key: tfmprov_psa::ids::DeviceKeyId,
    /// Leaf, then the intermediate (DER).
    pub chain: Vec<Vec<u8>>,
    /// The CA root the broker's chain must verify to (DER).
    pub root: Vec<u8>,
    /// SHA-256 of the broker certificate's SubjectPublicKeyInfo.
    pub broker_pin: [u8; 32],
}

/// One certificate of a device's TLS identity, read one at a time where
/// memory is short (the firmware's Mbed TLS parses each into its own
/// structures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsCert {
    /// The certificate of the key that signs the handshake.
    Leaf,
    /// The intermediate CA certificate
    /// ([`tfmprov_psa::ids::PEER_INTERMEDIATE`]), sent after the leaf.
    Intermediate,
    /// The CA root ([`tfmprov_psa::ids::PEER_CA_ROOT`]) the broker's chain
    /// must verify to.
    Root,
}

/// Certificate `which` of the TLS identity of key `key`; not found when it
/// is not stored.
pub fn tls_certificate(psa: &Psa, key: tfmprov_psa::ids::DeviceKeyId, which: TlsCert) -> Result<Vec<u8>, Error> {
    use tfmprov_psa::ids::{PeerId, PEER_CA_ROOT, PEER_INTERMEDIATE};
    let target = match which {
        TlsCert::Leaf => CertTarget::DeviceKey(key),
        TlsCert::Intermediate => CertTarget::Peer(PeerId::new(PEER_INTERMEDIATE.into())?),
        TlsCert::Root => CertTarget::Peer(PeerId::new(PEER_CA_ROOT.into())?),
    };
    get(psa, target)
}

/// The [`TlsIdentity`] for key `key`: its certificate, the root, and the
/// broker's pin ([`broker_pin`]).
pub fn tls_identity(psa: &Psa, key: tfmprov_psa::ids::DeviceKeyId) -> Result<TlsIdentity, Error> {
    use tfmprov_psa::ids::{PEER_CA_ROOT, PEER_INTERMEDIATE};
    let peer = |id: u32| load_peer(psa, id);
    let leaf = psa.load_cert(key.cert_slot())?;
    let root = peer(PEER_CA_ROOT)?.ok_or(Error::InvalidArgument("no CA root on the device"))?;
    let mut chain = alloc::vec![leaf];
    chain.extend(peer(PEER_INTERMEDIATE)?);
    Ok(TlsIdentity { key, chain, root, broker_pin: broker_pin(psa)? })
}

/// The pin of the broker's key: SHA-256 (through PSA) of the
/// SubjectPublicKeyInfo of the certificate stored at
/// [`tfmprov_psa::ids::PEER_BROKER`] ([`broker_certificate`]).
pub fn broker_pin(psa: &Psa) -> Result<[u8; 32], Error> {
    Ok(psa.sha256(certificate_spki(&broker_certificate(psa)?)?)?)
}

/// The broker's certificate stored at enrollment, after checking its chain
/// again (a root replaced since makes it unusable).
fn broker_certificate(psa: &Psa) -> Result<Vec<u8>, Error> {
    let broker = load_peer(psa, tfmprov_psa::ids::PEER_BROKER)?
        .ok_or(Error::InvalidArgument("no broker certificate on the device (0x3F000003): no key to pin"))?;
    check_peer_chain(psa, &broker)?;
    Ok(broker)
}

/// The TLS server's leaf certificate `presented` (DER) carries the pinned
/// key; [`Error::Mismatch`] when it carries another. The device compares
/// the SubjectPublicKeyInfo itself rather than its SHA-256 ([`broker_pin`]):
/// the same decision, without two hash calls into TF-M. Only the key: the
/// chain and the name are the TLS stack's checks (Mbed TLS on the
/// firmware, rustls on the host), run as well, not instead.
pub fn check_broker_key(psa: &Psa, presented: &[u8]) -> Result<(), Error> {
    let presented = certificate_spki(presented)?;
    if certificate_spki(&broker_certificate(psa)?)? != presented {
        return Err(Error::Mismatch);
    }
    Ok(())
}

/// Reads a certificate back.
pub fn get(psa: &Psa, target: CertTarget) -> Result<Vec<u8>, Error> {
    Ok(psa.load_cert(target.slot())?)
}
