//! The writers produce exactly the bytes of the `coset` builders they
//! replaced (`crate::oracle`), for boundary and random inputs, and what they
//! write parses and verifies with the crate's (coset-based) parsers.

use super::*;
use crate::oracle;
use crate::session::SessionCrypto;
use crate::test_crypto::*;
use alloc::vec;

/// CBOR length boundaries: 1-byte, 2-byte, 3-byte, 5-byte and 9-byte heads.
const SEQS: [u64; 12] = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX - 1, u64::MAX];
const LENS: [usize; 8] = [0, 1, 23, 24, 255, 256, 1000, 65_535];

/// A deterministic "signature" so that both builders sign the same bytes;
/// it also checks that both ask to sign the same ToBeSigned.
fn fake_sign(tbs: &[u8]) -> Result<[u8; 64], CryptoError> {
    let mut sig = [0u8; 64];
    for (i, b) in tbs.iter().enumerate() {
        sig[i % 64] = sig[i % 64].wrapping_mul(31).wrapping_add(*b);
    }
    Ok(sig)
}

#[test]
fn data_messages_match_coset_byte_for_byte() {
    let kid = [0xA5u8; 8];
    for seq in SEQS {
        for len in LENS {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            // Same bytes, or the same refusal (65535 bytes of payload make a
            // message over MAX_MESSAGE_LEN).
            let ours = crate::sign_data(&kid, seq, &payload, fake_sign);
            let theirs = oracle::sign_data(&kid, seq, &payload, fake_sign);
            assert_eq!(ours, theirs, "seq {seq} len {len}");
        }
    }
    // With a real key, the result verifies.
    let kp = keypair();
    let msg = crate::sign_data(&kp.kid, 7, b"reading", signer(&kp.sk)).unwrap();
    let parsed = crate::parse_data(&msg).unwrap();
    assert_eq!((parsed.seq, parsed.kid, parsed.payload.as_slice()), (7, kp.kid, &b"reading"[..]));
    parsed.verify(verifier(&kp.public)).unwrap();
}

#[test]
fn sealed_messages_match_coset_byte_for_byte() {
    // A deterministic "AEAD": plaintext xor AAD-derived bytes, then a tag.
    let fake_gcm = |aad: &[u8], pt: &[u8]| -> Result<Vec<u8>, CryptoError> {
        let mut out: Vec<u8> = pt.iter().enumerate().map(|(i, b)| b ^ aad[i % aad.len()]).collect();
        out.extend_from_slice(&[aad.len() as u8; 16]);
        Ok(out)
    };
    for sid in [0u32, 1, 23, 24, 0xFFFF_FFFF] {
        for seq in SEQS {
            for len in [0usize, 1, 24, 300] {
                let pt = vec![0x3C; len];
                let iv = crate::sealed_iv(sid, seq);
                let ours = crate::seal(sid, seq, &iv, &pt, fake_gcm).unwrap();
                let theirs = oracle::seal(sid, seq, &iv, &pt, fake_gcm).unwrap();
                assert_eq!(ours, theirs, "sid {sid} seq {seq} len {len}");
            }
        }
    }
}

#[test]
fn session_messages_match_coset_byte_for_byte() {
    for sid in [1u32, 24, 0x0100_0000, u32::MAX] {
        let dev = keypair();
        let cloud = keypair();
        // Fix the ephemeral key and the IV so both builders see the same.
        let (eph, shared) = ecdh_ephemeral(&cloud.public).unwrap();
        let iv = [0x11u8; 12];
        let crypto = || {
            SessionCrypto::new(
                move |_: &[u8; 65]| Ok((eph, shared)),
                hkdf_sha256,
                gcm_encrypt,
                move |buf: &mut [u8]| {
                    buf.copy_from_slice(&iv);
                    Ok::<(), CryptoError>(())
                },
            )
        };
        let key = [0x42u8; 16];
        let ours = crate::build_session(sid, &key, &cloud.kid, &cloud.public, &dev.kid, crypto(), fake_sign).unwrap();
        let theirs = oracle::build_session(sid, &key, &cloud.kid, &cloud.public, &dev.kid, crypto(), fake_sign).unwrap();
        assert_eq!(ours, theirs, "sid {sid}");
        // And the real thing opens with the cloud key.
        let real = crate::build_session(sid, &key, &cloud.kid, &cloud.public, &dev.kid, crypto(), signer(&dev.sk)).unwrap();
        let parsed = crate::parse_session(&real).unwrap();
        parsed.verify(verifier(&dev.public)).unwrap();
        let opened = parsed.decrypt(ecdh_static(&cloud.sk), hkdf_sha256, gcm_decrypt).unwrap();
        assert_eq!(opened, key);
    }
}

#[test]
fn heads_are_minimal_for_every_integer_width() {
    for (v, bytes) in [
        (0i64, &[0x00][..]),
        (23, &[0x17]),
        (24, &[0x18, 0x18]),
        (-1, &[0x20]),
        (-24, &[0x37]),
        (-25, &[0x38, 0x18]),
        (-65537, &[0x3a, 0x00, 0x01, 0x00, 0x00]),
        (i64::MIN, &[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    ] {
        let mut e = Enc::new();
        e.int(v);
        assert_eq!(e.finish(), bytes, "{v}");
    }
    assert_eq!(recipient_protected(), [0xa1, 0x01, 0x38, 0x18]);
}
