//! The server registry (`servers`: every api server's address, heartbeat and open
//! streams, which the balancer reads) and who is online (`presence`: a row for every
//! user holding a stream on a server). A server that dies stops counting once its
//! heartbeat is stale, with no one having to clean up after it.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::PgConn;
use crate::ids::UserId;
use crate::schema::{presence, servers};

/// A server whose heartbeat is older than this is taken for dead.
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// Rows of servers dead this long are deleted by whoever notices.
const FORGET_AFTER: Duration = Duration::from_secs(300);

fn cutoff(age: Duration) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)
}

/// This server's identity in the registry.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub id: uuid::Uuid,
    /// Where clients' requests reach it (through the balancer).
    pub address: String,
    /// Where its admin listener (probes, metrics) is.
    pub admin_address: String,
}

/// The users among `users` who hold a stream on a live server.
pub fn online_among(conn: &mut PgConn, users: &[UserId]) -> QueryResult<HashSet<UserId>> {
    let rows = presence::table
        .inner_join(servers::table)
        .filter(presence::user_id.eq_any(users))
        .filter(servers::heartbeat_at.gt(cutoff(STALE_AFTER)))
        .select(presence::user_id)
        .distinct()
        .load::<UserId>(conn)?;
    Ok(rows.into_iter().collect())
}

/// Records this server (again) with the users it holds streams for.
pub fn register(conn: &mut PgConn, me: &ServerIdentity, local_users: &[UserId]) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::insert_into(servers::table)
            .values((
                servers::id.eq(me.id),
                servers::address.eq(&me.address),
                servers::admin_address.eq(&me.admin_address),
            ))
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

/// Removes this server and, with it, its presence rows.
pub fn deregister(conn: &mut PgConn, me: &ServerIdentity) -> QueryResult<()> {
    diesel::delete(servers::table.find(me.id))
        .execute(conn)
        .map(drop)
}

/// Keeps this server's row fresh with its open stream count, and forgets servers long
/// dead. Returns false when this server's row was gone (someone took it for dead).
pub fn heartbeat(conn: &mut PgConn, me: &ServerIdentity, open_streams: i32) -> QueryResult<bool> {
    let updated = diesel::update(servers::table.find(me.id))
        .set((
            servers::heartbeat_at.eq(Utc::now()),
            servers::open_streams.eq(open_streams),
        ))
        .execute(conn)?;
    diesel::delete(servers::table.filter(servers::heartbeat_at.lt(cutoff(FORGET_AFTER))))
        .execute(conn)?;
    Ok(updated > 0)
}

pub fn set_online(conn: &mut PgConn, me: &ServerIdentity, user: UserId) -> QueryResult<()> {
    diesel::insert_into(presence::table)
        .values((presence::user_id.eq(user), presence::server_id.eq(me.id)))
        .on_conflict_do_nothing()
        .execute(conn)
        .map(drop)
}

pub fn set_offline(conn: &mut PgConn, me: &ServerIdentity, user: UserId) -> QueryResult<()> {
    diesel::delete(presence::table.find((user, me.id)))
        .execute(conn)
        .map(drop)
}
