//! The PostgreSQL listener: one LISTEN connection per server. It carries revocations
//! always, and inbox wake-ups unless another bus does.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{AsyncMessage, NoTls};

use crate::live::hub::Hub;
use crate::live::wakeup::dispatch;
use crate::notification::CHANNEL;

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
