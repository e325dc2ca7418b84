//! The `coset` builders the device-side writers (`crate::write`) replaced,
//! kept as the reference: tests build every message both ways and compare
//! the bytes.

use alloc::vec;
use alloc::vec::Vec;
use ciborium::value::Value;
use coset::{
    iana, CoseEncrypt, CoseEncrypt0, CoseRecipient, CoseSign1, EncryptionContext, Header, HeaderBuilder, Label,
    SignatureContext,
};

use crate::cbor::wipe;
use crate::profile::check_output;
use crate::SEQ_LABEL;
use coset::ProtectedHeader;
use crate::session::{kdf_context, SessionCrypto};
use crate::{check_len, Error, Kid, AES128_KEY_LEN, GCM_TAG_LEN, IV_LEN};

/// `data` message as coset builds it.
pub fn sign_data<E>(
    kid: &Kid,
    seq: u64,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>> {
    sign1(header(iana::Algorithm::ES256, kid, Some(seq)), payload, sign)
}

/// Build a tagged Sign1 with the given (fully built) protected header.
pub fn sign1<E>(
    header: Header,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>> {
    check_len(payload.len())?;
    let protected = protected(header)?;
    let tbs = coset::sig_structure_data(
        SignatureContext::CoseSign1,
        protected.clone(),
        None,
        &[],
        payload,
    );
    let signature = sign(&tbs).map_err(Error::Crypto)?;
    let msg = CoseSign1 {
        protected,
        unprotected: Header::default(),
        payload: Some(payload.to_vec()),
        signature: signature.to_vec(),
    };
    let out = to_tagged(msg)?;
    check_len(out.len())?;
    Ok(out)
}

/// Build a `sealed` message. `encrypt(aad, plaintext)` returns
/// AES-128-GCM(session key, `iv`, aad, plaintext) as ciphertext || 16-byte tag.
pub fn seal<E>(
    session_id: u32,
    seq: u64,
    iv: &[u8; 12],
    plaintext: &[u8],
    encrypt: impl FnOnce(&[u8], &[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, Error<E>> {
    check_len(plaintext.len())?;
    let protected = protected(header(
        iana::Algorithm::A128GCM,
        &session_id.to_be_bytes(),
        Some(seq),
    ))?;
    let aad = coset::enc_structure_data(EncryptionContext::CoseEncrypt0, protected.clone(), &[]);
    let ct = encrypt(&aad, plaintext).map_err(Error::Crypto)?;
    check_output(
        &ct,
        plaintext.len() + GCM_TAG_LEN,
        "AES-GCM output is not plaintext + 16 bytes",
    )?;
    let msg = CoseEncrypt0 {
        protected,
        unprotected: HeaderBuilder::new().iv(iv.to_vec()).build(),
        ciphertext: Some(ct),
    };
    let out = to_tagged(msg)?;
    check_len(out.len())?;
    Ok(out)
}

/// Build a `session` message carrying `session_key` for the cloud key
/// (`cloud_kid`, `cloud_public`), signed by the device key (`device_kid`,
/// through `sign`, which gets the ToBeSigned bytes like in [`crate::sign_data`]).
#[allow(clippy::too_many_arguments)]
pub fn build_session<E, Ecdh, Hkdf, Aead, Rng>(
    session_id: u32,
    session_key: &[u8; 16],
    cloud_kid: &Kid,
    cloud_public: &[u8; 65],
    device_kid: &Kid,
    crypto: SessionCrypto<Ecdh, Hkdf, Aead, Rng>,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<Vec<u8>, Error<E>>
where
    Ecdh: FnOnce(&[u8; 65]) -> Result<([u8; 65], [u8; 32]), E>,
    Hkdf: FnOnce(&[u8], &[u8], usize) -> Result<Vec<u8>, E>,
    Aead: FnOnce(&[u8; 16], &[u8; 12], &[u8], &[u8]) -> Result<Vec<u8>, E>,
    Rng: FnOnce(&mut [u8]) -> Result<(), E>,
{
    // Recipient: ECDH-ES + HKDF-256 to the cloud key.
    let r_protected = protected(
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::ECDH_ES_HKDF_256)
            .build(),
    )?;
    let r_protected_bytes = r_protected.original_data.clone().unwrap_or_default();
    let (ephemeral, mut shared) = (crypto.ecdh)(cloud_public).map_err(Error::Crypto)?;
    if ephemeral[0] != 0x04 {
        wipe(&mut shared);
        return Err(Error::CryptoOutput(
            "ephemeral key is not an uncompressed point",
        ));
    }
    let info = kdf_context(&r_protected_bytes);
    let cek = (crypto.hkdf_sha256)(&shared, &info, AES128_KEY_LEN);
    wipe(&mut shared);
    let mut cek = cek.map_err(Error::Crypto)?;
    let cek_arr: Result<[u8; 16], _> = <[u8; 16]>::try_from(cek.as_slice());
    wipe(&mut cek);
    let mut cek = cek_arr.map_err(|_| Error::CryptoOutput("HKDF output is not 16 bytes"))?;

    // Content: A128GCM under the CEK.
    let mut iv = [0u8; IV_LEN];
    if let Err(e) = (crypto.random)(&mut iv) {
        wipe(&mut cek);
        return Err(Error::Crypto(e));
    }
    let protected = protected(
        HeaderBuilder::new()
            .algorithm(iana::Algorithm::A128GCM)
            .key_id(session_id.to_be_bytes().to_vec())
            .build(),
    )?;
    let aad = coset::enc_structure_data(EncryptionContext::CoseEncrypt, protected.clone(), &[]);
    let ct = (crypto.aes128gcm_encrypt)(&cek, &iv, &aad, session_key);
    wipe(&mut cek);
    let ct = ct.map_err(Error::Crypto)?;
    check_output(
        &ct,
        AES128_KEY_LEN + GCM_TAG_LEN,
        "AES-GCM output is not plaintext + 16 bytes",
    )?;

    let (x, y) = ephemeral[1..].split_at(32);
    let cose_key = Value::Map(vec![
        (Value::from(1), Value::from(2)),  // kty: EC2
        (Value::from(-1), Value::from(1)), // crv: P-256
        (Value::from(-2), Value::Bytes(x.to_vec())),
        (Value::from(-3), Value::Bytes(y.to_vec())),
    ]);
    let mut r_unprotected = HeaderBuilder::new().key_id(cloud_kid.to_vec()).build();
    r_unprotected.rest.push((Label::Int(-1), cose_key));
    let recipient = CoseRecipient {
        protected: r_protected,
        unprotected: r_unprotected,
        ciphertext: Some(Vec::new()),
        recipients: Vec::new(),
    };
    let encrypt = CoseEncrypt {
        protected,
        unprotected: HeaderBuilder::new().iv(iv.to_vec()).build(),
        ciphertext: Some(ct),
        recipients: vec![recipient],
    };
    let inner = to_tagged(encrypt)?;
    sign1(
        header(iana::Algorithm::ES256, device_kid, None),
        &inner,
        sign,
    )
}


/// Build a protected header whose wire bytes are fixed now, so that what is
/// authenticated (Sig_structure, Enc_structure, KDF context) is exactly what
/// is sent.
fn protected<E>(header: Header) -> Result<ProtectedHeader, Error<E>> {
    let bytes = coset::CborSerializable::to_vec(header.clone()).map_err(|_| Error::Cbor)?;
    Ok(ProtectedHeader {
        original_data: Some(bytes),
        header,
    })
}

/// `{1: alg, 4: kid}` plus `-65537: seq` when given.
fn header(alg: iana::Algorithm, kid: &[u8], seq: Option<u64>) -> Header {
    let mut b = HeaderBuilder::new().algorithm(alg).key_id(kid.to_vec());
    if let Some(seq) = seq {
        b = b.value(SEQ_LABEL, Value::Integer(seq.into()));
    }
    b.build()
}
/// Encode a coset structure with its tag.
fn to_tagged<T: coset::TaggedCborSerializable, E>(t: T) -> Result<Vec<u8>, Error<E>> {
    t.to_tagged_vec().map_err(|_| Error::Cbor)
}
