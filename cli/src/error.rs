//! What can go wrong, as the user should hear it, and the exit code for each.

use std::process::ExitCode;

use fastchat_protocol::problem::ErrorCode;

/// Exit codes, documented in `fastchat --help` and README.md.
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const AUTH: u8 = 4;
    pub const UNVERIFIED: u8 = 5;
    pub const KEY_CHANGED: u8 = 6;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "cannot reach the FastChat server at {server} ({cause}): is the server running? \
         (--server / FASTCHAT_SERVER)"
    )]
    Unreachable { server: String, cause: String },
    /// TLS failed: the server's certificate is not trusted, or the handshake broke.
    #[error(
        "cannot talk securely to {server} ({cause}); if it uses a certificate of your own \
         authority, pass it with --ca-cert <pem file> (or FASTCHAT_CA_CERT)"
    )]
    Tls { server: String, cause: String },
    #[error("not logged in: run `fastchat login <username>` first")]
    NotLoggedIn,
    /// The session belongs to another server than the one named: its token is not sent.
    #[error(
        "you are logged in as {username} on {session_server}, not on {server}; your session \
         is not sent anywhere else. Log in there first: \
         fastchat --server {server} login {username}"
    )]
    OtherServer {
        username: String,
        session_server: String,
        server: String,
    },
    #[error("{0}")]
    Auth(String),
    /// The server refused the request; `detail` is its explanation.
    #[error("{detail}")]
    Server {
        status: u16,
        /// [`ErrorCode::Unknown`] when the answer carried no code this build knows.
        code: ErrorCode,
        detail: String,
    },
    #[error("{0}")]
    Local(String),
    /// The server refused, explained in the user's terms; `code` is the server's.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    /// The conversation's members changed under the sender.
    #[error("the conversation's members changed ({})", members.join(", "))]
    RecipientsMismatch { members: Vec<String> },
    /// Messages were refused because their signature or encryption did not hold.
    #[error("{0} message(s) failed verification and were not shown")]
    Unverified(usize),
    /// The server answered something this client can prove false (a member the group's
    /// signed history does not have, a key it does not name, a forged statement).
    #[error("refused what the server said: {0}")]
    Untrusted(String),
    /// The server hands out another key for a contact than the one pinned.
    #[error(
        "WARNING: the server now gives a different public key for {user} (fingerprint \
         {served}) than the one you pinned ({pinned}). Someone may be trying to read your \
         messages. If {user} really made a new key, compare safety numbers with them \
         (`fastchat verify {user}`), then accept it with `fastchat trust {user}`."
    )]
    KeyChanged {
        user: String,
        pinned: String,
        served: String,
    },
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_number())
    }

    /// The `code` of the JSON error line: the server's, when it refused, else what went
    /// wrong here.
    pub fn code(&self) -> String {
        match self {
            CliError::Usage(_) => "usage".into(),
            CliError::Unreachable { .. } => "unreachable".into(),
            CliError::Tls { .. } => "tls".into(),
            CliError::NotLoggedIn => "not_logged_in".into(),
            CliError::OtherServer { .. } => "logged_in_elsewhere".into(),
            CliError::Auth(_) => "auth".into(),
            CliError::Server { code, .. } | CliError::Refused { code, .. } => match code {
                ErrorCode::Unknown => "server_error".into(),
                code => code.as_str().into(),
            },
            CliError::Local(_) => "failure".into(),
            CliError::RecipientsMismatch { .. } => "recipients_mismatch".into(),
            CliError::Unverified(_) => "unverified".into(),
            CliError::Untrusted(_) => "untrusted".into(),
            CliError::KeyChanged { .. } => "key_changed".into(),
        }
    }

    /// The HTTP status of the server's refusal, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Server { status, .. } => Some(*status),
            CliError::Refused { code, .. } if *code != ErrorCode::Unknown => Some(code.status()),
            _ => None,
        }
    }

    pub fn exit_number(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Unreachable { .. } | CliError::Tls { .. } => exit::UNREACHABLE,
            CliError::NotLoggedIn | CliError::Auth(_) | CliError::OtherServer { .. } => exit::AUTH,
            CliError::Server { .. }
            | CliError::Local(_)
            | CliError::Refused { .. }
            | CliError::RecipientsMismatch { .. }
            | CliError::Untrusted(_) => exit::FAILURE,
            CliError::Unverified(_) => exit::UNVERIFIED,
            CliError::KeyChanged { .. } => exit::KEY_CHANGED,
        }
    }

    /// Worth retrying with the same client_id: the request may not have arrived.
    pub fn is_transient(&self) -> bool {
        matches!(self, CliError::Unreachable { .. })
            || matches!(self, CliError::Server { status, .. } if *status >= 500)
    }

    pub fn local(context: &str, cause: impl std::fmt::Display) -> Self {
        CliError::Local(format!("{context}: {cause}"))
    }

    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        CliError::Refused {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
