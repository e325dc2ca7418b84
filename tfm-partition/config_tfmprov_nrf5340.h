/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * TF-M project configuration of the tfmprov firmware for the nRF5340 DK
 * application core (TF-M platform nordic_nrf/nrf5340dk_nrf5340_cpuapp;
 * Zephyr board nrf5340dk/nrf5340/cpuapp/ns). See config_tfmprov.h.
 *
 * ITS flash area (TF-M platform/ext/target/nordic_nrf/common/nrf5340/
 * partition/flash_layout.h): FLASH_ITS_AREA_SIZE 0x2000, 4 KiB sectors,
 * 1 sector per block, so 2 blocks: both are metadata blocks and all files
 * live in logical block 0, after the metadata. With 16 files that leaves
 * 4096 - (8 + 12 + 32 * 17) = 3532 bytes for everything: keys, certificates,
 * state. TF-M refuses to start ITS if one file of ITS_MAX_ASSET_SIZE would
 * not fit there (its_flash_fs_validate_config), so 4096 is impossible here.
 *
 * The sample set with the CA's real P-256 certificates (device ~0.5 KiB,
 * CA root and cloud ~0.45 KiB) and one rotation plus a certificate
 * replacement in flight needs about 3.0 KiB: it fits, with certificates of
 * up to 1500 bytes for one key.
 * More room needs a larger FLASH_ITS_AREA_SIZE in TF-M's nRF5340 layout
 * (a fixed #define there, not a configuration option) together with the
 * board's tfm_its_partition in Zephyr's devicetree.
 */
#ifndef TFMPROV_CONFIG_TFMPROV_NRF5340_H
#define TFMPROV_CONFIG_TFMPROV_NRF5340_H

#include "config_tfmprov.h"

/* What TF-M's flash layout gives ITS on this platform (not a setting). */
#define TFMPROV_ITS_AREA_SIZE  0x2000
#define TFMPROV_ITS_BLOCK_SIZE 0x1000

/* Certificates up to 1500 bytes of DER. */
#define ITS_MAX_ASSET_SIZE 1536
#define ITS_NUM_ASSETS     16

/* Two blocks: a file must fit next to the metadata in the same block. */
#if ITS_MAX_ASSET_SIZE > (TFMPROV_ITS_BLOCK_SIZE - TFMPROV_ITS_METADATA_SIZE(1))
#error "tfmprov: ITS_MAX_ASSET_SIZE does not fit next to the metadata (TF-M would not start ITS)"
#endif

#endif /* TFMPROV_CONFIG_TFMPROV_NRF5340_H */
