//! Keeps this server's row in the registry fresh (a heartbeat that also reports its open
//! streams, for operators and the balancer) and records who holds a stream here, in
//! the order streams open and close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::db::{self, PgPool};
use crate::live::hub::{Hub, PresenceChange};
use crate::store::servers::{self, ServerIdentity};

const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// Applies presence changes in the order they happened and keeps the heartbeat going.
pub async fn run(
    pool: PgPool,
    hub: Arc<Hub>,
    me: ServerIdentity,
    mut changes: mpsc::UnboundedReceiver<PresenceChange>,
) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
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
