//! `tfmprov`: thin command-line front end over the tfmprov libraries.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tfmprov::enroll::{EnrollOptions, Enrolled};
use tfmprov::target::{connect, parse_target, LinkOptions, Target};
use tfmprov_transport::Link;

#[derive(Parser)]
#[command(name = "tfmprov", version, about = "Device provisioning for Zephyr + TF-M: device simulator, CA, SMP tool, aggregator")]
struct Cli {
    /// The CA root (PEM) that the CA's and the aggregator's HTTPS
    /// certificates verify to (e.g. root_cert.pem in the CA's state
    /// directory). Without it no https:// server is trusted.
    #[arg(long, global = true, env = "TFMPROV_HTTPS_ROOT")]
    https_root: Option<PathBuf>,
    /// An operator certificate (PEM chain, `tfmprov operator cert`) to
    /// authenticate to the CA and the aggregator over HTTPS instead of a
    /// token; needs --client-key.
    #[arg(long, global = true, env = "TFMPROV_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The operator certificate's private key (PEM).
    #[arg(long, global = true, env = "TFMPROV_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the firmware core as a simulated device (SMP over UDP and/or a serial PTY).
    DeviceSim(DeviceSimArgs),
    /// The CA server.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The data aggregation server.
    #[command(subcommand)]
    Aggregator(AggregatorCommand),
    /// Key commands (SMP group 64).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Have the device build a CSR with one of its keys (SMP group 65).
    Csr(CsrArgs),
    /// Certificate commands (SMP group 66).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Enroll devices: key, CSR, CA, store the certificate and the CA root, optionally register.
    Enroll(EnrollArgs),
    /// The seed's sample set on each device, with key 0x00000003 enrolled into the 2-level chain.
    Factory(FactoryArgs),
    /// The whole system on its embedded defaults: CA, aggregator, simulated devices.
    Demo(tfmprov::demo::DemoArgs),
    /// A key or certificate operation on a device in the field, through the
    /// aggregator and MQTT, end to end encrypted (docs/remote.md).
    Remote(tfmprov::remote::RemoteArgs),
    /// Operators of the CA or the aggregator: scoped API tokens, stored hashed.
    #[command(subcommand)]
    Operator(tfmprov::admin::OperatorCommand),
    /// The hash-chained audit log of the CA or the aggregator.
    #[command(subcommand)]
    Audit(tfmprov::admin::AuditCommand),
}

#[derive(Args)]
struct DeviceSimArgs {
    /// Directory for the device's persistent keys and state (created if missing).
    #[arg(long)]
    state: PathBuf,
    /// Device id ([A-Za-z0-9._-]{1,64}).
    #[arg(long)]
    device_id: String,
    /// SMP over UDP on ADDR:PORT (Zephyr's default port is 1337).
    #[arg(long, default_value = "127.0.0.1:1337")]
    smp_udp: SocketAddr,
    /// Also SMP over a pseudo-terminal, linked at this path.
    #[arg(long)]
    smp_serial: Option<PathBuf>,
    /// Publish signed telemetry to this broker (mqtt://HOST:PORT).
    #[arg(long)]
    mqtt: Option<String>,
    /// Telemetry interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval: u64,
    /// Stop publishing after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// MQTT topic prefix.
    #[arg(long, default_value = "prov")]
    topic_prefix: String,
    /// Run without the simulated secure partition: counters in the state
    /// records and the audit log in (simulated) Protected Storage, as
    /// firmware built without CONFIG_TFMPROV_PARTITION.
    #[arg(long)]
    no_partition: bool,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Serve the CA's HTTP and EST API.
    Serve {
        /// State directory (keys, certificates, ca.sqlite).
        #[arg(long)]
        state: PathBuf,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Leaf validity in days.
        #[arg(long, default_value_t = 365)]
        validity_days: u32,
        /// Import a root CA on first start: KEY.pem CERT.pem.
        #[arg(long, num_args = 2, value_names = ["KEY", "CERT"])]
        import_root: Option<Vec<PathBuf>>,
        /// Import an intermediate CA on first start: KEY.pem CERT.pem.
        #[arg(long, num_args = 2, value_names = ["KEY", "CERT"])]
        import_intermediate: Option<Vec<PathBuf>>,
        /// The log's database: `sqlite` (ca.sqlite in --state) or postgres://USER@HOST:PORT/DB
        /// (a URL with a password is better given in the environment).
        #[arg(long, env = "TFMPROV_CA_DB", default_value = "sqlite", hide_env_values = true)]
        db: String,
        /// The first operator's token file (default: operator.token in --state).
        /// At the first start, with no operator, the token in it becomes
        /// admin's, or a new one is written there (mode 0600).
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        #[command(flatten)]
        https: tfmprov::demo::HttpsArgs,
    },
    /// Revoke a certificate at a running CA (operator scope `revoke`): its
    /// CRL (GET /v1/crl) lists it from now on, and aggregators that follow
    /// the CRL revoke the device.
    Revoke {
        /// The CA's base URL.
        #[arg(long, default_value = "https://127.0.0.1:8443")]
        url: String,
        /// The certificate's serial (hex, as `GET /v1/devices` shows it).
        #[arg(long)]
        serial: String,
        /// Why (kept in the CA's log and the audit log).
        #[arg(long, default_value = "unspecified")]
        reason: String,
        #[command(flatten)]
        token: tfmprov::credential::TokenArgs,
    },
}

#[derive(Subcommand)]
enum AggregatorCommand {
    /// Serve registration over HTTP and ingest messages from MQTT.
    Serve(Box<tfmprov::demo::AggregatorArgs>),
}

#[derive(Args, Clone)]
struct LinkArgs {
    /// Device SMP over UDP.
    #[arg(long, conflicts_with = "serial")]
    udp: Option<SocketAddr>,
    /// Device SMP over a serial line (or PTY).
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Per-attempt timeout in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Retries after the first attempt.
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

impl LinkArgs {
    fn link(&self) -> Result<Link> {
        match (&self.udp, &self.serial) {
            (Some(a), None) => Ok(Link::Udp(*a)),
            (None, Some(p)) => Ok(Link::Serial(p.clone())),
            _ => bail!("give --udp ADDR:PORT or --serial PATH"),
        }
    }
    fn options(&self) -> LinkOptions {
        LinkOptions { timeout: Duration::from_millis(self.timeout_ms), retries: self.retries }
    }
    fn client(&self) -> Result<tfmprov_transport::Client> {
        connect(&self.link()?, self.options())
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a P-256 key: random or from a known value, at an auto-assigned or given ID.
    Generate {
        #[command(flatten)]
        link: LinkArgs,
        /// Key ID (decimal or 0x-hex); absent = auto-assign.
        #[arg(long, value_parser = parse_id)]
        id: Option<u32>,
        /// Known private value, 64 hex digits; absent = random on the device.
        #[arg(long)]
        private_hex: Option<String>,
        /// Replace an existing key at --id.
        #[arg(long)]
        replace: bool,
    },
    /// Read a key's public key.
    Public {
        #[command(flatten)]
        link: LinkArgs,
        #[arg(long, value_parser = parse_id)]
        id: u32,
    },
    /// Check that a key ID is present.
    Status {
        #[command(flatten)]
        link: LinkArgs,
        #[arg(long, value_parser = parse_id)]
        id: u32,
    },
    /// Destroy a key and its certificate.
    Destroy {
        #[command(flatten)]
        link: LinkArgs,
        #[arg(long, value_parser = parse_id)]
        id: u32,
    },
    /// Read the device's key-agreement key (remote provisioning; created on first read).
    Kak {
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Read the device's audit log of key operations (kept in its secure
    /// partition when the firmware has one).
    Audit {
        #[command(flatten)]
        link: LinkArgs,
        /// From this sequence number on (default: the oldest entry kept).
        #[arg(long)]
        from: Option<u64>,
    },
}

#[derive(Args)]
struct CsrArgs {
    #[command(flatten)]
    link: LinkArgs,
    #[arg(long, value_parser = parse_id)]
    id: u32,
    /// Subject CN (the device id).
    #[arg(long)]
    cn: String,
    #[arg(long)]
    o: Option<String>,
    #[arg(long)]
    ou: Option<String>,
    /// Write the CSR here (PEM); default stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Store a certificate (PEM or DER file) for a key ID or at a peer ID.
    Store {
        #[command(flatten)]
        link: LinkArgs,
        #[arg(long, value_parser = parse_id)]
        id: u32,
        #[arg(long)]
        file: PathBuf,
    },
    /// Read a certificate back (PEM on stdout or --out).
    Get {
        #[command(flatten)]
        link: LinkArgs,
        #[arg(long, value_parser = parse_id)]
        id: u32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct BatchArgs {
    /// Devices as ID@udp:HOST:PORT or ID@serial:PATH (repeat for a batch).
    #[arg(long = "device", value_parser = parse_target)]
    devices: Vec<Target>,
    /// Single device form: its id (with --udp or --serial).
    #[arg(long)]
    device_id: Option<String>,
    #[command(flatten)]
    link: LinkArgs,
    /// CA base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    ca: String,
    /// Register each chain at this aggregator base URL.
    #[arg(long)]
    aggregator: Option<String>,
    /// Devices enrolled at the same time.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// HTTP timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    http_timeout_ms: u64,
    /// The operator credential (scopes `sign`, and `devices` with --aggregator).
    #[command(flatten)]
    token: tfmprov::credential::TokenArgs,
}

impl BatchArgs {
    fn targets(&self) -> Result<Vec<Target>> {
        let mut t = self.devices.clone();
        if let Some(id) = &self.device_id {
            if !tfmprov_device::csr::valid_device_id(id) {
                bail!("{id:?} is not a valid device id ([A-Za-z0-9._-]{{1,64}})");
            }
            t.push(Target { device_id: id.clone(), link: self.link.link()? });
        }
        if t.is_empty() {
            bail!("no devices: give --device ID@udp:HOST:PORT (repeatable) or --device-id ID with --udp/--serial");
        }
        Ok(t)
    }

    fn options(&self) -> Result<EnrollOptions> {
        Ok(EnrollOptions {
            ca_url: self.ca.clone(),
            aggregator_url: self.aggregator.clone(),
            key_id: None,
            known_value: None,
            regenerate: false,
            o: None,
            ou: None,
            link: self.link.options(),
            http_timeout: Duration::from_millis(self.http_timeout_ms),
            token: self.token.token()?,
        })
    }
}

#[derive(Args)]
struct EnrollArgs {
    #[command(flatten)]
    batch: BatchArgs,
    /// Key to enroll (created if absent); default: a new random key at an auto-assigned ID.
    #[arg(long, value_parser = parse_id)]
    key_id: Option<u32>,
    /// Replace the key even when it exists.
    #[arg(long)]
    regenerate: bool,
    #[arg(long)]
    o: Option<String>,
    #[arg(long)]
    ou: Option<String>,
}

#[derive(Args)]
struct FactoryArgs {
    #[command(flatten)]
    batch: BatchArgs,
    /// Known value for key 0x00000002 (64 hex digits); default: the documented sample value.
    #[arg(long)]
    known_2: Option<String>,
    /// Known value for key 0x00000003 (64 hex digits); default: the documented sample value.
    #[arg(long)]
    known_3: Option<String>,
}

fn tfmprov_db_choice(s: &str) -> Result<tfmprov_aggregator::DbChoice> {
    tfmprov_aggregator::DbChoice::parse(s).map_err(|e| anyhow::anyhow!("--db: {e}"))
}

fn parse_id(s: &str) -> Result<u32, String> {
    let v = tfmprov_device::shell::parse_id(s).map_err(|e| e.to_string())?;
    u32::try_from(v).map_err(|_| format!("{s} does not fit in 32 bits"))
}

fn parse_hex32(s: &str) -> Result<[u8; 32]> {
    let v = hex::decode(s.trim()).context("not hex")?;
    v.try_into().map_err(|v: Vec<u8>| anyhow::anyhow!("need 32 bytes (64 hex digits), got {}", v.len()))
}

fn write_out(out: Option<&PathBuf>, text: &str) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn pem(label: &str, der: &[u8]) -> Result<String> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).map_err(|e| anyhow::anyhow!("PEM: {e}"))
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    Ok(stop)
}

fn print_enrolled(e: &Enrolled) {
    println!(
        "{}: key 0x{:08x} enrolled ({} byte certificate{})",
        e.device_id,
        e.key_id,
        e.leaf_der.len(),
        if e.registered { ", registered" } else { "" }
    );
}

fn run(cli: Cli) -> Result<bool> {
    if let Some(root) = &cli.https_root {
        let pem = std::fs::read_to_string(root).with_context(|| format!("--https-root {}", root.display()))?;
        tfmprov_tls::trust_for_https(&pem).with_context(|| format!("--https-root {}", root.display()))?;
    }
    if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
        let read = |f: &PathBuf, what: &str| std::fs::read_to_string(f).with_context(|| format!("{what} {}", f.display()));
        tfmprov_tls::present_client_certificate(&read(cert, "--client-cert")?, &read(key, "--client-key")?)
            .context("--client-cert / --client-key")?;
    }
    match cli.command {
        Command::DeviceSim(a) => {
            let stop = stop_flag()?;
            let telemetry = a.mqtt.map(|url| tfmprov::sim::TelemetryConfig {
                url,
                interval: Duration::from_millis(a.interval),
                count: a.count,
                prefix: a.topic_prefix.clone(),
            });
            let cfg = tfmprov::sim::SimConfig {
                state: a.state,
                device_id: a.device_id.clone(),
                smp_udp: Some(a.smp_udp),
                smp_serial: a.smp_serial.clone(),
                telemetry,
                partition: !a.no_partition,
            };
            tfmprov::sim::run(cfg, stop, |udp| {
                // One machine-readable line for scripts and tests.
                let serial = a.smp_serial.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                println!("device-sim ready id={} udp={} serial={}", a.device_id, udp.map(|u| u.to_string()).unwrap_or_default(), serial);
            })?;
            Ok(true)
        }
        Command::Ca(CaCommand::Serve { state, listen, validity_days, import_root, import_intermediate, db, admin_token_file, https }) => {
            let db = tfmprov_db_choice(&db)?;
            tfmprov::demo::serve_ca(state, listen, validity_days, import_root, import_intermediate, db, admin_token_file, &https)?;
            Ok(true)
        }
        Command::Ca(CaCommand::Revoke { url, serial, reason, token }) => {
            let r = tfmprov_ca::client::revoke(&url, &token.token()?, &serial, &reason, Duration::from_secs(10))
                .context("the CA refused the revocation")?;
            println!("revoked: {} serial {} at {} s", r.device_id, r.serial_hex, r.revoked_at);
            Ok(true)
        }
        Command::Aggregator(AggregatorCommand::Serve(a)) => {
            tfmprov::demo::serve_aggregator(*a)?;
            Ok(true)
        }
        Command::Remote(a) if a.op == "rotate" => {
            let r = tfmprov::remote::rotate(&a)?;
            let retire = r.retire_at.map(|t| format!(", old kid {} accepted until {t} ms", r.old_kid)).unwrap_or_default();
            println!(
                "{} rotate: {} (key 0x{:08x}, kid {}{retire}){}",
                a.device,
                r.state,
                r.key_id.unwrap_or(0),
                r.new_kid.as_deref().unwrap_or("-"),
                r.error.map(|e| format!(": {e}")).unwrap_or_default()
            );
            Ok(r.state != "failed")
        }
        Command::Remote(a) => {
            let info = tfmprov::remote::run(&a)?;
            println!(
                "{} {} cseq {}: {}{}",
                a.device,
                info.op,
                info.cseq,
                info.state,
                info.rc.map(|rc| format!(" rc {rc}")).unwrap_or_default()
            );
            match &info.result {
                Some(r) if info.op == "audit" => print!("{}", tfmprov::remote::audit_result_text(r)?),
                Some(r) => println!("{r}"),
                None => {}
            }
            Ok(info.rc.is_none_or(|rc| rc == 0))
        }
        Command::Keys(k) => {
            match k {
                KeysCommand::Generate { link, id, private_hex, replace } => {
                    let private = private_hex.as_deref().map(parse_hex32).transpose()?;
                    let r = link.client()?.key_generate(id, private.as_ref().map(|p| p.as_slice()), replace)?;
                    println!("id 0x{:08x} pub {}", r.id, hex::encode(&r.public));
                }
                KeysCommand::Public { link, id } => {
                    let r = link.client()?.key_public(id)?;
                    println!("id 0x{:08x} pub {}", r.id, hex::encode(&r.public));
                }
                KeysCommand::Status { link, id } => {
                    let present = link.client()?.key_status(id)?;
                    println!("id 0x{id:08x} {}", if present { "present" } else { "absent" });
                }
                KeysCommand::Destroy { link, id } => {
                    link.client()?.key_destroy(id)?;
                    println!("id 0x{id:08x} destroyed");
                }
                KeysCommand::Kak { link } => {
                    let public = link.client()?.kak_public()?;
                    println!("kak pub {}", hex::encode(public));
                }
                KeysCommand::Audit { link, from } => {
                    let log = link.client()?.key_audit(from)?;
                    print!("{}", tfmprov::audit_text(&log)?);
                }
            }
            Ok(true)
        }
        Command::Csr(a) => {
            let der = a.link.client()?.csr_create(a.id, &a.cn, a.o.as_deref(), a.ou.as_deref())?;
            write_out(a.out.as_ref(), &pem("CERTIFICATE REQUEST", &der)?)?;
            Ok(true)
        }
        Command::Certs(c) => {
            match c {
                CertsCommand::Store { link, id, file } => {
                    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                    let der = match std::str::from_utf8(&bytes) {
                        Ok(text) if text.contains("-----BEGIN") => tfmprov::enroll::first_pem_der(text)?,
                        _ => bytes,
                    };
                    link.client()?.cert_store(id, &der)?;
                    println!("stored {} bytes for 0x{id:08x}", der.len());
                }
                CertsCommand::Get { link, id, out } => {
                    let der = link.client()?.cert_get(id)?;
                    write_out(out.as_ref(), &pem("CERTIFICATE", &der)?)?;
                }
            }
            Ok(true)
        }
        Command::Enroll(a) => {
            let targets = a.batch.targets()?;
            let mut opts = a.batch.options()?;
            opts.key_id = a.key_id;
            opts.regenerate = a.regenerate;
            opts.o = a.o;
            opts.ou = a.ou;
            let summary = tfmprov::batch::run(&targets, a.batch.parallel, true, "enroll", |t| tfmprov::enroll::enroll(t, &opts));
            for o in &summary.outcomes {
                if let Ok(e) = &o.result {
                    print_enrolled(e);
                }
            }
            eprint!("{}", summary.report("enroll"));
            Ok(summary.all_ok())
        }
        Command::Factory(a) => {
            let targets = a.batch.targets()?;
            let v2 = a.known_2.as_deref().map(parse_hex32).transpose()?.unwrap_or(tfmprov_device::factory::SAMPLE_VALUE_2);
            let v3 = a.known_3.as_deref().map(parse_hex32).transpose()?.unwrap_or(tfmprov_device::factory::SAMPLE_VALUE_3);
            let opts = a.batch.options()?;
            let summary =
                tfmprov::batch::run(&targets, a.batch.parallel, true, "factory", |t| tfmprov::enroll::factory(t, &opts, &v2, &v3));
            for o in &summary.outcomes {
                if let Ok(e) = &o.result {
                    print_enrolled(e);
                }
            }
            eprint!("{}", summary.report("factory"));
            Ok(summary.all_ok())
        }
        Command::Demo(a) => tfmprov::demo::run(a),
        Command::Operator(c) => tfmprov::admin::operator(c),
        Command::Audit(c) => tfmprov::admin::audit(c),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own report: library logs only when they matter.
    let default_filter = if matches!(cli.command, Command::Demo(_)) { "warn,rumqttd=off" } else { "info,rumqttd=off" };
    tracing_subscriber::fmt()
        .with_env_filter(
            // rumqttd logs every client disconnect as an error: keep it quiet unless asked.
            tracing_subscriber::EnvFilter::try_from_env("TFMPROV_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tfmprov: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
