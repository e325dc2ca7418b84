/* SPDX-License-Identifier: Apache-2.0 */
#ifndef TFMPROV_BT_H
#define TFMPROV_BT_H

/* Starts Bluetooth and advertises the SMP service (bt.conf only). */
void tfmprov_bt_start(void);

#endif /* TFMPROV_BT_H */
