//! Other users' public keys, pinned on first use (`<home>/known_keys/<user>.pem`). A key
//! the server later swaps is refused loudly: that is how a malicious server would try
//! to read messages.

use std::collections::HashMap;

use fastchat_protocol::keys::{self, RsaPublicKey};
use fastchat_protocol::problem::ErrorCode;

use crate::client::Client;
use crate::error::{CliError, Result};
use crate::home::Home;

pub struct Contacts<'a> {
    home: &'a Home,
    client: &'a Client,
    cache: HashMap<String, RsaPublicKey>,
}

impl<'a> Contacts<'a> {
    pub fn new(home: &'a Home, client: &'a Client) -> Self {
        Self {
            home,
            client,
            cache: HashMap::new(),
        }
    }

    /// `username`'s public key, checked against the pinned one.
    pub async fn public_key(&mut self, username: &str) -> Result<RsaPublicKey> {
        if let Some(key) = self.cache.get(username) {
            return Ok(key.clone());
        }
        let profile = self.client.user(username).await.map_err(|e| match e {
            CliError::Server {
                code: ErrorCode::UserNotFound,
                ..
            } => CliError::Local(format!("there is no user called {username}")),
            other => other,
        })?;
        let key = keys::parse_public_key_pem(&profile.public_key)
            .map_err(|e| CliError::local(&format!("{username}'s public key"), e))?;
        match self.home.pinned_key(username)? {
            Some(pinned) if pinned != key => {
                return Err(CliError::Local(format!(
                    "WARNING: the server now gives a different public key for {username} \
                     (fingerprint {}) than the one first seen ({}). Someone may be trying to \
                     read your messages. If {username} really made a new key, check the \
                     fingerprint with them and delete {}",
                    keys::fingerprint(&key),
                    keys::fingerprint(&pinned),
                    self.home.pinned_key_path(username).display()
                )))
            }
            Some(_) => {}
            None => self.home.pin_key(username, &key)?,
        }
        self.cache.insert(username.to_owned(), key.clone());
        Ok(key)
    }
}
