//! `/v1/users` and `/v1/me`: signup, public profiles and keys, search, and the caller's
//! backups (the private key, the contacts), which the client encrypts.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use diesel::Connection;
use fastchat_protocol::keys::{parse_public_key_pem, public_key_pem};
use fastchat_protocol::names::{is_name_chars, Username, NAME_MAX_LEN};
use fastchat_protocol::wire::{
    ContactsBackup, CreateUser, KeyBackup, UserCreated, UserList, UserProfile, UserSummary,
    UsernameAvailability,
};
use serde::Deserialize;

use crate::config::PASSWORD_MAX_BYTES;
use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::{new_token, AuthUser};
use crate::state::AppState;
use crate::store::servers::online_among;
use crate::store::sessions;
use crate::store::users::{self, NewUser};

const LIST_DEFAULT_LIMIT: i64 = 50;
/// An RSA key of 8192 bits is under 1,500 bytes of PEM.
const PUBLIC_KEY_MAX_BYTES: usize = 8 * 1024;
const LIST_MAX_LIMIT: i64 = 200;

/// A password the server would accept at signup: of its length, and typed text (no NUL,
/// no control characters).
fn acceptable_password(state: &AppState, password: &str) -> bool {
    (state.config.password_min_bytes..=PASSWORD_MAX_BYTES).contains(&password.len())
        && is_password_text(password)
}

/// Whether a password holds no control character (NUL included): one that does was
/// never accepted, and is refused at login without being counted.
pub fn is_password_text(password: &str) -> bool {
    !password.chars().any(char::is_control)
}

/// `POST /v1/users`: the account, and a session for it, so that signing up costs one
/// bcrypt hash and no login after it.
pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let CreateUser {
        username,
        password,
        public_key,
        key_backup,
    } = body.into_inner();
    let username = Username::parse(&username).map_err(|_| ApiError::invalid_username())?;
    if !acceptable_password(&state, &password) {
        return Err(ApiError::invalid_password(
            state.config.password_min_bytes,
            PASSWORD_MAX_BYTES,
        ));
    }
    // Checked before it is parsed, and stored as the parse prints it back: no text
    // around the PEM, no odd line breaks, nothing but the key.
    if public_key.len() > PUBLIC_KEY_MAX_BYTES {
        return Err(ApiError::invalid_public_key(format!(
            "a public key is at most {PUBLIC_KEY_MAX_BYTES} bytes of PEM"
        )));
    }
    let public_key =
        public_key_pem(&parse_public_key_pem(&public_key).map_err(ApiError::invalid_public_key)?);
    if let Some(backup) = &key_backup {
        let max = state.config.key_backup_max_bytes;
        if backup.is_empty() || backup.len() > max || BASE64.decode(backup).is_err() {
            return Err(ApiError::invalid_key_backup(max));
        }
    }

    // Refuse a taken name before spending a bcrypt hash on it; the insert below is
    // what really decides when two signups race.
    let name = username.clone();
    if db::run(&state.pool, move |conn| Ok(users::exists(conn, &name)?)).await? {
        return Err(ApiError::username_taken());
    }
    let cost = state.config.bcrypt_cost;
    let password_hash = db::blocking(move || bcrypt::hash(password, cost))
        .await?
        .map_err(|e| ApiError::internal(format!("bcrypt: {e}")))?;
    let new = NewUser {
        username: username.to_string(),
        password_hash,
        public_key,
        key_backup,
    };
    let (token, token_hash) = new_token();
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(state.config.session_ttl_secs);
    let created_at = db::run(&state.pool, move |conn| {
        Ok(conn.transaction(|conn| {
            let Some((user_id, created_at)) = users::create(conn, &new)? else {
                return Ok::<_, diesel::result::Error>(None);
            };
            // A new account has no failed logins to forget.
            sessions::create(conn, &token_hash, user_id, None, expires_at)?;
            Ok(Some(created_at))
        })?)
    })
    .await?
    .ok_or_else(ApiError::username_taken)?;
    tracing::info!(%username, "user signed up");
    Ok(HttpResponse::Created().json(UserCreated {
        username,
        created_at,
        token,
        expires_at,
    }))
}

/// `GET /v1/usernames/{username}`: whether a signup could take the name now, so that a
/// client can say so before it asks for a password. It tells no more than a signup
/// attempt would.
pub async fn availability(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<UsernameAvailability>, ApiError> {
    let username = Username::parse(&path).map_err(|_| ApiError::invalid_username())?;
    let name = username.clone();
    let taken = db::run(&state.pool, move |conn| Ok(users::exists(conn, &name)?)).await?;
    Ok(web::Json(UsernameAvailability {
        username,
        available: !taken,
    }))
}

/// `GET /v1/users/{username}`
pub async fn get(
    state: web::Data<AppState>,
    _caller: AuthUser,
    path: web::Path<String>,
) -> Result<web::Json<UserProfile>, ApiError> {
    let username = Username::parse(&path).map_err(|_| ApiError::user_not_found())?;
    let profile = db::run(&state.pool, move |conn| {
        let Some(profile) = users::profile(conn, &username)? else {
            return Ok(None);
        };
        let online = online_among(conn, &[profile.id])?.contains(&profile.id);
        Ok(Some(UserProfile {
            username,
            public_key: profile.public_key,
            online,
        }))
    })
    .await?;
    Ok(web::Json(profile.ok_or_else(ApiError::user_not_found)?))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<i64>,
}

/// `GET /v1/users?prefix=&limit=`: names in alphabetical order.
pub async fn list(
    state: web::Data<AppState>,
    _caller: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<web::Json<UserList>, ApiError> {
    let ListQuery { prefix, limit } = query.into_inner();
    if prefix.len() > NAME_MAX_LEN || !is_name_chars(&prefix) {
        return Err(ApiError::invalid_query(
            "prefix may hold only a-z, 0-9 and _, at most 32 of them",
        ));
    }
    let limit = limit.unwrap_or(LIST_DEFAULT_LIMIT);
    if !(1..=LIST_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_query(format!(
            "limit is 1 to {LIST_MAX_LIMIT}"
        )));
    }
    let users = db::run(&state.pool, move |conn| {
        let found = users::with_prefix(conn, &prefix, limit)?;
        let ids: Vec<_> = found.iter().map(|(id, _)| *id).collect();
        let online = online_among(conn, &ids)?;
        found
            .into_iter()
            .map(|(id, username)| {
                Ok(UserSummary {
                    username: Username::parse(&username).map_err(|_| {
                        ApiError::internal(format!("the database holds the name {username:?}"))
                    })?,
                    online: online.contains(&id),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(web::Json(UserList { users }))
}

/// `GET /v1/me/key-backup`
pub async fn key_backup(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<web::Json<KeyBackup>, ApiError> {
    let user = caller.user.user_id;
    let key_backup = db::run(&state.pool, move |conn| Ok(users::key_backup(conn, user)?))
        .await?
        .ok_or_else(ApiError::no_key_backup)?;
    Ok(web::Json(KeyBackup { key_backup }))
}

/// `GET /v1/me/contacts`
pub async fn contacts_backup(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<web::Json<ContactsBackup>, ApiError> {
    let user = caller.user.user_id;
    let contacts = db::run(&state.pool, move |conn| {
        Ok(users::contacts_backup(conn, user)?)
    })
    .await?
    .ok_or_else(ApiError::no_contacts_backup)?;
    Ok(web::Json(ContactsBackup { contacts }))
}

/// `PUT /v1/me/contacts`: replaces the caller's contacts backup.
pub async fn put_contacts_backup(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: web::Json<ContactsBackup>,
) -> Result<HttpResponse, ApiError> {
    let contacts = body.into_inner().contacts;
    let max = state.config.contacts_backup_max_bytes;
    let base64 = BASE64.decode(&contacts).is_ok();
    if contacts.is_empty() || contacts.len() > max || !base64 {
        return Err(ApiError::invalid_contacts_backup(max));
    }
    let user = caller.user.user_id;
    db::run(&state.pool, move |conn| {
        Ok(users::set_contacts_backup(conn, user, &contacts)?)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
