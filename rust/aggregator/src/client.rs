//! Blocking HTTP client for the aggregator API (used by the `tfmprov` CLI).

use std::time::Duration;

use crate::http::{DeviceInfo, StoredMessage};
use crate::{Error, Stats};

/// Timeout of the calls that take none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read from the server.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

use tfmprov_ca::client::{agent, with_token};

fn url(base_url: &str, path: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), path)
}

/// Percent-encode a path segment (device ids are `[A-Za-z0-9._-]`, but the
/// caller may pass anything; the server then answers 400/404).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// (status, body) of an answer.
fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Result<(u16, String), Error> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|e| Error::Transport(e.to_string()))?;
    Ok((status, body))
}

fn expect<T: serde::de::DeserializeOwned>(ok: &[u16], (status, body): (u16, String)) -> Result<T, Error> {
    if !ok.contains(&status) {
        return Err(Error::Http { status, message: body.trim().to_owned() });
    }
    serde_json::from_str(&body).map_err(|e| Error::BadResponse(format!("{e}: {}", body.chars().take(200).collect::<String>())))
}

/// Register `device_id` with its PEM chain (leaf first), with an operator
/// `token` of scope `devices`. Ok for a new device (201) and for the same
/// key again (200); a refusal is [`Error::Http`] with status 400 or 409 and
/// the server's reason (401 / 403 for the credential).
pub fn register(base_url: &str, token: &str, device_id: &str, chain_pem: &str, timeout: Duration) -> Result<(), Error> {
    register_device(base_url, token, device_id, chain_pem, timeout).map(|_| ())
}

/// [`register`], returning the stored record.
pub fn register_device(
    base_url: &str,
    token: &str,
    device_id: &str,
    chain_pem: &str,
    timeout: Duration,
) -> Result<DeviceInfo, Error> {
    let body = serde_json::json!({ "device_id": device_id, "chain_pem": chain_pem }).to_string();
    let resp = with_token(agent(timeout).post(url(base_url, "/v1/devices")).header("Content-Type", "application/json"), token)
        .send(body.as_bytes())
        .map_err(|e| Error::Transport(e.to_string()))?;
    expect(&[200, 201], answer(resp)?)
}

/// Register a device's key-agreement key (docs/remote.md): the
/// uncompressed P-256 point the factory read from the device.
pub fn set_kak(base_url: &str, token: &str, device_id: &str, kak: &[u8], timeout: Duration) -> Result<(), Error> {
    let body = serde_json::json!({ "kak": hex::encode(kak) }).to_string();
    let resp = with_token(agent(timeout).put(url(base_url, &format!("/v1/devices/{}/kak", segment(device_id)))).header("Content-Type", "application/json"), token)
        .send(body.as_bytes())
        .map_err(|e| Error::Transport(e.to_string()))?;
    let (status, text) = answer(resp)?;
    if status == 204 {
        Ok(())
    } else {
        Err(Error::Http { status, message: text.trim().to_owned() })
    }
}

/// POST `body` as JSON to `{base_url}/v1/devices/{id}/{what}`; the 201
/// answer decoded.
fn create<T: serde::de::DeserializeOwned>(base_url: &str, token: &str, device_id: &str, what: &str, body: serde_json::Value) -> Result<T, Error> {
    let resp = with_token(agent(Duration::from_secs(30)).post(url(base_url, &format!("/v1/devices/{}/{what}", segment(device_id)))).header("Content-Type", "application/json"), token)
        .send(body.to_string().as_bytes())
        .map_err(|e| Error::Transport(e.to_string()))?;
    expect(&[201], answer(resp)?)
}

/// Queue and send a remote command (`op`, JSON `args`; operator `token` of
/// scope `commands`); its info.
pub fn submit_command(base_url: &str, token: &str, device_id: &str, op: &str, args: serde_json::Value) -> Result<crate::CommandInfo, Error> {
    create(base_url, token, device_id, "commands", serde_json::json!({ "op": op, "args": args }))
}

/// GET `{base_url}{path}` (with the operator `token` if given): the 200
/// answer decoded, `None` for a 404.
fn fetch<T: serde::de::DeserializeOwned>(base_url: &str, token: Option<&str>, path: &str, timeout: Duration) -> Result<Option<T>, Error> {
    let mut req = agent(timeout).get(url(base_url, path));
    if let Some(t) = token {
        req = with_token(req, t);
    }
    let resp = req.call().map_err(|e| Error::Transport(e.to_string()))?;
    let (status, text) = answer(resp)?;
    if status == 404 {
        return Ok(None);
    }
    expect(&[200], (status, text)).map(Some)
}

/// A remote command's state and answer, `None` if there is no such command.
pub fn command(base_url: &str, token: &str, device_id: &str, cid: &str) -> Result<Option<crate::CommandInfo>, Error> {
    fetch(base_url, Some(token), &format!("/v1/devices/{}/commands/{}", segment(device_id), segment(cid)), Duration::from_secs(10))
}

/// Start rotating a device's key (docs/remote.md "Rotation").
pub fn start_rotation(
    base_url: &str,
    token: &str,
    device_id: &str,
    key_id: Option<u32>,
    grace_s: Option<u64>,
) -> Result<crate::RotationInfo, Error> {
    create(base_url, token, device_id, "rotation", serde_json::json!({ "id": key_id, "grace_s": grace_s }))
}

/// The device's latest rotation, `None` if it never had one.
pub fn rotation(base_url: &str, token: &str, device_id: &str) -> Result<Option<crate::RotationInfo>, Error> {
    fetch(base_url, Some(token), &format!("/v1/devices/{}/rotation", segment(device_id)), Duration::from_secs(10))
}

/// The device's record, `None` if it is not registered.
pub fn device(base_url: &str, device_id: &str) -> Result<Option<DeviceInfo>, Error> {
    fetch(base_url, None, &format!("/v1/devices/{}", segment(device_id)), DEFAULT_TIMEOUT)
}

/// Revoke a device (its later messages are rejected; operator `token` of
/// scope `devices`); returns its record.
pub fn revoke(base_url: &str, token: &str, device_id: &str) -> Result<DeviceInfo, Error> {
    let resp = with_token(agent(DEFAULT_TIMEOUT).delete(url(base_url, &format!("/v1/devices/{}", segment(device_id)))), token)
        .call()
        .map_err(|e| Error::Transport(e.to_string()))?;
    expect(&[200], answer(resp)?)
}

/// A page of the audit log (operator `token` of scope `audit`): at most
/// `limit` (<= 1000) entries after `after`, oldest first.
pub fn audit(base_url: &str, token: &str, after: i64, limit: u32) -> Result<Vec<tfmprov_auth::AuditEntry>, Error> {
    fetch(base_url, Some(token), &format!("/v1/audit?after={after}&limit={limit}"), DEFAULT_TIMEOUT)?
        .ok_or_else(|| Error::BadResponse("no audit log (404)".into()))
}

/// Stored messages of a device, oldest first (at most `limit`, <= 1000).
pub fn messages(base_url: &str, device_id: &str, limit: u32) -> Result<Vec<StoredMessage>, Error> {
    let resp = agent(DEFAULT_TIMEOUT)
        .get(url(base_url, &format!("/v1/devices/{}/messages?limit={limit}", segment(device_id))))
        .call()
        .map_err(|e| Error::Transport(e.to_string()))?;
    expect(&[200], answer(resp)?)
}

/// Accepted / rejected counters.
pub fn stats(base_url: &str) -> Result<Stats, Error> {
    let resp = agent(DEFAULT_TIMEOUT)
        .get(url(base_url, "/v1/stats"))
        .call()
        .map_err(|e| Error::Transport(e.to_string()))?;
    expect(&[200], answer(resp)?)
}

/// The aggregator's cloud certificate chain (`GET /v1/cloud`): PEM, the
/// cloud leaf first (the certificate devices store at peer ID 0x3F000001),
/// then the intermediate. No cloud identity is [`Error::Http`] with status
/// 404; an answer that is not PEM certificates is [`Error::BadResponse`].
pub fn cloud_certificate(base_url: &str, timeout: Duration) -> Result<String, Error> {
    pem_chain_at(base_url, "/v1/cloud", timeout)
}

/// GETs `{base_url}/v1/broker`: the PEM chain of the embedded broker's TLS
/// certificate (the leaf devices store at peer ID 0x3F000003 and pin). No
/// TLS listener is [`Error::Http`] with status 404.
pub fn broker_certificate(base_url: &str, timeout: Duration) -> Result<String, Error> {
    pem_chain_at(base_url, "/v1/broker", timeout)
}

fn pem_chain_at(base_url: &str, path: &str, timeout: Duration) -> Result<String, Error> {
    let resp = agent(timeout)
        .get(url(base_url, path))
        .call()
        .map_err(|e| Error::Transport(e.to_string()))?;
    let (status, body) = answer(resp)?;
    if status != 200 {
        return Err(Error::Http { status, message: body.trim().to_owned() });
    }
    match x509_cert::Certificate::load_pem_chain(body.as_bytes()) {
        Ok(certs) if !certs.is_empty() => Ok(body),
        Ok(_) => Err(Error::BadResponse("no certificate in the answer".into())),
        Err(e) => Err(Error::BadResponse(format!("not a PEM certificate chain: {e}"))),
    }
}
