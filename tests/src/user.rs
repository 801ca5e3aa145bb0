//! A signed-in user: their name, their session token and the server they talk to, with
//! a helper for each thing a person (or a client program) does. Every helper returns
//! the [`Answer`], so a test asserts the status or problem code itself.

use chrono::Utc;
use fastchat_protocol::group::{Change, SignedStatement, Statement, StatementHash};
use fastchat_protocol::names::{GroupName, Username};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{
    direct_message, group_message, opaque_envelope, opaque_group_envelope, test_fingerprint,
    test_private_key, Answer, Api, TEST_PASSWORD,
};
use crate::paths;
use crate::sse::SseClient;

/// `let alice = cluster.api(0).user("alice").await;` then `alice.send_opaque_to(&bob)`,
/// `alice.inbox(0)`, `alice.on(&other).events(None)`, ...
///
/// Where a helper takes someone's name it takes a `TestUser` as well (`&bob` or `"bob"`).
#[derive(Clone, Debug)]
pub struct TestUser {
    pub name: String,
    pub token: String,
    pub api: Api,
}

/// A user stands for their name wherever one is asked for.
impl AsRef<str> for TestUser {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl TestUser {
    pub fn new(name: &str, token: &str, api: &Api) -> Self {
        TestUser {
            name: name.to_owned(),
            token: token.to_owned(),
            api: api.clone(),
        }
    }

    /// The same user, with the same token, talking to another server.
    pub fn on(&self, api: &Api) -> TestUser {
        TestUser::new(&self.name, &self.token, api)
    }

    // Any request, as this user.

    /// `method path` with this user's token and a JSON body if given.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.api.call(method, path, Some(&self.token), body).await
    }

    /// A raw body with the given content type, with this user's token.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        (self.api)
            .raw(method, path, Some(&self.token), content_type, body)
            .await
    }

    /// A request to build by hand (odd headers, streamed bodies), with this user's token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.api.request(method, path).bearer_auth(&self.token)
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    // Accounts.

    /// `GET /v1/users/{username}`: `{username, public_key, online}`.
    pub async fn profile(&self, username: impl AsRef<str>) -> Answer {
        self.get(&paths::user(username.as_ref())).await
    }

    /// `GET /v1/users`.
    pub async fn users(&self) -> Answer {
        self.get(paths::USERS).await
    }

    /// `GET /v1/users?{query}`, the query as it is (`prefix=ab&limit=2`).
    pub async fn users_query(&self, query: &str) -> Answer {
        self.get(&paths::with_query(paths::USERS, query)).await
    }

    /// `GET /v1/me/key-backup`.
    pub async fn key_backup(&self) -> Answer {
        self.get(paths::KEY_BACKUP).await
    }

    /// `DELETE /v1/sessions/current`: ends this user's token on every server.
    pub async fn logout(&self) -> Answer {
        self.delete(paths::CURRENT_SESSION).await
    }

    // Sending.

    /// `POST /v1/messages` with this body, as it is.
    pub async fn send(&self, body: Value) -> Answer {
        self.post(paths::MESSAGES, body).await
    }

    /// Like [`send`](Self::send), but `None` when the request cannot be sent or answered
    /// (a server dying under it), so that the caller can retry.
    pub async fn try_send(&self, body: &Value) -> Option<Answer> {
        (self.api)
            .try_call(
                Method::POST,
                paths::MESSAGES,
                Some(&self.token),
                Some(body.clone()),
            )
            .await
    }

    /// A text message to `to` with this envelope and a fresh `client_id`.
    pub async fn send_to(&self, to: impl AsRef<str>, envelope: Value) -> Answer {
        self.send(direct_message(to.as_ref(), envelope)).await
    }

    /// A message to `to` with an [`opaque_envelope`] that has keys for both of them.
    pub async fn send_opaque_to(&self, to: impl AsRef<str>) -> Answer {
        let to = to.as_ref();
        self.send_to(to, opaque_envelope(&[&self.name, to])).await
    }

    /// A text message to `group` with this envelope and a fresh `client_id`.
    pub async fn send_to_group(&self, group: &str, envelope: Value) -> Answer {
        self.send(group_message(group, envelope)).await
    }

    /// A message to `group` with an [`opaque_group_envelope`] whose keys name `members`,
    /// bound to the group's state as the server gives it now (to a non-member, which the
    /// server will not tell, a made-up one).
    pub async fn send_opaque_to_group(&self, group: &str, members: &[&str]) -> Answer {
        let view = self.group(group).await;
        let binding = if view.status == 200 {
            json!({"id": view.body["id"], "epoch": view.body["epoch"], "head": view.body["head"]})
        } else {
            json!({"id": uuid::Uuid::new_v4(), "epoch": 0, "head": "00".repeat(32)})
        };
        self.send_to_group(group, opaque_group_envelope(members, binding))
            .await
    }

    // Reading.

    /// `GET /v1/inbox?after={after}&limit=1000`, the most a page holds.
    pub async fn inbox(&self, after: i64) -> Answer {
        self.inbox_query(&format!("after={after}&limit=1000")).await
    }

    /// `GET /v1/inbox?{query}`, the query as it is.
    pub async fn inbox_query(&self, query: &str) -> Answer {
        self.get(&paths::with_query(paths::INBOX, query)).await
    }

    /// The newest page of the conversation with `username`.
    pub async fn conversation(&self, username: impl AsRef<str>) -> Answer {
        self.conversation_query(username, "").await
    }

    /// A page of the conversation with `username`, `?{query}` as it is (`limit=3`).
    pub async fn conversation_query(&self, username: impl AsRef<str>, query: &str) -> Answer {
        let path = paths::conversation(username.as_ref());
        self.get(&paths::with_query(&path, query)).await
    }

    /// `GET /v1/conversations`: this user's conversations with their unread counts.
    pub async fn conversations(&self) -> Answer {
        self.get(paths::CONVERSATIONS).await
    }

    /// Marks the conversation with `username` read up to message `up_to`.
    pub async fn mark_read(&self, username: impl AsRef<str>, up_to: i64) -> Answer {
        let path = paths::conversation_read(username.as_ref());
        self.call(
            Method::PUT,
            &path,
            Some(serde_json::json!({"up_to": up_to})),
        )
        .await
    }

    /// Marks `group`'s conversation read up to message `up_to`.
    pub async fn mark_group_read(&self, group: &str, up_to: i64) -> Answer {
        let path = paths::group_read(group);
        self.call(
            Method::PUT,
            &path,
            Some(serde_json::json!({"up_to": up_to})),
        )
        .await
    }

    /// The newest page of `group`'s messages.
    pub async fn group_history(&self, group: &str) -> Answer {
        self.get(&paths::group_messages(group)).await
    }

    /// This user's event stream: from seq `after` on (`Some(0)` replays the whole inbox),
    /// or with `None` only what comes from now on.
    pub async fn events(&self, after: Option<i64>) -> SseClient {
        self.events_with(None, after).await
    }

    /// The event stream resumed after `last_event_id`, as a reconnecting client does.
    pub async fn resume(&self, last_event_id: i64) -> SseClient {
        self.events_with(Some(last_event_id), None).await
    }

    /// The event stream with a `Last-Event-ID` header and an `?after=`, each if given.
    pub async fn events_with(&self, last_event_id: Option<i64>, after: Option<i64>) -> SseClient {
        SseClient::connect(&self.api.base, &self.token, last_event_id, after).await
    }

    /// Like [`resume`](Self::resume), but `None` when the stream cannot be opened.
    pub async fn try_resume(&self, last_event_id: i64) -> Option<SseClient> {
        SseClient::try_connect(&self.api.base, &self.token, Some(last_event_id), None).await
    }

    // Groups.

    /// `POST /v1/groups` making `name` with `members` (this user is its admin), with the
    /// first statement of its chain, signed by this user (names that cannot be a user's
    /// are left out of the statement; the server refuses them before it reads it).
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Answer {
        self.create_group_with(self.group_creation(name, members))
            .await
    }

    /// The body of `POST /v1/groups` that [`create_group`](Self::create_group) sends.
    pub fn group_creation(&self, name: &str, members: &[&str]) -> Value {
        let me = Username::parse(&self.name).expect("a test user's name");
        let mut named = vec![(me.clone(), test_fingerprint())];
        for member in members {
            if let Ok(user) = Username::parse(member) {
                if user != me && !named.iter().any(|(n, _)| *n == user) {
                    named.push((user, test_fingerprint()));
                }
            }
        }
        let statement = GroupName::parse(name).ok().map(|group| {
            Statement {
                group: uuid::Uuid::new_v4(),
                name: group,
                seq: 0,
                prev: None,
                by: me,
                at: Utc::now(),
                change: Change::Create { members: named },
            }
            .sign(test_private_key())
        });
        let statement = statement.map_or_else(not_a_statement, |s| json!(s));
        json!({"name": name, "members": members, "statement": statement})
    }

    /// The next statement of `group`'s chain, signed by this user, as the server's view
    /// of the group says the chain stands (for a group this user cannot see, or a name
    /// that cannot be a user's, one the server will refuse).
    async fn next_statement(
        &self,
        group: &str,
        change: impl FnOnce(Username) -> Option<Change>,
    ) -> Value {
        let view = self.group(group).await;
        let me = Username::parse(&self.name).expect("a test user's name");
        let (Some(id), Some(epoch), Some(head), Ok(name)) = (
            view.body["id"]
                .as_str()
                .and_then(|id| uuid::Uuid::parse_str(id).ok()),
            view.body["epoch"].as_u64(),
            view.body["head"].as_str().and_then(StatementHash::parse),
            GroupName::parse(group),
        ) else {
            return not_a_statement();
        };
        let Some(change) = change(me.clone()) else {
            return not_a_statement();
        };
        json!(Statement {
            group: id,
            name,
            seq: epoch + 1,
            prev: Some(head),
            by: me,
            at: Utc::now(),
            change,
        }
        .sign(test_private_key()))
    }

    /// A membership change: the statement made for the group as it stands, and made
    /// again (as a client does) while another change overtakes it.
    async fn change_membership(
        &self,
        method: Method,
        path: &str,
        group: &str,
        body: Value,
        change: impl Fn(Username) -> Option<Change>,
    ) -> Answer {
        // Overtaken for as long as others keep changing the group: they stop, and this
        // change goes through; only a group that never settles fails.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut tries = 0;
        while std::time::Instant::now() < deadline {
            tries += 1;
            let mut body = body.clone();
            body["statement"] = self.next_statement(group, &change).await;
            let answer = self.call(method.clone(), path, Some(body)).await;
            if answer.body["code"] != "stale_statement" {
                return answer;
            }
        }
        panic!(
            "{}'s change to {group} was overtaken {tries} times in 30 s",
            self.name
        );
    }

    /// `POST /v1/groups` with this body, as it is.
    pub async fn create_group_with(&self, body: Value) -> Answer {
        self.post(paths::GROUPS, body).await
    }

    /// `GET /v1/groups`: the groups this user is in.
    pub async fn groups(&self) -> Answer {
        self.get(paths::GROUPS).await
    }

    /// `GET /v1/groups/{name}`.
    pub async fn group(&self, name: &str) -> Answer {
        self.get(&paths::group(name)).await
    }

    /// `POST /v1/groups/{group}/members`, with the statement that adds `username` (and
    /// the key every kit user shares).
    pub async fn add_member(&self, group: &str, username: impl AsRef<str>) -> Answer {
        let username = username.as_ref();
        let body = json!({ "username": username });
        let add = Self::adding(username);
        self.change_membership(Method::POST, &paths::group_members(group), group, body, add)
            .await
    }

    /// The body of `POST /v1/groups/{group}/members` adding `username`, for the group
    /// as it stands.
    pub async fn add_member_body(&self, group: &str, username: &str) -> Value {
        let statement = self.next_statement(group, Self::adding(username)).await;
        json!({ "username": username, "statement": statement })
    }

    fn adding(username: &str) -> impl Fn(Username) -> Option<Change> {
        let user = Username::parse(username).ok();
        move |_| {
            Some(Change::Add {
                user: user.clone()?,
                fingerprint: test_fingerprint(),
            })
        }
    }

    /// `DELETE /v1/groups/{group}/members/{username}`, with the statement that removes
    /// them (or, for this user, says they leave).
    pub async fn remove_member(&self, group: &str, username: impl AsRef<str>) -> Answer {
        let username = username.as_ref();
        let user = Username::parse(username).ok();
        let remove = |me: Username| {
            let user = user.clone()?;
            Some(if user == me {
                Change::Leave
            } else {
                Change::Remove { user }
            })
        };
        let path = paths::group_member(group, username);
        self.change_membership(Method::DELETE, &path, group, json!({}), remove)
            .await
    }

    /// This user removes themself from `group`.
    pub async fn leave(&self, group: &str) -> Answer {
        self.remove_member(group, &self.name).await
    }

    /// `POST /v1/groups/{group}/admins`, with the statement that promotes `username`.
    pub async fn promote(&self, group: &str, username: impl AsRef<str>) -> Answer {
        let username = username.as_ref();
        let user = Username::parse(username).ok();
        let promote = |_: Username| {
            Some(Change::Promote {
                user: user.clone()?,
            })
        };
        let body = json!({ "username": username });
        self.change_membership(
            Method::POST,
            &paths::group_admins(group),
            group,
            body,
            promote,
        )
        .await
    }

    /// `GET /v1/groups/{group}/statements`: the group's whole chain.
    pub async fn statements(&self, group: &str) -> Answer {
        self.get(&format!("{}/statements", paths::group(group)))
            .await
    }

    // Blobs.

    /// `POST /v1/blobs` with these bytes as `application/octet-stream`.
    pub async fn upload_blob(&self, bytes: Vec<u8>) -> Answer {
        self.raw(
            Method::POST,
            paths::BLOBS,
            "application/octet-stream",
            bytes,
        )
        .await
    }

    /// `GET /v1/blobs/{id}`; the bytes are in the answer's `text`, lossily.
    pub async fn blob(&self, id: &str) -> Answer {
        self.get(&paths::blob(id)).await
    }
}

/// Users signed in on a server.
impl Api {
    /// Logs in with the test password.
    pub async fn login(&self, username: &str) -> TestUser {
        let answer = self.login_answer(username, TEST_PASSWORD).await;
        let token = answer.assert_status(201)["token"]
            .as_str()
            .expect("token in the answer");
        self.as_user(username, token)
    }

    /// Signs up and logs in.
    pub async fn user(&self, username: &str) -> TestUser {
        self.signup(username).await.assert_status(201);
        self.login(username).await
    }

    /// `username` holding `token` (which need not be good), talking to this server.
    pub fn as_user(&self, username: &str, token: &str) -> TestUser {
        TestUser::new(username, token, self)
    }
}

/// A statement the server cannot accept, for requests it must refuse before it reads one.
fn not_a_statement() -> Value {
    json!(SignedStatement {
        text: "not a statement".into(),
        sig: String::new(),
    })
}
