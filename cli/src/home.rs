//! The FastChat home folder (`--home`, `FASTCHAT_HOME`, default `~/.fastchat`): the
//! session and the private keys, readable by the owner only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fastchat_protocol::keys::{self, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// The logged-in session, `session.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub server: String,
    pub username: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

pub struct Home {
    dir: PathBuf,
}

impl Home {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `$FASTCHAT_HOME`, else `~/.fastchat`.
    pub fn default_dir() -> Result<PathBuf> {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".fastchat"))
            .ok_or_else(|| CliError::Usage("HOME is not set: pass --home or FASTCHAT_HOME".into()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CliError::local(&format!("creating {}", dir.display()), e))
    }

    /// Writes `contents` to `path` readable by the owner only, replacing it atomically.
    fn write_private(&self, path: &Path, contents: &[u8]) -> Result<()> {
        if let Some(parent) = path.parent() {
            self.ensure_dir(parent)?;
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(contents)?;
            file.sync_all()?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| CliError::local(&format!("writing {}", path.display()), e))
    }

    fn session_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }

    pub fn key_path(&self, username: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{username}.pem"))
    }

    pub fn load_session(&self) -> Result<Option<Session>> {
        let path = self.session_path();
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                CliError::local(
                    &format!("{} is damaged (delete it and log in again)", path.display()),
                    e,
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::local(&format!("reading {}", path.display()), e)),
        }
    }

    pub fn save_session(&self, session: &Session) -> Result<()> {
        let json = serde_json::to_vec_pretty(session)
            .map_err(|e| CliError::local("encoding the session", e))?;
        self.write_private(&self.session_path(), &json)
    }

    pub fn forget_session(&self) -> Result<()> {
        match fs::remove_file(self.session_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::local("removing the session", e)),
        }
    }

    pub fn load_private_key(&self, username: &str) -> Result<Option<RsaPrivateKey>> {
        let path = self.key_path(username);
        match fs::read_to_string(&path) {
            Ok(pem) => keys::parse_private_key_pem(&pem)
                .map(Some)
                .map_err(|e| CliError::local(&path.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::local(&format!("reading {}", path.display()), e)),
        }
    }

    pub fn save_private_key(&self, username: &str, key: &RsaPrivateKey) -> Result<()> {
        let pem = keys::private_key_pem(key);
        self.write_private(&self.key_path(username), pem.as_bytes())
    }

    pub fn pinned_key_path(&self, username: &str) -> PathBuf {
        self.dir.join("known_keys").join(format!("{username}.pem"))
    }

    pub fn pinned_key(&self, username: &str) -> Result<Option<RsaPublicKey>> {
        let path = self.pinned_key_path(username);
        match fs::read_to_string(&path) {
            Ok(pem) => keys::parse_public_key_pem(&pem)
                .map(Some)
                .map_err(|e| CliError::local(&path.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::local(&format!("reading {}", path.display()), e)),
        }
    }

    pub fn pin_key(&self, username: &str, key: &RsaPublicKey) -> Result<()> {
        let pem = keys::public_key_pem(key);
        self.write_private(&self.pinned_key_path(username), pem.as_bytes())
    }

    fn cursor_path(&self, username: &str) -> PathBuf {
        self.dir.join("cursors").join(username)
    }

    /// The seq of the last inbox event `recv` showed `username` (0: none yet).
    pub fn cursor(&self, username: &str) -> Result<i64> {
        let path = self.cursor_path(username);
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|e| CliError::local(&format!("{} is damaged", path.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(CliError::local(&format!("reading {}", path.display()), e)),
        }
    }

    pub fn save_cursor(&self, username: &str, seq: i64) -> Result<()> {
        self.write_private(&self.cursor_path(username), seq.to_string().as_bytes())
    }

    fn group_path(&self, group: &str) -> PathBuf {
        self.dir.join("groups").join(format!("{group}.json"))
    }

    /// The members last seen for `group`, to encrypt for without asking the server
    /// each time (the server says when they changed).
    pub fn group_members(&self, group: &str) -> Result<Option<Vec<String>>> {
        match fs::read_to_string(self.group_path(group)) {
            Ok(text) => Ok(serde_json::from_str(&text).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::local("reading the group's members", e)),
        }
    }

    pub fn save_group_members(&self, group: &str, members: &[String]) -> Result<()> {
        let json =
            serde_json::to_vec(members).map_err(|e| CliError::local("encoding members", e))?;
        self.write_private(&self.group_path(group), &json)
    }

    pub fn forget_group_members(&self, group: &str) -> Result<()> {
        match fs::remove_file(self.group_path(group)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::local("forgetting the group's members", e)),
        }
    }
}
