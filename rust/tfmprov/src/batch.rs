//! Running one operation over many devices: a bounded pool of worker
//! threads, a progress bar, and a summary. One failing device does not stop
//! the others; the caller turns [`Summary::all_ok`] into the exit code.

use crate::target::Target;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The outcome for one device.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The device.
    pub target: Target,
    /// What happened.
    pub result: anyhow::Result<T>,
}

/// All outcomes, in the order of the targets.
#[derive(Debug)]
pub struct Summary<T> {
    /// One per target.
    pub outcomes: Vec<Outcome<T>>,
    /// Wall time of the whole batch.
    pub elapsed: Duration,
}

impl<T> Summary<T> {
    /// Whether every device succeeded.
    pub fn all_ok(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }

    /// Number of devices that succeeded.
    pub fn ok_count(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }

    /// A printable summary: one line per failure, then the totals.
    pub fn report(&self, what: &str) -> String {
        let mut s = String::new();
        for o in &self.outcomes {
            if let Err(e) = &o.result {
                s.push_str(&format!("FAILED  {}: {e:#}\n", o.target));
            }
        }
        let secs = self.elapsed.as_secs_f64();
        s.push_str(&format!(
            "{what}: {} of {} devices succeeded, {} failed, in {:.2} s ({:.1} devices/s)\n",
            self.ok_count(),
            self.outcomes.len(),
            self.outcomes.len() - self.ok_count(),
            secs,
            self.outcomes.len() as f64 / secs.max(1e-9)
        ));
        s
    }
}

/// Runs `op` on every target with at most `parallel` at a time. `progress`
/// shows a bar on stderr (hidden when stderr is not a terminal).
pub fn run<T: Send>(
    targets: &[Target],
    parallel: usize,
    progress: bool,
    label: &str,
    op: impl Fn(&Target) -> anyhow::Result<T> + Sync,
) -> Summary<T> {
    let bar = if progress { ProgressBar::new(targets.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<T>>>> = Mutex::new((0..targets.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, targets.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = targets.get(i) else { break };
                let r = op(t);
                if let Err(e) = &r {
                    bar.println(format!("{label}: {t} failed: {e:#}"));
                }
                bar.set_message(t.device_id.clone());
                bar.inc(1);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    bar.finish_and_clear();
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let outcomes = targets
        .iter()
        .cloned()
        .zip(results)
        .map(|(target, r)| Outcome { target, result: r.unwrap_or_else(|| Err(anyhow::anyhow!("not run"))) })
        .collect();
    Summary { outcomes, elapsed: start.elapsed() }
}
