/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * rust/partition-sp declares psa_msg_t and the PSA service calls itself
 * (src/ffi.rs); this checks its view against TF-M's headers when the
 * partition is built, so that a TF-M update that changes them stops the
 * build instead of corrupting messages.
 */
#include <stddef.h>
#include <stdint.h>

#include "psa/service.h"

_Static_assert(sizeof(psa_handle_t) == 4, "psa_handle_t: Rust uses i32");
_Static_assert(sizeof(psa_status_t) == 4, "psa_status_t: Rust uses i32");
_Static_assert(PSA_MAX_IOVEC == 4, "Rust's PsaMsg has 4 in_size/out_size entries");
_Static_assert(offsetof(psa_msg_t, type) == 0, "PsaMsg.kind");
_Static_assert(offsetof(psa_msg_t, handle) == 4, "PsaMsg.handle");
_Static_assert(offsetof(psa_msg_t, client_id) == 8, "PsaMsg.client_id");
_Static_assert(offsetof(psa_msg_t, rhandle) == 12, "PsaMsg.rhandle");
_Static_assert(offsetof(psa_msg_t, in_size) == 16, "PsaMsg.in_size");
_Static_assert(offsetof(psa_msg_t, out_size) == 32, "PsaMsg.out_size");
_Static_assert(sizeof(psa_msg_t) == 48, "PsaMsg is 48 bytes");
