/*
 * SPDX-License-Identifier: Apache-2.0
 */
#include "tfmprov_glue.h"

K_MUTEX_DEFINE(tfmprov_lock);
K_SEM_DEFINE(tfmprov_ready, 0, 1);
