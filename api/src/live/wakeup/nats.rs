//! Inbox wake-ups over NATS: every server publishes whom its committed work woke, and
//! the messages it can hand over whole (pushes), on one subject and subscribes to it.
//! Core NATS delivers at most once, so each reconnection (ours, or after the NATS
//! server restarted) makes every local stream re-read its inbox, as a PostgreSQL
//! listener's does; what was published meanwhile is read from the table.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::live::hub::Hub;
use crate::live::wakeup::dispatch;
use crate::notification::wake_payloads;
use crate::wakeups::{Bus, Woken};

/// The subject every server publishes wake-ups on and listens to.
pub const SUBJECT: &str = "fastchat.inbox";

/// The bus the store's wake-ups go to: a queue to the task that publishes them, so that
/// the query threads never wait on the network.
pub struct NatsWakeups {
    queue: mpsc::UnboundedSender<Woken>,
}

impl Bus for NatsWakeups {
    fn publish(&self, woken: Woken) {
        // Closed only when the server is stopping.
        let _ = self.queue.send(woken);
    }
}

/// Connects to NATS at `url` (`nats://[user:password@]host:port`), subscribes, and
/// starts the tasks that listen and publish. Fails if NATS does not answer now; later
/// outages are waited out, reconnecting for as long as the server runs.
pub async fn connect(url: &str, hub: Arc<Hub>) -> anyhow::Result<NatsWakeups> {
    let (reconnected, connections) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .name("fastchat-api")
        .max_reconnects(None)
        // Quick retries: streams wait on this for anything sent meanwhile elsewhere.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(50 << attempts.min(5)).min(Duration::from_secs(1))
        })
        .event_callback(move |event| {
            match event {
                async_nats::Event::Connected => {
                    tracing::info!("wake-ups: connected to NATS");
                    let _ = reconnected.send(());
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("wake-ups: NATS connection lost; reconnecting");
                }
                other => tracing::warn!(event = %other, "wake-ups: NATS"),
            }
            std::future::ready(())
        })
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to NATS: {e}"))?;
    let subscription = client
        .subscribe(SUBJECT)
        .await
        .map_err(|e| anyhow::anyhow!("subscribing to {SUBJECT} on NATS: {e}"))?;
    tracing::info!("listening for wake-ups on NATS");
    tokio::spawn(listen(subscription, Arc::clone(&hub)));
    tokio::spawn(catch_up(client.clone(), connections, hub));
    let (queue, woken) = mpsc::unbounded_channel();
    tokio::spawn(publish(client, woken));
    Ok(NatsWakeups { queue })
}

/// After each (re)connection, once the NATS server has our subscription again (a flush
/// is answered after what was sent before it, the subscription among it), every local
/// stream re-reads its inbox for what was published while we were away.
async fn catch_up(
    client: async_nats::Client,
    mut connections: mpsc::UnboundedReceiver<()>,
    hub: Arc<Hub>,
) {
    while connections.recv().await.is_some() {
        if let Err(e) = client.flush().await {
            tracing::warn!(error = %e, "wake-ups: flushing to NATS after reconnecting");
        }
        hub.wake_all();
    }
}

async fn listen(mut subscription: async_nats::Subscriber, hub: Arc<Hub>) {
    while let Some(message) = subscription.next().await {
        match std::str::from_utf8(&message.payload) {
            Ok(payload) => dispatch(&hub, payload),
            Err(_) => {
                tracing::warn!("a wake-up that is not UTF-8; every stream reads its inbox");
                hub.wake_all();
            }
        }
    }
    tracing::warn!("the NATS subscription ended: no more wake-ups from other servers");
}

/// Publishes what the store noted, merging whatever queued up while the last went out,
/// so that a burst of sends costs a few messages, not one each.
async fn publish(client: async_nats::Client, mut woken: mpsc::UnboundedReceiver<Woken>) {
    while let Some(first) = woken.recv().await {
        let (mut users, mut payloads) = (first.users, first.pushes);
        while let Ok(more) = woken.try_recv() {
            users.extend(more.users);
            payloads.extend(more.pushes);
        }
        users.sort_unstable();
        users.dedup();
        payloads.extend(wake_payloads(&users));
        for payload in payloads {
            // While disconnected the client holds what is published and sends it once
            // it is back; an error here means it could not even do that.
            if let Err(e) = client.publish(SUBJECT, payload.into()).await {
                tracing::warn!(error = %e, "publishing a wake-up on NATS");
            }
        }
    }
}
