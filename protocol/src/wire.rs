//! The JSON bodies of FastChat's public API (v1), as `openapi.yaml` documents them.
//! Requests are deserialized leniently (plain strings) so that the server, not serde,
//! decides which field is wrong and answers with that field's problem code.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/users`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    /// What the client sends as its password: for the `fastchat` CLI, the hex `auth_key`.
    pub password: String,
    /// The user's RSA public key, SubjectPublicKeyInfo PEM.
    pub public_key: String,
    /// The private key encrypted by the client; opaque to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_backup: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCreated {
    pub username: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/sessions`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionCreated {
    pub token: String,
    pub username: String,
    pub expires_at: DateTime<Utc>,
}

/// `GET /v1/users/{username}`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserProfile {
    pub username: String,
    pub public_key: String,
    pub online: bool,
}

/// One row of `GET /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSummary {
    pub username: String,
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserSummary>,
}

/// `GET /v1/me/key-backup`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyBackup {
    pub key_backup: String,
}

/// An RFC 9457 problem answer (`application/problem+json`). `code` is the stable,
/// machine-readable member clients branch on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
