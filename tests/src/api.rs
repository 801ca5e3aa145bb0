//! Typed helpers for talking to one api server the way any HTTP client would.

use std::sync::OnceLock;

use fastchat_protocol::keys;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A 2048-bit public key shared by the tests that only need *a* valid key.
pub fn test_public_key() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let key = keys::generate_private_key().expect("generating a test key");
        keys::public_key_pem(&key.to_public_key())
    })
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

#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::answer(req.send().await.expect("request sent")).await
    }

    /// Sends a raw body with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Self::answer(req.send().await.expect("request sent")).await
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

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// `POST /v1/users` with a valid key and the test password.
    pub async fn signup(&self, username: &str) -> Answer {
        self.post(
            "/v1/users",
            None,
            json!({"username": username, "password": TEST_PASSWORD, "public_key": test_public_key()}),
        )
        .await
    }

    pub async fn login_answer(&self, username: &str, password: &str) -> Answer {
        self.post(
            "/v1/sessions",
            None,
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// Logs in with the test password and returns the token.
    pub async fn login(&self, username: &str) -> String {
        let answer = self.login_answer(username, TEST_PASSWORD).await;
        answer.assert_status(201)["token"]
            .as_str()
            .expect("token in the answer")
            .to_owned()
    }

    /// Signs up and logs in; returns the token.
    pub async fn user(&self, username: &str) -> String {
        self.signup(username).await.assert_status(201);
        self.login(username).await
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
        "v": 1,
        "alg": "RSA-OAEP-256+A256GCM+PS256",
        "nonce": random(12),
        "ciphertext": random(200),
        "keys": keys,
        "sig": random(256),
    })
}

impl Api {
    /// A POST that tolerates a failing connection: `None` instead of a panic.
    pub async fn post_raw(&self, path: &str, token: &str, body: &Value) -> Option<Answer> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .ok()?;
        Some(Self::answer(response).await)
    }

    /// `POST /v1/messages` to a user with an opaque envelope for `from` and `to`.
    pub async fn send_opaque(&self, token: &str, from: &str, to: &str) -> Answer {
        self.post(
            "/v1/messages",
            Some(token),
            json!({
                "to": to,
                "client_id": uuid::Uuid::new_v4().to_string(),
                "kind": "text",
                "envelope": opaque_envelope(&[from, to]),
            }),
        )
        .await
    }
}
