//! `/v1/blobs`: encrypted attachments (images). Only the uploader and the readers of a
//! message that lists a blob may download it; to anyone else it does not exist, so ids
//! cannot be probed.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::AuthUser;
use crate::state::AppState;
use crate::store::blobs;

const BLOB_CONTENT_TYPE: &str = "application/octet-stream";

/// `POST /v1/blobs`: the raw encrypted bytes as `application/octet-stream`. The body is
/// read chunk by chunk and refused as soon as it passes the limit; nothing is stored
/// unless all of it arrived.
pub async fn upload(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != BLOB_CONTENT_TYPE {
        return Err(ApiError::unsupported_media_type(BLOB_CONTENT_TYPE));
    }
    let max = state.config.blob_max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(ApiError::blob_too_large(max));
    }
    // The quotas, before the body is read: a user over them costs no more.
    let uploader = caller.user.user_id;
    let (uploads, bytes) = db::run(&state.pool, move |conn| {
        Ok(blobs::recent_uploads(conn, uploader)?)
    })
    .await?;
    let config = &state.config;
    let declared_bytes = declared.map_or(0, |len| i64::try_from(len).unwrap_or(i64::MAX));
    if uploads >= config.blob_uploads_per_hour {
        return Err(ApiError::rate_limited(
            "too many uploads in the last hour",
            3600,
        ));
    }
    if bytes.saturating_add(declared_bytes) > config.blob_bytes_per_day {
        return Err(ApiError::rate_limited(
            "too many bytes uploaded in the last day",
            3600,
        ));
    }
    let mut data = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(ApiError::upload_incomplete)?;
        if data.len() + chunk.len() > max {
            return Err(ApiError::blob_too_large(max));
        }
        data.extend_from_slice(&chunk);
    }
    if data.is_empty() {
        return Err(ApiError::empty_blob());
    }
    if bytes.saturating_add(i64::try_from(data.len()).unwrap_or(i64::MAX))
        > config.blob_bytes_per_day
    {
        return Err(ApiError::rate_limited(
            "too many bytes uploaded in the last day",
            3600,
        ));
    }
    let id = uuid::Uuid::new_v4();
    let size = db::run(&state.pool, move |conn| {
        blobs::insert(conn, id, uploader, &data)
    })
    .await?;
    Ok(HttpResponse::Created().json(json!({"id": id, "size": size})))
}

/// `GET /v1/blobs/{id}`
pub async fn download(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&path).map_err(|_| ApiError::blob_not_found())?;
    let reader = caller.user.user_id;
    let data = db::run(&state.pool, move |conn| {
        Ok(blobs::readable(conn, id, reader)?)
    })
    .await?
    .ok_or_else(ApiError::blob_not_found)?;
    Ok(HttpResponse::Ok()
        .content_type(BLOB_CONTENT_TYPE)
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .body(data))
}
