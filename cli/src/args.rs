//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(
    name = "fastchat",
    version,
    about = "End-to-end encrypted chat: every message is encrypted and signed on this machine.",
    after_help = "Exit codes: 0 success, 1 failure, 2 bad usage, 3 server unreachable, \
                  4 not logged in or wrong credentials, 5 a received message failed \
                  verification (it was not shown), 6 a contact's key changed (refused)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Server URL [default: the server you logged in to, else http://127.0.0.1:8080]
    #[arg(long, global = true, env = "FASTCHAT_SERVER")]
    pub server: Option<String>,

    /// Folder for your session and keys [default: ~/.fastchat]
    #[arg(long, global = true, env = "FASTCHAT_HOME")]
    pub home: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Where received images are saved [default: <home>/downloads]
    #[arg(long, global = true, env = "FASTCHAT_DOWNLOADS")]
    pub downloads: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account: makes your key pair here and logs you in.
    Signup(Credentials),
    /// Log in; on a new machine this restores your private key from its encrypted backup.
    Login(Credentials),
    /// End this session on every server.
    Logout,
    /// Show who you are logged in as, and your key fingerprint.
    Whoami,
    /// List users, optionally those whose names start with PREFIX.
    Users {
        prefix: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: u32,
    },
    /// Send an end-to-end encrypted message: `send <user> <text>`, or
    /// `send --group <name> <text>`; the text `-` reads it from standard input.
    /// With `--image <path>`, send that image instead of text.
    Send {
        /// Send to this group instead of a user.
        #[arg(long)]
        group: Option<String>,
        /// Send this image (PNG, JPEG, GIF or WebP), encrypted.
        #[arg(long)]
        image: Option<PathBuf>,
        #[arg(num_args = 0..=2, value_names = ["USER", "TEXT"])]
        args: Vec<String>,
    },
    /// Show the messages that arrived since the last recv, then exit.
    Recv {
        /// Keep running and show messages as they arrive (reconnects on its own).
        #[arg(long, short)]
        follow: bool,
    },
    /// Show your conversation with a user (or a group), oldest first.
    History {
        #[arg(required_unless_present = "group")]
        with: Option<String>,
        #[arg(long, conflicts_with = "with")]
        group: Option<String>,
        /// How many messages.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Only messages older than this message id (for paging back).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Talk live with a user (or a group): type lines to send; theirs appear as they arrive.
    Chat {
        #[arg(required_unless_present = "group")]
        with: Option<String>,
        #[arg(long, conflicts_with = "with")]
        group: Option<String>,
    },
    /// Groups: create them, manage members and admins, see who is in them.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show the safety number you and USER compare to know your keys are each other's.
    Verify {
        user: String,
        /// You compared the numbers and they match: mark USER verified.
        #[arg(long)]
        confirm: bool,
    },
    /// Accept the key the server now gives for USER, after comparing safety numbers.
    Trust { user: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (you become its admin) with these members.
    Create { name: String, members: Vec<String> },
    /// Add a member (admins only).
    Add { name: String, username: String },
    /// Remove a member (admins only).
    Remove { name: String, username: String },
    /// Leave a group. If you were its last admin, the longest-standing member takes over.
    Leave { name: String },
    /// Make a member an admin (admins only).
    Admin { name: String, username: String },
    /// The groups you are in.
    List,
    /// A group's members and admins.
    Info { name: String },
}

#[derive(Debug, Args)]
pub struct Credentials {
    pub username: String,
    /// Read the password from the first line of standard input (for scripts).
    #[arg(long)]
    pub password_stdin: bool,
}
