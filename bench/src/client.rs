//! FastChat as a load generator sees it: HTTP clients bound to several loopback source
//! addresses (one address runs out of ports long before the balancer runs out of
//! anything), sign-ups, sends, and event streams read as raw server-sent events.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::task::JoinHandle;
use uuid::Uuid;

use fastchat_protocol::wire::{CreateSession, CreateUser, SendMessage, SessionCreated};

use crate::tracker::Tracker;

const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const SETUP_CONCURRENCY: usize = 32;

#[derive(Clone)]
pub struct User {
    pub name: String,
    pub token: String,
}

pub struct Http {
    base: String,
    clients: Vec<reqwest::Client>,
    next: AtomicUsize,
}

impl Http {
    /// Clients for `base`, one per source address 127.0.0.1 to 127.0.0.`sources`.
    pub fn new(base: &str, sources: u8) -> anyhow::Result<Self> {
        let clients = (1..=sources.max(1))
            .map(|last| {
                reqwest::Client::builder()
                    .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(usize::MAX)
                    .build()
            })
            .collect::<Result<_, _>>()?;
        Ok(Http {
            base: base.trim_end_matches('/').to_owned(),
            clients,
            next: AtomicUsize::new(0),
        })
    }

    /// The clients in turn, so connections spread over the source addresses.
    fn client(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn wait_ready(&self, deadline: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        loop {
            let answer = self.client().get(self.url("/healthz")).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("{} did not become healthy", self.base);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path`, answered with a success and its body read whole.
    pub async fn get_ok(&self, path: &str) -> bool {
        match self.client().get(self.url(path)).send().await {
            Ok(answer) if answer.status().is_success() => answer.bytes().await.is_ok(),
            _ => false,
        }
    }

    /// Signs up and logs in `names`, a few at a time.
    pub async fn sign_up(
        &self,
        names: Vec<String>,
        public_key: &str,
        password: &str,
    ) -> anyhow::Result<Vec<User>> {
        stream::iter(names)
            .map(|name| self.sign_up_one(name, public_key, password))
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn sign_up_one(
        &self,
        name: String,
        public_key: &str,
        password: &str,
    ) -> anyhow::Result<User> {
        let created = self
            .client()
            .post(self.url("/v1/users"))
            .json(&CreateUser {
                username: name.clone(),
                password: password.to_owned(),
                public_key: public_key.to_owned(),
                key_backup: None,
            })
            .send()
            .await?;
        if created.status() != 201 {
            bail!(
                "signing up {name}: {} {}",
                created.status(),
                created.text().await.unwrap_or_default()
            );
        }
        let session: SessionCreated = self
            .client()
            .post(self.url("/v1/sessions"))
            .json(&CreateSession {
                username: name.clone(),
                password: password.to_owned(),
            })
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("logging in {name}"))?
            .json()
            .await?;
        Ok(User {
            name,
            token: session.token,
        })
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<()> {
        let answer = self
            .client()
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!(
                "POST {path}: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Sends one message, scheduled at `due`; the tracker hears of its answer.
    pub async fn send(
        &self,
        token: &str,
        message: &SendMessage,
        tracker: &Tracker,
        id: Uuid,
        due: Instant,
    ) {
        let answer = self
            .client()
            .post(self.url("/v1/messages"))
            .bearer_auth(token)
            .json(message)
            .timeout(SEND_TIMEOUT)
            .send()
            .await;
        match answer {
            Ok(a) if a.status() == 201 => tracker.answered(due, Instant::now()),
            Ok(a) => {
                eprintln!("send refused: {}", a.status());
                tracker.send_failed(id);
            }
            Err(e) => {
                eprintln!("send failed: {e}");
                tracker.send_failed(id);
            }
        }
    }

    /// Opens `GET /v1/events` for `user` (recipient number `index`) and reports every
    /// message that arrives on it to the tracker, until the stream ends.
    pub async fn open_stream(
        &self,
        index: u32,
        user: &User,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<JoinHandle<()>> {
        let response = self
            .client()
            .get(self.url("/v1/events"))
            .bearer_auth(&user.token)
            .send()
            .await?;
        if response.status() != 200 {
            bail!("opening a stream for {}: {}", user.name, response.status());
        }
        Ok(tokio::spawn(read_stream(response, index, tracker)))
    }
}

#[derive(Deserialize)]
struct EventData {
    message: Option<MessageRef>,
}

#[derive(Deserialize)]
struct MessageRef {
    client_id: Uuid,
}

/// Reads server-sent events off `response`; only `data:` lines matter here.
async fn read_stream(mut response: reqwest::Response, index: u32, tracker: Arc<Tracker>) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let now = Instant::now();
        buffer.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = find_line_end(&buffer[consumed..]) {
            let line = &buffer[consumed..consumed + end];
            consumed += end + 1;
            if let Some(data) = line.strip_prefix(b"data: ") {
                if let Ok(EventData {
                    message: Some(message),
                }) = serde_json::from_slice(data)
                {
                    tracker.arrived(message.client_id, index, now);
                }
            }
        }
        buffer.drain(..consumed);
    }
    tracker.stream_ended();
}

fn find_line_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}
