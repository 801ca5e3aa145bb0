//! A typed client for FastChat's HTTP API. Every failure becomes a [`CliError`] that says
//! what happened in the user's terms.

use std::time::Duration;

use fastchat_protocol::group::SignedStatement;
use fastchat_protocol::problem::{ErrorCode, Problem};
use fastchat_protocol::wire::{
    Chain, ContactsBackup, ConversationSummary, CreateGroup, CreateSession, CreateUser, Event,
    Group, GroupUser, KeyBackup, MarkRead, Message, MessageSent, ReadMark, RemoveMember,
    SendMessage, SessionCreated, UserCreated, UserProfile, UserSummary, UsernameAvailability,
};
use serde::Deserialize;

/// `POST /v1/blobs` answers this.
#[derive(Debug, Deserialize)]
pub struct BlobCreated {
    pub id: String,
}

/// An item of a list the server sent that this client could not decode (a name that
/// is not a name, say): dropped, and said so. `seq` is its place in the inbox, if even
/// that could be read.
#[derive(Debug)]
pub struct Dropped {
    pub seq: Option<i64>,
    pub reason: String,
}

/// A list the server sent, each item decoded on its own, so that a bad one is dropped
/// and the rest kept.
pub struct Decoded<T> {
    pub items: Vec<T>,
    pub dropped: Vec<Dropped>,
}

impl<T: DeserializeOwned> Decoded<T> {
    pub fn of(values: Vec<serde_json::Value>) -> Self {
        let mut decoded = Decoded {
            items: Vec::with_capacity(values.len()),
            dropped: Vec::new(),
        };
        for value in values {
            let seq = value.get("seq").and_then(serde_json::Value::as_i64);
            match serde_json::from_value::<T>(value) {
                Ok(item) => decoded.items.push(item),
                Err(e) => decoded.dropped.push(Dropped {
                    seq,
                    reason: e.to_string(),
                }),
            }
        }
        decoded
    }
}

#[derive(Deserialize)]
struct RawInboxPage {
    events: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawMessagePage {
    messages: Vec<serde_json::Value>,
    next: Option<i64>,
}

/// `{users: [...]}`, `{groups: [...]}` or `{conversations: [...]}`.
#[derive(Deserialize)]
struct RawList {
    #[serde(alias = "users", alias = "groups", alias = "conversations")]
    items: Vec<serde_json::Value>,
}

/// `GET /v1/inbox`: the events, decoded one by one (the next page starts after the
/// last seq among them).
pub struct InboxPage {
    pub events: Decoded<Event>,
}

/// A page of history, newest first, decoded one by one.
pub struct MessagePage {
    pub messages: Decoded<Message>,
    pub next: Option<i64>,
}
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CliError, Result};
use crate::net::tls::{ServerUrl, Tls};

pub struct Client {
    http: reqwest::Client,
    server: ServerUrl,
    token: Option<String>,
    tls: Option<Tls>,
}

impl Client {
    /// A client for `server`; `tls` is needed for an `https://` one.
    pub fn new(server: ServerUrl, tls: Option<Tls>, token: Option<String>) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("fastchat-cli/", env!("CARGO_PKG_VERSION")));
        builder = match &tls {
            Some(tls) => builder.use_preconfigured_tls(tls.client_config()),
            None => builder.tls_built_in_root_certs(false).https_only(false),
        };
        let http = builder
            .build()
            .map_err(|e| CliError::local("setting up HTTP", e))?;
        Ok(Self {
            http,
            server,
            token,
            tls,
        })
    }

    /// The same client, carrying `token`.
    pub fn with_token(self, token: String) -> Self {
        Self {
            token: Some(token),
            ..self
        }
    }

    pub fn server(&self) -> &str {
        self.server.as_str()
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The error for a request that did not get an answer.
    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        unreachable_error(self.server.as_str(), error)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: RequestBuilder) -> Result<Response> {
        let response = builder.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(problem(response).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T> {
        let response = self.send(builder).await?;
        response.json().await.map_err(|e| CliError::Server {
            status: 200,
            code: ErrorCode::Unknown,
            detail: format!("the server's answer could not be read: {}", describe(&e)),
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    pub async fn create_user(&self, body: &CreateUser) -> Result<UserCreated> {
        self.post("/v1/users", body).await
    }

    /// Whether a signup could take `username` now (asks without a session).
    pub async fn username_available(&self, username: &str) -> Result<bool> {
        let answer: UsernameAvailability = self
            .json(self.request(Method::GET, &format!("/v1/usernames/{username}")))
            .await?;
        Ok(answer.available)
    }

    /// The caller's conversations, newest first, each decoded on its own.
    pub async fn conversations(&self) -> Result<Decoded<ConversationSummary>> {
        let list: RawList = self
            .json(self.request(Method::GET, "/v1/conversations"))
            .await?;
        Ok(Decoded::of(list.items))
    }

    /// Marks the conversation with `username` read up to message `up_to`.
    pub async fn mark_read_with(&self, username: &str, up_to: i64) -> Result<ReadMark> {
        let path = format!("/v1/conversations/{username}/read");
        self.json(self.request(Method::PUT, &path).json(&MarkRead { up_to }))
            .await
    }

    /// Marks group `group`'s conversation read up to message `up_to`.
    pub async fn mark_read_group(&self, group: &str, up_to: i64) -> Result<ReadMark> {
        let path = format!("/v1/groups/{group}/read");
        self.json(self.request(Method::PUT, &path).json(&MarkRead { up_to }))
            .await
    }

    pub async fn create_session(&self, body: &CreateSession) -> Result<SessionCreated> {
        self.post("/v1/sessions", body).await
    }

    pub async fn delete_session(&self) -> Result<()> {
        self.send(self.request(Method::DELETE, "/v1/sessions/current"))
            .await
            .map(drop)
    }

    pub async fn user(&self, username: &str) -> Result<UserProfile> {
        self.json(self.request(Method::GET, &format!("/v1/users/{username}")))
            .await
    }

    pub async fn users(&self, prefix: &str, limit: u32) -> Result<Decoded<UserSummary>> {
        let query = [("prefix", prefix.to_owned()), ("limit", limit.to_string())];
        let list: RawList = self
            .json(self.request(Method::GET, "/v1/users").query(&query))
            .await?;
        Ok(Decoded::of(list.items))
    }

    pub async fn send_message(&self, body: &SendMessage) -> Result<MessageSent> {
        self.post("/v1/messages", body).await
    }

    pub async fn inbox(&self, after: i64, limit: u32) -> Result<InboxPage> {
        let query = [("after", after.to_string()), ("limit", limit.to_string())];
        let page: RawInboxPage = self
            .json(self.request(Method::GET, "/v1/inbox").query(&query))
            .await?;
        Ok(InboxPage {
            events: Decoded::of(page.events),
        })
    }

    async fn history(&self, path: &str, before: Option<i64>, limit: u32) -> Result<MessagePage> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        let page: RawMessagePage = self
            .json(self.request(Method::GET, path).query(&query))
            .await?;
        Ok(MessagePage {
            messages: Decoded::of(page.messages),
            next: page.next,
        })
    }

    /// History with `username`, newest first.
    pub async fn conversation(
        &self,
        username: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<MessagePage> {
        self.history(
            &format!("/v1/conversations/{username}/messages"),
            before,
            limit,
        )
        .await
    }

    pub async fn create_group(&self, body: &CreateGroup) -> Result<Group> {
        self.post("/v1/groups", body).await
    }

    pub async fn groups(&self) -> Result<Decoded<Group>> {
        let list: RawList = self.json(self.request(Method::GET, "/v1/groups")).await?;
        Ok(Decoded::of(list.items))
    }

    /// The chain of `group` after seq `after` (all of it for `None`).
    pub async fn statements(&self, group: &str, after: Option<u64>) -> Result<Chain> {
        let mut request = self.request(Method::GET, &format!("/v1/groups/{group}/statements"));
        if let Some(after) = after {
            request = request.query(&[("after", after.to_string())]);
        }
        self.json(request).await
    }

    pub async fn group(&self, name: &str) -> Result<Group> {
        self.json(self.request(Method::GET, &format!("/v1/groups/{name}")))
            .await
    }

    pub async fn add_member(
        &self,
        group: &str,
        username: &str,
        statement: SignedStatement,
    ) -> Result<()> {
        let body = GroupUser {
            username: username.to_owned(),
            statement,
        };
        let path = format!("/v1/groups/{group}/members");
        self.send(self.request(Method::POST, &path).json(&body))
            .await
            .map(drop)
    }

    pub async fn remove_member(
        &self,
        group: &str,
        username: &str,
        statement: SignedStatement,
    ) -> Result<()> {
        let path = format!("/v1/groups/{group}/members/{username}");
        let body = RemoveMember { statement };
        self.send(self.request(Method::DELETE, &path).json(&body))
            .await
            .map(drop)
    }

    pub async fn add_admin(
        &self,
        group: &str,
        username: &str,
        statement: SignedStatement,
    ) -> Result<()> {
        let body = GroupUser {
            username: username.to_owned(),
            statement,
        };
        let path = format!("/v1/groups/{group}/admins");
        self.send(self.request(Method::POST, &path).json(&body))
            .await
            .map(drop)
    }

    /// A group's history, newest first.
    pub async fn group_history(
        &self,
        group: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<MessagePage> {
        self.history(&format!("/v1/groups/{group}/messages"), before, limit)
            .await
    }

    /// Uploads an encrypted blob; with `progress`, shows how far it got on stderr.
    pub async fn upload_blob(&self, bytes: Vec<u8>, progress: bool) -> Result<BlobCreated> {
        const CHUNK: usize = 64 * 1024;
        let total = bytes.len();
        let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let mut sent = 0usize;
        let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
            sent += chunk.len();
            if progress {
                let percent = sent * 100 / total.max(1);
                eprint!(
                    "\ruploading {percent:>3}% ({} of {})\x1b[K",
                    crate::output::size::bytes(sent as u64),
                    crate::output::size::bytes(total as u64)
                );
                if sent == total {
                    eprintln!();
                }
            }
            Ok::<_, std::io::Error>(chunk)
        }));
        let request = self
            .request(Method::POST, "/v1/blobs")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(reqwest::Body::wrap_stream(stream));
        self.json(request).await
    }

    /// Downloads a blob's (encrypted) bytes.
    pub async fn blob(&self, id: &str) -> Result<Vec<u8>> {
        let response = self
            .send(self.request(Method::GET, &format!("/v1/blobs/{id}")))
            .await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.unreachable(&e))
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub async fn key_backup(&self) -> Result<KeyBackup> {
        self.json(self.request(Method::GET, "/v1/me/key-backup"))
            .await
    }

    pub async fn contacts(&self) -> Result<ContactsBackup> {
        self.json(self.request(Method::GET, "/v1/me/contacts"))
            .await
    }

    pub async fn put_contacts(&self, sealed: &str) -> Result<()> {
        let body = ContactsBackup {
            contacts: sealed.to_owned(),
        };
        self.send(self.request(Method::PUT, "/v1/me/contacts").json(&body))
            .await
            .map(drop)
    }
}

/// Turns an error answer into the error the user sees.
async fn problem(response: Response) -> CliError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let problem: Option<Problem> = response.json().await.ok();
    let (code, detail, members) = match problem {
        // The server's words are printed: nothing in them may drive the terminal.
        Some(p) => (
            p.code,
            crate::output::sanitize_line(&p.detail.unwrap_or(p.title)),
            p.members,
        ),
        None => (
            ErrorCode::Unknown,
            format!("the server answered {status}"),
            None,
        ),
    };
    match (status, code) {
        (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials) => {
            CliError::Auth("wrong username or password".into())
        }
        (StatusCode::UNAUTHORIZED, _) => CliError::Auth(
            "your session has expired or was ended: run `fastchat login` again".into(),
        ),
        (StatusCode::TOO_MANY_REQUESTS, _) => CliError::Auth(match retry_after {
            Some(secs) => format!("too many failed logins; try again in {secs} seconds"),
            None => "too many failed logins; try again later".into(),
        }),
        (StatusCode::CONFLICT, ErrorCode::RecipientsMismatch) => CliError::RecipientsMismatch {
            members: members.unwrap_or_default(),
        },
        _ => CliError::Server {
            status: status.as_u16(),
            code,
            detail,
        },
    }
}

/// What went wrong with a request that got no answer, in a few words: the innermost
/// cause (connection refused, timed out), never the URL with its query string.
pub fn unreachable_error(server: &str, error: &(dyn std::error::Error + 'static)) -> CliError {
    let mut innermost: &(dyn std::error::Error + 'static) = error;
    let mut tls = None;
    let mut io_kind = None;
    let mut timed_out = false;
    let mut current = Some(error);
    while let Some(e) = current {
        innermost = e;
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
            // io::Error's source skips the error it wraps (TLS failures hide there).
            if let Some(inner) = io.get_ref() {
                current = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            timed_out |= r.is_timeout();
        }
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            tls.get_or_insert_with(|| t.to_string());
        }
        current = e.source();
    }
    if let Some(cause) = tls {
        return CliError::Tls {
            server: server.to_owned(),
            cause,
        };
    }
    let cause = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(std::io::ErrorKind::ConnectionReset) => "the connection was reset".to_owned(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".to_owned(),
        _ if timed_out => "timed out".to_owned(),
        _ => {
            let text = innermost.to_string();
            // Never the URL (with its query) that reqwest puts in its own messages.
            match text.find(" for url (") {
                Some(at) => text[..at].to_owned(),
                None => text,
            }
        }
    };
    CliError::Unreachable {
        server: server.to_owned(),
        cause,
    }
}

/// reqwest's Display stops at the outermost error.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(at) = text.find(" for url (") {
        text.truncate(at);
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
