//! What every scenario shares: the users, each holding one event stream through the
//! balancer, the tracker their streams report to, and envelopes of realistic size.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures_util::{stream, StreamExt, TryStreamExt};
use rand::RngCore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use fastchat_protocol::envelope::{Envelope, GroupBinding, ALGORITHM, NONCE_LEN, VERSION};
use fastchat_protocol::keys::RsaPrivateKey;
use fastchat_protocol::wire::SendMessage;

use crate::client::{Http, User};
use crate::system::metric_sums;
use crate::tracker::Tracker;

const PASSWORD: &str = "bench password, long enough";
const STREAM_OPEN_CONCURRENCY: usize = 64;
/// A chat line of about 100 characters, as the CLI encrypts it ({"text": ...}, AES-GCM).
const CIPHERTEXT_BYTES: usize = 128;
/// RSA-2048 signatures and wrapped keys.
const RSA_BYTES: usize = 256;

fn random_base64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// Envelopes the server cannot tell from real ones: the right shapes and sizes, random
/// bytes inside. Encrypting for real would measure the bench's crypto, not FastChat.
pub struct Envelopes {
    nonce: String,
    ciphertext: String,
    sig: String,
    wrapped_key: String,
}

impl Envelopes {
    pub fn new() -> Self {
        Envelopes {
            nonce: random_base64(NONCE_LEN),
            ciphertext: random_base64(CIPHERTEXT_BYTES),
            sig: random_base64(RSA_BYTES),
            wrapped_key: random_base64(RSA_BYTES),
        }
    }

    fn envelope<'a>(
        &self,
        members: impl IntoIterator<Item = &'a str>,
        group: Option<GroupBinding>,
    ) -> Envelope {
        Envelope {
            v: VERSION,
            alg: ALGORITHM.to_owned(),
            // The server checks only its form; a real client's clock is as long.
            sent_at: Some("2026-12-01T12:00:00.000Z".to_owned()),
            group,
            nonce: self.nonce.clone(),
            ciphertext: self.ciphertext.clone(),
            keys: members
                .into_iter()
                .map(|m| (m.to_owned(), self.wrapped_key.clone()))
                .collect::<BTreeMap<_, _>>(),
            sig: self.sig.clone(),
        }
    }

    pub fn direct(&self, from: &str, to: &str, client_id: Uuid) -> SendMessage {
        SendMessage {
            to: Some(to.to_owned()),
            group: None,
            client_id: client_id.to_string(),
            kind: "text".to_owned(),
            envelope: self.envelope([from, to], None),
            attachments: Vec::new(),
        }
    }

    /// A message to `group`, sealed in the group's state `binding`.
    pub fn group<'a>(
        &self,
        group: &str,
        binding: &GroupBinding,
        members: impl IntoIterator<Item = &'a str>,
        client_id: Uuid,
    ) -> SendMessage {
        SendMessage {
            to: None,
            group: Some(group.to_owned()),
            client_id: client_id.to_string(),
            kind: "text".to_owned(),
            envelope: self.envelope(members, Some(binding.clone())),
            attachments: Vec::new(),
        }
    }

    /// The request body of a one-to-one message, in bytes.
    pub fn direct_body_bytes(&self) -> usize {
        serde_json::to_vec(&self.direct("user_00001", "user_00002", Uuid::nil()))
            .map_or(0, |body| body.len())
    }
}

pub struct Bench {
    pub http: Http,
    /// For the api servers' metrics, straight from 127.0.0.1.
    pub plain: reqwest::Client,
    pub apis: Vec<String>,
    pub tracker: Arc<Tracker>,
    pub envelopes: Envelopes,
    /// Names are `<prefix>_<n>`, unique to this run.
    pub prefix: String,
    /// Online users: users[i] holds stream i.
    pub users: Vec<User>,
    streams: Vec<JoinHandle<()>>,
    /// The key pair every bench user shares (it signs their groups' statements).
    pub key: RsaPrivateKey,
    public_key: String,
}

impl Bench {
    pub fn new(http: Http, apis: Vec<String>) -> anyhow::Result<Self> {
        let key = fastchat_protocol::keys::generate_private_key()?;
        let prefix: String = (0..5)
            .map(|_| char::from(b'a' + (rand::random::<u8>() % 26)))
            .collect();
        Ok(Bench {
            http,
            plain: reqwest::Client::new(),
            apis,
            tracker: Arc::new(Tracker::new()),
            envelopes: Envelopes::new(),
            prefix,
            users: Vec::new(),
            streams: Vec::new(),
            public_key: fastchat_protocol::keys::public_key_pem(&key.to_public_key()),
            key,
        })
    }

    /// The sum over the api servers of each of `series` (see [`metric_sums`]); `None`,
    /// said on the terminal, when they cannot be read.
    pub async fn server_counters<const N: usize>(&self, series: [&str; N]) -> Option<[f64; N]> {
        match metric_sums(&self.plain, &self.apis, series).await {
            Ok(counters) => Some(counters),
            Err(e) => {
                println!("  (not reading the api servers' counters: {e:#})");
                None
            }
        }
    }

    /// Signs up `n` more users (all sharing one public key: the server only checks
    /// that it is one).
    pub async fn sign_up(&self, first: usize, n: usize) -> anyhow::Result<Vec<User>> {
        let names = (first..first + n).map(|i| self.username(i)).collect();
        self.http.sign_up(names, &self.public_key, PASSWORD).await
    }

    /// Opens one stream for each of `users`, which join the online users, and waits
    /// until the api servers count them.
    pub async fn go_online(&mut self, users: Vec<User>) -> anyhow::Result<()> {
        let first = self.users.len();
        let tracker = &self.tracker;
        let http = &self.http;
        let handles: Vec<JoinHandle<()>> = stream::iter(users.iter().enumerate())
            .map(|(i, user)| {
                let index = u32::try_from(first + i).unwrap_or(u32::MAX);
                http.open_stream(index, user, Arc::clone(tracker))
            })
            .buffered(STREAM_OPEN_CONCURRENCY)
            .try_collect()
            .await?;
        self.streams.extend(handles);
        self.users.extend(users);
        crate::system::wait_for_streams(
            &self.plain,
            &self.apis,
            self.streams.len() as u64,
            Duration::from_secs(60),
        )
        .await
    }

    /// Closes the streams of every online user after the first `keep`.
    pub async fn go_offline_after(&mut self, keep: usize) -> anyhow::Result<()> {
        for handle in self.streams.drain(keep..) {
            handle.abort();
        }
        self.users.truncate(keep);
        crate::system::wait_for_streams(
            &self.plain,
            &self.apis,
            keep as u64,
            Duration::from_secs(60),
        )
        .await
    }

    fn username(&self, i: usize) -> String {
        format!("{}_{i}", self.prefix)
    }
}
