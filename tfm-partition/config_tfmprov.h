/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * TF-M project configuration of the tfmprov firmware: the part every board
 * shares. Not passed to TF-M directly: each board's header
 * (config_tfmprov_<board>.h) includes it and adds the ITS sizing that its
 * flash layout allows. The root CMakeLists.txt passes the board's header as
 *
 *   -DPROJECT_CONFIG_HEADER_FILE=<absolute path>
 *
 * through TFM_CMAKE_OPTIONS. TF-M 2.2 reads its partitions' sizes from C
 * macros (config/config_base.h); config_tfm.h includes this project header
 * before config_base.h, so a value defined here wins and every other one
 * keeps TF-M's default. CMake variables such as -DITS_MAX_ASSET_SIZE=... are
 * NOT read by TF-M 2.2 (its configure step lists them as "not used").
 *
 * Only the base profile (CONFIG_TFM_PROFILE_TYPE_NOT_SET) is supported: a
 * small/medium/large profile brings its own PROJECT_CONFIG_HEADER_FILE, which
 * this one replaces entirely (the root CMakeLists.txt refuses the others).
 */
#ifndef TFMPROV_CONFIG_TFMPROV_H
#define TFMPROV_CONFIG_TFMPROV_H

/* ---- Crypto partition ---------------------------------------------------
 *
 * Modules whose algorithms crypto_config_tfmprov.h does not provide must be
 * off, or secure_fw/partitions/crypto/crypto_check_config.h stops the build.
 * The firmware has no RSA: asymmetric encryption (RSA PKCS#1 v1.5 / OAEP) is
 * the one module the base profile keeps on without algorithms behind it.
 * Everything else the firmware needs stays on: RNG, key management, AEAD
 * (AES-GCM: sealed messages, PS), MAC (HMAC: HKDF), hash, cipher (TLS and PS
 * helpers), asymmetric signature (deterministic ECDSA) and key derivation
 * (psa_raw_key_agreement lives in that module: ECDH of the session set-up).
 */
#define CRYPTO_ASYM_ENCRYPT_MODULE_ENABLED 0

/* The crypto heap (CRYPTO_ENGINE_BUF_SIZE) keeps TF-M 2.2's default, 0x3000
 * (12 KiB): measured on TF-M 2.2.2 under QEMU, storing a 4060-byte
 * certificate needs about 8.2 KiB of it at once (the key slot's copy plus
 * the serialised ITS file), and 0x2400 ran out. The firmware purges every
 * certificate from the key-slot cache after use (rust/psa/src/blobs.rs), so
 * no certificate stays resident in this heap. Never set it lower. */
#if defined(CRYPTO_ENGINE_BUF_SIZE) && (CRYPTO_ENGINE_BUF_SIZE < 0x3000)
#error "tfmprov: CRYPTO_ENGINE_BUF_SIZE below TF-M 2.2's default 0x3000 cannot store a large certificate"
#endif

/* The crypto partition copies each call's input and output vectors into one
 * scratch buffer of CRYPTO_IOVEC_BUFFER_SIZE bytes (TF-M 2.2's default
 * 5,120; secure_fw/partitions/crypto/crypto_init.c, used because
 * PSA_FRAMEWORK_HAS_MM_IOVEC is 0 on these boards). The largest one-shot
 * operation of the firmware is the AES-GCM of a remote command or reply that
 * carries the largest certificate (store-cert, get-cert: up to 4,608 B in
 * and as much out, tfmprov_device::remote::MAX_ENVELOPE_LEN). Measured on
 * TF-M 2.2.2 under QEMU: with the default, a store-cert of a 4,060-byte
 * certificate could not be decrypted (refused as a bad command); with
 * 10,240 B it runs, and so does the get-cert reply. Costs 5 KiB of secure
 * RAM over the default. */
#ifndef CRYPTO_IOVEC_BUFFER_SIZE
#define CRYPTO_IOVEC_BUFFER_SIZE 10240
#endif
#if CRYPTO_IOVEC_BUFFER_SIZE < 10240
#error "tfmprov: CRYPTO_IOVEC_BUFFER_SIZE below 10240 cannot decrypt a remote command with the largest certificate"
#endif

/* ---- Internal Trusted Storage -------------------------------------------
 *
 * Every persistent key, certificate and device state record is one ITS
 * file: Mbed TLS's 36-byte PSA key-file header plus the key data. The
 * board header sets ITS_MAX_ASSET_SIZE (so the largest certificate is
 * ITS_MAX_ASSET_SIZE - 36 bytes; the Rust library derives that limit from
 * the same header, see rust/psa/build.rs) and ITS_NUM_ASSETS, and describes
 * the board's ITS flash area (TFMPROV_ITS_AREA_SIZE, TFMPROV_ITS_BLOCK_SIZE,
 * copied from TF-M's flash_layout.h of that platform) so that the checks
 * below catch a configuration TF-M would only refuse at run time
 * (its_flash_fs_validate_config: the ITS partition would not start).
 *
 * TF-M's flash file system (secure_fw/partitions/internal_trusted_storage/
 * flash_fs): N blocks of TFMPROV_ITS_BLOCK_SIZE; 2 metadata blocks; with
 * N >= 4 one scratch data block and N - 3 dedicated data blocks; logical data
 * block 0 lives in the metadata block after the metadata, which takes
 *   8 (header) + 12 * data blocks + 32 * (ITS_NUM_ASSETS + 1)
 * bytes (the extra file is TF-M's, for atomic replacement). A file never
 * spans blocks.
 */
#define TFMPROV_ITS_METADATA_SIZE(data_blocks) \
	(8 + 12 * (data_blocks) + 32 * (ITS_NUM_ASSETS + 1))

#endif /* TFMPROV_CONFIG_TFMPROV_H */
