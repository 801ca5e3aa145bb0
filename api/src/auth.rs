//! Bearer tokens. A token is 256 random bits, base64url; the database keeps only its
//! SHA-256, so a leaked table holds no usable token. Looking the hash up by equality
//! leaks nothing useful through timing: an attacker controls the token, not its hash.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Text};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::{self, function_call, PgPool};
use crate::error::ApiError;
use crate::startup::AppState;

/// Length of an encoded token: 32 bytes in unpadded base64url.
const TOKEN_LEN: usize = 43;

/// A fresh token and the hash to store for it.
pub fn new_token() -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The caller of a route that needs a session. Taking it as an argument is what makes
/// a handler require a valid bearer token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: i64,
    pub username: String,
    pub token_hash: Vec<u8>,
}

fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("missing_token", "send Authorization: Bearer <token>")
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "invalid_token",
                "the Authorization header must be: Bearer <token>",
            )
        })?;
    let well_formed = token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(invalid_token());
    }
    Ok(token.to_owned())
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized(
        "invalid_token",
        "the token is unknown, expired or revoked; log in again",
    )
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?;
            let state = state.ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("application state is not registered"))
            })?;
            let token_hash = hash_token(&token);
            let found = state
                .session_lookups
                .call(token_hash.clone())
                .await
                .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))??;
            let (user_id, username) = found.ok_or_else(invalid_token)?;
            Ok(AuthUser {
                user_id,
                username,
                token_hash,
            })
        })
    }
}

/// A session lookup's answer: the (user id, username) a token belongs to, if any.
pub type SessionLookup = Result<Option<(i64, String)>, ApiError>;

/// The live sessions of many token hashes in one query (`fastchat_find_sessions`): (user id, username) for each,
/// or `None` when it is unknown, expired or revoked.
/// Blocks: for the session lookup batcher's threads.
pub fn find_sessions(pool: &PgPool, hashes: Vec<Vec<u8>>) -> Vec<SessionLookup> {
    let count = hashes.len();
    let found = db::with_conn(pool, |conn| {
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = Bytea)]
            token_hash: Vec<u8>,
            #[diesel(sql_type = BigInt)]
            user_id: i64,
            #[diesel(sql_type = Text)]
            username: String,
        }
        function_call! {
            struct FindSessions = "fastchat_find_sessions"(hashes: Vec<Vec<u8>> as Array<Bytea>);
        }
        let hashes = hashes.clone();
        Ok(FindSessions { hashes }
            .load::<Found>(conn)?
            .into_iter()
            .map(|f| (f.token_hash, f.user_id, f.username))
            .collect::<Vec<_>>())
    });
    match found {
        Ok(rows) => {
            let by_hash: HashMap<Vec<u8>, (i64, String)> = rows
                .into_iter()
                .map(|(hash, id, name)| (hash, (id, name)))
                .collect();
            hashes.iter().map(|h| Ok(by_hash.get(h).cloned())).collect()
        }
        Err(e) => e.for_each_of(count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_are_sha256() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_LEN);
        assert_eq!(hash_a.len(), 32);
        assert_eq!(hash_a, hash_token(&a));
    }
}
