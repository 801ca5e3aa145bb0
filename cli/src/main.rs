//! `fastchat`: FastChat's command-line client.

mod account;
mod args;
mod client;
mod contacts;
mod context;
mod error;
mod groups;
mod home;
mod messaging;
mod output;
mod stream;

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
            eprintln!("fastchat: {e}");
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
            messaging::send(&ctx, group.as_deref(), image.as_deref(), args).await
        }
        Command::Recv { follow } => messaging::recv(&ctx, *follow).await,
        Command::History {
            with,
            group,
            limit,
            before,
        } => messaging::history(&ctx, with.as_deref(), group.as_deref(), *limit, *before).await,
        Command::Chat { with, group } => {
            messaging::chat(&ctx, with.as_deref(), group.as_deref()).await
        }
        Command::Group(command) => groups::run(&ctx, command).await,
    }
}
