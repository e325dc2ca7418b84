//! `tfmprov remote …`: remote provisioning through the aggregator
//! (docs/remote.md). Thin: it posts the command, then polls its state until
//! the device answered or the wait is over.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tfmprov_aggregator::CommandInfo;

/// Arguments shared by every `remote` operation.
#[derive(Args, Clone, Debug)]
pub struct RemoteArgs {
    /// The operation: status, public, generate, destroy, csr, store-cert,
    /// get-cert, use-key, audit (the device's log of key operations); or rotate (the whole key rotation, run by the
    /// aggregator: new key, CSR, CA, certificate, registration, switch, and
    /// the old key destroyed after the grace period).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(ops()))]
    pub op: String,
    /// The device id.
    #[arg(long)]
    pub device: String,
    /// The aggregator's base URL.
    #[arg(long, default_value = "https://127.0.0.1:8080")]
    pub aggregator: String,
    /// Key ID (decimal or 0x hex).
    #[arg(long, value_parser = parse_u32)]
    pub id: Option<u32>,
    /// generate: replace an existing key.
    #[arg(long)]
    pub replace: bool,
    /// csr: subject CN.
    #[arg(long)]
    pub cn: Option<String>,
    /// store-cert: the DER certificate file.
    #[arg(long)]
    pub cert: Option<std::path::PathBuf>,
    /// audit: from this sequence number on (default: the oldest kept).
    #[arg(long)]
    pub from: Option<u64>,
    /// rotate: seconds the old key stays accepted after the device switched
    /// (default: the aggregator's --rotation-grace).
    #[arg(long)]
    pub grace: Option<u64>,
    /// How long to wait for the device's answer, in seconds (0: do not wait).
    /// rotate waits until the device has switched to the new key.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
    /// The operator credential (scope `commands`).
    #[command(flatten)]
    pub token: crate::credential::TokenArgs,
}

fn ops() -> Vec<&'static str> {
    let mut v = tfmprov_aggregator::REMOTE_OPS.to_vec();
    v.push("rotate");
    v
}

/// Starts a key rotation and waits until the device has switched to the new
/// key (state `grace`), the rotation ended (`done`, `failed`) or the wait is
/// over. The rotation's info at that point.
pub fn rotate(a: &RemoteArgs) -> Result<tfmprov_aggregator::RotationInfo> {
    let token = a.token.token()?;
    let mut info = tfmprov_aggregator::client::start_rotation(&a.aggregator, &token, &a.device, a.id, a.grace)
        .context("the aggregator refused the rotation")?;
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    while !["grace", "done", "failed"].contains(&info.state.as_str()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        info = tfmprov_aggregator::client::rotation(&a.aggregator, &token, &a.device)?.context("the rotation vanished from the aggregator")?;
    }
    if a.wait > 0 && !["grace", "done", "failed"].contains(&info.state.as_str()) {
        bail!("{}: rotation {} still at step {} after {} s (it goes on in the aggregator)", a.device, info.rid, info.state, a.wait);
    }
    Ok(info)
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|e| format!("{s:?}: {e}"))
}

/// The audit log in an `audit` command's result (`{"log": hex}`), as text.
pub fn audit_result_text(result: &serde_json::Value) -> Result<String> {
    let log = result.get("log").and_then(|l| l.as_str()).context("the audit result has no log")?;
    let log = tfmprov_smp::AuditLog::decode(&hex::decode(log).context("the audit log is not hex")?)
        .map_err(|e| anyhow::anyhow!("the device's audit log is malformed: {e:?}"))?;
    crate::audit_text(&log)
}

/// Runs one remote command; the command's final info.
pub fn run(a: &RemoteArgs) -> Result<CommandInfo> {
    let mut args = serde_json::Map::new();
    if let Some(id) = a.id {
        args.insert("id".into(), id.into());
    }
    if a.replace {
        args.insert("replace".into(), true.into());
    }
    if let Some(from) = a.from {
        args.insert("from".into(), from.into());
    }
    if let Some(cn) = &a.cn {
        args.insert("cn".into(), cn.clone().into());
    }
    if let Some(path) = &a.cert {
        let der = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        args.insert("cert".into(), hex::encode(der).into());
    }
    let token = a.token.token()?;
    let info = tfmprov_aggregator::client::submit_command(&a.aggregator, &token, &a.device, &a.op, args.into())
        .context("the aggregator refused the command")?;
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let mut info = info;
    while info.state == "sent" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        info = tfmprov_aggregator::client::command(&a.aggregator, &token, &a.device, &info.cid)?
            .context("the command vanished from the aggregator")?;
    }
    if a.wait > 0 && info.state == "sent" {
        bail!("no answer from {} within {} s (command {} is still pending)", a.device, a.wait, info.cid);
    }
    Ok(info)
}
