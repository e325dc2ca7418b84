"""Interop of the COSE profiles (rust/cose, tfmprov-cose) with pycose.

Both directions:
- pycose verifies our data Sign1, verifies our session Sign1, decrypts the
  COSE_Encrypt in it with the cloud private key (ECDH-ES + HKDF-256) and gets
  the session key, then decrypts our Encrypt0 with that key;
- our code (the `cose_vectors` example) verifies a pycose Sign1, opens a
  pycose Encrypt0 and decrypts a pycose-built session message;
- remote provisioning envelopes (docs/remote.md): our code opens a command
  built by pycose (Sign1 by the cloud key over COSE_Encrypt to the device's
  key-agreement key, external AAD = the binding), and pycose opens a reply
  built by our code; a command moved to another device is refused.

The Rust side is run with
`cargo run -q -p tfmprov-cose --example cose_vectors -- ...`.
"""

import json
import os
import subprocess
from pathlib import Path

import cbor2
import pytest
from pycose.algorithms import A128GCM, EcdhEsHKDF256, Es256
from pycose.headers import KID, IV, Algorithm, EphemeralKey, StaticKey
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.keys.symmetric import SymmetricKey
from pycose.messages import CoseMessage, Enc0Message, EncMessage, Sign1Message
from pycose.messages.recipient import DirectKeyAgreement

ROOT = Path(__file__).resolve().parents[2]
SEQ = -65537


def rust(*args, check=True):
    """Run the cose_vectors example; return (exit code, parsed stdout JSON or None, stderr)."""
    proc = subprocess.run(
        ["cargo", "run", "-q", "-p", "tfmprov-cose", "--example", "cose_vectors", "--", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cose_vectors {args[0]} failed ({proc.returncode}): {proc.stderr}")
    out = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    return proc.returncode, out, proc.stderr


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    d = tmp_path_factory.mktemp("cose_vectors")
    rust("gen", d)
    v = json.loads((d / "vectors.json").read_text())
    v["dir"] = d
    return v


def ec2(k, private=False):
    return EC2Key(
        crv=P256,
        x=bytes.fromhex(k["x"]),
        y=bytes.fromhex(k["y"]),
        d=bytes.fromhex(k["d"]) if private else b"",
    )


def load(v, name):
    return (v["dir"] / v[name]["file"]).read_bytes()


# ---- Rust -> pycose ---------------------------------------------------------


def test_pycose_verifies_our_data_sign1(vectors):
    raw = load(vectors, "data")
    assert cbor2.loads(raw).tag == 18
    msg = CoseMessage.decode(raw)
    assert isinstance(msg, Sign1Message)
    msg.key = ec2(vectors["device"])
    assert msg.verify_signature()
    assert msg.phdr[Algorithm] == Es256
    assert msg.phdr[KID] == bytes.fromhex(vectors["device"]["kid"])
    assert msg.phdr[SEQ] == vectors["data"]["seq"]
    assert msg.payload == bytes.fromhex(vectors["data"]["payload"])
    # the protected header is exactly {1: -7, 4: kid, -65537: seq}
    assert cbor2.loads(msg.phdr_encoded) == {1: -7, 4: bytes.fromhex(vectors["device"]["kid"]), SEQ: 7}


def test_pycose_rejects_our_data_sign1_with_other_key_or_flipped_payload(vectors):
    raw = load(vectors, "data")
    msg = CoseMessage.decode(raw)
    msg.key = ec2(vectors["cloud"])
    assert not msg.verify_signature()
    i = raw.index(bytes.fromhex(vectors["data"]["payload"]))
    flipped = raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :]
    msg = CoseMessage.decode(flipped)
    msg.key = ec2(vectors["device"])
    assert not msg.verify_signature()


def pycose_session_key(vectors, raw):
    """Verify the session Sign1 and decrypt its COSE_Encrypt with pycose."""
    outer = CoseMessage.decode(raw)
    assert isinstance(outer, Sign1Message)
    outer.key = ec2(vectors["device"])
    assert outer.verify_signature()
    assert SEQ not in outer.phdr
    assert outer.phdr[KID] == bytes.fromhex(vectors["device"]["kid"])
    assert cbor2.loads(outer.payload).tag == 96
    enc = CoseMessage.decode(outer.payload)
    assert isinstance(enc, EncMessage)
    assert enc.phdr[Algorithm] == A128GCM
    assert enc.phdr[KID] == vectors["session_id"].to_bytes(4, "big")
    assert len(enc.uhdr[IV]) == 12
    [rcpt] = enc.recipients
    assert isinstance(rcpt, DirectKeyAgreement)
    assert rcpt.phdr[Algorithm] == EcdhEsHKDF256
    assert rcpt.uhdr[KID] == bytes.fromhex(vectors["cloud"]["kid"])
    assert rcpt.payload == b""
    rcpt.key = ec2(vectors["cloud"], private=True)
    return enc, rcpt, enc.decrypt(rcpt)


def test_pycose_decrypts_our_session_and_then_our_sealed(vectors):
    _, rcpt, session_key = pycose_session_key(vectors, load(vectors, "session"))
    assert session_key == bytes.fromhex(vectors["session_key"])
    # pycose's KDF context for this recipient is the one we derive with
    ctx = rcpt.get_kdf_context(A128GCM).encode()
    assert ctx.hex() == vectors["kdf_context"]

    sealed = CoseMessage.decode(load(vectors, "sealed"))
    assert isinstance(sealed, Enc0Message)
    assert cbor2.loads(load(vectors, "sealed")).tag == 16
    assert sealed.phdr[KID] == vectors["session_id"].to_bytes(4, "big")
    assert sealed.phdr[SEQ] == vectors["sealed"]["seq"]
    assert sealed.uhdr[IV].hex() == vectors["sealed"]["iv"]
    sealed.key = SymmetricKey(k=session_key)
    assert sealed.decrypt() == bytes.fromhex(vectors["sealed"]["payload"])


def test_pycose_fails_our_session_with_wrong_cloud_key(vectors):
    enc_raw = load(vectors, "session")
    outer = CoseMessage.decode(enc_raw)
    enc = CoseMessage.decode(outer.payload)
    wrong = EC2Key.generate_key(crv=P256)
    enc.recipients[0].key = wrong
    with pytest.raises(Exception):
        enc.decrypt(enc.recipients[0])


# ---- pycose -> Rust ---------------------------------------------------------


def pycose_sign1(vectors, seq, payload):
    kid = bytes.fromhex(vectors["device"]["kid"])
    msg = Sign1Message(phdr={Algorithm: Es256, KID: kid, SEQ: seq}, payload=payload)
    msg.key = ec2(vectors["device"], private=True)
    return msg.encode()


def test_rust_verifies_pycose_sign1(vectors, tmp_path):
    f = tmp_path / "py_data.cbor"
    f.write_bytes(pycose_sign1(vectors, 123456789012, b"hello from pycose"))
    _, out, _ = rust("verify-data", f, vectors["device"]["public"])
    assert out == {"kid": vectors["device"]["kid"], "seq": 123456789012, "payload": b"hello from pycose".hex()}


def test_rust_rejects_tampered_or_foreign_pycose_sign1(vectors, tmp_path):
    raw = pycose_sign1(vectors, 1, b"abcdef")
    i = raw.index(b"abcdef")
    f = tmp_path / "tampered.cbor"
    f.write_bytes(raw[:i] + b"X" + raw[i + 1 :])
    rc, _, err = rust("verify-data", f, vectors["device"]["public"], check=False)
    assert rc == 1 and "signature verification failed" in err
    # without seq the profile check fails before verification
    msg = Sign1Message(phdr={Algorithm: Es256, KID: bytes.fromhex(vectors["device"]["kid"])}, payload=b"x")
    msg.key = ec2(vectors["device"], private=True)
    f.write_bytes(msg.encode())
    rc, _, err = rust("verify-data", f, vectors["device"]["public"], check=False)
    assert rc == 1 and "seq missing" in err


def pycose_encrypt0(session_id, seq, key, payload, iv):
    msg = Enc0Message(
        phdr={Algorithm: A128GCM, KID: session_id.to_bytes(4, "big"), SEQ: seq},
        uhdr={IV: iv},
        payload=payload,
    )
    msg.key = SymmetricKey(k=key)
    return msg.encode()


def test_rust_opens_pycose_encrypt0(vectors, tmp_path):
    key = bytes.fromhex(vectors["session_key"])
    f = tmp_path / "py_sealed.cbor"
    f.write_bytes(pycose_encrypt0(0xA0B0C0D0, 42, key, b"sealed by pycose", os.urandom(12)))
    _, out, _ = rust("open-sealed", f, key.hex())
    assert out == {"session_id": 0xA0B0C0D0, "seq": 42, "plaintext": b"sealed by pycose".hex()}
    rc, _, err = rust("open-sealed", f, "00" * 16, check=False)
    assert rc == 1 and "decryption failed" in err


def test_rust_decrypts_pycose_session(vectors, tmp_path):
    """pycose builds Sign1(COSE_Encrypt, ECDH-ES + HKDF-256 to the cloud key)."""
    session_key = os.urandom(16)
    cloud_public = ec2(vectors["cloud"])
    ephemeral = EC2Key.generate_key(crv=P256)
    rcpt = DirectKeyAgreement(
        phdr={Algorithm: EcdhEsHKDF256},
        uhdr={
            KID: bytes.fromhex(vectors["cloud"]["kid"]),
            EphemeralKey: EC2Key(crv=P256, x=ephemeral.x, y=ephemeral.y),
        },
    )
    # pycose derives the CEK before it would set up an ephemeral key itself
    rcpt.key = ephemeral
    rcpt.local_attrs = {StaticKey: cloud_public}
    enc = EncMessage(
        phdr={Algorithm: A128GCM, KID: (77).to_bytes(4, "big")},
        uhdr={IV: os.urandom(12)},
        payload=session_key,
        recipients=[rcpt],
    )
    inner = enc.encode()
    outer = Sign1Message(phdr={Algorithm: Es256, KID: bytes.fromhex(vectors["device"]["kid"])}, payload=inner)
    outer.key = ec2(vectors["device"], private=True)
    f = tmp_path / "py_session.cbor"
    f.write_bytes(outer.encode())
    _, out, _ = rust("decrypt-session", f, vectors["device"]["public"], vectors["cloud"]["d"])
    assert out == {
        "device_kid": vectors["device"]["kid"],
        "session_id": 77,
        "cloud_kid": vectors["cloud"]["kid"],
        "session_key": session_key.hex(),
    }


def test_rust_decrypts_its_own_session(vectors):
    f = vectors["dir"] / vectors["session"]["file"]
    _, out, _ = rust("decrypt-session", f, vectors["device"]["public"], vectors["cloud"]["d"])
    assert out["session_key"] == vectors["session_key"]
    assert out["session_id"] == vectors["session_id"]


# ---- remote provisioning envelopes (docs/remote.md) ------------------------


def binding(direction, device_id):
    return f"tfmprov/{direction}/{device_id}".encode()


def pycose_envelope(signer, recipient_public, recipient_kid, external_aad, plaintext):
    """Sign1(signer, ES256) over COSE_Encrypt(ECDH-ES + HKDF-256 to the recipient), both with external_aad."""
    ephemeral = EC2Key.generate_key(crv=P256)
    rcpt = DirectKeyAgreement(
        phdr={Algorithm: EcdhEsHKDF256},
        uhdr={KID: recipient_kid, EphemeralKey: EC2Key(crv=P256, x=ephemeral.x, y=ephemeral.y)},
    )
    rcpt.key = ephemeral
    rcpt.local_attrs = {StaticKey: recipient_public}
    enc = EncMessage(phdr={Algorithm: A128GCM}, uhdr={IV: os.urandom(12)}, payload=plaintext, recipients=[rcpt])
    enc.external_aad = external_aad
    outer = Sign1Message(phdr={Algorithm: Es256, KID: bytes.fromhex(signer["kid"])}, payload=enc.encode())
    outer.external_aad = external_aad
    outer.key = ec2(signer, private=True)
    return outer.encode()


def test_rust_opens_pycose_command_and_refuses_it_elsewhere(vectors, tmp_path):
    # The cloud key signs; the "device" key of the vectors plays the device's key-agreement key.
    cloud, kak = vectors["cloud"], vectors["device"]
    command = cbor2.dumps({"cseq": 7, "cid": os.urandom(16), "op": "status", "args": {"id": 2}})
    f = tmp_path / "cmd.cbor"
    f.write_bytes(pycose_envelope(cloud, ec2(kak), bytes.fromhex(kak["kid"]), binding("cmd", "dev-1"), command))
    _, out, _ = rust("open-envelope", "cmd", "dev-1", f, cloud["public"], kak["d"])
    assert out == {"signer_kid": cloud["kid"], "recipient_kid": kak["kid"], "plaintext": command.hex()}
    # Published on dev-2's topic, or read as a reply: the signature no longer verifies.
    for direction, device in [("cmd", "dev-2"), ("reply", "dev-1")]:
        rc, _, err = rust("open-envelope", direction, device, f, cloud["public"], kak["d"], check=False)
        assert rc == 1 and "signature" in err, err
    # Signed by someone else (here the device key pretending to be the cloud).
    f2 = tmp_path / "forged.cbor"
    forged = dict(kak, kid=cloud["kid"])
    f2.write_bytes(pycose_envelope(forged, ec2(kak), bytes.fromhex(kak["kid"]), binding("cmd", "dev-1"), command))
    rc, _, err = rust("open-envelope", "cmd", "dev-1", f2, cloud["public"], kak["d"], check=False)
    assert rc == 1 and "signature" in err, err


def test_pycose_opens_our_signed_and_unsigned_replies(vectors, tmp_path):
    cloud, device = vectors["cloud"], vectors["device"]
    reply = cbor2.dumps({"cseq": 7, "cid": b"\x01" * 16, "rc": 0, "res": {"id": 2, "present": True}})
    for signer in [device["d"], "-"]:
        f = tmp_path / "reply.cbor"
        rust("seal-envelope", "reply", "dev-1", reply.hex(), cloud["public"], signer, f)
        raw = f.read_bytes()
        if signer == "-":
            assert cbor2.loads(raw).tag == 96
            enc = CoseMessage.decode(raw)
        else:
            assert cbor2.loads(raw).tag == 18
            outer = CoseMessage.decode(raw)
            assert outer.phdr[KID] == bytes.fromhex(device["kid"])
            outer.external_aad = binding("reply", "dev-1")
            outer.key = ec2(device)
            assert outer.verify_signature()
            outer.external_aad = binding("reply", "dev-2")
            assert not outer.verify_signature()
            enc = CoseMessage.decode(outer.payload)
        assert isinstance(enc, EncMessage)
        rcpt = enc.recipients[0]
        assert rcpt.uhdr[KID] == bytes.fromhex(cloud["kid"])
        rcpt.key = ec2(cloud, private=True)
        enc.external_aad = binding("reply", "dev-1")
        assert cbor2.loads(enc.decrypt(rcpt)) == cbor2.loads(reply)
        enc.external_aad = binding("reply", "dev-2")
        with pytest.raises(Exception):
            enc.decrypt(rcpt)
