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
