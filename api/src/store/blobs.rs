//! Blobs: encrypted attachments (images), stored in PostgreSQL. Only the uploader and
//! the readers of a message that lists a blob may read it.

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Uuid as SqlUuid};

use crate::db::PgConn;
use crate::error::ApiError;
use crate::ids::{MessageId, UserId};
use crate::schema::{blobs, message_attachments};

/// At most this many attachments per message.
pub const MAX_ATTACHMENTS: usize = 10;

/// A message's attachments as the sender listed them: at most [`MAX_ATTACHMENTS`] blob
/// ids, parsed, each once. Whose blobs they are is checked when the message is stored.
pub fn parse_attachments(listed: &[String]) -> Result<Vec<uuid::Uuid>, ApiError> {
    if listed.len() > MAX_ATTACHMENTS {
        return Err(ApiError::too_many_attachments(MAX_ATTACHMENTS));
    }
    let mut ids = Vec::with_capacity(listed.len());
    for raw in listed {
        let id = uuid::Uuid::parse_str(raw).map_err(|_| ApiError::attachment_not_yours())?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

pub fn insert(
    conn: &mut PgConn,
    id: uuid::Uuid,
    uploader: UserId,
    data: &[u8],
) -> Result<i64, ApiError> {
    let size =
        i64::try_from(data.len()).map_err(|_| ApiError::internal("a blob over i64::MAX bytes"))?;
    diesel::insert_into(blobs::table)
        .values((
            blobs::id.eq(id),
            blobs::uploader_id.eq(uploader),
            blobs::size.eq(size),
            blobs::data.eq(data),
        ))
        .execute(conn)?;
    Ok(size)
}

/// The blob's bytes, if `reader` uploaded it or holds a key to a message that lists it.
pub fn readable(conn: &mut PgConn, id: uuid::Uuid, reader: UserId) -> QueryResult<Option<Vec<u8>>> {
    #[derive(QueryableByName)]
    struct BlobData {
        #[diesel(sql_type = Bytea)]
        data: Vec<u8>,
    }
    diesel::sql_query(
        "SELECT b.data FROM blobs b
          WHERE b.id = $1
            AND (b.uploader_id = $2 OR EXISTS (
                  SELECT 1 FROM message_attachments a
                    JOIN message_keys k ON k.message_id = a.message_id AND k.user_id = $2
                   WHERE a.blob_id = b.id))",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(reader)
    .get_result::<BlobData>(conn)
    .optional()
    .map(|found| found.map(|b| b.data))
}

/// Whether `uploader` uploaded every one of `ids` (distinct).
pub fn all_uploaded_by(
    conn: &mut PgConn,
    uploader: UserId,
    ids: &[uuid::Uuid],
) -> QueryResult<bool> {
    if ids.is_empty() {
        return Ok(true);
    }
    let owned: i64 = blobs::table
        .filter(blobs::id.eq_any(ids))
        .filter(blobs::uploader_id.eq(uploader))
        .count()
        .get_result(conn)?;
    Ok(usize::try_from(owned).ok() == Some(ids.len()))
}

/// What `uploader` uploaded lately: uploads in the last hour, bytes in the last day.
pub fn recent_uploads(conn: &mut PgConn, uploader: UserId) -> QueryResult<(i64, i64)> {
    #[derive(QueryableByName)]
    struct Recent {
        #[diesel(sql_type = BigInt)]
        uploads: i64,
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let recent: Recent = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS uploads,
                coalesce(sum(size), 0)::BIGINT AS bytes
           FROM blobs
          WHERE uploader_id = $1 AND created_at > now() - interval '1 day'",
    )
    .bind::<BigInt, _>(uploader)
    .get_result(conn)?;
    Ok((recent.uploads, recent.bytes))
}

/// Records that `message` lists these blobs.
pub fn attach(conn: &mut PgConn, message: MessageId, ids: &[uuid::Uuid]) -> QueryResult<()> {
    let rows: Vec<_> = ids
        .iter()
        .map(|id| {
            (
                message_attachments::message_id.eq(message),
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
