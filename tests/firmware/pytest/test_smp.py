# SPDX-License-Identifier: Apache-2.0
"""SMP groups 64/65/66 of the firmware, driven over its serial SMP port.

Runs under twister on mps2/an521/cpu0/ns (QEMU) with CONFIG_TFMPROV_FACTORY_AT_BOOT:
the device has the seed's three keys when the tests start. smpclient (PyPI) is the
client; requests and responses follow DESIGN.md's table. Checks: the known-value
key's public key (derived here from the public sample value), status, the
auto-assigned random key, refusals (exists, invalid id, not found, malformed CBOR),
a CSR that verifies and carries key 3's public key, certificate store (match and
mismatch) and get, destroy.
"""

from __future__ import annotations

import datetime
from enum import IntEnum, unique

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smp import error as smperror
from smp import message as smpmsg
from smpclient import SMPClient
from smpclient.generics import error_v1, error_v2, success
from smpclient.requests.os_management import EchoWrite
from smpclient.transport.serial import SMPSerialTransport

pytestmark = pytest.mark.anyio

KEYS, CSR, CERTS = 64, 65, 66
CERT_OFFSET = 0x1000_0000
AUTO_MIN = 0x0001_0000

# rust/device/src/factory.rs: SAMPLE_VALUE_2 / _3 = SHA-256("tfmprov sample key 0x0000000N").
SAMPLE_VALUE_2 = bytes.fromhex("937662efe42541b6187e4da9b00386b4d756e337a005d3f81f0d99371d6beda0")
SAMPLE_VALUE_3 = bytes.fromhex("9339f74ed5b0ca3ac83c246ade017b96e25092902d68b046f655d8cf7d641e00")


def public_of(private: bytes) -> bytes:
    key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@unique
class Rc(IntEnum):
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


def _group(group_id: int):
    class ErrV1(smperror.ErrorV1):
        _GROUP_ID = group_id

    class ErrV2(smperror.ErrorV2[Rc]):
        _GROUP_ID = group_id

    return ErrV1, ErrV2


def _messages(group_id: int, command_id: int, write: bool, req_fields: dict, rsp_fields: dict):
    """A smpclient request class (with its response and error types)."""
    base_req = smpmsg.WriteRequest if write else smpmsg.ReadRequest
    base_rsp = smpmsg.WriteResponse if write else smpmsg.ReadResponse
    err_v1, err_v2 = _group(group_id)
    rsp = type(
        f"Rsp{group_id}_{command_id}",
        (base_rsp,),
        {"_GROUP_ID": group_id, "_COMMAND_ID": command_id, "__annotations__": rsp_fields},
    )
    ns = {"_GROUP_ID": group_id, "_COMMAND_ID": command_id, "__annotations__": {}}
    for name, (typ, default) in req_fields.items():
        ns["__annotations__"][name] = typ
        if default is not ...:
            ns[name] = default
    req = type(f"Req{group_id}_{command_id}", (base_req,), ns)
    return type(
        f"Request{group_id}_{command_id}",
        (req,),
        {"_Response": rsp, "_ErrorV1": err_v1, "_ErrorV2": err_v2},
    )


KeyGenerate = _messages(
    KEYS, 0, True,
    {"id": (int | None, None), "priv": (bytes | None, None), "replace": (bool | None, None)},
    {"id": int, "pub": bytes},
)
KeyPublic = _messages(KEYS, 1, False, {"id": (int, ...)}, {"id": int, "pub": bytes})
KeyStatus = _messages(KEYS, 2, False, {"id": (int, ...)}, {"id": int, "present": bool})
KeyDestroy = _messages(KEYS, 3, True, {"id": (int, ...)}, {})
CsrCreate = _messages(CSR, 0, True, {"id": (int, ...), "cn": (str, ...), "o": (str | None, None)}, {"csr": bytes})
CertStore = _messages(CERTS, 0, True, {"id": (int, ...), "cert": (bytes, ...)}, {})
CertGet = _messages(CERTS, 1, False, {"id": (int, ...)}, {"cert": bytes})
# Wrong type for "id": the device must answer MGMT_ERR_EINVAL (3), not crash.
KeyPublicBadType = _messages(KEYS, 1, False, {"id": (str, ...)}, {"id": int, "pub": bytes})


@pytest.fixture(scope="module")
async def client(smp_port: str):
    async with SMPClient(SMPSerialTransport(), smp_port) as c:
        yield c


def group_rc(response) -> int:
    assert error_v2(response), f"expected a group error, got {response}"
    return response.err.rc


async def test_echo(client):
    r = await client.request(EchoWrite(d="tfmprov"))
    assert success(r), r
    assert r.r == "tfmprov"


async def test_known_value_key_has_the_expected_public_key(client):
    r = await client.request(KeyPublic(id=2))
    assert success(r), r
    assert r.id == 2
    assert r.pub == public_of(SAMPLE_VALUE_2)
    r = await client.request(KeyPublic(id=3))
    assert success(r), r
    assert r.pub == public_of(SAMPLE_VALUE_3)


async def test_status(client):
    r = await client.request(KeyStatus(id=2))
    assert success(r) and r.present is True, r
    r = await client.request(KeyStatus(id=0x0FFF_FFF0))
    assert success(r) and r.present is False, r


async def test_generate_random_auto_id_then_destroy(client):
    r = await client.request(KeyGenerate())
    assert success(r), r
    assert AUTO_MIN <= r.id <= 0x0FFF_FFFF
    assert len(r.pub) == 65 and r.pub[0] == 0x04
    again = await client.request(KeyPublic(id=r.id))
    assert success(again) and again.pub == r.pub
    gone = await client.request(KeyDestroy(id=r.id))
    assert success(gone), gone
    status = await client.request(KeyStatus(id=r.id))
    assert success(status) and status.present is False


async def test_refusals(client):
    assert group_rc(await client.request(KeyGenerate(id=2, priv=SAMPLE_VALUE_2))) == Rc.EXISTS
    # a certificate slot ID is not a key ID
    assert group_rc(await client.request(KeyPublic(id=CERT_OFFSET + 2))) == Rc.INVALID_ARGUMENT
    assert group_rc(await client.request(KeyPublic(id=0x0FFF_FFF0))) == Rc.NOT_FOUND
    assert group_rc(await client.request(CertGet(id=0x0FFF_FFF0))) == Rc.NOT_FOUND
    bad = await client.request(KeyPublicBadType(id="two"))
    assert error_v1(bad) and bad.rc == 3, bad  # MGMT_ERR_EINVAL


async def test_csr_is_signed_by_key_3(client):
    r = await client.request(CsrCreate(id=3, cn="tfmprov-dev-0001", o="tfmprov"))
    assert success(r), r
    csr = x509.load_der_x509_csr(r.csr)
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tfmprov-dev-0001"
    pub = csr.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert pub == public_of(SAMPLE_VALUE_3)


def _cert_for(public: bytes) -> bytes:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    subject_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfmprov-dev-0001")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(subject_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


async def test_certificate_store_get_and_mismatch(client):
    good = _cert_for(public_of(SAMPLE_VALUE_3))
    r = await client.request(CertStore(id=3, cert=good))
    assert success(r), r
    r = await client.request(CertGet(id=3))
    assert success(r) and r.cert == good, r
    other = _cert_for(public_of(SAMPLE_VALUE_2))
    assert group_rc(await client.request(CertStore(id=3, cert=other))) == Rc.MISMATCH
