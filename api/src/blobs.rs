//! Blobs: encrypted attachments (images), stored in PostgreSQL. Only the uploader and
//! the readers of a message that lists a blob may download it; to anyone else it does
//! not exist, so ids cannot be probed.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Uuid as SqlUuid};
use futures_util::StreamExt;
use serde_json::json;

use crate::auth::AuthUser;
use crate::db::{self, PgConn};
use crate::error::ApiError;
use crate::schema::{blobs, message_attachments};
use crate::startup::AppState;

/// At most this many attachments per message.
pub const MAX_ATTACHMENTS: usize = 10;

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "blob_too_large",
        format!("a blob is at most {max} bytes"),
    )
}

fn blob_not_found() -> ApiError {
    ApiError::not_found("blob_not_found", "no such blob, or it is not yours to read")
}

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
    if content_type != "application/octet-stream" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the blob as application/octet-stream",
        ));
    }
    let max = state.config.blob_max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    let mut data = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("upload_incomplete", format!("the upload broke off: {e}"))
        })?;
        if data.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        data.extend_from_slice(&chunk);
    }
    if data.is_empty() {
        return Err(ApiError::bad_request("empty_blob", "the blob is empty"));
    }
    let id = uuid::Uuid::new_v4();
    let size = i64::try_from(data.len()).map_err(|_| too_large(max))?;
    db::run(&state.pool, move |conn| {
        diesel::insert_into(blobs::table)
            .values((
                blobs::id.eq(id),
                blobs::uploader_id.eq(caller.user_id),
                blobs::size.eq(size),
                blobs::data.eq(data),
            ))
            .execute(conn)?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Created().json(json!({"id": id, "size": size})))
}

#[derive(QueryableByName)]
struct BlobData {
    #[diesel(sql_type = Bytea)]
    data: Vec<u8>,
}

/// `GET /v1/blobs/{id}`
pub async fn download(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&path.into_inner()).map_err(|_| blob_not_found())?;
    let found = db::run(&state.pool, move |conn| {
        Ok(diesel::sql_query(
            "SELECT b.data FROM blobs b
              WHERE b.id = $1
                AND (b.uploader_id = $2 OR EXISTS (
                      SELECT 1 FROM message_attachments a
                        JOIN message_keys k ON k.message_id = a.message_id AND k.user_id = $2
                       WHERE a.blob_id = b.id))",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<BigInt, _>(caller.user_id)
        .get_result::<BlobData>(conn)
        .optional()?)
    })
    .await?;
    let blob = found.ok_or_else(blob_not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .body(blob.data))
}

/// Checks a message's attachments: blob ids the sender uploaded, at most
/// [`MAX_ATTACHMENTS`]. Returns them parsed.
pub fn check_attachments(
    conn: &mut PgConn,
    sender: i64,
    attachments: &[String],
) -> Result<Vec<uuid::Uuid>, ApiError> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::bad_request(
            "invalid_attachment",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    let invalid = || {
        ApiError::bad_request(
            "invalid_attachment",
            "attachments must name blobs you uploaded",
        )
    };
    let mut ids = Vec::with_capacity(attachments.len());
    for raw in attachments {
        let id = uuid::Uuid::parse_str(raw).map_err(|_| invalid())?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Ok(ids);
    }
    let owned: i64 = blobs::table
        .filter(blobs::id.eq_any(&ids))
        .filter(blobs::uploader_id.eq(sender))
        .count()
        .get_result(conn)?;
    if usize::try_from(owned).ok() != Some(ids.len()) {
        return Err(invalid());
    }
    Ok(ids)
}

/// Records that `message_id` lists these blobs.
pub fn attach(conn: &mut PgConn, message_id: i64, ids: &[uuid::Uuid]) -> QueryResult<()> {
    let rows: Vec<_> = ids
        .iter()
        .map(|id| {
            (
                message_attachments::message_id.eq(message_id),
                message_attachments::blob_id.eq(id),
            )
        })
        .collect();
    diesel::insert_into(message_attachments::table)
        .values(&rows)
        .execute(conn)
        .map(drop)
}

/// Deletes blobs older than `ttl_secs` that no message lists.
pub fn purge_unreferenced(conn: &mut PgConn, ttl_secs: i64) -> QueryResult<usize> {
    let cutoff = Utc::now() - chrono::Duration::seconds(ttl_secs);
    diesel::delete(
        blobs::table
            .filter(blobs::created_at.lt(cutoff))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                message_attachments::table.filter(message_attachments::blob_id.eq(blobs::id)),
            ))),
    )
    .execute(conn)
}
