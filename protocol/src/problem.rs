//! Errors as the API answers them: RFC 9457 problem documents whose `code` is one of
//! [`ErrorCode`]. The server answers with these codes and the CLI branches on them, so
//! both name them through this one enum; `openapi.yaml` lists every one (a test keeps
//! the two equal).

use serde::{Deserialize, Serialize};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem answer (`application/problem+json`). `code` is the stable,
/// machine-readable member clients branch on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// With `recipients_mismatch`: who the envelope's keys must cover, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal => $status:literal, )+) => {
        /// Every `code` the API answers with, and the HTTP status that goes with it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $( $(#[$doc])* #[serde(rename = $code)] $variant, )+
            /// A code this build does not know (a newer server's): read, never sent.
            #[serde(other)]
            Unknown,
        }

        impl ErrorCode {
            /// Every code a server sends (not [`ErrorCode::Unknown`]).
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )+ ];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $code, )+
                    ErrorCode::Unknown => "unknown",
                }
            }

            /// The HTTP status answered with this code.
            pub fn status(self) -> u16 {
                match self {
                    $( ErrorCode::$variant => $status, )+
                    ErrorCode::Unknown => 500,
                }
            }
        }
    };
}

error_codes! {
    /// A JSON body that does not parse, or lacks or mistypes a field.
    MalformedJson = "malformed_json" => 400,
    InvalidQuery = "invalid_query" => 400,
    InvalidPath = "invalid_path" => 400,
    InvalidUsername = "invalid_username" => 400,
    InvalidPassword = "invalid_password" => 400,
    InvalidPublicKey = "invalid_public_key" => 400,
    InvalidKeyBackup = "invalid_key_backup" => 400,
    InvalidGroupName = "invalid_group_name" => 400,
    GroupTooLarge = "group_too_large" => 400,
    InvalidClientId = "invalid_client_id" => 400,
    InvalidKind = "invalid_kind" => 400,
    InvalidRecipient = "invalid_recipient" => 400,
    InvalidEnvelope = "invalid_envelope" => 400,
    InvalidAttachment = "invalid_attachment" => 400,
    InvalidLastEventId = "invalid_last_event_id" => 400,
    /// A membership statement that does not parse, is not the caller's, or does not say
    /// what the request does.
    InvalidStatement = "invalid_statement" => 400,
    InvalidContactsBackup = "invalid_contacts_backup" => 400,
    EmptyBlob = "empty_blob" => 400,
    UploadIncomplete = "upload_incomplete" => 400,
    MissingToken = "missing_token" => 401,
    InvalidToken = "invalid_token" => 401,
    InvalidCredentials = "invalid_credentials" => 401,
    NotAdmin = "not_admin" => 403,
    /// No such endpoint.
    NotFound = "not_found" => 404,
    UserNotFound = "user_not_found" => 404,
    GroupNotFound = "group_not_found" => 404,
    MemberNotFound = "member_not_found" => 404,
    BlobNotFound = "blob_not_found" => 404,
    NoKeyBackup = "no_key_backup" => 404,
    NoContactsBackup = "no_contacts_backup" => 404,
    /// A read mark names a message that is not one the caller received in that
    /// conversation.
    MessageNotFound = "message_not_found" => 404,
    MethodNotAllowed = "method_not_allowed" => 405,
    UsernameTaken = "username_taken" => 409,
    GroupNameTaken = "group_name_taken" => 409,
    AlreadyMember = "already_member" => 409,
    AlreadyAdmin = "already_admin" => 409,
    GroupFull = "group_full" => 409,
    ClientIdReused = "client_id_reused" => 409,
    /// The statement does not follow the group's last one: fetch the chain and retry.
    StaleStatement = "stale_statement" => 409,
    /// The statement names a key for a member that is not the one the server has.
    KeyMismatch = "key_mismatch" => 409,
    /// The envelope's keys do not cover exactly the conversation; `members` says who.
    RecipientsMismatch = "recipients_mismatch" => 409,
    BodyTooLarge = "body_too_large" => 413,
    MessageTooLarge = "message_too_large" => 413,
    BlobTooLarge = "blob_too_large" => 413,
    UnsupportedMediaType = "unsupported_media_type" => 415,
    TooManyAttempts = "too_many_attempts" => 429,
    /// This session holds as many event streams on the server as it may.
    TooManyStreams = "too_many_streams" => 429,
    /// Over a per-user quota (blob bytes, uploads) or a per-address rate.
    RateLimited = "rate_limited" => 429,
    InternalError = "internal_error" => 500,
    Unavailable = "unavailable" => 503,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_on_the_wire_and_unknown_ones_still_parse() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, *code);
            assert!((400..600).contains(&code.status()));
        }
        let newer: ErrorCode = serde_json::from_str("\"a_code_from_the_future\"").expect("parses");
        assert_eq!(newer, ErrorCode::Unknown);
    }

    #[test]
    fn no_two_codes_share_a_name() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
