//! The one error type of the server, from the store up. A client's mistake is an
//! [`ApiError::Problem`] with a stable [`ErrorCode`] (its HTTP status comes with the
//! code); anything else is [`ApiError::Unavailable`] (503, worth retrying) or
//! [`ApiError::Internal`] (logged in full, answered with a plain 500).
//!
//! Every error is built by one constructor below, so each has one wording. How an
//! error becomes an HTTP answer is the handlers' business (`handlers::problem`).

use fastchat_protocol::problem::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{code}: {detail}")]
    Problem {
        code: ErrorCode,
        detail: String,
        retry_after_secs: Option<u64>,
    },
    /// 409 `recipients_mismatch`: the envelope's keys must cover exactly `members`.
    #[error("recipients_mismatch: {members:?}")]
    RecipientsMismatch { members: Vec<String> },
    /// 503: the cause is logged, the client hears "try again".
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for ApiError {
    /// A database that went away (a restart, a crash, a broken connection) is a 503 the
    /// client may retry, not a 500.
    fn from(e: diesel::result::Error) -> Self {
        if database_unavailable(&e) {
            ApiError::Unavailable(format!("the database: {e}"))
        } else {
            ApiError::Internal(e.into())
        }
    }
}

/// Whether `e` says the database (or the connection to it) is gone, rather than that a
/// query was wrong.
fn database_unavailable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::BrokenTransactionManager => true,
        Error::DatabaseError(_, info) => {
            let message = info.message();
            // libpq's words for a connection that died under a query, and PostgreSQL's
            // for a server on its way down or up.
            [
                "server closed the connection",
                "no connection to the server",
                "could not receive data from server",
                "could not send data to server",
                "terminating connection",
                "the database system is",
                "connection to server",
            ]
            .iter()
            .any(|words| message.contains(words))
        }
        _ => false,
    }
}

fn problem(code: ErrorCode, detail: impl Into<String>) -> ApiError {
    ApiError::Problem {
        code,
        detail: detail.into(),
        retry_after_secs: None,
    }
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Problem { code, .. } => *code,
            ApiError::RecipientsMismatch { .. } => ErrorCode::RecipientsMismatch,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// How long a client is told to wait before retrying a 503.
    pub const RETRY_UNAVAILABLE_SECS: u64 = 1;

    /// The answer to each of `count` batched requests when the batch as a whole failed
    /// (no connection, say): every request hears why, as 503.
    pub fn for_each_of<T>(&self, count: usize) -> Vec<Result<T, ApiError>> {
        (0..count).map(|_| Err(self.for_one_of_many())).collect()
    }

    /// What one of many batched requests hears when the batch as a whole failed.
    pub fn for_one_of_many(&self) -> ApiError {
        ApiError::Unavailable(self.to_string())
    }

    pub fn internal(what: impl std::fmt::Display) -> Self {
        ApiError::Internal(anyhow::anyhow!("{what}"))
    }

    // Requests that cannot be read.

    pub fn malformed_json(detail: impl Into<String>) -> Self {
        problem(ErrorCode::MalformedJson, detail)
    }

    pub fn invalid_query(detail: impl Into<String>) -> Self {
        problem(ErrorCode::InvalidQuery, detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> Self {
        problem(ErrorCode::InvalidPath, detail)
    }

    pub fn body_too_large() -> Self {
        problem(
            ErrorCode::BodyTooLarge,
            "the request body is larger than this server accepts",
        )
    }

    /// `expected` is the content type this endpoint reads.
    pub fn unsupported_media_type(expected: &str) -> Self {
        problem(
            ErrorCode::UnsupportedMediaType,
            format!("send the body as {expected}"),
        )
    }

    pub fn not_found() -> Self {
        problem(ErrorCode::NotFound, "no such endpoint")
    }

    pub fn method_not_allowed() -> Self {
        problem(
            ErrorCode::MethodNotAllowed,
            "this endpoint does not take that method",
        )
    }

    // Accounts and sessions.

    pub fn invalid_username() -> Self {
        problem(
            ErrorCode::InvalidUsername,
            "a username is 3 to 32 characters of a-z, 0-9 and _",
        )
    }

    pub fn invalid_password(min: usize, max: usize) -> Self {
        problem(
            ErrorCode::InvalidPassword,
            format!("a password is {min} to {max} bytes long, with no control characters"),
        )
    }

    pub fn invalid_public_key(cause: impl std::fmt::Display) -> Self {
        problem(ErrorCode::InvalidPublicKey, cause.to_string())
    }

    pub fn invalid_key_backup(max: usize) -> Self {
        problem(
            ErrorCode::InvalidKeyBackup,
            format!("a key backup is 1 to {max} bytes of standard padded base64"),
        )
    }

    pub fn username_taken() -> Self {
        problem(ErrorCode::UsernameTaken, "that username is taken")
    }

    /// Unknown, and names that cannot exist: the same answer.
    pub fn user_not_found() -> Self {
        problem(ErrorCode::UserNotFound, "no user has that name")
    }

    pub fn no_key_backup() -> Self {
        problem(ErrorCode::NoKeyBackup, "this account has no key backup")
    }

    pub fn invalid_credentials() -> Self {
        problem(ErrorCode::InvalidCredentials, "wrong username or password")
    }

    pub fn too_many_attempts(retry_after_secs: u64) -> Self {
        ApiError::Problem {
            code: ErrorCode::TooManyAttempts,
            detail: "too many failed logins for this username; try again later".into(),
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }

    /// `holder` is "session" or "user"; `retry_after_secs` is how soon a stream whose
    /// client left is noticed gone, freeing its place.
    pub fn too_many_streams(max: u64, holder: &str, retry_after_secs: u64) -> Self {
        ApiError::Problem {
            code: ErrorCode::TooManyStreams,
            detail: format!("a {holder} holds at most {max} event streams on a server"),
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }

    pub fn rate_limited(what: &str, retry_after_secs: u64) -> Self {
        ApiError::Problem {
            code: ErrorCode::RateLimited,
            detail: format!("{what}; try again later"),
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }

    pub fn missing_token() -> Self {
        problem(
            ErrorCode::MissingToken,
            "send Authorization: Bearer <token>",
        )
    }

    pub fn malformed_authorization() -> Self {
        problem(
            ErrorCode::InvalidToken,
            "the Authorization header must be: Bearer <token>",
        )
    }

    pub fn invalid_token() -> Self {
        problem(
            ErrorCode::InvalidToken,
            "the token is unknown, expired or revoked; log in again",
        )
    }

    // Messages and inboxes.

    pub fn invalid_client_id() -> Self {
        problem(ErrorCode::InvalidClientId, "client_id must be a UUID")
    }

    pub fn invalid_kind() -> Self {
        problem(ErrorCode::InvalidKind, "kind is text or image")
    }

    pub fn no_single_destination() -> Self {
        problem(
            ErrorCode::InvalidRecipient,
            "name exactly one of to and group",
        )
    }

    pub fn message_to_self() -> Self {
        problem(
            ErrorCode::InvalidRecipient,
            "you cannot send a message to yourself",
        )
    }

    pub fn invalid_envelope(detail: impl Into<String>) -> Self {
        problem(ErrorCode::InvalidEnvelope, detail)
    }

    pub fn message_too_large(max: usize) -> Self {
        problem(
            ErrorCode::MessageTooLarge,
            format!("the ciphertext is over {max} bytes"),
        )
    }

    pub fn too_many_attachments(max: usize) -> Self {
        problem(
            ErrorCode::InvalidAttachment,
            format!("at most {max} attachments"),
        )
    }

    pub fn attachment_not_yours() -> Self {
        problem(
            ErrorCode::InvalidAttachment,
            "attachments must name blobs you uploaded",
        )
    }

    pub fn client_id_reused() -> Self {
        problem(
            ErrorCode::ClientIdReused,
            "this client_id was used for another message",
        )
    }

    pub fn invalid_last_event_id() -> Self {
        problem(ErrorCode::InvalidLastEventId, "Last-Event-ID must be a seq")
    }

    // Groups.

    pub fn invalid_group_name() -> Self {
        problem(
            ErrorCode::InvalidGroupName,
            "a group name is 3 to 32 characters of a-z, 0-9 and _",
        )
    }

    pub fn group_too_large(max: usize) -> Self {
        problem(
            ErrorCode::GroupTooLarge,
            format!("a group has at most {max} members"),
        )
    }

    pub fn group_full(max: usize) -> Self {
        problem(
            ErrorCode::GroupFull,
            format!("a group has at most {max} members"),
        )
    }

    pub fn group_name_taken() -> Self {
        problem(ErrorCode::GroupNameTaken, "a group with that name exists")
    }

    /// To a non-member a group does not exist, so its name cannot be probed.
    pub fn group_not_found() -> Self {
        problem(
            ErrorCode::GroupNotFound,
            "no such group, or you are not a member",
        )
    }

    pub fn not_admin() -> Self {
        problem(ErrorCode::NotAdmin, "only the group's admins may do that")
    }

    pub fn member_not_found() -> Self {
        problem(
            ErrorCode::MemberNotFound,
            "that user is not a member of the group",
        )
    }

    pub fn already_member() -> Self {
        problem(ErrorCode::AlreadyMember, "that user is already a member")
    }

    pub fn already_admin() -> Self {
        problem(ErrorCode::AlreadyAdmin, "that member is already an admin")
    }

    // Membership statements.

    pub fn invalid_statement(detail: impl Into<String>) -> Self {
        problem(ErrorCode::InvalidStatement, detail)
    }

    pub fn stale_statement(epoch: u64) -> Self {
        problem(
            ErrorCode::StaleStatement,
            format!("the group's chain is at seq {epoch}; fetch it and sign the next statement"),
        )
    }

    pub fn key_mismatch(user: &str) -> Self {
        problem(
            ErrorCode::KeyMismatch,
            format!("the statement names a key for {user} that is not theirs"),
        )
    }

    pub fn invalid_contacts_backup(max: usize) -> Self {
        problem(
            ErrorCode::InvalidContactsBackup,
            format!("a contacts backup is 1 to {max} bytes of standard padded base64"),
        )
    }

    pub fn message_not_found() -> Self {
        problem(
            ErrorCode::MessageNotFound,
            "no message you received in this conversation has that id",
        )
    }

    pub fn no_contacts_backup() -> Self {
        problem(
            ErrorCode::NoContactsBackup,
            "this account has no contacts backup",
        )
    }

    // Blobs.

    pub fn blob_too_large(max: usize) -> Self {
        problem(
            ErrorCode::BlobTooLarge,
            format!("a blob is at most {max} bytes"),
        )
    }

    pub fn empty_blob() -> Self {
        problem(ErrorCode::EmptyBlob, "the blob is empty")
    }

    pub fn upload_incomplete(cause: impl std::fmt::Display) -> Self {
        problem(
            ErrorCode::UploadIncomplete,
            format!("the upload broke off: {cause}"),
        )
    }

    /// To anyone but its uploader and readers a blob does not exist.
    pub fn blob_not_found() -> Self {
        problem(
            ErrorCode::BlobNotFound,
            "no such blob, or it is not yours to read",
        )
    }

    // The server itself.

    /// A batcher's threads have stopped: the server is on its way out.
    pub fn shutting_down() -> Self {
        ApiError::Unavailable("the server is shutting down".into())
    }

    /// More work is queued than the server takes on: refused now rather than late.
    pub fn overloaded(what: &str) -> Self {
        ApiError::Unavailable(format!("too many {what} queued"))
    }

    pub fn no_database(cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable(format!("no database connection: {cause}"))
    }
}

impl From<crate::batch::Refused> for ApiError {
    fn from(refused: crate::batch::Refused) -> Self {
        match refused {
            crate::batch::Refused::Stopped => ApiError::shutting_down(),
            crate::batch::Refused::Full(what) => ApiError::overloaded(what),
        }
    }
}
