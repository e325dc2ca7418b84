//! Client <-> serve_udp / serve_serial round trips, timeouts, retries, sequence matching.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{FakeDevice, TempDir, BUF_COUNT, BUF_SIZE};
use tfmprov_smp::{
    encode_body, group, handle_packet, serial, EchoRsp, GroupRc, Header, MgmtErr, Op, HEADER_LEN,
};
use tfmprov_transport::{
    serve_serial, serve_serial_ready, serve_udp, Client, Error, Link, SerialDevice,
};

const T: Duration = Duration::from_secs(3);

struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Server {
    fn stop(mut self) -> Result<(), Error> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn udp_server(handler: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static) -> (Server, Link) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = thread::spawn(move || serve_udp(socket, &s, handler));
    (
        Server {
            stop,
            thread: Some(thread),
        },
        Link::Udp(addr),
    )
}

fn serial_server(
    dir: &Path,
    handler: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> (Server, Link) {
    let link = dir.join("pty");
    // create synchronously so the link exists before the client connects
    let mut device = SerialDevice::create(&link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = thread::spawn(move || device.serve(&s, handler));
    (
        Server {
            stop,
            thread: Some(thread),
        },
        Link::Serial(link),
    )
}

/// Every typed helper and both error forms against the fake device.
fn exercise(client: &mut Client) {
    assert_eq!(client.echo("hello, device").unwrap(), "hello, device");
    let params = client.params().unwrap();
    assert_eq!((params.buf_size, params.buf_count), (BUF_SIZE, BUF_COUNT));

    let gen = client.key_generate(None, None, false).unwrap();
    assert_eq!(gen.id, 0x10000);
    assert_eq!(gen.public.len(), 65);
    assert_eq!(gen.public[0], 0x04);
    let public = client.key_public(gen.id).unwrap();
    assert_eq!((public.id, &public.public), (gen.id, &gen.public));
    assert!(client.key_status(gen.id).unwrap());

    let known = client
        .key_generate(Some(2), Some(&[9u8; 32]), false)
        .unwrap();
    assert_eq!(known.id, 2);
    match client.key_generate(Some(2), Some(&[9u8; 32]), false) {
        Err(Error::Group {
            group: 64,
            rc: GroupRc::Exists,
        }) => {}
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(
        client
            .key_generate(Some(2), Some(&[8u8; 32]), true)
            .unwrap()
            .id,
        2
    );

    assert_eq!(
        client.csr_create(2, "dev-1", Some("Acme"), None).unwrap(),
        b"CSR:dev-1/Acme"
    );
    // a certificate large enough to need many serial frames
    let cert: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    client.cert_store(2, &cert).unwrap();
    assert_eq!(client.cert_get(2).unwrap(), cert);

    client.key_destroy(2).unwrap();
    assert!(!client.key_status(2).unwrap());
    match client.key_public(2) {
        Err(Error::Group {
            group: group::KEYS,
            rc: GroupRc::NotFound,
        }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    match client.cert_get(2) {
        Err(Error::Group {
            group: group::CERTS,
            rc: GroupRc::NotFound,
        }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    // management errors: unknown group, malformed body
    match client.echo_in_group(99) {
        Err(Error::Mgmt(MgmtErr::ENotSup)) => {}
        other => panic!("expected ENotSup, got {other:?}"),
    }
    let raw = client
        .request(Op::Read, group::KEYS, 1, &[0xa1, 0x62, b'i'])
        .unwrap();
    assert_eq!(raw, [0xa1, 0x62, b'r', b'c', 0x03]);
}

trait EchoInGroup {
    fn echo_in_group(&mut self, g: u16) -> Result<EchoRsp, Error>;
}
impl EchoInGroup for Client {
    fn echo_in_group(&mut self, g: u16) -> Result<EchoRsp, Error> {
        self.call(Op::Write, g, 0, &tfmprov_smp::EchoReq { d: "x".into() })
    }
}

#[test]
fn udp_round_trip() {
    let (server, link) = udp_server(FakeDevice::default().handler());
    let mut client = Client::connect(&link, T, 0).unwrap();
    exercise(&mut client);
    server.stop().unwrap();
}

#[test]
fn serial_round_trip() {
    let dir = TempDir::new("serial");
    let (server, link) = serial_server(&dir.0, FakeDevice::default().handler());
    let Link::Serial(path) = &link else {
        unreachable!()
    };
    let mut client = Client::connect(&link, T, 0).unwrap();
    // console noise written to the line by someone else is ignored by the device
    let mut noise = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    noise
        .write_all(b"garbage line\r\n\x06\x09!!!!\n\x04\x14AAAA\n")
        .unwrap();
    exercise(&mut client);
    // a second client session on the same link works too
    drop(client);
    let mut again = Client::connect(&link, T, 0).unwrap();
    assert_eq!(again.echo("again").unwrap(), "again");
    drop(again);
    server.stop().unwrap();
    assert!(
        std::fs::symlink_metadata(path).is_err(),
        "link removed when the device stops"
    );
}

#[test]
fn serve_serial_function_creates_and_removes_link() {
    let dir = TempDir::new("fn");
    let link = dir.0.join("pty");
    // a stale link is replaced
    std::os::unix::fs::symlink("/nonexistent/pts/99", &link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let l = link.clone();
    let thread = thread::spawn(move || serve_serial(&l, &s, FakeDevice::default().handler()));
    let mut client = None;
    for _ in 0..100 {
        if std::fs::read_link(&link).is_ok_and(|t| t != Path::new("/nonexistent/pts/99")) {
            client = Some(Client::connect(&Link::Serial(link.clone()), T, 0).unwrap());
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut client = client.expect("link created");
    assert_eq!(client.echo("x").unwrap(), "x");
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap().unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());
}

#[test]
fn serial_device_refuses_to_replace_a_regular_file() {
    let dir = TempDir::new("file");
    let path = dir.0.join("pty");
    std::fs::write(&path, b"keep me").unwrap();
    match SerialDevice::create(&path) {
        Err(Error::Link { .. }) => {}
        other => panic!("expected Link error, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

#[test]
fn udp_timeout_resends_same_packet() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let link = Link::Udp(silent.local_addr().unwrap());
    let mut client = Client::connect(&link, Duration::from_millis(150), 2).unwrap();
    let seq = client.next_seq();
    match client.echo("anyone?") {
        Err(Error::Timeout { attempts: 3, .. }) => {}
        other => panic!("expected Timeout after 3 attempts, got {other:?}"),
    }
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    for _ in 0..3 {
        let n = silent.recv(&mut buf).unwrap();
        got.push(buf[..n].to_vec());
    }
    assert!(
        got.iter().all(|p| p == &got[0]),
        "retries resend the same packet"
    );
    let h = Header::decode(&got[0]).unwrap();
    assert_eq!(
        (h.seq, h.version, h.op, h.group, h.cmd),
        (seq, 1, Op::Write, 0, 0)
    );
    assert_eq!(client.next_seq(), seq.wrapping_add(1));
}

#[test]
fn udp_timeout_when_nothing_listens() {
    // a port that was just released: ICMP unreachable must not be a hard error
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut client = Client::connect(&Link::Udp(port), Duration::from_millis(100), 1).unwrap();
    assert!(matches!(
        client.echo("x"),
        Err(Error::Timeout { attempts: 2, .. })
    ));
}

#[test]
fn serial_timeout_when_device_does_not_answer() {
    let dir = TempDir::new("mute");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (server, link) = serial_server(&dir.0, move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        None
    });
    let mut client = Client::connect(&link, Duration::from_millis(150), 1).unwrap();
    assert!(matches!(
        client.echo("x"),
        Err(Error::Timeout { attempts: 2, .. })
    ));
    server.stop().unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the device received both attempts"
    );
}

#[test]
fn udp_retry_succeeds_after_dropped_first_datagram() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut device = FakeDevice::default();
    let (server, link) = udp_server(move |p| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            return None; // lost
        }
        handle_packet(p, |h, b| device.dispatch(h, b))
    });
    let mut client = Client::connect(&link, Duration::from_millis(200), 2).unwrap();
    assert_eq!(
        client.echo("second time lucky").unwrap(),
        "second time lucky"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.stop().unwrap();
}

#[test]
fn serial_retry_succeeds_after_dropped_first_packet() {
    let dir = TempDir::new("retry");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut device = FakeDevice::default();
    let (server, link) = serial_server(&dir.0, move |p| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            return None;
        }
        handle_packet(p, |h, b| device.dispatch(h, b))
    });
    let mut client = Client::connect(&link, Duration::from_millis(200), 2).unwrap();
    assert_eq!(client.key_generate(Some(7), None, false).unwrap().id, 7);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.stop().unwrap();
}

fn response(req: &[u8], seq_delta: u8, text: &str) -> Vec<u8> {
    let h = Header::decode(req).unwrap();
    let body = encode_body(&EchoRsp { r: text.into() });
    let mut rsp = Header {
        seq: h.seq.wrapping_add(seq_delta),
        ..h.response(body.len() as u16)
    }
    .encode()
    .to_vec();
    rsp.extend(body);
    rsp
}

#[test]
fn udp_responses_with_other_seq_are_discarded() {
    let device = UdpSocket::bind("127.0.0.1:0").unwrap();
    let link = Link::Udp(device.local_addr().unwrap());
    let t = thread::spawn(move || {
        device.set_read_timeout(Some(T)).unwrap();
        let mut buf = [0u8; 1024];
        let (n, peer) = device.recv_from(&mut buf).unwrap();
        let req = &buf[..n];
        device.send_to(&response(req, 1, "stale"), peer).unwrap();
        device.send_to(&[1, 2, 3], peer).unwrap(); // not even a header
        device.send_to(&response(req, 0, "right"), peer).unwrap();
    });
    let mut client = Client::connect(&link, T, 0).unwrap();
    assert_eq!(client.echo("q").unwrap(), "right");
    t.join().unwrap();
}

#[test]
fn serial_client_skips_console_noise_and_other_seq() {
    let dir = TempDir::new("noise");
    let link = dir.0.join("pty");
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut t = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
    let slave_path: PathBuf = nix::unistd::ttyname(&pty.slave).unwrap();
    std::os::unix::fs::symlink(&slave_path, &link).unwrap();
    let mut master = std::fs::File::from(pty.master);
    let _slave = pty.slave;
    let l = Link::Serial(link);
    let mut client = Client::connect(&l, T, 0).unwrap();
    let t = thread::spawn(move || {
        let mut dec = serial::Decoder::new(4096);
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while out.is_empty() {
            let n = master.read(&mut buf).unwrap();
            dec.push(&buf[..n], &mut out);
        }
        let req = out.remove(0).unwrap();
        let mut stream = b"*** Booting Zephyr OS ***\r\nuart:~$ ".to_vec();
        stream.extend(serial::encode_packet(&response(&req, 5, "stale")));
        stream.extend(b"<inf> app: log line\r\n");
        stream.extend(serial::encode_packet(&response(&req, 0, "right")));
        master.write_all(&stream).unwrap();
        master
    });
    assert_eq!(client.echo("q").unwrap(), "right");
    let _master = t.join().unwrap();
}

#[test]
fn request_body_too_large() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = Client::connect(&Link::Udp(silent.local_addr().unwrap()), T, 0).unwrap();
    assert!(matches!(
        client.request(Op::Write, 64, 0, &vec![0; 70_000]),
        Err(Error::TooLarge(70_000))
    ));
}

#[test]
fn link_parsing_and_display() {
    assert_eq!(
        "127.0.0.1:1337".parse::<Link>().unwrap(),
        Link::Udp("127.0.0.1:1337".parse().unwrap())
    );
    assert_eq!(
        "udp:127.0.0.1".parse::<Link>().unwrap(),
        Link::Udp("127.0.0.1:1337".parse().unwrap())
    );
    assert_eq!(
        "udp:[::1]:9".parse::<Link>().unwrap(),
        Link::Udp("[::1]:9".parse().unwrap())
    );
    assert_eq!(
        "serial:/dev/ttyACM0".parse::<Link>().unwrap(),
        Link::Serial("/dev/ttyACM0".into())
    );
    assert_eq!(
        "/tmp/x/pty".parse::<Link>().unwrap(),
        Link::Serial("/tmp/x/pty".into())
    );
    assert_eq!(
        Link::Udp("127.0.0.1:5".parse().unwrap()).to_string(),
        "udp:127.0.0.1:5"
    );
    assert_eq!(Link::Serial("/a".into()).to_string(), "serial:/a");
}

#[test]
fn error_display() {
    let e = Error::Group {
        group: 64,
        rc: GroupRc::NotFound,
    };
    assert_eq!(
        e.to_string(),
        "device returned group 64 error 2 (not found)"
    );
    assert_eq!(
        Error::Mgmt(MgmtErr::EInval).to_string(),
        "device returned MGMT_ERR 3 (invalid input value)"
    );
    assert!(Error::Timeout {
        attempts: 3,
        timeout: Duration::from_millis(100)
    }
    .to_string()
    .contains("3 attempt"));
    let _ = HEADER_LEN;
}

#[test]
fn serve_serial_ready_signals_after_link_exists() {
    let dir = TempDir::new("ready");
    let link = dir.0.join("pty");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let (s, l) = (stop.clone(), link.clone());
    let thread = thread::spawn(move || {
        serve_serial_ready(
            &l,
            &s,
            || tx.send(std::fs::read_link(&l).is_ok()).unwrap(),
            FakeDevice::default().handler(),
        )
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "link exists when ready is called"
    );
    let mut client = Client::connect(&Link::Serial(link.clone()), T, 0).unwrap();
    assert_eq!(client.echo("ready").unwrap(), "ready");
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap().unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());
    // creation failure: ready is not called
    let blocked = dir.0.join("file");
    std::fs::write(&blocked, b"x").unwrap();
    let called = AtomicBool::new(false);
    let r = serve_serial_ready(
        &blocked,
        &stop,
        || called.store(true, Ordering::SeqCst),
        |_| None,
    );
    assert!(matches!(r, Err(Error::Link { .. })));
    assert!(!called.load(Ordering::SeqCst));
}
