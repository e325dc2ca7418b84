//! Device tests against the real PSA (Mbed TLS) and the real openssl binary.
//! PSA is process-global with key files in the current directory: each test
//! takes a lock and boots a device in a fresh temporary directory.

use super::*;
use alloc::vec::Vec;
use ciborium::value::Value;
use std::process::Command;
use std::sync::Mutex;
use tfmprov_smp::{GroupRc, Header, MgmtErr, Op};

static LOCK: Mutex<()> = Mutex::new(());

/// Where a test device keeps its counters and audit log.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Home {
    /// The non-secure fallback (state records, the ring in PS).
    NonSecure,
    /// The partition's logic in-process, its assets in `<dir>/sp`, a
    /// different RNG block at every boot.
    Partition,
    /// The same with an RNG that repeats across boots.
    PartitionRepeatingRng,
}

struct Sim {
    dev: Option<Device>,
    dir: tempfile::TempDir,
    seq: u8,
    home: Home,
    _guard: std::sync::MutexGuard<'static, ()>,
}

static BOOTS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);

fn boot_in(dir: &std::path::Path, home: Home) -> Result<Device, Error> {
    std::env::set_current_dir(dir).unwrap();
    let vault = match home {
        Home::NonSecure => vault::Vault::NonSecure,
        Home::Partition | Home::PartitionRepeatingRng => {
            let sp = dir.join("sp");
            std::fs::create_dir_all(&sp).unwrap();
            let fill = if home == Home::Partition { BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) } else { 7 };
            let call = tfmprov_partition_client::host::boot(&sp, move |b: &mut [u8]| {
                b.fill(fill);
                Ok(())
            })
            .unwrap();
            vault::Vault::partition(call)
        }
    };
    Device::boot_with("dev-1", vault)
}

impl Sim {
    fn new() -> Sim {
        Sim::with(Home::NonSecure)
    }

    fn with(home: Home) -> Sim {
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let dev = boot_in(dir.path(), home).unwrap();
        Sim { dev: Some(dev), dir, seq: 0, home, _guard: guard }
    }

    fn dev(&mut self) -> &mut Device {
        self.dev.as_mut().unwrap()
    }

    fn restart(&mut self) {
        let home = self.home;
        self.restart_as(home);
    }

    /// Restarts with the state in `home` (a firmware update that adds or
    /// drops the partition).
    fn restart_as(&mut self, home: Home) {
        self.dev.take().unwrap().shutdown();
        self.home = home;
        self.dev = Some(boot_in(self.dir.path(), home).unwrap());
    }

    /// Sends one SMP v2 packet and returns (response header, decoded body).
    fn raw(&mut self, op: Op, group: u16, cmd: u8, body: &[u8]) -> (Header, Value) {
        self.seq = self.seq.wrapping_add(1);
        let h = Header { op, version: 1, flags: 0, len: body.len() as u16, group, seq: self.seq, cmd };
        let mut pkt = h.encode().to_vec();
        pkt.extend_from_slice(body);
        let rsp = self.dev().handle_packet(&pkt).expect("a response");
        let rh = Header::decode(&rsp).unwrap();
        assert_eq!(rh.seq, self.seq);
        assert_eq!(rh.group, group);
        assert_eq!(rh.cmd, cmd);
        assert_eq!(rh.len as usize, rsp.len() - 8);
        let v: Value = ciborium::de::from_reader(&rsp[8..]).unwrap();
        (rh, v)
    }

    fn req(&mut self, op: Op, group: u16, cmd: u8, body: Value) -> Value {
        let mut b = Vec::new();
        ciborium::ser::into_writer(&body, &mut b).unwrap();
        self.raw(op, group, cmd, &b).1
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect())
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

fn uint(v: &Value, key: &str) -> u64 {
    get(v, key).and_then(|x| x.as_integer()).map(|i| u64::try_from(i).unwrap()).unwrap()
}

fn bytes(v: &Value, key: &str) -> Vec<u8> {
    get(v, key).and_then(|x| x.as_bytes()).cloned().unwrap_or_else(|| panic!("no bstr {key} in {v:?}"))
}

/// The group rc of an SMP v2 error response, or None for success.
fn group_rc(v: &Value, group: u16) -> Option<u64> {
    let err = get(v, "err")?;
    assert_eq!(uint(err, "group"), group as u64);
    Some(uint(err, "rc"))
}

fn mgmt_rc(v: &Value) -> Option<u64> {
    get(v, "rc").map(|_| uint(v, "rc"))
}

const KEYS: u16 = 64;
const CSR: u16 = 65;
const CERTS: u16 = 66;
const PRIV: [u8; 32] = factory::SAMPLE_VALUE_2;

fn id(n: u64) -> Value {
    Value::Integer(n.into())
}

/// The hand-written response encoding is byte for byte the SMP crate's
/// serde encoding of the same `*Rsp` struct (what the host SMP client and
/// smpclient decode).
#[test]
fn response_encoding_equals_the_serde_encoding() {
    use tfmprov_smp::{encode_body, CertGetRsp, CsrCreateRsp, EmptyRsp, KeyGenerateRsp, KeyStatusRsp};
    let public = [0x04u8; 65];
    let big = vec![0xabu8; 4060];
    for id in [0u32, 23, 24, 255, 256, 0x10000, 0x0fff_ffff, u32::MAX] {
        assert_eq!(
            Response::Key { id, public }.to_cbor(),
            encode_body(&KeyGenerateRsp { id, public: public.to_vec() })
        );
        for present in [false, true] {
            assert_eq!(Response::Status { id, present }.to_cbor(), encode_body(&KeyStatusRsp { id, present }));
        }
    }
    assert_eq!(Response::Empty.to_cbor(), encode_body(&EmptyRsp {}));
    for len in [0usize, 23, 24, 255, 256, 4060] {
        let der = big[..len].to_vec();
        assert_eq!(Response::Csr(der.clone()).to_cbor(), encode_body(&CsrCreateRsp { csr: der.clone() }));
        assert_eq!(Response::Cert(der.clone()).to_cbor(), encode_body(&CertGetRsp { cert: der }));
    }
}

#[test]
fn generate_public_status_destroy_happy_paths() {
    let mut s = Sim::new();
    let r = s.req(Op::Write, KEYS, 0, map(vec![]));
    assert_eq!(uint(&r, "id"), 0x10000);
    let pk = bytes(&r, "pub");
    assert_eq!((pk.len(), pk[0]), (65, 4));
    let r2 = s.req(Op::Read, KEYS, 1, map(vec![("id", id(0x10000))]));
    assert_eq!(bytes(&r2, "pub"), pk);
    assert_eq!(uint(&r2, "id"), 0x10000);
    let st = s.req(Op::Read, KEYS, 2, map(vec![("id", id(0x10000))]));
    assert_eq!(get(&st, "present"), Some(&Value::Bool(true)));
    let d = s.req(Op::Write, KEYS, 3, map(vec![("id", id(0x10000))]));
    assert_eq!(d, map(vec![]));
    let st = s.req(Op::Read, KEYS, 2, map(vec![("id", id(0x10000))]));
    assert_eq!(get(&st, "present"), Some(&Value::Bool(false)));
    assert_eq!(group_rc(&s.req(Op::Read, KEYS, 1, map(vec![("id", id(0x10000))])), KEYS), Some(2));
    assert_eq!(group_rc(&s.req(Op::Write, KEYS, 3, map(vec![("id", id(0x10000))])), KEYS), Some(2));
}

#[test]
fn known_value_exists_and_replace() {
    let mut s = Sim::new();
    let r = s.req(Op::Write, KEYS, 0, map(vec![("id", id(2)), ("priv", Value::Bytes(PRIV.to_vec()))]));
    assert_eq!(uint(&r, "id"), 2);
    let pk = bytes(&r, "pub");
    let expected = p256::SecretKey::from_slice(&PRIV).unwrap().public_key();
    assert_eq!(pk, expected.to_sec1_bytes().to_vec());
    // Existing ID without replace: rc 3, key unchanged.
    let again = s.req(Op::Write, KEYS, 0, map(vec![("id", id(2))]));
    assert_eq!(group_rc(&again, KEYS), Some(3));
    let explicit_false = s.req(Op::Write, KEYS, 0, map(vec![("id", id(2)), ("replace", Value::Bool(false))]));
    assert_eq!(group_rc(&explicit_false, KEYS), Some(3));
    // Replace with a random key.
    let rep = s.req(Op::Write, KEYS, 0, map(vec![("id", id(2)), ("replace", Value::Bool(true))]));
    assert_eq!(uint(&rep, "id"), 2);
    assert_ne!(bytes(&rep, "pub"), pk);
    // A refused replace (invalid scalar) leaves the key in place.
    let now = bytes(&rep, "pub");
    let bad = s.req(
        Op::Write,
        KEYS,
        0,
        map(vec![("id", id(2)), ("priv", Value::Bytes(vec![0; 32])), ("replace", Value::Bool(true))]),
    );
    assert_eq!(group_rc(&bad, KEYS), Some(4));
    assert_eq!(bytes(&s.req(Op::Read, KEYS, 1, map(vec![("id", id(2))])), "pub"), now);
}

#[test]
fn out_of_range_ids_are_refused_with_invalid_argument() {
    let mut s = Sim::new();
    for bad in [0u64, 0x1000_0000, 0x3F00_0000, 0x4000_0000, 0xFFFF_FFFF, 0x1_0000_0002] {
        let r = s.req(Op::Write, KEYS, 0, map(vec![("id", id(bad))]));
        assert_eq!(group_rc(&r, KEYS), Some(4), "generate {bad:#x}");
        for cmd in [1u8, 2] {
            assert_eq!(group_rc(&s.req(Op::Read, KEYS, cmd, map(vec![("id", id(bad))])), KEYS), Some(4));
        }
        let r = s.req(Op::Write, CSR, 0, map(vec![("id", id(bad)), ("cn", Value::Text("x".into()))]));
        assert_eq!(group_rc(&r, CSR), Some(4));
    }
    // Nothing was created by any of that.
    assert!(std::fs::read_dir(".").unwrap().all(|e| {
        let n = e.unwrap().file_name().into_string().unwrap();
        !n.contains("0000000000000002") && !n.starts_with("0000000000000000")
    }));
    // Certificates: slot IDs and state IDs are not addressable.
    for bad in [0u64, 0x1000_0002, 0x3E00_0000, 0x4000_0000] {
        let r = s.req(Op::Read, CERTS, 1, map(vec![("id", id(bad))]));
        assert_eq!(group_rc(&r, CERTS), Some(4), "cert get {bad:#x}");
    }
}

#[test]
fn malformed_requests_get_clear_smp_errors() {
    let mut s = Sim::new();
    // Malformed CBOR.
    for body in [&[0xFFu8][..], &[0xA1, 0x62, b'i'], &[0x5A, 0xFF, 0xFF, 0xFF, 0xFF], &[]] {
        let (_, v) = s.raw(Op::Write, KEYS, 0, body);
        assert_eq!(mgmt_rc(&v), Some(MgmtErr::EInval as u64), "{body:?}");
    }
    // Wrong field types.
    let wrong = [
        map(vec![("id", Value::Text("2".into()))]),
        map(vec![("priv", Value::Text("abc".into()))]),
        map(vec![("replace", id(1))]),
        Value::Array(vec![]),
    ];
    for w in wrong {
        assert_eq!(mgmt_rc(&s.req(Op::Write, KEYS, 0, w.clone())), Some(3), "{w:?}");
    }
    // Missing required field.
    assert_eq!(mgmt_rc(&s.req(Op::Read, KEYS, 1, map(vec![]))), Some(3));
    assert_eq!(mgmt_rc(&s.req(Op::Write, CSR, 0, map(vec![("id", id(2))]))), Some(3));
    // Wrong length of priv: invalid argument.
    for len in [0usize, 31, 33, 65] {
        let r = s.req(Op::Write, KEYS, 0, map(vec![("id", id(5)), ("priv", Value::Bytes(vec![7; len]))]));
        assert_eq!(group_rc(&r, KEYS), Some(4), "priv len {len}");
    }
    // Unknown group, unknown command, wrong op: not supported.
    assert_eq!(mgmt_rc(&s.req(Op::Read, 99, 0, map(vec![]))), Some(MgmtErr::ENotSup as u64));
    assert_eq!(mgmt_rc(&s.req(Op::Read, KEYS, 9, map(vec![]))), Some(8));
    assert_eq!(mgmt_rc(&s.req(Op::Read, KEYS, 0, map(vec![]))), Some(8));
    // A truncated header: nothing to answer, and no panic.
    assert_eq!(s.dev().handle_packet(&[2, 0, 0]), None);
    // Header length that does not match the body: corrupt, as Zephyr's smp.c answers.
    let h = Header { op: Op::Write, version: 1, flags: 0, len: 10, group: KEYS, seq: 1, cmd: 0 };
    let mut pkt = h.encode().to_vec();
    pkt.push(0xA0);
    let rsp = s.dev().handle_packet(&pkt).unwrap();
    let v: Value = ciborium::de::from_reader(&rsp[8..]).unwrap();
    assert_eq!(mgmt_rc(&v), Some(MgmtErr::ECorrupt as u64));
}

#[test]
fn smp_v1_clients_get_rc_errors() {
    let mut s = Sim::new();
    let body = {
        let mut b = Vec::new();
        ciborium::ser::into_writer(&map(vec![("id", id(0x20000))]), &mut b).unwrap();
        b
    };
    let h = Header { op: Op::Read, version: 0, flags: 0, len: body.len() as u16, group: KEYS, seq: 7, cmd: 1 };
    let mut pkt = h.encode().to_vec();
    pkt.extend_from_slice(&body);
    let rsp = s.dev().handle_packet(&pkt).unwrap();
    let v: Value = ciborium::de::from_reader(&rsp[8..]).unwrap();
    assert!(get(&v, "err").is_none());
    assert_ne!(mgmt_rc(&v), None);
    assert_ne!(mgmt_rc(&v), Some(0));
}

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn issue_with_openssl(s: &Sim, csr_der: &[u8], name: &str) -> Vec<u8> {
    let d = s.dir.path();
    let csr = d.join(format!("{name}.csr"));
    std::fs::write(&csr, csr_der).unwrap();
    let ca_key = d.join("ca.key");
    let ca = d.join("ca.pem");
    if !ca.exists() {
        openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=Test CA", "-days", "1", "-keyout", ca_key.to_str().unwrap(), "-out", ca.to_str().unwrap()]);
    }
    let leaf = d.join(format!("{name}.der"));
    openssl(&["x509", "-req", "-inform", "DER", "-in", csr.to_str().unwrap(), "-CA", ca.to_str().unwrap(),
        "-CAkey", ca_key.to_str().unwrap(), "-set_serial", "7", "-days", "1", "-outform", "DER",
        "-out", leaf.to_str().unwrap()]);
    std::fs::read(leaf).unwrap()
}

#[test]
fn csr_verifies_with_openssl_and_carries_the_key() {
    let mut s = Sim::new();
    s.req(Op::Write, KEYS, 0, map(vec![("id", id(3)), ("priv", Value::Bytes(factory::SAMPLE_VALUE_3.to_vec()))]));
    let r = s.req(
        Op::Write,
        CSR,
        0,
        map(vec![("id", id(3)), ("cn", Value::Text("dev-1".into())), ("o", Value::Text("Acme".into())),
            ("ou", Value::Text("Factory 7".into()))]),
    );
    let der = bytes(&r, "csr");
    let path = s.dir.path().join("req.der");
    std::fs::write(&path, &der).unwrap();
    let out = openssl(&["req", "-inform", "DER", "-in", path.to_str().unwrap(), "-verify", "-noout", "-subject"]);
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"), "{text}");
    assert!(text.contains("CN = dev-1") || text.contains("CN=dev-1"), "{text}");
    assert!(text.contains("Acme") && text.contains("Factory 7"), "{text}");
    // Its public key is the key's.
    let pubkey = openssl(&["req", "-inform", "DER", "-in", path.to_str().unwrap(), "-pubkey", "-noout"]);
    use p256::pkcs8::DecodePublicKey;
    let pk = p256::PublicKey::from_public_key_pem(std::str::from_utf8(&pubkey.stdout).unwrap()).unwrap();
    let expected = p256::SecretKey::from_slice(&factory::SAMPLE_VALUE_3).unwrap().public_key();
    assert_eq!(pk, expected);
    // A flipped signature byte fails openssl's check (the test can fail).
    let mut broken = der.clone();
    let n = broken.len();
    broken[n - 3] ^= 1;
    std::fs::write(&path, &broken).unwrap();
    let out = Command::new("openssl").args(["req", "-inform", "DER", "-in", path.to_str().unwrap(), "-verify", "-noout"]).output().unwrap();
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stderr).contains("fail"));
    // Bad CN and absent key.
    for cn in ["bad cn", "", &"x".repeat(65), "dev/1"] {
        let r = s.req(Op::Write, CSR, 0, map(vec![("id", id(3)), ("cn", Value::Text(cn.into()))]));
        assert_eq!(group_rc(&r, CSR), Some(4), "cn {cn:?}");
    }
    let r = s.req(Op::Write, CSR, 0, map(vec![("id", id(9)), ("cn", Value::Text("dev-1".into()))]));
    assert_eq!(group_rc(&r, CSR), Some(2));
}

#[test]
fn certificates_store_check_and_persist() {
    let mut s = Sim::new();
    s.req(Op::Write, KEYS, 0, map(vec![("id", id(3)), ("priv", Value::Bytes(factory::SAMPLE_VALUE_3.to_vec()))]));
    s.req(Op::Write, KEYS, 0, map(vec![("id", id(2)), ("priv", Value::Bytes(factory::SAMPLE_VALUE_2.to_vec()))]));
    let csr3 = bytes(&s.req(Op::Write, CSR, 0, map(vec![("id", id(3)), ("cn", Value::Text("dev-1".into()))])), "csr");
    let cert3 = issue_with_openssl(&s, &csr3, "k3");
    // Not found before it is stored.
    assert_eq!(group_rc(&s.req(Op::Read, CERTS, 1, map(vec![("id", id(3))])), CERTS), Some(2));
    // Storing key 3's certificate at key 2: mismatch.
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(2)), ("cert", Value::Bytes(cert3.clone()))]));
    assert_eq!(group_rc(&r, CERTS), Some(7));
    // At a key that does not exist: not found.
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(4)), ("cert", Value::Bytes(cert3.clone()))]));
    assert_eq!(group_rc(&r, CERTS), Some(2));
    // Garbage: invalid argument; more than one ITS asset holds: too large.
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(3)), ("cert", Value::Bytes(vec![0x30, 0x03, 1, 2, 3]))]));
    assert_eq!(group_rc(&r, CERTS), Some(4));
    let too_large = vec![0x30; tfmprov_psa::MAX_BLOB_LEN + 1];
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(3)), ("cert", Value::Bytes(too_large))]));
    assert_eq!(group_rc(&r, CERTS), Some(8));
    // The right one.
    assert_eq!(s.req(Op::Write, CERTS, 0, map(vec![("id", id(3)), ("cert", Value::Bytes(cert3.clone()))])), map(vec![]));
    assert_eq!(bytes(&s.req(Op::Read, CERTS, 1, map(vec![("id", id(3))])), "cert"), cert3);
    // A peer certificate (the CA root) is stored without the key check.
    let ca = std::fs::read_to_string(s.dir.path().join("ca.pem")).unwrap();
    let (_, ca_der) = der::pem::decode_vec(ca.as_bytes()).unwrap();
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(0x3F00_0000)), ("cert", Value::Bytes(ca_der.clone()))]));
    assert_eq!(r, map(vec![]));
    // Everything survives a restart.
    s.restart();
    assert_eq!(bytes(&s.req(Op::Read, CERTS, 1, map(vec![("id", id(3))])), "cert"), cert3);
    assert_eq!(bytes(&s.req(Op::Read, CERTS, 1, map(vec![("id", id(0x3F00_0000))])), "cert"), ca_der);
    // Destroy removes the key and its certificate.
    s.req(Op::Write, KEYS, 3, map(vec![("id", id(3))]));
    assert_eq!(group_rc(&s.req(Op::Read, CERTS, 1, map(vec![("id", id(3))])), CERTS), Some(2));
}

#[test]
fn os_group_echo_and_params() {
    let mut s = Sim::new();
    let r = s.req(Op::Write, 0, 0, map(vec![("d", Value::Text("hello".into()))]));
    assert_eq!(get(&r, "r"), Some(&Value::Text("hello".into())));
    let p = s.req(Op::Read, 0, 6, map(vec![]));
    assert!(uint(&p, "buf_size") >= 4096 + 64);
}

#[test]
fn every_error_maps_to_its_group_rc() {
    use tfmprov_psa::Error as P;
    let cases: Vec<(Error, GroupRc)> = vec![
        (Error::Psa(P::InvalidId(0)), GroupRc::InvalidArgument),
        (Error::Psa(P::NotFound(2)), GroupRc::NotFound),
        (Error::Psa(P::Exists(2)), GroupRc::Exists),
        (Error::Psa(P::InvalidArgument("x")), GroupRc::InvalidArgument),
        (Error::Psa(P::StorageFull), GroupRc::StorageFull),
        (Error::Psa(P::RngBroken), GroupRc::CryptoFailure),
        (Error::Psa(P::Psa(tfmprov_psa::PsaStatus::GenericError)), GroupRc::CryptoFailure),
        (Error::Mismatch, GroupRc::Mismatch),
        (Error::TooLarge, GroupRc::TooLarge),
        (Error::Psa(P::Busy), GroupRc::Locked),
    ];
    for (e, rc) in cases {
        assert_eq!(e.group_rc(), rc, "{e}");
    }
}

#[test]
fn shell_commands() {
    let mut s = Sim::new();
    let out = s.dev().shell(&["prov", "factory"]).unwrap();
    assert!(out.contains("random   id 0x00010000 created"), "{out}");
    assert!(out.contains("known    id 0x00000002 created"), "{out}");
    let again = s.dev().shell(&["factory"]).unwrap();
    assert!(again.contains("chained  id 0x00000003 kept"), "{again}");
    let out = s.dev().shell(&["prov", "keys", "status", "0x3"]).unwrap();
    assert_eq!(out, "id 0x00000003 present");
    let out = s.dev().shell(&["keys", "pub", "2"]).unwrap();
    let expected = p256::SecretKey::from_slice(&factory::SAMPLE_VALUE_2).unwrap().public_key();
    assert!(out.ends_with(&shell::hex(&expected.to_sec1_bytes())), "{out}");
    let csr = s.dev().shell(&["csr", "3", "dev-1", "Acme"]).unwrap();
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(s.dev().shell(&["keys", "gen", "0x10000000"]).is_err());
    assert!(matches!(s.dev().shell(&["keys", "gen", "2"]), Err(Error::Psa(tfmprov_psa::Error::Exists(2)))));
    let out = s.dev().shell(&["keys", "gen", "5", "--priv", &shell::hex(&PRIV)]).unwrap();
    assert!(out.ends_with(&shell::hex(&p256::SecretKey::from_slice(&PRIV).unwrap().public_key().to_sec1_bytes())));
    assert!(s.dev().shell(&["keys", "gen", "6", "--priv", "zz"]).is_err());
    assert!(s.dev().shell(&["bogus"]).is_err());
    assert_eq!(s.dev().shell(&["keys", "destroy", "5"]).unwrap(), "id 0x00000005 destroyed");
    assert!(s.dev().shell(&["cert", "get", "3"]).is_err());
}

fn verifier(public: &[u8]) -> impl Fn(&[u8], &[u8; 64]) -> Result<(), ()> + '_ {
    move |tbs, sig| {
        use p256::ecdsa::signature::Verifier;
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(public).map_err(|_| ())?;
        let s = p256::ecdsa::Signature::from_slice(sig).map_err(|_| ())?;
        vk.verify(tbs, &s).map_err(|_| ())
    }
}

#[test]
fn data_messages_verify_and_seq_survives_restart() {
    data_messages_verify_and_seq_survives_restart_in(Home::NonSecure);
}

/// The same with the counters in the secure partition.
#[test]
fn data_messages_verify_and_seq_survives_restart_in_the_partition() {
    data_messages_verify_and_seq_survives_restart_in(Home::Partition);
}

fn data_messages_verify_and_seq_survives_restart_in(home: Home) {
    let mut s = Sim::with(home);
    s.dev().shell(&["factory"]).unwrap();
    let public = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    let payload = telemetry::sample_payload(1, 1000);
    let m1 = s.dev().data_message(&payload).unwrap();
    let m2 = s.dev().data_message(&payload).unwrap();
    let d1 = tfmprov_cose::parse_data(&m1).unwrap();
    let d2 = tfmprov_cose::parse_data(&m2).unwrap();
    assert_eq!(d1.payload, payload);
    assert!(d2.seq > d1.seq);
    d1.verify(verifier(&public)).unwrap();
    d2.verify(verifier(&public)).unwrap();
    let psa_kid = telemetry::kid_of(s.dev().psa(), &public).unwrap();
    assert_eq!(d1.kid, psa_kid);
    // The kid is SHA-256 over the SPKI DER, as the CA/aggregator compute it.
    use p256::pkcs8::EncodePublicKey;
    use sha2::Digest;
    let spki = p256::PublicKey::from_sec1_bytes(&public).unwrap().to_public_key_der().unwrap();
    assert_eq!(&psa_kid[..], &sha2::Sha256::digest(spki.as_bytes())[..8]);
    // A flipped byte does not verify.
    let mut bad = m1.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x40;
    let parsed = tfmprov_cose::parse_data(&bad).unwrap();
    assert!(parsed.verify(verifier(&public)).is_err());
    s.restart();
    let m3 = s.dev().data_message(&payload).unwrap();
    let d3 = tfmprov_cose::parse_data(&m3).unwrap();
    assert!(d3.seq > d2.seq, "{} after {}", d3.seq, d2.seq);
    // Without the telemetry key: a clear error.
    s.dev().shell(&["keys", "destroy", "3"]).unwrap();
    assert!(matches!(s.dev().data_message(b"x"), Err(Error::Psa(tfmprov_psa::Error::NotFound(3)))));
}

/// A CA chain made with openssl in the test directory: a root, an
/// intermediate (CA:TRUE) and a "cloud" leaf it issued, all P-256 /
/// ecdsa-with-SHA256. `tag` keeps several chains apart.
struct CloudChain {
    key: p256::SecretKey,
    root: Vec<u8>,
    intermediate: Vec<u8>,
    cloud: Vec<u8>,
}

fn cloud_chain(s: &Sim, tag: &str) -> CloudChain {
    let d = s.dir.path();
    let p = |n: &str| d.join(format!("{tag}-{n}")).to_str().unwrap().to_owned();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    std::fs::write(p("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n").unwrap();
    openssl(&[&["req", "-x509"][..], &ec, &["-subj", &format!("/CN={tag} root"), "-days", "1", "-keyout", &p("root.key"), "-outform", "DER", "-out", &p("root.der")]].concat());
    openssl(&[&["req"][..], &ec, &["-subj", &format!("/CN={tag} intermediate"), "-keyout", &p("inter.key"), "-out", &p("inter.csr")]].concat());
    openssl(&["x509", "-req", "-in", &p("inter.csr"), "-CA", &p("root.der"), "-CAform", "DER", "-CAkey", &p("root.key"),
        "-set_serial", "2", "-days", "1", "-extfile", &p("ca.ext"), "-outform", "DER", "-out", &p("inter.der")]);
    openssl(&[&["req"][..], &ec, &["-subj", "/CN=cloud", "-keyout", &p("cloud.key"), "-out", &p("cloud.csr")]].concat());
    openssl(&["x509", "-req", "-in", &p("cloud.csr"), "-CA", &p("inter.der"), "-CAform", "DER", "-CAkey", &p("inter.key"),
        "-set_serial", "3", "-days", "1", "-outform", "DER", "-out", &p("cloud.der")]);
    use p256::pkcs8::DecodePrivateKey;
    let key = p256::SecretKey::from_pkcs8_pem(&std::fs::read_to_string(p("cloud.key")).unwrap()).unwrap();
    CloudChain {
        key,
        root: std::fs::read(p("root.der")).unwrap(),
        intermediate: std::fs::read(p("inter.der")).unwrap(),
        cloud: std::fs::read(p("cloud.der")).unwrap(),
    }
}

/// Stores a chain as enrollment does: root, intermediate, then the cloud
/// certificate (the one checked). The group rc of the last store, if any.
fn store_chain(s: &mut Sim, c: &CloudChain) -> Option<u64> {
    for (peer, der) in [(0x3F00_0000u64, &c.root), (0x3F00_0002, &c.intermediate)] {
        let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(peer)), ("cert", Value::Bytes(der.clone()))]));
        assert_eq!(r, map(vec![]), "peer {peer:#x}");
    }
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(0x3F00_0001)), ("cert", Value::Bytes(c.cloud.clone()))]));
    group_rc(&r, CERTS)
}

/// A cloud identity whose chain is on the device: (cloud private key, cloud certificate).
fn cloud_identity(s: &mut Sim) -> (p256::SecretKey, Vec<u8>) {
    let c = cloud_chain(s, "cloud");
    assert_eq!(store_chain(s, &c), None);
    (c.key, c.cloud)
}

#[test]
fn the_cloud_certificate_must_chain_to_the_root_at_store_and_at_use() {
    let mut s = Sim::new();
    s.dev().shell(&["factory"]).unwrap();
    let good = cloud_chain(&s, "good");
    let other = cloud_chain(&s, "other");
    let store_cloud = |s: &mut Sim, der: &[u8]| {
        let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(0x3F00_0001)), ("cert", Value::Bytes(der.to_vec()))]));
        group_rc(&r, CERTS)
    };
    let invalid = Some(u64::from(GroupRc::InvalidArgument.code()));
    // No root on the device yet: refused.
    assert_eq!(store_cloud(&mut s, &good.cloud), invalid);
    // Root but no intermediate: refused.
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(0x3F00_0000)), ("cert", Value::Bytes(good.root.clone()))]));
    assert_eq!(r, map(vec![]));
    assert_eq!(store_cloud(&mut s, &good.cloud), invalid);
    // A leaf in the intermediate's place (not a CA): refused.
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(0x3F00_0002)), ("cert", Value::Bytes(good.cloud.clone()))]));
    assert_eq!(r, map(vec![]));
    assert_eq!(store_cloud(&mut s, &good.cloud), invalid);
    // The whole chain: accepted.
    assert_eq!(store_chain(&mut s, &good), None);
    // A cloud certificate from another CA: refused, the good one kept.
    assert_eq!(store_cloud(&mut s, &other.cloud), invalid);
    let r = s.req(Op::Read, CERTS, 1, map(vec![("id", id(0x3F00_0001))]));
    assert_eq!(bytes(&r, "cert"), good.cloud);
    s.dev().session_message(0).expect("a session with the checked cloud key");
    // At use: the root replaced by another CA's, the stored cloud
    // certificate no longer chains, and its key is not used.
    let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(0x3F00_0000)), ("cert", Value::Bytes(other.root.clone()))]));
    assert_eq!(r, map(vec![]));
    assert!(matches!(s.dev().session_message(1), Err(Error::InvalidArgument(m)) if m.contains("does not chain")));
    assert!(matches!(s.dev().remote_command(b"any", None), Err(Error::InvalidArgument(_))));
}

/// The broker's TLS key pin: the SHA-256 of the SubjectPublicKeyInfo of
/// the certificate at 0x3F000003 (as openssl computes it), checked against
/// the certificate a TLS server presents (what the firmware's Mbed TLS
/// verify callback asks through `tfmprov_mqtt_tls_check_broker`).
#[test]
fn the_broker_key_is_pinned_not_its_certificate() {
    let mut s = Sim::new();
    s.dev().shell(&["factory"]).unwrap();
    let c = cloud_chain(&s, "pki");
    let other = cloud_chain(&s, "other");
    let d = s.dir.path().to_path_buf();
    let p = |n: &str| d.join(format!("pki-{n}")).to_str().unwrap().to_owned();
    // The same key certified again (another serial), and another key from
    // the same intermediate with the same name.
    let issue = |csr: &str, serial: &str, out: &str| {
        openssl(&["x509", "-req", "-in", csr, "-CA", &p("inter.der"), "-CAform", "DER", "-CAkey", &p("inter.key"),
            "-set_serial", serial, "-days", "1", "-outform", "DER", "-out", out]);
        std::fs::read(out).unwrap()
    };
    let reissued = issue(&p("cloud.csr"), "9", &p("reissued.der"));
    openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=cloud",
        "-keyout", &p("impostor.key"), "-out", &p("impostor.csr")]);
    let impostor = issue(&p("impostor.csr"), "10", &p("impostor.der"));

    let store = |s: &mut Sim, peer: u64, der: &[u8]| {
        let r = s.req(Op::Write, CERTS, 0, map(vec![("id", id(peer)), ("cert", Value::Bytes(der.to_vec()))]));
        group_rc(&r, CERTS)
    };
    // Nothing stored yet: a clear error, not a match.
    assert!(matches!(s.dev().check_broker_key(&c.cloud), Err(Error::InvalidArgument(m)) if m.contains("0x3F000003")));
    assert_eq!(store_chain(&mut s, &c), None);
    assert_eq!(store(&mut s, 0x3F00_0003, &c.cloud), None);

    // The pin is openssl's: x509 -pubkey | pkey -pubin -outform DER | sha256.
    let pem = openssl(&["x509", "-inform", "DER", "-in", &p("cloud.der"), "-noout", "-pubkey"]).stdout;
    std::fs::write(p("pub.pem"), pem).unwrap();
    openssl(&["pkey", "-pubin", "-in", &p("pub.pem"), "-outform", "DER", "-out", &p("spki.der")]);
    use sha2::Digest;
    let want: [u8; 32] = sha2::Sha256::digest(std::fs::read(p("spki.der")).unwrap()).into();
    // tls_identity needs the telemetry key's own certificate too.
    let csr3 = bytes(&s.req(Op::Write, CSR, 0, map(vec![("id", id(3)), ("cn", Value::Text("dev-1".into()))])), "csr");
    let cert3 = issue_with_openssl(&s, &csr3, "k3");
    assert_eq!(store_cert(&mut s, 3, &cert3), None);
    let identity = s.dev().tls_identity().unwrap();
    assert_eq!(identity.chain[0], cert3);
    assert_eq!(identity.broker_pin, want);
    assert_eq!(identity.chain.len(), 2, "leaf and intermediate");
    assert_eq!(identity.root, c.root);

    s.dev().check_broker_key(&c.cloud).expect("the stored certificate");
    s.dev().check_broker_key(&reissued).expect("the same key, certified again");
    assert!(matches!(s.dev().check_broker_key(&impostor), Err(Error::Mismatch)), "same CA and name, another key");
    assert!(matches!(s.dev().check_broker_key(&other.cloud), Err(Error::Mismatch)));
    assert!(matches!(s.dev().check_broker_key(b"\x30\x03\x02\x01\x01"), Err(Error::InvalidArgument(_))));
    assert!(matches!(s.dev().check_broker_key(&c.cloud[..c.cloud.len() - 1]), Err(Error::InvalidArgument(_))));

    // A certificate from another CA is refused at the store, the pin kept.
    assert_eq!(store(&mut s, 0x3F00_0003, &other.cloud), Some(u64::from(GroupRc::InvalidArgument.code())));
    s.dev().check_broker_key(&c.cloud).expect("the pin is unchanged");
    // The root replaced since: the stored certificate no longer chains and
    // nothing matches.
    assert_eq!(store(&mut s, 0x3F00_0000, &other.root), None);
    assert!(matches!(s.dev().check_broker_key(&c.cloud), Err(Error::InvalidArgument(m)) if m.contains("does not chain")));
}

/// The server-side crypto of the tests (RustCrypto), as COSE closures.
fn ecdh_with(secret: &p256::SecretKey) -> impl FnOnce(&[u8; 65]) -> Result<[u8; 32], ()> + '_ {
    move |eph| {
        let pk = p256::PublicKey::from_sec1_bytes(eph).map_err(|_| ())?;
        Ok((*p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), pk.as_affine()).raw_secret_bytes()).into())
    }
}

fn hkdf_sha256(ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, ()> {
    let mut out = vec![0u8; len];
    hkdf::Hkdf::<sha2::Sha256>::new(None, ikm).expand(info, &mut out).map_err(|_| ())?;
    Ok(out)
}

fn gcm_encrypt(k: &[u8; 16], iv: &[u8; 12], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, ()> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    aes_gcm::Aes128Gcm::new_from_slice(k).map_err(|_| ())?.encrypt(iv.into(), Payload { msg: pt, aad }).map_err(|_| ())
}

fn gcm_decrypt(k: &[u8; 16], iv: &[u8; 12], aad: &[u8], ct: &[u8]) -> Result<Vec<u8>, ()> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    aes_gcm::Aes128Gcm::new_from_slice(k).map_err(|_| ())?.decrypt(iv.into(), Payload { msg: ct, aad }).map_err(|_| ())
}

fn open_session(msg: &[u8], device_pub: &[u8], cloud: &p256::SecretKey) -> (u32, [u8; 16]) {
    let sm = tfmprov_cose::parse_session(msg).unwrap();
    sm.verify(verifier(device_pub)).unwrap();
    let key = sm.decrypt(ecdh_with(cloud), hkdf_sha256, gcm_decrypt).unwrap();
    (sm.session_id, key)
}

#[test]
fn sessions_and_sealed_messages() {
    sessions_and_sealed_messages_in(Home::NonSecure);
}

/// The same with the counters in the secure partition.
#[test]
fn sessions_and_sealed_messages_in_the_partition() {
    sessions_and_sealed_messages_in(Home::Partition);
}

fn sessions_and_sealed_messages_in(home: Home) {
    let mut s = Sim::with(home);
    s.dev().shell(&["factory"]).unwrap();
    let public = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    // No cloud certificate yet: refused clearly; no session: sealed refused.
    assert!(matches!(s.dev().session_message(0), Err(Error::Psa(tfmprov_psa::Error::NotFound(_)))));
    assert_eq!(s.dev().sealed_message(b"x"), Err(Error::NoSession));
    let (cloud, _) = cloud_identity(&mut s);
    assert!(s.dev().session_due(0));
    let msg = s.dev().session_message(0).unwrap();
    let (sid, key) = open_session(&msg, &public, &cloud);
    assert_eq!(sid, 1);
    assert_eq!(s.dev().session_id(), Some(1));
    let sealed = s.dev().sealed_message(b"secret reading").unwrap();
    let parsed = tfmprov_cose::parse_sealed(&sealed).unwrap();
    assert_eq!(parsed.session_id, 1);
    let pt = parsed.open(|aad, ct| gcm_decrypt(&key, &parsed.iv, aad, ct)).unwrap();
    assert_eq!(pt, b"secret reading");
    // Rotation by count.
    s.dev().set_session_policy(telemetry::SessionPolicy { max_messages: 2, max_age_ms: 10_000 });
    assert!(!s.dev().session_due(1));
    s.dev().sealed_message(b"2").unwrap();
    assert!(s.dev().session_due(2));
    assert!(s.dev().session_due(20_000));
    // Session ids and seq keep increasing across a restart.
    let seq_before = parsed.seq;
    s.restart();
    assert_eq!(s.dev().session_id(), None);
    let msg = s.dev().session_message(5).unwrap();
    let (sid2, key2) = open_session(&msg, &public, &cloud);
    assert_eq!(sid2, 2);
    assert_ne!(key2, key);
    let sealed = s.dev().sealed_message(b"after reboot").unwrap();
    assert!(tfmprov_cose::parse_sealed(&sealed).unwrap().seq > seq_before);
}

#[test]
fn error_reports_are_described() {
    let r = tfmprov_cose::ErrorReport { code: 6, reason: "replay or duplicate".into(), kid: Some(vec![1, 2]), seq: Some(9) };
    let text = telemetry::describe_error_report(&r.to_cbor());
    assert_eq!(text, "rejected: code 6 (replay or duplicate) seq 9 kid 0102");
    assert!(telemetry::describe_error_report(&[0xFF, 0x00]).starts_with("undecodable"));
    let p = telemetry::sample_payload(300, 70_000);
    let v: Value = ciborium::de::from_reader(&p[..]).unwrap();
    assert_eq!(uint(&v, "n"), 300);
    assert_eq!(uint(&v, "t"), 70_000);
}

/// A certificate for `csr_der` from the test CA, padded with an nsComment
/// extension to about `pad` more bytes of DER.
fn issue_padded(s: &Sim, csr_der: &[u8], name: &str, pad: usize) -> Vec<u8> {
    let _ = issue_with_openssl(s, csr_der, "ca-setup");
    let d = s.dir.path();
    let csr = d.join(format!("{name}.csr"));
    std::fs::write(&csr, csr_der).unwrap();
    let ext = d.join(format!("{name}.ext"));
    std::fs::write(&ext, format!("nsComment = {}\n", "p".repeat(pad.max(1)))).unwrap();
    let leaf = d.join(format!("{name}.der"));
    openssl(&["x509", "-req", "-inform", "DER", "-in", csr.to_str().unwrap(), "-CA", d.join("ca.pem").to_str().unwrap(),
        "-CAkey", d.join("ca.key").to_str().unwrap(), "-set_serial", "9", "-days", "1", "-outform", "DER",
        "-extfile", ext.to_str().unwrap(), "-out", leaf.to_str().unwrap()]);
    std::fs::read(leaf).unwrap()
}

/// A certificate of exactly `len` bytes of DER for `csr_der` (the padding
/// is adjusted until openssl's output has that length; the CA's ECDSA
/// signature varies by a byte or two between issues, hence the retries).
fn issue_exact(s: &Sim, csr_der: &[u8], name: &str, len: usize) -> Vec<u8> {
    let base = issue_padded(s, csr_der, name, 1).len();
    let mut pad = len.saturating_sub(base) + 1;
    for _ in 0..64 {
        let cert = issue_padded(s, csr_der, name, pad);
        if cert.len() == len {
            return cert;
        }
        pad = (pad as isize + len as isize - cert.len() as isize).max(1) as usize;
    }
    panic!("could not make a {len}-byte certificate");
}

fn store_cert(s: &mut Sim, key: u64, cert: &[u8]) -> Option<u64> {
    group_rc(&s.req(Op::Write, CERTS, 0, map(vec![("id", id(key)), ("cert", Value::Bytes(cert.to_vec()))])), CERTS)
}

fn get_cert(s: &mut Sim, key: u64) -> Result<Vec<u8>, u64> {
    let r = s.req(Op::Read, CERTS, 1, map(vec![("id", id(key))]));
    match group_rc(&r, CERTS) {
        None => Ok(bytes(&r, "cert")),
        Some(rc) => Err(rc),
    }
}

#[test]
fn certificate_sizes_follow_the_tfm_configuration() {
    let mut s = Sim::new();
    s.req(Op::Write, KEYS, 0, map(vec![("id", id(3)), ("priv", Value::Bytes(factory::SAMPLE_VALUE_3.to_vec()))]));
    let csr3 = bytes(&s.req(Op::Write, CSR, 0, map(vec![("id", id(3)), ("cn", Value::Text("dev-1".into()))])), "csr");
    let max = tfmprov_psa::MAX_BLOB_LEN;
    // The largest certificate TF-M stores (4060 bytes with AN521's 4096-byte
    // ITS assets) is stored; one byte more is rc 8 before PSA sees it.
    let largest = issue_exact(&s, &csr3, "largest", max);
    assert_eq!(store_cert(&mut s, 3, &largest), None);
    assert_eq!(get_cert(&mut s, 3), Ok(largest.clone()));
    let over = issue_exact(&s, &csr3, "over", max + 1);
    assert_eq!(store_cert(&mut s, 3, &over), Some(8));
    assert_eq!(get_cert(&mut s, 3), Ok(largest.clone()));
    // Replacing it with another of that size needs two 4 KiB blocks: rc 5
    // (storage full), and the stored one is untouched.
    let other = issue_exact(&s, &csr3, "other", max);
    assert_ne!(other, largest);
    assert_eq!(store_cert(&mut s, 3, &other), Some(5));
    assert_eq!(get_cert(&mut s, 3), Ok(largest));
    // A realistic one replaces it.
    let small = issue_with_openssl(&s, &csr3, "small");
    assert_eq!(store_cert(&mut s, 3, &small), None);
    assert_eq!(get_cert(&mut s, 3), Ok(small));
}

#[test]
fn full_storage_is_rc_5_and_keeps_every_certificate() {
    let mut s = Sim::new();
    s.dev().shell(&["factory"]).unwrap();
    let csr3 = bytes(&s.req(Op::Write, CSR, 0, map(vec![("id", id(3)), ("cn", Value::Text("dev-1".into()))])), "csr");
    let cert3 = issue_with_openssl(&s, &csr3, "k3");
    assert_eq!(store_cert(&mut s, 3, &cert3), None);
    // Peer certificates of ~1.5 KiB until ITS refuses: rc 5.
    let peer = issue_exact(&s, &csr3, "peer", 1500);
    let mut stored = Vec::new();
    let rc = loop {
        let pid = 0x3F00_0010 + stored.len() as u64;
        match store_cert(&mut s, pid, &peer) {
            None => stored.push(pid),
            Some(rc) => break rc,
        }
        assert!(stored.len() < 8, "storage never filled up");
    };
    assert_eq!(rc, 5);
    assert!(!stored.is_empty());
    // A larger device certificate cannot be staged next to the old one: rc 5,
    // and everything stored is still there, byte for byte.
    let bigger = issue_exact(&s, &csr3, "bigger", 2000);
    assert_eq!(store_cert(&mut s, 3, &bigger), Some(5));
    assert_eq!(get_cert(&mut s, 3), Ok(cert3.clone()));
    for pid in &stored {
        assert_eq!(get_cert(&mut s, *pid), Ok(peer.clone()));
    }
    // So are the keys (a new key is refused the same way once full).
    let r = s.req(Op::Read, KEYS, 2, map(vec![("id", id(3))]));
    assert_eq!(get(&r, "present"), Some(&Value::Bool(true)));
    // Freeing room makes the replacement possible.
    for pid in &stored {
        s.dev().psa().delete_cert(tfmprov_psa::ids::PeerId::new(*pid).unwrap().into()).unwrap();
    }
    assert_eq!(store_cert(&mut s, 3, &bigger), None);
    assert_eq!(get_cert(&mut s, 3), Ok(bigger));
}

#[test]
fn a_failed_or_interrupted_store_over_smp_loses_nothing() {
    use tfmprov_psa::{faults, Error as PsaError, PsaStatus};
    let mut s = Sim::new();
    s.req(Op::Write, KEYS, 0, map(vec![("id", id(3)), ("priv", Value::Bytes(factory::SAMPLE_VALUE_3.to_vec()))]));
    let csr3 = bytes(&s.req(Op::Write, CSR, 0, map(vec![("id", id(3)), ("cn", Value::Text("dev-1".into()))])), "csr");
    let old = issue_exact(&s, &csr3, "old", 600);
    let new = issue_exact(&s, &csr3, "new", 900);
    assert_eq!(store_cert(&mut s, 3, &old), None);
    // A TF-M failure at each storage call of the replacement: rc 6 and the
    // old certificate, or (a failure in the clean-up after the commit) the
    // new one; never nothing.
    let mut step = 1;
    loop {
        faults::fail_nth(step, PsaError::Psa(PsaStatus::StorageFailure), false);
        let rc = store_cert(&mut s, 3, &new);
        let (_, fired) = faults::clear();
        if !fired {
            assert_eq!(rc, None);
            break;
        }
        let now = get_cert(&mut s, 3).unwrap();
        match rc {
            Some(6) => assert_eq!(now, old, "step {step}"),
            None => assert_eq!(now, new, "step {step}"),
            other => panic!("step {step}: rc {other:?}"),
        }
        assert_eq!(store_cert(&mut s, 3, &old), None);
        step += 1;
    }
    assert!(step > 5, "{step}");
    // A reset in the middle of a store, right after the old certificate was
    // destroyed (the 5th storage call, the import of the new one, and every
    // call after it fail, so no error handling runs): after the reboot the
    // slot holds a whole certificate, and the boot says what it did.
    assert_eq!(store_cert(&mut s, 3, &old), None);
    faults::fail_nth(5, PsaError::Psa(PsaStatus::StorageFailure), true);
    assert_eq!(store_cert(&mut s, 3, &new), Some(6));
    faults::clear();
    s.restart();
    assert_eq!(s.dev().storage_recovery(), tfmprov_psa::Recovery::Completed(0x1000_0003));
    assert_eq!(get_cert(&mut s, 3), Ok(old), "the staged copy (the old, smaller certificate) was put back");
}

#[test]
fn the_kid_is_computed_once_and_follows_key_changes() {
    let mut s = Sim::new();
    s.dev().shell(&["factory"]).unwrap();
    let kid_of_key = |s: &mut Sim, k: u32| {
        let public = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(k.into()).unwrap()).unwrap();
        telemetry::kid_of(s.dev().psa(), &public).unwrap()
    };
    let kid3 = kid_of_key(&mut s, 3);
    let m = s.dev().data_message(b"a").unwrap();
    assert_eq!(tfmprov_cose::parse_data(&m).unwrap().kid, kid3);
    assert_eq!(s.dev().telemetry.kid, Some((3, kid3)), "cached after the first message");
    // Replacing key 3 over SMP: the next message carries the new key's kid.
    let r = s.req(Op::Write, KEYS, 0, map(vec![("id", id(3)), ("priv", Value::Bytes(vec![0x11; 32])), ("replace", Value::Bool(true))]));
    assert_eq!(uint(&r, "id"), 3);
    let new_kid = kid_of_key(&mut s, 3);
    assert_ne!(new_kid, kid3);
    let m = s.dev().data_message(b"b").unwrap();
    assert_eq!(tfmprov_cose::parse_data(&m).unwrap().kid, new_kid);
    // Another telemetry key (the C ABI's tfmprov_mqtt_set_key).
    s.dev().set_telemetry_key(tfmprov_psa::ids::DeviceKeyId::new(2).unwrap());
    let m = s.dev().data_message(b"c").unwrap();
    assert_eq!(tfmprov_cose::parse_data(&m).unwrap().kid, kid_of_key(&mut s, 2));
    // Destroyed over the shell: not found, not a stale kid.
    s.dev().shell(&["keys", "destroy", "2"]).unwrap();
    assert!(matches!(s.dev().data_message(b"d"), Err(Error::Psa(tfmprov_psa::Error::NotFound(2)))));
}

#[test]
fn the_certificate_walk_accepts_x509_and_refuses_the_rest() {
    let s = Sim::new();
    let d = s.dir.path();
    let der_of = |args: &[&str], name: &str| -> Vec<u8> {
        let pem = d.join(format!("{name}.pem"));
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-out", pem.to_str().unwrap()]);
        openssl(&full);
        let der = d.join(format!("{name}.der"));
        openssl(&["x509", "-in", pem.to_str().unwrap(), "-outform", "DER", "-out", der.to_str().unwrap()]);
        std::fs::read(der).unwrap()
    };
    let key = d.join("k.pem");
    let ec = der_of(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.to_str().unwrap(), "-subj", "/CN=v3", "-days", "1"], "v3");
    let rsa = der_of(&["req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", d.join("r.pem").to_str().unwrap(),
        "-subj", "/CN=rsa", "-days", "1"], "rsa");
    // A v1 certificate: no [0] version, no extensions.
    let csr = d.join("v1.csr");
    openssl(&["req", "-new", "-key", key.to_str().unwrap(), "-subj", "/CN=v1", "-out", csr.to_str().unwrap()]);
    let v1 = der_of(&["x509", "-req", "-in", csr.to_str().unwrap(), "-key", key.to_str().unwrap(), "-days", "1"], "v1");
    assert_ne!(v1[4..8], ec[4..8], "v1 has no version field");

    let ec_key = certs::certificate_public_key(&ec).unwrap();
    assert_eq!((ec_key.len(), ec_key[0]), (65, 0x04));
    assert_eq!(certs::certificate_public_key(&v1).unwrap(), ec_key, "same key, v1 layout");
    assert_eq!(certs::certificate_public_key(&rsa), Err(Error::Mismatch));

    let not_cert = Error::InvalidArgument("cert is not a DER X.509 certificate");
    let mut trailing = ec.clone();
    trailing.push(0);
    let truncated = &ec[..ec.len() - 1];
    // The TBSCertificate alone (a SEQUENCE, but not a certificate).
    let tbs_len = usize::from(ec[6]) << 8 | usize::from(ec[7]);
    let tbs = &ec[4..8 + tbs_len];
    for (what, bad) in [("trailing byte", &trailing[..]), ("truncated", truncated), ("tbs only", tbs), ("empty", &[][..]),
        ("a CSR", &std::fs::read(d.join("v1.csr")).unwrap()[..])] {
        assert_eq!(certs::certificate_public_key(bad), Err(not_cert.clone()), "{what}");
    }
    // Every single-byte corruption of the header area is refused or still
    // yields a certificate (never a panic).
    for i in 0..64.min(ec.len()) {
        let mut m = ec.clone();
        m[i] ^= 0xFF;
        let _ = certs::certificate_public_key(&m);
    }
}

// ---- remote commands (docs/remote.md) ---------------------------------------

/// The server side of the remote tests, with RustCrypto: the cloud key
/// signs commands and opens replies. Ephemeral keys and IVs come from a
/// counter through SHA-256 (no RNG crate needed; fresh per message).
struct CloudServer {
    key: p256::SecretKey,
    kid: tfmprov_cose::Kid,
    n: u64,
}

fn kid_of_point(point: &[u8; 65]) -> tfmprov_cose::Kid {
    use sha2::Digest;
    let d: [u8; 32] = sha2::Sha256::digest(tfmprov_cose::p256_spki_der(point)).into();
    tfmprov_cose::kid_from_spki_digest(&d)
}

fn point_of(pk: &p256::PublicKey) -> [u8; 65] {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    pk.to_encoded_point(false).as_bytes().try_into().unwrap()
}

impl CloudServer {
    fn new(key: p256::SecretKey) -> CloudServer {
        let public = point_of(&key.public_key());
        CloudServer { kid: kid_of_point(&public), key, n: 0 }
    }

    fn fresh(&mut self, what: &str) -> [u8; 32] {
        use sha2::Digest;
        self.n += 1;
        sha2::Sha256::digest(format!("{what} {}", self.n)).into()
    }

    /// A command envelope for `device` to `kak`, signed by `signer` (the
    /// cloud key unless given).
    fn command(&mut self, device: &str, kak: &[u8; 65], body: &Value, signer: Option<&p256::SecretKey>) -> Vec<u8> {
        let mut pt = Vec::new();
        ciborium::ser::into_writer(body, &mut pt).unwrap();
        let eph = p256::SecretKey::from_slice(&self.fresh("eph")).unwrap();
        let iv: [u8; 12] = self.fresh("iv")[..12].try_into().unwrap();
        let crypto = tfmprov_cose::SessionCrypto::new(
            move |peer: &[u8; 65]| Ok((point_of(&eph.public_key()), ecdh_with(&eph)(peer)?)),
            hkdf_sha256,
            gcm_encrypt,
            move |buf: &mut [u8]| {
                buf.copy_from_slice(&iv);
                Ok(())
            },
        );
        let sk = p256::ecdsa::SigningKey::from(signer.unwrap_or(&self.key));
        tfmprov_cose::build_envelope(tfmprov_cose::Direction::Command, device, &pt, &kid_of_point(kak), kak, &self.kid, crypto, |tbs| {
            use p256::ecdsa::signature::Signer;
            let s: p256::ecdsa::Signature = sk.sign(tbs);
            Ok(s.to_bytes().into())
        })
        .unwrap()
    }

    /// Opens a reply for `device`: (signer kid if signed, the reply map).
    /// A signed reply is verified with `signer_pub`.
    fn open_reply(&self, device: &str, msg: &[u8], signer_pub: Option<&[u8]>) -> (Option<tfmprov_cose::Kid>, Value) {
        let env = tfmprov_cose::parse_envelope(tfmprov_cose::Direction::Reply, device, msg).unwrap();
        assert_eq!(env.recipient_kid, self.kid);
        match signer_pub {
            Some(p) => env.verify(verifier(p)).unwrap(),
            None => assert!(!env.is_signed(), "expected an unsigned reply"),
        }
        let pt = env.open(ecdh_with(&self.key), hkdf_sha256, gcm_decrypt).unwrap();
        (env.signer_kid, ciborium::de::from_reader(pt.as_slice()).unwrap())
    }
}

fn command_map(cseq: u64, cid: u8, op: &str, args: Vec<(&str, Value)>) -> Value {
    map(vec![("cseq", id(cseq)), ("cid", Value::Bytes(vec![cid; 16])), ("op", Value::Text(op.into())), ("args", map(args))])
}

/// A device with the factory keys (telemetry key 3) and a cloud certificate.
fn remote_setup(factory: bool) -> (Sim, CloudServer, [u8; 65]) {
    let mut s = Sim::new();
    if factory {
        s.dev().shell(&["factory"]).unwrap();
    }
    let (cloud, _) = cloud_identity(&mut s);
    let kak = s.dev().kak_public().unwrap();
    (s, CloudServer::new(cloud), kak)
}

#[test]
fn remote_commands_run_once_in_order_and_are_signed() {
    let (mut s, mut cloud, kak) = remote_setup(true);
    let key3 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();

    // status of key 3: signed by the telemetry key (3).
    let cmd = cloud.command("dev-1", &kak, &command_map(1, 0xA1, "status", vec![("id", id(3))]), None);
    let reply = s.dev().remote_command(&cmd, None).unwrap();
    let (signer, r) = cloud.open_reply("dev-1", &reply, Some(&key3));
    assert_eq!(signer, Some(kid_of_point(&key3)));
    assert_eq!((uint(&r, "cseq"), bytes(&r, "cid"), uint(&r, "rc")), (1, vec![0xA1; 16], 0));
    assert_eq!(get(&r, "res"), Some(&map(vec![("id", id(3)), ("present", Value::Bool(true))])));

    // generate at an auto ID: the reply is signed by the new key.
    let new_id = s.dev().psa().lowest_free_id().unwrap();
    let gen = cloud.command("dev-1", &kak, &command_map(2, 0xA2, "generate", vec![]), None);
    let reply = s.dev().remote_command(&gen, None).unwrap();
    let env = tfmprov_cose::parse_envelope(tfmprov_cose::Direction::Reply, "dev-1", &reply).unwrap();
    let new_pub = s.dev().psa().public_key(new_id).unwrap();
    assert_eq!(env.signer_kid, Some(kid_of_point(&new_pub)), "proof of possession");
    let (_, r) = cloud.open_reply("dev-1", &reply, Some(&new_pub));
    assert_eq!(uint(&r, "rc"), 0);
    assert_eq!(bytes(get(&r, "res").unwrap(), "pub"), new_pub.to_vec());

    // The same command again (a QoS 1 redelivery): the same reply, not run again.
    let next_free = s.dev().psa().lowest_free_id().unwrap();
    assert_eq!(s.dev().remote_command(&gen, None).unwrap(), reply);
    assert_eq!(s.dev().psa().lowest_free_id().unwrap(), next_free, "no second key");
    // ... also after a restart.
    s.restart();
    assert_eq!(s.dev().remote_command(&gen, None).unwrap(), reply);
    assert_eq!(s.dev().psa().lowest_free_id().unwrap(), next_free, "no second key");

    // An older cseq (a new, valid command): STALE, nothing done.
    let old = cloud.command("dev-1", &kak, &command_map(1, 0xA3, "destroy", vec![("id", id(3))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&old, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), u64::from(remote::RC_STALE));
    assert!(s.dev().psa().key_present(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap());

    // The group return codes come through: key 9 does not exist.
    let cmd = cloud.command("dev-1", &kak, &command_map(3, 0xA4, "public", vec![("id", id(9))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&cmd, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), u64::from(GroupRc::NotFound.code()));
    assert_eq!(get(&r, "res"), None);
    // An op no group implements.
    let cmd = cloud.command("dev-1", &kak, &command_map(4, 0xA5, "format", vec![]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&cmd, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), 1);
}

#[test]
fn bad_remote_commands_change_nothing() {
    let (mut s, mut cloud, kak) = remote_setup(true);
    let destroy = command_map(1, 0xB1, "destroy", vec![("id", id(3))]);
    let other = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
    let other_kak = point_of(&p256::SecretKey::from_slice(&[0x43; 32]).unwrap().public_key());
    let mut flipped = cloud.command("dev-1", &kak, &destroy, None);
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("signed by another key", cloud.command("dev-1", &kak, &destroy, Some(&other))),
        ("for another device", cloud.command("dev-2", &kak, &destroy, None)),
        ("one bit flipped", flipped),
        ("encrypted to another key", cloud.command("dev-1", &other_kak, &destroy, None)),
        ("not COSE", b"destroy 3".to_vec()),
    ];
    for (what, msg) in bad {
        let reply = s.dev().remote_command(&msg, None).unwrap();
        let (signer, r) = cloud.open_reply("dev-1", &reply, None);
        assert_eq!(signer, None, "{what}: unsigned");
        assert_eq!(r, map(vec![("rc", id(u64::from(remote::RC_BAD_COMMAND)))]), "{what}");
        assert!(s.dev().psa().key_present(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap(), "{what}: key 3 kept");
    }
    // A command with a bad map inside a good envelope: refused the same way.
    let broken = cloud.command("dev-1", &kak, &map(vec![("cseq", id(1)), ("op", Value::Text("status".into()))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&broken, None).unwrap(), None);
    assert_eq!(uint(&r, "rc"), u64::from(remote::RC_BAD_COMMAND));
    // None of them used up a cseq: the real cseq 1 still runs.
    let ok = cloud.command("dev-1", &kak, &command_map(1, 0xB2, "status", vec![("id", id(3))]), None);
    let key3 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&ok, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), 0);
}

#[test]
fn a_device_without_keys_answers_unsigned_then_with_its_first_key() {
    let (mut s, mut cloud, kak) = remote_setup(false);
    let cmd = cloud.command("dev-1", &kak, &command_map(1, 0xC1, "status", vec![("id", id(5))]), None);
    let reply = s.dev().remote_command(&cmd, None).unwrap();
    assert_eq!(&reply[..2], [0xd8, 0x60], "bare COSE_Encrypt");
    let (_, r) = cloud.open_reply("dev-1", &reply, None);
    assert_eq!(bytes(&r, "cid"), vec![0xC1; 16], "the cid authenticates it to the server");
    assert_eq!(get(&r, "res"), Some(&map(vec![("id", id(5)), ("present", Value::Bool(false))])));
    // The seed's "request": the first key, generated remotely, signs its reply.
    let gen = cloud.command("dev-1", &kak, &command_map(2, 0xC2, "generate", vec![("id", id(5))]), None);
    let reply = s.dev().remote_command(&gen, None).unwrap();
    let key5 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(5).unwrap()).unwrap();
    let (signer, r) = cloud.open_reply("dev-1", &reply, Some(&key5));
    assert_eq!(signer, Some(kid_of_point(&key5)));
    assert_eq!(uint(&r, "rc"), 0);
}

#[test]
fn no_cloud_certificate_is_a_clear_error() {
    let mut s = Sim::new();
    assert!(matches!(s.dev().remote_command(b"anything", None), Err(Error::Psa(tfmprov_psa::Error::NotFound(_)))));
}

#[test]
fn smp_reads_the_key_agreement_key() {
    let mut s = Sim::new();
    let r = s.req(Op::Read, KEYS, 4, map(vec![]));
    assert_eq!(uint(&r, "id"), 0x3E00_0005);
    let public = bytes(&r, "pub");
    assert_eq!(public.len(), 65);
    assert_eq!(public, s.dev().kak_public().unwrap().to_vec(), "created once, then the same");
    // Read only; not a device key for the other commands.
    let (_, v) = s.raw(Op::Write, KEYS, 4, &[0xa0]);
    assert_eq!(get(&v, "rc").and_then(|x| x.as_integer()).map(|i| u64::try_from(i).unwrap()), Some(MgmtErr::ENotSup as u64));
    let r = s.req(Op::Read, KEYS, 1, map(vec![("id", id(0x3E00_0005))]));
    assert_eq!(group_rc(&r, KEYS), Some(GroupRc::InvalidArgument.code().into()));
}

#[test]
fn use_key_switches_telemetry_for_good_and_only_to_a_certified_key() {
    let (mut s, mut cloud, kak) = remote_setup(true);
    let key = |n: u64| tfmprov_psa::ids::DeviceKeyId::new(n).unwrap();
    let key3 = s.dev().psa().public_key(key(3)).unwrap();
    s.dev().session_message(0).unwrap();
    assert!(s.dev().session_id().is_some());
    let gen = cloud.command("dev-1", &kak, &command_map(1, 0xD1, "generate", vec![("id", id(0x30))]), None);
    s.dev().remote_command(&gen, None).unwrap();
    let key30 = s.dev().psa().public_key(key(0x30)).unwrap();

    // No certificate for key 0x30 yet: refused (not found), nothing changes.
    let early = cloud.command("dev-1", &kak, &command_map(2, 0xD2, "use-key", vec![("id", id(0x30))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&early, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), u64::from(GroupRc::NotFound.code()));
    let d = tfmprov_cose::parse_data(&s.dev().data_message(b"x").unwrap()).unwrap();
    assert_eq!(d.kid, kid_of_point(&key3), "still key 3");
    assert!(s.dev().session_id().is_some(), "session kept");
    // Not a device key ID, or no such key: refused with their codes.
    let bad = cloud.command("dev-1", &kak, &command_map(3, 0xD3, "use-key", vec![("id", id(0x3E00_0005))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&bad, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), u64::from(GroupRc::InvalidArgument.code()));
    let none = cloud.command("dev-1", &kak, &command_map(4, 0xD4, "use-key", vec![]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&none, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), u64::from(GroupRc::InvalidArgument.code()));

    // Its certificate stored: switched, the previous key told, the session ended.
    let csr = bytes(&s.req(Op::Write, CSR, 0, map(vec![("id", id(0x30)), ("cn", Value::Text("dev-1".into()))])), "csr");
    let cert = issue_with_openssl(&s, &csr, "k30");
    assert_eq!(store_cert(&mut s, 0x30, &cert), None);
    let use30 = cloud.command("dev-1", &kak, &command_map(5, 0xD5, "use-key", vec![("id", id(0x30))]), None);
    // Its reply is signed by the key it switched to.
    let (signer, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&use30, None).unwrap(), Some(&key30));
    assert_eq!((signer, uint(&r, "rc")), (Some(kid_of_point(&key30)), 0));
    assert_eq!(get(&r, "res"), Some(&map(vec![("id", id(0x30)), ("prev", id(3))])));
    assert_eq!(s.dev().session_id(), None, "the next session is signed by the new key");
    let d = tfmprov_cose::parse_data(&s.dev().data_message(b"x").unwrap()).unwrap();
    assert_eq!(d.kid, kid_of_point(&key30));
    d.verify(verifier(&key30)).unwrap();

    // For good: after a restart, and whatever the caller configures.
    s.restart();
    s.dev().set_telemetry_key(key(3));
    let d = tfmprov_cose::parse_data(&s.dev().data_message(b"x").unwrap()).unwrap();
    assert_eq!(d.kid, kid_of_point(&key30), "the rotation's choice survives a reboot");
    let session = tfmprov_cose::parse_session(&s.dev().session_message(1).unwrap()).unwrap();
    assert_eq!(session.device_kid, kid_of_point(&key30));
    // Replies are signed by the new key now; the old one can go.
    let destroy = cloud.command("dev-1", &kak, &command_map(6, 0xD6, "destroy", vec![("id", id(3))]), None);
    let (signer, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&destroy, None).unwrap(), Some(&key30));
    assert_eq!((signer, uint(&r, "rc")), (Some(kid_of_point(&key30)), 0));
}

#[test]
fn an_expired_command_is_refused_when_the_device_knows_the_time() {
    let (mut s, mut cloud, kak) = remote_setup(true);
    let key3 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    let with_exp = |cseq: u64, cid: u8, exp: u64| {
        map(vec![
            ("cseq", id(cseq)),
            ("cid", Value::Bytes(vec![cid; 16])),
            ("exp", id(exp)),
            ("op", Value::Text("generate".into())),
            ("args", map(vec![("id", id(0x40))])),
        ])
    };
    let present = |s: &mut Sim| s.dev().psa().key_present(tfmprov_psa::ids::DeviceKeyId::new(0x40).unwrap()).unwrap();
    // exp 1000 s, now 1001 s: refused (signed), nothing done.
    let late = cloud.command("dev-1", &kak, &with_exp(1, 0xE1, 1000), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&late, Some(1001)).unwrap(), Some(&key3));
    assert_eq!((uint(&r, "cseq"), uint(&r, "rc")), (1, u64::from(remote::RC_EXPIRED)));
    assert!(!present(&mut s));
    // Its cseq is not used up: a fresh command under the same cseq runs.
    let fresh = cloud.command("dev-1", &kak, &with_exp(1, 0xE2, 2000), None);
    let reply = s.dev().remote_command(&fresh, Some(1001)).unwrap();
    let key40 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(0x40).unwrap()).unwrap();
    let (_, r) = cloud.open_reply("dev-1", &reply, Some(&key40));
    assert_eq!(uint(&r, "rc"), 0);
    // Exactly at exp still runs; without a clock, exp is not checked.
    let at = cloud.command("dev-1", &kak, &map(vec![("cseq", id(2)), ("cid", Value::Bytes(vec![0xE3; 16])), ("exp", id(1001)), ("op", Value::Text("status".into())), ("args", map(vec![("id", id(3))]))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&at, Some(1001)).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), 0);
    let old = cloud.command("dev-1", &kak, &map(vec![("cseq", id(3)), ("cid", Value::Bytes(vec![0xE4; 16])), ("exp", id(5)), ("op", Value::Text("status".into())), ("args", map(vec![("id", id(3))]))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&old, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), 0, "no clock: cseq alone bounds it");
    // exp of the wrong type: a bad command.
    let bad = cloud.command("dev-1", &kak, &map(vec![("cseq", id(4)), ("cid", Value::Bytes(vec![0xE5; 16])), ("exp", Value::Text("soon".into())), ("op", Value::Text("status".into())), ("args", map(vec![]))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&bad, Some(1001)).unwrap(), None);
    assert_eq!(uint(&r, "rc"), u64::from(remote::RC_BAD_COMMAND));
}

#[test]
fn the_kak_announcement_is_signed_by_the_telemetry_key() {
    let (mut s, _, kak) = remote_setup(true);
    let key3 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    let a1 = tfmprov_cose::parse_kak_announcement("dev-1", &s.dev().kak_announcement().unwrap()).unwrap();
    let a2 = tfmprov_cose::parse_kak_announcement("dev-1", &s.dev().kak_announcement().unwrap()).unwrap();
    assert_eq!((a1.kak, a1.signer_kid), (kak, kid_of_point(&key3)));
    a1.verify(verifier(&key3)).unwrap();
    assert!(a2.seq > a1.seq, "ordered by the device's seq");
    // No telemetry key: no announcement (nothing could vouch for it).
    drop(s); // one Sim at a time (they share the process-global PSA)
    let mut bare = Sim::new();
    assert!(matches!(bare.dev().kak_announcement(), Err(Error::Psa(tfmprov_psa::Error::NotFound(_)))));
}

/// The walker of `certificate_public_key` against `der`'s typed decoders
/// (`subject_public_key_info`, what it replaced on the device): the same
/// key or both a refusal, on real certificates and on every byte of them
/// changed to a few values.
#[test]
fn the_public_key_walk_agrees_with_der() {
    let s = Sim::new();
    let d = s.dir.path();
    let make = |args: &[&str], name: &str| -> Vec<u8> {
        let der = d.join(format!("{name}.der"));
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-outform", "DER", "-out", der.to_str().unwrap()]);
        openssl(&full);
        std::fs::read(der).unwrap()
    };
    let ec = make(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", d.join("k.pem").to_str().unwrap(), "-subj", "/CN=w", "-days", "1"], "ec");
    let rsa = make(&["req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", d.join("r.pem").to_str().unwrap(),
        "-subj", "/CN=r", "-days", "1"], "rsa");
    let oracle = |c: &[u8]| -> Result<Vec<u8>, ()> {
        let spki = certs::subject_public_key_info(c).map_err(drop)?;
        if spki.algorithm.oid != const_oid::db::rfc5912::ID_EC_PUBLIC_KEY {
            return Err(());
        }
        spki.subject_public_key.as_bytes().map(<[u8]>::to_vec).ok_or(())
    };
    // The SubjectPublicKeyInfo a key pin hashes: the walker's slice of the
    // certificate equals what `der` decodes and encodes again.
    let spki_oracle = |c: &[u8]| -> Result<Vec<u8>, ()> {
        use der::Encode;
        certs::subject_public_key_info(c).map_err(drop)?.to_der().map_err(drop)
    };
    let mut compared = 0;
    for cert in [&ec, &rsa] {
        assert_eq!(certs::certificate_public_key(cert).map(<[u8]>::to_vec).map_err(drop), oracle(cert));
        assert!(spki_oracle(cert).is_ok());
        assert_eq!(certs::certificate_spki(cert).map(<[u8]>::to_vec).map_err(drop), spki_oracle(cert));
        for i in 0..cert.len() {
            for v in [0x00, 0x01, 0x1f, 0x30, 0x7f, 0x80, 0x81, 0x82, 0xa0, 0xff, cert[i] ^ 0x01, cert[i].wrapping_sub(1)] {
                let mut m = cert.clone();
                m[i] = v;
                let ours = certs::certificate_public_key(&m).map(<[u8]>::to_vec).map_err(drop);
                assert_eq!(ours, oracle(&m), "byte {i} = {v:#04x}");
                let spki = certs::certificate_spki(&m).map(<[u8]>::to_vec).map_err(drop);
                assert_eq!(spki, spki_oracle(&m), "SPKI, byte {i} = {v:#04x}");
                compared += 1;
            }
            let cut = &cert[..i];
            assert_eq!(certs::certificate_public_key(cut).map(<[u8]>::to_vec).map_err(drop), oracle(cut), "cut at {i}");
            assert!(certs::certificate_spki(cut).is_err(), "cut at {i}");
        }
    }
    assert!(compared > 5000, "{compared}");
}

/// The largest remote messages (store-cert and get-cert of a certificate
/// of the largest size TF-M stores) fit [`remote::MAX_ENVELOPE_LEN`], the
/// firmware's default MQTT command buffer.
#[test]
fn the_largest_remote_messages_fit_the_command_buffer() {
    let (mut s, mut cloud, kak) = remote_setup(true);
    let key3 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    let csr3 = bytes(&s.req(Op::Write, CSR, 0, map(vec![("id", id(3)), ("cn", Value::Text("dev-1".into()))])), "csr");
    let largest = issue_exact(&s, &csr3, "largest", tfmprov_psa::MAX_BLOB_LEN);
    let store = command_map(1, 0xC1, "store-cert", vec![("id", id(3)), ("cert", Value::Bytes(largest.clone()))]);
    let cmd = cloud.command("dev-1", &kak, &store, None);
    let reply = s.dev().remote_command(&cmd, None).unwrap();
    assert_eq!(uint(&cloud.open_reply("dev-1", &reply, Some(&key3)).1, "rc"), 0);
    let fetch = cloud.command("dev-1", &kak, &command_map(2, 0xC2, "get-cert", vec![("id", id(3))]), None);
    let reply = s.dev().remote_command(&fetch, None).unwrap();
    let (_, r) = cloud.open_reply("dev-1", &reply, Some(&key3));
    assert_eq!(bytes(get(&r, "res").unwrap(), "cert"), largest);
    // A read keeps no reply (the record is its cseq alone): a copy (a QoS 1
    // redelivery) reads it again, also after a restart; the record still
    // refuses an older cseq.
    let record = s.dev().psa().load_state(tfmprov_psa::StateId::Remote).unwrap().unwrap();
    assert_eq!(record, 2u64.to_be_bytes());
    for restart in [false, true] {
        if restart {
            s.restart();
        }
        let again = s.dev().remote_command(&fetch, None).unwrap();
        let (_, r) = cloud.open_reply("dev-1", &again, Some(&key3));
        assert_eq!((uint(&r, "cseq"), uint(&r, "rc")), (2, 0));
        assert_eq!(bytes(get(&r, "res").unwrap(), "cert"), largest);
    }
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&cmd, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), u64::from(remote::RC_STALE));
    eprintln!("largest command {} B, largest reply {} B", cmd.len(), reply.len());
    assert!(cmd.len() <= remote::MAX_ENVELOPE_LEN, "command {} B", cmd.len());
    assert!(reply.len() <= remote::MAX_ENVELOPE_LEN, "reply {} B", reply.len());
}

// ---------------------------------------------------------------------------
// The vault (issue 15): the audit log of key operations, and the counters
// and RNG record in the secure partition or the non-secure fallback.
// ---------------------------------------------------------------------------

/// The audit log over SMP (group 64, command 5), decoded by the host's
/// decoder.
fn audit_of(s: &mut Sim, from: Option<u64>) -> tfmprov_smp::AuditLog {
    let body = match from {
        Some(f) => map(vec![("from", id(f))]),
        None => map(vec![]),
    };
    let r = s.req(Op::Read, KEYS, 5, body);
    tfmprov_smp::AuditLog::decode(&bytes(&r, "log")).unwrap_or_else(|e| panic!("{e:?} in {r:?}"))
}

/// `(op, key id, rc)` of each entry, in order.
fn audit_ops(log: &tfmprov_smp::AuditLog) -> Vec<(u8, u32, i32)> {
    log.records().unwrap().iter().map(|r| r.what.expect("an intact entry")).collect()
}

fn audit_log_shows_each_key_operation_with_its_result_in(home: Home) {
    let mut s = Sim::with(home);
    let log = audit_of(&mut s, None);
    assert_eq!((log.secure, log.oldest, log.next, log.missed), (home != Home::NonSecure, 0, 1, 0));
    assert!(log.entries.is_empty());

    let req = |s: &mut Sim, grp: u16, cmd: u8, body: Vec<(&str, Value)>| s.req(Op::Write, grp, cmd, map(body));
    assert_eq!(uint(&req(&mut s, KEYS, 0, vec![]), "id"), 0x10000);
    req(&mut s, KEYS, 0, vec![("id", id(2)), ("priv", Value::Bytes(PRIV.to_vec()))]);
    assert_eq!(group_rc(&req(&mut s, KEYS, 0, vec![("id", id(2))]), KEYS), Some(3), "exists");
    req(&mut s, KEYS, 0, vec![("id", id(2)), ("replace", Value::Bool(true))]);
    req(&mut s, KEYS, 0, vec![("id", id(2)), ("priv", Value::Bytes(PRIV.to_vec())), ("replace", Value::Bool(true))]);
    req(&mut s, CSR, 0, vec![("id", id(2)), ("cn", Value::Text("dev-1".into()))]);
    assert_eq!(group_rc(&req(&mut s, CSR, 0, vec![("id", id(9)), ("cn", Value::Text("x".into()))]), CSR), Some(2));
    let junk = vec![("id", id(2)), ("cert", Value::Bytes(b"not a certificate".to_vec()))];
    assert_eq!(group_rc(&req(&mut s, CERTS, 0, junk), CERTS), Some(4));
    assert_eq!(req(&mut s, KEYS, 3, vec![("id", id(2))]), map(vec![]));
    assert_eq!(group_rc(&req(&mut s, KEYS, 3, vec![("id", id(9))]), KEYS), Some(2));
    // Reads, and requests refused before any key is touched, are not key
    // operations: not logged.
    s.req(Op::Read, KEYS, 1, map(vec![("id", id(0x10000))]));
    s.req(Op::Read, KEYS, 2, map(vec![("id", id(2))]));
    assert_eq!(group_rc(&req(&mut s, KEYS, 0, vec![("id", id(0x4000_0000))]), KEYS), Some(4));

    let expected = vec![(1, 0x10000, 0), (2, 2, 0), (1, 2, 3), (3, 2, 0), (4, 2, 0), (6, 2, 0), (6, 9, 2), (7, 2, 4), (5, 2, 0), (5, 9, 2)];
    let log = audit_of(&mut s, None);
    assert_eq!(audit_ops(&log), expected);
    assert_eq!((log.oldest, log.next, log.missed), (1, 11, 0));
    assert_eq!(log.records().unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<u64>>());
    assert_eq!(audit_ops(&audit_of(&mut s, Some(8))), expected[7..]);
    assert!(audit_of(&mut s, Some(11)).entries.is_empty());

    // The shell prints the same log.
    let text = s.dev().shell(&["prov", "audit", "7"]).unwrap();
    let heading = if home == Home::NonSecure { "(non-secure fallback)" } else { "(secure partition)" };
    assert!(text.starts_with(&format!("audit log {heading}: oldest #1, next #11, missed 0\n")), "{text}");
    assert!(text.contains("#7 csr              id 0x00000009 rc 2\n"), "{text}");
    assert!(text.contains("#8 store-cert       id 0x00000002 rc 4\n"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");

    // Kept across a restart; the sample set's keys are logged too.
    s.restart();
    s.dev().shell(&["factory"]).unwrap();
    let log = audit_of(&mut s, Some(11));
    assert_eq!(audit_ops(&log), vec![(2, 2, 0), (2, 3, 0)], "0x10000 kept, 2 and 3 imported");

    // The ring keeps the newest 64, in order.
    for _ in 0..60 {
        req(&mut s, CSR, 0, vec![("id", id(0x77)), ("cn", Value::Text("x".into()))]);
    }
    let log = audit_of(&mut s, None);
    assert_eq!((log.oldest, log.next, log.entries.len()), (9, 73, 64));
    assert_eq!(log.records().unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), (9..73).collect::<Vec<u64>>());
    assert_eq!(audit_ops(&log).last(), Some(&(6, 0x77, 2)));
}

#[test]
fn audit_log_shows_each_key_operation_with_its_result() {
    audit_log_shows_each_key_operation_with_its_result_in(Home::NonSecure);
}

#[test]
fn audit_log_shows_each_key_operation_with_its_result_in_the_partition() {
    audit_log_shows_each_key_operation_with_its_result_in(Home::Partition);
}

/// The fallback's ring in Protected Storage (Mbed TLS's ITS file on the
/// host): a damaged entry is reported in its place and not trusted; a
/// damaged header stops the log (never reset), the key operations still
/// run, and the log says how many entries it missed once it reads again.
#[test]
fn a_damaged_audit_ring_is_reported_and_never_trusted() {
    let mut s = Sim::new();
    for n in 0..5u64 {
        s.req(Op::Write, CSR, 0, map(vec![("id", id(0x70 + n)), ("cn", Value::Text("x".into()))]));
    }
    // Mbed TLS's ITS file: a 16-byte header, then the ring (20-byte header,
    // 24-byte entries).
    let file = s.dir.path().join(format!("{:016x}.psa_its", vault::AUDIT_UID));
    let pristine = std::fs::read(&file).unwrap();
    let mut damaged = pristine.clone();
    damaged[16 + 20 + 2 * 24 + 9] ^= 0x20; // entry #3's key ID
    std::fs::write(&file, &damaged).unwrap();
    let log = audit_of(&mut s, None);
    let records = log.records().unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(records[2], tfmprov_smp::AuditRecord { seq: 3, what: None });
    assert_eq!(records[3].what, Some((6, 0x73, 2)), "its neighbours stay trusted");
    assert!(s.dev().shell(&["audit"]).unwrap().contains("#3 corrupted record (not trusted)\n"));

    // The header: nothing is read or appended, the operation still runs.
    let mut damaged = pristine.clone();
    damaged[16 + 5] ^= 0x01;
    std::fs::write(&file, &damaged).unwrap();
    assert_eq!(group_rc(&s.req(Op::Read, KEYS, 5, map(vec![])), KEYS), Some(6));
    let err = s.dev().shell(&["audit"]).unwrap_err().to_string();
    assert_eq!(err, "secure state: a stored record is corrupted (not trusted)");
    let r = s.req(Op::Write, KEYS, 0, map(vec![]));
    assert_eq!(uint(&r, "id"), 0x10000, "the key operation is not refused");
    assert_eq!(std::fs::read(&file).unwrap(), damaged, "the damaged ring is left as evidence");
    std::fs::write(&file, &pristine).unwrap();
    let log = audit_of(&mut s, None);
    assert_eq!((log.next, log.missed), (6, 1));
}

/// A device that ran without the partition keeps its `seq` and session
/// ids when it gets one: the state records are carried into the
/// partition's counters and removed. A non-secure image that writes a
/// lower record later cannot take them back.
#[test]
fn counters_move_into_the_partition_and_never_go_back() {
    use tfmprov_psa::StateId;
    let mut s = Sim::new();
    s.dev().shell(&["factory"]).unwrap();
    let public = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    let (cloud, _) = cloud_identity(&mut s);
    let seq_of = |s: &mut Sim| tfmprov_cose::parse_data(&s.dev().data_message(b"x").unwrap()).unwrap().seq;
    let session_of = |s: &mut Sim| open_session(&s.dev().session_message(0).unwrap(), &public, &cloud).0;
    for _ in 0..40 {
        seq_of(&mut s);
    }
    let last = seq_of(&mut s);
    assert_eq!(session_of(&mut s), 1);
    assert_eq!(session_of(&mut s), 2);
    let reserved = s.dev().psa().load_state(StateId::Seq).unwrap().unwrap();
    assert_eq!(reserved, (2 * telemetry::SEQ_BLOCK).to_be_bytes(), "two blocks used");

    s.restart_as(Home::Partition);
    assert_eq!(s.dev().psa().load_state(StateId::Seq).unwrap(), None, "carried over, removed");
    assert_eq!(s.dev().psa().load_state(StateId::SessionId).unwrap(), None);
    let first = seq_of(&mut s);
    assert!(first > last && first >= 2 * telemetry::SEQ_BLOCK, "{first} after {last}");
    assert_eq!(session_of(&mut s), 3);

    // A rollback attempt from the non-secure side: lower records.
    s.dev().psa().store_state(StateId::Seq, &0u64.to_be_bytes()).unwrap();
    s.dev().psa().store_state(StateId::SessionId, &0u32.to_be_bytes()).unwrap();
    s.restart();
    let after = seq_of(&mut s);
    assert!(after > first, "{after} after {first}");
    assert_eq!(session_of(&mut s), 4);
    // Each restart skips the rest of its reserved block, as before.
    s.restart();
    assert!(seq_of(&mut s) >= after - after % telemetry::SEQ_BLOCK + telemetry::SEQ_BLOCK);
}

/// With the partition, the boot RNG check is the partition's: a stream
/// that repeats across boots refuses random keys, and importing still
/// works.
#[test]
fn the_partitions_rng_record_decides_the_rng_health() {
    let mut s = Sim::with(Home::PartitionRepeatingRng);
    assert_eq!(s.dev().rng_health(), tfmprov_psa::rng::RngHealth::FirstBoot);
    s.restart();
    assert_eq!(s.dev().rng_health(), tfmprov_psa::rng::RngHealth::Repeating);
    assert_eq!(group_rc(&s.req(Op::Write, KEYS, 0, map(vec![])), KEYS), Some(6));
    let r = s.req(Op::Write, KEYS, 0, map(vec![("id", id(2)), ("priv", Value::Bytes(PRIV.to_vec()))]));
    assert_eq!(uint(&r, "id"), 2);
    s.restart_as(Home::Partition);
    assert_eq!(s.dev().rng_health(), tfmprov_psa::rng::RngHealth::Ok);
    assert_eq!(uint(&s.req(Op::Write, KEYS, 0, map(vec![])), "id"), 0x10000);
    // The refused generation is in the log with its result.
    assert_eq!(audit_ops(&audit_of(&mut s, None)), vec![(1, 0, 6), (2, 2, 0), (1, 0x10000, 0)]);
}

/// The remote `audit` op answers the same log, and `use-key` is logged
/// with its result (here refused: key 2 has no certificate).
#[test]
fn remote_audit_and_use_key_are_in_the_log() {
    let (mut s, mut cloud, kak) = remote_setup(true);
    let key3 = s.dev().psa().public_key(tfmprov_psa::ids::DeviceKeyId::new(3).unwrap()).unwrap();
    let cmd = cloud.command("dev-1", &kak, &command_map(1, 0xB1, "use-key", vec![("id", id(2))]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&cmd, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), 2);
    let cmd = cloud.command("dev-1", &kak, &command_map(2, 0xB2, "audit", vec![]), None);
    let (_, r) = cloud.open_reply("dev-1", &s.dev().remote_command(&cmd, None).unwrap(), Some(&key3));
    assert_eq!(uint(&r, "rc"), 0);
    let log = tfmprov_smp::AuditLog::decode(&bytes(get(&r, "res").unwrap(), "log")).unwrap();
    // The sample set (random at 0x10000, 2, 3), the cloud chain (root,
    // intermediate, cloud certificate), then the refused use-key.
    let chain = vec![(7, 0x3F00_0000, 0), (7, 0x3F00_0002, 0), (7, 0x3F00_0001, 0)];
    assert_eq!(audit_ops(&log), [vec![(1, 0x10000, 0), (2, 2, 0), (2, 3, 0)], chain, vec![(8, 2, 2)]].concat());
}

/// The simulator's model of TF-M's ITS counts the partition's two files
/// (counters, RNG record), which TF-M keeps in the same ITS as the keys:
/// with the partition the asset count runs out two files earlier (without
/// it, on this board's layout, the flash room ran out first).
#[test]
fn the_partitions_its_files_are_counted_like_tfm_does() {
    let fill = |home: Home| {
        let mut s = Sim::with(home);
        let mut made = 0u32;
        loop {
            let r = s.req(Op::Write, KEYS, 0, map(vec![("id", id(0x100 + u64::from(made))), ("priv", Value::Bytes(PRIV.to_vec()))]));
            match group_rc(&r, KEYS) {
                None => made += 1,
                Some(rc) => {
                    assert_eq!(rc, 5, "storage full, nothing else");
                    break;
                }
            }
            assert!(made < 100, "the model never said full");
        }
        made
    };
    let without = fill(Home::NonSecure);
    let with = fill(Home::Partition);
    use tfmprov_psa::its::{ITS_NUM_ASSETS, TFM_OWN_FILES};
    assert!(with < without, "{without} keys without the partition, {with} with it");
    assert_eq!(with as usize, ITS_NUM_ASSETS - TFM_OWN_FILES - 2, "{without} keys without the partition, {with} with it");
}
