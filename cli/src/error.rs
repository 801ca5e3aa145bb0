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
    #[error("cannot reach the FastChat server at {server}: {cause}")]
    Unreachable { server: String, cause: String },
    #[error("not logged in: run `fastchat login <username>` first")]
    NotLoggedIn,
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
        ExitCode::from(match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Unreachable { .. } => exit::UNREACHABLE,
            CliError::NotLoggedIn | CliError::Auth(_) => exit::AUTH,
            CliError::Server { .. }
            | CliError::Local(_)
            | CliError::RecipientsMismatch { .. }
            | CliError::Untrusted(_) => exit::FAILURE,
            CliError::Unverified(_) => exit::UNVERIFIED,
            CliError::KeyChanged { .. } => exit::KEY_CHANGED,
        })
    }

    /// Worth retrying with the same client_id: the request may not have arrived.
    pub fn is_transient(&self) -> bool {
        matches!(self, CliError::Unreachable { .. })
            || matches!(self, CliError::Server { status, .. } if *status >= 500)
    }

    pub fn local(context: &str, cause: impl std::fmt::Display) -> Self {
        CliError::Local(format!("{context}: {cause}"))
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
