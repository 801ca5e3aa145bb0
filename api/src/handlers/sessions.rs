//! `/v1/sessions`: log in (with a per-username lockout after repeated failures, shared
//! by all servers through the database) and log out.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use fastchat_protocol::names::Username;
use fastchat_protocol::wire::{CreateSession, SessionCreated};

use crate::config::PASSWORD_MAX_BYTES;
use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::{new_token, AuthUser};
use crate::handlers::client::client_address;
use crate::handlers::users::is_password_text;
use crate::state::AppState;
use crate::store::sessions::{self, Throttle};

/// `POST /v1/sessions`
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    let CreateSession { username, password } = body.into_inner();
    // A name that cannot exist, or a password that could never have been accepted,
    // is simply wrong: the same answer as any other failure, and nothing to count.
    let Ok(username) = Username::parse(&username) else {
        return Err(ApiError::invalid_credentials());
    };
    if password.is_empty() || password.len() > PASSWORD_MAX_BYTES || !is_password_text(&password) {
        return Err(ApiError::invalid_credentials());
    }
    let client = client_address(&req, &state.config.trusted_proxies);
    let config = &state.config;
    let throttle = Throttle {
        window_secs: config.login_window_secs,
        lockout_secs: config.login_lockout_secs,
        max_per_name: config.login_max_failures,
        max_per_address: config.login_max_per_address,
    };

    // Counted before the password is checked: guesses made at once all count.
    let (name, from) = (username.clone(), client.clone());
    let attempt = db::run(&state.pool, move |conn| {
        Ok(sessions::count_attempt(conn, &name, &from, throttle)?)
    })
    .await?;
    if let Some(seconds) = attempt.refused_for {
        return Err(ApiError::too_many_attempts(seconds));
    }
    // Unknown users cost a bcrypt verification too, so timing does not tell
    // which usernames exist.
    let (user_id, hash) = match attempt.user {
        Some((id, hash)) => (Some(id), hash),
        None => (None, state.dummy_password_hash.clone()),
    };
    let password_ok =
        db::blocking(move || bcrypt::verify(password, &hash).unwrap_or(false)).await?;
    let Some(user_id) = user_id.filter(|_| password_ok) else {
        tracing::info!(%username, %client, "failed login");
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
            Some((&name, &client)),
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
