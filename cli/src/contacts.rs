//! Other users' public keys, pinned the first time this client sees each one (and its
//! fingerprint shown), verifiable as a safety number (`fastchat verify`), and refused
//! loudly when the server later hands out another: that is how a server would try to
//! read messages. Kept in `<home>/contacts.json`, and on the server encrypted under a key
//! only the user's private key derives (`keys::seal_contacts`), so that a login in a fresh
//! home restores the pins and verifications.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use fastchat_protocol::keys::{self, RsaPrivateKey, RsaPublicKey};
use fastchat_protocol::names::Username;
use fastchat_protocol::problem::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};
use crate::home::Home;
use crate::net::client::Client;
use crate::output;

const FILE: &str = "contacts.json";

/// One contact's pinned key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// SubjectPublicKeyInfo PEM.
    pub key: String,
    pub fingerprint: String,
    /// The user compared safety numbers with them and said they match.
    #[serde(default)]
    pub verified: bool,
    pub pinned_at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    contacts: BTreeMap<Username, Contact>,
}

/// Whose contacts these are: their name and the key that encrypts the server's copy.
pub struct Owner {
    pub name: Username,
    pub backup_key: [u8; 32],
}

impl Owner {
    pub fn new(name: &Username, private_key: &RsaPrivateKey) -> Self {
        Owner {
            name: name.clone(),
            backup_key: keys::contacts_key(name.as_str(), private_key),
        }
    }
}

pub struct Contacts<'a> {
    home: &'a Home,
    client: &'a Client,
    owner: &'a Owner,
    book: Book,
    /// Keys as the server served them this run, checked against the pins.
    served: HashMap<Username, RsaPublicKey>,
    quiet: bool,
}

impl<'a> Contacts<'a> {
    /// The contacts in the home (none yet in a fresh one). `quiet`: no notices on
    /// standard error (for `--json`).
    pub fn load(home: &'a Home, client: &'a Client, owner: &'a Owner, quiet: bool) -> Result<Self> {
        let book = home.read_json::<Book>(Path::new(FILE))?.unwrap_or_default();
        Ok(Self {
            home,
            client,
            owner,
            book,
            served: HashMap::new(),
            quiet,
        })
    }

    pub fn get(&self, user: &Username) -> Option<&Contact> {
        self.book.contacts.get(user)
    }

    /// The key the server serves for `user` now (not checked against the pin).
    pub async fn served_key(&mut self, user: &Username) -> Result<RsaPublicKey> {
        if let Some(key) = self.served.get(user) {
            return Ok(key.clone());
        }
        let profile = self.client.user(user.as_str()).await.map_err(|e| match e {
            CliError::Server {
                code: ErrorCode::UserNotFound,
                ..
            } => CliError::refused(
                ErrorCode::UserNotFound,
                format!("there is no user called {user}"),
            ),
            other => other,
        })?;
        if profile.username != *user {
            return Err(CliError::Untrusted(format!(
                "asked for {user}'s key, the server answered with {}'s",
                profile.username
            )));
        }
        let key = keys::parse_public_key_pem(&profile.public_key)
            .map_err(|e| CliError::Untrusted(format!("the server's key for {user}: {e}")))?;
        self.served.insert(user.clone(), key.clone());
        Ok(key)
    }

    /// `user`'s public key: the pinned one, which the server must still be serving. The
    /// first time, the served key is pinned and its fingerprint shown.
    pub async fn public_key(&mut self, user: &Username) -> Result<RsaPublicKey> {
        let served = self.served_key(user).await?;
        let fingerprint = keys::fingerprint(&served);
        match self.book.contacts.get(user) {
            Some(pinned) if pinned.fingerprint == fingerprint => Ok(served),
            Some(pinned) => Err(CliError::KeyChanged {
                user: user.to_string(),
                pinned: pinned.fingerprint.clone(),
                served: fingerprint,
            }),
            None => {
                self.book.contacts.insert(
                    user.clone(),
                    Contact {
                        key: keys::public_key_pem(&served),
                        fingerprint: fingerprint.clone(),
                        verified: false,
                        pinned_at: Utc::now(),
                    },
                );
                self.save().await?;
                if !self.quiet {
                    crate::notice!(
                        "fastchat: first contact with {user}: pinned their key, fingerprint \
                         {fingerprint}. Compare safety numbers with them: fastchat verify {user}"
                    );
                }
                Ok(served)
            }
        }
    }

    /// `user`'s key, which must be the one a group's signed history names for them (and,
    /// as always, the pinned one). A key the history does not name is never pinned.
    pub async fn key_with_fingerprint(
        &mut self,
        user: &Username,
        expected: &str,
    ) -> Result<RsaPublicKey> {
        let served = self.served_key(user).await?;
        if keys::fingerprint(&served) != expected {
            return Err(CliError::Untrusted(format!(
                "the key the server gives for {user} is not the one the group's signed history \
                 names for them ({expected})"
            )));
        }
        self.public_key(user).await
    }

    /// Marks `user` verified (after the user compared safety numbers).
    pub async fn mark_verified(&mut self, user: &Username) -> Result<()> {
        if let Some(contact) = self.book.contacts.get_mut(user) {
            contact.verified = true;
        }
        self.save().await
    }

    /// Pins `key` for `user` in place of whatever was pinned (not yet verified).
    pub async fn trust(&mut self, user: &Username, key: &RsaPublicKey) -> Result<()> {
        self.book.contacts.insert(
            user.clone(),
            Contact {
                key: keys::public_key_pem(key),
                fingerprint: keys::fingerprint(key),
                verified: false,
                pinned_at: Utc::now(),
            },
        );
        self.save().await
    }

    /// Writes the contacts here and their encrypted copy to the server. A failed upload
    /// is only a warning: the local pins are what this client goes by.
    async fn save(&mut self) -> Result<()> {
        self.home.write_json(Path::new(FILE), &self.book)?;
        let json = serde_json::to_vec(&self.book)
            .map_err(|e| CliError::local("encoding the contacts", e))?;
        let sealed = keys::seal_contacts(&self.owner.backup_key, self.owner.name.as_str(), &json);
        if let Err(e) = self.client.put_contacts(&sealed).await {
            if !self.quiet {
                crate::notice!(
                    "fastchat: warning: the server did not take the backup of your contacts: {}",
                    output::sanitize(&e.to_string())
                );
            }
        }
        Ok(())
    }

    /// Brings back the contacts from the server's encrypted copy, keeping any pin this
    /// home already has (and saying so where the two disagree).
    pub async fn restore(&mut self) -> Result<usize> {
        let sealed = match self.client.contacts().await {
            Ok(backup) => backup.contacts,
            Err(CliError::Server {
                code: ErrorCode::NoContactsBackup,
                ..
            }) => return Ok(0),
            Err(e) => return Err(e),
        };
        let json = keys::open_contacts(&self.owner.backup_key, self.owner.name.as_str(), &sealed)
            .ok_or_else(|| {
            CliError::Untrusted(
                "the server's copy of your contacts does not decrypt: it was altered".into(),
            )
        })?;
        let backup: Book = serde_json::from_slice(&json)
            .map_err(|e| CliError::local("reading the backup of your contacts", e))?;
        let mut restored = 0;
        for (user, contact) in backup.contacts {
            match self.book.contacts.get(&user) {
                Some(local) if local.fingerprint != contact.fingerprint => crate::notice!(
                    "fastchat: warning: your backup pins another key for {user} than this home \
                     does; keeping this home's ({})",
                    local.fingerprint
                ),
                Some(_) => {}
                None => {
                    self.book.contacts.insert(user, contact);
                    restored += 1;
                }
            }
        }
        if restored > 0 {
            self.home.write_json(Path::new(FILE), &self.book)?;
        }
        Ok(restored)
    }
}
