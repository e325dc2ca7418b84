//! Tests against the real PSA implementation (Mbed TLS). PSA state is
//! process-global and its key files live in the current directory, so every
//! test takes a lock and runs in a fresh temporary directory.

use super::*;
use crate::ids::*;
use crate::rng::RngHealth;
use hex_literal::hex;
use std::sync::Mutex;

static LOCK: Mutex<()> = Mutex::new(());

/// Runs `f` with a fresh PSA in a fresh directory; the directory is given
/// too, so a test can restart PSA in it.
fn with_psa(f: impl FnOnce(Psa, &std::path::Path)) {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let psa = Psa::init().unwrap();
    f(psa, dir.path());
}

fn key(raw: u32) -> DeviceKeyId {
    DeviceKeyId::new(raw.into()).unwrap()
}

/// RFC 6979 A.2.5 (P-256) private key and public key.
const A25_X: [u8; 32] = hex!("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721");
const A25_UX: [u8; 32] = hex!("60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6");
const A25_UY: [u8; 32] = hex!("7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299");

#[test]
fn id_ranges_are_enforced() {
    for bad in [0u64, 0x1000_0000, 0x1FFF_FFFF, 0x3F00_0000, 0x3E00_0000, 0x4000_0000, 0xFFFF_FFFF, 1 << 40] {
        assert_eq!(DeviceKeyId::new(bad), Err(Error::InvalidId(bad)), "{bad:#x}");
    }
    assert_eq!(key(1).cert_slot().get(), 0x1000_0001);
    assert_eq!(key(DEVICE_KEY_MAX).cert_slot().get(), 0x1FFF_FFFF);
    assert!(CertTarget::new(0x1000_0001).is_err());
    assert!(CertTarget::new(0x3E00_0001).is_err());
    assert_eq!(CertTarget::new(0x3F00_0001).unwrap().slot().get(), 0x3F00_0001);
    assert!(PeerId::new(0x4000_0000).is_err());
}

#[test]
fn only_one_handle() {
    with_psa(|psa, _| {
        assert_eq!(Psa::init().err(), Some(Error::Busy));
        drop(psa);
        let again = Psa::init().unwrap();
        drop(again);
    });
}

#[test]
fn auto_assign_takes_lowest_free_id() {
    with_psa(|mut psa, _| {
        let a = psa.create_key(None, KeyOrigin::Random, false).unwrap();
        let b = psa.create_key(None, KeyOrigin::Random, false).unwrap();
        assert_eq!((a.get(), b.get()), (0x10000, 0x10001));
        psa.destroy_key(a).unwrap();
        let c = psa.create_key(None, KeyOrigin::Random, false).unwrap();
        assert_eq!(c.get(), 0x10000);
        let pk = psa.public_key(c).unwrap();
        assert_eq!(pk[0], 0x04);
        assert_ne!(pk, psa.public_key(b).unwrap());
    });
}

#[test]
fn known_value_and_existing_id() {
    with_psa(|mut psa, _| {
        let id = psa.create_key(Some(key(2)), KeyOrigin::Known(&A25_X), false).unwrap();
        assert_eq!(id.get(), 2);
        let pk = psa.public_key(id).unwrap();
        assert_eq!(&pk[1..33], &A25_UX);
        assert_eq!(&pk[33..], &A25_UY);
        assert_eq!(psa.create_key(Some(key(2)), KeyOrigin::Random, false), Err(Error::Exists(2)));
        assert_eq!(psa.create_key(Some(key(2)), KeyOrigin::Known(&A25_X), false), Err(Error::Exists(2)));
        // Replace with a random key: the public key changes.
        psa.create_key(Some(key(2)), KeyOrigin::Random, true).unwrap();
        assert_ne!(psa.public_key(key(2)).unwrap(), pk);
    });
}

#[test]
fn refused_replace_keeps_the_old_key() {
    with_psa(|mut psa, _| {
        psa.create_key(Some(key(3)), KeyOrigin::Known(&A25_X), false).unwrap();
        let before = psa.public_key(key(3)).unwrap();
        // Zero, the group order n, all-ones: not valid P-256 private scalars.
        let n = hex!("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
        for bad in [[0u8; 32], n, [0xFF; 32]] {
            assert!(matches!(
                psa.create_key(Some(key(3)), KeyOrigin::Known(&bad), true),
                Err(Error::InvalidArgument(_))
            ));
            assert_eq!(psa.public_key(key(3)).unwrap(), before);
        }
        for len in [0usize, 31, 33, 64] {
            let v = vec![1u8; len];
            assert!(matches!(
                psa.create_key(Some(key(3)), KeyOrigin::Known(&v), true),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert_eq!(psa.public_key(key(3)).unwrap(), before);
    });
}

#[test]
fn private_key_cannot_be_exported() {
    with_psa(|mut psa, _| {
        let id = psa.create_key(Some(key(7)), KeyOrigin::Random, false).unwrap();
        let handle = psa_crypto::types::key::Id::from_persistent_key_id(id.get()).unwrap();
        let attributes = psa_crypto::types::key::Attributes::from_key_id(handle).unwrap();
        assert!(!attributes.is_exportable());
        assert!(!attributes.policy.usage_flags.copy());
        assert!(!attributes.policy.usage_flags.derive());
        let mut buf = [0u8; 64];
        assert_eq!(
            psa_crypto::operations::key_management::export(handle, &mut buf),
            Err(PsaStatus::NotPermitted)
        );
        // And randomized ECDSA is not permitted by the policy either.
        let digest = [7u8; 32];
        let alg = psa_crypto::types::algorithm::AsymmetricSignature::Ecdsa {
            hash_alg: psa_crypto::types::algorithm::Hash::Sha256.into(),
        };
        let mut sig = [0u8; 64];
        assert!(psa_crypto::operations::asym_signature::sign_hash(handle, alg, &digest, &mut sig).is_err());
    });
}

#[test]
fn rfc6979_a25_sample_known_answer() {
    with_psa(|mut psa, _| {
        let id = psa.create_key(Some(key(2)), KeyOrigin::Known(&A25_X), false).unwrap();
        let sig = psa.sign_message(id, b"sample").unwrap();
        assert_eq!(
            sig,
            hex!(
                "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716"
                "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"
            )
        );
        // Same input, same signature (deterministic), and it verifies with p256.
        assert_eq!(psa.sign_message(id, b"sample").unwrap(), sig);
        use p256::ecdsa::signature::Verifier;
        let pk = psa.public_key(id).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
        let s = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        vk.verify(b"sample", &s).unwrap();
    });
}

#[test]
fn keys_persist_across_restart() {
    with_psa(|mut psa, dir| {
        let id = psa.create_key(Some(key(2)), KeyOrigin::Known(&A25_X), false).unwrap();
        psa.store_cert(id.cert_slot(), b"certificate bytes").unwrap();
        let pk = psa.public_key(id).unwrap();
        psa.shutdown();
        std::env::set_current_dir(dir).unwrap();
        let psa = Psa::init().unwrap();
        assert_eq!(psa.public_key(id).unwrap(), pk);
        assert_eq!(psa.load_cert(id.cert_slot()).unwrap(), b"certificate bytes");
        assert!(psa.key_present(id).unwrap());
        assert!(!psa.key_present(key(3)).unwrap());
    });
}

#[test]
fn blobs_round_trip_and_limits() {
    with_psa(|mut psa, _| {
        let slot = key(5).cert_slot();
        assert_eq!(psa.load_cert(slot), Err(Error::NotFound(slot.get())));
        let big = vec![0xABu8; MAX_BLOB_LEN];
        psa.store_cert(slot, &big).unwrap();
        assert_eq!(psa.load_cert(slot).unwrap(), big);
        let too_big = vec![0u8; MAX_BLOB_LEN + 1];
        assert_eq!(psa.store_cert(slot, &too_big), Err(Error::TooLarge(MAX_BLOB_LEN + 1)));
        // The refused store left the old certificate in place.
        assert_eq!(psa.load_cert(slot).unwrap(), big);
        psa.store_cert(slot, b"short").unwrap();
        assert_eq!(psa.load_cert(slot).unwrap(), b"short");
        psa.delete_cert(slot).unwrap();
        assert!(!psa.cert_present(slot).unwrap());
    });
}

#[test]
fn repeating_rng_is_detected_and_refuses_random_keys() {
    with_psa(|mut psa, dir| {
        let block = [0x5Au8; 32];
        assert_eq!(psa.boot_rng_check_with(|b| { *b = block; Ok(()) }).unwrap(), RngHealth::FirstBoot);
        assert!(!psa.rng_broken());
        // "Reboot" with the same stream.
        psa.shutdown();
        std::env::set_current_dir(dir).unwrap();
        let mut psa = Psa::init().unwrap();
        assert_eq!(psa.boot_rng_check_with(|b| { *b = block; Ok(()) }).unwrap(), RngHealth::Repeating);
        assert!(psa.rng_broken());
        assert_eq!(psa.create_key(None, KeyOrigin::Random, false), Err(Error::RngBroken));
        assert_eq!(psa.random(&mut [0u8; 16]), Err(Error::RngBroken));
        // Known-value import and signing keep working.
        let id = psa.create_key(Some(key(2)), KeyOrigin::Known(&A25_X), false).unwrap();
        psa.sign_message(id, b"still signs").unwrap();
        // A later boot with a good RNG clears the mark.
        psa.shutdown();
        std::env::set_current_dir(dir).unwrap();
        let mut psa = Psa::init().unwrap();
        assert_eq!(psa.boot_rng_check().unwrap(), RngHealth::Ok);
        assert!(!psa.rng_broken());
        psa.create_key(None, KeyOrigin::Random, false).unwrap();
    });
}

#[test]
fn session_crypto_matches_independent_implementations() {
    with_psa(|psa, _| {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let cloud = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
        let cloud_pub: [u8; 65] = cloud.public_key().to_sec1_bytes().as_ref().try_into().unwrap();
        let (eph_pub, shared) = psa.ecdh_ephemeral(&cloud_pub).unwrap();
        let eph = p256::PublicKey::from_sec1_bytes(&eph_pub).unwrap();
        let expected = p256::ecdh::diffie_hellman(cloud.to_nonzero_scalar(), eph.as_affine());
        assert_eq!(&shared[..], &expected.raw_secret_bytes()[..]);
        // A second call uses a fresh ephemeral key.
        assert_ne!(psa.ecdh_ephemeral(&cloud_pub).unwrap().0, eph_pub);
        // Not a point: refused, no panic.
        let mut bad = cloud_pub;
        bad[64] ^= 1;
        assert!(psa.ecdh_ephemeral(&bad).is_err());
        // HKDF-SHA256 (no salt) against RustCrypto, several lengths.
        for len in [16usize, 32, 33, 100] {
            let ours = psa.hkdf_sha256(&shared, b"kdf context", len).unwrap();
            let mut theirs = vec![0u8; len];
            hkdf::Hkdf::<sha2::Sha256>::new(None, &shared).expand(b"kdf context", &mut theirs).unwrap();
            assert_eq!(ours, theirs, "len {len}");
        }
        // AES-128-GCM through PSA against aes-gcm.
        let iv = [9u8; 12];
        let sk = psa.session_key(&[3u8; 16]).unwrap();
        let c2 = sk.encrypt(&iv, b"a", b"hello").unwrap();
        let p2 = aes_gcm::Aes128Gcm::new_from_slice(&[3u8; 16])
            .unwrap()
            .decrypt((&iv).into(), Payload { msg: &c2, aad: b"a" })
            .unwrap();
        assert_eq!(p2, b"hello");
    });
}

// ---------------------------------------------------------------------------
// Storage limits (TF-M's ITS as configured) and the atomic blob store
// ---------------------------------------------------------------------------

use crate::faults;

/// A certificate-sized blob whose bytes say which version it is.
fn blob(version: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| version ^ (i as u8)).collect()
}

#[test]
fn limits_come_from_the_tfm_config_header() {
    // One certificate limit: the asset size less the PSA key-file header.
    assert_eq!(MAX_BLOB_LEN, its::ITS_MAX_ASSET_SIZE - its::PSA_KEY_FILE_HEADER_LEN);
    let expected = if its::CONFIG_HEADER.ends_with("config_tfmprov_an521.h") {
        // 4 blocks of 4 KiB: block 0 after 832 bytes of metadata, block 1 whole.
        // 4060 is what TF-M 2.2.2 stored at most under QEMU with 4096-byte assets.
        (4096, 24, 4060, vec![3264, 4096])
    } else if its::CONFIG_HEADER.ends_with("config_tfmprov_nrf5340.h") {
        // 2 blocks: everything in block 0 after 564 bytes of metadata.
        (1536, 16, 1500, vec![3532])
    } else {
        panic!("no expectations for {}", its::CONFIG_HEADER);
    };
    let got = (its::ITS_MAX_ASSET_SIZE, its::ITS_NUM_ASSETS, MAX_BLOB_LEN, its::data_block_capacities());
    assert_eq!(got, expected, "{}", its::CONFIG_HEADER);
}

#[test]
fn largest_blob_stores_and_one_more_byte_is_too_large() {
    with_psa(|mut psa, _| {
        let slot = key(3).cert_slot();
        let max = blob(1, MAX_BLOB_LEN);
        psa.store_cert(slot, &max).unwrap();
        assert_eq!(psa.load_cert(slot).unwrap(), max);
        assert_eq!(
            psa.store_cert(slot, &blob(2, MAX_BLOB_LEN + 1)),
            Err(Error::TooLarge(MAX_BLOB_LEN + 1))
        );
        assert_eq!(psa.load_cert(slot).unwrap(), max);
        // Replacing it with another of that size needs room for two: AN521's
        // ITS has one 4 KiB block, so it is refused and the old one kept.
        assert_eq!(
            psa.store_cert(slot, &blob(3, MAX_BLOB_LEN)),
            Err(Error::StorageFull)
        );
        assert_eq!(psa.load_cert(slot).unwrap(), max);
        // A smaller one is staged instead of the old: that fits.
        psa.store_cert(slot, &blob(4, 700)).unwrap();
        assert_eq!(psa.load_cert(slot).unwrap(), blob(4, 700));
        // And growing again from there fits too (old + new at once).
        psa.store_cert(slot, &blob(5, 3000)).unwrap();
        assert_eq!(psa.load_cert(slot).unwrap(), blob(5, 3000));
    });
}

#[test]
fn full_storage_is_storage_full_and_keeps_the_old_blob() {
    with_psa(|mut psa, _| {
        let slot = key(3).cert_slot();
        let old = blob(1, 600);
        psa.store_cert(slot, &old).unwrap();
        // Fill the flash with large peer certificates until it refuses.
        let mut stored = 0u32;
        let err = loop {
            let peer = PeerId::new(u64::from(PEER_MIN + 0x100 + stored)).unwrap();
            match psa.store_cert(peer.into(), &blob(9, 2000)) {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 10, "the model never filled up");
        };
        assert_eq!(err, Error::StorageFull);
        assert!(stored >= 1);
        // Replacing the device certificate with a larger one cannot be staged.
        assert_eq!(
            psa.store_cert(slot, &blob(2, 3000)),
            Err(Error::StorageFull)
        );
        assert_eq!(psa.load_cert(slot).unwrap(), old);
        // Nothing of the refused stores is left behind.
        assert!(!exists_raw(STATE_BLOB_JOURNAL) && !exists_raw(STATE_BLOB_STAGING));
    });
}

#[test]
fn the_asset_count_limit_is_storage_full() {
    with_psa(|mut psa, _| {
        // TF-M's NV seed takes one of ITS_NUM_ASSETS.
        let mut made = 0;
        let err = loop {
            match psa.create_key(None, KeyOrigin::Random, false) {
                Ok(_) => made += 1,
                Err(e) => break e,
            }
            assert!(made <= its::ITS_NUM_ASSETS);
        };
        assert_eq!(err, Error::StorageFull);
        assert_eq!(made, its::ITS_NUM_ASSETS - its::TFM_OWN_FILES);
        // A certificate store now needs two more files: refused, rc 5.
        assert_eq!(
            psa.store_cert(key(0x10000).cert_slot(), &blob(1, 300)),
            Err(Error::StorageFull)
        );
    });
}

fn exists_raw(raw: u32) -> bool {
    crate::keys::exists(raw).unwrap()
}

/// How many storage calls one certificate replacement makes.
fn calls_of_a_replacement() -> u32 {
    let mut n = 0;
    with_psa(|mut psa, _| {
        let slot = key(3).cert_slot();
        psa.store_cert(slot, &blob(1, 500)).unwrap();
        faults::count_only();
        psa.store_cert(slot, &blob(2, 700)).unwrap();
        n = faults::clear().0;
    });
    n
}

#[test]
fn a_store_that_fails_at_any_step_keeps_the_old_certificate() {
    let calls = calls_of_a_replacement();
    assert_eq!(
        calls, 7,
        "read, stage, journal, destroy, import, two clean-ups"
    );
    // Growing (the old value is staged) and shrinking (the new one is).
    for (old_len, new_len) in [(500, 700), (700, 500)] {
        for step in 1..=calls {
            for error in [
                Error::StorageFull,
                Error::Psa(PsaStatus::StorageFailure),
                Error::Psa(PsaStatus::InsufficientMemory),
            ] {
                with_psa(|mut psa, _| {
                    let slot = key(3).cert_slot();
                    let (old, new) = (blob(1, old_len), blob(2, new_len));
                    psa.store_cert(slot, &old).unwrap();
                    faults::fail_nth(step, error, false);
                    let result = psa.store_cert(slot, &new);
                    let (_, fired) = faults::clear();
                    assert!(fired, "step {step}");
                    let now = psa.load_cert(slot).unwrap();
                    match result {
                        Err(e) => {
                            assert_eq!(e, error, "step {step}");
                            assert_eq!(
                                now, old,
                                "step {step}: a failed store changed the certificate"
                            );
                        }
                        // A failure in the clean-up after the commit: stored.
                        Ok(()) => assert_eq!(now, new, "step {step}"),
                    }
                    // Whatever was left behind is cleared by the next boot's
                    // recovery without changing the slot.
                    psa.recover_blob_store().unwrap();
                    assert_eq!(psa.load_cert(slot).unwrap(), now, "step {step}");
                    assert!(
                        !exists_raw(STATE_BLOB_JOURNAL) && !exists_raw(STATE_BLOB_STAGING),
                        "step {step}"
                    );
                    // And the next store works.
                    psa.store_cert(slot, &blob(3, 400)).unwrap();
                    assert_eq!(psa.load_cert(slot).unwrap(), blob(3, 400));
                });
            }
        }
    }
}

#[test]
fn a_reset_at_any_step_leaves_the_old_or_the_new_certificate() {
    let calls = calls_of_a_replacement();
    for (old_len, new_len) in [(500, 700), (700, 500)] {
        for step in 1..=calls + 1 {
            with_psa(|mut psa, dir| {
                let slot = key(3).cert_slot();
                let (old, new) = (blob(1, old_len), blob(2, new_len));
                psa.store_cert(slot, &old).unwrap();
                // Power is lost at `step`: that call and every later one fail,
                // so no error handling reaches the storage either.
                faults::fail_nth(step, Error::Psa(PsaStatus::StorageFailure), true);
                let result = psa.store_cert(slot, &new);
                faults::clear();
                drop(psa);
                // Reboot: recovery runs before anything else.
                std::env::set_current_dir(dir).unwrap();
                let mut psa = Psa::init().unwrap();
                let recovery = psa.recover_blob_store().unwrap();
                let now = psa.load_cert(slot).unwrap();
                assert!(
                    now == old || now == new,
                    "step {step}: slot holds neither value ({recovery:?})"
                );
                if result.is_ok() {
                    assert_eq!(now, new, "step {step}");
                }
                assert!(
                    !exists_raw(STATE_BLOB_JOURNAL) && !exists_raw(STATE_BLOB_STAGING),
                    "step {step}"
                );
                if step > calls {
                    assert_eq!((result, recovery, now), (Ok(()), Recovery::Clean, new));
                }
            });
        }
    }
}

#[test]
fn recovery_completes_a_committed_store_and_drops_an_uncommitted_one() {
    with_psa(|mut psa, _| {
        let slot = key(3).cert_slot();
        // Committed: journal names the slot, the slot is empty.
        psa.store_blob_raw(STATE_BLOB_STAGING, &blob(7, 300))
            .unwrap_err(); // staging is not a store target
        crate::persist::import(
            crate::blobs::blob_attributes(300),
            STATE_BLOB_STAGING,
            &blob(7, 300),
        )
        .unwrap();
        crate::persist::import(
            crate::blobs::blob_attributes(4),
            STATE_BLOB_JOURNAL,
            &slot.get().to_be_bytes(),
        )
        .unwrap();
        assert_eq!(
            psa.recover_blob_store().unwrap(),
            Recovery::Completed(slot.get())
        );
        assert_eq!(psa.load_cert(slot).unwrap(), blob(7, 300));
        // Uncommitted: a staged copy without a journal.
        crate::persist::import(
            crate::blobs::blob_attributes(300),
            STATE_BLOB_STAGING,
            &blob(8, 300),
        )
        .unwrap();
        assert_eq!(psa.recover_blob_store().unwrap(), Recovery::Discarded);
        assert_eq!(psa.load_cert(slot).unwrap(), blob(7, 300));
        // A journal naming a private key slot is never acted on.
        psa.create_key(Some(key(5)), KeyOrigin::Random, false)
            .unwrap();
        let before = psa.public_key(key(5)).unwrap();
        crate::persist::import(
            crate::blobs::blob_attributes(4),
            STATE_BLOB_JOURNAL,
            &5u32.to_be_bytes(),
        )
        .unwrap();
        crate::persist::import(
            crate::blobs::blob_attributes(32),
            STATE_BLOB_STAGING,
            &[1u8; 32],
        )
        .unwrap();
        assert_eq!(psa.recover_blob_store().unwrap(), Recovery::Discarded);
        assert_eq!(psa.public_key(key(5)).unwrap(), before);
        assert_eq!(psa.recover_blob_store().unwrap(), Recovery::Clean);
    });
}

#[test]
fn a_failed_state_write_keeps_the_previous_record() {
    with_psa(|mut psa, _| {
        psa.store_state(StateId::Seq, &64u64.to_be_bytes()).unwrap();
        faults::fail_nth(4, Error::Psa(PsaStatus::StorageFailure), false);
        assert!(psa.store_state(StateId::Seq, &96u64.to_be_bytes()).is_err());
        faults::clear();
        assert_eq!(
            psa.load_state(StateId::Seq).unwrap().unwrap(),
            64u64.to_be_bytes()
        );
    });
}

#[test]
fn tfm_storage_errors_map_to_storage_full() {
    assert_eq!(
        crate::persist::creation_error(PsaStatus::DataInvalid),
        Error::StorageFull
    );
    assert_eq!(
        crate::persist::creation_error(PsaStatus::InsufficientStorage),
        Error::StorageFull
    );
    assert_eq!(
        crate::persist::creation_error(PsaStatus::InvalidArgument),
        Error::Psa(PsaStatus::InvalidArgument)
    );
}

#[test]
fn kak_is_derive_only_persistent_and_agrees_with_p256() {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    with_psa(|mut psa, dir| {
        assert!(!psa.kak_present().unwrap());
        assert!(matches!(psa.kak_ecdh(&[4u8; 65]), Err(Error::NotFound(STATE_KAK))));
        let public = psa.kak_public().unwrap();
        assert_eq!(public[0], 0x04);
        assert_eq!(psa.kak_public().unwrap(), public, "created once");
        // DERIVE only: no signing, not exportable.
        let handle = psa_crypto::types::key::Id::from_persistent_key_id(STATE_KAK).unwrap();
        let attributes = psa_crypto::types::key::Attributes::from_key_id(handle).unwrap();
        let usage = attributes.policy.usage_flags;
        assert!(usage.derive() && !usage.sign_hash() && !usage.sign_message() && !usage.copy());
        assert!(!attributes.is_exportable());
        let mut buf = [0u8; 64];
        assert!(psa_crypto::operations::key_management::export(handle, &mut buf).is_err());
        // ECDH-ES as a sender does it (p256 ephemeral x our public) gives what PSA gives.
        let eph = p256::SecretKey::from_slice(&A25_X).unwrap();
        let eph_public: [u8; 65] = eph.public_key().to_encoded_point(false).as_bytes().try_into().unwrap();
        let kak_point = p256::PublicKey::from_sec1_bytes(&public).unwrap();
        let expected = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), kak_point.as_affine());
        assert_eq!(&psa.kak_ecdh(&eph_public).unwrap()[..], &expected.raw_secret_bytes()[..]);
        // Not a point on the curve.
        let mut off = eph_public;
        off[64] ^= 1;
        assert!(matches!(psa.kak_ecdh(&off), Err(Error::InvalidArgument(_))));
        // It survives a restart, and is not a device key.
        psa.shutdown();
        std::env::set_current_dir(dir).unwrap();
        let mut psa = Psa::init().unwrap();
        assert_eq!(psa.kak_public().unwrap(), public);
        assert!(DeviceKeyId::new(STATE_KAK.into()).is_err(), "not reachable as a device key ID");
    });
}

#[test]
fn signatures_by_other_keys_verify_through_psa() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    with_psa(|psa, _| {
        let sk = p256::ecdsa::SigningKey::from_slice(&A25_X).unwrap();
        let public: [u8; 65] = sk.verifying_key().to_encoded_point(false).as_bytes().try_into().unwrap();
        let digest = psa.sha256(b"a remote command").unwrap();
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let sig: [u8; 64] = sig.to_bytes().into();
        psa.verify_with_public(&public, &digest, &sig).unwrap();
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(psa.verify_with_public(&public, &digest, &bad).is_err());
        let other = psa.sha256(b"another command").unwrap();
        assert!(psa.verify_with_public(&public, &other, &sig).is_err());
        let mut not_a_point = public;
        not_a_point[64] ^= 1;
        assert!(matches!(psa.verify_with_public(&not_a_point, &digest, &sig), Err(Error::InvalidArgument(_))));
    });
}

#[test]
fn session_key_decrypts_what_it_encrypts_and_refuses_a_changed_aad() {
    with_psa(|psa, _| {
        let k = psa.session_key(&[7u8; 16]).unwrap();
        let ct = k.encrypt(&[1u8; 12], b"binding", b"reply").unwrap();
        assert_eq!(k.decrypt(&[1u8; 12], b"binding", &ct).unwrap(), b"reply");
        assert!(k.decrypt(&[1u8; 12], b"other binding", &ct).is_err());
        assert!(k.decrypt(&[1u8; 12], b"binding", &ct[..10]).is_err());
    });
}

/// The raw constants of the `ffi` module are psa-crypto's encodings of the
/// same algorithm and key type.
#[test]
fn raw_constants_equal_psa_cryptos_encodings() {
    use psa_crypto::types::key::{EccFamily, Type};
    assert_eq!(psa_crypto::ffi::psa_algorithm_t::from(crate::keys::SIGN_ALG), crate::ffi::ALG_DETERMINISTIC_ECDSA_SHA256);
    let pair = psa_crypto::ffi::psa_key_type_t::try_from(Type::EccKeyPair { curve_family: EccFamily::SecpR1 }).unwrap();
    assert_eq!(pair, crate::ffi::KEY_TYPE_P256_PAIR);
}
