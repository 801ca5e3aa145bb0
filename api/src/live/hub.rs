//! The event streams this server holds, by user and by session. Waking a user's streams
//! tells them to read their inbox again, or hands them a message that arrived whole; the
//! inbox table, not the wake-up, is the truth. Revoking a session (logout, expiry) ends
//! its streams at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::ids::{MessageId, UserId};
use crate::live::pushed::Pushed;
use crate::notification::GroupMessageEvents;

/// A user gained their first, or lost their last, stream on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    Online(UserId),
    Offline(UserId),
}

/// Why a stream was woken.
#[derive(Clone)]
pub enum Wake {
    /// The inbox grew: read it.
    Read,
    /// This message arrived whole: a stream whose cursor is just before it sends it on
    /// without a read.
    Pushed(Arc<Pushed>),
}

/// What has been announced to a user's streams. Wake-ups from several servers may
/// arrive out of commit order, so nothing announced may be overwritten: a read asked
/// for stands until each stream has seen it (`reads` counts them), and a push that
/// arrives after a later one asks for a read. The latest push stays here until the next
/// (a few KiB per user).
#[derive(Clone, Default)]
struct Announced {
    reads: u64,
    pushed: Option<Arc<Pushed>>,
}

/// The session a stream was opened with: its token's hash and when it expires.
#[derive(Debug, Clone)]
pub struct StreamSession {
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// The open streams of one session.
struct SessionStreams {
    /// Set to true when the session ends: every stream of it closes.
    revoked: watch::Sender<bool>,
    expires_at: DateTime<Utc>,
}

pub struct Hub {
    streams: Mutex<HashMap<UserId, watch::Sender<Announced>>>,
    sessions: Mutex<HashMap<Vec<u8>, SessionStreams>>,
    presence: mpsc::UnboundedSender<PresenceChange>,
    /// Group messages to hand this server's streams whole, once their keys are read.
    group_messages: mpsc::UnboundedSender<GroupMessageEvents>,
    /// Asks for the open sessions to be checked against the database now (after the
    /// wake-up listener reconnects: revocations sent meanwhile were missed).
    session_check: tokio::sync::Notify,
    /// Group messages this server is storing, from just before their commit until it
    /// pushes them from what it stored: their notifications, should one come back first,
    /// need no read. (One whose commit failed stays: its id is never used again.)
    storing_here: Mutex<HashSet<MessageId>>,
}

impl Hub {
    /// Presence changes go to `presence`; group messages for local streams to
    /// `group_messages`, whose reader reads them and [`Hub::push`]es each event.
    pub fn new(
        presence: mpsc::UnboundedSender<PresenceChange>,
        group_messages: mpsc::UnboundedSender<GroupMessageEvents>,
    ) -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            presence,
            group_messages,
            session_check: tokio::sync::Notify::new(),
            storing_here: Mutex::new(HashSet::new()),
        })
    }

    /// Asks for the open sessions to be checked against the database now.
    pub fn check_sessions_soon(&self) {
        self.session_check.notify_one();
    }

    /// Waits until someone asks for the open sessions to be checked.
    pub async fn session_check_asked(&self) {
        self.session_check.notified().await;
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<Vec<u8>, SessionStreams>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many streams `token_hash`'s session holds on this server.
    pub fn session_streams(&self, token_hash: &[u8]) -> usize {
        self.sessions()
            .get(token_hash)
            .map_or(0, |s| s.revoked.receiver_count())
    }

    /// How many streams `user_id` holds on this server.
    pub fn user_streams(&self, user_id: UserId) -> usize {
        self.streams()
            .get(&user_id)
            .map_or(0, watch::Sender::receiver_count)
    }

    /// Ends every stream of these sessions (logged out, expired, or found gone).
    pub fn revoke<'a>(&self, token_hashes: impl IntoIterator<Item = &'a [u8]>) {
        let sessions = self.sessions();
        for hash in token_hashes {
            if let Some(session) = sessions.get(hash) {
                session.revoked.send_replace(true);
            }
        }
    }

    /// Ends the streams of every session that has expired by `now`.
    pub fn revoke_expired(&self, now: DateTime<Utc>) -> usize {
        let sessions = self.sessions();
        let expired: Vec<&SessionStreams> =
            sessions.values().filter(|s| s.expires_at <= now).collect();
        for session in &expired {
            session.revoked.send_replace(true);
        }
        expired.len()
    }

    /// Moves a session's expiry to what the database says now.
    pub fn set_expiry(&self, token_hash: &[u8], expires_at: DateTime<Utc>) {
        if let Some(session) = self.sessions().get_mut(token_hash) {
            session.expires_at = expires_at;
        }
    }

    /// The token hashes of the sessions holding streams here, to check against the
    /// database now and then.
    pub fn open_sessions(&self) -> Vec<Vec<u8>> {
        self.sessions().keys().cloned().collect()
    }

    fn storing_here(&self) -> MutexGuard<'_, HashSet<MessageId>> {
        self.storing_here.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `messages` are about to be committed by this server, which will push them to its
    /// own streams from what it stored (see [`Hub::stored_here`]).
    pub fn storing_here_soon(&self, messages: &[MessageId]) {
        self.storing_here().extend(messages);
    }

    /// This server has `message` stored and is pushing it to its streams itself.
    pub fn stored_here(&self, message: MessageId) {
        self.storing_here().remove(&message);
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<UserId, watch::Sender<Announced>>> {
        // A panic while holding the lock leaves the map consistent: keep going.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream for `user_id`, opened with `session`; it is woken until the
    /// subscription is dropped, and ends when the session does.
    pub fn subscribe(self: &Arc<Self>, user_id: UserId, session: StreamSession) -> Subscription {
        let revoked = {
            let mut sessions = self.sessions();
            let entry = sessions
                .entry(session.token_hash.clone())
                .or_insert_with(|| SessionStreams {
                    revoked: watch::channel(false).0,
                    expires_at: session.expires_at,
                });
            entry.revoked.subscribe()
        };
        let mut streams = self.streams();
        let rx = match streams.get(&user_id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(Announced::default());
                streams.insert(user_id, tx);
                let _ = self.presence.send(PresenceChange::Online(user_id));
                rx
            }
        };
        let reads_seen = rx.borrow().reads;
        Subscription {
            hub: Arc::clone(self),
            user_id,
            token_hash: session.token_hash,
            rx: Some(rx),
            revoked: Some(revoked),
            reads_seen,
        }
    }

    /// Wakes the streams of these users, where this server holds any.
    pub fn wake(&self, user_ids: impl IntoIterator<Item = UserId>) {
        let streams = self.streams();
        for user_id in user_ids {
            if let Some(tx) = streams.get(&user_id) {
                tx.send_modify(|announced| announced.reads += 1);
            }
        }
    }

    /// Hands `event` to `user_id`'s streams, where this server holds any. The same
    /// event again (its seq already announced: the server that stored it pushed it, and
    /// then its notification came) changes nothing.
    pub fn push(&self, user_id: UserId, event: Arc<Pushed>) {
        if let Some(tx) = self.streams().get(&user_id) {
            tx.send_if_modified(|announced| match &announced.pushed {
                Some(same) if same.seq == event.seq => false,
                Some(later) if later.seq > event.seq => {
                    announced.reads += 1;
                    true
                }
                _ => {
                    announced.pushed = Some(event);
                    true
                }
            });
        }
    }

    /// A group message was stored: the members of `events` whose streams are here are
    /// handed it whole once it is read (woken instead, should that fail). Members
    /// already handed it, or a later event, are left out, and so is a message this server
    /// is storing: it pushes those itself, or their streams will read past it anyway.
    pub fn group_message(&self, mut events: GroupMessageEvents) {
        // (A large message's notification comes in parts, each with the message's id.)
        if self.storing_here().contains(&events.message) {
            return;
        }
        {
            let streams = self.streams();
            events.seqs.retain(|(user, seq)| {
                streams.get(user).is_some_and(|tx| {
                    tx.borrow()
                        .pushed
                        .as_ref()
                        .is_none_or(|pushed| pushed.seq < *seq)
                })
            });
        }
        if events.seqs.is_empty() {
            return;
        }
        if let Err(unsent) = self.group_messages.send(events) {
            // Its reader has stopped (the server is stopping): read the inboxes.
            self.wake(unsent.0.seqs.iter().map(|(user, _)| *user));
        }
    }

    /// Whether this server holds a stream of `user_id`.
    pub fn holds(&self, user_id: UserId) -> bool {
        self.streams().contains_key(&user_id)
    }

    /// Wakes every stream: after a gap in wake-ups, everyone re-reads their inbox.
    pub fn wake_all(&self) {
        for tx in self.streams().values() {
            tx.send_modify(|announced| announced.reads += 1);
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
        self.sessions().clear();
    }
}

/// One stream's registration; dropping it unregisters.
pub struct Subscription {
    hub: Arc<Hub>,
    user_id: UserId,
    token_hash: Vec<u8>,
    rx: Option<watch::Receiver<Announced>>,
    revoked: Option<watch::Receiver<bool>>,
    /// The reads asked for that this stream has seen.
    reads_seen: u64,
}

impl Subscription {
    /// Marks the current wake-up as seen. Call before reading the inbox, so that a
    /// wake-up during the read is not lost.
    pub fn mark_seen(&mut self) {
        if let Some(rx) = &mut self.rx {
            self.reads_seen = rx.borrow_and_update().reads;
        }
    }

    /// Whether the stream's session has ended (or the hub closed it).
    pub fn is_revoked(&self) -> bool {
        self.revoked.as_ref().is_none_or(|r| *r.borrow())
    }

    /// Waits for the next wake-up and tells why (the latest reason, if several came);
    /// `None` when the hub closed this stream or its session ended.
    pub async fn woken(&mut self) -> Option<Wake> {
        let (rx, revoked) = (self.rx.as_mut()?, self.revoked.as_mut()?);
        if *revoked.borrow() {
            return None;
        }
        tokio::select! {
            changed = rx.changed() => {
                changed.ok()?;
                let announced = rx.borrow_and_update();
                let read_asked = announced.reads != self.reads_seen;
                self.reads_seen = announced.reads;
                Some(match &announced.pushed {
                    Some(pushed) if !read_asked => Wake::Pushed(Arc::clone(pushed)),
                    _ => Wake::Read,
                })
            }
            _ = revoked.wait_for(|revoked| *revoked) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(revoked) = self.revoked.take() {
            drop(revoked);
            let mut sessions = self.hub.sessions();
            if sessions
                .get(&self.token_hash)
                .is_some_and(|s| s.revoked.receiver_count() == 0)
            {
                sessions.remove(&self.token_hash);
            }
        }
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

    fn session(n: u8) -> StreamSession {
        StreamSession {
            token_hash: vec![n; 32],
            expires_at: Utc::now() + chrono::Duration::hours(1),
        }
    }

    #[tokio::test]
    async fn revoking_a_session_ends_its_streams_and_no_others() {
        let (tx, _presence) = mpsc::unbounded_channel();
        let hub = Hub::new(tx, mpsc::unbounded_channel().0);
        let mut phone = hub.subscribe(UserId(1), session(1));
        let mut laptop = hub.subscribe(UserId(1), session(2));
        let expiring = StreamSession {
            token_hash: vec![3; 32],
            expires_at: Utc::now() - chrono::Duration::seconds(1),
        };
        let mut old = hub.subscribe(UserId(1), expiring);
        assert_eq!(hub.session_streams(&[1; 32]), 1);
        phone.mark_seen();
        laptop.mark_seen();

        hub.revoke([&[1u8; 32][..]]);
        assert!(
            phone.woken().await.is_none(),
            "the revoked session's stream ends"
        );
        assert!(phone.is_revoked() && !laptop.is_revoked());
        assert_eq!(hub.revoke_expired(Utc::now()), 1);
        assert!(
            old.woken().await.is_none(),
            "the expired session's stream ends"
        );
        hub.wake([UserId(1)]);
        assert!(
            matches!(laptop.woken().await, Some(Wake::Read)),
            "the other goes on"
        );
        drop(phone);
        assert_eq!(hub.session_streams(&[1; 32]), 0);
        assert_eq!(hub.open_sessions().len(), 2);
    }

    #[tokio::test]
    async fn wakes_only_the_named_users_and_reports_presence_once() {
        let (tx, mut presence) = mpsc::unbounded_channel();
        let hub = Hub::new(tx, mpsc::unbounded_channel().0);
        let mut alice_1 = hub.subscribe(UserId(1), session(1));
        let mut alice_2 = hub.subscribe(UserId(1), session(1));
        let mut bob = hub.subscribe(UserId(2), session(2));
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

    fn pushed(seq: i64) -> Arc<Pushed> {
        let json = serde_json::json!({
            "seq": seq,
            "message": {
                "id": 7, "sender": "alice", "recipient": "bob", "kind": "text",
                "client_id": "0b6f2c66-5a3e-4a53-9b8e-0f1f1c0d2a11",
                "sent_at": "2026-11-22T20:00:00.123456+00:00",
                "nonce": "n", "ciphertext": "c", "sig": "s", "wrapped_key": "k"
            }
        });
        let event: crate::notification::PushedEvent =
            serde_json::from_value(json).expect("a pushed event");
        Arc::new(Pushed::from_notification(event).expect("a pushed message"))
    }

    #[tokio::test]
    async fn a_group_message_goes_to_its_reader_for_the_members_held_here_only() {
        use crate::ids::MessageId;
        let (tx, _presence) = mpsc::unbounded_channel();
        let (to_read, mut read) = mpsc::unbounded_channel();
        let hub = Hub::new(tx, to_read);
        let mut bob = hub.subscribe(UserId(2), session(2));
        bob.mark_seen();
        let _carol = hub.subscribe(UserId(3), session(3));
        let events = |seqs: Vec<(UserId, Seq)>| GroupMessageEvents {
            message: MessageId(7),
            seqs,
        };

        hub.group_message(events(vec![(UserId(4), Seq(1)), (UserId(5), Seq(9))]));
        hub.group_message(events(vec![
            (UserId(2), Seq(5)),
            (UserId(4), Seq(2)),
            (UserId(3), Seq(8)),
        ]));
        let asked = read.try_recv().expect("the members held here, to read");
        assert_eq!(asked.message, MessageId(7));
        assert_eq!(asked.seqs, [(UserId(2), Seq(5)), (UserId(3), Seq(8))]);
        assert!(
            read.try_recv().is_err(),
            "nobody held here: nothing to read"
        );

        // With its reader gone, the members' streams read their inboxes instead.
        drop(read);
        hub.group_message(events(vec![(UserId(2), Seq(6))]));
        assert!(matches!(bob.woken().await, Some(Wake::Read)));
    }

    #[tokio::test]
    async fn the_latest_wake_up_wins_and_pushes_reach_only_their_user() {
        let (tx, _presence) = mpsc::unbounded_channel();
        let hub = Hub::new(tx, mpsc::unbounded_channel().0);
        let mut bob = hub.subscribe(UserId(2), session(2));
        let mut carol = hub.subscribe(UserId(3), session(3));
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
        // A wake-up, then a push: the wake-up may announce something after the push
        // (they come from different servers), so it stands.
        hub.wake([UserId(2)]);
        hub.push(UserId(2), pushed(7));
        assert!(matches!(bob.woken().await, Some(Wake::Read)));
        // Two pushes: the stream sees the last, and its seq tells it whether it missed
        // the one before.
        hub.push(UserId(2), pushed(8));
        hub.push(UserId(2), pushed(9));
        match bob.woken().await {
            Some(Wake::Pushed(message)) => assert_eq!(message.seq, Seq(9)),
            _ => panic!("the latest push wins"),
        }
        // Two pushes out of order: the earlier cannot stand for the later, so read.
        hub.push(UserId(2), pushed(11));
        hub.push(UserId(2), pushed(10));
        assert!(matches!(bob.woken().await, Some(Wake::Read)));
        // Once the read is seen, pushes are handed over whole again.
        hub.push(UserId(2), pushed(12));
        match bob.woken().await {
            Some(Wake::Pushed(message)) => assert_eq!(message.seq, Seq(12)),
            _ => panic!("pushes after a read"),
        }
    }

    #[tokio::test]
    async fn an_event_pushed_twice_is_handed_over_once_and_asks_for_no_read() {
        use crate::ids::MessageId;
        let (tx, _presence) = mpsc::unbounded_channel();
        let (to_read, mut read) = mpsc::unbounded_channel();
        let hub = Hub::new(tx, to_read);
        let mut bob = hub.subscribe(UserId(2), session(2));
        let _carol = hub.subscribe(UserId(3), session(3));
        bob.mark_seen();

        // Pushed by the server that stored it, then told again by its notification.
        hub.push(UserId(2), pushed(5));
        match bob.woken().await {
            Some(Wake::Pushed(message)) => assert_eq!(message.seq, Seq(5)),
            _ => panic!("bob was handed his message"),
        }
        hub.push(UserId(2), pushed(5));
        assert!(
            !bob.rx.as_mut().expect("rx").has_changed().expect("open"),
            "the same event again changes nothing"
        );
        hub.group_message(GroupMessageEvents {
            message: MessageId(7),
            seqs: vec![(UserId(2), Seq(5)), (UserId(3), Seq(8))],
        });
        let asked = read.try_recv().expect("carol's event, to read");
        assert_eq!(asked.seqs, [(UserId(3), Seq(8))], "bob has his already");
        hub.group_message(GroupMessageEvents {
            message: MessageId(6),
            seqs: vec![(UserId(2), Seq(4))],
        });
        assert!(
            read.try_recv().is_err(),
            "bob is past seq 4: nothing to read"
        );
        assert!(!bob.rx.as_mut().expect("rx").has_changed().expect("open"));

        // Its notification before the server that is storing it has pushed it.
        let carol_told = |message| GroupMessageEvents {
            message: MessageId(message),
            seqs: vec![(UserId(3), Seq(9))],
        };
        hub.storing_here_soon(&[MessageId(8)]);
        hub.group_message(carol_told(8));
        assert!(
            read.try_recv().is_err(),
            "this server pushes message 8 itself"
        );
        hub.stored_here(MessageId(8));
        hub.group_message(carol_told(9));
        assert!(read.try_recv().is_ok(), "message 9 is read to push it");
    }

    #[tokio::test]
    async fn each_stream_of_a_user_sees_a_read_asked_for_even_if_another_saw_it_first() {
        let (tx, _presence) = mpsc::unbounded_channel();
        let hub = Hub::new(tx, mpsc::unbounded_channel().0);
        let mut phone = hub.subscribe(UserId(2), session(2));
        let mut laptop = hub.subscribe(UserId(2), session(3));
        phone.mark_seen();
        laptop.mark_seen();
        hub.wake([UserId(2)]);
        assert!(matches!(phone.woken().await, Some(Wake::Read)));
        hub.push(UserId(2), pushed(5));
        assert!(matches!(phone.woken().await, Some(Wake::Pushed(_))));
        assert!(
            matches!(laptop.woken().await, Some(Wake::Read)),
            "the laptop has not read since the wake-up"
        );
    }
}
