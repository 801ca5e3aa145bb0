//! The event streams this server holds, by user. Waking a user's streams tells them to
//! read their inbox again; the inbox table, not the wake-up, is the truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};

/// A user gained their first, or lost their last, stream on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    Online(i64),
    Offline(i64),
}

pub struct Hub {
    streams: Mutex<HashMap<i64, watch::Sender<u64>>>,
    presence: mpsc::UnboundedSender<PresenceChange>,
}

impl Hub {
    pub fn new(presence: mpsc::UnboundedSender<PresenceChange>) -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::new(HashMap::new()),
            presence,
        })
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<i64, watch::Sender<u64>>> {
        // A panic while holding the lock leaves the map consistent: keep going.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream for `user_id`; it is woken until the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, user_id: i64) -> Subscription {
        let mut streams = self.streams();
        let rx = match streams.get(&user_id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                streams.insert(user_id, tx);
                let _ = self.presence.send(PresenceChange::Online(user_id));
                rx
            }
        };
        Subscription {
            hub: Arc::clone(self),
            user_id,
            rx: Some(rx),
        }
    }

    /// Wakes the streams of these users, where this server holds any.
    pub fn wake(&self, user_ids: impl IntoIterator<Item = i64>) {
        let streams = self.streams();
        for user_id in user_ids {
            if let Some(tx) = streams.get(&user_id) {
                tx.send_modify(|generation| *generation = generation.wrapping_add(1));
            }
        }
    }

    /// Wakes every stream: after a gap in wake-ups, everyone re-reads their inbox.
    pub fn wake_all(&self) {
        for tx in self.streams().values() {
            tx.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }

    /// Users with at least one stream here.
    pub fn local_users(&self) -> Vec<i64> {
        self.streams().keys().copied().collect()
    }

    pub fn stream_count(&self) -> usize {
        self.streams().values().map(|tx| tx.receiver_count()).sum()
    }

    /// Ends every stream (at shutdown): their subscriptions see the channel close.
    pub fn close_all(&self) {
        self.streams().clear();
    }
}

/// One stream's registration; dropping it unregisters.
pub struct Subscription {
    hub: Arc<Hub>,
    user_id: i64,
    rx: Option<watch::Receiver<u64>>,
}

impl Subscription {
    /// Marks the current wake-up as seen. Call before reading the inbox, so that a
    /// wake-up during the read is not lost.
    pub fn mark_seen(&mut self) {
        if let Some(rx) = &mut self.rx {
            rx.borrow_and_update();
        }
    }

    /// Waits for the next wake-up; `false` when the hub closed this stream.
    pub async fn woken(&mut self) -> bool {
        match &mut self.rx {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut streams = self.hub.streams();
        if let Some(tx) = streams.get(&self.user_id) {
            if tx.receiver_count() == 0 {
                streams.remove(&self.user_id);
                let _ = self
                    .hub
                    .presence
                    .send(PresenceChange::Offline(self.user_id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_only_the_named_users_and_reports_presence_once() {
        let (tx, mut presence) = mpsc::unbounded_channel();
        let hub = Hub::new(tx);
        let mut alice_1 = hub.subscribe(1);
        let mut alice_2 = hub.subscribe(1);
        let mut bob = hub.subscribe(2);
        assert_eq!(presence.try_recv(), Ok(PresenceChange::Online(1)));
        assert_eq!(presence.try_recv(), Ok(PresenceChange::Online(2)));
        assert!(presence.try_recv().is_err(), "a second stream is not news");
        assert_eq!(hub.stream_count(), 3);

        for sub in [&mut alice_1, &mut alice_2, &mut bob] {
            sub.mark_seen();
        }
        hub.wake([1]);
        assert!(alice_1.woken().await);
        assert!(alice_2.woken().await);
        assert!(!bob.rx.as_mut().expect("rx").has_changed().expect("open"));

        drop(alice_1);
        assert!(presence.try_recv().is_err(), "alice still has a stream");
        drop(alice_2);
        assert_eq!(presence.try_recv(), Ok(PresenceChange::Offline(1)));
        assert_eq!(hub.local_users(), vec![2]);

        hub.close_all();
        assert!(!bob.woken().await, "a closed hub ends the stream");
    }
}
