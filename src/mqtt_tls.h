/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Mutual TLS for the MQTT connection with the device key kept in PSA and
 * the broker's key pinned (issue 13, docs/security.md "The firmware").
 *
 * Why not Zephyr's TLS sockets: v4.3.0's TLS credentials take a private key
 * only as bytes (tls_set_private_key parses them with mbedtls_pk_parse_key),
 * and the stock MQTT TLS transport has no place for a pin check. So the MQTT
 * client runs over CONFIG_MQTT_LIB_CUSTOM_TRANSPORT (src/mqtt_client.c) and
 * this file drives Mbed TLS 3.6 itself: the key is an opaque PK context on
 * the PSA key ID (mbedtls_pk_setup_opaque; every signature is a psa_sign_hash
 * call into TF-M), the broker's chain is checked by Mbed TLS against the CA
 * root stored on the device, and its leaf's key against the pin by Rust
 * (tfmprov_mqtt_tls_check_broker) from the verify callback.
 *
 * Only Mbed TLS and tfmprov.h are used here (no Zephyr API but the lock of
 * tfmprov_glue.h), so the same file runs in the bare-metal TF-M test harness
 * (docs/firmware.md).
 */
#ifndef TFMPROV_MQTT_TLS_H
#define TFMPROV_MQTT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

struct tfmprov_tls {
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt own;  /* the device's leaf, then the intermediate */
	mbedtls_x509_crt root; /* the CA root the broker's chain must reach */
	mbedtls_pk_context key; /* opaque: the PSA key, by ID */
	uint32_t key_id;
	/* What tfmprov_mqtt_tls_check_broker said of the broker's leaf
	 * (TFMPROV_OK, or why not), 1 until it was asked. */
	int32_t pin_rc;
};

/*
 * Sets up a client session to `hostname` (SNI and the certificate name
 * check) over the caller's transport callbacks (`bio` is their context).
 * Reads the device's certificates and key ID from Rust into `scratch` (one
 * certificate at a time; the largest certificate must fit). Returns 0, a
 * negative TFMPROV_ERR_* from Rust, or a negative Mbed TLS code. On error
 * the session is freed already.
 */
int tfmprov_tls_setup(struct tfmprov_tls *t, const char *hostname, void *bio,
		      mbedtls_ssl_send_t *send, mbedtls_ssl_recv_t *recv, uint8_t *scratch,
		      size_t scratch_len);

/* Frees everything tfmprov_tls_setup allocated. */
void tfmprov_tls_free(struct tfmprov_tls *t);

/* One line for the log about a failed handshake `rc`: a pin mismatch, a
 * chain or name failure (the verification flags), or the Mbed TLS code. */
void tfmprov_tls_describe(const struct tfmprov_tls *t, int rc, char *out, size_t cap);

#endif /* TFMPROV_MQTT_TLS_H */
