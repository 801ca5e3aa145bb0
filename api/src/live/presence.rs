//! Keeps this server's row in the registry fresh (a heartbeat that also reports its open
//! streams, for operators and the balancer) and records who holds a stream here, in
//! the order streams open and close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::db::{self, PgPool};
use crate::live::hub::{Hub, PresenceChange};
use crate::store::servers::{self, ServerIdentity};

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// The running presence loop, kept so that shutdown can stop it before this server's
/// row is deleted: a heartbeat that found the row gone would put it back. Dropped, it
/// stops too, without waiting.
pub struct Presence {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Presence {
    pub fn spawn(
        pool: PgPool,
        hub: Arc<Hub>,
        me: ServerIdentity,
        changes: mpsc::UnboundedReceiver<PresenceChange>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(pool, hub, me, changes, stopped));
        Self { stop, task }
    }

    /// Returns once the loop has ended, so no heartbeat is in flight any more.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "presence loop ended abnormally");
        }
    }
}

/// Applies presence changes in the order they happened and keeps the heartbeat going
/// until told to stop. A database call under way finishes first: the select only
/// chooses between waits.
async fn run(
    pool: PgPool,
    hub: Arc<Hub>,
    me: ServerIdentity,
    mut changes: mpsc::UnboundedReceiver<PresenceChange>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => return,
            change = changes.recv() => {
                let Some(change) = change else { return };
                let me = me.clone();
                let result = db::run(&pool, move |conn| {
                    match change {
                        PresenceChange::Online(user) => servers::set_online(conn, &me, user)?,
                        PresenceChange::Offline(user) => servers::set_offline(conn, &me, user)?,
                    }
                    Ok(())
                })
                .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, ?change, "recording presence");
                }
            }
            _ = heartbeat.tick() => {
                let (me, local) = (me.clone(), hub.local_users());
                let streams = i32::try_from(hub.stream_count()).unwrap_or(i32::MAX);
                let result = db::run(&pool, move |conn| {
                    if !servers::heartbeat(conn, &me, streams)? {
                        // Someone took us for dead: come back with our streams.
                        servers::register(conn, &me, &local)?;
                    }
                    Ok(())
                })
                .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "heartbeat");
                }
            }
        }
    }
}
