//! The command line: every command, argument and example, from which `--help`, the
//! shell completions and the man page are all made.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (the server refused, or a local problem), explained on stderr
  2  bad usage (unknown command, a name that cannot exist, a password too short)
  3  the server cannot be reached
  4  not logged in (here, or on that server), wrong credentials, or too many failed logins
  5  a received message failed verification: it was not shown, and a warning says which
  6  a contact's key is not the one pinned: nothing was sent

With --json, output is JSON Lines (one object per line, each with a \"type\"; see
docs/cli-json.md), and a failure prints one {\"type\": \"error\", \"code\": ...} line on stderr.";

#[derive(Debug, Parser)]
#[command(
    name = "fastchat",
    version,
    about = "End-to-end encrypted chat: every message is encrypted and signed on this machine.",
    after_help = EXIT_CODES,
    after_long_help = EXIT_CODES,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Server URL [default: the server you logged in to, else http://127.0.0.1:8080].
    /// Commands that use your session refuse another server than the session's: log in
    /// there first.
    #[arg(long, global = true, env = "FASTCHAT_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Folder for your session and keys [default: ~/.fastchat]
    #[arg(long, global = true, env = "FASTCHAT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Print JSON Lines (one object per line, each with a "type") instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Where received images are saved [default: <home>/downloads]
    #[arg(long, global = true, env = "FASTCHAT_DOWNLOADS", value_name = "DIR")]
    pub downloads: Option<PathBuf>,

    /// Also trust the certificate authority in this PEM file for https:// servers
    /// (besides the system's).
    #[arg(long, global = true, env = "FASTCHAT_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Allow plain http:// to a server on another machine (your session token would
    /// cross the network unencrypted). Loopback addresses never need it.
    #[arg(long, global = true, env = "FASTCHAT_INSECURE_HTTP")]
    pub insecure_http: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account: makes your key pair here and logs you in.
    #[command(after_help = "\
Examples:
  fastchat signup alice                       asks for a password (twice)
  echo \"$PASSWORD\" | fastchat signup alice --password-stdin --json")]
    Signup(Credentials),
    /// Log in; on a new machine this restores your private key from its encrypted backup.
    /// Logging in as someone else ends the session this home had first.
    #[command(after_help = "\
Examples:
  fastchat login alice
  FASTCHAT_HOME=/tmp/alice2 fastchat --server https://chat.example.org login alice")]
    Login(Credentials),
    /// End this session on every server.
    #[command(after_help = "Example:\n  fastchat logout")]
    Logout,
    /// Show who you are logged in as, and your key fingerprint (works offline too).
    #[command(after_help = "Examples:\n  fastchat whoami\n  fastchat whoami --json")]
    Whoami,
    /// List users, optionally those whose names start with PREFIX.
    #[command(after_help = "\
Examples:
  fastchat users              everyone (the first 50)
  fastchat users al           names starting with al")]
    Users {
        /// Only users whose names start with this (a-z, 0-9 and _).
        prefix: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: u32,
    },
    /// Send an end-to-end encrypted message to a user, or with --group to a group. The
    /// rest of the line is the message; `-` alone reads it from standard input.
    #[command(
        override_usage = "fastchat send [OPTIONS] <USER> <TEXT>...\n       \
                          fastchat send [OPTIONS] --group <NAME> <TEXT>...\n       \
                          fastchat send [OPTIONS] <USER> --image <PATH>",
        after_help = "\
Examples:
  fastchat send bob lunch at noon?
  fastchat send --group team hello all
  echo \"from a script\" | fastchat send bob -
  fastchat send bob --image cat.png
  fastchat send bob -- --not-an-option      (-- ends the options)"
    )]
    Send {
        /// Send to this group instead of a user.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// Send this image (PNG, JPEG, GIF or WebP, up to 10 MiB), encrypted.
        #[arg(long, value_name = "PATH")]
        image: Option<PathBuf>,
        /// Who to send to (with --group, the first word of the message instead).
        #[arg(value_name = "USER", allow_hyphen_values = true)]
        to: Option<String>,
        /// The message: the rest of the line, words joined by spaces; `-` reads it from
        /// standard input.
        #[arg(
            value_name = "TEXT",
            trailing_var_arg = true,
            allow_hyphen_values = true,
            num_args = 0..
        )]
        text: Vec<String>,
    },
    /// Show the messages that arrived since the last recv, then exit; marks their
    /// conversations read.
    #[command(after_help = "\
Examples:
  fastchat recv
  fastchat recv --follow               keep showing messages as they arrive
  fastchat recv --json | jq -r 'select(.type == \"message\") | .text'")]
    Recv {
        /// Keep running and show messages as they arrive (reconnects on its own).
        #[arg(long, short)]
        follow: bool,
    },
    /// Show your conversation with a user (or a group), oldest first; marks it read.
    #[command(after_help = "\
Examples:
  fastchat history bob
  fastchat history --group team --limit 50
  fastchat history bob --before 1234       the page before message 1234")]
    History {
        /// The user whose conversation with you to show.
        #[arg(required_unless_present = "group")]
        with: Option<String>,
        /// Show this group's conversation instead.
        #[arg(long, conflicts_with = "with", value_name = "NAME")]
        group: Option<String>,
        /// How many messages.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Only messages older than this message id (for paging back: the previous page
        /// says which).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
    /// Talk live with a user (or a group): type lines to send; theirs appear as they
    /// arrive. /help inside lists the commands (/quit, /image, /who).
    #[command(after_help = "\
Examples:
  fastchat chat bob
  fastchat chat --group team")]
    Chat {
        /// The user to chat with.
        #[arg(required_unless_present = "group")]
        with: Option<String>,
        /// Chat in this group instead.
        #[arg(long, conflicts_with = "with", value_name = "NAME")]
        group: Option<String>,
    },
    /// The people and groups you have talked with, newest first, with how many
    /// messages you have not read.
    #[command(
        visible_alias = "convs",
        after_help = "Examples:\n  fastchat conversations\n  fastchat conversations --json"
    )]
    Conversations,
    /// Groups: create them, manage members and admins, see who is in them.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show the safety number you and USER compare to know your keys are each other's.
    #[command(after_help = "\
Examples:
  fastchat verify bob                 compare the number with bob's `fastchat verify alice`
  fastchat verify bob --confirm       they match: mark bob verified")]
    Verify {
        /// The contact to compare with.
        user: String,
        /// You compared the numbers and they match: mark USER verified.
        #[arg(long)]
        confirm: bool,
    },
    /// Accept the key the server now gives for USER, after comparing safety numbers.
    #[command(after_help = "Example:\n  fastchat trust bob")]
    Trust {
        /// The contact whose new key to accept.
        user: String,
    },
    /// Print a shell completion script for SHELL.
    #[command(after_help = "\
Examples:
  fastchat completions bash > ~/.local/share/bash-completion/completions/fastchat
  fastchat completions zsh > ~/.zfunc/_fastchat
  fastchat completions fish > ~/.config/fish/completions/fastchat.fish")]
    Completions {
        /// The shell to complete in.
        shell: Shell,
    },
    /// Print the manual page (roff), for `man`.
    #[command(after_help = "\
Example:
  fastchat manpage > ~/.local/share/man/man1/fastchat.1 && man fastchat")]
    Manpage,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (you become its admin) with these members.
    #[command(after_help = "Example:\n  fastchat group create team bob carol")]
    Create {
        /// The group's name: 3 to 32 characters of a-z, 0-9 and _.
        name: String,
        /// Who else is in it.
        members: Vec<String>,
    },
    /// Add a member (admins only).
    #[command(after_help = "Example:\n  fastchat group add team dave")]
    Add {
        /// The group.
        name: String,
        /// The user to add.
        username: String,
    },
    /// Remove a member (admins only).
    #[command(after_help = "Example:\n  fastchat group remove team carol")]
    Remove {
        /// The group.
        name: String,
        /// The member to remove.
        username: String,
    },
    /// Leave a group. If you were its last admin, the longest-standing member takes over.
    #[command(after_help = "Example:\n  fastchat group leave team")]
    Leave {
        /// The group to leave.
        name: String,
    },
    /// Make a member an admin (admins only).
    #[command(after_help = "Example:\n  fastchat group admin team bob")]
    Admin {
        /// The group.
        name: String,
        /// The member to make an admin.
        username: String,
    },
    /// The groups you are in.
    #[command(after_help = "Example:\n  fastchat group list")]
    List,
    /// A group's members and admins, as its verified signed history says.
    #[command(after_help = "Example:\n  fastchat group info team")]
    Info {
        /// The group.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct Credentials {
    /// Your username: 3 to 32 characters of a-z, 0-9 and _.
    pub username: String,
    /// Read the password from the first line of standard input (for scripts).
    #[arg(long)]
    pub password_stdin: bool,
}
