//! Sessions: log in (with a per-username lockout after repeated failures, shared by all
//! servers through the database) and log out.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use fastchat_protocol::names::is_valid_name;
use fastchat_protocol::wire::{CreateSession, SessionCreated};

use crate::auth::{new_token, AuthUser};
use crate::config::PASSWORD_MAX_BYTES;
use crate::db;
use crate::error::ApiError;
use crate::schema::{login_failures, sessions, users};
use crate::startup::AppState;

#[derive(Insertable)]
#[diesel(table_name = sessions)]
struct NewSession {
    token_hash: Vec<u8>,
    user_id: i64,
    expires_at: DateTime<Utc>,
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "wrong username or password")
}

/// `POST /v1/sessions`
pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    let CreateSession { username, password } = body.into_inner();
    // A name that cannot exist, or a password that could never have been accepted,
    // is simply wrong: the same answer as any other failure, and nothing to count.
    if !is_valid_name(&username) || password.is_empty() || password.len() > PASSWORD_MAX_BYTES {
        return Err(invalid_credentials());
    }

    let lookup_name = username.clone();
    let (locked_for, user) = db::run(&state.pool, move |conn| {
        let locked_until = login_failures::table
            .find(&lookup_name)
            .select(login_failures::locked_until)
            .first::<Option<DateTime<Utc>>>(conn)
            .optional()?
            .flatten();
        let user = users::table
            .filter(users::username.eq(&lookup_name))
            .select((users::id, users::password_hash))
            .first::<(i64, String)>(conn)
            .optional()?;
        Ok((locked_until.map(|t| t - Utc::now()), user))
    })
    .await?;
    if let Some(remaining) = locked_for.filter(|d| *d > Duration::zero()) {
        return Err(ApiError::too_many_requests(
            "too many failed logins for this username; try again later",
            remaining.num_seconds().unsigned_abs() + 1,
        ));
    }

    // Unknown users cost a bcrypt verification too, so timing does not tell
    // which usernames exist.
    let (user_id, hash) = match user {
        Some((id, hash)) => (Some(id), hash),
        None => (None, state.dummy_password_hash.clone()),
    };
    let password_ok = web::block(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("bcrypt task failed: {e}")))?;

    let Some(user_id) = user_id.filter(|_| password_ok) else {
        record_failure(&state, username).await?;
        return Err(invalid_credentials());
    };

    let (token, token_hash) = new_token();
    let ttl = Duration::seconds(state.config.session_ttl_secs);
    let expires_at = Utc::now() + ttl;
    let session = NewSession {
        token_hash,
        user_id,
        expires_at,
    };
    let cleared_name = username.clone();
    db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            diesel::insert_into(sessions::table)
                .values(&session)
                .execute(conn)?;
            diesel::delete(login_failures::table.find(&cleared_name)).execute(conn)?;
            Ok(())
        })
    })
    .await?;
    tracing::info!(%username, "logged in");
    Ok(HttpResponse::Created().json(SessionCreated {
        token,
        username,
        expires_at,
    }))
}

/// Counts a failed login; the failure that reaches the limit within the window locks
/// the username out for the lockout period.
async fn record_failure(state: &AppState, username: String) -> Result<(), ApiError> {
    let config = &state.config;
    let (window, lockout) = (config.login_window_secs, config.login_lockout_secs);
    let max_failures = config.login_max_failures;
    tracing::info!(%username, "failed login");
    db::run(&state.pool, move |conn| {
        diesel::sql_query(
            "INSERT INTO login_failures AS f (username, failures, window_start)
             VALUES ($1, 1, now())
             ON CONFLICT (username) DO UPDATE SET
               failures = CASE WHEN f.window_start < now() - $2 * interval '1 second'
                               THEN 1 ELSE f.failures + 1 END,
               window_start = CASE WHEN f.window_start < now() - $2 * interval '1 second'
                                   THEN now() ELSE f.window_start END",
        )
        .bind::<Text, _>(&username)
        .bind::<BigInt, _>(window)
        .execute(conn)?;
        diesel::sql_query(
            "UPDATE login_failures
                SET locked_until = now() + $2 * interval '1 second'
              WHERE username = $1 AND failures >= $3",
        )
        .bind::<Text, _>(&username)
        .bind::<BigInt, _>(lockout)
        .bind::<Integer, _>(max_failures)
        .execute(conn)?;
        Ok(())
    })
    .await
}

/// `DELETE /v1/sessions/current`: the token stops working on every server at once,
/// since every server looks tokens up in the database.
pub async fn delete_current(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let hash = caller.token_hash;
    db::run(&state.pool, move |conn| {
        diesel::delete(sessions::table.find(hash)).execute(conn)?;
        Ok(())
    })
    .await?;
    tracing::info!(username = %caller.username, "logged out");
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes expired sessions and stale failure counts; run now and then.
pub fn purge_expired(conn: &mut db::PgConn, login_window_secs: i64) -> QueryResult<usize> {
    let sessions = diesel::delete(sessions::table.filter(sessions::expires_at.le(Utc::now())))
        .execute(conn)?;
    let window = Duration::seconds(login_window_secs);
    let stale = Utc::now() - window;
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
