//! Enrollment of one device: make sure the key exists, have the device build
//! a CSR with it, relay the CSR to the CA, store the certificate on the
//! device (and the CA root as a peer certificate), check it reads back, and
//! optionally register the chain at the aggregator.

use crate::target::{connect, LinkOptions, Target};
use anyhow::{bail, Context, Result};
use std::time::Duration;
use tfmprov_psa::ids::{AUTO_ASSIGN_MIN, PEER_BROKER, PEER_CA_ROOT, PEER_CLOUD, PEER_INTERMEDIATE};
use tfmprov_transport::Client;

/// What to enroll and where.
#[derive(Clone, Debug)]
pub struct EnrollOptions {
    /// CA base URL (`http://127.0.0.1:8443`).
    pub ca_url: String,
    /// Aggregator base URL to register the chain at, if any.
    pub aggregator_url: Option<String>,
    /// Key to enroll; `None` = a new random key at an auto-assigned ID.
    pub key_id: Option<u32>,
    /// Known private value for the key when it has to be created.
    pub known_value: Option<[u8; 32]>,
    /// Replace the key even if it exists (a new key means a new certificate).
    pub regenerate: bool,
    /// Optional subject O and OU.
    pub o: Option<String>,
    /// See `o`.
    pub ou: Option<String>,
    /// SMP link options.
    pub link: LinkOptions,
    /// HTTP timeout for the CA and the aggregator.
    pub http_timeout: Duration,
    /// The operator token sent to the CA (scope `sign`) and the aggregator
    /// (scope `devices`).
    pub token: String,
}

impl EnrollOptions {
    /// Defaults for enrolling at `ca_url` (registering at `aggregator_url`
    /// if given): a new key at an auto-assigned ID, no O/OU, default link
    /// options, a 10 s HTTP timeout.
    pub fn new(ca_url: &str, aggregator_url: Option<&str>, token: &str) -> EnrollOptions {
        EnrollOptions {
            ca_url: ca_url.to_owned(),
            aggregator_url: aggregator_url.map(str::to_owned),
            key_id: None,
            known_value: None,
            regenerate: false,
            o: None,
            ou: None,
            link: LinkOptions::default(),
            http_timeout: Duration::from_secs(10),
            token: token.to_owned(),
        }
    }
}

/// The result of one enrollment.
#[derive(Clone, Debug)]
pub struct Enrolled {
    /// Device id.
    pub device_id: String,
    /// The enrolled key's ID.
    pub key_id: u32,
    /// Its public key.
    pub public: Vec<u8>,
    /// The leaf certificate stored on the device (DER).
    pub leaf_der: Vec<u8>,
    /// Leaf then intermediate, PEM.
    pub chain_pem: String,
    /// Whether the chain was registered at the aggregator.
    pub registered: bool,
}

/// The first certificate of a PEM bundle, as DER.
pub fn first_pem_der(pem: &str) -> Result<Vec<u8>> {
    let begin = pem.find("-----BEGIN CERTIFICATE-----").context("no certificate in PEM")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = pem[begin..].find(end_marker).context("unterminated PEM certificate")? + begin + end_marker.len();
    let (_, der) = der::pem::decode_vec(&pem.as_bytes()[begin..end]).map_err(|e| anyhow::anyhow!("bad PEM certificate: {e}"))?;
    Ok(der)
}

/// Makes sure the key exists (creating it as asked) and returns (id, public key).
pub fn ensure_key(client: &mut Client, key_id: Option<u32>, known: Option<&[u8; 32]>, regenerate: bool) -> Result<(u32, Vec<u8>)> {
    let private = known.map(|v| v.as_slice());
    match key_id {
        None => {
            let r = client.key_generate(None, private, false).context("generating a key")?;
            Ok((r.id, r.public))
        }
        Some(id) => {
            let present = client.key_status(id).context("key status")?;
            if present && !regenerate {
                let r = client.key_public(id).context("reading the public key")?;
                Ok((r.id, r.public))
            } else {
                let r = client.key_generate(Some(id), private, present).context("generating the key")?;
                Ok((r.id, r.public))
            }
        }
    }
}

/// Enrolls one device over an open client.
pub fn enroll_with(client: &mut Client, device_id: &str, opts: &EnrollOptions) -> Result<Enrolled> {
    let (key_id, public) = ensure_key(client, opts.key_id, opts.known_value.as_ref(), opts.regenerate)?;
    let csr = client
        .csr_create(key_id, device_id, opts.o.as_deref(), opts.ou.as_deref())
        .context("device CSR")?;
    let chain_pem = tfmprov_ca::client::submit_csr(&opts.ca_url, &opts.token, &csr, opts.http_timeout).context("CA refused or unreachable")?;
    let leaf_der = first_pem_der(&chain_pem)?;
    client.cert_store(key_id, &leaf_der).context("storing the certificate on the device")?;
    let (root_pem, _intermediate) =
        tfmprov_ca::client::fetch_ca(&opts.ca_url).context("fetching the CA root")?;
    client.cert_store(PEER_CA_ROOT, &first_pem_der(&root_pem)?).context("storing the CA root")?;
    let back = client.cert_get(key_id).context("reading the certificate back")?;
    if back != leaf_der {
        bail!("the device returned a different certificate than the one stored");
    }
    let mut registered = false;
    if let Some(url) = &opts.aggregator_url {
        tfmprov_aggregator::client::register(url, &opts.token, device_id, &chain_pem, opts.http_timeout)
            .context("registering at the aggregator")?;
        registered = true;
        // The key-agreement key (remote provisioning, docs/remote.md), read
        // over this trusted link. A device whose firmware predates it
        // answers "not supported": enrollment goes on without it.
        match client.kak_public() {
            Ok(kak) => tfmprov_aggregator::client::set_kak(url, &opts.token, device_id, &kak, opts.http_timeout)
                .context("registering the key-agreement key")?,
            Err(e) => tracing::warn!("{device_id}: no key-agreement key ({e}): no remote provisioning"),
        }
        // The cloud certificate (for session keys), when the aggregator has one.
        let cloud = tfmprov_aggregator::client::cloud_certificate(url, opts.http_timeout);
        if !store_peer_chain(client, cloud, PEER_CLOUD, "cloud certificate")? {
            tracing::warn!("{device_id}: the aggregator has no cloud certificate: no sealed telemetry")
        }
        // The broker's certificate, whose key the device pins for mutual TLS
        // (docs/security.md), when the aggregator's broker has a TLS listener.
        let broker = tfmprov_aggregator::client::broker_certificate(url, opts.http_timeout);
        if !store_peer_chain(client, broker, PEER_BROKER, "broker certificate")? {
            tracing::info!("{device_id}: the aggregator's broker has no TLS listener: no broker key pinned")
        }
    }
    Ok(Enrolled { device_id: device_id.to_string(), key_id, public, leaf_der, chain_pem, registered })
}

/// Stores the leaf of a chain the aggregator served at peer ID `peer`, its
/// issuer first at 0x3F000002 (the device checks the leaf's chain to the
/// root it holds, docs/remote.md). `Ok(false)`: the aggregator has none (404).
fn store_peer_chain(
    client: &mut Client,
    fetched: Result<String, tfmprov_aggregator::Error>,
    peer: u32,
    what: &str,
) -> Result<bool> {
    let pem = match fetched {
        Ok(p) => p,
        Err(tfmprov_aggregator::Error::Http { status: 404, .. }) => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("fetching the {what}")),
    };
    let chain = pem_chain_der(&pem)?;
    if let Some(issuer) = chain.get(1) {
        client.cert_store(PEER_INTERMEDIATE, issuer).with_context(|| format!("storing the {what}'s issuer"))?;
    }
    client
        .cert_store(peer, &chain[0])
        .with_context(|| format!("storing the {what} (it must chain to the CA root on the device)"))?;
    Ok(true)
}

/// Every certificate of a PEM chain, DER, in order (at least one).
pub fn pem_chain_der(pem: &str) -> Result<Vec<Vec<u8>>> {
    let certs = x509_cert::Certificate::load_pem_chain(pem.as_bytes()).context("PEM certificate chain")?;
    if certs.is_empty() {
        bail!("no certificate in the PEM chain");
    }
    certs.iter().map(|c| der::Encode::to_der(c).context("re-encoding a certificate")).collect()
}

/// Enrolls one device.
pub fn enroll(target: &Target, opts: &EnrollOptions) -> Result<Enrolled> {
    let mut client = connect(&target.link, opts.link)?;
    client.echo("tfmprov").context("device does not answer SMP echo")?;
    enroll_with(&mut client, &target.device_id, opts)
}

/// The seed's sample set on one device, then the chained key (0x00000003)
/// enrolled into the 2-level chain.
pub fn factory(target: &Target, opts: &EnrollOptions, value_2: &[u8; 32], value_3: &[u8; 32]) -> Result<Enrolled> {
    let mut client = connect(&target.link, opts.link)?;
    client.echo("tfmprov").context("device does not answer SMP echo")?;
    // The random key at the first auto-assigned ID (kept when it exists).
    if !client.key_status(AUTO_ASSIGN_MIN).context("key status")? {
        ensure_key(&mut client, None, None, false)?;
    }
    ensure_key(&mut client, Some(tfmprov_device::factory::SAMPLE_KEY_ID_2), Some(value_2), false)?;
    let opts = EnrollOptions {
        key_id: Some(tfmprov_device::factory::SAMPLE_KEY_ID_3),
        known_value: Some(*value_3),
        regenerate: false,
        ..opts.clone()
    };
    enroll_with(&mut client, &target.device_id, &opts)
}
