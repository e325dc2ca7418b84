//! Test support (feature `testing`): a throwaway PostgreSQL server for the
//! tests of this crate and of its users (aggregator, CA). Not for production.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A throwaway PostgreSQL cluster (Debian's `postgresql` package): initdb in
/// a temporary directory, trust authentication, 127.0.0.1 on a free port and
/// a Unix socket in the directory; stopped (`pg_ctl stop -m immediate`) on drop.
/// As root, the server runs as the `postgres` user (`runuser`), as it must.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("an initdb under /usr/lib/postgresql/*/bin")
}

impl PgCluster {
    /// initdb and start (panics with the tool's output on failure).
    pub fn start() -> PgCluster {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
            assert!(st.success(), "chown the cluster directory to postgres");
        }
        let c = PgCluster { dir, bin, as_postgres, port: free_port() };
        let data = c.dir.path().join("data");
        c.run("initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            c.port,
            c.dir.path().display()
        );
        let log = c.dir.path().join("server.log");
        c.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &opts, "-w", "-t", "30", "start"]);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT` (no database).
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        };
    }
}

/// Where the PostgreSQL tests create their databases: the server that
/// `scripts/test` started (`TFMPROV_TEST_POSTGRES=postgres://user@host:port`,
/// no database in the URL), else a cluster of this test's own.
pub struct PgServer {
    base: String,
    _own: Option<PgCluster>,
}

impl PgServer {
    /// The server named by `TFMPROV_TEST_POSTGRES`, else a new cluster.
    pub fn get() -> PgServer {
        match std::env::var("TFMPROV_TEST_POSTGRES") {
            Ok(base) if !base.is_empty() => PgServer { base: base.trim_end_matches('/').to_owned(), _own: None },
            _ => {
                let c = PgCluster::start();
                PgServer { base: c.base_url(), _own: Some(c) }
            }
        }
    }

    /// A new, empty database; its URL. Concurrent `CREATE DATABASE`s can
    /// fail with "source database template1 is being accessed by other
    /// users" (each copies template1): retried, bounded (5 s).
    pub fn fresh_database(&self) -> String {
        // Unique in this process by a counter (a free port alone was not:
        // two threads at once could be handed the same one, and the second
        // CREATE DATABASE then failed with "already exists").
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("t{}_{n}_{}", std::process::id(), free_port());
        let admin = format!("{}/postgres", self.base);
        let sql = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to the test PostgreSQL");
            let mut last = None;
            for _ in 0..50 {
                match c.batch_execute(&sql) {
                    Ok(()) => return,
                    Err(e) => last = Some(e),
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let e = last.expect("an error");
            panic!("CREATE DATABASE: {e} ({:?})", e.as_db_error().map(|d| d.message()));
        })
        .join()
        .expect("create database");
        format!("{}/{name}", self.base)
    }
}

