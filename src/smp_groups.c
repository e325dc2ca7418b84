/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * mcumgr groups 64 (keys), 65 (csr) and 66 (certs) of DESIGN.md.
 *
 * Each handler passes the request's CBOR bytes (what the SMP layer's zcbor
 * decoder still has to read: payload..payload_end of ctxt->reader->zs) to
 * tfmprov_smp_handle() and encodes its answer with zcbor: the map entries
 * listed in rsp.fields, a group error via smp_add_cmd_err() (rc > 0), or an
 * MGMT_ERR (rc < 0). Which commands exist, which op each takes, and every
 * check, are decided in Rust: every command slot gets both a read and a
 * write handler here.
 *
 * APIs as in Zephyr v4.3.0: include/zephyr/mgmt/mcumgr/mgmt/mgmt.h
 * (struct mgmt_group, mgmt_register_group), .../mgmt/handlers.h
 * (MCUMGR_HANDLER_DEFINE), .../smp/smp.h (struct smp_streamer,
 * smp_add_cmd_err) and zcbor's zcbor_encode.h.
 */
#include <zephyr/kernel.h>
#include <zephyr/mgmt/mcumgr/mgmt/mgmt.h>
#include <zephyr/mgmt/mcumgr/mgmt/handlers.h>
#include <zephyr/mgmt/mcumgr/smp/smp.h>
#include <zcbor_common.h>
#include <zcbor_encode.h>

#include "tfmprov.h"
#include "tfmprov_glue.h"

#define TFMPROV_GROUP_KEYS  64
#define TFMPROV_GROUP_CSR   65
#define TFMPROV_GROUP_CERTS 66

/* The byte string of one response (public key, CSR or certificate); guarded
 * by tfmprov_lock like every call into Rust. */
static uint8_t smp_data[CONFIG_TFMPROV_SMP_DATA_MAX];

static int tfmprov_smp(struct smp_streamer *ctxt, uint16_t group, uint8_t cmd, uint8_t op)
{
	zcbor_state_t *zse = ctxt->writer->zs;
	const zcbor_state_t *zsd = ctxt->reader->zs;
	/* The SMP layer hands the decoder the rest of the packet; for one
	 * request per packet that is exactly this request's CBOR map (Rust
	 * decodes one item and ignores anything after it). */
	const uint8_t *req = zsd->payload;
	size_t req_len = (size_t)(zsd->payload_end - zsd->payload);
	struct tfmprov_smp_rsp rsp;
	bool ok = true;
	int32_t rc;

	tfmprov_enter();
	rc = tfmprov_smp_handle(group, cmd, op, req, req_len, smp_data, sizeof(smp_data), &rsp);
	if (rc == 0) {
		if (rsp.fields & TFMPROV_RSP_ID) {
			ok = ok && zcbor_tstr_put_lit(zse, "id") && zcbor_uint32_put(zse, rsp.id);
		}
		if (rsp.fields & TFMPROV_RSP_PUB) {
			ok = ok && zcbor_tstr_put_lit(zse, "pub") &&
			     zcbor_bstr_encode_ptr(zse, (const char *)smp_data, rsp.data_len);
		}
		if (rsp.fields & TFMPROV_RSP_PRESENT) {
			ok = ok && zcbor_tstr_put_lit(zse, "present") &&
			     zcbor_bool_put(zse, rsp.present);
		}
		if (rsp.fields & TFMPROV_RSP_CSR) {
			ok = ok && zcbor_tstr_put_lit(zse, "csr") &&
			     zcbor_bstr_encode_ptr(zse, (const char *)smp_data, rsp.data_len);
		}
		if (rsp.fields & TFMPROV_RSP_CERT) {
			ok = ok && zcbor_tstr_put_lit(zse, "cert") &&
			     zcbor_bstr_encode_ptr(zse, (const char *)smp_data, rsp.data_len);
		}
		if (rsp.fields & TFMPROV_RSP_LOG) {
			ok = ok && zcbor_tstr_put_lit(zse, "log") &&
			     zcbor_bstr_encode_ptr(zse, (const char *)smp_data, rsp.data_len);
		}
	}
	tfmprov_leave();

	if (rc < 0) {
		return (int)-rc; /* an MGMT_ERR: Zephyr sends {"rc": N} */
	}
	if (rc > 0) {
		/* A DESIGN.md group rc: {"err": {"group": G, "rc": RC}} */
		ok = smp_add_cmd_err(zse, group, (uint16_t)rc);
	}
	return ok ? MGMT_ERR_EOK : MGMT_ERR_EMSGSIZE;
}

/* One read and one write handler per (group, command). */
#define TFMPROV_HANDLERS(grp, cmd)                                                         \
	static int h_##grp##_##cmd##_r(struct smp_streamer *ctxt)                          \
	{                                                                                  \
		return tfmprov_smp(ctxt, grp, cmd, MGMT_OP_READ);                          \
	}                                                                                  \
	static int h_##grp##_##cmd##_w(struct smp_streamer *ctxt)                          \
	{                                                                                  \
		return tfmprov_smp(ctxt, grp, cmd, MGMT_OP_WRITE);                         \
	}
#define TFMPROV_ENTRY(grp, cmd) [cmd] = {.mh_read = h_##grp##_##cmd##_r, .mh_write = h_##grp##_##cmd##_w}

TFMPROV_HANDLERS(64, 0)
TFMPROV_HANDLERS(64, 1)
TFMPROV_HANDLERS(64, 2)
TFMPROV_HANDLERS(64, 3)
TFMPROV_HANDLERS(64, 4)
TFMPROV_HANDLERS(64, 5)
TFMPROV_HANDLERS(65, 0)
TFMPROV_HANDLERS(66, 0)
TFMPROV_HANDLERS(66, 1)

static const struct mgmt_handler keys_handlers[] = {
	TFMPROV_ENTRY(64, 0), /* generate */
	TFMPROV_ENTRY(64, 1), /* public */
	TFMPROV_ENTRY(64, 2), /* status */
	TFMPROV_ENTRY(64, 3), /* destroy */
	TFMPROV_ENTRY(64, 4), /* kak: the key-agreement key's public key */
	TFMPROV_ENTRY(64, 5), /* audit: the log of key operations */
};
static const struct mgmt_handler csr_handlers[] = {
	TFMPROV_ENTRY(65, 0), /* create */
};
static const struct mgmt_handler certs_handlers[] = {
	TFMPROV_ENTRY(66, 0), /* store */
	TFMPROV_ENTRY(66, 1), /* get */
};

#if defined(CONFIG_MCUMGR_SMP_SUPPORT_ORIGINAL_PROTOCOL)
/* SMP v1 clients get {"rc": N}: the MGMT_ERR Rust maps each group rc to. */
static int tfmprov_translate_error(uint16_t err)
{
	return (int)tfmprov_smp_v1_rc(err);
}
#define TFMPROV_TRANSLATE .mg_translate_error = tfmprov_translate_error,
#else
#define TFMPROV_TRANSLATE
#endif

static struct mgmt_group keys_group = {
	.mg_handlers = keys_handlers,
	.mg_handlers_count = ARRAY_SIZE(keys_handlers),
	.mg_group_id = TFMPROV_GROUP_KEYS,
	TFMPROV_TRANSLATE
};
static struct mgmt_group csr_group = {
	.mg_handlers = csr_handlers,
	.mg_handlers_count = ARRAY_SIZE(csr_handlers),
	.mg_group_id = TFMPROV_GROUP_CSR,
	TFMPROV_TRANSLATE
};
static struct mgmt_group certs_group = {
	.mg_handlers = certs_handlers,
	.mg_handlers_count = ARRAY_SIZE(certs_handlers),
	.mg_group_id = TFMPROV_GROUP_CERTS,
	TFMPROV_TRANSLATE
};

static void tfmprov_mgmt_register(void)
{
	mgmt_register_group(&keys_group);
	mgmt_register_group(&csr_group);
	mgmt_register_group(&certs_group);
}

MCUMGR_HANDLER_DEFINE(tfmprov_mgmt, tfmprov_mgmt_register);
