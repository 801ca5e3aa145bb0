//! The event streams this server holds, by user. Waking a user's streams tells them to
//! read their inbox again, or hands them a message that arrived whole; the inbox
//! table, not the wake-up, is the truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};

use crate::ids::UserId;
use crate::notification::PushedEvent;

/// A user gained their first, or lost their last, stream on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    Online(UserId),
    Offline(UserId),
}

/// Why a user's streams were woken: the latest reason wins.
#[derive(Clone, Default)]
pub enum Wake {
    /// The inbox grew: read it.
    #[default]
    Read,
    /// This message arrived whole: a stream whose cursor is just before it sends it on
    /// without a read. It stays here until the next wake-up (a few KiB per user).
    Pushed(Arc<PushedEvent>),
}

pub struct Hub {
    streams: Mutex<HashMap<UserId, watch::Sender<Wake>>>,
    presence: mpsc::UnboundedSender<PresenceChange>,
}

impl Hub {
    pub fn new(presence: mpsc::UnboundedSender<PresenceChange>) -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::new(HashMap::new()),
            presence,
        })
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<UserId, watch::Sender<Wake>>> {
        // A panic while holding the lock leaves the map consistent: keep going.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream for `user_id`; it is woken until the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, user_id: UserId) -> Subscription {
        let mut streams = self.streams();
        let rx = match streams.get(&user_id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(Wake::Read);
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
    pub fn wake(&self, user_ids: impl IntoIterator<Item = UserId>) {
        let streams = self.streams();
        for user_id in user_ids {
            if let Some(tx) = streams.get(&user_id) {
                tx.send_replace(Wake::Read);
            }
        }
    }

    /// Hands `event` to `user_id`'s streams, where this server holds any.
    pub fn push(&self, user_id: UserId, event: Arc<PushedEvent>) {
        if let Some(tx) = self.streams().get(&user_id) {
            tx.send_replace(Wake::Pushed(event));
        }
    }

    /// Whether this server holds a stream of `user_id`.
    pub fn holds(&self, user_id: UserId) -> bool {
        self.streams().contains_key(&user_id)
    }

    /// Wakes every stream: after a gap in wake-ups, everyone re-reads their inbox.
    pub fn wake_all(&self) {
        for tx in self.streams().values() {
            tx.send_replace(Wake::Read);
        }
    }

    /// Users with at least one stream here.
    pub fn local_users(&self) -> Vec<UserId> {
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
    user_id: UserId,
    rx: Option<watch::Receiver<Wake>>,
}

impl Subscription {
    /// Marks the current wake-up as seen. Call before reading the inbox, so that a
    /// wake-up during the read is not lost.
    pub fn mark_seen(&mut self) {
        if let Some(rx) = &mut self.rx {
            rx.borrow_and_update();
        }
    }

    /// Waits for the next wake-up and tells why (the latest reason, if several came);
    /// `None` when the hub closed this stream.
    pub async fn woken(&mut self) -> Option<Wake> {
        let rx = self.rx.as_mut()?;
        rx.changed().await.ok()?;
        Some(rx.borrow_and_update().clone())
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
    use crate::ids::Seq;

    #[tokio::test]
    async fn wakes_only_the_named_users_and_reports_presence_once() {
        let (tx, mut presence) = mpsc::unbounded_channel();
        let hub = Hub::new(tx);
        let mut alice_1 = hub.subscribe(UserId(1));
        let mut alice_2 = hub.subscribe(UserId(1));
        let mut bob = hub.subscribe(UserId(2));
        assert_eq!(presence.try_recv(), Ok(PresenceChange::Online(UserId(1))));
        assert_eq!(presence.try_recv(), Ok(PresenceChange::Online(UserId(2))));
        assert!(presence.try_recv().is_err(), "a second stream is not news");
        assert_eq!(hub.stream_count(), 3);

        for sub in [&mut alice_1, &mut alice_2, &mut bob] {
            sub.mark_seen();
        }
        hub.wake([UserId(1)]);
        assert!(matches!(alice_1.woken().await, Some(Wake::Read)));
        assert!(matches!(alice_2.woken().await, Some(Wake::Read)));
        assert!(!bob.rx.as_mut().expect("rx").has_changed().expect("open"));

        drop(alice_1);
        assert!(presence.try_recv().is_err(), "alice still has a stream");
        drop(alice_2);
        assert_eq!(presence.try_recv(), Ok(PresenceChange::Offline(UserId(1))));
        assert_eq!(hub.local_users(), vec![UserId(2)]);

        hub.close_all();
        assert!(bob.woken().await.is_none(), "a closed hub ends the stream");
    }

    fn pushed(seq: i64) -> Arc<PushedEvent> {
        let json = serde_json::json!({
            "seq": seq,
            "message": {
                "id": 7, "sender": "alice", "recipient": "bob", "kind": "text",
                "client_id": "0b6f2c66-5a3e-4a53-9b8e-0f1f1c0d2a11",
                "sent_at": "2026-11-22T20:00:00.123456+00:00",
                "nonce": "n", "ciphertext": "c", "sig": "s", "wrapped_key": "k"
            }
        });
        Arc::new(serde_json::from_value(json).expect("a pushed event"))
    }

    #[tokio::test]
    async fn the_latest_wake_up_wins_and_pushes_reach_only_their_user() {
        let (tx, _presence) = mpsc::unbounded_channel();
        let hub = Hub::new(tx);
        let mut bob = hub.subscribe(UserId(2));
        let mut carol = hub.subscribe(UserId(3));
        bob.mark_seen();
        carol.mark_seen();
        assert!(hub.holds(UserId(2)) && !hub.holds(UserId(4)));

        hub.push(UserId(2), pushed(5));
        match bob.woken().await {
            Some(Wake::Pushed(message)) => assert_eq!(message.seq, Seq(5)),
            _ => panic!("bob was handed his message"),
        }
        assert!(!carol.rx.as_mut().expect("rx").has_changed().expect("open"));

        // A push, then a plain wake-up before the stream looks: it must read.
        hub.push(UserId(2), pushed(6));
        hub.wake([UserId(2)]);
        assert!(matches!(bob.woken().await, Some(Wake::Read)));
        // A wake-up, then two pushes: the stream sees the last, and its seq tells it
        // whether it missed the one before.
        hub.wake([UserId(2)]);
        hub.push(UserId(2), pushed(7));
        hub.push(UserId(2), pushed(8));
        match bob.woken().await {
            Some(Wake::Pushed(message)) => assert_eq!(message.seq, Seq(8)),
            _ => panic!("the latest push wins"),
        }
    }
}
