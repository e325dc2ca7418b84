"""Remote provisioning (docs/remote.md) with an implementation nobody here
wrote: pycose builds a command (Sign1 by the cloud key over a COSE_Encrypt to
the device's key-agreement key, external AAD = the binding), paho publishes
it on a real mosquitto, the simulated device executes it, and pycose opens
its reply (Sign1 by the device key over a COSE_Encrypt to the cloud key).

The device gets its key 3 (known value) and the cloud certificate over
SMP/UDP with the `tfmprov` CLI and the test reads its key-agreement key the
same way (`tfmprov keys kak`), as a factory would.
"""

from __future__ import annotations

import os
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
from pycose.algorithms import A128GCM, EcdhEsHKDF256, Es256
from pycose.headers import IV, KID, Algorithm, EphemeralKey, StaticKey
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.messages import CoseMessage, EncMessage, Sign1Message
from pycose.messages.recipient import DirectKeyAgreement

from test_sim_session_pycose import DEVICE_ID, Sim, cloud_identity, device_key, mosquitto, provision  # noqa: F401
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def kid_of(key: EC2Key) -> bytes:
    """First 8 bytes of SHA-256 over the SubjectPublicKeyInfo DER (DESIGN.md)."""
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(key.x, "big"), int.from_bytes(key.y, "big"), ec.SECP256R1()).public_key()
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(spki)
    return h.finalize()[:8]


def binding(direction: str, device_id: str) -> bytes:
    return f"tfmprov/{direction}/{device_id}".encode()


def build_command(cloud: EC2Key, kak: EC2Key, device_id: str, body: dict) -> bytes:
    ephemeral = EC2Key.generate_key(crv=P256)
    rcpt = DirectKeyAgreement(
        phdr={Algorithm: EcdhEsHKDF256},
        uhdr={KID: kid_of(kak), EphemeralKey: EC2Key(crv=P256, x=ephemeral.x, y=ephemeral.y)},
    )
    rcpt.key = ephemeral
    rcpt.local_attrs = {StaticKey: kak}
    enc = EncMessage(phdr={Algorithm: A128GCM}, uhdr={IV: os.urandom(12)}, payload=cbor2.dumps(body), recipients=[rcpt])
    enc.external_aad = binding("cmd", device_id)
    outer = Sign1Message(phdr={Algorithm: Es256, KID: kid_of(cloud)}, payload=enc.encode())
    outer.external_aad = binding("cmd", device_id)
    outer.key = cloud
    return outer.encode()


def open_reply(raw: bytes, cloud: EC2Key, signer: EC2Key | None) -> dict:
    msg = CoseMessage.decode(raw)
    if signer is None:
        assert isinstance(msg, EncMessage), "expected an unsigned reply"
        enc = msg
    else:
        assert isinstance(msg, Sign1Message)
        msg.external_aad = binding("reply", DEVICE_ID)
        msg.key = signer
        assert msg.verify_signature(), "the reply is signed by the device key"
        enc = CoseMessage.decode(msg.payload)
    enc.external_aad = binding("reply", DEVICE_ID)
    [rcpt] = enc.recipients
    assert rcpt.uhdr[KID] == kid_of(cloud)
    rcpt.key = cloud
    return cbor2.loads(enc.decrypt(rcpt))


def is_kak_announcement(raw: bytes) -> bool:
    """The device's signed key-agreement-key announcement (a Sign1 with a
    `seq` in its protected header) rather than a reply (docs/remote.md)."""
    msg = CoseMessage.decode(raw)
    return isinstance(msg, Sign1Message) and -65537 in msg.phdr


class Replies:
    """paho: publishes commands, collects the device's replies (and, apart,
    its key-agreement-key announcements)."""

    def __init__(self, port: int):
        self.got: list[bytes] = []
        self.announcements: list[bytes] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pytest-remote")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"prov/{DEVICE_ID}/reply", qos=1)
        self.c.on_subscribe = lambda c, u, mid, rc, p: ready.set()
        self.c.on_message = lambda c, u, m: self._add(bytes(m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10), "subscription"

    def _add(self, p: bytes):
        with self.lock:
            (self.announcements if is_kak_announcement(p) else self.got).append(p)

    def send(self, payload: bytes) -> bytes:
        with self.lock:
            n = len(self.got)
        self.c.publish(f"prov/{DEVICE_ID}/cmd", payload, qos=1).wait_for_publish(10)
        deadline = time.time() + 20
        while time.time() < deadline:
            with self.lock:
                if len(self.got) > n:
                    return self.got[n]
            time.sleep(0.05)
        raise AssertionError("no reply within 20 s")

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_simulator_runs_a_pycose_command_and_pycose_opens_the_reply(tmp_path, mosquitto):
    state = tmp_path / "state"
    cloud_pem, cloud = cloud_identity(tmp_path)
    sim = Sim(state, [])
    provision(sim, cloud_pem)
    kak_hex = sim.cli("keys", "kak").split()[-1]
    kak_point = bytes.fromhex(kak_hex)
    assert len(kak_point) == 65 and kak_point[0] == 4
    kak = EC2Key(crv=P256, x=kak_point[1:33], y=kak_point[33:])
    sim.stop()

    replies = Replies(mosquitto)
    sim = Sim(state, ["--mqtt", f"mqtt://127.0.0.1:{mosquitto}", "--interval", "200"])
    try:
        # At connect the device announces its KAK, signed by key 3: pycose
        # verifies it (external AAD "tfmprov/kak/{id}") and finds the point.
        deadline = time.time() + 20
        while not replies.announcements and time.time() < deadline:
            time.sleep(0.05)
        assert replies.announcements, "no KAK announcement within 20 s"
        a = CoseMessage.decode(replies.announcements[0])
        a.external_aad = f"tfmprov/kak/{DEVICE_ID}".encode()
        a.key = device_key()
        assert a.verify_signature() and a.payload == kak_point
        a.external_aad = b"tfmprov/kak/another-device"
        assert not a.verify_signature(), "bound to the device"

        cid = os.urandom(16)
        command = build_command(cloud, kak, DEVICE_ID, {"cseq": 1, "cid": cid, "op": "status", "args": {"id": 3}})
        raw = replies.send(command)
        assert open_reply(raw, cloud, device_key()) == {"cseq": 1, "cid": cid, "rc": 0, "res": {"id": 3, "present": True}}

        # The same read again (a redelivery): a read keeps no reply, so it is
        # read again, with the same answer (docs/remote.md).
        assert open_reply(replies.send(command), cloud, device_key()) == open_reply(raw, cloud, device_key())

        # The group return code of a failing operation: no key at 9.
        cid2 = os.urandom(16)
        r = open_reply(replies.send(build_command(cloud, kak, DEVICE_ID, {"cseq": 2, "cid": cid2, "op": "public", "args": {"id": 9}})), cloud, device_key())
        assert (r["cseq"], r["cid"], r["rc"]) == (2, cid2, 2)

        # Bound to another device: refused, unsigned, nothing executed.
        other = build_command(cloud, kak, "another-device", {"cseq": 3, "cid": os.urandom(16), "op": "destroy", "args": {"id": 3}})
        assert open_reply(replies.send(other), cloud, None) == {"rc": 11}
        r = open_reply(replies.send(build_command(cloud, kak, DEVICE_ID, {"cseq": 3, "cid": os.urandom(16), "op": "status", "args": {"id": 3}})), cloud, device_key())
        assert r["res"] == {"id": 3, "present": True}, "key 3 survived the refused destroy"

        # Expired (exp an hour ago by the simulator's clock): rc 12, not run,
        # and its cseq not used up.
        cid5 = os.urandom(16)
        late = build_command(cloud, kak, DEVICE_ID, {"cseq": 4, "cid": cid5, "exp": int(time.time()) - 3600, "op": "destroy", "args": {"id": 3}})
        assert open_reply(replies.send(late), cloud, device_key()) == {"cseq": 4, "cid": cid5, "rc": 12}
        r = open_reply(replies.send(build_command(cloud, kak, DEVICE_ID, {"cseq": 4, "cid": os.urandom(16), "exp": int(time.time()) + 600, "op": "status", "args": {"id": 3}})), cloud, device_key())
        assert (r["rc"], r["res"]) == (0, {"id": 3, "present": True}), "key 3 survived the expired destroy"

        # A write redelivered: the stored reply, byte for byte, and not run
        # twice (a second generate at 0x20 would answer rc 3, exists).
        gen = build_command(cloud, kak, DEVICE_ID, {"cseq": 5, "cid": os.urandom(16), "op": "generate", "args": {"id": 0x20}})
        first = replies.send(gen)
        msg = CoseMessage.decode(first)
        assert isinstance(msg, Sign1Message)
        assert replies.send(gen) == first
    finally:
        replies.close()
        sim.stop()
