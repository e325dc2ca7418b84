//! The bytes of the messages a device builds, written directly.
//!
//! The profiles fix every field, so a message is a short sequence of CBOR
//! heads and byte strings: this module writes them with [`Enc`] instead of
//! building `coset` structures and `ciborium` value trees. The output is
//! byte for byte what `coset` produces for the same message (the tests
//! compare both for random inputs, and pycose reads the result), but the
//! firmware links neither `coset`'s encoder nor `ciborium`'s `Value`
//! serialiser: measured on Cortex-M33 those were about 12 KiB of code and,
//! in the session path, the 1.5 KiB stack frame of a `CoseEncrypt` on the
//! stack (docs/firmware.md, "Footprint"). Parsing (the server side) still
//! uses `coset`.
//!
//! Header maps are written in `coset`'s order: `alg` (1), `kid` (4), `iv`
//! (5), then the other labels in the order given (`seq` -65537, the
//! ephemeral key -1).

use alloc::vec::Vec;

use crate::cbor::Enc;
use crate::{ALG_A128GCM, ALG_ECDH_ES_HKDF_256, ALG_ES256, SEQ_LABEL, TAG_ENCRYPT, TAG_ENCRYPT0, TAG_SIGN1};

const LABEL_ALG: i64 = 1;
const LABEL_KID: i64 = 4;
const LABEL_IV: i64 = 5;
/// COSE_Key parameters (RFC 9053): kty, crv, x, y; kty EC2 = 2, crv P-256 = 1.
const KEY_KTY: i64 = 1;
const KEY_CRV: i64 = -1;
const KEY_X: i64 = -2;
const KEY_Y: i64 = -3;
const KTY_EC2: i64 = 2;
const CRV_P256: i64 = 1;
/// Header label of the ephemeral key in a recipient's unprotected header.
const LABEL_EPHEMERAL_KEY: i64 = -1;

/// A protected header `{1: alg, 4: kid}` plus `-65537: seq` when given, as
/// the bytes that go into the message's protected bstr.
pub(crate) fn protected_header(alg: i64, kid: &[u8], seq: Option<u64>) -> Vec<u8> {
    let mut e = Enc::with_capacity(32);
    e.map(if seq.is_some() { 3 } else { 2 });
    e.int(LABEL_ALG).int(alg);
    e.int(LABEL_KID).bytes(kid);
    if let Some(seq) = seq {
        e.int(SEQ_LABEL).uint(seq);
    }
    e.finish()
}

/// The protected header of a session recipient: `{1: -25}`.
pub(crate) fn recipient_protected() -> Vec<u8> {
    let mut e = Enc::with_capacity(4);
    e.map(1).int(LABEL_ALG).int(ALG_ECDH_ES_HKDF_256);
    e.finish()
}

/// Sig_structure for COSE_Sign1: `["Signature1", protected, external_aad,
/// payload]` (the telemetry profiles use no external AAD; remote commands
/// and replies bind the device id and the direction there).
pub(crate) fn sig_structure(protected: &[u8], external_aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = Enc::with_capacity(protected.len() + external_aad.len() + payload.len() + 24);
    e.array(4).text("Signature1").bytes(protected).bytes(external_aad).bytes(payload);
    e.finish()
}

/// Enc_structure: `[context, protected, external_aad]`, context "Encrypt0"
/// or "Encrypt".
pub(crate) fn enc_structure(context: &str, protected: &[u8], external_aad: &[u8]) -> Vec<u8> {
    let mut e = Enc::with_capacity(protected.len() + external_aad.len() + 16);
    e.array(3).text(context).bytes(protected).bytes(external_aad);
    e.finish()
}

/// A protected header with only an algorithm: `{1: alg}`.
pub(crate) fn alg_protected(alg: i64) -> Vec<u8> {
    let mut e = Enc::with_capacity(4);
    e.map(1).int(LABEL_ALG).int(alg);
    e.finish()
}

/// Tagged COSE_Sign1: `18([protected, {}, payload, signature])`.
pub(crate) fn sign1(protected: &[u8], payload: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut e = Enc::with_capacity(protected.len() + payload.len() + 80);
    e.tag(TAG_SIGN1).array(4).bytes(protected).map(0).bytes(payload).bytes(signature);
    e.finish()
}

/// Tagged COSE_Encrypt0: `16([protected, {5: iv}, ciphertext])`.
pub(crate) fn encrypt0(protected: &[u8], iv: &[u8; 12], ciphertext: &[u8]) -> Vec<u8> {
    let mut e = Enc::with_capacity(protected.len() + ciphertext.len() + 24);
    e.tag(TAG_ENCRYPT0).array(3).bytes(protected);
    e.map(1).int(LABEL_IV).bytes(iv);
    e.bytes(ciphertext);
    e.finish()
}

/// The protected header of a session's COSE_Encrypt: `{1: 1, 4: session id}`.
pub(crate) fn session_protected(session_id: u32) -> Vec<u8> {
    protected_header(ALG_A128GCM, &session_id.to_be_bytes(), None)
}

/// Tagged COSE_Encrypt with its one ECDH-ES recipient (session messages,
/// remote commands and replies):
/// ```text
/// 96([protected, {5: iv}, ciphertext,
///     [[recipient_protected, {4: recipient kid, -1: {1: 2, -1: 1, -2: x, -3: y}}, h'']]])
/// ```
pub(crate) fn encrypt_to_recipient(
    protected: &[u8],
    iv: &[u8; 12],
    ciphertext: &[u8],
    recipient_protected: &[u8],
    recipient_kid: &[u8],
    ephemeral: &[u8; 65],
) -> Vec<u8> {
    let (x, y) = ephemeral[1..].split_at(32);
    let mut e = Enc::with_capacity(protected.len() + ciphertext.len() + 160);
    e.tag(TAG_ENCRYPT).array(4).bytes(protected);
    e.map(1).int(LABEL_IV).bytes(iv);
    e.bytes(ciphertext);
    e.array(1).array(3).bytes(recipient_protected);
    e.map(2).int(LABEL_KID).bytes(recipient_kid);
    e.int(LABEL_EPHEMERAL_KEY).map(4);
    e.int(KEY_KTY).int(KTY_EC2).int(KEY_CRV).int(CRV_P256).int(KEY_X).bytes(x).int(KEY_Y).bytes(y);
    e.bytes(&[]);
    e.finish()
}

/// The protected header of a device Sign1 (`data` with `seq`, `session`
/// without).
pub(crate) fn es256_protected(kid: &[u8], seq: Option<u64>) -> Vec<u8> {
    protected_header(ALG_ES256, kid, seq)
}

#[cfg(test)]
mod tests;
