//! A user's inbox: paged (`GET /v1/inbox`) and live over server-sent events
//! (`GET /v1/events`). Both read the `inbox_events` table by cursor, so a stream that
//! resumes after seq n gets exactly the events after n, whichever server it lands on.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, Responder};
use actix_web_lab::sse::{self, Sse};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use fastchat_protocol::wire::{Event, EventBody, InboxPage};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::auth::AuthUser;
use crate::db::{self, PgPool};
use crate::error::ApiError;
use crate::hub::Subscription;
use crate::messages::{MessageRow, MESSAGE_COLUMNS};
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
    #[diesel(embed)]
    message: MessageRow,
}

/// Up to `limit` events of `user_id`'s inbox after `after`, in seq order.
async fn load_events(
    pool: &PgPool,
    user_id: i64,
    reader: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, ApiError> {
    let rows = db::run(pool, move |conn| {
        let sql = format!(
            "SELECT e.seq, {MESSAGE_COLUMNS}
               FROM inbox_events e
               JOIN messages m ON m.id = e.message_id
               JOIN message_keys k ON k.message_id = m.id AND k.user_id = e.user_id
               JOIN users su ON su.id = m.sender_id
               LEFT JOIN users ru ON ru.id = m.recipient_id
              WHERE e.user_id = $1 AND e.seq > $2
              ORDER BY e.seq
              LIMIT $3"
        );
        Ok(diesel::sql_query(sql)
            .bind::<BigInt, _>(user_id)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(limit)
            .load::<EventRow>(conn)?)
    })
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Event {
            seq: row.seq,
            body: EventBody::Message {
                message: row.message.into_message(reader),
            },
        })
        .collect())
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
