//! The wake-up between servers: PostgreSQL NOTIFY, sent inside the transaction that
//! writes the inbox events, and one LISTEN connection per server. This module is the
//! whole interface; a message broker could take its place without touching the rest.
//! A wake-up is only a hint: after (re)connecting, every local stream re-reads its inbox.
//!
//! A payload is either users whose inboxes grew (`12,34`) or, for a one-to-one message,
//! the recipient's new event whole (`event:<user id>:<json>`, see `fastchat_send_direct`).

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel::{sql_query, RunQueryDsl};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db::PgConn;
use crate::events::PushedMessage;
use crate::hub::Hub;

const CHANNEL: &str = "fastchat_inbox";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// Announces, as part of the caller's transaction, that these users' inboxes grew.
pub fn announce(conn: &mut PgConn, user_ids: &[i64]) -> diesel::QueryResult<()> {
    for payload in payloads(user_ids) {
        sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(payload)
            .execute(conn)?;
    }
    Ok(())
}

/// Comma-separated user ids, split to fit NOTIFY's payload limit.
fn payloads(user_ids: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for id in user_ids {
        let id = id.to_string();
        if !current.is_empty() && current.len() + 1 + id.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&id);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn parse_payload(payload: &str) -> impl Iterator<Item = i64> + '_ {
    payload.split(',').filter_map(|id| id.parse().ok())
}

/// Passes one notification to the streams it concerns.
fn dispatch(hub: &Hub, payload: &str) {
    let Some(pushed) = payload.strip_prefix("event:") else {
        hub.wake(parse_payload(payload));
        return;
    };
    let Some((user_id, json)) = pushed
        .split_once(':')
        .and_then(|(id, json)| Some((id.parse::<i64>().ok()?, json)))
    else {
        tracing::warn!("a malformed pushed event; every stream reads its inbox");
        hub.wake_all();
        return;
    };
    // Every server hears every message: only the one holding the recipient decodes it.
    if !hub.holds(user_id) {
        return;
    }
    match serde_json::from_str::<PushedMessage>(json) {
        Ok(message) => hub.push(user_id, Arc::new(message)),
        Err(e) => {
            tracing::warn!(error = %e, user_id, "a malformed pushed event; reading the inbox");
            hub.wake([user_id]);
        }
    }
}

/// Listens for wake-ups for as long as the server runs, reconnecting with back-off.
pub async fn listen_forever(database_url: String, hub: Arc<Hub>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen(&database_url, &hub).await {
            Ok(()) => tracing::warn!("wake-up listener connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = ?e, "wake-up listener failed; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen(database_url: &str, hub: &Hub) -> Result<(), tokio_postgres::Error> {
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
    tracing::info!("listening for wake-ups");
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

    #[test]
    fn payloads_fit_the_limit_and_keep_every_id() {
        let ids: Vec<i64> = (1_000_000..1_002_000).collect();
        let payloads = payloads(&ids);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let back: Vec<i64> = payloads.iter().flat_map(|p| parse_payload(p)).collect();
        assert_eq!(back, ids);
        assert!(super::payloads(&[]).is_empty());
    }

    #[tokio::test]
    async fn a_pushed_event_reaches_its_users_streams_whole_and_a_broken_one_makes_them_read() {
        use crate::hub::Wake;

        let (tx, _presence) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(tx);
        let mut bob = hub.subscribe(2);
        bob.mark_seen();
        let event = r#"{"seq": 9, "message": {"id": 7, "sender": "alice", "recipient": "bob",
            "kind": "text", "client_id": "0b6f2c66-5a3e-4a53-9b8e-0f1f1c0d2a11",
            "sent_at": "2026-11-22T20:00:00.123456+00:00", "nonce": "n", "ciphertext": "c",
            "sig": "s", "wrapped_key": "k"}}"#;

        dispatch(&hub, &format!("event:2:{event}"));
        match bob.woken().await {
            Some(Wake::Pushed(message)) => assert_eq!(message.seq, 9),
            _ => panic!("bob's message was handed over whole"),
        }

        dispatch(&hub, &format!("event:3:{event}"));
        dispatch(&hub, "event:2:{\"seq\": 10}");
        assert!(
            matches!(bob.woken().await, Some(Wake::Read)),
            "a broken push: read"
        );

        dispatch(&hub, "1,2,3");
        assert!(matches!(bob.woken().await, Some(Wake::Read)));
    }
}
