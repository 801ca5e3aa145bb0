//! A typed client for FastChat's HTTP API. Every failure becomes a [`CliError`] that says
//! what happened in the user's terms.

use std::time::Duration;

use fastchat_protocol::group::SignedStatement;
use fastchat_protocol::problem::{ErrorCode, Problem};
use fastchat_protocol::wire::{
    Chain, ContactsBackup, CreateGroup, CreateSession, CreateUser, Event, Group, GroupUser,
    KeyBackup, Message, MessageSent, RemoveMember, SendMessage, SessionCreated, UserCreated,
    UserProfile, UserSummary,
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

/// `{users: [...]}` or `{groups: [...]}`.
#[derive(Deserialize)]
struct RawList {
    #[serde(alias = "users", alias = "groups")]
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

pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("fastchat-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::local("setting up HTTP", e))?;
        let server = server.trim_end_matches('/').to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "the server URL must start with http:// or https://, not {server:?}"
            )));
        }
        Ok(Self {
            http,
            server,
            token,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: RequestBuilder) -> Result<Response> {
        let response = builder.send().await.map_err(|e| CliError::Unreachable {
            server: self.server.clone(),
            cause: describe(&e),
        })?;
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
                    "\ruploading {percent:>3}% ({} of {} KiB)",
                    sent / 1024,
                    total / 1024
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
            .map_err(|e| CliError::Unreachable {
                server: self.server.clone(),
                cause: describe(&e),
            })
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

/// reqwest's Display stops at the outermost error; the cause (connection refused,
/// timed out) is what the user needs.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
