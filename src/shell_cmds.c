/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The "prov" shell command. argv goes to Rust unchanged (tfmprov_shell parses
 * "keys gen|pub|status|destroy", "csr", "cert get|store", "factory") and its
 * text comes back to be printed. Zephyr v4.3.0 include/zephyr/shell/shell.h:
 * SHELL_CMD_ARG_REGISTER, SHELL_OPT_ARG_CHECK_SKIP, shell_print, shell_error.
 */
#include <errno.h>
#include <zephyr/kernel.h>
#include <zephyr/shell/shell.h>

#include "tfmprov.h"
#include "tfmprov_glue.h"

/* Guarded by tfmprov_lock. */
static char shell_out[CONFIG_TFMPROV_SHELL_OUT_MAX];

static int cmd_prov(const struct shell *sh, size_t argc, char **argv)
{
	size_t len = 0;
	int32_t rc;

	tfmprov_enter();
	rc = tfmprov_shell(argc, (const char *const *)argv, shell_out, sizeof(shell_out), &len);
	if (rc == TFMPROV_OK) {
		shell_print(sh, "%s", shell_out);
	} else {
		shell_error(sh, "%s", shell_out);
	}
	tfmprov_leave();

	return rc == TFMPROV_OK ? 0 : -ENOEXEC;
}

SHELL_CMD_ARG_REGISTER(prov, NULL,
		       "Provisioning (TF-M keys, CSR, certificates):\n"
		       "prov keys gen [ID|auto] [--priv HEX64] [--replace]\n"
		       "prov keys pub|status|destroy ID\n"
		       "prov csr ID CN [O [OU]]\n"
		       "prov cert get ID | prov cert store ID BASE64-DER\n"
		       "prov factory",
		       cmd_prov, 1, SHELL_OPT_ARG_CHECK_SKIP);
