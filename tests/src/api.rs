//! One api server as any HTTP client sees it ([`Api`]), its [`Answer`]s, and the bodies
//! tests send: a valid key, opaque envelopes, messages.

use std::sync::OnceLock;

use fastchat_protocol::keys;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::metrics::fetch_metrics;
use crate::paths;

/// The 2048-bit key pair every user the kit signs up shares: tests of delivery need
/// *a* valid key, and the kit signs those users' membership statements with it.
pub fn test_private_key() -> &'static keys::RsaPrivateKey {
    static KEY: OnceLock<keys::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| keys::generate_private_key().expect("generating a test key"))
}

/// The public half of [`test_private_key`], as the server takes it.
pub fn test_public_key() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| keys::public_key_pem(&test_private_key().to_public_key()))
}

/// The fingerprint of [`test_public_key`].
pub fn test_fingerprint() -> String {
    keys::fingerprint(&test_private_key().to_public_key())
}

pub const TEST_PASSWORD: &str = "correct horse battery";

/// An answer: status, headers of interest, and the body as JSON (Null if not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Asserts a problem answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.text
        );
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(self.body["title"].is_string(), "body: {}", self.text);
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }
}

/// One server (or the balancer) as any HTTP client sees it. Requests as a signed-in user
/// go through [`TestUser`](crate::user::TestUser); what is here is for the anonymous and the deliberately odd.
#[derive(Clone, Debug)]
pub struct Api {
    pub base: String,
    /// Where its metrics are: an api server's admin listener (or, without one, `base`).
    pub admin: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            base: base.to_owned(),
            admin: None,
            http: reqwest::Client::new(),
        }
    }

    /// The full URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to build by hand (odd headers, streamed bodies), without a token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// `method path`, with a bearer token and a JSON body if given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let request = self.json_request(method, path, token, body);
        Self::answer(request.send().await.expect("request sent")).await
    }

    /// Like [`call`](Self::call), but `None` instead of a panic when the request cannot
    /// be sent or answered (a server or balancer that is going away).
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Option<Answer> {
        let request = self.json_request(method, path, token, body);
        Some(Self::answer(request.send().await.ok()?).await)
    }

    fn json_request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.request(method, path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
    }

    /// Sends a raw body with the given content type: for malformed and non-JSON bodies.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self
            .request(method, path)
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::answer(request.send().await.expect("request sent")).await
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            content_type,
            retry_after,
            body,
            text,
        }
    }

    /// The server's `/metrics` text, from its admin listener.
    pub async fn metrics(&self) -> String {
        let base = self.admin.as_deref().unwrap_or(&self.base);
        fetch_metrics(base)
            .await
            .unwrap_or_else(|| panic!("no metrics from {base}"))
    }

    /// The server's count of events sent on streams from `source` ("pushed": whole, as
    /// their notification carried them; "inbox": read back).
    pub async fn stream_events(&self, source: &str) -> f64 {
        let text = self.metrics().await;
        crate::metric_where(&text, "fastchat_sse_events_total", "source", source)
    }

    /// How many requests the server's batches of `kind` have served (`group_pushes`:
    /// group messages read to push them to streams held there).
    pub async fn batched_requests(&self, kind: &str) -> f64 {
        let text = self.metrics().await;
        crate::metric_where(&text, "fastchat_batch_size_sum", "kind", kind)
    }

    /// The same server, with its admin listener at `admin`.
    pub fn with_admin(mut self, admin: &str) -> Self {
        self.admin = Some(admin.to_owned());
        self
    }

    /// `POST /v1/users` with a valid key and the test password.
    pub async fn signup(&self, username: &str) -> Answer {
        self.signup_with(
            json!({"username": username, "password": TEST_PASSWORD, "public_key": test_public_key()}),
        )
        .await
    }

    /// `POST /v1/users` with this body, as it is.
    pub async fn signup_with(&self, body: Value) -> Answer {
        self.call(Method::POST, paths::USERS, None, Some(body))
            .await
    }

    /// `POST /v1/sessions`.
    pub async fn login_answer(&self, username: &str, password: &str) -> Answer {
        self.login_with(json!({"username": username, "password": password}))
            .await
    }

    /// `POST /v1/sessions` with this body, as it is.
    pub async fn login_with(&self, body: Value) -> Answer {
        self.call(Method::POST, paths::SESSIONS, None, Some(body))
            .await
    }
}

/// `base` with each member of `overrides` set, or removed where it is null.
pub fn with_overrides(mut base: Value, overrides: Value) -> Value {
    if let (Some(body), Some(changes)) = (base.as_object_mut(), overrides.as_object()) {
        for (key, value) in changes {
            if value.is_null() {
                body.remove(key);
            } else {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    base
}

/// An envelope of the right shape with random bytes: what the server sees of any real
/// one. For tests that exercise delivery, not cryptography.
pub fn opaque_envelope(members: &[&str]) -> Value {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use rand::RngCore;
    let random = |n: usize| {
        let mut bytes = vec![0u8; n];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        STANDARD.encode(bytes)
    };
    let keys: serde_json::Map<String, Value> = members
        .iter()
        .map(|m| ((*m).to_owned(), Value::String(random(256))))
        .collect();
    json!({
        "v": 2,
        "alg": "RSA-OAEP-256+A256GCM+PS256",
        "sent_at": fastchat_protocol::group::canonical_time(chrono::Utc::now()),
        "nonce": random(12),
        "ciphertext": random(200),
        "keys": keys,
        "sig": random(256),
    })
}

/// An [`opaque_envelope`] for a group message, bound to the group's state `binding`
/// (`{id, epoch, head}`).
pub fn opaque_group_envelope(members: &[&str], binding: Value) -> Value {
    let mut envelope = opaque_envelope(members);
    envelope["group"] = binding;
    envelope
}

/// A `POST /v1/messages` body to one user, with a fresh `client_id`.
pub fn direct_message(to: &str, envelope: Value) -> Value {
    json!({
        "to": to,
        "client_id": uuid::Uuid::new_v4().to_string(),
        "kind": "text",
        "envelope": envelope,
    })
}

/// A `POST /v1/messages` body to a group, with a fresh `client_id`.
pub fn group_message(group: &str, envelope: Value) -> Value {
    json!({
        "group": group,
        "client_id": uuid::Uuid::new_v4().to_string(),
        "kind": "text",
        "envelope": envelope,
    })
}

/// The `seq` of each inbox event, in order.
pub fn seqs_of(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["seq"].as_i64().expect("an event's seq"))
        .collect()
}
