//! `/v1/conversations` and the read marks: how far the caller has read each
//! conversation, shared by every device they use. The server learns which conversation
//! was read up to which message, and when: metadata it has already.

use actix_web::web;
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::{ConversationList, ConversationSummary, MarkRead, ReadMark};

use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::AuthUser;
use crate::ids::MessageId;
use crate::state::AppState;
use crate::store::read_marks::{self, Conversation};
use crate::store::users;

/// `GET /v1/conversations`: newest activity first.
pub async fn list(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<web::Json<ConversationList>, ApiError> {
    let user = caller.user.user_id;
    let rows = db::run(&state.pool, move |conn| {
        Ok(read_marks::conversations(conn, user)?)
    })
    .await?;
    let conversations = rows
        .into_iter()
        .map(|row| {
            let name_error =
                |name: &str| ApiError::internal(format!("the database holds the name {name:?}"));
            Ok(ConversationSummary {
                with: row
                    .peer
                    .as_deref()
                    .map(|p| Username::parse(p).map_err(|_| name_error(p)))
                    .transpose()?,
                group: row
                    .group_name
                    .as_deref()
                    .map(|g| GroupName::parse(g).map_err(|_| name_error(g)))
                    .transpose()?,
                last_message_id: row.last_message_id,
                last_at: row.last_at,
                unread: row.unread,
                read_up_to: row.read_up_to,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(web::Json(ConversationList { conversations }))
}

fn up_to(body: &MarkRead) -> Result<MessageId, ApiError> {
    if body.up_to < 1 {
        return Err(ApiError::message_not_found());
    }
    Ok(MessageId(body.up_to))
}

/// `PUT /v1/conversations/{username}/read`
pub async fn mark_with(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    body: web::Json<MarkRead>,
) -> Result<web::Json<ReadMark>, ApiError> {
    let peer = Username::parse(&path).map_err(|_| ApiError::user_not_found())?;
    let message = up_to(&body)?;
    let user = caller.user.user_id;
    let marked = db::run(&state.pool, move |conn| {
        let peer = users::find_id(conn, &peer)?.ok_or_else(ApiError::user_not_found)?;
        Ok(read_marks::mark(
            conn,
            user,
            Conversation::With(peer),
            message,
        )?)
    })
    .await?
    .ok_or_else(ApiError::message_not_found)?;
    Ok(web::Json(ReadMark {
        read_up_to: marked.0,
    }))
}

/// `PUT /v1/groups/{name}/read`
pub async fn mark_group(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    body: web::Json<MarkRead>,
) -> Result<web::Json<ReadMark>, ApiError> {
    let group = GroupName::parse(&path).map_err(|_| ApiError::group_not_found())?;
    let message = up_to(&body)?;
    let user = caller.user.user_id;
    let marked = db::run(&state.pool, move |conn| {
        let group = read_marks::member_group(conn, group.as_str(), user)?
            .ok_or_else(ApiError::group_not_found)?;
        Ok(read_marks::mark(
            conn,
            user,
            Conversation::Group(group),
            message,
        )?)
    })
    .await?
    .ok_or_else(ApiError::message_not_found)?;
    Ok(web::Json(ReadMark {
        read_up_to: marked.0,
    }))
}
