//! What every command needs: the home folder, the server to talk to (and how), the
//! output mode.

use std::cell::OnceCell;
use std::path::PathBuf;

use crate::args::{Global, DEFAULT_SERVER};
use crate::error::{CliError, Result};
use crate::home::{Home, Session};
use crate::net::client::Client;
use crate::net::tls::{ServerUrl, Tls};

pub struct Context {
    pub home: Home,
    pub json: bool,
    /// Where received images go.
    pub downloads: PathBuf,
    /// `--server` (or `FASTCHAT_SERVER`), as given.
    server: Option<String>,
    ca_cert: Option<PathBuf>,
    insecure_http: bool,
    tls: OnceCell<Tls>,
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
            server: global.server.filter(|s| !s.trim().is_empty()),
            ca_cert: global.ca_cert,
            insecure_http: global.insecure_http,
            tls: OnceCell::new(),
        })
    }

    pub fn session(&self) -> Result<Session> {
        self.home.load_session()?.ok_or(CliError::NotLoggedIn)
    }

    /// The server `--server` names, checked.
    fn named_server(&self) -> Result<Option<ServerUrl>> {
        self.server
            .as_deref()
            .map(|s| ServerUrl::parse(s, self.insecure_http))
            .transpose()
    }

    /// The server a command without a session talks to: `--server`, else the one this
    /// home's session is on, else the default.
    pub fn server_for_login(&self) -> Result<ServerUrl> {
        if let Some(named) = self.named_server()? {
            return Ok(named);
        }
        match self.home.load_session().ok().flatten() {
            Some(session) => ServerUrl::parse(&session.server, self.insecure_http),
            None => ServerUrl::parse(DEFAULT_SERVER, self.insecure_http),
        }
    }

    /// The session's own server. Its token goes nowhere else: a `--server` naming
    /// another one is refused.
    pub fn session_server(&self, session: &Session) -> Result<ServerUrl> {
        let own = ServerUrl::parse(&session.server, self.insecure_http)?;
        match self.named_server()? {
            Some(named) if named != own => Err(CliError::OtherServer {
                username: session.username.to_string(),
                session_server: own.to_string(),
                server: named.to_string(),
            }),
            _ => Ok(own),
        }
    }

    fn tls_for(&self, server: &ServerUrl) -> Result<Option<Tls>> {
        if !server.is_https() {
            return Ok(None);
        }
        if let Some(tls) = self.tls.get() {
            return Ok(Some(tls.clone()));
        }
        let tls = Tls::new(self.ca_cert.as_deref())?;
        Ok(Some(self.tls.get_or_init(|| tls).clone()))
    }

    /// A client for `server`, with no session.
    pub fn anonymous_client(&self, server: ServerUrl) -> Result<Client> {
        let tls = self.tls_for(&server)?;
        Client::new(server, tls, None)
    }

    /// A client for the session's own server, carrying its token.
    pub fn client(&self, session: &Session) -> Result<Client> {
        let server = self.session_server(session)?;
        let tls = self.tls_for(&server)?;
        Client::new(server, tls, Some(session.token.clone()))
    }

    /// Words for a person on standard output (not with `--json`, nor into a pipe).
    pub fn for_a_person(&self) -> bool {
        crate::output::for_a_person(self.json)
    }

    /// Notices for a person on standard error.
    pub fn notices(&self) -> bool {
        crate::output::stderr_for_a_person(self.json)
    }
}
