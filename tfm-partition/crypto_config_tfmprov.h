/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * PSA Crypto configuration (PSA_WANT_*) of the TF-M secure image for the
 * tfmprov firmware. It replaces the profile's file through TF-M's CMake
 * option TFM_MBEDCRYPTO_PSA_CRYPTO_CONFIG_PATH, which the application's
 * CMakeLists.txt passes with
 *
 *   set_property(TARGET zephyr_property_target APPEND PROPERTY TFM_CMAKE_OPTIONS
 *                -DTFM_MBEDCRYPTO_PSA_CRYPTO_CONFIG_PATH=<this file>)
 *
 * (Zephyr appends that property to TF-M's CMake command line in
 * modules/trusted-firmware-m/CMakeLists.txt.) Only TF-M's base profile is
 * supported: a small/medium/large profile has its own crypto and project
 * configuration, which the root CMakeLists.txt refuses to replace.
 *
 * Why deterministic ECDSA: every device signature is RFC 6979
 * (PSA_ALG_DETERMINISTIC_ECDSA(PSA_ALG_SHA_256)), so that no signature
 * depends on the quality of the random stream. On TF-M 2.2 under QEMU AN521
 * there is no entropy source: TF-M's DRBG runs from an NV seed (an ITS file
 * that TF-M updates at every boot), so after a reset the stream continues,
 * but every emulator started with empty storage produces the same stream,
 * and so would two devices provisioned from the same seed image. A
 * randomized ECDSA nonce from such a stream would give the private key away;
 * a deterministic one cannot. TF-M's small and medium profiles leave
 * PSA_WANT_ALG_DETERMINISTIC_ECDSA (and the medium profile A128GCM) off.
 *
 * What the firmware needs from the secure side:
 *   device keys  P-256 key pairs: generate, import, sign/verify with
 *                DETERMINISTIC_ECDSA(SHA-256), ECDH (session set-up);
 *   certificates RAW_DATA persistent keys (export only);
 *   COSE         SHA-256, HKDF-SHA-256, AES-128-GCM, random;
 *   TF-M itself  PS encryption (GCM in the base profile, CCM in medium);
 *   NS MQTT/TLS  ECDHE-ECDSA suites through the PSA client (HMAC, TLS 1.2
 *                PRF, SHA-384 for the *_SHA384 suites).
 */
#ifndef TFMPROV_CRYPTO_CONFIG_H
#define TFMPROV_CRYPTO_CONFIG_H

/* Algorithms */
#define PSA_WANT_ALG_CCM                        1
#define PSA_WANT_ALG_CMAC                       1
#define PSA_WANT_ALG_CBC_NO_PADDING             1
#define PSA_WANT_ALG_CTR                        1
#define PSA_WANT_ALG_DETERMINISTIC_ECDSA        1
#define PSA_WANT_ALG_ECB_NO_PADDING             1
#define PSA_WANT_ALG_ECDH                       1
#define PSA_WANT_ALG_ECDSA                      1
#define PSA_WANT_ALG_GCM                        1
#define PSA_WANT_ALG_HKDF                       1
#define PSA_WANT_ALG_HMAC                       1
#define PSA_WANT_ALG_SHA_224                    1
#define PSA_WANT_ALG_SHA_256                    1
#define PSA_WANT_ALG_SHA_384                    1
#define PSA_WANT_ALG_SHA_512                    1
#define PSA_WANT_ALG_TLS12_PRF                  1
#define PSA_WANT_ALG_TLS12_PSK_TO_MS            1

/* Curves: P-256 only (device keys, ECDH, the CA and the TLS server). */
#define PSA_WANT_ECC_SECP_R1_256                1

/* Key types */
#define PSA_WANT_KEY_TYPE_AES                   1
#define PSA_WANT_KEY_TYPE_DERIVE                1
#define PSA_WANT_KEY_TYPE_HMAC                  1
#define PSA_WANT_KEY_TYPE_RAW_DATA              1
#define PSA_WANT_KEY_TYPE_ECC_PUBLIC_KEY        1
#define PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_BASIC    1
#define PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_IMPORT   1
#define PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_EXPORT   1
#define PSA_WANT_KEY_TYPE_ECC_KEY_PAIR_GENERATE 1

/* The contract cannot be met without these: fail the TF-M build loudly if
 * someone trims them. */
#if !defined(PSA_WANT_ALG_DETERMINISTIC_ECDSA) || !defined(PSA_WANT_ALG_GCM) || \
	!defined(PSA_WANT_ALG_ECDH) || !defined(PSA_WANT_ALG_HKDF)
#error "tfmprov needs DETERMINISTIC_ECDSA, GCM, ECDH and HKDF in TF-M's crypto service"
#endif

/* Same hook as TF-M's own configs: hardware accelerators adjust the service
 * side only. */
#if defined(CRYPTO_HW_ACCELERATOR) && !defined(MBEDTLS_PSA_CRYPTO_CLIENT)
#include "crypto_accelerator_config.h"
#endif

#endif /* TFMPROV_CRYPTO_CONFIG_H */
