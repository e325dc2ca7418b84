/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * TF-M project configuration of the tfmprov firmware for MPS2-AN521
 * (TF-M platform arm/mps2/an521; Zephyr board mps2/an521/cpu0/ns).
 * See config_tfmprov.h for how TF-M reads this file.
 *
 * ITS flash area (TF-M platform/ext/target/arm/mps2/an521/partition/
 * flash_layout.h): FLASH_ITS_AREA_SIZE 0x4000, 4 KiB sectors,
 * TFM_HAL_ITS_SECTORS_PER_BLOCK 1, so 4 blocks: 2 metadata, 1 scratch,
 * 1 dedicated data block. Room for files: logical block 0 holds
 * 4096 - 832 = 3264 bytes and block 1 holds 4096: 7360 bytes in all.
 *
 * What has to fit (docs/firmware.md, section 7; sizes of the CA's real
 * certificates): the sample set (3 keys of 68 bytes, a ~0.5 KiB device
 * certificate), the CA root and cloud certificates (~0.45 KiB each), 3 state
 * records, TF-M's NV seed, and a rotation in flight (a new key and its
 * certificate) plus a certificate replacement's journal and staged copy:
 * 14 files, about 3.0 KiB. 24 files leave room for a certificate per key and
 * more peers; the bytes, not the file count, run out first.
 */
#ifndef TFMPROV_CONFIG_TFMPROV_AN521_H
#define TFMPROV_CONFIG_TFMPROV_AN521_H

#include "config_tfmprov.h"

/* What TF-M's flash layout gives ITS on this platform (not a setting). */
#define TFMPROV_ITS_AREA_SIZE  0x4000
#define TFMPROV_ITS_BLOCK_SIZE 0x1000

/* One file may fill a whole block: certificates up to 4060 bytes of DER. */
#define ITS_MAX_ASSET_SIZE 4096
#define ITS_NUM_ASSETS     24

#if ITS_MAX_ASSET_SIZE > TFMPROV_ITS_BLOCK_SIZE
#error "tfmprov: an ITS file cannot be larger than one flash block"
#endif
#if TFMPROV_ITS_METADATA_SIZE(2) > TFMPROV_ITS_BLOCK_SIZE
#error "tfmprov: ITS metadata for ITS_NUM_ASSETS files does not fit one block"
#endif

#endif /* TFMPROV_CONFIG_TFMPROV_AN521_H */
