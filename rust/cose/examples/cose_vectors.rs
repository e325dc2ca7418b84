//! Interop vectors for `tests/host/test_cose_interop.py` (pycose), using the
//! dev-dependency crypto (p256, sha2, hkdf, aes-gcm).
//!
//! ```text
//! cose_vectors gen DIR
//!     fresh device and cloud keys; writes DIR/vectors.json (keys and
//!     expected values, hex) and DIR/data.cbor, DIR/session.cbor, DIR/sealed.cbor
//! cose_vectors verify-data FILE DEVICE_PUBHEX
//!     parse + verify a data Sign1; prints {"kid","seq","payload"}
//! cose_vectors open-sealed FILE KEYHEX
//!     parse + decrypt an Encrypt0; prints {"session_id","seq","plaintext"}
//! cose_vectors decrypt-session FILE DEVICE_PUBHEX CLOUD_PRIVHEX
//!     parse + verify + decrypt a session message; prints
//!     {"device_kid","session_id","cloud_kid","session_key"}
//! cose_vectors open-envelope cmd|reply DEVICE_ID FILE SIGNER_PUBHEX|- RECIPIENT_PRIVHEX
//!     parse a remote envelope bound to (direction, device id), verify it
//!     with the signer's key (`-`: it must be unsigned), open it with the
//!     recipient's private key; prints {"signer_kid","recipient_kid","plaintext"}
//! cose_vectors seal-envelope cmd|reply DEVICE_ID PLAINHEX RECIPIENT_PUBHEX SIGNER_PRIVHEX|- OUT
//!     build a remote envelope (signed, or unsigned with `-`) into OUT
//! ```
//! Exit status 0 on success, 1 on any rejection (the reason on stderr), 2 on usage errors.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes128Gcm;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tfmprov_cose::*;

/// The text is read through `Debug` when an error is printed.
#[derive(Debug)]
struct CryptoError(#[allow(dead_code)] &'static str);

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd-length hex: {s}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex {s}: {e}")))
        .collect()
}

fn unhex_n<const N: usize>(s: &str) -> Result<[u8; N], String> {
    <[u8; N]>::try_from(unhex(s)?.as_slice()).map_err(|_| format!("expected {N} bytes of hex"))
}

fn point(sk: &SigningKey) -> [u8; 65] {
    let mut out = [0u8; 65];
    out.copy_from_slice(sk.verifying_key().to_encoded_point(false).as_bytes());
    out
}

fn kid_of(public: &[u8; 65]) -> Kid {
    kid_from_spki_digest(&Sha256::digest(p256_spki_der(public)).into())
}

fn sign(sk: &SigningKey) -> impl FnOnce(&[u8]) -> Result<[u8; 64], CryptoError> + '_ {
    move |tbs| {
        let sig: Signature = sk.sign(tbs);
        Ok(sig.to_bytes().into())
    }
}

fn verify(public: &[u8; 65]) -> impl FnOnce(&[u8], &[u8; 64]) -> Result<(), CryptoError> + '_ {
    move |tbs, sig| {
        let vk =
            VerifyingKey::from_sec1_bytes(public).map_err(|_| CryptoError("bad public key"))?;
        let sig = Signature::from_slice(sig).map_err(|_| CryptoError("bad signature encoding"))?;
        vk.verify(tbs, &sig)
            .map_err(|_| CryptoError("bad signature"))
    }
}

fn ecdh_ephemeral(peer: &[u8; 65]) -> Result<([u8; 65], [u8; 32]), CryptoError> {
    let peer = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| CryptoError("bad peer point"))?;
    let eph = p256::ecdh::EphemeralSecret::random(&mut OsRng);
    let mut public = [0u8; 65];
    public.copy_from_slice(
        p256::PublicKey::from(&eph)
            .to_encoded_point(false)
            .as_bytes(),
    );
    let mut s = [0u8; 32];
    s.copy_from_slice(eph.diffie_hellman(&peer).raw_secret_bytes());
    Ok((public, s))
}

fn ecdh_static(
    secret: &p256::SecretKey,
) -> impl FnOnce(&[u8; 65]) -> Result<[u8; 32], CryptoError> + '_ {
    move |peer| {
        let peer =
            p256::PublicKey::from_sec1_bytes(peer).map_err(|_| CryptoError("bad peer point"))?;
        let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
        let mut s = [0u8; 32];
        s.copy_from_slice(shared.raw_secret_bytes());
        Ok(s)
    }
}

fn hkdf_sha256(ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; len];
    hkdf::Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut out)
        .map_err(|_| CryptoError("hkdf length"))?;
    Ok(out)
}

fn gcm_encrypt(
    key: &[u8; 16],
    iv: &[u8; 12],
    aad: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes128Gcm::new(key.into())
        .encrypt(iv.into(), Payload { msg: pt, aad })
        .map_err(|_| CryptoError("encrypt"))
}

fn gcm_decrypt(
    key: &[u8; 16],
    iv: &[u8; 12],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes128Gcm::new(key.into())
        .decrypt(iv.into(), Payload { msg: ct, aad })
        .map_err(|_| CryptoError("decrypt"))
}

fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    OsRng.fill_bytes(buf);
    Ok(())
}

fn key_json(sk: &SigningKey) -> String {
    let public = point(sk);
    format!(
        r#"{{"d": "{}", "x": "{}", "y": "{}", "public": "{}", "kid": "{}"}}"#,
        hex(&sk.to_bytes()),
        hex(&public[1..33]),
        hex(&public[33..]),
        hex(&public),
        hex(&kid_of(&public))
    )
}

fn gen(dir: &Path) -> Result<(), String> {
    let device = SigningKey::random(&mut OsRng);
    let cloud = SigningKey::random(&mut OsRng);
    let (dpub, cpub) = (point(&device), point(&cloud));
    let (dkid, ckid) = (kid_of(&dpub), kid_of(&cpub));
    let mut session_key = [0u8; 16];
    OsRng.fill_bytes(&mut session_key);
    let session_id: u32 = 0x0001_0203;
    let data_seq = 7u64;
    let data_payload = b"hello from rust".to_vec();
    let sealed_seq = 1u64;
    let sealed_payload = b"sealed reading 21.5C".to_vec();

    let data =
        sign_data(&dkid, data_seq, &data_payload, sign(&device)).map_err(|e| e.to_string())?;
    let crypto = SessionCrypto::new(ecdh_ephemeral, hkdf_sha256, gcm_encrypt, random);
    let session = build_session(
        session_id,
        &session_key,
        &ckid,
        &cpub,
        &dkid,
        crypto,
        sign(&device),
    )
    .map_err(|e| e.to_string())?;
    let iv = sealed_iv(session_id, sealed_seq);
    let sealed = seal(session_id, sealed_seq, &iv, &sealed_payload, |aad, pt| {
        gcm_encrypt(&session_key, &iv, aad, pt)
    })
    .map_err(|e| e.to_string())?;

    let w = |name: &str, b: &[u8]| {
        std::fs::write(dir.join(name), b).map_err(|e| format!("{name}: {e}"))
    };
    w("data.cbor", &data)?;
    w("session.cbor", &session)?;
    w("sealed.cbor", &sealed)?;
    let json = format!(
        "{{\n  \"device\": {},\n  \"cloud\": {},\n  \"session_key\": \"{}\",\n  \"session_id\": {},\n  \
         \"data\": {{\"file\": \"data.cbor\", \"seq\": {}, \"payload\": \"{}\"}},\n  \
         \"session\": {{\"file\": \"session.cbor\"}},\n  \
         \"sealed\": {{\"file\": \"sealed.cbor\", \"seq\": {}, \"iv\": \"{}\", \"payload\": \"{}\"}},\n  \
         \"kdf_context\": \"{}\"\n}}\n",
        key_json(&device),
        key_json(&cloud),
        hex(&session_key),
        session_id,
        data_seq,
        hex(&data_payload),
        sealed_seq,
        hex(&iv),
        hex(&sealed_payload),
        hex(&kdf_context(&[0xa1, 0x01, 0x38, 0x18])),
    );
    w("vectors.json", json.as_bytes())
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn verify_data(file: &str, pubhex: &str) -> Result<String, String> {
    let public: [u8; 65] = unhex_n(pubhex)?;
    let d = parse_data(&read(file)?).map_err(|e| e.to_string())?;
    if d.kid != kid_of(&public) {
        return Err(format!(
            "kid {} is not the kid of the given key",
            hex(&d.kid)
        ));
    }
    d.verify(verify(&public)).map_err(|e| e.to_string())?;
    Ok(format!(
        r#"{{"kid": "{}", "seq": {}, "payload": "{}"}}"#,
        hex(&d.kid),
        d.seq,
        hex(&d.payload)
    ))
}

fn open_sealed(file: &str, keyhex: &str) -> Result<String, String> {
    let key: [u8; 16] = unhex_n(keyhex)?;
    let m = parse_sealed(&read(file)?).map_err(|e| e.to_string())?;
    let pt = m
        .open(|aad, ct| gcm_decrypt(&key, &m.iv, aad, ct))
        .map_err(|e| e.to_string())?;
    Ok(format!(
        r#"{{"session_id": {}, "seq": {}, "plaintext": "{}"}}"#,
        m.session_id,
        m.seq,
        hex(&pt)
    ))
}

fn decrypt_session(file: &str, devpub: &str, cloudpriv: &str) -> Result<String, String> {
    let device: [u8; 65] = unhex_n(devpub)?;
    let d: [u8; 32] = unhex_n(cloudpriv)?;
    let cloud = p256::SecretKey::from_slice(&d).map_err(|_| "bad cloud private key".to_string())?;
    let s = parse_session(&read(file)?).map_err(|e| e.to_string())?;
    if s.device_kid != kid_of(&device) {
        return Err(format!(
            "device kid {} is not the kid of the given key",
            hex(&s.device_kid)
        ));
    }
    s.verify(verify(&device)).map_err(|e| e.to_string())?;
    let key = s
        .decrypt(ecdh_static(&cloud), hkdf_sha256, gcm_decrypt)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        r#"{{"device_kid": "{}", "session_id": {}, "cloud_kid": "{}", "session_key": "{}"}}"#,
        hex(&s.device_kid),
        s.session_id,
        hex(&s.cloud_kid),
        hex(&key)
    ))
}

fn direction(s: &str) -> Result<Direction, String> {
    match s {
        "cmd" => Ok(Direction::Command),
        "reply" => Ok(Direction::Reply),
        _ => Err(format!("direction {s:?}: expected cmd or reply")),
    }
}

fn open_envelope(dir: &str, device: &str, file: &str, signer: &str, recipient: &str) -> Result<String, String> {
    let dir = direction(dir)?;
    let d: [u8; 32] = unhex_n(recipient)?;
    let key = p256::SecretKey::from_slice(&d).map_err(|_| "bad recipient private key".to_string())?;
    let env = parse_envelope(dir, device, &read(file)?).map_err(|e| e.to_string())?;
    match signer {
        "-" if env.is_signed() => return Err("expected an unsigned envelope".into()),
        "-" => {}
        pubhex => {
            let public: [u8; 65] = unhex_n(pubhex)?;
            if env.signer_kid != Some(kid_of(&public)) {
                return Err("signer kid is not the kid of the given key".into());
            }
            env.verify(verify(&public)).map_err(|e| e.to_string())?;
        }
    }
    let pt = env.open(ecdh_static(&key), hkdf_sha256, gcm_decrypt).map_err(|e| e.to_string())?;
    Ok(format!(
        r#"{{"signer_kid": "{}", "recipient_kid": "{}", "plaintext": "{}"}}"#,
        env.signer_kid.map(|k| hex(&k)).unwrap_or_default(),
        hex(&env.recipient_kid),
        hex(&pt)
    ))
}

fn seal_envelope_cmd(dir: &str, device: &str, plain: &str, recipient: &str, signer: &str, out: &str) -> Result<String, String> {
    let dir = direction(dir)?;
    let recipient: [u8; 65] = unhex_n(recipient)?;
    let plaintext = unhex(plain)?;
    let crypto = SessionCrypto::new(ecdh_ephemeral, hkdf_sha256, gcm_encrypt, random);
    let msg = match signer {
        "-" => seal_envelope(dir, device, &plaintext, &kid_of(&recipient), &recipient, crypto),
        privhex => {
            let d: [u8; 32] = unhex_n(privhex)?;
            let sk = SigningKey::from_slice(&d).map_err(|_| "bad signer private key".to_string())?;
            let kid = kid_of(&point(&sk));
            build_envelope(dir, device, &plaintext, &kid_of(&recipient), &recipient, &kid, crypto, sign(&sk))
        }
    }
    .map_err(|e| e.to_string())?;
    std::fs::write(out, &msg).map_err(|e| format!("{out}: {e}"))?;
    Ok(String::from("{}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["gen", dir] => gen(Path::new(dir)).map(|()| String::from("{}")),
        ["verify-data", file, pubhex] => verify_data(file, pubhex),
        ["open-sealed", file, keyhex] => open_sealed(file, keyhex),
        ["decrypt-session", file, devpub, cloudpriv] => decrypt_session(file, devpub, cloudpriv),
        ["open-envelope", dir, device, file, signer, recipient] => open_envelope(dir, device, file, signer, recipient),
        ["seal-envelope", dir, device, plain, recipient, signer, out] => {
            seal_envelope_cmd(dir, device, plain, recipient, signer, out)
        }
        _ => {
            eprintln!(
                "usage: cose_vectors gen DIR | verify-data FILE PUBHEX | open-sealed FILE KEYHEX | \
                 decrypt-session FILE DEVICE_PUBHEX CLOUD_PRIVHEX | \
                 open-envelope cmd|reply DEVICE_ID FILE SIGNER_PUBHEX|- RECIPIENT_PRIVHEX | \
                 seal-envelope cmd|reply DEVICE_ID PLAINHEX RECIPIENT_PUBHEX SIGNER_PRIVHEX|- OUT"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rejected: {e}");
            ExitCode::from(1)
        }
    }
}
