//! Every path of the api, spelled once. Tests name what they call through
//! [`TestUser`](crate::user::TestUser)'s helpers, or these where they build a request
//! by hand.

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";

pub const USERS: &str = "/v1/users";
pub const SESSIONS: &str = "/v1/sessions";
pub const CURRENT_SESSION: &str = "/v1/sessions/current";
pub const KEY_BACKUP: &str = "/v1/me/key-backup";
pub const MESSAGES: &str = "/v1/messages";
pub const INBOX: &str = "/v1/inbox";
pub const EVENTS: &str = "/v1/events";
pub const GROUPS: &str = "/v1/groups";
pub const BLOBS: &str = "/v1/blobs";
pub const CONVERSATIONS: &str = "/v1/conversations";

/// `/v1/usernames/{username}`
pub fn username(username: &str) -> String {
    format!("/v1/usernames/{username}")
}

/// `/v1/conversations/{username}/read`
pub fn conversation_read(username: &str) -> String {
    format!("{CONVERSATIONS}/{username}/read")
}

/// `/v1/groups/{name}/read`
pub fn group_read(name: &str) -> String {
    format!("{GROUPS}/{name}/read")
}

/// `/v1/users/{username}`
pub fn user(username: &str) -> String {
    format!("{USERS}/{username}")
}

/// `/v1/conversations/{username}/messages`
pub fn conversation(username: &str) -> String {
    format!("/v1/conversations/{username}/messages")
}

/// `/v1/groups/{name}`
pub fn group(name: &str) -> String {
    format!("{GROUPS}/{name}")
}

/// `/v1/groups/{name}/messages`
pub fn group_messages(name: &str) -> String {
    format!("{GROUPS}/{name}/messages")
}

/// `/v1/groups/{name}/members`
pub fn group_members(name: &str) -> String {
    format!("{GROUPS}/{name}/members")
}

/// `/v1/groups/{name}/members/{username}`
pub fn group_member(name: &str, username: &str) -> String {
    format!("{GROUPS}/{name}/members/{username}")
}

/// `/v1/groups/{name}/admins`
pub fn group_admins(name: &str) -> String {
    format!("{GROUPS}/{name}/admins")
}

/// `/v1/blobs/{id}`
pub fn blob(id: &str) -> String {
    format!("{BLOBS}/{id}")
}

/// `path?query`, or `path` alone when `query` is empty.
pub fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}
