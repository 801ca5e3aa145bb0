//! `/v1/sessions`: log in (with a per-username lockout after repeated failures, shared
//! by all servers through the database) and log out.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use fastchat_protocol::names::Username;
use fastchat_protocol::wire::{CreateSession, SessionCreated};

use crate::config::PASSWORD_MAX_BYTES;
use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::{new_token, AuthUser};
use crate::state::AppState;
use crate::store::sessions::{self, Throttle};
use crate::store::users;

/// `POST /v1/sessions`
pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    let CreateSession { username, password } = body.into_inner();
    // A name that cannot exist, or a password that could never have been accepted,
    // is simply wrong: the same answer as any other failure, and nothing to count.
    let Ok(username) = Username::parse(&username) else {
        return Err(ApiError::invalid_credentials());
    };
    if password.is_empty() || password.len() > PASSWORD_MAX_BYTES {
        return Err(ApiError::invalid_credentials());
    }

    let name = username.clone();
    let (locked_until, user) = db::run(&state.pool, move |conn| {
        Ok((
            sessions::locked_until(conn, &name)?,
            users::credentials(conn, &name)?,
        ))
    })
    .await?;
    if let Some(remaining) = locked_until
        .map(|t| t - Utc::now())
        .filter(|d| *d > Duration::zero())
    {
        return Err(ApiError::too_many_attempts(
            remaining.num_seconds().unsigned_abs() + 1,
        ));
    }

    // Unknown users cost a bcrypt verification too, so timing does not tell
    // which usernames exist.
    let (user_id, hash) = match user {
        Some((id, hash)) => (Some(id), hash),
        None => (None, state.dummy_password_hash.clone()),
    };
    let password_ok =
        db::blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await?;
    let Some(user_id) = user_id.filter(|_| password_ok) else {
        tracing::info!(%username, "failed login");
        let config = &state.config;
        let throttle = Throttle {
            max_failures: config.login_max_failures,
            window_secs: config.login_window_secs,
            lockout_secs: config.login_lockout_secs,
        };
        db::run(&state.pool, move |conn| {
            Ok(sessions::record_failure(conn, &username, throttle)?)
        })
        .await?;
        return Err(ApiError::invalid_credentials());
    };

    let (token, token_hash) = new_token();
    let expires_at = Utc::now() + Duration::seconds(state.config.session_ttl_secs);
    let name = username.clone();
    db::run(&state.pool, move |conn| {
        Ok(sessions::create(
            conn,
            &token_hash,
            user_id,
            &name,
            expires_at,
        )?)
    })
    .await?;
    tracing::info!(%username, "logged in");
    Ok(HttpResponse::Created().json(SessionCreated {
        token,
        username,
        expires_at,
    }))
}

/// `DELETE /v1/sessions/current`: the token stops working on every server at once,
/// since every server looks tokens up in the database.
pub async fn delete_current(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let hash = caller.token_hash;
    db::run(&state.pool, move |conn| Ok(sessions::delete(conn, &hash)?)).await?;
    tracing::info!(username = %caller.user.username, "logged out");
    Ok(HttpResponse::NoContent().finish())
}
