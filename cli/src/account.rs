//! signup, login, logout, whoami, users.

use std::io::{BufRead, IsTerminal};

use fastchat_protocol::keys::RsaPrivateKey;
use fastchat_protocol::keys::{self, LoginKeys};
use fastchat_protocol::names::Username;
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{CreateSession, CreateUser};
use serde_json::json;

use crate::args::Credentials;
use crate::client::Client;
use crate::contacts::{Contacts, Owner};
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::home::Session;
use crate::me::Me;

/// The CLI's own rule, since the server only ever sees a derived key.
const PASSWORD_MIN_CHARS: usize = 8;

fn read_password(creds: &Credentials, confirm: bool) -> Result<String> {
    let password = if creds.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::local("reading the password from stdin", e))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::local("reading the password", e))?;
        if confirm {
            let again = rpassword::prompt_password("Password again: ")
                .map_err(|e| CliError::local("reading the password", e))?;
            if again != password {
                return Err(CliError::Usage("the passwords do not match".into()));
            }
        }
        password
    } else {
        return Err(CliError::Usage(
            "no terminal to ask for a password on: pass --password-stdin and pipe it in".into(),
        ));
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }
    Ok(password)
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

async fn open_session(
    ctx: &Context,
    client: &Client,
    username: &Username,
    keys: &LoginKeys,
) -> Result<Session> {
    let created = client
        .create_session(&CreateSession {
            username: username.to_string(),
            password: keys.server_password(),
        })
        .await?;
    let session = Session {
        server: client.server().to_owned(),
        username: created.username,
        token: created.token,
        expires_at: created.expires_at,
    };
    ctx.home.save_session(&session)?;
    Ok(session)
}

pub async fn signup(ctx: &Context, creds: &Credentials) -> Result<()> {
    let username = parse_username(&creds.username)?;
    let password = read_password(creds, true)?;
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(CliError::Usage(format!(
            "choose a password of at least {PASSWORD_MIN_CHARS} characters"
        )));
    }
    let keys = derive(&username, password).await?;
    let private_key = tokio::task::spawn_blocking(keys::generate_private_key)
        .await
        .map_err(|e| CliError::local("generating your key pair", e))?
        .map_err(|e| CliError::local("generating your key pair", e))?;
    let public_key = private_key.to_public_key();

    let client = ctx.client(None)?;
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
    client.create_user(&request).await.map_err(|e| match e {
        CliError::Server {
            code: ErrorCode::UsernameTaken,
            ..
        } => CliError::Local(format!("the username {username} is taken; choose another")),
        other => other,
    })?;
    ctx.home.save_private_key(username.as_str(), &private_key)?;
    let session = open_session(ctx, &client, &username, &keys).await?;
    let fingerprint = keys::fingerprint(&public_key);
    ctx.print(
        json!({"username": session.username, "server": session.server, "fingerprint": fingerprint}),
        || format!("Signed up and logged in as {username}.\nKey fingerprint: {fingerprint}"),
    );
    Ok(())
}

pub async fn login(ctx: &Context, creds: &Credentials) -> Result<()> {
    let username = parse_username(&creds.username)?;
    let password = read_password(creds, false)?;
    let keys = derive(&username, password).await?;
    let client = ctx.client(None)?;
    let session = open_session(ctx, &client, &username, &keys).await?;
    let client = ctx.client(Some(&session))?;

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
    ctx.print(
        json!({"username": session.username, "server": session.server, "fingerprint": fingerprint,
               "contacts_restored": restored}),
        || {
            let mut text = format!("Logged in as {username}.\nKey fingerprint: {fingerprint}");
            if restored > 0 {
                text.push_str(&format!(
                    "\nRestored {restored} pinned contact key(s) from your backup."
                ));
            }
            text
        },
    );
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
        } => CliError::Local(
            "this account has no key backup and this home has no private key for it".into(),
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

pub async fn logout(ctx: &Context) -> Result<()> {
    let session = ctx.session()?;
    match ctx.client(Some(&session))?.delete_session().await {
        // Already expired or revoked: the local session is just as dead.
        Ok(()) | Err(CliError::Auth(_)) => {}
        Err(e) => return Err(e),
    }
    ctx.home.forget_session()?;
    ctx.print(
        json!({"username": session.username, "logged_out": true}),
        || format!("Logged out {}.", session.username),
    );
    Ok(())
}

pub async fn whoami(ctx: &Context) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    let session = &me.session;
    let profile = client.user(session.username.as_str()).await?;
    let server_key = keys::parse_public_key_pem(&profile.public_key)
        .map_err(|e| CliError::local("the server's copy of your public key", e))?;
    if me.public != server_key {
        return Err(CliError::Local(format!(
            "WARNING: the server's public key for {} is not the one in this home; \
             do not trust this server",
            session.username
        )));
    }
    let fingerprint = keys::fingerprint(&server_key);
    ctx.print(
        json!({
            "username": session.username,
            "server": session.server,
            "fingerprint": fingerprint,
            "expires_at": session.expires_at,
        }),
        || {
            format!(
                "{} on {}\nKey fingerprint: {fingerprint}\nSession expires: {}",
                session.username, session.server, session.expires_at
            )
        },
    );
    Ok(())
}

pub async fn users(ctx: &Context, prefix: Option<&str>, limit: u32) -> Result<()> {
    let session = ctx.session()?;
    let list = ctx
        .client(Some(&session))?
        .users(prefix.unwrap_or(""), limit)
        .await?;
    for dropped in &list.dropped {
        eprintln!(
            "fastchat: WARNING: dropped a user the server listed that this client cannot trust: {}",
            crate::output::sanitize_line(&dropped.reason)
        );
    }
    if ctx.json {
        ctx.print(json!({"users": list.items}), String::new);
    } else {
        for user in &list.items {
            let mark = if user.online { "  (online)" } else { "" };
            crate::output::line(&format!("{}{mark}", user.username));
        }
    }
    Ok(())
}
