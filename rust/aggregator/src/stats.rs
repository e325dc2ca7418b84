//! Accepted / rejected counters (since the aggregator started).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

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

#[derive(Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    rejected: [AtomicU64; RejectCode::ALL.len()],
}

impl Counters {
    pub(crate) fn accept(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn reject(&self, code: RejectCode) {
        if let Some(i) = RejectCode::ALL.iter().position(|c| *c == code) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
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
}
