//! The aggregator's MQTT session: one rumqttc client with manual acks and a
//! persistent session (`clean_session = false`, client id derived from the
//! state directory), so messages that arrive while it is down, or that it
//! received but had not stored, are (re)delivered by the broker.
//!
//! Two tasks: the event loop (reads publishes, hands them to the pipeline)
//! and the outbox (sends acks, error reports, subscriptions). Nothing that
//! the pipeline threads do ever waits for the event loop: they post to the
//! outbox's unbounded queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::ingest::{Dispatcher, Out, Shared};

/// Requests queued inside rumqttc.
const REQUEST_CHANNEL: usize = 1024;

pub(crate) struct MqttLink {
    pub intake: Arc<AtomicBool>,
    pub stopping: Arc<AtomicBool>,
    pub event_task: JoinHandle<()>,
    pub outbox_task: JoinHandle<()>,
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Connect, subscribe to `subscriptions`, and return once the first
/// subscription is acknowledged (or the first connection failed).
pub(crate) async fn start(
    opts: MqttOptions,
    subscriptions: Vec<(String, u8)>,
    dispatcher: Dispatcher,
    shared: Arc<Shared>,
    out_tx: UnboundedSender<Out>,
    out_rx: UnboundedReceiver<Out>,
    connect_timeout: Duration,
) -> Result<MqttLink, Error> {
    let (client, eventloop) = AsyncClient::new(opts, REQUEST_CHANNEL);
    let intake = Arc::new(AtomicBool::new(true));
    let stopping = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = oneshot::channel();
    let subs: Vec<(String, QoS)> = subscriptions.into_iter().map(|(f, q)| (f, qos(q))).collect();
    let n_subs = subs.len();
    let event_task = tokio::spawn(event_loop(
        eventloop,
        dispatcher,
        shared.clone(),
        out_tx,
        intake.clone(),
        stopping.clone(),
        ready_tx,
        n_subs,
    ));
    let outbox_task = tokio::spawn(outbox(client, out_rx, shared, subs));
    let link = MqttLink { intake, stopping, event_task, outbox_task };
    match tokio::time::timeout(connect_timeout, ready_rx).await {
        Ok(Ok(Ok(()))) => Ok(link),
        Ok(Ok(Err(e))) => {
            link.abort();
            Err(e)
        }
        Ok(Err(_)) => {
            link.abort();
            Err(Error::Mqtt("MQTT task ended before subscribing".into()))
        }
        Err(_) => {
            link.abort();
            Err(Error::Mqtt(format!("no subscription acknowledgement within {connect_timeout:?}")))
        }
    }
}

impl MqttLink {
    pub(crate) fn abort(&self) {
        self.event_task.abort();
        self.outbox_task.abort();
    }
}

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    mut ev: EventLoop,
    dispatcher: Dispatcher,
    shared: Arc<Shared>,
    out: UnboundedSender<Out>,
    intake: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    ready: oneshot::Sender<Result<(), Error>>,
    n_subs: usize,
) {
    let mut ready = Some(ready);
    let mut subacks = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        match ev.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if !intake.load(Ordering::SeqCst) {
                    continue; // shutting down: not acked, the broker keeps it
                }
                let ticket = shared.acks().register(&p);
                dispatcher.dispatch(ticket, &p.topic, &p.payload, crate::store::now_ms()).await;
            }
            Ok(Event::Incoming(Packet::ConnAck(c))) => {
                tracing::info!(session_present = c.session_present, "connected to the broker");
                shared.acks().new_connection();
                backoff = Duration::from_millis(100);
                let _ = out.send(Out::Subscribe);
            }
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                let failed = s.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure));
                if failed {
                    tracing::error!("broker refused a subscription");
                }
                subacks += 1;
                if subacks >= n_subs {
                    if let Some(r) = ready.take() {
                        let res = if failed {
                            Err(Error::Mqtt("broker refused the subscription".into()))
                        } else {
                            Ok(())
                        };
                        let stop = res.is_err();
                        let _ = r.send(res);
                        if stop {
                            return;
                        }
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(Error::Mqtt(format!("cannot connect: {e}"))));
                    return;
                }
                tracing::warn!(error = %e, "MQTT connection lost; reconnecting in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn outbox(client: AsyncClient, mut rx: UnboundedReceiver<Out>, shared: Arc<Shared>, subs: Vec<(String, QoS)>) {
    while let Some(o) = rx.recv().await {
        let res = match o {
            Out::Ack(p, generation) => {
                if generation != shared.acks().generation() {
                    continue; // packet id of a previous connection
                }
                client.ack(&p).await
            }
            Out::Report { topic, body } => {
                shared.report_backlog.fetch_sub(1, Ordering::Relaxed);
                client.publish(topic, QoS::AtLeastOnce, false, body).await
            }
            Out::Publish { topic, body } => client.publish(topic, QoS::AtLeastOnce, false, body).await,
            Out::Subscribe => {
                let mut r = Ok(());
                for (f, q) in &subs {
                    r = r.and(client.subscribe(f.clone(), *q).await);
                }
                r
            }
            Out::Disconnect => {
                let _ = client.disconnect().await;
                return;
            }
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "MQTT request failed");
        }
    }
}
