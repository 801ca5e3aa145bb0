//! What every command needs: the home folder, the server to talk to, the output mode.

use serde_json::Value;

use crate::args::{Global, DEFAULT_SERVER};
use crate::client::Client;
use crate::error::{CliError, Result};
use crate::home::{Home, Session};
use crate::output;

pub struct Context {
    pub home: Home,
    pub json: bool,
    /// Where received images go.
    pub downloads: std::path::PathBuf,
    server: Option<String>,
}

impl Context {
    pub fn new(global: Global) -> Result<Self> {
        let dir = match global.home {
            Some(dir) => dir,
            None => Home::default_dir()?,
        };
        let downloads = global.downloads.unwrap_or_else(|| dir.join("downloads"));
        Ok(Self {
            home: Home::new(dir),
            json: global.json,
            downloads,
            server: global.server,
        })
    }

    pub fn session(&self) -> Result<Session> {
        self.home.load_session()?.ok_or(CliError::NotLoggedIn)
    }

    /// A client for `--server`, else the session's server, else the default.
    pub fn client(&self, session: Option<&Session>) -> Result<Client> {
        let server = self
            .server
            .as_deref()
            .or(session.map(|s| s.server.as_str()))
            .unwrap_or(DEFAULT_SERVER);
        Client::new(server, session.map(|s| s.token.clone()))
    }

    /// Prints `value` as one JSON line with `--json`, else the human text.
    pub fn print(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            output::json(&value);
        } else {
            let text = text();
            if !text.is_empty() {
                output::line(&text);
            }
        }
    }
}
