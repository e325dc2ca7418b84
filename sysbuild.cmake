# SPDX-License-Identifier: Apache-2.0
#
# Sysbuild images of the tfmprov firmware (west build --sysbuild ...).
#
# nRF5340 + bt.conf: the Bluetooth LE controller runs on the network core,
# as Zephyr's samples/bluetooth/hci_ipc image. Zephyr's nrf5340dk board only
# names that core to sysbuild (SB_CONFIG_DOMAIN_CPUNET_BOARD,
# boards/nordic/nrf5340dk/Kconfig.sysbuild); the image itself is added by the
# application, as Zephyr's Bluetooth samples do in their own sysbuild.cmake
# (ExternalZephyrProject_Add of samples/bluetooth/hci_ipc for the network-core
# board). TF-M is not a sysbuild image: the application's own build adds it.
#
# The image is added only when the application is built with bt.conf (its
# EXTRA_CONF_FILE, which sysbuild hands to the main image unprefixed) on an
# nRF5340 application core; -DTFMPROV_HCI_IPC=ON/OFF overrides the detection.
#
# Sysbuild includes sysbuild.cmake from the main image's source folder, so
# tests/firmware/sysbuild.cmake includes this file for the twister build.

set(tfmprov_hci_ipc OFF)
foreach(tfmprov_conf IN LISTS EXTRA_CONF_FILE ${DEFAULT_IMAGE}_EXTRA_CONF_FILE
                              OVERLAY_CONFIG ${DEFAULT_IMAGE}_OVERLAY_CONFIG)
  string(REPLACE "\"" "" tfmprov_conf "${tfmprov_conf}")
  get_filename_component(tfmprov_conf_name "${tfmprov_conf}" NAME)
  if(tfmprov_conf_name STREQUAL "bt.conf")
    set(tfmprov_hci_ipc ON)
  endif()
endforeach()
if(DEFINED TFMPROV_HCI_IPC)
  set(tfmprov_hci_ipc ${TFMPROV_HCI_IPC})
endif()

if(tfmprov_hci_ipc AND SB_CONFIG_SOC_NRF5340_CPUAPP)
  if("${SB_CONFIG_DOMAIN_CPUNET_BOARD}" STREQUAL "")
    message(FATAL_ERROR "tfmprov: bt.conf on an nRF5340 needs the network-core board "
                        "(SB_CONFIG_DOMAIN_CPUNET_BOARD), which this board does not define")
  endif()
  ExternalZephyrProject_Add(
    APPLICATION hci_ipc
    SOURCE_DIR  ${ZEPHYR_BASE}/samples/bluetooth/hci_ipc
    BOARD       ${SB_CONFIG_DOMAIN_CPUNET_BOARD}
  )
  message(STATUS "tfmprov: hci_ipc for ${SB_CONFIG_DOMAIN_CPUNET_BOARD} (Bluetooth controller)")
endif()
