//! The wake-up listeners, which hand each notification (see [`crate::notification`]) to
//! the streams it concerns. Two buses can carry inbox wake-ups: PostgreSQL NOTIFY (the
//! default: nothing more to run) and NATS (`--nats-url`; past one database, since every
//! transaction that NOTIFYs takes one database-wide lock at commit). Revocations always
//! come through PostgreSQL, so its listener runs either way. A wake-up is only a hint:
//! after a listener (re)connects, every local stream re-reads its inbox.

pub mod nats;
pub mod postgres;

use std::sync::Arc;

use crate::live::hub::Hub;
use crate::live::pushed::Pushed;
use crate::notification::{Notification, PushedEvent};

/// Passes one notification to the streams it concerns.
pub(crate) fn dispatch(hub: &Hub, payload: &str) {
    match Notification::decode(payload) {
        Ok(Notification::Wake(users)) => hub.wake(users),
        Ok(Notification::Revoke(token_hash)) => hub.revoke([token_hash.as_slice()]),
        Ok(Notification::GroupMessage(events)) => hub.group_message(events),
        // Every server hears every message: only the one holding the recipient decodes it.
        Ok(Notification::Push { recipient, .. }) if !hub.holds(recipient) => {}
        Ok(Notification::Push { recipient, event }) => match PushedEvent::decode(event)
            .map_err(|e| e.to_string())
            .and_then(|event| Pushed::from_notification(event).map_err(|e| e.to_string()))
        {
            Ok(pushed) => hub.push(recipient, Arc::new(pushed)),
            Err(e) => {
                tracing::warn!(error = %e, %recipient, "a malformed push; reading the inbox");
                hub.wake([recipient]);
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "every stream reads its inbox");
            hub.wake_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, Seq, UserId};
    use crate::live::hub::Wake;

    #[tokio::test]
    async fn a_push_reaches_its_users_streams_whole_and_a_broken_one_makes_them_read() {
        let (tx, _presence) = tokio::sync::mpsc::unbounded_channel();
        let (to_read, mut read) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(tx, to_read);
        let mut bob = hub.subscribe(
            UserId(2),
            crate::live::hub::StreamSession {
                token_hash: vec![2; 32],
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            },
        );
        bob.mark_seen();
        let event = r#"{"seq": 9, "message": {"id": 7, "sender": "alice", "recipient": "bob",
            "kind": "text", "client_id": "0b6f2c66-5a3e-4a53-9b8e-0f1f1c0d2a11",
            "sent_at": "2026-11-22T20:00:00.123456+00:00", "nonce": "n", "ciphertext": "c",
            "sig": "s", "wrapped_key": "k"}}"#;

        dispatch(&hub, &format!("push:2:{event}"));
        match bob.woken().await {
            Some(Wake::Pushed(pushed)) => assert_eq!(pushed.seq, Seq(9)),
            _ => panic!("bob's message was handed over whole"),
        }

        dispatch(&hub, &format!("push:3:{event}"));
        dispatch(&hub, "push:2:{\"seq\": 10}");
        assert!(
            matches!(bob.woken().await, Some(Wake::Read)),
            "a broken push: read"
        );

        dispatch(&hub, "1,2,3");
        assert!(matches!(bob.woken().await, Some(Wake::Read)));

        // A group message: bob's seq goes to be read with his key; nobody else is here.
        dispatch(&hub, "group:7:1=4,2=11,3=6");
        let asked = read.try_recv().expect("bob's event, to read");
        assert_eq!(asked.message, MessageId(7));
        assert_eq!(asked.seqs, [(UserId(2), Seq(11))]);

        dispatch(&hub, "garbage");
        assert!(
            matches!(bob.woken().await, Some(Wake::Read)),
            "garbage: everyone reads"
        );
    }
}
