/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Serialisation of the calls into the Rust library (tfmprov.h).
 *
 * Calls come from several threads (main, the SMP work queue, the shell, the
 * MQTT thread). Rust guards the device with a lock it only try-locks (never
 * spins, see rust/firmware/src/state.rs), so the C side takes this sleeping
 * mutex (priority inheritance) around every call instead: callers wait their
 * turn rather than get "busy". It also guards the static buffers the callers
 * lend to Rust.
 */
#ifndef TFMPROV_GLUE_H
#define TFMPROV_GLUE_H

#include <zephyr/kernel.h>

extern struct k_mutex tfmprov_lock;

/* Given once by main() after tfmprov_init() succeeded. */
extern struct k_sem tfmprov_ready;

static inline void tfmprov_enter(void)
{
	(void)k_mutex_lock(&tfmprov_lock, K_FOREVER);
}

static inline void tfmprov_leave(void)
{
	(void)k_mutex_unlock(&tfmprov_lock);
}

#endif /* TFMPROV_GLUE_H */
