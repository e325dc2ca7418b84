/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Mutual TLS with the device key in PSA and the broker's key pinned; see
 * mqtt_tls.h for why this is not Zephyr's TLS sockets. Mbed TLS 3.6 as a
 * PSA Crypto client of TF-M (mqtt-tls.conf): the handshake's ECDHE, the
 * PRF, the record keys, every signature check and the device's own
 * signature are PSA calls into TF-M. Decisions stay in Rust: which key and
 * certificates (tfmprov_mqtt_tls_key / _cert) and whether the broker's key
 * is the pinned one (tfmprov_mqtt_tls_check_broker).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <psa/crypto.h>
#include <mbedtls/ssl_ciphersuites.h>

#include "mqtt_tls.h"
#include "tfmprov.h"
#include "tfmprov_glue.h"

/*
 * The one suite (TLS 1.2): ECDHE on P-256 for forward secrecy, ECDSA with
 * the PKI's P-256 keys, AES-128-GCM. Its hash, SHA-256, is the hash of the
 * CertificateVerify the device key signs: the only one that key's policy
 * (deterministic ECDSA with SHA-256, rust/psa/src/keys.rs) allows. TLS 1.3
 * is not enabled: TF-M's crypto configuration has no HKDF
 * (tfm-partition/crypto_config_tfmprov.h).
 */
static const int suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};

/* Mbed TLS's RNG: TF-M's DRBG. */
static int rng(void *ctx, unsigned char *out, size_t len)
{
	(void)ctx;
	return psa_generate_random(out, len) == PSA_SUCCESS ? 0 : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
}

/*
 * Called by Mbed TLS for each certificate of the broker's chain after its
 * own checks (chain to the root, name, signatures); depth 0 is the broker's
 * leaf. A key other than the pinned one adds a flag, so the handshake fails
 * with MBEDTLS_ERR_X509_CERT_VERIFY_FAILED before the device sends its own
 * certificate or signs anything.
 */
static int verify_pin(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tfmprov_tls *t = ctx;

	if (depth != 0) {
		return 0;
	}
	tfmprov_enter();
	t->pin_rc = tfmprov_mqtt_tls_check_broker(crt->raw.p, crt->raw.len);
	tfmprov_leave();
	if (t->pin_rc != TFMPROV_OK) {
		*flags |= MBEDTLS_X509_BADCERT_OTHER;
	}
	return 0;
}

/* Certificate `which` from Rust, parsed onto `chain`. A missing
 * intermediate is not an error (`optional`): the leaf is sent alone. */
static int add_cert(mbedtls_x509_crt *chain, uint8_t which, bool optional, uint8_t *scratch,
		    size_t cap)
{
	size_t len = 0;
	int32_t rc;

	tfmprov_enter();
	rc = tfmprov_mqtt_tls_cert(which, scratch, cap, &len);
	tfmprov_leave();
	if (rc == TFMPROV_ERR_NOT_FOUND && optional) {
		return 0;
	}
	if (rc != TFMPROV_OK) {
		return rc;
	}
	return mbedtls_x509_crt_parse_der(chain, scratch, len);
}

int tfmprov_tls_setup(struct tfmprov_tls *t, const char *hostname, void *bio,
		      mbedtls_ssl_send_t *send, mbedtls_ssl_recv_t *recv, uint8_t *scratch,
		      size_t scratch_len)
{
	int rc;

	mbedtls_ssl_init(&t->ssl);
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_x509_crt_init(&t->own);
	mbedtls_x509_crt_init(&t->root);
	mbedtls_pk_init(&t->key);
	t->pin_rc = 1;

	/* Read at every connection: a key switched by a remote use-key, or a
	 * certificate replaced, is used from the next connection on. */
	tfmprov_enter();
	rc = tfmprov_mqtt_tls_key(&t->key_id);
	tfmprov_leave();
	if (rc == 0) {
		rc = add_cert(&t->own, TFMPROV_TLS_LEAF, false, scratch, scratch_len);
	}
	if (rc == 0) {
		rc = add_cert(&t->own, TFMPROV_TLS_INTERMEDIATE, true, scratch, scratch_len);
	}
	if (rc == 0) {
		rc = add_cert(&t->root, TFMPROV_TLS_ROOT, false, scratch, scratch_len);
	}
	if (rc == 0) {
		/* The key stays in TF-M: Mbed TLS signs through psa_sign_hash. */
		rc = mbedtls_pk_setup_opaque(&t->key, mbedtls_svc_key_id_make(0, t->key_id));
	}
	if (rc == 0) {
		rc = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
						 MBEDTLS_SSL_TRANSPORT_STREAM,
						 MBEDTLS_SSL_PRESET_DEFAULT);
	}
	if (rc == 0) {
		mbedtls_ssl_conf_rng(&t->conf, rng, NULL);
		mbedtls_ssl_conf_min_tls_version(&t->conf, MBEDTLS_SSL_VERSION_TLS1_2);
		mbedtls_ssl_conf_max_tls_version(&t->conf, MBEDTLS_SSL_VERSION_TLS1_2);
		mbedtls_ssl_conf_ciphersuites(&t->conf, suites);
		mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
		mbedtls_ssl_conf_ca_chain(&t->conf, &t->root, NULL);
		mbedtls_ssl_conf_verify(&t->conf, verify_pin, t);
		rc = mbedtls_ssl_conf_own_cert(&t->conf, &t->own, &t->key);
	}
#if defined(MBEDTLS_SSL_MAX_FRAGMENT_LENGTH)
	if (rc == 0) {
		/* Records of at most 4 KiB from the broker: the receive buffer
		 * (MBEDTLS_SSL_IN_CONTENT_LEN, 4096 in mqtt-tls.conf). OpenSSL
		 * honours the request; the embedded broker's rustls listener
		 * limits its records itself (rustls ignores the extension). */
		rc = mbedtls_ssl_conf_max_frag_len(&t->conf, MBEDTLS_SSL_MAX_FRAG_LEN_4096);
	}
#endif
	if (rc == 0) {
		rc = mbedtls_ssl_setup(&t->ssl, &t->conf);
	}
	if (rc == 0) {
		/* SNI, and the name the broker's certificate must carry. */
		rc = mbedtls_ssl_set_hostname(&t->ssl, hostname);
	}
	if (rc != 0) {
		tfmprov_tls_free(t);
		return rc;
	}
	mbedtls_ssl_set_bio(&t->ssl, bio, send, recv, NULL);
	return 0;
}

void tfmprov_tls_free(struct tfmprov_tls *t)
{
	mbedtls_ssl_free(&t->ssl);
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_pk_free(&t->key);
	mbedtls_x509_crt_free(&t->own);
	mbedtls_x509_crt_free(&t->root);
}

void tfmprov_tls_describe(const struct tfmprov_tls *t, int rc, char *out, size_t cap)
{
	/* The TLS, X.509 and PK layers' codes are all below -0x1000; the
	 * library's TFMPROV_ERR_* codes are small. */
	if (rc < 0 && rc > -0x1000) {
		snprintf(out, cap, "device: %s", tfmprov_strerror(rc));
	} else if (t->pin_rc == TFMPROV_ERR_MISMATCH) {
		snprintf(out, cap, "the broker's key is not the pinned key");
	} else if (t->pin_rc != 1 && t->pin_rc != TFMPROV_OK) {
		snprintf(out, cap, "broker key not checked: %s", tfmprov_strerror(t->pin_rc));
	} else if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);

		snprintf(out, cap, "broker certificate refused (flags 0x%08x:%s%s)", (unsigned int)flags,
			 (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) ? " not from the CA root" : "",
			 (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) ? " wrong name" : "");
	} else {
		snprintf(out, cap, "Mbed TLS -0x%04x", (unsigned int)-rc);
	}
}
