//! `fastchat`: FastChat's command-line client.

mod account;
mod args;
mod chains;
mod client;
mod contacts;
mod context;
mod error;
mod groups;
mod home;
mod inbox;
mod me;
mod output;
mod reader;
mod seen;
mod send;
mod stream;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Context;
use crate::error::Result;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            // Errors can quote what a server said: nothing in them may drive the terminal.
            eprintln!("fastchat: {}", output::sanitize(&e.to_string()));
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::new(cli.global)?;
    match &cli.command {
        Command::Signup(creds) => account::signup(&ctx, creds).await,
        Command::Login(creds) => account::login(&ctx, creds).await,
        Command::Logout => account::logout(&ctx).await,
        Command::Whoami => account::whoami(&ctx).await,
        Command::Users { prefix, limit } => account::users(&ctx, prefix.as_deref(), *limit).await,
        Command::Send { group, image, args } => {
            send::send(&ctx, group.as_deref(), image.as_deref(), args).await
        }
        Command::Recv { follow } => inbox::recv(&ctx, *follow).await,
        Command::History {
            with,
            group,
            limit,
            before,
        } => inbox::history(&ctx, with.as_deref(), group.as_deref(), *limit, *before).await,
        Command::Chat { with, group } => inbox::chat(&ctx, with.as_deref(), group.as_deref()).await,
        Command::Group(command) => groups::run(&ctx, command).await,
        Command::Verify { user, confirm } => verify::verify(&ctx, user, *confirm).await,
        Command::Trust { user } => verify::trust(&ctx, user).await,
    }
}
