//! The wake-up between servers: PostgreSQL NOTIFY, sent inside the transaction that
//! writes the inbox events, and one LISTEN connection per server. This module is the
//! whole interface; a message broker could take its place without touching the rest.
//! A wake-up is only a hint: after (re)connecting, every local stream re-reads its inbox.

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel::{sql_query, RunQueryDsl};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db::PgConn;
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
        hub.wake(parse_payload(&payload));
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
}
