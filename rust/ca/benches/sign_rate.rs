//! CSRs signed per second: in-process (`Ca::sign_csr`) and over HTTP on loopback
//! (`client::submit_csr` against `serve` on 127.0.0.1:0), N = 200 each.
//!
//! Bounded: at most N requests per row and at most `TIME_LIMIT` per row (a row that
//! hits the limit says so). Each request is a fresh key and CSR (made before timing),
//! so the rate includes CSR verification, leaf signing and the SQLite write
//! (WAL, synchronous=NORMAL) but not key generation.
//!
//! Run: `cargo bench -p tfmprov-ca --bench sign_rate`

use std::sync::Arc;
use std::time::{Duration, Instant};

use der::Encode;
use p256::ecdsa::{DerSignature, SigningKey};
use tfmprov_ca::{client, Ca, CaConfig};
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::name::Name;

const N: usize = 200;
const TIME_LIMIT: Duration = Duration::from_secs(60);
const HTTP_THREADS: usize = 4;

fn csrs(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let key = SigningKey::random(&mut rand_core::OsRng);
            let name: Name = format!("CN={prefix}-{i},O=bench").parse().expect("name");
            let req = RequestBuilder::new(name, &key).expect("builder");
            req.build::<DerSignature>()
                .expect("csr")
                .to_der()
                .expect("der")
        })
        .collect()
}

struct Row {
    what: String,
    done: usize,
    elapsed: Duration,
    hit_limit: bool,
}

fn run(what: &str, csrs: &[Vec<u8>], mut f: impl FnMut(&[u8])) -> Row {
    let start = Instant::now();
    let mut done = 0;
    for csr in csrs {
        if start.elapsed() > TIME_LIMIT {
            break;
        }
        f(csr);
        done += 1;
    }
    Row {
        what: what.into(),
        done,
        elapsed: start.elapsed(),
        hit_limit: done < csrs.len(),
    }
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(Ca::open_or_create(&CaConfig::new(tmp.path().join("state"))).expect("ca"));
    let mut rows = Vec::new();

    // In-process.
    let local = csrs("local", N);
    rows.push(run("in-process sign_csr", &local, |csr| {
        ca.sign_csr(csr).expect("issued");
    }));

    // HTTP on loopback.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_ca = ca.clone();
    let server = std::thread::spawn(move || {
        rt.block_on(tfmprov_ca::serve(server_ca, listener, async move {
            let _ = stopped.await;
        }))
    });

    let token = std::fs::read_to_string(ca.state_dir().join(tfmprov_ca::ADMIN_TOKEN_FILE)).expect("operator.token");
    let http = csrs("http", N);
    rows.push(run("HTTP POST /v1/csr, 1 client", &http, |csr| {
        client::submit_csr(&base, &token, csr, Duration::from_secs(30)).expect("chain");
    }));

    // HTTP with several clients at once (N in total).
    let par = csrs("par", N);
    let start = Instant::now();
    let chunks: Vec<Vec<Vec<u8>>> = par
        .chunks(N.div_ceil(HTTP_THREADS))
        .map(|c| c.to_vec())
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let base = base.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                for csr in &chunk {
                    if start.elapsed() > TIME_LIMIT {
                        break;
                    }
                    client::submit_csr(&base, &token, csr, Duration::from_secs(30)).expect("chain");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: usize = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .sum();
    rows.push(Row {
        what: format!("HTTP POST /v1/csr, {HTTP_THREADS} clients"),
        done,
        elapsed: start.elapsed(),
        hit_limit: done < N,
    });

    let _ = stop.send(());
    server.join().expect("server thread").expect("server");

    println!();
    println!(
        "{:<32} {:>6} {:>10} {:>12} {:>12}",
        "path", "CSRs", "time [s]", "CSRs/s", "ms/CSR"
    );
    for r in &rows {
        let secs = r.elapsed.as_secs_f64();
        println!(
            "{:<32} {:>6} {:>10.3} {:>12.1} {:>12.3}{}",
            r.what,
            r.done,
            secs,
            r.done as f64 / secs,
            secs * 1000.0 / r.done.max(1) as f64,
            if r.hit_limit {
                "  (time limit hit)"
            } else {
                ""
            }
        );
    }
    println!(
        "({} certificates in the log)",
        ca.devices().expect("devices").len()
    );
}
