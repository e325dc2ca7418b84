//! Helpers shared by the integration tests: the real `openssl` binary, CSRs made in
//! Rust, and a server on 127.0.0.1:0 that is stopped when dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::thread::JoinHandle;

use der::Encode;
use p256::ecdsa::{DerSignature, SigningKey};
use tfmprov_ca::{Ca, CaConfig};
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::name::Name;

/// Runs `openssl` with `args` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl binary must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A DER CSR made by `openssl req -new -newkey <newkey> [-pkeyopt ...] -subj <subj> -nodes`.
pub fn openssl_csr(dir: &Path, newkey: &[&str], subj: &str) -> Vec<u8> {
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-subj",
        subj,
        "-nodes",
        "-keyout",
        "csr_key.pem",
        "-outform",
        "DER",
        "-out",
        "csr.der",
    ]);
    openssl(dir, &args);
    std::fs::read(dir.join("csr.der")).unwrap()
}

/// The brief's P-256 CSR: `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1`.
pub fn p256_csr(dir: &Path, subj: &str) -> Vec<u8> {
    openssl_csr(
        dir,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        subj,
    )
}

/// A DER CSR made in Rust (x509-cert RequestBuilder, p256), for names openssl refuses
/// to encode (CN longer than 64) and for the bench.
pub fn rust_csr(key: &SigningKey, subject: &str) -> Vec<u8> {
    let name = Name::from_str(subject).unwrap();
    let builder = RequestBuilder::new(name, key).unwrap();
    builder.build::<DerSignature>().unwrap().to_der().unwrap()
}

pub fn new_key() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

pub fn open_ca(dir: &Path) -> Ca {
    Ca::open_or_create(&CaConfig::new(dir)).unwrap()
}

/// Writes root.pem, intermediate.pem and leaf.pem into `dir` and runs
/// `openssl verify -CAfile root.pem -untrusted intermediate.pem leaf.pem`.
pub fn openssl_verify(dir: &Path, ca: &Ca, leaf_pem: &str) -> String {
    std::fs::write(dir.join("root.pem"), ca.root_pem()).unwrap();
    std::fs::write(dir.join("intermediate.pem"), ca.intermediate_pem()).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf_pem).unwrap();
    openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ],
    )
}

/// The first PEM certificate of a chain.
pub fn first_pem(chain: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    let i = chain.find(end).expect("a PEM certificate") + end.len();
    format!("{}\n", &chain[..i])
}

/// A CA server on 127.0.0.1:0 in its own thread; stopped (and joined) on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    /// The CA's first operator token (every scope), from `operator.token`.
    pub token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), tfmprov_ca::Error>>>,
}

impl Server {
    pub fn start(ca: Arc<Ca>) -> Server {
        let token = std::fs::read_to_string(ca.state_dir().join(tfmprov_ca::ADMIN_TOKEN_FILE))
            .expect("operator.token")
            .trim()
            .to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(tfmprov_ca::serve(ca, listener, async move {
                let _ = rx.await;
            }))
        });
        Server {
            addr,
            base: format!("http://{addr}"),
            token,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let res = t.join().expect("server thread panicked");
            if !std::thread::panicking() {
                res.expect("server returned an error");
            }
        }
    }
}

/// The CA on HTTPS on 127.0.0.1:0 in its own thread; stopped on drop.
pub struct HttpsServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), tfmprov_ca::Error>>>,
}

impl HttpsServer {
    pub fn start(ca: Arc<Ca>, tls: Arc<rustls::ServerConfig>) -> HttpsServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(tfmprov_ca::serve_https(ca, listener, tls, async move {
                let _ = rx.await;
            }))
        });
        HttpsServer { addr, stop: Some(tx), thread: Some(thread) }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blocking HTTP agent that returns non-2xx answers instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build(),
    )
}

/// (status, content-type, body) of a response.
pub fn answer(mut resp: ureq::http::Response<ureq::Body>) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.body_mut().read_to_string().unwrap();
    (status, ct, body)
}
