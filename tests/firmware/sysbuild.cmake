# SPDX-License-Identifier: Apache-2.0
#
# Sysbuild reads sysbuild.cmake from the main image's source folder, which is
# this one under twister: use the application's (the nRF5340 network-core
# hci_ipc image for bt.conf builds).
include(${CMAKE_CURRENT_LIST_DIR}/../../sysbuild.cmake)
