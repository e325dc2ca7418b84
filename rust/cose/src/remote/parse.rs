//! The envelope parser, without `coset` (docs/remote.md): the device links
//! it, and `coset` with `ciborium` would cost the firmware about 24 KiB of
//! flash and, through `ciborium`'s value tree, about 10 KiB of stack
//! (measured with `scripts/firmware-footprint`). It reads the fixed COSE
//! structures with [`tfmprov_cbor::Cursor`] (borrowed byte strings, no
//! recursion) and applies the same profile checks as the `coset`-based
//! parsers of the other messages, with the same messages; `tests.rs` holds
//! the `coset` version as an oracle and compares the two.
//!
//! One difference, on purpose: indefinite-length arrays, maps and strings
//! are refused (no encoder of these profiles writes them).

use alloc::vec::Vec;

use tfmprov_cbor::{Cursor, Label};

use crate::profile::fixed;
use crate::{
    write, Error, Kid, ParseError, ALG_A128GCM, ALG_ECDH_ES_HKDF_256, ALG_ES256, GCM_TAG_LEN, MAX_CBOR_DEPTH,
    P256_POINT_LEN, SEQ_LABEL, SIGNATURE_LEN, TAG_ENCRYPT, TAG_SIGN1,
};

/// Depth allowed inside a protected header bstr.
const PROTECTED_DEPTH: usize = 4;
/// Most parameters in one header map (the profiles use at most three).
const MAX_PARAMS: usize = 16;

/// The header parameters the profiles look at; others are skipped.
#[derive(Default)]
struct Headers<'a> {
    alg: Option<i64>,
    kid: Option<&'a [u8]>,
    iv: Option<&'a [u8]>,
    /// The raw COSE_Key item of label -1 (ephemeral key).
    ephemeral: Option<&'a [u8]>,
    seq: bool,
}

fn cbor<T>(r: Result<T, tfmprov_cbor::Error>, what: &'static str) -> Result<T, ParseError> {
    r.map_err(|e| match e {
        tfmprov_cbor::Error::Malformed => Error::Cbor,
        _ => Error::Profile(what),
    })
}

/// One header map at the cursor.
fn headers<'a>(c: &mut Cursor<'a>, what: &'static str) -> Result<Headers<'a>, ParseError> {
    let n = cbor(c.map(what), what)?;
    if n > MAX_PARAMS as u64 {
        return Err(Error::Profile("too many header parameters"));
    }
    let mut h = Headers::default();
    let mut seen: Vec<Label<'a>> = Vec::new();
    for _ in 0..n {
        let label = cbor(c.label(), what)?;
        if seen.contains(&label) {
            return Err(Error::Profile(what));
        }
        seen.push(label);
        match label {
            Label::Int(1) => h.alg = Some(c.int("alg").map_err(|_| Error::Profile("wrong algorithm"))?),
            Label::Int(2) => return Err(Error::Profile("critical header parameters are not supported")),
            Label::Int(4) => h.kid = Some(cbor(c.bytes("kid"), what)?),
            Label::Int(5) => h.iv = Some(cbor(c.bytes("iv"), what)?),
            Label::Int(6) => return Err(Error::Profile("partial IV is not supported")),
            Label::Int(-1) => h.ephemeral = Some(cbor(c.raw(), what)?),
            Label::Int(l) if l == SEQ_LABEL => {
                h.seq = true;
                cbor(c.skip(), what)?;
            }
            _ => cbor(c.skip(), what)?,
        }
    }
    Ok(h)
}

/// A protected header: the bstr at the cursor, its bytes and its map
/// (empty bstr: no parameters).
fn protected<'a>(c: &mut Cursor<'a>, what: &'static str) -> Result<(&'a [u8], Headers<'a>), ParseError> {
    let bytes = cbor(c.bytes(what), what)?;
    if bytes.is_empty() {
        return Ok((bytes, Headers::default()));
    }
    let mut inner = Cursor::new(bytes, PROTECTED_DEPTH).map_err(|_| Error::Cbor)?;
    let h = headers(&mut inner, what)?;
    Ok((bytes, h))
}

/// `check_common` of the `coset` parsers: no critical parameters (refused
/// while reading), no algorithm unprotected, kid not in both, no seq
/// unprotected.
fn check_common(p: &Headers<'_>, u: &Headers<'_>) -> Result<(), ParseError> {
    if u.alg.is_some() {
        return Err(Error::Profile("algorithm in unprotected header"));
    }
    if p.kid.is_some_and(|k| !k.is_empty()) && u.kid.is_some_and(|k| !k.is_empty()) {
        return Err(Error::Profile("kid in both header buckets"));
    }
    if u.seq {
        return Err(Error::Profile("seq in unprotected header"));
    }
    Ok(())
}

fn expect_alg(h: &Headers<'_>, want: i64) -> Result<(), ParseError> {
    match h.alg {
        Some(a) if a == want => Ok(()),
        Some(_) => Err(Error::Profile("wrong algorithm")),
        None => Err(Error::Profile("algorithm missing from protected header")),
    }
}

/// A non-empty kid (an empty bstr counts as absent, as in `coset`).
fn kid<'a>(h: &Headers<'a>) -> Option<&'a [u8]> {
    h.kid.filter(|k| !k.is_empty())
}

/// The outer Sign1 of an envelope: (signer kid, ToBeSigned, signature, payload).
pub(super) struct Sign1<'a> {
    pub kid: Kid,
    pub tbs: Vec<u8>,
    pub signature: [u8; SIGNATURE_LEN],
    pub payload: &'a [u8],
}

/// `18([protected, unprotected, payload, signature])`, ES256 with an 8-byte
/// kid in the protected header; the tag is required.
pub(super) fn sign1<'a>(msg: &'a [u8], external_aad: &[u8]) -> Result<Sign1<'a>, ParseError> {
    let mut c = Cursor::new(msg, MAX_CBOR_DEPTH).map_err(|_| Error::Cbor)?;
    if cbor(c.tag(), "not a COSE_Sign1")? != Some(TAG_SIGN1) {
        return Err(Error::Profile("not a tagged COSE_Sign1 or COSE_Encrypt"));
    }
    if cbor(c.array("not a COSE_Sign1"), "not a COSE_Sign1")? != 4 {
        return Err(Error::Profile("not a COSE_Sign1"));
    }
    let (protected_bytes, p) = protected(&mut c, "not a COSE_Sign1")?;
    let u = headers(&mut c, "not a COSE_Sign1")?;
    if c.null() {
        return Err(Error::Profile("payload is detached"));
    }
    let payload = cbor(c.bytes("not a COSE_Sign1"), "not a COSE_Sign1")?;
    let signature = cbor(c.bytes("not a COSE_Sign1"), "not a COSE_Sign1")?;
    check_common(&p, &u)?;
    expect_alg(&p, ALG_ES256)?;
    let kid: Kid = fixed(kid(&p).ok_or(Error::Profile("kid missing from protected header"))?, "kid is not 8 bytes")?;
    let signature: [u8; SIGNATURE_LEN] = fixed(signature, "signature is not 64 bytes")?;
    if p.seq {
        return Err(Error::Profile("seq in a remote envelope"));
    }
    let tbs = write::sig_structure(protected_bytes, external_aad, payload);
    Ok(Sign1 { kid, tbs, signature, payload })
}

/// The COSE_Encrypt of an envelope, checked.
pub(super) struct Encrypt {
    pub recipient_kid: Kid,
    pub ephemeral: [u8; P256_POINT_LEN],
    pub iv: [u8; 12],
    pub aad: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub recipient_protected: Vec<u8>,
}

/// `96([protected {1: 1}, {5: iv}, ciphertext, [recipient]])` with one
/// ECDH-ES + HKDF-256 recipient `[{1: -25}, {4: kid, -1: COSE_Key}, h'' / nil]`.
pub(super) fn encrypt(msg: &[u8], external_aad: &[u8]) -> Result<Encrypt, ParseError> {
    const WHAT: &str = "not a COSE_Encrypt";
    let mut c = Cursor::new(msg, MAX_CBOR_DEPTH).map_err(|_| Error::Cbor)?;
    match cbor(c.tag(), WHAT)? {
        Some(TAG_ENCRYPT) => {}
        Some(_) => return Err(Error::Profile("unexpected CBOR tag")),
        None => return Err(Error::Profile("payload is not a tagged COSE_Encrypt")),
    }
    if cbor(c.array(WHAT), WHAT)? != 4 {
        return Err(Error::Profile(WHAT));
    }
    let (protected_bytes, p) = protected(&mut c, WHAT)?;
    let u = headers(&mut c, WHAT)?;
    if c.null() {
        return Err(Error::Profile("ciphertext is detached"));
    }
    let ciphertext = cbor(c.bytes(WHAT), WHAT)?;
    if cbor(c.array(WHAT), WHAT)? != 1 {
        return Err(Error::Profile("not exactly one recipient"));
    }
    let r = recipient(&mut c)?;
    check_common(&p, &u)?;
    expect_alg(&p, ALG_A128GCM)?;
    if kid(&p).is_some() || kid(&u).is_some() {
        return Err(Error::Profile("kid in the content headers"));
    }
    if p.iv.is_some_and(|v| !v.is_empty()) {
        return Err(Error::Profile("IV in protected header"));
    }
    let iv = fixed(u.iv.filter(|v| !v.is_empty()).ok_or(Error::Profile("IV missing"))?, "IV is not 12 bytes")?;
    if ciphertext.len() < GCM_TAG_LEN {
        return Err(Error::Profile("ciphertext shorter than the tag"));
    }
    let (recipient_kid, ephemeral, recipient_protected) = r;
    Ok(Encrypt {
        recipient_kid,
        ephemeral,
        iv,
        aad: write::enc_structure("Encrypt", protected_bytes, external_aad),
        ciphertext: ciphertext.to_vec(),
        recipient_protected,
    })
}

/// The one recipient: (kid, ephemeral point, its protected header bytes).
fn recipient(c: &mut Cursor<'_>) -> Result<(Kid, [u8; P256_POINT_LEN], Vec<u8>), ParseError> {
    const WHAT: &str = "not a COSE_Encrypt";
    let n = cbor(c.array(WHAT), WHAT)?;
    if !(3..=4).contains(&n) {
        return Err(Error::Profile(WHAT));
    }
    let (protected_bytes, p) = protected(c, WHAT)?;
    let u = headers(c, WHAT)?;
    let has_ciphertext = if c.null() { false } else { !cbor(c.bytes(WHAT), WHAT)?.is_empty() };
    if n == 4 && cbor(c.array(WHAT), WHAT)? > 0 {
        return Err(Error::Profile("nested recipients"));
    }
    check_common(&p, &u)?;
    expect_alg(&p, ALG_ECDH_ES_HKDF_256)?;
    if has_ciphertext {
        return Err(Error::Profile("direct key agreement recipient has a ciphertext"));
    }
    let kid: Kid = fixed(kid(&p).or(kid(&u)).ok_or(Error::Profile("recipient kid missing"))?, "recipient kid is not 8 bytes")?;
    if p.ephemeral.is_some() {
        return Err(Error::Profile("ephemeral key in recipient protected header"));
    }
    let ephemeral = ephemeral_key(u.ephemeral.ok_or(Error::Profile("ephemeral key missing"))?)?;
    Ok((kid, ephemeral, protected_bytes.to_vec()))
}

/// An EC2 P-256 public COSE_Key `{1: 2, -1: 1, -2: x, -3: y}` -> 0x04 || x || y.
/// Other parameters are ignored, except a private key (-4), which is refused.
fn ephemeral_key(item: &[u8]) -> Result<[u8; P256_POINT_LEN], ParseError> {
    let mut c = Cursor::new(item, MAX_CBOR_DEPTH).map_err(|_| Error::Cbor)?;
    let n = c.map("key").map_err(|_| Error::Profile("ephemeral key is not a map"))?;
    let (mut kty, mut crv, mut x, mut y) = (None, None, None, None);
    for _ in 0..n {
        let slot = match cbor(c.label(), "ephemeral key is not a map")? {
            Label::Int(1) => &mut kty,
            Label::Int(-1) => &mut crv,
            Label::Int(-2) => &mut x,
            Label::Int(-3) => &mut y,
            Label::Int(-4) => return Err(Error::Profile("ephemeral key carries a private key")),
            _ => {
                cbor(c.skip(), "ephemeral key is not a map")?;
                continue;
            }
        };
        if slot.replace(cbor(c.raw(), "ephemeral key is not a map")?).is_some() {
            return Err(Error::Profile("duplicate ephemeral key parameter"));
        }
    }
    let is_int = |v: Option<&[u8]>, want: i64| {
        v.is_some_and(|b| Cursor::new(b, 1).ok().and_then(|mut c| c.int("").ok()) == Some(want))
    };
    if !is_int(kty, 2) {
        return Err(Error::Profile("ephemeral key is not EC2"));
    }
    if !is_int(crv, 1) {
        return Err(Error::Profile("ephemeral key is not P-256"));
    }
    let coord = |v: Option<&[u8]>, what| -> Result<[u8; 32], ParseError> {
        let b = v.and_then(|b| Cursor::new(b, 1).ok().and_then(|mut c| c.bytes("").ok()));
        fixed(b.ok_or(Error::Profile(what))?, what)
    };
    let x = coord(x, "ephemeral key x is not a 32-byte bstr")?;
    let y = coord(y, "ephemeral key y is not a 32-byte bstr")?;
    Ok(crate::profile::point(&x, &y))
}
