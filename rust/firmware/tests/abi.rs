//! The C ABI, called as the Zephyr glue calls it, on the host: PSA is the
//! vendored Mbed TLS with persistent keys as files in the current directory
//! (a fresh temporary one). One process, one device: the steps run in order
//! inside one test, as a device would see them after boot.

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use tfmprov_firmware::ffi::*;
use tfmprov_firmware::*;

const DEVICE_ID: &str = "dev-abi-1";

fn cbor(value: ciborium::value::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).expect("CBOR encodes");
    out
}

fn map(entries: Vec<(&str, ciborium::value::Value)>) -> Vec<u8> {
    use ciborium::value::Value;
    cbor(Value::Map(entries.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect()))
}

fn int(v: u64) -> ciborium::value::Value {
    ciborium::value::Value::Integer(v.into())
}

struct Smp {
    rc: i32,
    rsp: TfmprovSmpRsp,
    data: Vec<u8>,
}

fn smp(group: u16, cmd: u8, op: u8, req: &[u8]) -> Smp {
    let mut data = vec![0u8; 4608];
    let mut rsp = TfmprovSmpRsp::default();
    // SAFETY: valid buffers of the given lengths.
    let rc = unsafe {
        tfmprov_smp_handle(group, cmd, op, req.as_ptr(), req.len(), data.as_mut_ptr(), data.len(), &mut rsp)
    };
    data.truncate(rsp.data_len);
    Smp { rc, rsp, data }
}

fn shell(args: &[&str]) -> (i32, String) {
    let owned: Vec<CString> = args.iter().map(|a| CString::new(*a).expect("no NUL")).collect();
    let argv: Vec<*const c_char> = owned.iter().map(|a| a.as_ptr()).collect();
    let mut out = vec![0u8; 8192];
    let mut len = usize::MAX;
    // SAFETY: argv holds argc valid C strings, out is writable.
    let rc = unsafe { tfmprov_shell(argv.len(), argv.as_ptr(), out.as_mut_ptr().cast(), out.len(), &mut len) };
    assert_eq!(out[len], 0, "text is NUL-terminated right after out_len bytes");
    (rc, String::from_utf8(out[..len].to_vec()).expect("UTF-8 text"))
}

fn strerror(rc: i32) -> String {
    // SAFETY: tfmprov_strerror returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(tfmprov_strerror(rc)) }.to_string_lossy().into_owned()
}

#[test]
fn the_c_abi_end_to_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::env::set_current_dir(dir.path()).expect("chdir");

    // Before init: SMP says EBADSTATE, the shell says so in text.
    assert_eq!(smp(64, 2, 0, &map(vec![("id", int(2))])).rc, -6);
    let (rc, text) = shell(&["prov", "factory"]);
    assert_eq!(rc, TFMPROV_ERR_NOT_INITIALIZED);
    assert!(text.contains("not initialised"), "{text}");

    // Init: NULL and an invalid device id are refused; then a first boot.
    // SAFETY: NULL is allowed and refused.
    assert_eq!(unsafe { tfmprov_init(ptr::null()) }, TFMPROV_ERR_INVALID_ARGUMENT);
    let bad = CString::new("bad id with spaces").expect("no NUL");
    // SAFETY: valid C string.
    let rc = unsafe { tfmprov_init(bad.as_ptr()) };
    assert_eq!(rc, TFMPROV_ERR_DEVICE_BASE - 4, "{}", strerror(rc));
    let id = CString::new(DEVICE_ID).expect("no NUL");
    // SAFETY: valid C string.
    assert_eq!(unsafe { tfmprov_init(id.as_ptr()) }, TFMPROV_OK);
    // SAFETY: valid C string.
    assert_eq!(unsafe { tfmprov_init(id.as_ptr()) }, TFMPROV_ERR_ALREADY_INITIALIZED);

    // Sample provisioning through the shell, twice (idempotent).
    let (rc, text) = shell(&["prov", "factory"]);
    assert_eq!(rc, TFMPROV_OK, "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("known    id 0x00000002 created pub 04"), "{text}");
    let (rc, text) = shell(&["prov", "factory"]);
    assert_eq!(rc, TFMPROV_OK);
    assert!(text.contains("id 0x00000002 kept"), "{text}");

    // keys public (read) -> id + pub; the same key the shell shows.
    let r = smp(64, 1, 0, &map(vec![("id", int(2))]));
    assert_eq!(r.rc, 0);
    assert_eq!(r.rsp.fields, TFMPROV_RSP_ID | TFMPROV_RSP_PUB);
    assert_eq!(r.rsp.id, 2);
    assert_eq!(r.data.len(), 65);
    assert_eq!(r.data[0], 0x04);
    let (_, text) = shell(&["prov", "keys", "pub", "2"]);
    assert!(text.ends_with(&hex(&r.data)), "{text}");

    // status: present / absent.
    let r = smp(64, 2, 0, &map(vec![("id", int(2))]));
    assert_eq!((r.rc, r.rsp.fields, r.rsp.present), (0, TFMPROV_RSP_ID | TFMPROV_RSP_PRESENT, true));
    let r = smp(64, 2, 0, &map(vec![("id", int(0x0FFF_FFF0))]));
    assert_eq!((r.rc, r.rsp.present), (0, false));

    // Group errors are positive DESIGN.md codes; MGMT errors negative.
    assert_eq!(smp(64, 1, 0, &map(vec![("id", int(0x0FFF_FFF0))])).rc, 2, "not found");
    assert_eq!(smp(64, 0, 2, &map(vec![("id", int(2))])).rc, 3, "exists");
    assert_eq!(smp(64, 1, 0, &map(vec![("id", int(0x1000_0002))])).rc, 4, "invalid id");
    assert_eq!(smp(64, 1, 0, &[0xFF, 0x00]).rc, -3, "malformed CBOR is EINVAL");
    assert_eq!(smp(64, 1, 0, &map(vec![])).rc, -3, "missing field is EINVAL");
    assert_eq!(smp(64, 1, 2, &map(vec![("id", int(2))])).rc, -8, "wrong op is ENOTSUP");
    assert_eq!(smp(64, 1, 7, &map(vec![("id", int(2))])).rc, -3, "op 7 is EINVAL");
    assert_eq!(smp(67, 0, 0, &map(vec![])).rc, -8, "unknown group is ENOTSUP");

    // Generate at an auto-assigned id, then destroy it: {} and absent.
    let r = smp(64, 0, 2, &map(vec![]));
    assert_eq!(r.rc, 0);
    assert!(r.rsp.id >= 0x0001_0000, "auto id {:#x}", r.rsp.id);
    let auto = u64::from(r.rsp.id);
    let r = smp(64, 3, 2, &map(vec![("id", int(auto))]));
    assert_eq!((r.rc, r.rsp.fields, r.rsp.data_len), (0, 0, 0));
    assert!(!smp(64, 2, 0, &map(vec![("id", int(auto))])).rsp.present);

    // CSR for key 3: DER SEQUENCE in data.
    let r = smp(65, 0, 2, &map(vec![("id", int(3)), ("cn", ciborium::value::Value::Text(DEVICE_ID.into()))]));
    assert_eq!(r.rc, 0);
    assert_eq!(r.rsp.fields, TFMPROV_RSP_CSR);
    assert_eq!(r.data[0], 0x30);

    // A response that does not fit the lent buffer is EMSGSIZE, not a partial copy.
    let mut small = [0u8; 10];
    let mut rsp = TfmprovSmpRsp::default();
    let req = map(vec![("id", int(2))]);
    // SAFETY: valid buffers.
    let rc = unsafe { tfmprov_smp_handle(64, 1, 0, req.as_ptr(), req.len(), small.as_mut_ptr(), small.len(), &mut rsp) };
    assert_eq!(rc, -7);
    assert_eq!(rsp.data_len, 0);

    // NULL handling.
    // SAFETY: NULL rsp is refused before anything is read.
    assert_eq!(unsafe { tfmprov_smp_handle(64, 1, 0, req.as_ptr(), req.len(), small.as_mut_ptr(), 10, ptr::null_mut()) }, -3);
    // SAFETY: NULL request with a length is refused.
    assert_eq!(unsafe { tfmprov_smp_handle(64, 1, 0, ptr::null(), 5, small.as_mut_ptr(), 10, &mut rsp) }, -3);

    // v1 translation of group codes (GroupRc::to_mgmt).
    assert_eq!(tfmprov_smp_v1_rc(2), 5);
    assert_eq!(tfmprov_smp_v1_rc(3), 6);
    assert_eq!(tfmprov_smp_v1_rc(999), 1);

    // Shell errors: text and a device code; truncation keeps NUL termination.
    let (rc, text) = shell(&["prov", "keys", "pub", "0x10000002"]);
    assert_eq!(rc, TFMPROV_ERR_DEVICE_BASE - 4, "{text}");
    assert!(text.starts_with("error:"), "{text}");
    let (rc, text) = shell(&["prov", "bogus"]);
    assert!(rc < 0 && text.contains("usage"), "{text}");
    let args = [CString::new("prov").expect("c"), CString::new("factory").expect("c")];
    let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    let mut tiny = [0xAAu8; 8];
    let mut len = 0usize;
    // SAFETY: valid argv and buffer.
    let rc = unsafe { tfmprov_shell(2, argv.as_ptr(), tiny.as_mut_ptr().cast(), tiny.len(), &mut len) };
    assert_eq!((rc, len, tiny[7]), (TFMPROV_ERR_BUFFER_TOO_SMALL, 7, 0));
    // SAFETY: argc > 0 with a NULL vector is refused.
    let rc = unsafe { tfmprov_shell(2, ptr::null(), tiny.as_mut_ptr().cast(), tiny.len(), &mut len) };
    assert_eq!(rc, TFMPROV_ERR_INVALID_ARGUMENT);

    // MQTT topics and QoS from Rust.
    let mut topic = [0u8; 64];
    // SAFETY: valid buffer.
    assert_eq!(unsafe { tfmprov_mqtt_topic(TFMPROV_MQTT_ERRORS, topic.as_mut_ptr().cast(), topic.len()) }, 0);
    let topic_str = CStr::from_bytes_until_nul(&topic).expect("NUL").to_str().expect("UTF-8");
    assert_eq!(topic_str, "prov/dev-abi-1/errors");
    let mut short = [0xAAu8; 8];
    // SAFETY: valid buffer.
    assert_eq!(unsafe { tfmprov_mqtt_topic(0, short.as_mut_ptr().cast(), short.len()) }, TFMPROV_ERR_BUFFER_TOO_SMALL);
    assert_eq!(short[0], 0, "no truncated topic");
    // SAFETY: valid buffer.
    assert_eq!(unsafe { tfmprov_mqtt_topic(9, topic.as_mut_ptr().cast(), topic.len()) }, TFMPROV_ERR_INVALID_ARGUMENT);
    assert_eq!(
        [0u8, 1, 2, 3, 4, 5, 6].map(|k| tfmprov_mqtt_qos(k)),
        [1, 2, 1, 1, 1, 1, TFMPROV_ERR_INVALID_ARGUMENT]
    );
    for (kind, want) in [(TFMPROV_MQTT_CMD, "prov/dev-abi-1/cmd"), (TFMPROV_MQTT_REPLY, "prov/dev-abi-1/reply")] {
        // SAFETY: valid buffer.
        assert_eq!(unsafe { tfmprov_mqtt_topic(kind, topic.as_mut_ptr().cast(), topic.len()) }, 0);
        assert_eq!(CStr::from_bytes_until_nul(&topic).expect("NUL").to_str().expect("UTF-8"), want);
    }

    // Remote commands: the KAK announcement is a COSE_Sign1 by key 3; it
    // does not fit 8 bytes (nothing written). A command needs the cloud
    // certificate this device lacks: an error and no reply, so the glue
    // leaves it unacknowledged. NULLs are refused.
    let mut out = vec![0u8; 4608];
    let mut out_len = 99usize;
    // SAFETY: valid buffers.
    assert_eq!(unsafe { tfmprov_mqtt_announce(out.as_mut_ptr(), out.len(), &mut out_len) }, TFMPROV_OK);
    assert_eq!(out[0], 0xD2);
    assert!(out_len > 65, "{out_len}");
    // SAFETY: valid buffers.
    assert_eq!(unsafe { tfmprov_mqtt_announce(out.as_mut_ptr(), 8, &mut out_len) }, TFMPROV_ERR_BUFFER_TOO_SMALL);
    assert_eq!(out_len, 0);
    let cmd = [0xD2u8, 0x84, 0x40, 0xA0, 0x40, 0x40];
    out_len = 99;
    // SAFETY: valid buffers.
    let rc = unsafe { tfmprov_mqtt_command(cmd.as_ptr(), cmd.len(), out.as_mut_ptr(), out.len(), &mut out_len) };
    assert_eq!(rc, TFMPROV_ERR_DEVICE_BASE - 2, "{}", strerror(rc));
    assert_eq!(out_len, 0);
    // SAFETY: NULL with a length, and a NULL out_len, are refused.
    assert_eq!(unsafe { tfmprov_mqtt_command(ptr::null(), 5, out.as_mut_ptr(), out.len(), &mut out_len) }, TFMPROV_ERR_INVALID_ARGUMENT);
    // SAFETY: as above.
    assert_eq!(unsafe { tfmprov_mqtt_command(cmd.as_ptr(), cmd.len(), out.as_mut_ptr(), out.len(), ptr::null_mut()) }, TFMPROV_ERR_INVALID_ARGUMENT);
    // SAFETY: as above.
    assert_eq!(unsafe { tfmprov_mqtt_announce(out.as_mut_ptr(), out.len(), ptr::null_mut()) }, TFMPROV_ERR_INVALID_ARGUMENT);

    tls_identity_and_broker_pin(dir.path());

    // data message: a COSE_Sign1 (tag 18 = 0xD2) over the sample payload.
    let mut payload = [0u8; 32];
    let mut n = 0usize;
    // SAFETY: valid buffers.
    assert_eq!(unsafe { tfmprov_mqtt_sample(1, 1234, payload.as_mut_ptr(), payload.len(), &mut n) }, 0);
    assert_eq!(payload[0], 0xA2);
    let mut msg = vec![0u8; 2048];
    let mut msg_len = 0usize;
    // SAFETY: valid buffers.
    let rc = unsafe { tfmprov_mqtt_next(0, payload.as_ptr(), n, msg.as_mut_ptr(), msg.len(), &mut msg_len) };
    assert_eq!(rc, 0, "{}", strerror(rc));
    assert_eq!(msg[0], 0xD2);
    assert!(msg_len > n);

    // The telemetry key: an ID outside the device-key range is invalid; an
    // absent key makes the next message fail with not found; back to 3.
    assert_eq!(tfmprov_mqtt_set_key(0x3F00_0000), TFMPROV_ERR_DEVICE_BASE - 4);
    assert_eq!(tfmprov_mqtt_set_key(0), TFMPROV_ERR_DEVICE_BASE - 4);
    assert_eq!(tfmprov_mqtt_set_key(0x0123_4567), TFMPROV_OK);
    // SAFETY: valid buffers.
    let rc = unsafe { tfmprov_mqtt_next(0, payload.as_ptr(), n, msg.as_mut_ptr(), msg.len(), &mut msg_len) };
    assert_eq!(rc, TFMPROV_ERR_DEVICE_BASE - 2, "{}", strerror(rc));
    assert_eq!(tfmprov_mqtt_set_key(3), TFMPROV_OK);

    // No session yet: due; sealed refused (no session: not found), and a
    // session needs the cloud certificate, which this device lacks.
    assert_eq!(tfmprov_mqtt_session_due(0), 1);
    // SAFETY: valid buffers.
    let rc = unsafe { tfmprov_mqtt_next(2, payload.as_ptr(), n, msg.as_mut_ptr(), msg.len(), &mut msg_len) };
    assert_eq!(rc, TFMPROV_ERR_DEVICE_BASE - 2, "{}", strerror(rc));
    let now = 5000u64.to_be_bytes();
    // SAFETY: valid buffers.
    let rc = unsafe { tfmprov_mqtt_next(1, now.as_ptr(), now.len(), msg.as_mut_ptr(), msg.len(), &mut msg_len) };
    assert!(rc < TFMPROV_ERR_DEVICE_BASE, "{}", strerror(rc));
    // SAFETY: a session message without the 8-byte clock is refused.
    let rc = unsafe { tfmprov_mqtt_next(1, ptr::null(), 0, msg.as_mut_ptr(), msg.len(), &mut msg_len) };
    assert_eq!(rc, TFMPROV_ERR_INVALID_ARGUMENT);

    // errors-topic report -> log line; garbage is described, not fatal.
    let report = map(vec![
        ("code", int(6)),
        ("reason", ciborium::value::Value::Text("replay".into())),
        ("seq", int(7)),
    ]);
    let mut line = [0u8; 128];
    // SAFETY: valid buffers.
    assert_eq!(unsafe { tfmprov_mqtt_on_error(report.as_ptr(), report.len(), line.as_mut_ptr().cast(), line.len()) }, 0);
    let line_str = CStr::from_bytes_until_nul(&line).expect("NUL").to_str().expect("UTF-8");
    assert!(line_str.contains("code 6") && line_str.contains("seq 7"), "{line_str}");
    // SAFETY: valid buffers.
    unsafe { tfmprov_mqtt_on_error([0xFFu8].as_ptr(), 1, line.as_mut_ptr().cast(), line.len()) };
    assert!(CStr::from_bytes_until_nul(&line).expect("NUL").to_str().expect("UTF-8").starts_with("undecodable"));

    // Every code has a message.
    for rc in [1, -1, -2, -3, -4, -5, -17, -25] {
        let text = strerror(rc);
        assert!(!text.is_empty() && text != "unknown error code", "{rc}: {text}");
    }
    assert_eq!(strerror(12345), "unknown error code");

    // The ABI's struct-size report is Rust's own view.
    assert_eq!(tfmprov_psa_key_attributes_size(), PSA_KEY_ATTRIBUTES_SIZE);

    state::deinit();
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn tls_cert(which: u8, cap: usize) -> (i32, Vec<u8>) {
    let mut out = vec![0u8; cap];
    let mut len = 99usize;
    // SAFETY: valid buffers.
    let rc = unsafe { tfmprov_mqtt_tls_cert(which, out.as_mut_ptr(), out.len(), &mut len) };
    out.truncate(len);
    (rc, out)
}

fn check_broker(cert: &[u8]) -> i32 {
    // SAFETY: a valid buffer.
    unsafe { tfmprov_mqtt_tls_check_broker(cert.as_ptr(), cert.len()) }
}

/// What the firmware's TLS transport asks (src/mqtt_tls.c): its certificates
/// and the broker pin check, on a PKI made with openssl (root, intermediate,
/// the broker's leaf, an impostor with the same name and CA but another key).
fn tls_identity_and_broker_pin(dir: &std::path::Path) {
    let p = |n: &str| dir.join(n).to_str().expect("UTF-8 path").to_owned();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    std::fs::write(p("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n").expect("write");
    openssl(&[&["req", "-x509"][..], &ec, &["-subj", "/CN=abi root", "-days", "1", "-keyout", &p("root.key"), "-outform", "DER", "-out", &p("root.der")]].concat());
    openssl(&[&["req"][..], &ec, &["-subj", "/CN=abi intermediate", "-keyout", &p("inter.key"), "-out", &p("inter.csr")]].concat());
    // Issued by `ca` ("root" or "inter"), from a PEM or DER request.
    let issue = |csr: &str, inform: &str, ca: &str, serial: &str, ext: Option<&str>, out: &str| {
        let (ca_cert, ca_key) = (p(&format!("{ca}.der")), p(&format!("{ca}.key")));
        let mut args = vec!["x509", "-req", "-inform", inform, "-in", csr, "-CA", &ca_cert, "-CAform", "DER",
            "-CAkey", &ca_key, "-set_serial", serial, "-days", "1", "-outform", "DER", "-out", out];
        if let Some(ext) = ext {
            args.extend(["-extfile", ext]);
        }
        openssl(&args);
        std::fs::read(out).expect("issued")
    };
    let root = std::fs::read(p("root.der")).expect("root");
    let inter = issue(&p("inter.csr"), "PEM", "root", "2", Some(&p("ca.ext")), &p("inter.der"));
    let leaf = |name: &str, serial: &str| {
        openssl(&[&["req"][..], &ec, &["-subj", "/CN=broker", "-keyout", &p(&format!("{name}.key")), "-out", &p(&format!("{name}.csr"))]].concat());
        issue(&p(&format!("{name}.csr")), "PEM", "inter", serial, None, &p(&format!("{name}.der")))
    };
    let broker = leaf("broker", "3");
    let impostor = leaf("impostor", "4");

    // The handshake key is the telemetry key.
    let mut key = 0u32;
    // SAFETY: a writable u32.
    assert_eq!(unsafe { tfmprov_mqtt_tls_key(&mut key) }, TFMPROV_OK);
    assert_eq!(key, 3);
    // SAFETY: NULL is refused.
    assert_eq!(unsafe { tfmprov_mqtt_tls_key(ptr::null_mut()) }, TFMPROV_ERR_INVALID_ARGUMENT);

    // Nothing stored: not found, nothing written; no pin to check against.
    for which in [TFMPROV_TLS_LEAF, TFMPROV_TLS_INTERMEDIATE, TFMPROV_TLS_ROOT] {
        let (rc, out) = tls_cert(which, 4096);
        assert_eq!((rc, out.len()), (TFMPROV_ERR_DEVICE_BASE - 2, 0), "{which}: {}", strerror(rc));
    }
    let rc = check_broker(&broker);
    assert_eq!(rc, TFMPROV_ERR_DEVICE_BASE - 4, "{}", strerror(rc));

    // Key 3's certificate (from its CSR), then root, intermediate and broker.
    let csr = smp(65, 0, 2, &map(vec![("id", int(3)), ("cn", ciborium::value::Value::Text(DEVICE_ID.into()))])).data;
    std::fs::write(p("k3.csr"), &csr).expect("write");
    let cert3 = issue(&p("k3.csr"), "DER", "inter", "5", None, &p("k3.der"));
    let store = |id: u64, der: &[u8]| smp(66, 0, 2, &map(vec![("id", int(id)), ("cert", ciborium::value::Value::Bytes(der.to_vec()))])).rc;
    assert_eq!(store(3, &cert3), 0);
    assert_eq!(store(0x3F00_0000, &root), 0);
    assert_eq!(store(0x3F00_0002, &inter), 0);
    let rc = check_broker(&broker);
    assert_eq!(rc, TFMPROV_ERR_DEVICE_BASE - 4, "no broker certificate yet: {}", strerror(rc));
    assert_eq!(store(0x3F00_0003, &broker), 0);

    assert_eq!(tls_cert(TFMPROV_TLS_LEAF, 4096), (TFMPROV_OK, cert3.clone()));
    assert_eq!(tls_cert(TFMPROV_TLS_INTERMEDIATE, 4096), (TFMPROV_OK, inter));
    assert_eq!(tls_cert(TFMPROV_TLS_ROOT, 4096), (TFMPROV_OK, root));
    assert_eq!(tls_cert(3, 4096).0, TFMPROV_ERR_INVALID_ARGUMENT);
    assert_eq!(tls_cert(TFMPROV_TLS_LEAF, cert3.len() - 1), (TFMPROV_ERR_BUFFER_TOO_SMALL, vec![]));
    // SAFETY: a NULL out_len is refused.
    assert_eq!(unsafe { tfmprov_mqtt_tls_cert(0, [0u8; 4].as_mut_ptr(), 4, ptr::null_mut()) }, TFMPROV_ERR_INVALID_ARGUMENT);

    assert_eq!(check_broker(&broker), TFMPROV_OK);
    let rc = check_broker(&impostor);
    assert_eq!(rc, TFMPROV_ERR_MISMATCH, "{}", strerror(rc));
    assert_eq!(check_broker(&broker[..100]), TFMPROV_ERR_DEVICE_BASE - 4);
    // SAFETY: NULL with a length is refused.
    assert_eq!(unsafe { tfmprov_mqtt_tls_check_broker(ptr::null(), 10) }, TFMPROV_ERR_INVALID_ARGUMENT);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
