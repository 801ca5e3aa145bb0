//! Users: signup, public profiles and keys, search, and the caller's key backup.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use fastchat_protocol::keys::parse_public_key_pem;
use fastchat_protocol::names::{is_name_chars, is_valid_name, NAME_MAX_LEN};
use fastchat_protocol::wire::{
    CreateUser, KeyBackup, UserCreated, UserList, UserProfile, UserSummary,
};
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::config::PASSWORD_MAX_BYTES;
use crate::db;
use crate::error::ApiError;
use crate::presence::online_among;
use crate::schema::{inboxes, users};
use crate::startup::AppState;

const LIST_DEFAULT_LIMIT: i64 = 50;
const LIST_MAX_LIMIT: i64 = 200;

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUser {
    username: String,
    password_hash: String,
    public_key: String,
    key_backup: Option<String>,
}

pub fn validate_username(name: &str) -> Result<(), ApiError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_username",
            "a username is 3 to 32 characters of a-z, 0-9 and _",
        ))
    }
}

pub fn validate_password(state: &AppState, password: &str) -> Result<(), ApiError> {
    let min = state.config.password_min_bytes;
    if (min..=PASSWORD_MAX_BYTES).contains(&password.len()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_password",
            format!("a password is {min} to {PASSWORD_MAX_BYTES} bytes long"),
        ))
    }
}

/// `POST /v1/users`
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
    validate_username(&username)?;
    validate_password(&state, &password)?;
    parse_public_key_pem(&public_key)
        .map_err(|e| ApiError::bad_request("invalid_public_key", e.to_string()))?;
    if let Some(backup) = &key_backup {
        let max = state.config.key_backup_max_bytes;
        if backup.is_empty() || backup.len() > max {
            return Err(ApiError::bad_request(
                "invalid_key_backup",
                format!("a key backup is 1 to {max} bytes"),
            ));
        }
    }

    // Refuse a taken name before spending a bcrypt hash on it; the insert below is
    // what really decides when two signups race.
    let taken_name = username.clone();
    if db::run(&state.pool, move |conn| {
        Ok(diesel::select(diesel::dsl::exists(
            users::table.filter(users::username.eq(taken_name)),
        ))
        .get_result::<bool>(conn)?)
    })
    .await?
    {
        return Err(username_taken());
    }

    let cost = state.config.bcrypt_cost;
    let password_hash = web::block(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing task failed: {e}")))?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("bcrypt: {e}")))?;

    let new_user = NewUser {
        username,
        password_hash,
        public_key,
        key_backup,
    };
    let created = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let created = diesel::insert_into(users::table)
                .values(&new_user)
                .on_conflict(users::username)
                .do_nothing()
                .returning((users::id, users::username, users::created_at))
                .get_result::<(i64, String, DateTime<Utc>)>(conn)
                .optional()?;
            if let Some((id, ..)) = &created {
                diesel::insert_into(inboxes::table)
                    .values(inboxes::user_id.eq(id))
                    .execute(conn)?;
            }
            Ok(created)
        })
    })
    .await?;
    let (_, username, created_at) = created.ok_or_else(username_taken)?;
    tracing::info!(%username, "user signed up");
    Ok(HttpResponse::Created().json(UserCreated {
        username,
        created_at,
    }))
}

fn username_taken() -> ApiError {
    ApiError::conflict("username_taken", "that username is taken")
}

fn user_not_found() -> ApiError {
    ApiError::not_found("user_not_found", "no user has that name")
}

/// `GET /v1/users/{username}`
pub async fn get(
    state: web::Data<AppState>,
    _caller: AuthUser,
    path: web::Path<String>,
) -> Result<web::Json<UserProfile>, ApiError> {
    let username = path.into_inner();
    if !is_valid_name(&username) {
        return Err(user_not_found());
    }
    let found = db::run(&state.pool, move |conn| {
        let user = users::table
            .filter(users::username.eq(&username))
            .select((users::id, users::username, users::public_key))
            .first::<(i64, String, String)>(conn)
            .optional()?;
        let Some((id, username, public_key)) = user else {
            return Ok(None);
        };
        let online = online_among(conn, &[id])?.contains(&id);
        Ok(Some(UserProfile {
            username,
            public_key,
            online,
        }))
    })
    .await?;
    Ok(web::Json(found.ok_or_else(user_not_found)?))
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
        return Err(ApiError::bad_request(
            "invalid_query",
            "prefix may hold only a-z, 0-9 and _, at most 32 of them",
        ));
    }
    let limit = limit.unwrap_or(LIST_DEFAULT_LIMIT);
    if !(1..=LIST_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit is 1 to {LIST_MAX_LIMIT}"),
        ));
    }
    // `_` is a LIKE wildcard; it is the only one a valid prefix can hold.
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let users = db::run(&state.pool, move |conn| {
        let found = users::table
            .filter(users::username.like(pattern))
            .order(users::username)
            .limit(limit)
            .select((users::id, users::username))
            .load::<(i64, String)>(conn)?;
        let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
        let online = online_among(conn, &ids)?;
        Ok(found
            .into_iter()
            .map(|(id, username)| UserSummary {
                username,
                online: online.contains(&id),
            })
            .collect())
    })
    .await?;
    Ok(web::Json(UserList { users }))
}

/// `GET /v1/me/key-backup`
pub async fn key_backup(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<web::Json<KeyBackup>, ApiError> {
    let user_id = caller.user_id;
    let backup = db::run(&state.pool, move |conn| {
        Ok(users::table
            .find(user_id)
            .select(users::key_backup)
            .first::<Option<String>>(conn)?)
    })
    .await?;
    let key_backup = backup
        .ok_or_else(|| ApiError::not_found("no_key_backup", "this account has no key backup"))?;
    Ok(web::Json(KeyBackup { key_backup }))
}
