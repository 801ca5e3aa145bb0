//! The FastChat home folder (`--home`, `FASTCHAT_HOME`, default `~/.fastchat`): the
//! session, the private keys, the contacts' pinned keys, the groups' verified chains and
//! what `recv` has shown, all readable by the owner only. Every file name in it is made
//! here from a checked name or id, never from text a server sent.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fastchat_protocol::keys::{self, RsaPrivateKey};
use fastchat_protocol::names::Username;
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// The logged-in session, `session.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub server: String,
    pub username: Username,
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

    /// Reads `<home>/<relative>` as JSON; `None` when there is no such file.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, relative: &Path) -> Result<Option<T>> {
        let path = self.dir.join(relative);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                CliError::local(
                    &format!(
                        "{} is damaged (delete it to start it afresh)",
                        path.display()
                    ),
                    e,
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::local(&format!("reading {}", path.display()), e)),
        }
    }

    /// Writes `value` as JSON to `<home>/<relative>`, readable by the owner only.
    pub fn write_json<T: Serialize>(&self, relative: &Path, value: &T) -> Result<()> {
        let json = serde_json::to_vec_pretty(value)
            .map_err(|e| CliError::local("encoding a file of the home folder", e))?;
        self.write_private(&self.dir.join(relative), &json)
    }

    /// Appends a line to `<home>/<relative>` (made readable by the owner only).
    pub fn append_line(&self, relative: &Path, line: &str) -> Result<()> {
        let path = self.dir.join(relative);
        if let Some(parent) = path.parent() {
            self.ensure_dir(parent)?;
        }
        let append = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)?;
            writeln!(file, "{line}")
        };
        append().map_err(|e| CliError::local(&format!("writing {}", path.display()), e))
    }

    /// The lines of `<home>/<relative>`; none when there is no such file.
    pub fn read_lines(&self, relative: &Path) -> Result<Vec<String>> {
        let path = self.dir.join(relative);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(CliError::local(&format!("reading {}", path.display()), e)),
        }
    }
}
