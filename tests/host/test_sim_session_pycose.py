"""pycose (PyPI; nobody on this team wrote it) against what a simulated device
really publishes on a real mosquitto broker:

- a `data` Sign1 verifies with the device key;
- the `session` Sign1 verifies, and its COSE_Encrypt decrypts with the cloud
  private key (ECDH-ES + HKDF-256) to the session key;
- the `sealed` Encrypt0 decrypts with that session key to the telemetry map;
- after a restart of the simulator its session id and seq are higher.

The device gets its key (known value, id 3) and the cloud certificate
(peer id 0x3F000001) with the `tfmprov` CLI over SMP/UDP, as a factory would.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pycose.algorithms import A128GCM, EcdhEsHKDF256, Es256
from pycose.headers import KID, Algorithm
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.keys.symmetric import SymmetricKey
from pycose.messages import CoseMessage, Enc0Message, EncMessage, Sign1Message

ROOT = Path(__file__).resolve().parents[2]
SEQ = -65537
DEVICE_ID = "py-dev-1"
DEVICE_PRIV = bytes(range(1, 33))  # a valid P-256 scalar, known to the test


def tfmprov_bin() -> str:
    b = os.environ.get("TFMPROV_BIN", str(ROOT / "target" / "debug" / "tfmprov"))
    if not Path(b).exists():
        pytest.fail(f"tfmprov binary not found at {b}: run `cargo build -p tfmprov` (or set TFMPROV_BIN)")
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mosquitto(tmp_path):
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed (scripts/setup installs it)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("mosquitto did not start")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


class Sim:
    """A `tfmprov device-sim` process."""

    def __init__(self, state: Path, extra: list[str]):
        self.proc = subprocess.Popen(
            [tfmprov_bin(), "device-sim", "--state", str(state), "--device-id", DEVICE_ID,
             "--smp-udp", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "TFMPROV_LOG": "warn"},
        )
        line = self.proc.stdout.readline()
        assert line.startswith("device-sim ready"), line
        self.udp = next(w for w in line.split() if w.startswith("udp=")).split("=", 1)[1]

    def cli(self, *args: str) -> str:
        out = subprocess.run([tfmprov_bin(), *args, "--udp", self.udp], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Collector:
    """Subscribes to the device's topics and keeps every message."""

    def __init__(self, port: int):
        self.msgs: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pytest-collector")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"prov/{DEVICE_ID}/#", qos=2)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10), "subscription"

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.msgs.append((msg.topic.rsplit("/", 1)[1], bytes(msg.payload)))

    def of(self, kind: str) -> list[bytes]:
        with self.lock:
            return [p for k, p in self.msgs if k == kind]

    def wait_for(self, kind: str, n: int, timeout: float = 20) -> list[bytes]:
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.of(kind)) < n:
            time.sleep(0.05)
        got = self.of(kind)
        assert len(got) >= n, f"only {len(got)} {kind} messages"
        return got

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def cloud_identity(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    path = tmp_path / "cloud.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    nums = key.private_numbers()
    cose_key = EC2Key(crv=P256, d=nums.private_value.to_bytes(32, "big"),
                      x=nums.public_numbers.x.to_bytes(32, "big"), y=nums.public_numbers.y.to_bytes(32, "big"))
    return path, cose_key


def provision(sim: Sim, cloud_pem: Path) -> None:
    """Key 3 (known value) and the cloud certificate, as a factory would. The
    device checks the cloud certificate's chain to its CA root: this
    self-signed one is its own root."""
    sim.cli("keys", "generate", "--id", "3", "--private-hex", DEVICE_PRIV.hex())
    sim.cli("certs", "store", "--id", "0x3F000000", "--file", str(cloud_pem))
    sim.cli("certs", "store", "--id", "0x3F000001", "--file", str(cloud_pem))


def device_key() -> EC2Key:
    pub = ec.derive_private_key(int.from_bytes(DEVICE_PRIV, "big"), ec.SECP256R1()).public_key().public_numbers()
    return EC2Key(crv=P256, x=pub.x.to_bytes(32, "big"), y=pub.y.to_bytes(32, "big"))


def open_session(raw: bytes, cloud: EC2Key) -> tuple[int, bytes]:
    outer = CoseMessage.decode(raw)
    assert isinstance(outer, Sign1Message)
    outer.key = device_key()
    assert outer.verify_signature(), "session Sign1 must verify with the device key"
    assert outer.phdr[Algorithm] == Es256
    enc = CoseMessage.decode(outer.payload)
    assert isinstance(enc, EncMessage) and enc.phdr[Algorithm] == A128GCM
    [rcpt] = enc.recipients
    assert rcpt.phdr[Algorithm] == EcdhEsHKDF256
    rcpt.key = cloud
    return int.from_bytes(enc.phdr[KID], "big"), enc.decrypt(rcpt)


def open_sealed(raw: bytes, key: bytes) -> tuple[int, int, dict]:
    msg = CoseMessage.decode(raw)
    assert isinstance(msg, Enc0Message)
    msg.key = SymmetricKey(k=key)
    return int.from_bytes(msg.phdr[KID], "big"), msg.phdr[SEQ], cbor2.loads(msg.decrypt())


def test_pycose_opens_what_the_simulator_publishes(tmp_path, mosquitto):
    state = tmp_path / "state"
    cloud_pem, cloud = cloud_identity(tmp_path)
    sim = Sim(state, [])
    provision(sim, cloud_pem)
    sim.stop()

    telemetry = ["--mqtt", f"mqtt://127.0.0.1:{mosquitto}", "--interval", "100", "--count", "3"]
    col = Collector(mosquitto)
    try:
        sim = Sim(state, telemetry)
        data = col.wait_for("data", 3)
        [session] = col.wait_for("session", 1)
        sealed = col.wait_for("sealed", 3)
        sim.stop()

        seqs = []
        for raw in data:
            m = CoseMessage.decode(raw)
            m.key = device_key()
            assert m.verify_signature()
            seqs.append(m.phdr[SEQ])
            assert set(cbor2.loads(m.payload)) == {"n", "t"}
        assert seqs == sorted(seqs) and len(set(seqs)) == 3

        sid, session_key = open_session(session, cloud)
        assert len(session_key) == 16
        for raw in sealed:
            s, seq, payload = open_sealed(raw, session_key)
            assert s == sid
            assert set(payload) == {"n", "t"}
            seqs.append(seq)
        # A wrong session key does not open a sealed message.
        with pytest.raises(Exception):
            open_sealed(sealed[0], bytes(16))

        # After a restart: a newer session id and higher sequence numbers.
        sim = Sim(state, telemetry)
        new_sessions = col.wait_for("session", 2)
        col.wait_for("sealed", 4)
        sim.stop()
        sid2, key2 = open_session(new_sessions[1], cloud)
        assert sid2 > sid and key2 != session_key
        s, seq, _ = open_sealed(col.of("sealed")[3], key2)
        assert s == sid2 and seq > max(seqs)
    finally:
        col.close()
