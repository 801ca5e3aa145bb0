//! signup, login, logout, whoami, users.

use std::io::{BufRead, IsTerminal};

use fastchat_protocol::keys::RsaPrivateKey;
use fastchat_protocol::keys::{self, LoginKeys};
use fastchat_protocol::names::{is_name_chars, Username, NAME_MAX_LEN};
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{CreateSession, CreateUser};

use crate::args::Credentials;
use crate::contacts::{Contacts, Owner};
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::home::Session;
use crate::me::Me;
use crate::net::client::Client;
use crate::output::json::Line;
use crate::output::{self, time};

/// The CLI's own rule, since the server only ever sees a derived key.
const PASSWORD_MIN_CHARS: usize = 8;

fn too_short(password: &str) -> bool {
    password.chars().count() < PASSWORD_MIN_CHARS
}

fn prompt(text: &str) -> Result<String> {
    rpassword::prompt_password(text).map_err(|e| CliError::local("reading the password", e))
}

/// The password from the first line of stdin (`--password-stdin`), checked.
fn password_from_stdin(new: bool) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::local("reading the password from stdin", e))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }
    if new && too_short(&password) {
        return Err(CliError::Usage(format!(
            "choose a password of at least {PASSWORD_MIN_CHARS} characters"
        )));
    }
    Ok(password)
}

fn no_terminal() -> CliError {
    CliError::Usage(
        "no terminal to ask for a password on: pass --password-stdin and pipe it in".into(),
    )
}

/// A new password: the rule said first, asked until it follows the rule and is typed
/// the same twice.
fn new_password(creds: &Credentials) -> Result<String> {
    if creds.password_stdin {
        return password_from_stdin(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    eprintln!("Choose a password of at least {PASSWORD_MIN_CHARS} characters.");
    loop {
        let password = prompt("Password: ")?;
        if too_short(&password) {
            eprintln!("That is too short: at least {PASSWORD_MIN_CHARS} characters. Try again.");
            continue;
        }
        if prompt("Password again: ")? == password {
            return Ok(password);
        }
        eprintln!("The passwords do not match. Try again.");
    }
}

fn existing_password(creds: &Credentials) -> Result<String> {
    if creds.password_stdin {
        return password_from_stdin(false);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    loop {
        let password = prompt("Password: ")?;
        if !password.is_empty() {
            return Ok(password);
        }
    }
}

fn parse_username(name: &str) -> Result<Username> {
    Username::parse(name).map_err(|e| CliError::Usage(format!("username {name:?}: {e}")))
}

/// Password-derived keys take a moment (600,000 PBKDF2 rounds): off the async runtime.
async fn derive(username: &Username, password: String) -> Result<LoginKeys> {
    let username = username.as_str().to_owned();
    tokio::task::spawn_blocking(move || LoginKeys::derive(&username, &password))
        .await
        .map_err(|e| CliError::local("deriving keys", e))
}

fn taken(username: &Username) -> CliError {
    CliError::refused(
        ErrorCode::UsernameTaken,
        format!("the username {username} is taken; choose another"),
    )
}

pub async fn signup(ctx: &Context, creds: &Credentials) -> Result<()> {
    let username = parse_username(&creds.username)?;
    let client = ctx.anonymous_client(ctx.server_for_login()?)?;
    // Before asking for a password: is the name free? (An older server that cannot say
    // is asked at signup itself.)
    match client.username_available(username.as_str()).await {
        Ok(true) => {}
        Ok(false) => return Err(taken(&username)),
        Err(e @ (CliError::Unreachable { .. } | CliError::Tls { .. })) => return Err(e),
        Err(_) => {}
    }
    let password = new_password(creds)?;
    if ctx.notices() {
        eprintln!("Generating your key…");
    }
    let (keys, private_key) = tokio::join!(
        derive(&username, password),
        tokio::task::spawn_blocking(keys::generate_private_key)
    );
    let keys = keys?;
    let private_key = private_key
        .map_err(|e| CliError::local("generating your key pair", e))?
        .map_err(|e| CliError::local("generating your key pair", e))?;
    let public_key = private_key.to_public_key();

    let request = CreateUser {
        username: username.to_string(),
        password: keys.server_password(),
        public_key: keys::public_key_pem(&public_key),
        key_backup: Some(keys::seal_key_backup(
            &keys.enc_key,
            username.as_str(),
            &private_key,
        )),
    };
    let created = client.create_user(&request).await.map_err(|e| match e {
        CliError::Server {
            code: ErrorCode::UsernameTaken,
            ..
        } => taken(&username),
        other => other,
    })?;
    ctx.home.save_private_key(username.as_str(), &private_key)?;
    let ended = end_previous_session(ctx, &username).await;
    let session = Session {
        server: client.server().to_owned(),
        username: created.username,
        token: created.token,
        expires_at: created.expires_at,
    };
    ctx.home.save_session(&session)?;
    let fingerprint = keys::fingerprint(&public_key);
    if ctx.json {
        Line::SignedUp {
            username: session.username,
            server: session.server,
            fingerprint,
        }
        .print();
    } else {
        let mut text = format!("Signed up and logged in as {username}.");
        if let Some(previous) = ended {
            text.push_str(&format!(" ({previous}'s session here was ended first.)"));
        }
        output::line(&format!("{text}\nKey fingerprint: {fingerprint}"));
    }
    Ok(())
}

/// Ends the session this home had (on its own server) before another replaces it, so
/// that no session is left valid that nothing here can end. Returns whose it was when it
/// was someone else's. A server that cannot be reached now is warned about.
async fn end_previous_session(ctx: &Context, new_user: &Username) -> Option<Username> {
    let previous = ctx.home.load_session().ok().flatten()?;
    let result = match crate::net::tls::ServerUrl::parse(&previous.server, true) {
        Ok(server) => match ctx.anonymous_client(server) {
            Ok(anonymous) => {
                let client = anonymous.with_token(previous.token.clone());
                client.delete_session().await
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) | Err(CliError::Auth(_)) => {}
        Err(e) => {
            if !ctx.json {
                eprintln!(
                    "fastchat: warning: could not end {}'s previous session on {}: {}",
                    previous.username,
                    previous.server,
                    output::sanitize_line(&e.to_string())
                );
            }
        }
    }
    let _ = ctx.home.forget_session();
    (previous.username != *new_user).then_some(previous.username)
}

pub async fn login(ctx: &Context, creds: &Credentials) -> Result<()> {
    let username = parse_username(&creds.username)?;
    let password = existing_password(creds)?;
    let keys = derive(&username, password).await?;
    let client = ctx.anonymous_client(ctx.server_for_login()?)?;
    let created = client
        .create_session(&CreateSession {
            username: username.to_string(),
            password: keys.server_password(),
        })
        .await?;
    let ended = end_previous_session(ctx, &username).await;
    let session = Session {
        server: client.server().to_owned(),
        username: created.username,
        token: created.token,
        expires_at: created.expires_at,
    };
    ctx.home.save_session(&session)?;
    let client = client.with_token(session.token.clone());

    let profile = client.user(username.as_str()).await?;
    let server_key = keys::parse_public_key_pem(&profile.public_key)
        .map_err(|e| CliError::local("the server's copy of your public key", e))?;
    let private_key = match ctx.home.load_private_key(username.as_str())? {
        Some(local) if local.to_public_key() == server_key => local,
        _ => {
            let key = restore_key(&client, &keys, &username, &server_key).await?;
            ctx.home.save_private_key(username.as_str(), &key)?;
            key
        }
    };
    // The pins and verifications of this user's other homes, where this one lacks them.
    let owner = Owner::new(&username, &private_key);
    let restored = Contacts::load(&ctx.home, &client, &owner, ctx.json)?
        .restore()
        .await?;
    let fingerprint = keys::fingerprint(&private_key.to_public_key());
    if ctx.json {
        Line::LoggedIn {
            username: session.username,
            server: session.server,
            fingerprint,
            contacts_restored: restored,
            ended_session_of: ended,
        }
        .print();
    } else {
        let mut text = format!("Logged in as {username} on {}.", session.server);
        if let Some(previous) = ended {
            text.push_str(&format!(" ({previous}'s session here was ended first.)"));
        }
        text.push_str(&format!("\nKey fingerprint: {fingerprint}"));
        if restored > 0 {
            text.push_str(&format!(
                "\nRestored {restored} pinned contact key(s) from your backup."
            ));
        }
        output::line(&text);
    }
    Ok(())
}

/// Fetches and decrypts the key backup, and keeps it only if it matches the public key
/// the server gives everyone else.
async fn restore_key(
    client: &Client,
    keys: &LoginKeys,
    username: &Username,
    server_key: &keys::RsaPublicKey,
) -> Result<RsaPrivateKey> {
    let backup = client.key_backup().await.map_err(|e| match e {
        CliError::Server {
            code: ErrorCode::NoKeyBackup,
            ..
        } => CliError::refused(
            ErrorCode::NoKeyBackup,
            "this account has no key backup and this home has no private key for it",
        ),
        other => other,
    })?;
    let key = keys::open_key_backup(&keys.enc_key, username.as_str(), &backup.key_backup)
        .map_err(|e| CliError::local("restoring your private key", e))?;
    if &key.to_public_key() != server_key {
        return Err(CliError::local(
            "restoring your private key",
            keys::KeyError::KeyMismatch,
        ));
    }
    Ok(key)
}

/// Ends the session on its own server (whatever `--server` says: the token goes only
/// there), then here.
pub async fn logout(ctx: &Context) -> Result<()> {
    let session = ctx.session()?;
    let server = crate::net::tls::ServerUrl::parse(&session.server, true)?;
    let client = ctx
        .anonymous_client(server)?
        .with_token(session.token.clone());
    match client.delete_session().await {
        // Already expired or revoked: the local session is just as dead.
        Ok(()) | Err(CliError::Auth(_)) => {}
        Err(e) => return Err(e),
    }
    ctx.home.forget_session()?;
    if ctx.json {
        Line::LoggedOut {
            username: session.username,
        }
        .print();
    } else {
        output::line(&format!("Logged out {}.", session.username));
    }
    Ok(())
}

/// Who this home is logged in as; checked with the server when it can be reached, and
/// from the home alone (said so) when it cannot.
pub async fn whoami(ctx: &Context) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let session = &me.session;
    let confirmed = match client.user(session.username.as_str()).await {
        Ok(profile) => {
            let server_key = keys::parse_public_key_pem(&profile.public_key)
                .map_err(|e| CliError::local("the server's copy of your public key", e))?;
            if me.public != server_key {
                return Err(CliError::Untrusted(format!(
                    "the server's public key for {} is not the one in this home; \
                     do not trust this server",
                    session.username
                )));
            }
            true
        }
        Err(CliError::Unreachable { .. }) => false,
        Err(e) => return Err(e),
    };
    let fingerprint = keys::fingerprint(&me.public);
    if ctx.json {
        Line::Whoami {
            username: session.username.clone(),
            server: session.server.clone(),
            fingerprint,
            expires_at: session.expires_at,
            confirmed_by_server: confirmed,
        }
        .print();
    } else {
        let mut text = format!(
            "{} on {}\nKey fingerprint: {fingerprint}\nSession expires: {}",
            session.username,
            session.server,
            time::moment(session.expires_at)
        );
        if !confirmed {
            text.push_str(
                "\n(offline: the server cannot be reached, so this is what this home says)",
            );
        }
        output::line(&text);
    }
    Ok(())
}

pub async fn users(ctx: &Context, prefix: Option<&str>, limit: u32) -> Result<()> {
    let prefix = prefix.unwrap_or("");
    if prefix.len() > NAME_MAX_LEN || !is_name_chars(prefix) {
        return Err(CliError::Usage(format!(
            "{prefix:?} cannot start a username (a-z, 0-9 and _, at most {NAME_MAX_LEN})"
        )));
    }
    let session = ctx.session()?;
    let list = ctx.client(&session)?.users(prefix, limit).await?;
    for dropped in list.dropped.iter().filter(|_| !ctx.json) {
        eprintln!(
            "fastchat: WARNING: dropped a user the server listed that this client cannot trust: {}",
            output::sanitize_line(&dropped.reason)
        );
    }
    for user in &list.items {
        if ctx.json {
            Line::User {
                username: user.username.clone(),
                online: user.online,
            }
            .print();
        } else {
            let mark = if user.online { "  (online)" } else { "" };
            output::line(&format!("{}{mark}", user.username));
        }
    }
    if list.items.is_empty() && ctx.for_a_person() {
        output::line(&if prefix.is_empty() {
            "No users.".to_owned()
        } else {
            format!("No users whose names start with {prefix}.")
        });
    }
    Ok(())
}
