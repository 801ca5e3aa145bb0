//! A user's inbox: paged (`GET /v1/inbox`) and live over server-sent events
//! (`GET /v1/events`). Both read the inbox by cursor, so a stream that resumes after seq
//! n gets exactly the events after n, whichever server it lands on.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::{web, HttpRequest, HttpResponse, Responder};
use actix_web_lab::sse::Sse;
use fastchat_protocol::wire::InboxPage;
use serde::Deserialize;

use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::AuthUser;
use crate::ids::Seq;
use crate::live::feed::Feed;
use crate::live::hub::StreamSession;
use crate::live::stalls::{ConnectionFd, WatchedBody};
use crate::state::AppState;
use crate::store::inbox::{self, InboxRead};

const INBOX_DEFAULT_LIMIT: i64 = 100;
const INBOX_MAX_LIMIT: i64 = 1000;
/// What clients are told to wait before reconnecting.
const RETRY_HINT: Duration = Duration::from_secs(2);

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
        return Err(ApiError::invalid_query(format!(
            "after is 0 or more; limit is 1 to {INBOX_MAX_LIMIT}"
        )));
    }
    let events = state
        .inbox_reads
        .call(InboxRead {
            user_id: caller.user.user_id,
            reader: caller.user.username,
            after: Seq(after),
            limit,
        })
        .await??;
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
) -> Result<HttpResponse<WatchedBody<impl MessageBody>>, ApiError> {
    let last_event_id = match req.headers().get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|seq| *seq >= 0)
                .ok_or_else(ApiError::invalid_last_event_id)?,
        ),
        None => None,
    };
    if query.after.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid_query("after is 0 or more"));
    }
    let at_most = |max: u64| usize::try_from(max).unwrap_or(usize::MAX);
    let (per_session, per_user) = (
        state.config.streams_per_session,
        state.config.streams_per_user,
    );
    // A stream whose client left is noticed at its next keep-alive, which frees its place.
    let retry = state.config.sse_keepalive_secs;
    if state.hub.session_streams(&caller.token_hash) >= at_most(per_session) {
        return Err(ApiError::too_many_streams(per_session, "session", retry));
    }
    if state.hub.user_streams(caller.user.user_id) >= at_most(per_user) {
        return Err(ApiError::too_many_streams(per_user, "user", retry));
    }
    // Subscribe before reading the cursor, so no wake-up falls between the two.
    let session = StreamSession {
        token_hash: caller.token_hash.clone(),
        expires_at: caller.user.expires_at,
    };
    let subscription = state.hub.subscribe(caller.user.user_id, session);
    let cursor = match last_event_id.or(query.after) {
        Some(seq) => Seq(seq),
        None => {
            let user = caller.user.user_id;
            db::run(&state.pool, move |conn| Ok(inbox::last_seq(conn, user)?)).await?
        }
    };
    let keep_alive = Duration::from_secs(state.config.sse_keepalive_secs);
    let feed = Feed::new(
        state.inbox_reads.clone(),
        Arc::clone(&state.metrics),
        caller.user,
        cursor,
        subscription,
    );
    let sse = Sse::from_infallible_stream(feed.into_stream())
        .with_keep_alive(keep_alive)
        .with_retry_duration(RETRY_HINT);
    let connection = req.conn_data::<ConnectionFd>().copied();
    Ok(sse
        .respond_to(&req)
        .map_body(|_, body| state.stalls.watch(connection, body)))
}
