/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Bluetooth LE for the SMP service (bt.conf), as
 * samples/subsys/mgmt/mcumgr/smp_svr/src/bluetooth.c does: the MCUmgr BT
 * transport registers the SMP GATT service; this makes the device
 * connectable, re-advertises after a disconnect, and does the pairing the
 * service's permission (CONFIG_MCUMGR_TRANSPORT_BT_PERM_RW_AUTHEN) requires.
 *
 * Pairing: LE Secure Connections (CONFIG_BT_SMP_SC_ONLY), passkey entry with
 * this device displaying. Registering passkey_display without passkey_entry
 * or passkey_confirm makes the host announce the DisplayOnly IO capability
 * (subsys/bluetooth/host/smp.c, get_io_capa); the host draws a random
 * 6-digit passkey for each pairing and passkey_display logs it on the
 * console. The operator types it into the client. The result is an
 * authenticated link; a client that cannot do passkey entry gets no SMP
 * access. The link asks for security at connection time, as
 * samples/bluetooth/peripheral_sc_only does, so pairing starts before the
 * client's first SMP write.
 */
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/bluetooth/bluetooth.h>
#include <zephyr/bluetooth/conn.h>
#include <zephyr/bluetooth/gatt.h>
#include <zephyr/mgmt/mcumgr/transport/smp_bt.h>

#include "tfmprov_bt.h"

LOG_MODULE_DECLARE(tfmprov, CONFIG_TFMPROV_LOG_LEVEL);

static struct k_work advertise_work;

static const struct bt_data ad[] = {
	BT_DATA_BYTES(BT_DATA_FLAGS, (BT_LE_AD_GENERAL | BT_LE_AD_NO_BREDR)),
	BT_DATA_BYTES(BT_DATA_UUID128_ALL, SMP_BT_SVC_UUID_VAL),
};

static const struct bt_data sd[] = {
	BT_DATA(BT_DATA_NAME_COMPLETE, CONFIG_BT_DEVICE_NAME, sizeof(CONFIG_BT_DEVICE_NAME) - 1),
};

static void peer(struct bt_conn *conn, char *buf, size_t len)
{
	bt_addr_le_to_str(bt_conn_get_dst(conn), buf, len);
}

static void advertise(struct k_work *work)
{
	int rc = bt_le_adv_start(BT_LE_ADV_CONN_FAST_1, ad, ARRAY_SIZE(ad), sd, ARRAY_SIZE(sd));

	ARG_UNUSED(work);
	if (rc != 0) {
		LOG_ERR("bt: advertising failed: %d", rc);
	} else {
		LOG_INF("bt: advertising SMP service");
	}
}

static void connected(struct bt_conn *conn, uint8_t err)
{
	char addr[BT_ADDR_LE_STR_LEN];
	int rc;

	peer(conn, addr, sizeof(addr));
	if (err != 0) {
		LOG_WRN("bt: connection from %s failed: 0x%02x", addr, err);
		return;
	}
	LOG_INF("bt: connected %s", addr);
	rc = bt_conn_set_security(conn, BT_SECURITY_L4);
	if (rc != 0) {
		LOG_WRN("bt: security request to %s failed: %d", addr, rc);
	}
}

static void disconnected(struct bt_conn *conn, uint8_t reason)
{
	char addr[BT_ADDR_LE_STR_LEN];

	peer(conn, addr, sizeof(addr));
	LOG_INF("bt: disconnected %s: 0x%02x", addr, reason);
}

static void recycled(void)
{
	k_work_submit(&advertise_work);
}

BT_CONN_CB_DEFINE(tfmprov_conn_callbacks) = {
	.connected = connected,
	.disconnected = disconnected,
	.recycled = recycled,
};

static void passkey_display(struct bt_conn *conn, unsigned int passkey)
{
	char addr[BT_ADDR_LE_STR_LEN];

	peer(conn, addr, sizeof(addr));
	LOG_INF("bt: passkey for %s: %06u", addr, passkey);
}

static void pairing_cancel(struct bt_conn *conn)
{
	char addr[BT_ADDR_LE_STR_LEN];

	peer(conn, addr, sizeof(addr));
	LOG_WRN("bt: pairing with %s cancelled", addr);
}

static void pairing_complete(struct bt_conn *conn, bool bonded)
{
	char addr[BT_ADDR_LE_STR_LEN];

	ARG_UNUSED(bonded);
	peer(conn, addr, sizeof(addr));
	LOG_INF("bt: paired with %s, security level %d", addr, (int)bt_conn_get_security(conn));
}

static void pairing_failed(struct bt_conn *conn, enum bt_security_err reason)
{
	char addr[BT_ADDR_LE_STR_LEN];

	peer(conn, addr, sizeof(addr));
	LOG_WRN("bt: pairing with %s failed: %d; disconnecting", addr, (int)reason);
	(void)bt_conn_disconnect(conn, BT_HCI_ERR_AUTH_FAIL);
}

/* DisplayOnly: passkey_display (and the mandatory cancel), nothing else. */
static const struct bt_conn_auth_cb auth_callbacks = {
	.passkey_display = passkey_display,
	.cancel = pairing_cancel,
};

static struct bt_conn_auth_info_cb auth_info_callbacks = {
	.pairing_complete = pairing_complete,
	.pairing_failed = pairing_failed,
};

static void bt_ready(int err)
{
	if (err != 0) {
		LOG_ERR("bt: init failed: %d", err);
		return;
	}
	k_work_submit(&advertise_work);
}

void tfmprov_bt_start(void)
{
	int rc;

	k_work_init(&advertise_work, advertise);

	/* Before bt_enable: no connection can pair without these. */
	rc = bt_conn_auth_cb_register(&auth_callbacks);
	if (rc == 0) {
		rc = bt_conn_auth_info_cb_register(&auth_info_callbacks);
	}
	if (rc != 0) {
		LOG_ERR("bt: pairing callbacks not registered (%d): BLE stays off", rc);
		return;
	}

	rc = bt_enable(bt_ready);
	if (rc != 0) {
		LOG_ERR("bt: enable failed: %d", rc);
	}
}
