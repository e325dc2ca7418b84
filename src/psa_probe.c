/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Not linked: compiled with the application's flags and TF-M's NS headers so
 * that cmake/cargo_build.cmake can read sizeof(psa_key_attributes_t) (the
 * size of this one symbol, via nm -S) and hand it to the Rust build, which
 * asserts that its own psa_key_attributes_t has the same size.
 */
#include <psa/crypto.h>

__attribute__((used)) const unsigned char tfmprov_psa_attr_probe[sizeof(psa_key_attributes_t)] = {0};
