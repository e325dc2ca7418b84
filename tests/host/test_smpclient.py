"""SMP interop: smpclient (PyPI; nobody on this team wrote it) against `tfmprov device-sim`.

One simulated device per module, started as

    tfmprov device-sim --state DIR/state --device-id dev-1 \
        --smp-udp 127.0.0.1:PORT --smp-serial DIR/pty

Over UDP (SMPUDPTransport) and over the serial PTY (SMPSerialTransport, Zephyr's
console framing) the tests send an OS echo, a group-64 generate and a group-64
public request, and check the response shapes of DESIGN.md on the raw CBOR
(id: uint, pub: byte string of 65 bytes starting 0x04, the same key from generate
and public), plus the SMP v2 error form for an absent key
(`{"err": {"group": 64, "rc": 2}}`), the SMP v1 form (`{"rc": 5}`, ENOENT), and the
audit log (command 5) recording the generate with its result.

Nothing is built here: the binary is expected at target/debug/tfmprov
(TFMPROV_BIN overrides).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import time
from enum import IntEnum, unique
from pathlib import Path
from types import SimpleNamespace

import cbor2
import pytest
from smp import error as smperror
from smp import header as smphdr
from smp import message as smpmsg
from smpclient import SMPClient
from smpclient.generics import error_v1, error_v2, success
from smpclient.requests.os_management import EchoWrite
from smpclient.transport.serial import SMPSerialTransport
from smpclient.transport.udp import SMPUDPTransport

ROOT = Path(__file__).resolve().parents[2]
KEYS_GROUP = 64
ABSENT_ID = 0x0FFFFFF0  # a valid device-key id that the tests never create


# --- group 64 (keys) messages, as DESIGN.md's table, for smpclient -------------------------


@unique
class KeysRc(IntEnum):
    """Group return codes of DESIGN.md."""

    OK = 0
    UNKNOWN = 1
    NOT_FOUND = 2
    EXISTS = 3
    INVALID_ARGUMENT = 4
    STORAGE_FULL = 5
    CRYPTO_FAILURE = 6
    MISMATCH = 7
    TOO_LARGE = 8
    LOCKED = 9


class KeysErrorV1(smperror.ErrorV1):
    _GROUP_ID = KEYS_GROUP


class KeysErrorV2(smperror.ErrorV2[KeysRc]):
    _GROUP_ID = KEYS_GROUP


class KeyGenerateWriteRequest(smpmsg.WriteRequest):
    _GROUP_ID = KEYS_GROUP
    _COMMAND_ID = 0

    id: int | None = None
    priv: bytes | None = None
    replace: bool | None = None


class KeyGenerateWriteResponse(smpmsg.WriteResponse):
    _GROUP_ID = KEYS_GROUP
    _COMMAND_ID = 0

    id: int
    pub: bytes


class KeyPublicReadRequest(smpmsg.ReadRequest):
    _GROUP_ID = KEYS_GROUP
    _COMMAND_ID = 1

    id: int


class KeyPublicReadResponse(smpmsg.ReadResponse):
    _GROUP_ID = KEYS_GROUP
    _COMMAND_ID = 1

    id: int
    pub: bytes


class KeyAuditReadRequest(smpmsg.ReadRequest):
    _GROUP_ID = KEYS_GROUP
    _COMMAND_ID = 5


class KeyAuditReadResponse(smpmsg.ReadResponse):
    _GROUP_ID = KEYS_GROUP
    _COMMAND_ID = 5

    log: bytes


class _KeysGroup:
    _ErrorV1 = KeysErrorV1
    _ErrorV2 = KeysErrorV2


class KeyGenerate(KeyGenerateWriteRequest, _KeysGroup):
    _Response = KeyGenerateWriteResponse


class KeyPublic(KeyPublicReadRequest, _KeysGroup):
    _Response = KeyPublicReadResponse


class KeyAudit(KeyAuditReadRequest, _KeysGroup):
    _Response = KeyAuditReadResponse


# --- the simulated device ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tfmprov_bin() -> Path:
    """The tfmprov binary; this suite builds nothing."""
    path = Path(os.environ.get("TFMPROV_BIN") or ROOT / "target" / "debug" / "tfmprov")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"tfmprov binary not found at {path}: build it first "
            "(`cargo build -p tfmprov`) or point TFMPROV_BIN at it",
            pytrace=False,
        )
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_echo(port: int, text: str, timeout: float = 0.5) -> bytes | None:
    """One SMP v2 echo over UDP without smpclient; the response body, or None on timeout."""
    body = cbor2.dumps({"d": text})
    packet = struct.pack("!BBHHBB", 2 | (1 << 3), 0, len(body), 0, 0x42, 0) + body
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, ("127.0.0.1", port))
        try:
            rsp, _ = s.recvfrom(65535)
        except (socket.timeout, ConnectionRefusedError):
            return None
    return rsp[8:]


@pytest.fixture(scope="module")
def device(tfmprov_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("device-sim")
    pty = work / "pty"
    port = free_udp_port()
    log_path = work / "device-sim.log"
    cmd = [
        str(tfmprov_bin), "device-sim",
        "--state", str(work / "state"),
        "--device-id", "dev-1",
        "--smp-udp", f"127.0.0.1:{port}",
        "--smp-serial", str(pty),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"device-sim exited with {proc.returncode}:\n{log_path.read_text()}",
                            pytrace=False)
            if pty.is_symlink() and raw_echo(port, "ready?") is not None:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"device-sim not ready after 60 s:\n{log_path.read_text()}",
                            pytrace=False)
            time.sleep(0.1)
        yield SimpleNamespace(port=port, pty=pty, log=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class UDPTransportOnPort(SMPUDPTransport):
    """SMPClient.connect() passes no port; this transport uses the simulator's."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port

    async def connect(self, address: str, timeout_s: float, port: int | None = None) -> None:
        await super().connect(address, timeout_s, port=self._port if port is None else port)


# --- the checks ----------------------------------------------------------------------------


def body_of(message) -> dict:
    """The raw CBOR map of a response, to check wire types (bstr vs tstr, uint)."""
    body = cbor2.loads(message.BYTES[smphdr.Header.SIZE:])
    assert isinstance(body, dict)
    return body


def assert_key_shape(body: dict) -> None:
    assert set(body) == {"id", "pub"}, body
    assert isinstance(body["id"], int) and 0 <= body["id"] <= 0x0FFFFFFF
    assert isinstance(body["pub"], bytes), "pub must be a CBOR byte string"
    assert len(body["pub"]) == 65
    assert body["pub"][0] == 0x04


async def scenario(client: SMPClient, gen_id: int | None) -> int:
    # OS echo
    echo = await client.request(EchoWrite(d="hello from smpclient"))
    assert success(echo), echo
    assert echo.r == "hello from smpclient"

    # generate (random key), explicit or auto-assigned id
    req = KeyGenerate() if gen_id is None else KeyGenerate(id=gen_id)
    gen = await client.request(req)
    assert success(gen), f"generate failed: {gen}"
    assert gen.header.op == smphdr.OP.WRITE_RSP
    assert gen.header.group_id == KEYS_GROUP and gen.header.command_id == 0
    assert_key_shape(body_of(gen))
    if gen_id is None:
        assert gen.id >= 0x00010000, "auto-assigned ids start at 0x00010000"
    else:
        assert gen.id == gen_id

    # public of the same key: same point
    pub = await client.request(KeyPublic(id=gen.id))
    assert success(pub), f"public failed: {pub}"
    assert pub.header.op == smphdr.OP.READ_RSP
    assert_key_shape(body_of(pub))
    assert pub.id == gen.id
    assert pub.pub == gen.pub

    # public of an absent id: SMP v2 group error
    missing = await client.request(KeyPublic(id=ABSENT_ID))
    assert error_v2(missing), f"expected an SMP v2 error, got {missing}"
    assert body_of(missing) == {"err": {"group": 64, "rc": 2}}
    assert missing.err.rc == KeysRc.NOT_FOUND

    # the same from an SMP v1 client: {"rc": MGMT_ERR_ENOENT}
    missing_v1 = await client.request(KeyPublic(id=ABSENT_ID, version=smphdr.Version.V1))
    assert error_v1(missing_v1), f"expected an SMP v1 error, got {missing_v1}"
    assert missing_v1.header.version == smphdr.Version.V1
    assert body_of(missing_v1) == {"rc": 5}

    # the audit log (group 64, command 5): a byte string holding a CBOR map,
    # whose newest entry is this generate with its result; the reads above
    # are not key operations and are not in it
    audit = await client.request(KeyAudit())
    assert success(audit), f"audit failed: {audit}"
    body = body_of(audit)
    assert set(body) == {"log"} and isinstance(body["log"], bytes), body
    log = cbor2.loads(body["log"])
    assert set(log) == {"secure", "oldest", "next", "missed", "entries"}, log
    assert log["secure"] is True, "device-sim runs the simulated secure partition by default"
    assert log["missed"] == 0
    assert 1 <= log["oldest"] < log["next"] and log["entries"], log
    assert [e[0] for e in log["entries"]] == list(range(log["oldest"], log["next"]))
    assert log["entries"][-1] == [log["next"] - 1, 1, gen.id, 0], "op 1 generate, rc 0"
    return gen.id


@pytest.mark.timeout(120)
def test_udp(device):
    async def main():
        client = SMPClient(UDPTransportOnPort(device.port), "127.0.0.1", timeout_s=10)
        await client.connect()
        try:
            return await scenario(client, gen_id=0x10001)
        finally:
            await client.disconnect()

    assert asyncio.run(main()) == 0x10001


@pytest.mark.timeout(120)
def test_serial(device):
    async def main():
        client = SMPClient(SMPSerialTransport(), str(device.pty), timeout_s=10)
        await client.connect()
        try:
            key_id = await scenario(client, gen_id=None)
            # a request and a response that span several 127-byte console frames
            long_text = "0123456789abcdef" * 40
            echo = await client.request(EchoWrite(d=long_text))
            assert success(echo), echo
            assert echo.r == long_text
            return key_id
        finally:
            await client.disconnect()

    key_id = asyncio.run(main())
    assert 0x00010000 <= key_id <= 0x0FFFFFFF
