//! `/v1/messages` and one-to-one history. The server checks an envelope's shape and who
//! it is addressed to; it can read none of it.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use fastchat_protocol::envelope::{self, Envelope, Kind};
use fastchat_protocol::group::{parse_canonical_time, StatementHash};
use fastchat_protocol::names::{is_valid_name, GroupName, Username};
use fastchat_protocol::wire::{MessagePage, SendMessage};
use serde::Deserialize;

use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::AuthUser;
use crate::ids::MessageId;
use crate::state::AppState;
use crate::store::blobs::parse_attachments;
use crate::store::messages::{self, DirectSend, GroupSend, Outgoing, PageRequest};

/// RSA signatures and wrapped keys: 2048 to 8192-bit keys.
const RSA_BLOCK_BYTES: std::ops::RangeInclusive<usize> = 256..=1024;
const HISTORY_DEFAULT_LIMIT: i64 = 50;
const HISTORY_MAX_LIMIT: i64 = 500;

fn decoded_len(field: &str, value: &str) -> Result<usize, ApiError> {
    BASE64
        .decode(value)
        .map(|bytes| bytes.len())
        .map_err(|_| ApiError::invalid_envelope(format!("{field} is not standard padded base64")))
}

/// Checks everything about an envelope the server can check without reading it.
fn check_envelope(env: &Envelope, to_group: bool, max_ciphertext: usize) -> Result<(), ApiError> {
    if env.v != envelope::VERSION || env.alg != envelope::ALGORITHM {
        return Err(ApiError::invalid_envelope(format!(
            "only v {} with alg {} is accepted",
            envelope::VERSION,
            envelope::ALGORITHM
        )));
    }
    if env
        .sent_at
        .as_deref()
        .and_then(parse_canonical_time)
        .is_none()
    {
        return Err(ApiError::invalid_envelope(
            "sent_at must be the sender's time, as RFC 3339 UTC with milliseconds",
        ));
    }
    match (&env.group, to_group) {
        // An epoch is a seq of the group's chain: 0 to i64::MAX, as every seq.
        (Some(binding), true)
            if StatementHash::parse(&binding.head).is_some()
                && i64::try_from(binding.epoch).is_ok() => {}
        (None, false) => {}
        (_, true) => {
            return Err(ApiError::invalid_envelope(
                "a group message names the group's id, epoch and head",
            ))
        }
        (Some(_), false) => {
            return Err(ApiError::invalid_envelope(
                "a one-to-one message names no group state",
            ))
        }
    }
    // Refuse an oversized ciphertext before decoding it.
    if env.ciphertext.len() > max_ciphertext.div_ceil(3) * 4
        || decoded_len("ciphertext", &env.ciphertext)? > max_ciphertext
    {
        return Err(ApiError::message_too_large(max_ciphertext));
    }
    if decoded_len("nonce", &env.nonce)? != envelope::NONCE_LEN {
        return Err(ApiError::invalid_envelope("nonce must be 12 bytes"));
    }
    if !RSA_BLOCK_BYTES.contains(&decoded_len("sig", &env.sig)?) {
        return Err(ApiError::invalid_envelope("sig is not an RSA signature"));
    }
    for (user, wrapped) in &env.keys {
        if !is_valid_name(user) {
            return Err(ApiError::invalid_envelope(format!(
                "keys names {user:?}, not a user"
            )));
        }
        if !RSA_BLOCK_BYTES.contains(&decoded_len("a wrapped key", wrapped)?) {
            return Err(ApiError::invalid_envelope(format!(
                "the key for {user} is not RSA-wrapped"
            )));
        }
    }
    Ok(())
}

/// Where a message goes, as the request names it.
enum Destination {
    User(Username),
    Group(GroupName),
}

/// `POST /v1/messages`
pub async fn send(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: web::Json<SendMessage>,
) -> Result<HttpResponse, ApiError> {
    let SendMessage {
        to,
        group,
        client_id,
        kind,
        envelope,
        attachments,
    } = body.into_inner();
    let client_id = uuid::Uuid::parse_str(&client_id).map_err(|_| ApiError::invalid_client_id())?;
    let kind = Kind::parse(&kind).ok_or_else(ApiError::invalid_kind)?;
    // A name that cannot exist is as unknown as one that does not.
    let destination = match (to, group) {
        (Some(to), None) if to == caller.user.username => return Err(ApiError::message_to_self()),
        (Some(to), None) => {
            Destination::User(Username::parse(&to).map_err(|_| ApiError::user_not_found())?)
        }
        (None, Some(group)) => {
            Destination::Group(GroupName::parse(&group).map_err(|_| ApiError::group_not_found())?)
        }
        _ => return Err(ApiError::no_single_destination()),
    };
    check_envelope(
        &envelope,
        matches!(destination, Destination::Group(_)),
        state.config.ciphertext_max_bytes,
    )?;
    let message = Outgoing {
        sender: caller.user,
        client_id,
        kind,
        envelope,
        attachments: parse_attachments(&attachments)?,
    };
    let sent = match destination {
        Destination::User(recipient) => {
            state
                .direct_sends
                .call(DirectSend { message, recipient })
                .await??
        }
        Destination::Group(group) => {
            state
                .group_sends
                .call(GroupSend { message, group })
                .await??
        }
    };
    Ok(HttpResponse::Created().json(sent))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

impl HistoryQuery {
    /// The page asked for, checked, with its defaults.
    pub fn page(self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
        if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_query(format!(
                "limit is 1 to {HISTORY_MAX_LIMIT}"
            )));
        }
        Ok(PageRequest {
            before: MessageId(self.before.unwrap_or(i64::MAX)),
            limit,
        })
    }
}

/// `GET /v1/conversations/{username}/messages`: both directions, newest first.
pub async fn conversation(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<MessagePage>, ApiError> {
    let other = Username::parse(&path).map_err(|_| ApiError::user_not_found())?;
    let page = query.into_inner().page()?;
    let messages = db::run(&state.pool, move |conn| {
        messages::conversation_page(conn, &caller.user, &other, page)
    })
    .await?;
    Ok(web::Json(messages))
}
