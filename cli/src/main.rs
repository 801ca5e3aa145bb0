//! `fastchat`: FastChat's command-line client.
//!
//! Modules by job: the command line ([`args`]); what every command shares ([`context`],
//! [`error`], [`output`], [`me`]); the network ([`net`]); what the home keeps
//! ([`home`], [`contacts`], [`chains`], [`seen`], [`downloads`], [`marks`]); reading what arrives
//! ([`reader`]); and one module per family of commands ([`account`], [`send`],
//! [`inbox`], [`chat`], [`conversations`], [`groups`], [`verify`], [`docs`]).

mod account;
mod args;
mod chains;
mod chat;
mod contacts;
mod context;
mod conversations;
mod docs;
mod downloads;
mod error;
mod groups;
mod home;
mod inbox;
mod marks;
mod me;
mod net;
mod output;
mod reader;
mod seen;
mod send;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::output::json::Line;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fastchat: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, json);
            e.exit_code()
        }
    }
}

/// A failure on standard error: one JSON line with `--json`, else a sentence.
fn report(e: &CliError, json: bool) {
    // Errors can quote what a server said: nothing in them may drive the terminal.
    let message = output::sanitize(&e.to_string());
    if json {
        Line::Error {
            code: e.code(),
            exit_code: e.exit_number(),
            message,
            status: e.status(),
        }
        .eprint();
    } else {
        eprintln!("fastchat: {message}");
    }
}

/// Help and version go to stdout as clap prints them; a usage error is exit 2, as JSON
/// when `--json` is among the arguments.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(error::exit::USAGE)
        } else {
            ExitCode::SUCCESS
        };
    }
    let json = std::env::args().skip(1).any(|a| a == "--json");
    if json {
        let text = e.render().to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or("bad usage")
            .trim_start_matches("error: ")
            .to_owned();
        Line::Error {
            code: "usage".into(),
            exit_code: error::exit::USAGE,
            message,
            status: None,
        }
        .eprint();
    } else {
        let _ = e.print();
    }
    ExitCode::from(error::exit::USAGE)
}

async fn run(cli: Cli) -> Result<()> {
    // These need no home.
    match &cli.command {
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Manpage => return docs::manpage(),
        _ => {}
    }
    let ctx = Context::new(cli.global)?;
    match &cli.command {
        Command::Signup(creds) => account::signup(&ctx, creds).await,
        Command::Login(creds) => account::login(&ctx, creds).await,
        Command::Logout => account::logout(&ctx).await,
        Command::Whoami => account::whoami(&ctx).await,
        Command::Users { prefix, limit } => account::users(&ctx, prefix.as_deref(), *limit).await,
        Command::Send {
            group,
            image,
            to,
            text,
        } => {
            send::send(
                &ctx,
                group.as_deref(),
                image.as_deref(),
                to.as_deref(),
                text,
            )
            .await
        }
        Command::Recv { follow } => inbox::recv(&ctx, *follow).await,
        Command::History {
            with,
            group,
            limit,
            before,
        } => inbox::history(&ctx, with.as_deref(), group.as_deref(), *limit, *before).await,
        Command::Chat { with, group } => chat::chat(&ctx, with.as_deref(), group.as_deref()).await,
        Command::Conversations => conversations::list(&ctx).await,
        Command::Group(command) => groups::run(&ctx, command).await,
        Command::Verify { user, confirm } => verify::verify(&ctx, user, *confirm).await,
        Command::Trust { user } => verify::trust(&ctx, user).await,
        Command::Completions { .. } | Command::Manpage => Ok(()),
    }
}
