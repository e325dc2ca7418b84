/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Lines added to Zephyr's Mbed TLS configuration for src/mqtt_tls.c
 * (CONFIG_MBEDTLS_USER_CONFIG_FILE, included at the end of Zephyr's
 * modules/mbedtls/configs/config-mbedtls.h, before Mbed TLS's own
 * config_adjust_*.h headers; mqtt-tls.conf). Each was found running the
 * handshake on TF-M 2.2.2 in QEMU (docs/firmware.md, "Mutual TLS"): Mbed TLS
 * 3.6 as a PSA Crypto client only (no MBEDTLS_PSA_CRYPTO_C, no legacy ECP)
 * gets two sizes and one switch wrong.
 */
#ifndef TFMPROV_MBEDTLS_H
#define TFMPROV_MBEDTLS_H

/*
 * The TLS 1.2 client writes the supported_groups extension only when
 * MBEDTLS_SSL_TLS1_2_SOME_ECC is defined, which config_adjust_ssl.h derives
 * from the legacy MBEDTLS_ECDH_C / MBEDTLS_ECDSA_C alone. Without it the
 * ClientHello names no curve, and Mbed TLS and OpenSSL servers refuse ECDHE
 * ("no common elliptic curve", seen on TF-M; the same symptom as
 * nrfconnect/sdk-nrf PR #28049, which turns legacy crypto back on instead,
 * some 20 KB). The code it guards (library/ssl_client.c) writes the list
 * from the configured groups, PSA or not.
 */
#define MBEDTLS_SSL_TLS1_2_SOME_ECC

/*
 * Mbed TLS issue #10757 (fix proposed in PR #10758): without MBEDTLS_ECP_LIGHT,
 * MBEDTLS_ECP_MAX_BYTES is 1, and the premaster-secret buffer sized from it
 * cannot take the 32-byte P-256 shared secret psa_raw_key_agreement writes
 * (MBEDTLS_ERR_SSL_HW_ACCEL_FAILED, seen on TF-M). Enabling the PSK key
 * exchange sizes the union at 4 + 2 * MBEDTLS_PSK_MAX_LEN (68) bytes; no PSK
 * suite is ever offered (mqtt_tls.c sets the one ECDHE-ECDSA suite).
 */
#define MBEDTLS_KEY_EXCHANGE_PSK_ENABLED

/* RFC 6066 max_fragment_length, which mqtt_tls.c asks for: an OpenSSL broker
 * (mosquitto) then sends records no larger than the 4 KiB receive buffer
 * (CONFIG_MBEDTLS_SSL_MAX_CONTENT_LEN). */
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH

#endif /* TFMPROV_MBEDTLS_H */
