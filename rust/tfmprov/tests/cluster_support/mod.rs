//! Several `tfmprov aggregator serve` processes on one database and one
//! mosquitto (shared by tests/cluster.rs and benches/cluster.rs).
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use tfmprov_aggregator::client;

pub const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");

/// One `tfmprov aggregator serve` process; killed (SIGKILL) on drop.
pub struct Instance {
    child: Child,
    pub base: String,
    pub name: String,
}

impl Instance {
    pub fn start(state: &Path, root: &Path, broker: &str, db: &str, name: &str) -> Instance {
        let mut child = Command::new(EXE)
            // Plain HTTP on loopback, as docs/deploy.md runs instances behind a load balancer.
            .args(["aggregator", "serve", "--listen", "127.0.0.1:0", "--plain-http", "--share-group", "agg", "--instance", name])
            .args(["--db", db])
            .arg("--state")
            .arg(state)
            .arg("--ca-root")
            .arg(root)
            .args(["--broker", broker])
            .env("TFMPROV_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run tfmprov aggregator serve");
        let stdout = child.stdout.take().expect("stdout");
        // Owned at once: dropped (killed and reaped) if it never gets ready.
        let mut inst = Instance { child, base: String::new(), name: name.to_owned() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("aggregator ready ") {
                        inst.base = rest.split_whitespace().next().expect("http url").to_owned();
                        return inst;
                    }
                }
                Err(_) => panic!("instance {name} did not start within 30 s"),
            }
        }
    }

    pub fn sigkill(mut self) {
        // Child::kill is SIGKILL on Unix: no shutdown, no last acks.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stats(&self) -> tfmprov_aggregator::Stats {
        client::stats(&self.base).expect("stats")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cluster: mosquitto, a database, a PKI, one state directory (cloud
/// identity, storage key; the SQLite file), instances a and b.
pub struct Cluster {
    // Dropped in this order: the instances before their broker and database.
    pub a: Option<Instance>,
    pub b: Option<Instance>,
    /// The PostgreSQL server and the database URL, or None: SQLite.
    pub pg: Option<(PgServer, String)>,
    pub mosq: Mosquitto,
    pub pki: Pki,
    pub state: tempfile::TempDir,
    pub root: PathBuf,
}

impl Cluster {
    /// Instances `a` and `b` on a new database.
    pub fn start(postgres: bool) -> Cluster {
        let mut c = Cluster::empty(postgres);
        c.a = Some(c.instance("a"));
        c.b = Some(c.instance("b"));
        c
    }

    /// No instance yet: mosquitto, the database, the PKI, the state directory.
    pub fn empty(postgres: bool) -> Cluster {
        let mosq = Mosquitto::start();
        let pg = postgres.then(|| {
            let server = PgServer::get();
            let url = server.fresh_database();
            (server, url)
        });
        let pki = Pki::new("cluster");
        let state = tempfile::tempdir().expect("tempdir");
        let root = state.path().join("root.pem");
        std::fs::write(&root, &pki.root.pem).expect("root");
        Cluster { mosq, pg, pki, state, root, a: None, b: None }
    }

    pub fn instance(&self, name: &str) -> Instance {
        let db = self.pg.as_ref().map_or("sqlite", |(_, url)| url.as_str());
        Instance::start(&self.state.path().join("agg"), &self.root, &self.mosq.url(), db, name)
    }

    /// The first operator's token, written by the first instance that ran.
    pub fn token(&self) -> String {
        admin_token(&self.state.path().join("agg"))
    }

    pub fn a(&self) -> &Instance {
        self.a.as_ref().expect("a running")
    }

    pub fn sqlite(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_with_flags(
            self.state.path().join("agg").join(tfmprov_aggregator::DB_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the database");
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    pub fn stored_count(&self) -> u64 {
        let sql = "SELECT COUNT(*) FROM messages";
        let n: i64 = match &self.pg {
            Some((_, url)) => pg_query(url, sql, |r| r.get(0))[0],
            None => self.sqlite().query_row(sql, [], |r| r.get(0)).expect("count"),
        };
        n as u64
    }

    /// Every stored (device, kid, seq).
    pub fn stored(&self) -> Vec<(String, Vec<u8>, u64)> {
        let sql = "SELECT device_id, kid, seq FROM messages";
        match &self.pg {
            Some((_, url)) => pg_query(url, sql, |r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64)),
            None => {
                let db = self.sqlite();
                let mut st = db.prepare(sql).unwrap();
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))).unwrap();
                rows.collect::<Result<_, _>>().unwrap()
            }
        }
    }

    /// Wait (bounded) until `n` messages are stored.
    pub fn wait_stored(&self, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.stored_count();
            if got >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {got} of {n} messages stored within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

