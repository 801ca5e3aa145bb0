//! A user's inbox: paged (`GET /v1/inbox`) and live over server-sent events
//! (`GET /v1/events`). Both read the `inbox_events` table by cursor, so a stream that
//! resumes after seq n gets exactly the events after n, whichever server it lands on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, Responder};
use actix_web_lab::sse::{self, Sse};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Jsonb, Nullable};
use fastchat_protocol::wire::{Event, EventBody, InboxPage};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::auth::AuthUser;
use crate::db::{self, PgPool};
use crate::error::ApiError;
use crate::hub::Subscription;
use crate::messages::{load_for_reader, MessageRow};
use crate::schema::inboxes;
use crate::startup::AppState;

const INBOX_DEFAULT_LIMIT: i64 = 100;
const INBOX_MAX_LIMIT: i64 = 1000;
/// Events read per query by a stream that is catching up.
const STREAM_PAGE: i64 = 500;
/// What clients are told to wait before reconnecting.
const RETRY_HINT: Duration = Duration::from_secs(2);

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    message_id: Option<i64>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    group_event: Option<serde_json::Value>,
}

/// Up to `limit` events of `user_id`'s inbox after `after`, in seq order.
async fn load_events(
    pool: &PgPool,
    user_id: i64,
    reader: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, ApiError> {
    let (rows, mut messages) = db::run(pool, move |conn| {
        let rows: Vec<EventRow> = diesel::sql_query(
            "SELECT seq, message_id, group_event FROM inbox_events
              WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(limit)
        .load(conn)?;
        let ids: Vec<i64> = rows.iter().filter_map(|r| r.message_id).collect();
        let messages: HashMap<i64, MessageRow> = load_for_reader(conn, user_id, &ids)?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        Ok((rows, messages))
    })
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let body = match (row.message_id, row.group_event) {
            (Some(id), _) => match messages.remove(&id) {
                Some(message) => EventBody::Message {
                    message: Box::new(message.into_message(reader)),
                },
                None => {
                    return Err(ApiError::Internal(anyhow::anyhow!(
                        "inbox event {} names message {id}, which has no key for its reader",
                        row.seq
                    )))
                }
            },
            (None, Some(event)) => serde_json::from_value(event)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("inbox event {}: {e}", row.seq)))?,
            (None, None) => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "inbox event {} is empty",
                    row.seq
                )))
            }
        };
        events.push(Event { seq: row.seq, body });
    }
    Ok(events)
}

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/inbox?after=&limit=`
pub async fn inbox(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<InboxQuery>,
) -> Result<web::Json<InboxPage>, ApiError> {
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(INBOX_DEFAULT_LIMIT);
    if after < 0 || !(1..=INBOX_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("after is 0 or more; limit is 1 to {INBOX_MAX_LIMIT}"),
        ));
    }
    let events = load_events(&state.pool, caller.user_id, &caller.username, after, limit).await?;
    let next = events.last().map_or(after, |e| e.seq);
    Ok(web::Json(InboxPage { events, next }))
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    after: Option<i64>,
}

/// `GET /v1/events`: resumes after `Last-Event-ID` (which wins, as browsers resend
/// it on the same URL), else after `?after=`, else from now on.
pub async fn stream(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<impl Responder, ApiError> {
    let last_event_id = match req.headers().get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|seq| *seq >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a seq")
                })?,
        ),
        None => None,
    };
    if query.after.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request("invalid_query", "after is 0 or more"));
    }
    // Subscribe before reading the cursor, so no wake-up falls between the two.
    let subscription = state.hub.subscribe(caller.user_id);
    let cursor = match last_event_id.or(query.after) {
        Some(seq) => seq,
        None => {
            let user_id = caller.user_id;
            db::run(&state.pool, move |conn| {
                Ok(inboxes::table
                    .find(user_id)
                    .select(inboxes::last_seq)
                    .first::<i64>(conn)?)
            })
            .await?
        }
    };
    let keep_alive = Duration::from_secs(state.config.sse_keepalive_secs);
    let (tx, rx) = mpsc::channel(64);
    actix_web::rt::spawn(pump(state.into_inner(), caller, cursor, tx, subscription));
    Ok(Sse::from_infallible_receiver(rx)
        .with_keep_alive(keep_alive)
        .with_retry_duration(RETRY_HINT))
}

/// Feeds one stream: whatever the inbox holds after the cursor, then waits for a
/// wake-up (or the client leaving) and reads again.
async fn pump(
    state: Arc<AppState>,
    caller: AuthUser,
    mut cursor: i64,
    tx: mpsc::Sender<sse::Event>,
    mut subscription: Subscription,
) {
    state.metrics.streams_open.inc();
    'stream: loop {
        subscription.mark_seen();
        let events = match load_events(
            &state.pool,
            caller.user_id,
            &caller.username,
            cursor,
            STREAM_PAGE,
        )
        .await
        {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "reading an inbox for a stream");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = tx.closed() => break,
                }
            }
        };
        let caught_up = i64::try_from(events.len()).is_ok_and(|n| n < STREAM_PAGE);
        for event in events {
            let seq = event.seq;
            let data = match sse::Data::new_json(&event) {
                Ok(data) => data.event(event.body.type_name()).id(seq.to_string()),
                Err(e) => {
                    tracing::error!(error = %e, seq, "encoding an event");
                    continue;
                }
            };
            if tx.send(sse::Event::Data(data)).await.is_err() {
                break 'stream;
            }
            cursor = seq;
        }
        if caught_up {
            tokio::select! {
                open = subscription.woken() => if !open { break },
                _ = tx.closed() => break,
            }
        }
    }
    state.metrics.streams_open.dec();
}
