//! In-order acknowledgement of QoS 1/2 publishes.
//!
//! A message is acknowledged to the broker only once it is finished (stored
//! in a committed transaction, or rejected), so a crash never loses an
//! acknowledged message. Messages finish out of order (the verify pool runs
//! in parallel), but MQTT 3.1.1 (4.6.0-2) wants PUBACKs in the order the
//! PUBLISHes came, and rumqttd drops out-of-order acks: the tracker holds
//! finished messages until everything before them has finished too.
//!
//! Acks of a connection that has since been replaced are dropped (the packet
//! ids belong to the old connection; the broker redelivers those messages
//! and the replay window rejects the copies of the ones already stored).

use std::collections::VecDeque;

use rumqttc::Publish;
use tokio::sync::mpsc::UnboundedSender;

use super::Out;

/// A message's place in the ack order (`None` for QoS 0: nothing to ack).
pub(crate) type Ticket = Option<u64>;

struct Slot {
    done: bool,
    ack: Option<Publish>,
    generation: u64,
}

pub(crate) struct AckTracker {
    base: u64,
    slots: VecDeque<Slot>,
    generation: u64,
    out: UnboundedSender<Out>,
}

impl AckTracker {
    pub(crate) fn new(out: UnboundedSender<Out>) -> Self {
        AckTracker { base: 0, slots: VecDeque::new(), generation: 0, out }
    }

    /// A new connection to the broker: pending acks of the old one are void.
    pub(crate) fn new_connection(&mut self) {
        self.generation += 1;
    }

    /// The current connection's number.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Register a received publish in arrival order.
    pub(crate) fn register(&mut self, p: &Publish) -> Ticket {
        if p.qos == rumqttc::QoS::AtMostOnce {
            return None;
        }
        // Only the packet id and QoS matter for the ack.
        let mut ack = Publish::new("", p.qos, Vec::new());
        ack.pkid = p.pkid;
        let id = self.base + self.slots.len() as u64;
        self.slots.push_back(Slot { done: false, ack: Some(ack), generation: self.generation });
        Some(id)
    }

    /// The message of `ticket` is finished; `ack` false leaves it unacknowledged
    /// (the broker redelivers it after a reconnect). Sends every ack that is
    /// now in order. Called with the tracker locked, so acks leave in order.
    pub(crate) fn complete(&mut self, ticket: Ticket, ack: bool) {
        let Some(id) = ticket else { return };
        let Some(idx) = id.checked_sub(self.base) else { return };
        let Some(slot) = usize::try_from(idx).ok().and_then(|i| self.slots.get_mut(i)) else { return };
        slot.done = true;
        if !ack {
            slot.ack = None;
        }
        while self.slots.front().is_some_and(|s| s.done) {
            if let Some(s) = self.slots.pop_front() {
                self.base += 1;
                if let Some(p) = s.ack.filter(|_| s.generation == self.generation) {
                    let _ = self.out.send(Out::Ack(p, s.generation));
                }
            }
        }
    }

    /// Messages received but not finished.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::QoS;

    fn publish(pkid: u16, qos: QoS) -> Publish {
        let mut p = Publish::new("prov/d/data", qos, vec![1]);
        p.pkid = pkid;
        p
    }

    fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Out>) -> Vec<u16> {
        let mut v = Vec::new();
        while let Ok(Out::Ack(p, _)) = rx.try_recv() {
            v.push(p.pkid);
        }
        v
    }

    #[test]
    fn acks_leave_in_arrival_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut t = AckTracker::new(tx);
        let a = t.register(&publish(1, QoS::AtLeastOnce));
        let b = t.register(&publish(2, QoS::AtLeastOnce));
        let z = t.register(&publish(0, QoS::AtMostOnce));
        let c = t.register(&publish(3, QoS::AtLeastOnce));
        assert_eq!(z, None);
        t.complete(c, true);
        t.complete(b, true);
        assert!(drain(&mut rx).is_empty(), "nothing may leave before pkid 1");
        t.complete(a, true);
        assert_eq!(drain(&mut rx), vec![1, 2, 3]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn nack_and_old_connection_are_not_acked() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut t = AckTracker::new(tx);
        let a = t.register(&publish(1, QoS::AtLeastOnce));
        let b = t.register(&publish(2, QoS::AtLeastOnce));
        t.new_connection();
        let c = t.register(&publish(1, QoS::AtLeastOnce));
        let d = t.register(&publish(2, QoS::AtLeastOnce));
        t.complete(a, true);
        t.complete(b, true);
        t.complete(c, false);
        t.complete(d, true);
        assert_eq!(drain(&mut rx), vec![2]);
        // A stale or repeated ticket is ignored.
        t.complete(a, true);
        assert!(drain(&mut rx).is_empty());
    }
}
