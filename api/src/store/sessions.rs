//! Sessions (kept as the SHA-256 of their tokens) and the failed-login counts every
//! server shares.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Text, Timestamptz};
use fastchat_protocol::names::Username;

use crate::batch::{BatchMetrics, Batcher, QUEUE_MAX};
use crate::db::{self, PgConn, PgPool};
use crate::error::ApiError;
use crate::ids::UserId;
use crate::schema::{address_attempts, login_attempts, sessions};
use crate::store::functions::{FindLiveSessions, LoginAttempt, LoginSucceeded};

/// The session a token belongs to.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user_id: UserId,
    pub username: String,
    pub expires_at: DateTime<Utc>,
}

/// A session lookup's answer: the user a token belongs to, if any.
pub type SessionLookup = Result<Option<SessionUser>, ApiError>;

/// Lookups that arrive together are one query: every request makes one.
const LOOKUP_BATCH_MAX: usize = 256;
const LOOKUP_WORKERS: usize = 2;

/// Starts the threads that serve [`find_sessions`] in batches.
pub fn lookup_batcher(
    pool: PgPool,
    metrics: BatchMetrics,
) -> std::io::Result<Batcher<Vec<u8>, SessionLookup>> {
    Batcher::start(
        "session-lookups",
        LOOKUP_WORKERS,
        LOOKUP_BATCH_MAX,
        QUEUE_MAX,
        metrics,
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
        #[diesel(sql_type = Timestamptz)]
        expires_at: DateTime<Utc>,
    }
    let found = db::with_conn(pool, |conn| {
        Ok(FindLiveSessions {
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
                        expires_at: f.expires_at,
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

/// How login attempts are counted.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub window_secs: i64,
    pub lockout_secs: i64,
    pub max_per_name: i32,
    pub max_per_address: i32,
}

/// A login attempt, counted: whether it may go on to the password check, and the user
/// it names.
pub struct Attempt {
    /// `Some(seconds)` when it is refused, for that long.
    pub refused_for: Option<u64>,
    /// The user's id and password hash, if the name is a user's.
    pub user: Option<(UserId, String)>,
}

/// Counts an attempt to log in as `username` from `client`, before its password is
/// checked: guesses made at once all count, and a name's owner logging in from
/// elsewhere is not held back by someone else's guesses.
pub fn count_attempt(
    conn: &mut PgConn,
    username: &Username,
    client: &str,
    throttle: Throttle,
) -> QueryResult<Attempt> {
    #[derive(QueryableByName)]
    struct Counted {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        allowed: bool,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        retry_after_secs: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        user_id: Option<UserId>,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        password_hash: Option<String>,
    }
    let counted: Counted = LoginAttempt {
        name: username.to_string(),
        client: client.to_owned(),
        window_secs: throttle.window_secs,
        lockout_secs: throttle.lockout_secs,
        max_per_name: throttle.max_per_name,
        max_per_address: throttle.max_per_address,
    }
    .get_result(conn)?;
    Ok(Attempt {
        refused_for: (!counted.allowed)
            .then(|| counted.retry_after_secs.unwrap_or(1).unsigned_abs().max(1)),
        user: counted.user_id.zip(counted.password_hash),
    })
}

/// Starts a session after a login that succeeded; the (name, address) starts afresh.
pub fn create(
    conn: &mut PgConn,
    token_hash: &[u8],
    user_id: UserId,
    login: Option<(&Username, &str)>,
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
        if let Some((username, client)) = login {
            LoginSucceeded {
                name: username.to_string(),
                client: client.to_owned(),
            }
            .execute(conn)?;
        }
        Ok(())
    })
}

/// Ends a session. A trigger tells every server in the same commit, and they end its
/// streams.
pub fn delete(conn: &mut PgConn, token_hash: &[u8]) -> QueryResult<()> {
    diesel::delete(sessions::table.find(token_hash))
        .execute(conn)
        .map(drop)
}

/// Deletes expired sessions and stale attempt counts; run now and then.
pub fn purge_expired(conn: &mut PgConn, login_window_secs: i64) -> QueryResult<usize> {
    let sessions = diesel::delete(sessions::table.filter(sessions::expires_at.le(Utc::now())))
        .execute(conn)?;
    let stale = Utc::now() - Duration::seconds(login_window_secs);
    let by_name = diesel::delete(
        login_attempts::table
            .filter(login_attempts::window_start.lt(stale))
            .filter(
                login_attempts::locked_until
                    .is_null()
                    .or(login_attempts::locked_until.lt(Utc::now())),
            ),
    )
    .execute(conn)?;
    let by_address = diesel::delete(
        address_attempts::table
            .filter(address_attempts::window_start.lt(stale))
            .filter(
                address_attempts::locked_until
                    .is_null()
                    .or(address_attempts::locked_until.lt(Utc::now())),
            ),
    )
    .execute(conn)?;
    Ok(sessions + by_name + by_address)
}
