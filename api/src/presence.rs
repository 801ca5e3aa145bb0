//! Who is online: this server's row in `servers` (kept fresh by a heartbeat that also
//! reports its open streams, for operators and the balancer) and a
//! `presence` row for every user holding a stream here. A server that dies stops
//! counting once its heartbeat is stale, with no one having to clean up after it.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use tokio::sync::mpsc;

use crate::db::{self, PgConn, PgPool};
use crate::error::ApiError;
use crate::hub::{Hub, PresenceChange};
use crate::schema::{presence, servers};

/// A server whose heartbeat is older than this is taken for dead.
pub const STALE_AFTER: Duration = Duration::from_secs(10);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// Rows of servers dead this long are deleted by whoever notices.
const FORGET_AFTER: Duration = Duration::from_secs(300);

fn stale_cutoff(age: Duration) -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)
}

/// The users among `user_ids` who hold a stream on a live server.
pub fn online_among(conn: &mut PgConn, user_ids: &[i64]) -> QueryResult<HashSet<i64>> {
    let rows = presence::table
        .inner_join(servers::table)
        .filter(presence::user_id.eq_any(user_ids))
        .filter(servers::heartbeat_at.gt(stale_cutoff(STALE_AFTER)))
        .select(presence::user_id)
        .distinct()
        .load::<i64>(conn)?;
    Ok(rows.into_iter().collect())
}

/// This server's identity in the `servers` table.
#[derive(Clone)]
pub struct ServerIdentity {
    pub id: uuid::Uuid,
    pub address: String,
}

fn register(conn: &mut PgConn, me: &ServerIdentity, local_users: &[i64]) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::insert_into(servers::table)
            .values((servers::id.eq(me.id), servers::address.eq(&me.address)))
            .on_conflict(servers::id)
            .do_update()
            .set(servers::heartbeat_at.eq(Utc::now()))
            .execute(conn)?;
        let rows: Vec<_> = local_users
            .iter()
            .map(|u| (presence::user_id.eq(*u), presence::server_id.eq(me.id)))
            .collect();
        diesel::insert_into(presence::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .execute(conn)?;
        Ok(())
    })
}

pub async fn register_server(pool: &PgPool, me: &ServerIdentity) -> Result<(), ApiError> {
    let me = me.clone();
    db::run(pool, move |conn| Ok(register(conn, &me, &[])?)).await
}

/// Removes this server and its presence rows (graceful shutdown).
pub async fn deregister_server(pool: &PgPool, me: &ServerIdentity) -> Result<(), ApiError> {
    let id = me.id;
    db::run(pool, move |conn| {
        diesel::delete(servers::table.find(id)).execute(conn)?;
        Ok(())
    })
    .await
}

/// Applies presence changes in the order they happened and keeps the heartbeat going.
pub async fn run(
    pool: PgPool,
    hub: std::sync::Arc<Hub>,
    me: ServerIdentity,
    mut changes: mpsc::UnboundedReceiver<PresenceChange>,
) {
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                let id = me.id;
                let result = db::run(&pool, move |conn| {
                    match change {
                        PresenceChange::Online(user) => diesel::insert_into(presence::table)
                            .values((presence::user_id.eq(user), presence::server_id.eq(id)))
                            .on_conflict_do_nothing()
                            .execute(conn)?,
                        PresenceChange::Offline(user) => diesel::delete(
                            presence::table.find((user, id)),
                        )
                        .execute(conn)?,
                    };
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
                    let updated = diesel::update(servers::table.find(me.id))
                        .set((
                            servers::heartbeat_at.eq(Utc::now()),
                            servers::open_streams.eq(streams),
                        ))
                        .execute(conn)?;
                    if updated == 0 {
                        // Someone took us for dead: come back with our streams.
                        register(conn, &me, &local)?;
                    }
                    diesel::delete(
                        servers::table.filter(servers::heartbeat_at.lt(stale_cutoff(FORGET_AFTER))),
                    )
                    .execute(conn)?;
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
