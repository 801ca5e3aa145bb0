//! The wake-up listener: one LISTEN connection per server, which hands each notification
//! (see [`crate::notification`]) to the streams it concerns. A wake-up is only a hint:
//! after (re)connecting, every local stream re-reads its inbox.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{AsyncMessage, NoTls};

use crate::live::hub::Hub;
use crate::notification::{Notification, PushedEvent, CHANNEL};

/// Passes one notification to the streams it concerns.
fn dispatch(hub: &Hub, payload: &str) {
    match Notification::decode(payload) {
        Ok(Notification::Wake(users)) => hub.wake(users),
        Ok(Notification::Revoke(token_hash)) => hub.revoke([token_hash.as_slice()]),
        // Every server hears every message: only the one holding the recipient decodes it.
        Ok(Notification::Push { recipient, .. }) if !hub.holds(recipient) => {}
        Ok(Notification::Push { recipient, event }) => match PushedEvent::decode(event) {
            Ok(event) => hub.push(recipient, Arc::new(event)),
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

/// Listens for wake-ups for as long as the server runs, reconnecting with back-off.
pub async fn listen_forever(database_url: String, hub: Arc<Hub>) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_RETRY;
    loop {
        let mut connected = false;
        match listen(&database_url, &hub, &mut connected).await {
            Ok(()) => tracing::warn!("wake-up listener connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = ?e, "wake-up listener failed; reconnecting"),
        }
        // A listener that got connected starts its back-off afresh: the next outage
        // is waited out from the first retry on, not from where the last one ended.
        if connected {
            backoff = FIRST_RETRY;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn listen(
    database_url: &str,
    hub: &Hub,
    connected: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(database_url, NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection object yields notifications; drive it on its own task.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    *connected = true;
    tracing::info!("listening for wake-ups");
    // Revocations sent while we were not listening: check the open sessions.
    hub.check_sessions_soon();
    // Anything committed while we were not listening: catch up from the table.
    hub.wake_all();
    while let Some(payload) = rx.recv().await {
        dispatch(hub, &payload);
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Seq, UserId};
    use crate::live::hub::Wake;

    #[tokio::test]
    async fn a_push_reaches_its_users_streams_whole_and_a_broken_one_makes_them_read() {
        let (tx, _presence) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(tx);
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

        dispatch(&hub, "garbage");
        assert!(
            matches!(bob.woken().await, Some(Wake::Read)),
            "garbage: everyone reads"
        );
    }
}
