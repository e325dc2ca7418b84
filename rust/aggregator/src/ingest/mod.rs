//! Ingestion pipeline: MQTT task -> verify pool -> SQLite writer.
//!
//! ```text
//!  MQTT task (tokio)           verify pool (N threads)      writer (1 thread)
//!  topic -> kind -> prepare ──► Job ──► ES256 (ring) ──► Write ──► replay window,
//!  (cheap checks, rejects          │                           INSERT, batched in
//!   garbage without queueing)      └─ bad signature            one transaction
//!                │                        │                          │
//!                └──────── Shared: counters, error reports, in-order acks ◄┘
//! ```
//!
//! Each device's messages go to one verify worker (hash of the device id),
//! so they reach the writer in the order they arrived: the pool never
//! reorders a device's messages (a shared queue did, past the replay window,
//! under load). Messages are acknowledged to the broker in arrival order
//! once finished ([`ack`]).
//!
//! Each topic kind is a module ([`data`] today; `session` and `sealed` later)
//! with the same three steps: `prepare` (in the MQTT task), a CPU job for the
//! pool, and an `apply` in the writer's transaction. Adding a kind is adding a
//! module and a variant to [`Job`] / [`Write`].

pub(crate) mod ack;
pub(crate) mod data;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tfmprov_cose::{parse_topic, topic, ErrorReport, Kid, Kind, RejectCode, Replay, ReplayWindow};
use tokio::sync::mpsc::UnboundedSender;

pub(crate) use ack::{AckTracker, Ticket};

use crate::registry::Registry;
use crate::stats::Counters;

/// Largest number of messages written in one transaction.
const MAX_BATCH: usize = 1024;
/// A batch smaller than this waits up to [`BATCH_LINGER`] for more messages.
const LINGER_BELOW: usize = 32;
/// How long a small batch waits for more (adds at most this to the latency).
const BATCH_LINGER: Duration = Duration::from_millis(1);
/// Jobs waiting for one verify worker; when full the MQTT task waits (TCP backpressure).
const JOB_QUEUE: usize = 1024;
/// Verified messages waiting for the writer.
const WRITE_QUEUE: usize = 2048;
/// Error reports waiting to be published; beyond this they are dropped (and logged).
pub(crate) const MAX_REPORT_BACKLOG: usize = 10_000;

/// Work for the MQTT outbox task.
pub(crate) enum Out {
    /// PUBACK / PUBREC for a finished message, and the connection it came on.
    Ack(rumqttc::Publish, u64),
    /// An `errors` body to publish (QoS 1).
    Report { topic: String, body: Vec<u8> },
    /// (Re)subscribe after a connection.
    Subscribe,
    /// Disconnect cleanly (shutdown; everything queued before it is sent first).
    Disconnect,
}

/// Why a message was rejected, with the kid/seq when they could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: RejectCode,
    pub kid: Option<Kid>,
    pub seq: Option<u64>,
}

impl Rejection {
    pub(crate) fn new(code: RejectCode) -> Self {
        Rejection { code, kid: None, seq: None }
    }
}

/// CPU work for the verify pool.
pub(crate) enum Job {
    Data(data::Job),
    /// Finish: the worker exits after the jobs queued before this one.
    Stop,
}

/// Work for the writer.
pub(crate) enum Write {
    Data(data::Verified),
}

/// Windows changed in the current batch and their value before it.
pub(crate) type WindowUndo = HashMap<String, HashMap<Kid, ReplayWindow>>;

/// State every stage of the pipeline shares.
pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    pub counters: Arc<Counters>,
    pub prefix: String,
    pub max_message: usize,
    pub replay_window: u64,
    windows: Mutex<HashMap<String, HashMap<Kid, ReplayWindow>>>,
    acks: Mutex<AckTracker>,
    out: UnboundedSender<Out>,
    pub report_backlog: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(
        registry: Arc<Registry>,
        counters: Arc<Counters>,
        prefix: String,
        max_message: usize,
        replay_window: u32,
        windows: HashMap<(String, Kid), ReplayWindow>,
        out: UnboundedSender<Out>,
    ) -> Shared {
        let mut w: HashMap<String, HashMap<Kid, ReplayWindow>> = HashMap::new();
        for ((id, kid), win) in windows {
            w.entry(id).or_default().insert(kid, win);
        }
        Shared {
            registry,
            counters,
            prefix,
            max_message,
            replay_window: u64::from(replay_window),
            windows: Mutex::new(w),
            acks: Mutex::new(AckTracker::new(out.clone())),
            out,
            report_backlog: AtomicUsize::new(0),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<Kid, ReplayWindow>>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn acks(&self) -> std::sync::MutexGuard<'_, AckTracker> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared window check with the configured width (<= 128).
    fn check(&self, w: &ReplayWindow, seq: u64) -> Result<(), Replay> {
        if let Some(h) = w.highest() {
            if seq <= h && h - seq >= self.replay_window {
                return Err(Replay::TooOld);
            }
        }
        w.check(seq)
    }

    /// Would `seq` pass the window now? (No change.)
    pub(crate) fn replay_precheck(&self, id: &str, kid: &Kid, seq: u64) -> Result<(), Replay> {
        match self.windows().get(id).and_then(|m| m.get(kid)) {
            Some(w) => self.check(w, seq),
            None => Ok(()),
        }
    }

    /// Check and record `seq` (writer only); the old window goes to `undo`.
    pub(crate) fn replay_accept(&self, id: &str, kid: &Kid, seq: u64, undo: &mut WindowUndo) -> Result<(), Replay> {
        let mut all = self.windows();
        let per_device = match all.get_mut(id) {
            Some(m) => m,
            None => all.entry(id.to_owned()).or_default(),
        };
        let w = per_device.entry(*kid).or_default();
        self.check(w, seq)?;
        let saved = match undo.get_mut(id) {
            Some(m) => m,
            None => undo.entry(id.to_owned()).or_default(),
        };
        saved.entry(*kid).or_insert(*w);
        w.accept(seq);
        Ok(())
    }

    fn window(&self, id: &str, kid: &Kid) -> Option<ReplayWindow> {
        self.windows().get(id).and_then(|m| m.get(kid)).copied()
    }

    fn restore(&self, undo: WindowUndo) {
        let mut all = self.windows();
        for (id, m) in undo {
            let per_device = all.entry(id).or_default();
            for (kid, w) in m {
                per_device.insert(kid, w);
            }
        }
    }

    /// The message is finished; `ack` false leaves it unacknowledged.
    pub(crate) fn finish(&self, ticket: Ticket, ack: bool) {
        self.acks().complete(ticket, ack);
    }

    /// Count, report on `{prefix}/{id}/errors` (when the topic named a valid
    /// id) and acknowledge a rejected message.
    pub(crate) fn reject(&self, ticket: Ticket, device_id: Option<&str>, r: Rejection) {
        self.counters.reject(r.code);
        tracing::debug!(device = ?device_id, code = r.code.code(), seq = ?r.seq, "rejected: {}", r.code.reason());
        if let Some(id) = device_id {
            if self.report_backlog.load(Ordering::Relaxed) < MAX_REPORT_BACKLOG {
                let mut report = ErrorReport::new(r.code);
                report.kid = r.kid.map(|k| k.to_vec());
                report.seq = r.seq;
                self.report_backlog.fetch_add(1, Ordering::Relaxed);
                let _ = self.out.send(Out::Report {
                    topic: topic(&self.prefix, id, Kind::Errors),
                    body: report.to_cbor(),
                });
            } else {
                tracing::warn!(device = id, "error report dropped: report backlog full");
            }
        }
        self.finish(ticket, true);
    }

    fn accepted(&self, ticket: Ticket) {
        self.finish(ticket, true);
    }
}

/// The verify pool and the writer.
pub(crate) struct Pipeline {
    job_txs: Vec<tokio::sync::mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

/// The MQTT task's entry into the pipeline.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    job_txs: Vec<tokio::sync::mpsc::Sender<Job>>,
}

/// The verify worker of a device: all messages of one device go through the
/// same worker, so they reach the writer in arrival order (parallel
/// verification never reorders a device's messages past its replay window).
fn shard(device_id: &str, n: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    device_id.hash(&mut h);
    (h.finish() % n as u64) as usize
}

impl Pipeline {
    pub(crate) fn start(
        shared: Arc<Shared>,
        writer_db: Connection,
        workers: usize,
    ) -> std::io::Result<(Pipeline, Dispatcher)> {
        let (write_tx, write_rx) = std::sync::mpsc::sync_channel::<Write>(WRITE_QUEUE);
        let mut threads = Vec::new();
        let mut job_txs = Vec::new();
        for i in 0..workers.max(1) {
            let (tx, rx) = tokio::sync::mpsc::channel::<Job>(JOB_QUEUE);
            job_txs.push(tx);
            let (wtx, sh) = (write_tx.clone(), shared.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("agg-verify-{i}"))
                    .spawn(move || worker(rx, wtx, sh))?,
            );
        }
        drop(write_tx);
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("agg-writer".into())
                .spawn(move || writer(writer_db, write_rx, sh))?,
        );
        Ok((Pipeline { job_txs: job_txs.clone(), threads }, Dispatcher { shared, job_txs }))
    }

    /// Stop the pool and the writer once the jobs queued so far are stored
    /// (blocking). Call after the MQTT task stopped taking messages.
    pub(crate) fn stop(self) {
        for tx in &self.job_txs {
            let _ = tx.blocking_send(Job::Stop);
        }
        drop(self.job_txs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl Dispatcher {
    /// Route one received publish (MQTT task). Waits only when the device's
    /// verify queue is full; everything rejected here never reaches a queue.
    pub(crate) async fn dispatch(&self, ticket: Ticket, topic_name: &str, payload: &[u8], received_at: i64) {
        let sh = &self.shared;
        let Some((id, kind)) = parse_topic(&sh.prefix, topic_name) else {
            sh.reject(ticket, None, Rejection::new(RejectCode::UnknownDevice));
            return;
        };
        match kind {
            Kind::Data => match data::prepare(sh, ticket, id, payload, received_at) {
                Ok(job) => {
                    let tx = &self.job_txs[shard(id, self.job_txs.len())];
                    if tx.send(Job::Data(job)).await.is_err() {
                        sh.finish(ticket, false);
                    }
                }
                Err(r) => sh.reject(ticket, Some(id), r),
            },
            // Not subscribed (yet): session and sealed are issue 5; errors is ours.
            Kind::Session | Kind::Sealed | Kind::Errors => sh.finish(ticket, true),
        }
    }
}

fn worker(mut rx: tokio::sync::mpsc::Receiver<Job>, tx: SyncSender<Write>, sh: Arc<Shared>) {
    while let Some(job) = rx.blocking_recv() {
        match job {
            Job::Data(j) => match data::verify(j) {
                Ok(v) => {
                    if let Err(std::sync::mpsc::SendError(Write::Data(v))) = tx.send(Write::Data(v)) {
                        sh.finish(v.ticket, false);
                    }
                }
                Err((ticket, id, r)) => sh.reject(ticket, Some(&id), r),
            },
            Job::Stop => return,
        }
    }
}

fn writer(mut db: Connection, rx: Receiver<Write>, sh: Arc<Shared>) {
    while let Ok(first) = rx.recv() {
        // Take what is queued; while the batch is small, linger a little for
        // more: a commit costs about as much as dozens of rows.
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + BATCH_LINGER;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) if batch.len() >= LINGER_BELOW => break,
                Err(_) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(w) => batch.push(w),
                        Err(_) => break,
                    }
                }
            }
        }
        write_batch(&mut db, &sh, batch);
    }
}

fn ticket_of(w: &Write) -> (Ticket, &str) {
    match w {
        Write::Data(v) => (v.ticket, &v.device_id),
    }
}

/// Store a batch in one transaction; retried a few times on a database error,
/// after which its messages are left unacknowledged (redelivered later).
fn write_batch(db: &mut Connection, sh: &Shared, batch: Vec<Write>) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=4 {
        let mut undo = WindowUndo::new();
        match try_batch(db, sh, &batch, &mut undo) {
            Ok(outcomes) => {
                let accepted = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
                sh.counters.accept(accepted);
                for (w, o) in batch.iter().zip(outcomes) {
                    let (ticket, id) = ticket_of(w);
                    match o {
                        Ok(()) => sh.accepted(ticket),
                        Err(r) => sh.reject(ticket, Some(id), r),
                    }
                }
                return;
            }
            Err(e) => {
                sh.restore(undo);
                tracing::error!(attempt, error = %e, "storing a batch failed");
                if attempt < 4 {
                    std::thread::sleep(delay);
                    delay *= 4;
                }
            }
        }
    }
    for w in &batch {
        sh.finish(ticket_of(w).0, false);
    }
}

fn try_batch(
    db: &mut Connection,
    sh: &Shared,
    batch: &[Write],
    undo: &mut WindowUndo,
) -> Result<Vec<Result<(), Rejection>>, rusqlite::Error> {
    let tx = db.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for w in batch {
        outcomes.push(match w {
            Write::Data(v) => data::apply(sh, &tx, v, undo)?,
        });
    }
    for (id, m) in undo.iter() {
        for kid in m.keys() {
            if let Some(w) = sh.window(id, kid) {
                crate::store::save_window(&tx, id, kid, &w)?;
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}
