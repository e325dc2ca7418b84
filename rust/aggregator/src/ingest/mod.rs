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
//! Each topic kind is a module ([`data`], [`session`], [`sealed`]) with the
//! same three steps: `prepare` (in the MQTT task), a CPU job for the pool,
//! and an `apply` in the writer's transaction. Adding a kind is adding a
//! module and a variant to [`Job`] / [`Write`].

pub(crate) mod ack;
pub(crate) mod data;
pub(crate) mod sealed;
pub(crate) mod session;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tfmprov_cose::{parse_topic, topic, ErrorReport, Kid, Kind, RejectCode, Replay, ReplayWindow};
use tokio::sync::mpsc::UnboundedSender;

pub(crate) use ack::{AckTracker, Ticket};

use tfmprov_db::{Db, DbError};
use crate::registry::Registry;
use crate::sessions::Sessions;
use crate::stats::{Counters, Queue};

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
/// Early sealed messages (see [`Shared::park`]) held per device.
pub const MAX_PARKED_PER_DEVICE: usize = 32;
/// Early sealed messages held in all.
pub const MAX_PARKED: usize = 1024;

/// Work for the MQTT outbox task.
pub(crate) enum Out {
    /// PUBACK / PUBREC for a finished message, and the connection it came on.
    Ack(rumqttc::Publish, u64),
    /// An `errors` body to publish (QoS 1).
    Report { topic: String, body: Vec<u8> },
    /// A remote command to publish (QoS 1).
    Publish { topic: String, body: Vec<u8> },
    /// (Re)subscribe after a connection.
    Subscribe,
    /// Disconnect cleanly (shutdown; everything queued before it is sent first).
    Disconnect,
}

/// A key id as the server keys replay windows, stores messages and reports
/// rejections: a signing kid (8 bytes, `data` and `session` signatures, the
/// cloud kid) or a session id (4 bytes big endian, `sealed`, as in the COSE
/// protected header). The lengths differ, so the two never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyId {
    Key(Kid),
    Session(u32),
}

impl KeyId {
    /// The bytes stored in `messages.kid` / `replay.kid` and sent as `kid`.
    pub(crate) fn to_vec(self) -> Vec<u8> {
        match self {
            KeyId::Key(k) => k.to_vec(),
            KeyId::Session(s) => s.to_be_bytes().to_vec(),
        }
    }

    /// Inverse of [`KeyId::to_vec`].
    pub(crate) fn from_bytes(b: &[u8]) -> Option<KeyId> {
        if let Ok(k) = Kid::try_from(b) {
            return Some(KeyId::Key(k));
        }
        <[u8; 4]>::try_from(b).ok().map(|s| KeyId::Session(u32::from_be_bytes(s)))
    }
}

/// Why a message was rejected, with the kid/seq when they could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: RejectCode,
    pub kid: Option<KeyId>,
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
    Session(session::Job),
    Sealed(sealed::Job),
    /// Finish: the worker exits after the jobs queued before this one.
    Stop,
}

/// Work for the writer.
pub(crate) enum Write {
    Data(data::Verified),
    Session(session::Verified),
    Sealed(sealed::Verified),
}

/// Windows changed in the current batch and their value before it.
pub(crate) type WindowUndo = HashMap<String, HashMap<KeyId, ReplayWindow>>;

/// In-memory changes of the current batch, undone if its transaction fails.
#[derive(Default)]
pub(crate) struct Undo {
    pub windows: WindowUndo,
    /// Sessions accepted in this batch (device, session id).
    pub sessions: Vec<(String, u32)>,
}

/// State every stage of the pipeline shares.
pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    pub counters: Arc<Counters>,
    pub prefix: String,
    pub max_message: usize,
    /// How far below a key's newest accepted seq a message may be (see
    /// [`crate::Config::replay_horizon`]).
    pub replay_horizon: u64,
    pub sessions: Arc<Sessions>,
    windows: Mutex<HashMap<String, HashMap<KeyId, ReplayWindow>>>,
    acks: Mutex<AckTracker>,
    out: UnboundedSender<Out>,
    pub report_backlog: AtomicUsize,
    /// Verified messages sent to the writer and not yet taken by it.
    write_queued: AtomicUsize,
    /// How long an early sealed message waits for its session message.
    pub early_sealed_wait: Duration,
    /// One of several instances (a share group): another instance may be
    /// storing any session of any device right now.
    pub multi_instance: bool,
    /// Remote provisioning (replies come through the MQTT task).
    pub remote: Arc<crate::remote::Remote>,
    parked: Mutex<Parked>,
}

/// A sealed message that arrived before its session message (acknowledged,
/// held in memory until the session message comes or the wait ends).
struct EarlySealed {
    session_id: u32,
    seq: u64,
    payload: Vec<u8>,
    received_at: i64,
    deadline: std::time::Instant,
}

#[derive(Default)]
struct Parked {
    by_device: HashMap<String, Vec<EarlySealed>>,
    total: usize,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        registry: Arc<Registry>,
        counters: Arc<Counters>,
        prefix: String,
        max_message: usize,
        replay_horizon: u64,
        windows: HashMap<(String, KeyId), ReplayWindow>,
        sessions: Arc<Sessions>,
        early_sealed_wait: Duration,
        multi_instance: bool,
        remote: Arc<crate::remote::Remote>,
        out: UnboundedSender<Out>,
    ) -> Shared {
        let mut w: HashMap<String, HashMap<KeyId, ReplayWindow>> = HashMap::new();
        for ((id, kid), win) in windows {
            w.entry(id).or_default().insert(kid, win);
        }
        Shared {
            registry,
            counters,
            prefix,
            max_message,
            replay_horizon,
            sessions,
            windows: Mutex::new(w),
            acks: Mutex::new(AckTracker::new(out.clone())),
            out,
            report_backlog: AtomicUsize::new(0),
            write_queued: AtomicUsize::new(0),
            early_sealed_wait,
            multi_instance,
            remote,
            parked: Mutex::new(Parked::default()),
        }
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, Parked> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hold a sealed message whose session is not known yet but may be on its
    /// way: MQTT orders messages only within one QoS, and brokers forward a
    /// QoS 2 publish (the session message) only at its PUBREL, so the device's
    /// first sealed message usually arrives before the session message it
    /// follows. False if the caps are reached (then it is rejected at once).
    pub(crate) fn park(&self, device_id: &str, session_id: u32, seq: u64, payload: &[u8], received_at: i64) -> bool {
        let mut p = self.parked();
        if p.total >= MAX_PARKED {
            return false;
        }
        let list = p.by_device.entry(device_id.to_owned()).or_default();
        if list.len() >= MAX_PARKED_PER_DEVICE {
            return false;
        }
        list.push(EarlySealed {
            session_id,
            seq,
            payload: payload.to_vec(),
            received_at,
            deadline: std::time::Instant::now() + self.early_sealed_wait,
        });
        p.total += 1;
        true
    }

    /// The held sealed messages of (device, session id), in arrival order.
    fn unpark(&self, device_id: &str, session_id: u32) -> Vec<(Vec<u8>, i64)> {
        let mut p = self.parked();
        let Some(list) = p.by_device.get_mut(device_id) else { return Vec::new() };
        let (take, keep): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(|e| e.session_id == session_id);
        *list = keep;
        if list.is_empty() {
            p.by_device.remove(device_id);
        }
        p.total -= take.len();
        take.into_iter().map(|e| (e.payload, e.received_at)).collect()
    }

    /// Take the held sealed messages whose wait is over, or all of them
    /// (`all`): (device id, session id, seq, payload, received at).
    fn take_expired(&self, all: bool) -> Vec<(String, EarlySealed)> {
        let now = std::time::Instant::now();
        self.take_parked(|e| all || e.deadline <= now)
    }

    /// Take the held sealed messages for which `due` holds.
    fn take_parked(&self, due: impl Fn(&EarlySealed) -> bool) -> Vec<(String, EarlySealed)> {
        let mut taken = Vec::new();
        let mut p = self.parked();
        let mut n = 0;
        p.by_device.retain(|id, list| {
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(&due);
            n += gone.len();
            taken.extend(gone.into_iter().map(|e| (id.clone(), e)));
            *list = keep;
            !list.is_empty()
        });
        p.total -= n;
        taken
    }

    /// Hold a taken message again (its wait is not over).
    fn repark(&self, id: String, e: EarlySealed) {
        let mut p = self.parked();
        p.by_device.entry(id).or_default().push(e);
        p.total += 1;
    }

    fn reject_parked(&self, id: &str, e: &EarlySealed) {
        let r = Rejection { code: RejectCode::UnknownSession, kid: Some(KeyId::Session(e.session_id)), seq: Some(e.seq) };
        self.reject(None, Some(id), r);
    }

    /// Reject (UnknownSession) every held sealed message (shutdown).
    pub(crate) fn expire_all_parked(&self) {
        for (id, e) in self.take_expired(true) {
            self.reject_parked(&id, &e);
        }
    }

    /// The checks every message kind starts with: the device named in the
    /// topic is registered and not revoked, and the message is not too large.
    pub(crate) fn admit(
        &self,
        device_id: &str,
        len: usize,
    ) -> Result<Arc<crate::registry::DeviceEntry>, Rejection> {
        let Some(device) = self.registry.get(device_id) else {
            return Err(Rejection::new(RejectCode::UnknownDevice));
        };
        if device.revoked {
            return Err(Rejection::new(RejectCode::Revoked));
        }
        if len > self.max_message {
            return Err(Rejection::new(RejectCode::TooLarge));
        }
        Ok(device)
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<KeyId, ReplayWindow>>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn acks(&self) -> std::sync::MutexGuard<'_, AckTracker> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the window and the horizon say about `seq` (no change).
    ///
    /// The window answers exactly inside its 128 values: a set bit is a
    /// proven duplicate, a clear bit (or a newer seq) is unseen. Below the
    /// window it cannot tell, and nothing is refused on that ground: the
    /// writer's insert (unique `(device, kid, seq)`) is the authority. Only a
    /// seq more than `replay_horizon` below the newest is refused unseen, with
    /// its own code.
    fn check(&self, w: &ReplayWindow, seq: u64) -> Result<(), RejectCode> {
        if let Some(h) = w.highest() {
            if seq < h && h - seq > self.replay_horizon {
                return Err(RejectCode::SeqTooOld);
            }
        }
        match w.check(seq) {
            Err(Replay::Duplicate) => Err(RejectCode::Replay),
            Ok(()) | Err(Replay::BelowWindow) => Ok(()),
        }
    }

    /// Could `seq` be new? (No change; the MQTT task's pre-check, so that a
    /// replay inside the window costs no signature verification.)
    pub(crate) fn replay_precheck(&self, id: &str, kid: &KeyId, seq: u64) -> Result<(), RejectCode> {
        match self.windows().get(id).and_then(|m| m.get(kid)) {
            Some(w) => self.check(w, seq),
            None => Ok(()),
        }
    }

    /// Check and record `seq` in the window (writer only; the old window goes
    /// to `undo`). `Ok` means "not refused by the window": the caller's
    /// insert still decides whether it was seen.
    pub(crate) fn replay_accept(&self, id: &str, kid: &KeyId, seq: u64, undo: &mut WindowUndo) -> Result<(), RejectCode> {
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

    fn window(&self, id: &str, kid: &KeyId) -> Option<ReplayWindow> {
        self.windows().get(id).and_then(|m| m.get(kid)).copied()
    }

    fn restore(&self, undo: Undo) {
        let mut all = self.windows();
        for (id, m) in undo.windows {
            let per_device = all.entry(id).or_default();
            for (kid, w) in m {
                per_device.insert(kid, w);
            }
        }
        drop(all);
        self.sessions.undo(&undo.sessions);
    }

    /// Drop the windows of forgotten sessions.
    fn forget_windows(&self, id: &str, session_ids: &[u32]) {
        if let Some(m) = self.windows().get_mut(id) {
            for sid in session_ids {
                m.remove(&KeyId::Session(*sid));
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
                report.kid = r.kid.map(KeyId::to_vec);
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

/// The MQTT task's entry into the pipeline (and the expiry task's).
#[derive(Clone)]
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
        writer_db: Db,
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
    /// The depth of each internal queue now (for `/metrics`).
    pub(crate) fn depths(&self) -> Vec<(Queue, usize)> {
        let verify = self.job_txs.iter().map(|tx| tx.max_capacity() - tx.capacity()).sum();
        let sh = &self.shared;
        vec![
            (Queue::Verify, verify),
            (Queue::Write, sh.write_queued.load(Ordering::Relaxed)),
            (Queue::Parked, sh.parked().total),
            (Queue::Reports, sh.report_backlog.load(Ordering::Relaxed)),
        ]
    }

    /// Held sealed messages: the session message may have gone to another
    /// instance sharing the database, so look there (then the message goes
    /// on as if it had just arrived); a message whose wait is over and whose
    /// session is not stored is rejected as UnknownSession and reported.
    pub(crate) async fn expire_parked(&self) {
        let sh = &self.shared;
        let now = std::time::Instant::now();
        // Alone, a held message waits for its session message (which
        // unparks it) or its deadline. In a group, the session may be stored
        // by another instance at any moment: look at every held message on
        // each tick (there are few: at most MAX_PARKED).
        let taken = if sh.multi_instance { sh.take_parked(|_| true) } else { sh.take_expired(false) };
        for (id, e) in taken {
            let sessions = sh.sessions.clone();
            let (sid, dev) = (e.session_id, id.clone());
            let stored = tokio::task::spawn_blocking(move || sessions.stored(&dev, sid)).await.unwrap_or(false);
            if stored {
                self.sealed(None, &id, &e.payload, e.received_at).await;
            } else if e.deadline <= now {
                sh.reject_parked(&id, &e);
            } else {
                sh.repark(id, e);
            }
        }
    }

    /// Route one received publish (MQTT task). Waits only when the device's
    /// verify queue is full; everything rejected here never reaches a queue.
    pub(crate) async fn dispatch(&self, ticket: Ticket, topic_name: &str, payload: &[u8], received_at: i64) {
        let sh = &self.shared;
        if let Some(id) = reply_device(&sh.prefix, topic_name) {
            let (remote, id, payload) = (sh.remote.clone(), id.to_owned(), payload.to_vec());
            let _ = tokio::task::spawn_blocking(move || remote.reply(&id, &payload)).await;
            sh.finish(ticket, true);
            return;
        }
        let Some((id, kind)) = parse_topic(&sh.prefix, topic_name) else {
            sh.reject(ticket, None, Rejection::new(RejectCode::UnknownDevice));
            return;
        };
        match kind {
            Kind::Data => {
                let job = data::prepare(sh, ticket, id, payload, received_at).map(Job::Data);
                self.send(ticket, id, job).await;
            }
            Kind::Session => {
                let job = session::prepare(sh, ticket, id, payload, received_at);
                let sid = job.as_ref().ok().map(|j| j.msg.session_id);
                self.send(ticket, id, job.map(Job::Session)).await;
                // Sealed messages that came before this session message
                // follow it to its worker (now pending, they pass).
                if let Some(sid) = sid {
                    for (early, at) in sh.unpark(id, sid) {
                        self.sealed(None, id, &early, at).await;
                    }
                }
            }
            Kind::Sealed => self.sealed(ticket, id, payload, received_at).await,
            // Not subscribed: the errors topic is ours.
            Kind::Errors => sh.finish(ticket, true),
        }
    }

    async fn sealed(&self, ticket: Ticket, id: &str, payload: &[u8], received_at: i64) {
        match sealed::prepare(&self.shared, ticket, id, payload, received_at) {
            Ok(Some(job)) => self.send(ticket, id, Ok(Job::Sealed(job))).await,
            // Held until its session message comes: acknowledged now (see
            // `Shared::park`).
            Ok(None) => self.shared.finish(ticket, true),
            Err(r) => self.shared.reject(ticket, Some(id), r),
        }
    }

    async fn send(&self, ticket: Ticket, id: &str, job: Result<Job, Rejection>) {
        match job {
            Ok(job) => {
                let tx = &self.job_txs[shard(id, self.job_txs.len())];
                if tx.send(job).await.is_err() {
                    self.shared.finish(ticket, false);
                }
            }
            Err(r) => self.shared.reject(ticket, Some(id), r),
        }
    }
}

/// The device id of a `{prefix}/{id}/reply` topic.
fn reply_device<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    let id = topic.strip_prefix(prefix)?.strip_prefix('/')?.strip_suffix("/reply")?;
    tfmprov_cose::valid_device_id(id).then_some(id)
}

fn worker(mut rx: tokio::sync::mpsc::Receiver<Job>, tx: SyncSender<Write>, sh: Arc<Shared>) {
    while let Some(job) = rx.blocking_recv() {
        let res = match job {
            Job::Data(j) => data::verify(j).map(Write::Data),
            Job::Session(j) => session::open(j, &sh).map(Write::Session),
            Job::Sealed(j) => sealed::open(j, &sh).map(Write::Sealed),
            Job::Stop => return,
        };
        match res {
            Ok(w) => {
                sh.write_queued.fetch_add(1, Ordering::Relaxed);
                if let Err(std::sync::mpsc::SendError(w)) = tx.send(w) {
                    sh.write_queued.fetch_sub(1, Ordering::Relaxed);
                    sh.finish(ticket_of(&w).0, false);
                }
            }
            Err((ticket, id, r)) => sh.reject(ticket, Some(&id), r),
        }
    }
}

fn writer(db: Db, rx: Receiver<Write>, sh: Arc<Shared>) {
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
        sh.write_queued.fetch_sub(batch.len(), Ordering::Relaxed);
        write_batch(&db, &sh, batch);
    }
}

fn received_at(w: &Write) -> i64 {
    match w {
        Write::Data(v) => v.received_at,
        Write::Session(v) => v.received_at,
        Write::Sealed(v) => v.received_at,
    }
}

fn ticket_of(w: &Write) -> (Ticket, &str) {
    match w {
        Write::Data(v) => (v.ticket, &v.device_id),
        Write::Session(v) => (v.ticket, &v.device_id),
        Write::Sealed(v) => (v.ticket, &v.device_id),
    }
}

/// Store a batch in one transaction; retried a few times on a database error,
/// after which its messages are left unacknowledged (redelivered later).
fn write_batch(db: &Db, sh: &Shared, batch: Vec<Write>) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=4 {
        let mut undo = Undo::default();
        match try_batch(db, sh, &batch, &mut undo) {
            Ok(outcomes) => {
                prune_sessions(db, sh, &undo.sessions);
                let accepted = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
                sh.counters.accept(accepted);
                let now = crate::store::now_ms();
                for (w, o) in batch.iter().zip(&outcomes) {
                    if o.is_ok() {
                        sh.counters.stored_after(now - received_at(w));
                    }
                }
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

/// One transaction: sessions first-come in batch order (a sealed message
/// later in the batch may use a session accepted earlier in it), every
/// in-memory check, then all accepted rows in multi-row inserts, whose
/// `ON CONFLICT DO NOTHING RETURNING` says which were new: a row not
/// returned was stored before (by this instance or another) and is a Replay.
fn try_batch(db: &Db, sh: &Shared, batch: &[Write], undo: &mut Undo) -> Result<Vec<Result<(), Rejection>>, DbError> {
    db.transaction(|tx| {
        let mut outcomes: Vec<Result<(), Rejection>> = Vec::with_capacity(batch.len());
        let mut rows = Vec::new();
        let mut at = Vec::new();
        for (i, w) in batch.iter().enumerate() {
            let checked = match w {
                Write::Session(v) => {
                    outcomes.push(session::apply(sh, tx, v, undo)?);
                    continue;
                }
                Write::Data(v) => data::check(sh, v, &mut undo.windows),
                Write::Sealed(v) => sealed::check(sh, v, &mut undo.windows),
            };
            match checked {
                Ok(row) => {
                    outcomes.push(Ok(()));
                    rows.push(row);
                    at.push(i);
                }
                Err(r) => outcomes.push(Err(r)),
            }
        }
        let inserted = crate::store::insert_messages(tx, &rows)?;
        for ((i, row), new) in at.into_iter().zip(&rows).zip(inserted) {
            if !new {
                outcomes[i] = Err(Rejection { code: RejectCode::Replay, kid: Some(row.kid), seq: Some(row.seq) });
            }
        }
        // In key order: instances sharing a PostgreSQL database then lock
        // these rows in the same order and cannot deadlock on them.
        let mut keys: Vec<(&String, Vec<u8>, &KeyId)> =
            undo.windows.iter().flat_map(|(id, m)| m.keys().map(move |k| (id, k.to_vec(), k))).collect();
        keys.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (id, _, kid) in keys {
            if let Some(w) = sh.window(id, kid) {
                crate::store::save_window(tx, id, kid, &w)?;
            }
        }
        Ok(outcomes)
    })
}

/// After a committed batch that accepted sessions: forget each such device's
/// sessions beyond the newest [`crate::sessions::SESSIONS_KEPT`] (rows, replay
/// windows, cached keys). A failure is logged and retried with the device's
/// next session.
fn prune_sessions(db: &Db, sh: &Shared, accepted: &[(String, u32)]) {
    let mut seen = std::collections::HashSet::new();
    for (id, _) in accepted {
        if !seen.insert(id.as_str()) {
            continue;
        }
        let surplus = sh.sessions.surplus(id);
        if surplus.is_empty() {
            continue;
        }
        let res = db.transaction(|tx| crate::store::delete_sessions(tx, id, &surplus));
        match res {
            Ok(()) => {
                sh.sessions.forget(id, &surplus);
                sh.forget_windows(id, &surplus);
                tracing::debug!(device = %id, forgotten = ?surplus, "old sessions forgotten");
            }
            Err(e) => tracing::warn!(device = %id, error = %e, "cannot forget old sessions"),
        }
    }
}
