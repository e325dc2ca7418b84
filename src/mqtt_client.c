/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * MQTT client (CONFIG_TFMPROV_MQTT, enabled by mqtt.conf; mutual TLS with
 * mqtt-tls.conf, through the custom transport at the end of this file and
 * src/mqtt_tls.c). Topics, QoS levels and message bodies all come from Rust:
 * tfmprov_mqtt_topic / tfmprov_mqtt_qos / tfmprov_mqtt_next build them,
 * tfmprov_mqtt_on_error turns a report on prov/{id}/errors into a log line,
 * and tfmprov_mqtt_command answers a remote command (docs/remote.md).
 * This file only runs the MQTT protocol (Zephyr's MQTT library,
 * include/zephyr/net/mqtt.h of v4.3.0, loop as in samples/net/mqtt_publisher).
 *
 * Sequence per connection (a persistent session: clean_session 0, so that
 * commands queued while the device was away are delivered): subscribe to
 * errors and cmd, publish the KAK announcement on reply, then every
 * CONFIG_TFMPROV_MQTT_INTERVAL_S: a data message (signed sample reading), a
 * session message when Rust says one is due (new session key, QoS 2; the
 * first round and then per the rotation policy), and a sealed message (the
 * same reading encrypted under the session key). A command received in
 * between is answered on reply and only then acknowledged (PUBACK): a
 * command whose reply was not published stays unacknowledged and the broker
 * delivers it again at the next connection (Rust answers a copy of the last
 * command from its record, without running it twice).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/net/socket.h>
#include <zephyr/net/mqtt.h>
#include <zephyr/sys/byteorder.h>
#if defined(CONFIG_TFMPROV_MQTT_TLS)
#include <mbedtls/net_sockets.h> /* MBEDTLS_ERR_NET_* only (no MBEDTLS_NET_C) */
#include "mqtt_tls.h"
#endif

#include "tfmprov.h"
#include "tfmprov_glue.h"

LOG_MODULE_DECLARE(tfmprov, CONFIG_TFMPROV_LOG_LEVEL);

#define TOPIC_MAX 96

static uint8_t rx_buf[CONFIG_TFMPROV_MQTT_BUF_SIZE];
static uint8_t tx_buf[CONFIG_TFMPROV_MQTT_BUF_SIZE];
static uint8_t msg_buf[CONFIG_TFMPROV_MQTT_BUF_SIZE]; /* outgoing body / incoming report */
static uint8_t cmd_buf[CONFIG_TFMPROV_MQTT_CMD_BUF_SIZE];   /* incoming remote command */
static uint8_t reply_buf[CONFIG_TFMPROV_MQTT_CMD_BUF_SIZE]; /* its reply */
static char topics[TFMPROV_MQTT_REPLY + 1][TOPIC_MAX];      /* indexed by TFMPROV_MQTT_* */
static char report_line[256];

static struct mqtt_client client;
static struct sockaddr_storage broker;
static struct zsock_pollfd fds[1];
static bool connected;
static uint16_t next_msg_id = 1;

static uint16_t msg_id(void)
{
	uint16_t id = next_msg_id++;

	if (next_msg_id == 0) {
		next_msg_id = 1; /* 0 is not a valid packet identifier */
	}
	return id;
}

#if defined(CONFIG_TFMPROV_MQTT_TLS)
/* The socket under the TLS session, and the recv flags of the read under
 * way (the MQTT library asks for non-blocking reads in mqtt_input). */
struct tls_bio {
	int sock;
	int recv_flags;
};
static struct tls_bio bio = {.sock = -1};
static struct tfmprov_tls tls;
#endif

static int sock_fd(void)
{
#if defined(CONFIG_TFMPROV_MQTT_TLS)
	return bio.sock;
#else
	return client.transport.tcp.sock;
#endif
}

/* Whether input is waiting that poll() on the socket cannot see: a TLS
 * record already read and decrypted, whose rest the MQTT library has not
 * asked for yet. */
static bool input_buffered(void)
{
#if defined(CONFIG_TFMPROV_MQTT_TLS)
	return bio.sock >= 0 && mbedtls_ssl_get_bytes_avail(&tls.ssl) > 0;
#else
	return false;
#endif
}

static int publish_body(uint8_t kind, const uint8_t *body, size_t len);

static bool is_topic(const struct mqtt_publish_param *p, uint8_t kind)
{
	size_t n = strlen(topics[kind]);

	return p->message.topic.topic.size == n &&
	       memcmp(p->message.topic.topic.utf8, topics[kind], n) == 0;
}

/* Answers the command in cmd_buf[0..len] on the reply topic. 0 when the
 * reply was published: only then may the command be acknowledged. */
static int answer_command(size_t len)
{
	size_t reply_len = 0;
	int32_t rc;

	tfmprov_enter();
	rc = tfmprov_mqtt_command(cmd_buf, len, reply_buf, sizeof(reply_buf), &reply_len);
	tfmprov_leave();
	if (rc != TFMPROV_OK) {
		LOG_ERR("mqtt: command not answered: %d (%s); left for redelivery", (int)rc,
			tfmprov_strerror(rc));
		return -EIO;
	}
	return publish_body(TFMPROV_MQTT_REPLY, reply_buf, reply_len);
}

/* Reads and drops a payload that does not fit, so the stream stays in sync. */
static int drain(struct mqtt_client *c, uint32_t len)
{
	while (len > 0) {
		size_t chunk = MIN(len, sizeof(msg_buf));

		if (mqtt_readall_publish_payload(c, msg_buf, chunk) != 0) {
			return -EIO;
		}
		len -= chunk;
	}
	return 0;
}

static void on_publish(struct mqtt_client *c, const struct mqtt_publish_param *p)
{
	const bool command = is_topic(p, TFMPROV_MQTT_CMD);
	uint8_t *buf = command ? cmd_buf : msg_buf;
	const size_t cap = command ? sizeof(cmd_buf) : sizeof(msg_buf);
	uint32_t len = p->message.payload.len;
	int32_t rc;

	if (len > cap) {
		/* Never answerable: acknowledged below, so that it is not
		 * delivered again; the server's command times out. */
		LOG_WRN("mqtt: %u-byte %s dropped (buffer %zu)", (unsigned int)len,
			command ? "command" : "report", cap);
		if (drain(c, len) != 0) {
			return;
		}
	} else {
		if (mqtt_readall_publish_payload(c, buf, len) != 0) {
			return;
		}
		if (command) {
			if (answer_command(len) != 0) {
				return; /* not acknowledged: delivered again */
			}
		} else {
			tfmprov_enter();
			rc = tfmprov_mqtt_on_error(msg_buf, len, report_line, sizeof(report_line));
			tfmprov_leave();
			LOG_WRN("errors: %s%s", report_line, rc == TFMPROV_OK ? "" : " (truncated)");
		}
	}

	if (p->message.topic.qos == MQTT_QOS_1_AT_LEAST_ONCE) {
		const struct mqtt_puback_param ack = {.message_id = p->message_id};

		(void)mqtt_publish_qos1_ack(c, &ack);
	} else if (p->message.topic.qos == MQTT_QOS_2_EXACTLY_ONCE) {
		const struct mqtt_pubrec_param rec = {.message_id = p->message_id};

		(void)mqtt_publish_qos2_receive(c, &rec);
	}
}

static void mqtt_evt_handler(struct mqtt_client *c, const struct mqtt_evt *evt)
{
	switch (evt->type) {
	case MQTT_EVT_CONNACK:
		connected = (evt->result == 0);
		LOG_INF("mqtt: connack %d", evt->result);
		break;
	case MQTT_EVT_DISCONNECT:
		connected = false;
		LOG_INF("mqtt: disconnected %d", evt->result);
		break;
	case MQTT_EVT_PUBLISH:
		on_publish(c, &evt->param.publish);
		break;
	case MQTT_EVT_PUBREC: {
		const struct mqtt_pubrel_param rel = {.message_id = evt->param.pubrec.message_id};

		(void)mqtt_publish_qos2_release(c, &rel);
		break;
	}
	case MQTT_EVT_PUBREL: {
		const struct mqtt_pubcomp_param comp = {.message_id = evt->param.pubrel.message_id};

		(void)mqtt_publish_qos2_complete(c, &comp);
		break;
	}
	case MQTT_EVT_PUBACK:
	case MQTT_EVT_PUBCOMP:
	case MQTT_EVT_SUBACK:
		LOG_DBG("mqtt: ack type %d result %d", evt->type, evt->result);
		break;
	default:
		break;
	}
}


static void client_setup(void)
{
	struct sockaddr_in *b4 = (struct sockaddr_in *)&broker;

	b4->sin_family = AF_INET;
	b4->sin_port = htons(CONFIG_TFMPROV_MQTT_BROKER_PORT);
	zsock_inet_pton(AF_INET, CONFIG_TFMPROV_MQTT_BROKER_ADDR, &b4->sin_addr);

	mqtt_client_init(&client);
	client.broker = &broker;
	client.evt_cb = mqtt_evt_handler;
	client.client_id.utf8 = (const uint8_t *)CONFIG_TFMPROV_DEVICE_ID;
	client.client_id.size = strlen(CONFIG_TFMPROV_DEVICE_ID);
	client.protocol_version = MQTT_VERSION_3_1_1;
	/* A persistent session: the broker keeps the cmd subscription and the
	 * QoS 1 commands sent while the device is offline. */
	client.clean_session = 0;
	client.rx_buf = rx_buf;
	client.rx_buf_size = sizeof(rx_buf);
	client.tx_buf = tx_buf;
	client.tx_buf_size = sizeof(tx_buf);
#if defined(CONFIG_TFMPROV_MQTT_TLS)
	/* mqtt_client_custom_transport_* below. */
	client.transport.type = MQTT_TRANSPORT_CUSTOM;
	client.transport.custom_transport_data = &bio;
#else
	client.transport.type = MQTT_TRANSPORT_NON_SECURE;
#endif
}

/* Serves the connection (input, keep-alive) for `ms` milliseconds. Stops
 * early when a session that was up goes down. */
static int pump(int ms)
{
	const bool was_connected = connected;
	const int64_t end = k_uptime_get() + ms;
	int rc;

	do {
		int64_t left = MAX(end - k_uptime_get(), 0);

		fds[0].fd = sock_fd();
		fds[0].events = ZSOCK_POLLIN;
		rc = input_buffered() ? 1 : zsock_poll(fds, 1, (int)left);
		if (rc < 0) {
			return -errno;
		}
		if (rc > 0 && mqtt_input(&client) != 0) {
			return -EIO;
		}
		rc = mqtt_live(&client);
		if (rc != 0 && rc != -EAGAIN) {
			return rc;
		}
		if (was_connected && !connected) {
			return -ENOTCONN;
		}
	} while (k_uptime_get() < end);
	return 0;
}

/* Publishes a body Rust built on the topic of `kind`, at the topic's QoS. */
static int publish_body(uint8_t kind, const uint8_t *body, size_t len)
{
	struct mqtt_publish_param p = {0};
	int32_t qos;
	int rc;

	tfmprov_enter();
	qos = tfmprov_mqtt_qos(kind);
	tfmprov_leave();
	if (qos < 0) {
		return -EINVAL;
	}
	p.message.topic.topic.utf8 = (const uint8_t *)topics[kind];
	p.message.topic.topic.size = strlen(topics[kind]);
	p.message.topic.qos = (uint8_t)qos;
	p.message.payload.data = (uint8_t *)body;
	p.message.payload.len = len;
	p.message_id = msg_id();
	rc = mqtt_publish(&client, &p);
	LOG_INF("mqtt: %s %zu bytes qos %d: %d", topics[kind], len, (int)qos, rc);
	return rc;
}

/* Builds the next message of `kind` (data, session, sealed) and publishes it. */
static int publish(uint8_t kind, const uint8_t *payload, size_t len)
{
	size_t body_len = 0;
	int32_t rc;

	tfmprov_enter();
	rc = tfmprov_mqtt_next(kind, payload, len, msg_buf, sizeof(msg_buf), &body_len);
	tfmprov_leave();
	if (rc != TFMPROV_OK) {
		LOG_ERR("mqtt: %s not built: %d (%s)", topics[kind], (int)rc, tfmprov_strerror(rc));
		return -EIO;
	}
	return publish_body(kind, msg_buf, body_len);
}

/* errors and cmd, both at the QoS Rust gives them (1). */
static int subscribe(void)
{
	static const uint8_t kinds[] = {TFMPROV_MQTT_ERRORS, TFMPROV_MQTT_CMD};
	struct mqtt_topic t[ARRAY_SIZE(kinds)];
	struct mqtt_subscription_list list = {.list = t, .list_count = ARRAY_SIZE(t),
					      .message_id = msg_id()};

	tfmprov_enter();
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		int32_t qos = tfmprov_mqtt_qos(kinds[i]);

		t[i].topic.utf8 = (const uint8_t *)topics[kinds[i]];
		t[i].topic.size = strlen(topics[kinds[i]]);
		t[i].qos = qos < 0 ? MQTT_QOS_1_AT_LEAST_ONCE : (uint8_t)qos;
	}
	tfmprov_leave();
	return mqtt_subscribe(&client, &list);
}

/* The signed announcement of the device's key-agreement key, once per
 * connection, so that the server can encrypt commands to it (a device
 * enrolled before remote provisioning joins this way). Not fatal: without a
 * telemetry key there is nothing to sign it with yet. */
static void announce(void)
{
	size_t len = 0;
	int32_t rc;

	tfmprov_enter();
	rc = tfmprov_mqtt_announce(msg_buf, sizeof(msg_buf), &len);
	tfmprov_leave();
	if (rc != TFMPROV_OK) {
		LOG_WRN("mqtt: no KAK announcement: %d (%s)", (int)rc, tfmprov_strerror(rc));
		return;
	}
	(void)publish_body(TFMPROV_MQTT_REPLY, msg_buf, len);
}

/* The uptime as the 8 big-endian bytes tfmprov_mqtt_next expects with a
 * session message (the clock of Rust's session rotation policy). */
static void uptime_be(uint8_t out[8], int64_t now)
{
	sys_put_be64((uint64_t)now, out);
}

static int session(void)
{
	uint8_t reading[32];
	uint8_t now_be[8];
	uint64_t counter = 0;
	size_t reading_len = 0;
	int rc;

	rc = subscribe();
	if (rc == 0) {
		announce();
	}
	while (rc == 0) {
		int64_t now = k_uptime_get();
		int32_t due;

		/* The sample reading, built by Rust: {"n": counter, "t": uptime}. */
		tfmprov_enter();
		rc = tfmprov_mqtt_sample(counter++, (uint64_t)now, reading, sizeof(reading),
					 &reading_len);
		due = tfmprov_mqtt_session_due((uint64_t)now);
		tfmprov_leave();
		if (rc != TFMPROV_OK || due < 0) {
			LOG_ERR("mqtt: %s", tfmprov_strerror(rc != TFMPROV_OK ? rc : due));
			return -EIO;
		}

		rc = publish(TFMPROV_MQTT_DATA, reading, reading_len);
		if (rc == 0 && due == 1) {
			uptime_be(now_be, now);
			rc = publish(TFMPROV_MQTT_SESSION, now_be, sizeof(now_be));
		}
		if (rc == 0) {
			rc = publish(TFMPROV_MQTT_SEALED, reading, reading_len);
		}
		if (rc == 0) {
			rc = pump(CONFIG_TFMPROV_MQTT_INTERVAL_S * MSEC_PER_SEC);
		}
	}
	return rc;
}

static void mqtt_thread(void *a, void *b, void *c)
{
	ARG_UNUSED(a);
	ARG_UNUSED(b);
	ARG_UNUSED(c);

	(void)k_sem_take(&tfmprov_ready, K_FOREVER);

	tfmprov_enter();
	for (uint8_t kind = TFMPROV_MQTT_DATA; kind <= TFMPROV_MQTT_REPLY; kind++) {
		int32_t rc = tfmprov_mqtt_topic(kind, topics[kind], sizeof(topics[kind]));

		if (rc != TFMPROV_OK) {
			tfmprov_leave();
			LOG_ERR("mqtt: topic %u: %d (%s)", kind, (int)rc, tfmprov_strerror(rc));
			return;
		}
	}
	int32_t key_rc = tfmprov_mqtt_set_key(CONFIG_TFMPROV_MQTT_KEY_ID);

	tfmprov_leave();
	if (key_rc != TFMPROV_OK) {
		LOG_ERR("mqtt: telemetry key 0x%08x: %d (%s)", CONFIG_TFMPROV_MQTT_KEY_ID, (int)key_rc,
			tfmprov_strerror(key_rc));
		return;
	}

	for (;;) {
		int rc;

		client_setup();
		connected = false;
		rc = mqtt_connect(&client);
		/* Wait up to 5 s for the CONNACK. */
		for (int i = 0; rc == 0 && i < 50 && !connected; i++) {
			rc = pump(100);
		}
		if (connected) {
			rc = session();
			LOG_WRN("mqtt: session ended: %d", rc);
		} else {
			LOG_WRN("mqtt: connect to %s:%d failed: %d", CONFIG_TFMPROV_MQTT_BROKER_ADDR,
				CONFIG_TFMPROV_MQTT_BROKER_PORT, rc);
		}
		(void)mqtt_abort(&client);
		k_sleep(K_SECONDS(10));
	}
}

#if defined(CONFIG_TFMPROV_MQTT_TLS)
/*
 * The MQTT library's custom transport (CONFIG_MQTT_LIB_CUSTOM_TRANSPORT;
 * prototypes in subsys/net/lib/mqtt/mqtt_transport.h of v4.3.0): a TCP
 * socket with src/mqtt_tls.c's session on it. Return values as the TCP
 * transport's: write 0 when everything was sent, read the byte count, 0
 * when the broker closed, -EAGAIN when a non-blocking read has nothing.
 */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	const struct tls_bio *b = ctx;
	ssize_t n = zsock_send(b->sock, buf, len, 0);

	if (n >= 0) {
		return (int)n;
	}
	return errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_WRITE : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	const struct tls_bio *b = ctx;
	ssize_t n = zsock_recv(b->sock, buf, len, b->recv_flags);

	if (n > 0) {
		return (int)n;
	}
	if (n == 0) {
		return MBEDTLS_ERR_NET_CONN_RESET;
	}
	return errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_READ : MBEDTLS_ERR_NET_RECV_FAILED;
}

int mqtt_client_custom_transport_connect(struct mqtt_client *c)
{
	const struct sockaddr *peer = c->broker;
	char why[96];
	int rc;

	bio.sock = zsock_socket(peer->sa_family, SOCK_STREAM, IPPROTO_TCP);
	if (bio.sock < 0) {
		return -errno;
	}
	if (zsock_connect(bio.sock, peer, sizeof(struct sockaddr_in)) < 0) {
		rc = -errno;
		goto close;
	}
	bio.recv_flags = 0;
	/* cmd_buf lends its room to read the certificates: commands only
	 * arrive once the session is up. */
	rc = tfmprov_tls_setup(&tls, CONFIG_TFMPROV_MQTT_TLS_HOSTNAME, &bio, bio_send, bio_recv,
			       cmd_buf, sizeof(cmd_buf));
	if (rc != 0) {
		tfmprov_tls_describe(&tls, rc, why, sizeof(why));
		LOG_ERR("mqtt: TLS set-up: %s", why);
		rc = -EINVAL;
		goto close;
	}
	do {
		rc = mbedtls_ssl_handshake(&tls.ssl);
	} while (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE);
	if (rc != 0) {
		tfmprov_tls_describe(&tls, rc, why, sizeof(why));
		LOG_ERR("mqtt: TLS with %s refused: %s", CONFIG_TFMPROV_MQTT_TLS_HOSTNAME, why);
		tfmprov_tls_free(&tls);
		rc = -ECONNREFUSED;
		goto close;
	}
	LOG_INF("mqtt: TLS up (%s), broker key pinned, device key 0x%08x in PSA",
		mbedtls_ssl_get_ciphersuite(&tls.ssl), (unsigned int)tls.key_id);
	return 0;
close:
	(void)zsock_close(bio.sock);
	bio.sock = -1;
	return rc;
}

int mqtt_client_custom_transport_write(struct mqtt_client *c, const uint8_t *data, uint32_t len)
{
	uint32_t off = 0;

	ARG_UNUSED(c);
	while (off < len) {
		int n = mbedtls_ssl_write(&tls.ssl, data + off, len - off);

		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE) {
			continue;
		}
		if (n < 0) {
			LOG_WRN("mqtt: TLS write: -0x%04x", (unsigned int)-n);
			return -EIO;
		}
		off += (uint32_t)n;
	}
	return 0;
}

int mqtt_client_custom_transport_write_msg(struct mqtt_client *c, const struct msghdr *message)
{
	for (size_t i = 0; i < message->msg_iovlen; i++) {
		int rc = mqtt_client_custom_transport_write(c, message->msg_iov[i].iov_base,
							    message->msg_iov[i].iov_len);

		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

int mqtt_client_custom_transport_read(struct mqtt_client *c, uint8_t *data, uint32_t len,
				      bool shall_block)
{
	int n;

	ARG_UNUSED(c);
	bio.recv_flags = shall_block ? 0 : ZSOCK_MSG_DONTWAIT;
	n = mbedtls_ssl_read(&tls.ssl, data, len);
	if (n >= 0) {
		return n;
	}
	if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE) {
		return -EAGAIN;
	}
	if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || n == MBEDTLS_ERR_NET_CONN_RESET) {
		return 0;
	}
	LOG_WRN("mqtt: TLS read: -0x%04x", (unsigned int)-n);
	return -EIO;
}

int mqtt_client_custom_transport_disconnect(struct mqtt_client *c)
{
	int rc;

	ARG_UNUSED(c);
	(void)mbedtls_ssl_close_notify(&tls.ssl);
	tfmprov_tls_free(&tls);
	rc = zsock_close(bio.sock);
	bio.sock = -1;
	return rc < 0 ? -errno : 0;
}
#endif /* CONFIG_TFMPROV_MQTT_TLS */

K_THREAD_DEFINE(tfmprov_mqtt, CONFIG_TFMPROV_MQTT_STACK_SIZE, mqtt_thread, NULL, NULL, NULL,
		K_LOWEST_APPLICATION_THREAD_PRIO, 0, 0);
