/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * tfmprov firmware entry: checks the C/Rust ABI, boots the Rust device
 * (PSA init + boot RNG check), optionally runs the sample provisioning, and
 * lets the mcumgr groups, the shell and the MQTT client take over. Every
 * decision is in Rust (rust/firmware -> rust/device); this file only logs.
 */
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <psa/crypto.h>
#include <string.h>

#include "tfmprov.h"
#include "tfmprov_glue.h"
#if defined(CONFIG_MCUMGR_TRANSPORT_BT)
#include "tfmprov_bt.h"
#endif

LOG_MODULE_REGISTER(tfmprov, CONFIG_TFMPROV_LOG_LEVEL);

#if defined(CONFIG_TFMPROV_FACTORY_AT_BOOT)
/* Output of "prov factory": three lines of about 180 characters. */
static char factory_out[1024];

static void factory_at_boot(void)
{
	const char *const argv[] = {"prov", "factory"};
	size_t len = 0;
	int32_t rc;

	tfmprov_enter();
	rc = tfmprov_shell(ARRAY_SIZE(argv), argv, factory_out, sizeof(factory_out), &len);
	tfmprov_leave();

	/* One log line per output line, so that each key is one record. */
	for (char *line = factory_out, *next; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL) {
			*next++ = '\0';
		}
		if (rc == TFMPROV_OK) {
			LOG_INF("factory: %s", line);
		} else {
			LOG_ERR("factory: %s", line);
		}
	}
	if (rc == TFMPROV_OK) {
		LOG_INF("factory: sample provisioning done");
	} else {
		LOG_ERR("factory: failed: %d (%s)", (int)rc, tfmprov_strerror(rc));
	}
}
#endif

int main(void)
{
	int32_t rc;

	/* Rust and C must agree on the PSA key attributes struct (the build
	 * already asserts this at compile time; this guards a stale library). */
	if (tfmprov_psa_key_attributes_size() != sizeof(psa_key_attributes_t)) {
		LOG_ERR("psa_key_attributes_t is %zu bytes in C but %zu in Rust: "
			"the Rust library was built against other PSA headers; stopping",
			sizeof(psa_key_attributes_t), tfmprov_psa_key_attributes_size());
		return 0;
	}
	LOG_INF("abi: sizeof(psa_key_attributes_t) = %zu in C and Rust",
		sizeof(psa_key_attributes_t));

	tfmprov_enter();
	rc = tfmprov_init(CONFIG_TFMPROV_DEVICE_ID);
	tfmprov_leave();

	if (rc == TFMPROV_RNG_BROKEN) {
		LOG_WRN("rng: %s", tfmprov_strerror(rc));
	} else if (rc != TFMPROV_OK) {
		LOG_ERR("init failed: %d (%s)", (int)rc, tfmprov_strerror(rc));
		return 0;
	}
	LOG_INF("device %s ready", CONFIG_TFMPROV_DEVICE_ID);

#if defined(CONFIG_TFMPROV_FACTORY_AT_BOOT)
	factory_at_boot();
#endif

	k_sem_give(&tfmprov_ready);

#if defined(CONFIG_MCUMGR_TRANSPORT_BT)
	tfmprov_bt_start();
#endif
	return 0;
}
