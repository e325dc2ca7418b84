//! `tfmprov operator …` and `tfmprov audit …`: operators and the audit log
//! of the CA or the aggregator (docs/security.md). Operators are managed in
//! the server's database directly (whoever can write it is an
//! administrator already); the audit log is read over HTTP (`show`) or
//! checked in the database (`verify`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tfmprov_auth::{Auth, Head, Scope};

/// Which server's database.
#[derive(Args, Clone, Debug)]
pub struct ServerDb {
    /// The server: ca or aggregator.
    #[arg(long, value_parser = ["ca", "aggregator"])]
    pub server: String,
    /// Its state directory (where its SQLite file is).
    #[arg(long)]
    pub state: PathBuf,
    /// Its database: sqlite (the file in --state) or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "TFMPROV_DB", default_value = "sqlite", hide_env_values = true)]
    pub db: String,
}

impl ServerDb {
    /// The operators and audit log of that database. The server must have
    /// run once on it (it creates the tables).
    pub fn open(&self) -> Result<Auth> {
        let choice = tfmprov_db::DbChoice::parse(&self.db).map_err(|e| anyhow::anyhow!("--db: {e}"))?;
        let file = if self.server == "ca" { tfmprov_ca::store::DB_FILE } else { tfmprov_aggregator::DB_FILE };
        if matches!(choice, tfmprov_db::DbChoice::Sqlite) && !self.state.join(file).exists() {
            bail!("no {} in {}: start the {} once with --state {}", file, self.state.display(), self.server, self.state.display());
        }
        let db = tfmprov_db::Db::open(&choice, &self.state, file).context("opening the server's database")?;
        if db.query("SELECT name FROM operators LIMIT 1", vec![]).is_err() {
            bail!("the {} database has no operators table: start this version of the {} on it once", self.server, self.server);
        }
        Ok(Auth::new(db))
    }
}

/// `tfmprov operator …`.
#[derive(Subcommand, Clone, Debug)]
pub enum OperatorCommand {
    /// A new operator; its token is printed once (or written to --out, mode 0600).
    Add {
        #[command(flatten)]
        server: ServerDb,
        /// Its name ([A-Za-z0-9._-]{1,64}); the audit log's actor.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: sign, devices, commands, audit (or all).
        #[arg(long)]
        scopes: String,
        /// Write the token to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every operator, revoked ones included (never a token).
    List {
        #[command(flatten)]
        server: ServerDb,
    },
    /// Have the CA issue an operator certificate (a provisioning station's
    /// credential instead of a token): a new P-256 key (--key-out, mode
    /// 0600) and its certificate CN=NAME, OU=tfmprov operator (--cert-out).
    /// Needs a token of scope `operators` at the CA. It acts for no one
    /// until a server binds it (`operator bind-cert`).
    Cert {
        /// The CA's base URL.
        #[arg(long, default_value = "https://127.0.0.1:8443")]
        ca_url: String,
        /// The operator name (its CN; the name it is bound to on servers).
        #[arg(long)]
        name: String,
        /// Where to write the private key (PEM, PKCS#8).
        #[arg(long)]
        key_out: PathBuf,
        /// Where to write the certificate chain (PEM).
        #[arg(long)]
        cert_out: PathBuf,
        #[command(flatten)]
        token: crate::credential::TokenArgs,
    },
    /// Bind an operator certificate to an operator of this server: a TLS
    /// connection with it then acts as the operator, with its scopes.
    /// Only a certificate with the operator role issued for that name is
    /// accepted; revoking the operator ends it too.
    BindCert {
        #[command(flatten)]
        server: ServerDb,
        /// The operator.
        #[arg(long)]
        name: String,
        /// Its certificate (PEM; the first certificate is used).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Revoke an operator's token (and certificate) at once.
    Revoke {
        #[command(flatten)]
        server: ServerDb,
        /// The operator.
        #[arg(long)]
        name: String,
    },
}

/// `tfmprov audit …`.
#[derive(Subcommand, Clone, Debug)]
pub enum AuditCommand {
    /// Check the hash chain in the server's database; prints the head
    /// (SEQ:SHA256) to keep elsewhere. Exit status 1 on the first
    /// inconsistency (an entry edited, removed, moved, or the log cut
    /// before --head).
    Verify {
        #[command(flatten)]
        server: ServerDb,
        /// A head noted earlier: the log must still reach it, unchanged.
        #[arg(long)]
        head: Option<Head>,
    },
    /// Page through the log over HTTP (operator scope `audit`).
    Show {
        /// The server's base URL (CA or aggregator).
        #[arg(long)]
        url: String,
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many (<= 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        token: crate::credential::TokenArgs,
    },
}

fn when(ms: i64) -> String {
    format!("{ms} ms")
}

/// Runs an operator command; `true` on success.
pub fn operator(cmd: OperatorCommand) -> Result<bool> {
    match cmd {
        OperatorCommand::Add { server, name, scopes, out } => {
            let scopes = Scope::parse_list(&scopes)?;
            let (op, token) = server.open()?.add_operator(&name, &scopes)?;
            let list = op.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
            match out {
                Some(f) => {
                    tfmprov_auth::write_secret(&f, &token).with_context(|| format!("writing {}", f.display()))?;
                    println!("operator {} ({list}) added; token written to {}", op.name, f.display());
                }
                None => {
                    eprintln!("operator {} ({list}) added; its token (shown once):", op.name);
                    println!("{token}");
                }
            }
        }
        OperatorCommand::List { server } => {
            for op in server.open()?.operators()? {
                let scopes = op.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
                let state = op.revoked_ms.map_or("active".to_owned(), |t| format!("revoked at {}", when(t)));
                let cert = op.certificate_sha256.map_or(String::new(), |h| format!("  certificate sha256 {h}"));
                println!("{:<24} {:<28} created {}  {state}{cert}", op.name, scopes, when(op.created_ms));
            }
        }
        OperatorCommand::Cert { ca_url, name, key_out, cert_out, token } => {
            let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
            let csr = tfmprov_ca::server_identity::csr(&key, &name)?;
            let chain = tfmprov_ca::client::submit_operator_csr(&ca_url, &token.token()?, &name, &csr, std::time::Duration::from_secs(30))
                .with_context(|| format!("operator certificate from {ca_url}"))?;
            tfmprov_ca::store::write_key(&key_out, &key)?;
            std::fs::write(&cert_out, &chain).with_context(|| format!("writing {}", cert_out.display()))?;
            println!("operator certificate for {name}: {} (key {}); bind it with `tfmprov operator bind-cert`", cert_out.display(), key_out.display());
        }
        OperatorCommand::BindCert { server, name, cert } => {
            let pem = std::fs::read_to_string(&cert).with_context(|| format!("reading {}", cert.display()))?;
            let der = tfmprov_tls::pem_certificates(&pem).with_context(|| cert.display().to_string())?;
            let op = server.open()?.bind_certificate(&name, &der[0])?;
            println!("operator {} now also authenticates with the certificate of SHA-256 {}", op.name, op.certificate_sha256.unwrap_or_default());
        }
        OperatorCommand::Revoke { server, name } => {
            let op = server.open()?.revoke_operator(&name)?;
            println!("operator {} revoked at {}", op.name, when(op.revoked_ms.unwrap_or_default()));
        }
    }
    Ok(true)
}

/// Runs an audit command; `true` when the log verifies.
pub fn audit(cmd: AuditCommand) -> Result<bool> {
    match cmd {
        AuditCommand::Verify { server, head } => match server.open()?.verify_audit(head.as_ref()) {
            Ok(h) => {
                println!("audit log intact: {} entries, head {h}", h.seq);
                Ok(true)
            }
            Err(tfmprov_auth::Error::Tampered(t)) => {
                println!("audit log NOT intact: {t}");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        },
        AuditCommand::Show { url, after, limit, token } => {
            let entries = tfmprov_aggregator::client::audit(&url, &token.token()?, after, limit)?;
            for e in entries {
                println!("{:>6} {} {:<12} {:<18} {} -> {}", e.seq, when(e.time_ms), e.actor, e.action, e.subject, e.result);
            }
            Ok(true)
        }
    }
}
