use super::*;
use crate::test_crypto::*;
use coset::{CoseEncrypt, CoseSign1, TaggedCborSerializable};

const CMD: &[u8] = b"\xa2\x64cseq\x01\x62op\x66status";

/// A command for dev-1: signed by `cloud`, encrypted to `kak`.
fn command(cloud: &KeyPair, kak: &KeyPair, device: &str, pt: &[u8]) -> Vec<u8> {
    build_envelope(Direction::Command, device, pt, &kak.kid, &kak.public, &cloud.kid, crypto(), signer(&cloud.sk)).unwrap()
}

/// Parse, verify with `signer_pub`, open with `kak`.
fn receive(dir: Direction, device: &str, msg: &[u8], signer_pub: &[u8; 65], kak: &KeyPair) -> Result<Vec<u8>, Error<CryptoError>> {
    let env = parse_envelope(dir, device, msg).map_err(Error::cast)?;
    env.verify(verifier(signer_pub))?;
    env.open(ecdh_static(&kak.sk), hkdf_sha256, gcm_decrypt)
}

#[test]
fn command_round_trip() {
    let (cloud, kak) = (keypair(), keypair());
    let msg = command(&cloud, &kak, "dev-1", CMD);
    assert_eq!(&msg[..1], [0xd2]);
    let env = parse_envelope(Direction::Command, "dev-1", &msg).unwrap();
    assert_eq!(env.signer_kid, Some(cloud.kid));
    assert_eq!(env.recipient_kid, kak.kid);
    assert!(env.is_signed());
    assert_eq!(receive(Direction::Command, "dev-1", &msg, &cloud.public, &kak).unwrap(), CMD);
}

#[test]
fn layout_is_the_documented_profile() {
    let (cloud, kak) = (keypair(), keypair());
    let msg = command(&cloud, &kak, "dev-1", CMD);
    let outer = CoseSign1::from_tagged_slice(&msg).unwrap();
    let mut want = vec![0xa2, 0x01, 0x26, 0x04, 0x48];
    want.extend_from_slice(&cloud.kid);
    assert_eq!(outer.protected.original_data.clone().unwrap(), want, "{{1: -7, 4: cloud kid}}");
    let inner = CoseEncrypt::from_tagged_slice(outer.payload.as_ref().unwrap()).unwrap();
    assert_eq!(inner.protected.original_data.clone().unwrap(), [0xa1, 0x01, 0x01], "{{1: 1}}: no kid");
    assert_eq!(inner.unprotected.iv.len(), 12);
    assert_eq!(inner.recipients.len(), 1);
    assert_eq!(inner.recipients[0].unprotected.key_id, kak.kid);
    // Plaintext + 16-byte tag.
    assert_eq!(inner.ciphertext.as_ref().unwrap().len(), CMD.len() + 16);
    // The command text appears nowhere in the message.
    assert!(!msg.windows(6).any(|w| w == b"status"));
}

#[test]
fn another_device_or_direction_does_not_verify() {
    let (cloud, kak) = (keypair(), keypair());
    let msg = command(&cloud, &kak, "dev-1", CMD);
    // Replayed to dev-2's topic: the binding differs, the signature fails.
    assert!(matches!(receive(Direction::Command, "dev-2", &msg, &cloud.public, &kak), Err(Error::Signature(_))));
    // Passed off as a reply.
    assert!(matches!(receive(Direction::Reply, "dev-1", &msg, &cloud.public, &kak), Err(Error::Signature(_))));
    // A longer id with dev-1 as prefix is another binding too.
    assert!(matches!(receive(Direction::Command, "dev-10", &msg, &cloud.public, &kak), Err(Error::Signature(_))));
}

#[test]
fn another_signer_or_recipient_is_refused() {
    let (cloud, kak, other) = (keypair(), keypair(), keypair());
    let forged = build_envelope(Direction::Command, "dev-1", CMD, &kak.kid, &kak.public, &cloud.kid, crypto(), signer(&other.sk)).unwrap();
    assert!(matches!(receive(Direction::Command, "dev-1", &forged, &cloud.public, &kak), Err(Error::Signature(_))));
    // Right signer, encrypted to another key: the signature holds, decryption fails.
    let msg = command(&cloud, &other, "dev-1", CMD);
    let env = parse_envelope(Direction::Command, "dev-1", &msg).unwrap();
    env.verify(verifier(&cloud.public)).unwrap();
    assert_ne!(env.recipient_kid, kak.kid, "the kid tells the device it is not for its key");
    assert!(matches!(env.open(ecdh_static(&kak.sk), hkdf_sha256, gcm_decrypt), Err(Error::Decrypt(_))));
}

#[test]
fn every_flipped_bit_is_caught() {
    let (cloud, kak) = (keypair(), keypair());
    let msg = command(&cloud, &kak, "dev-1", CMD);
    for i in 0..msg.len() {
        for bit in [0x01u8, 0x80] {
            let mut m = msg.clone();
            m[i] ^= bit;
            assert!(receive(Direction::Command, "dev-1", &m, &cloud.public, &kak).is_err(), "byte {i} bit {bit:#x} accepted");
        }
    }
}

#[test]
fn the_sealed_part_alone_is_not_taken_for_a_signed_command() {
    // An attacker strips the signature and sends the bare COSE_Encrypt.
    let (cloud, kak) = (keypair(), keypair());
    let msg = command(&cloud, &kak, "dev-1", CMD);
    let outer = CoseSign1::from_tagged_slice(&msg).unwrap();
    let bare = outer.payload.unwrap();
    let env = parse_envelope(Direction::Command, "dev-1", &bare).unwrap();
    assert_eq!(env.signer_kid, None);
    assert!(!env.is_signed());
    assert!(matches!(env.verify(verifier(&cloud.public)), Err(Error::Profile("envelope is not signed"))));
}

#[test]
fn unsigned_reply_round_trip_and_binding() {
    let (cloud, _) = (keypair(), keypair());
    let reply = b"\xa1\x62rc\x00";
    let msg = seal_envelope(Direction::Reply, "dev-1", reply, &cloud.kid, &cloud.public, crypto()).unwrap();
    assert_eq!(&msg[..2], [0xd8, 0x60]);
    let env = parse_envelope(Direction::Reply, "dev-1", &msg).unwrap();
    assert_eq!(env.open(ecdh_static(&cloud.sk), hkdf_sha256, gcm_decrypt).unwrap(), reply);
    // The binding is in the AEAD: another device's or direction's fails to open.
    for (dir, dev) in [(Direction::Reply, "dev-2"), (Direction::Command, "dev-1")] {
        let env = parse_envelope(dir, dev, &msg).unwrap();
        assert!(matches!(env.open(ecdh_static(&cloud.sk), hkdf_sha256, gcm_decrypt), Err(Error::Decrypt(_))));
    }
}

#[test]
fn malformed_envelopes_get_clear_errors() {
    let (cloud, kak) = (keypair(), keypair());
    let msg = command(&cloud, &kak, "dev-1", CMD);
    let untagged = &msg[1..];
    assert!(matches!(parse_envelope(Direction::Command, "dev-1", untagged), Err(Error::Profile(_))));
    assert!(parse_envelope(Direction::Command, "dev-1", &[]).is_err());
    assert!(parse_envelope(Direction::Command, "dev-1", &msg[..msg.len() / 2]).is_err());
    assert!(matches!(parse_envelope(Direction::Command, "dev-1", &vec![0xd2; 70 * 1024]), Err(Error::TooLarge(_))));
    // A data message (Sign1 over plain bytes) is not an envelope.
    let data = crate::sign_data(&cloud.kid, 1, b"x", signer(&cloud.sk)).unwrap();
    assert!(matches!(parse_envelope(Direction::Command, "dev-1", &data), Err(Error::Profile(_))));
}

#[test]
fn topics() {
    assert_eq!(envelope_topic("prov", "dev-1", Direction::Command), "prov/dev-1/cmd");
    assert_eq!(envelope_topic("prov", "dev-1", Direction::Reply), "prov/dev-1/reply");
    assert_eq!(Direction::Command.binding("d"), b"tfmprov/cmd/d");
    assert_eq!(Direction::Reply.binding("d"), b"tfmprov/reply/d");
}

/// The `coset`-based parser this module had before `parse.rs` (kept as an
/// oracle: the two must agree on what they accept and what they return).
fn parse_envelope_coset(dir: Direction, device_id: &str, msg: &[u8]) -> Result<Envelope, ParseError> {
    use crate::profile;
    use crate::session::{content_iv, parse_recipient};
    use coset::{iana, EncryptionContext};
    check_len(msg.len())?;
    let binding = dir.binding(device_id);
    let (signer, encrypt) = match msg.first() {
        Some(&b) if u64::from(b) == 0xc0 + TAG_SIGN1 => {
            let outer = crate::data::parse_sign1(msg, &binding)?;
            if profile::find(&outer.protected, crate::SEQ_LABEL).is_some() {
                return Err(Error::Profile("seq in a remote envelope"));
            }
            if outer.payload.get(..2) != Some(&[0xd8, TAG_ENCRYPT as u8][..]) {
                return Err(Error::Profile("payload is not a tagged COSE_Encrypt"));
            }
            (Some((outer.kid, outer.tbs, outer.signature)), outer.payload)
        }
        Some(0xd8) if msg.get(1) == Some(&(TAG_ENCRYPT as u8)) => (None, msg.to_vec()),
        _ => return Err(Error::Profile("not a tagged COSE_Sign1 or COSE_Encrypt")),
    };
    let enc: CoseEncrypt = profile::decode_cose(&encrypt, TAG_ENCRYPT, "not a COSE_Encrypt")?;
    let h = &enc.protected.header;
    profile::check_common(h, &enc.unprotected)?;
    profile::expect_alg(h, iana::Algorithm::A128GCM)?;
    if !h.key_id.is_empty() || !enc.unprotected.key_id.is_empty() {
        return Err(Error::Profile("kid in the content headers"));
    }
    let iv = content_iv(h, &enc.unprotected)?;
    let ciphertext = match &enc.ciphertext {
        Some(c) if c.len() >= GCM_TAG_LEN => c.clone(),
        Some(_) => return Err(Error::Profile("ciphertext shorter than the tag")),
        None => return Err(Error::Profile("ciphertext is detached")),
    };
    let (recipient_kid, ephemeral, recipient_protected) = parse_recipient(&enc)?;
    let aad = coset::enc_structure_data(EncryptionContext::CoseEncrypt, enc.protected.clone(), &binding);
    let (signer_kid, signed) = match signer {
        Some((kid, tbs, sig)) => (Some(kid), Some((tbs, sig))),
        None => (None, None),
    };
    Ok(Envelope { signer_kid, recipient_kid, ephemeral, iv, signed, aad, ciphertext, recipient_protected })
}

/// Both parsers on `msg`: the same envelope, or both a refusal. Returns
/// the refusal's profile message (`None`: accepted).
fn agree(what: &str, msg: &[u8]) -> Option<&'static str> {
    let new = parse_envelope(Direction::Command, "dev-1", msg);
    let old = parse_envelope_coset(Direction::Command, "dev-1", msg);
    match (&new, &old) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}"),
        (Err(_), Err(_)) => {}
        _ => panic!("{what}: the parsers disagree: new {new:?}, coset {old:?} on {}", hex(msg)),
    }
    match new {
        Ok(_) => None,
        Err(Error::Profile(m)) => Some(m),
        Err(e) => Some(if matches!(e, Error::Cbor) { "cbor" } else { "other" }),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Re-sign a command whose COSE_Encrypt was changed by `edit` (through
/// coset), so that the change reaches the inner parser.
fn with_encrypt(cloud: &KeyPair, msg: &[u8], edit: impl FnOnce(&mut CoseEncrypt)) -> Vec<u8> {
    let outer = CoseSign1::from_tagged_slice(msg).unwrap();
    let mut enc = CoseEncrypt::from_tagged_slice(outer.payload.as_deref().unwrap()).unwrap();
    edit(&mut enc);
    let inner = enc.to_tagged_vec().unwrap();
    crate::data::sign1(write::es256_protected(&cloud.kid, None), &inner, &Direction::Command.binding("dev-1"), signer(&cloud.sk))
        .unwrap()
}

#[test]
fn the_parser_agrees_with_the_coset_oracle() {
    use coset::{iana, HeaderBuilder, Label};
    let (cloud, kak) = (keypair(), keypair());
    let msg = command(&cloud, &kak, "dev-1", CMD);
    assert_eq!(agree("valid", &msg), None);
    let unsigned = seal_envelope(Direction::Command, "dev-1", CMD, &kak.kid, &kak.public, crypto()).unwrap();
    assert_eq!(agree("valid unsigned", &unsigned), None);
    // Every byte changed to a few values, and every truncation.
    for m in [&msg, &unsigned] {
        for i in 0..m.len() {
            for v in [0x00, 0x01, 0x18, 0x20, 0x40, 0x5f, 0x80, 0xa0, 0xf6, 0xff, m[i] ^ 0x01, m[i].wrapping_add(1)] {
                let mut x = m.to_vec();
                x[i] = v;
                agree(&format!("byte {i} = {v:#x}"), &x);
            }
            agree(&format!("cut at {i}"), &m[..i]);
        }
    }
    // Header and structure variants inside a valid signature.
    type Edit = Box<dyn Fn(&mut CoseEncrypt)>;
    let variants: Vec<(&str, Option<&str>, Edit)> = vec![
        ("unknown content parameter", None, Box::new(|e| e.unprotected.rest.push((Label::Int(99), 1.into())))),
        ("text label", None, Box::new(|e| e.unprotected.rest.push((Label::Text("x".into()), 1.into())))),
        ("kid in content", Some("kid in the content headers"), Box::new(|e| e.unprotected.key_id = vec![1; 8])),
        ("iv protected", Some("IV in protected header"), Box::new(|e| e.protected = coset::ProtectedHeader { original_data: None, header: HeaderBuilder::new().algorithm(iana::Algorithm::A128GCM).iv(vec![0; 12]).build() })),
        ("partial iv", Some("partial IV is not supported"), Box::new(|e| e.unprotected.partial_iv = vec![1])),
        ("short iv", Some("IV is not 12 bytes"), Box::new(|e| e.unprotected.iv = vec![0; 11])),
        ("alg unprotected", Some("algorithm in unprotected header"), Box::new(|e| e.unprotected.alg = Some(coset::Algorithm::Assigned(iana::Algorithm::A128GCM)))),
        ("crit", Some("critical header parameters are not supported"), Box::new(|e| e.unprotected.crit = vec![coset::RegisteredLabelWithPrivate::Assigned(iana::HeaderParameter::Alg)])),
        ("two recipients", Some("not exactly one recipient"), Box::new(|e| e.recipients.push(e.recipients[0].clone()))),
        ("no recipient", Some("not exactly one recipient"), Box::new(|e| e.recipients.clear())),
        ("recipient ciphertext", Some("direct key agreement recipient has a ciphertext"), Box::new(|e| e.recipients[0].ciphertext = Some(vec![1]))),
        ("recipient empty ciphertext", None, Box::new(|e| e.recipients[0].ciphertext = Some(vec![]))),
        ("nested recipient", Some("nested recipients"), Box::new(|e| { let r = e.recipients[0].clone(); e.recipients[0].recipients.push(r) })),
        ("recipient kid protected too", Some("kid in both header buckets"), Box::new(|e| e.recipients[0].protected = coset::ProtectedHeader { original_data: None, header: HeaderBuilder::new().algorithm(iana::Algorithm::ECDH_ES_HKDF_256).key_id(vec![2; 8]).build() })),
        ("recipient kid moved to protected", None, Box::new(|e| {
            let kid = core::mem::take(&mut e.recipients[0].unprotected.key_id);
            e.recipients[0].protected = coset::ProtectedHeader { original_data: None, header: HeaderBuilder::new().algorithm(iana::Algorithm::ECDH_ES_HKDF_256).key_id(kid).build() };
        })),
        ("recipient without kid", Some("recipient kid missing"), Box::new(|e| e.recipients[0].unprotected.key_id.clear())),
        ("recipient alg wrong", Some("wrong algorithm"), Box::new(|e| e.recipients[0].protected = coset::ProtectedHeader { original_data: None, header: HeaderBuilder::new().algorithm(iana::Algorithm::ECDH_ES_HKDF_512).build() })),
        ("ephemeral key removed", Some("ephemeral key missing"), Box::new(|e| e.recipients[0].unprotected.rest.retain(|(l, _)| *l != Label::Int(-1)))),
        ("ephemeral key with d", Some("ephemeral key carries a private key"), Box::new(|e| {
            for (l, v) in e.recipients[0].unprotected.rest.iter_mut() {
                if *l == Label::Int(-1) {
                    if let ciborium::value::Value::Map(m) = v { m.push(((-4).into(), ciborium::value::Value::Bytes(vec![1; 32]))) }
                }
            }
        })),
        ("ephemeral key extra parameter", None, Box::new(|e| {
            for (l, v) in e.recipients[0].unprotected.rest.iter_mut() {
                if *l == Label::Int(-1) {
                    if let ciborium::value::Value::Map(m) = v { m.push((7.into(), 1.into())) }
                }
            }
        })),
        ("ciphertext short", Some("ciphertext shorter than the tag"), Box::new(|e| e.ciphertext = Some(vec![0; 15]))),
        ("ciphertext detached", Some("ciphertext is detached"), Box::new(|e| e.ciphertext = None)),
    ];
    for (what, want, edit) in variants {
        let m = with_encrypt(&cloud, &msg, edit);
        assert_eq!(agree(what, &m), want, "{what}");
    }
    // The Sign1's own headers.
    let inner = CoseSign1::from_tagged_slice(&msg).unwrap().payload.unwrap();
    let sign1_variants: Vec<(&str, Option<&str>, coset::Header, coset::Header)> = vec![
        ("seq protected", Some("seq in a remote envelope"), HeaderBuilder::new().algorithm(iana::Algorithm::ES256).key_id(cloud.kid.to_vec()).value(crate::SEQ_LABEL, 1.into()).build(), coset::Header::default()),
        ("kid unprotected only", Some("kid missing from protected header"), HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build(), HeaderBuilder::new().key_id(cloud.kid.to_vec()).build()),
        ("kid short", Some("kid is not 8 bytes"), HeaderBuilder::new().algorithm(iana::Algorithm::ES256).key_id(vec![1; 7]).build(), coset::Header::default()),
        ("alg EdDSA", Some("wrong algorithm"), HeaderBuilder::new().algorithm(iana::Algorithm::EdDSA).key_id(cloud.kid.to_vec()).build(), coset::Header::default()),
        ("extra unprotected", None, HeaderBuilder::new().algorithm(iana::Algorithm::ES256).key_id(cloud.kid.to_vec()).build(), HeaderBuilder::new().value(33, 1.into()).build()),
    ];
    for (what, want, p, u) in sign1_variants {
        let s = coset::CoseSign1Builder::new().protected(p).unprotected(u).payload(inner.clone()).signature(vec![0; 64]).build();
        assert_eq!(agree(what, &s.to_tagged_vec().unwrap()), want, "{what}");
    }
}

#[test]
fn kak_announcements_are_bound_signed_and_ordered() {
    let (device, kak) = (keypair(), keypair());
    let msg = sign_kak_announcement("dev-1", &kak.public, &device.kid, 77, signer(&device.sk)).unwrap();
    let a = parse_kak_announcement("dev-1", &msg).unwrap();
    assert_eq!((a.signer_kid, a.seq, a.kak), (device.kid, 77, kak.public));
    a.verify(verifier(&device.public)).unwrap();
    assert!(a.verify(verifier(&kak.public)).is_err(), "another key's signature");
    // Bound to the device: moved to another device's topic, it does not verify.
    parse_kak_announcement("dev-2", &msg).unwrap().verify(verifier(&device.public)).unwrap_err();
    // Not an envelope, and an envelope is not an announcement.
    assert!(parse_envelope(Direction::Reply, "dev-1", &msg).is_err());
    let env = command(&device, &kak, "dev-1", CMD);
    assert!(parse_kak_announcement("dev-1", &env).is_err());
    // A data message (no binding, payload not a point) is refused.
    let data = crate::sign_data(&device.kid, 1, &kak.public[..64], signer(&device.sk)).unwrap();
    assert!(matches!(parse_kak_announcement("dev-1", &data), Err(Error::Profile(_))));
}
