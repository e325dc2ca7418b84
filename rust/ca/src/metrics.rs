//! `GET /metrics` (Prometheus text format, `prometheus-client`): what the CA
//! did since it started. The durable record is the request log in SQLite.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Issue {
    /// `true`: a known CN came with another key.
    rekey: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    /// `refused` (bad request: 400/413) or `error` (500).
    outcome: &'static str,
}

pub(crate) struct Metrics {
    registry: Registry,
    issued: Family<Issue, Counter>,
    failed: Family<Failure, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tfmprov_ca");
        let issued = Family::<Issue, Counter>::default();
        let failed = Family::<Failure, Counter>::default();
        registry.register("certificates_issued", "Device certificates issued, by re-key", issued.clone());
        registry.register("requests_failed", "Certificate requests not answered with a certificate, by outcome", failed.clone());
        for rekey in ["false", "true"] {
            let _ = issued.get_or_create(&Issue { rekey });
        }
        for outcome in ["refused", "error"] {
            let _ = failed.get_or_create(&Failure { outcome });
        }
        Metrics { registry, issued, failed }
    }

    pub(crate) fn issued(&self, rekey: bool) {
        self.issued.get_or_create(&Issue { rekey: if rekey { "true" } else { "false" } }).inc();
    }

    pub(crate) fn failed(&self, outcome: &str) {
        let outcome = if outcome == "refused" { "refused" } else { "error" };
        self.failed.get_or_create(&Failure { outcome }).inc();
    }

    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding the metrics failed");
        }
        out
    }
}
