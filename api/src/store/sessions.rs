//! Sessions (kept as the SHA-256 of their tokens) and the failed-login counts every
//! server shares.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Integer, Text};
use fastchat_protocol::names::Username;
use prometheus::Histogram;

use crate::batch::Batcher;
use crate::db::{self, PgConn, PgPool};
use crate::error::ApiError;
use crate::ids::UserId;
use crate::schema::{login_failures, sessions};
use crate::store::functions::FindSessions;

/// The session a token belongs to.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user_id: UserId,
    pub username: String,
}

/// A session lookup's answer: the user a token belongs to, if any.
pub type SessionLookup = Result<Option<SessionUser>, ApiError>;

/// Lookups that arrive together are one query: every request makes one.
const LOOKUP_BATCH_MAX: usize = 256;
const LOOKUP_WORKERS: usize = 2;

/// Starts the threads that serve [`find_sessions`] in batches.
pub fn lookup_batcher(
    pool: PgPool,
    sizes: Histogram,
) -> std::io::Result<Batcher<Vec<u8>, SessionLookup>> {
    Batcher::start(
        "session-lookups",
        LOOKUP_WORKERS,
        LOOKUP_BATCH_MAX,
        sizes,
        move |hashes| find_sessions(&pool, hashes),
    )
}

/// The live sessions of many token hashes in one query: the user of each, or `None`
/// when it is unknown, expired or revoked. Blocks.
pub fn find_sessions(pool: &PgPool, hashes: Vec<Vec<u8>>) -> Vec<SessionLookup> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bytea)]
        token_hash: Vec<u8>,
        #[diesel(sql_type = BigInt)]
        user_id: UserId,
        #[diesel(sql_type = Text)]
        username: String,
    }
    let found = db::with_conn(pool, |conn| {
        Ok(FindSessions {
            hashes: hashes.clone(),
        }
        .load::<Found>(conn)?)
    });
    match found {
        Ok(rows) => {
            let by_hash: HashMap<Vec<u8>, SessionUser> = rows
                .into_iter()
                .map(|f| {
                    let user = SessionUser {
                        user_id: f.user_id,
                        username: f.username,
                    };
                    (f.token_hash, user)
                })
                .collect();
            hashes.iter().map(|h| Ok(by_hash.get(h).cloned())).collect()
        }
        Err(e) => e.for_each_of(hashes.len()),
    }
}

#[derive(Insertable)]
#[diesel(table_name = sessions)]
struct NewSession<'a> {
    token_hash: &'a [u8],
    user_id: UserId,
    expires_at: DateTime<Utc>,
}

/// Starts a session and clears the user's failed logins.
pub fn create(
    conn: &mut PgConn,
    token_hash: &[u8],
    user_id: UserId,
    username: &Username,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::insert_into(sessions::table)
            .values(&NewSession {
                token_hash,
                user_id,
                expires_at,
            })
            .execute(conn)?;
        diesel::delete(login_failures::table.find(username.as_str())).execute(conn)?;
        Ok(())
    })
}

pub fn delete(conn: &mut PgConn, token_hash: &[u8]) -> QueryResult<()> {
    diesel::delete(sessions::table.find(token_hash))
        .execute(conn)
        .map(drop)
}

/// Until when `username` is locked out, if it is.
pub fn locked_until(conn: &mut PgConn, username: &Username) -> QueryResult<Option<DateTime<Utc>>> {
    Ok(login_failures::table
        .find(username.as_str())
        .select(login_failures::locked_until)
        .first::<Option<DateTime<Utc>>>(conn)
        .optional()?
        .flatten())
}

/// How failed logins are counted.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub max_failures: i32,
    pub window_secs: i64,
    pub lockout_secs: i64,
}

/// Counts a failed login for `username`; the failure that reaches the limit within the
/// window locks the name out for the lockout period.
pub fn record_failure(
    conn: &mut PgConn,
    username: &Username,
    throttle: Throttle,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO login_failures AS f (username, failures, window_start)
         VALUES ($1, 1, now())
         ON CONFLICT (username) DO UPDATE SET
           failures = CASE WHEN f.window_start < now() - $2 * interval '1 second'
                           THEN 1 ELSE f.failures + 1 END,
           window_start = CASE WHEN f.window_start < now() - $2 * interval '1 second'
                               THEN now() ELSE f.window_start END",
    )
    .bind::<Text, _>(username.as_str())
    .bind::<BigInt, _>(throttle.window_secs)
    .execute(conn)?;
    diesel::sql_query(
        "UPDATE login_failures
            SET locked_until = now() + $2 * interval '1 second'
          WHERE username = $1 AND failures >= $3",
    )
    .bind::<Text, _>(username.as_str())
    .bind::<BigInt, _>(throttle.lockout_secs)
    .bind::<Integer, _>(throttle.max_failures)
    .execute(conn)
    .map(drop)
}

/// Deletes expired sessions and stale failure counts; run now and then.
pub fn purge_expired(conn: &mut PgConn, login_window_secs: i64) -> QueryResult<usize> {
    let sessions = diesel::delete(sessions::table.filter(sessions::expires_at.le(Utc::now())))
        .execute(conn)?;
    let stale = Utc::now() - Duration::seconds(login_window_secs);
    let failures = diesel::delete(
        login_failures::table
            .filter(login_failures::window_start.lt(stale))
            .filter(
                login_failures::locked_until
                    .is_null()
                    .or(login_failures::locked_until.lt(Utc::now())),
            ),
    )
    .execute(conn)?;
    Ok(sessions + failures)
}
