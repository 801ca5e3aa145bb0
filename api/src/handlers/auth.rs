//! Bearer tokens. A token is 256 random bits, base64url; the database keeps only its
//! SHA-256, so a leaked table holds no usable token. Looking the hash up by equality
//! leaks nothing useful through timing: an attacker controls the token, not its hash.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::sessions::SessionUser;

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
    pub user: SessionUser,
    pub token_hash: Vec<u8>,
}

fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(ApiError::missing_token)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::malformed_authorization)?;
    let well_formed = token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(ApiError::invalid_token());
    }
    Ok(token.to_owned())
}

/// Finds the session `req`'s bearer token names.
async fn resolve(
    token: Result<String, ApiError>,
    state: Option<web::Data<AppState>>,
) -> Result<AuthUser, ApiError> {
    let token = token?;
    let state = state.ok_or_else(|| ApiError::internal("application state is not registered"))?;
    let token_hash = hash_token(&token);
    let user = state
        .session_lookups
        .call(token_hash.clone())
        .await??
        .ok_or_else(ApiError::invalid_token)?;
    Ok(AuthUser { user, token_hash })
}

/// The session a request's token named, found before the handler ran.
struct Resolved(Result<AuthUser, ApiError>);

/// Middleware: finds the session of every request that carries a bearer token before
/// any extractor runs, so that a bad token is answered 401 whatever the body (the body
/// extractors would otherwise answer first).
pub async fn resolve_session(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        let token = bearer_token(req.request());
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let resolved = resolve(token, state).await;
        req.extensions_mut().insert(Resolved(resolved));
    }
    next.call(req).await
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        if let Some(Resolved(resolved)) = req.extensions_mut().remove::<Resolved>() {
            return Box::pin(std::future::ready(resolved));
        }
        Box::pin(resolve(
            bearer_token(req),
            req.app_data::<web::Data<AppState>>().cloned(),
        ))
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
