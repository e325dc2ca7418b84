/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Bluetooth LE advertising of the SMP service (bt.conf), as
 * samples/subsys/mgmt/mcumgr/smp_svr/src/bluetooth.c does: the MCUmgr BT
 * transport registers the SMP GATT service; this makes the device
 * connectable and re-advertises after a disconnect.
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

static void recycled(void)
{
	k_work_submit(&advertise_work);
}

BT_CONN_CB_DEFINE(tfmprov_conn_callbacks) = {
	.recycled = recycled,
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
	rc = bt_enable(bt_ready);
	if (rc != 0) {
		LOG_ERR("bt: enable failed: %d", rc);
	}
}
