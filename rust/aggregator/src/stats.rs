//! Accepted / rejected counters (since the aggregator started), for
//! `GET /v1/stats` (JSON) and `GET /metrics` (Prometheus text format, through
//! the `prometheus-client` crate).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use serde::{Deserialize, Serialize};
use tfmprov_cose::RejectCode;

/// Counts since start: accepted (stored) messages, and rejected ones by
/// reason ([`RejectCode::reason`] text, every reason present, 0 included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages verified and stored.
    pub accepted: u64,
    /// Rejected messages by reason (`"unknown device"`, `"bad signature"`, ...).
    pub rejected: BTreeMap<String, u64>,
}

impl Stats {
    /// Rejections counted for `code`.
    pub fn rejected_for(&self, code: RejectCode) -> u64 {
        self.rejected.get(code.reason()).copied().unwrap_or(0)
    }

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    code: u32,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: &'static str,
}

/// A queue whose depth `/metrics` reports.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Queue {
    /// Messages waiting for a verify worker (all workers).
    Verify,
    /// Verified messages waiting for the writer.
    Write,
    /// Early sealed messages held for their session message.
    Parked,
    /// Error reports waiting to be published.
    Reports,
}

impl Queue {
    fn label(self) -> &'static str {
        match self {
            Queue::Verify => "verify",
            Queue::Write => "write",
            Queue::Parked => "parked",
            Queue::Reports => "reports",
        }
    }
}

/// The counters and the Prometheus metrics that mirror them.
pub(crate) struct Counters {
    accepted: AtomicU64,
    rejected: [AtomicU64; RejectCode::ALL.len()],
    registry: Registry,
    m_accepted: Counter,
    m_rejected: Family<RejectLabels, Counter>,
    m_latency: Histogram,
    m_registrations: Family<ResultLabels, Counter>,
    m_queue: Family<QueueLabels, Gauge>,
}

impl Default for Counters {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tfmprov_aggregator");
        let m_accepted = Counter::default();
        let m_rejected = Family::<RejectLabels, Counter>::default();
        // 0.5 ms .. ~16 s: from a lone message to a backlog after an outage.
        let m_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let m_registrations = Family::<ResultLabels, Counter>::default();
        let m_queue = Family::<QueueLabels, Gauge>::default();
        registry.register("messages_accepted", "Messages verified and stored", m_accepted.clone());
        registry.register("messages_rejected", "Messages rejected, by errors-topic code and reason", m_rejected.clone());
        registry.register_with_unit(
            "ingest_latency",
            "From receipt from the broker to the commit that stored the message",
            prometheus_client::registry::Unit::Seconds,
            m_latency.clone(),
        );
        registry.register("registrations", "Device registrations, by result", m_registrations.clone());
        registry.register("queue_depth", "Items waiting in each internal queue", m_queue.clone());
        // Every reason present from the start (0 included), as in /v1/stats.
        for c in RejectCode::ALL {
            let _ = m_rejected.get_or_create(&RejectLabels { code: c.code(), reason: c.reason() });
        }
        for result in ["created", "unchanged", "refused"] {
            let _ = m_registrations.get_or_create(&ResultLabels { result });
        }
        Counters {
            accepted: AtomicU64::new(0),
            rejected: Default::default(),
            registry,
            m_accepted,
            m_rejected,
            m_latency,
            m_registrations,
            m_queue,
        }
    }
}

impl Counters {
    pub(crate) fn accept(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
        self.m_accepted.inc_by(n);
    }

    pub(crate) fn reject(&self, code: RejectCode) {
        if let Some(i) = RejectCode::ALL.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
        self.m_rejected.get_or_create(&RejectLabels { code: code.code(), reason: code.reason() }).inc();
    }

    /// A message stored `ms` milliseconds after it was received.
    pub(crate) fn stored_after(&self, ms: i64) {
        self.m_latency.observe(ms.max(0) as f64 / 1000.0);
    }

    /// A registration answered: `created`, `unchanged` or `refused`.
    pub(crate) fn registration(&self, result: &'static str) {
        self.m_registrations.get_or_create(&ResultLabels { result }).inc();
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: RejectCode::ALL
                .iter()
                .zip(self.rejected.iter())
                .map(|(c, n)| (c.reason().to_owned(), n.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// The Prometheus text exposition, with the queue depths as of now.
    pub(crate) fn metrics_text(&self, depths: &[(Queue, usize)]) -> String {
        for (q, n) in depths {
            self.m_queue.get_or_create(&QueueLabels { queue: q.label() }).set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding the metrics failed");
        }
        out
    }
}
