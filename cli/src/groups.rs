//! `fastchat group ...`: create groups and manage who is in them.

use fastchat_protocol::names::Username;
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::{CreateGroup, Group};
use serde_json::json;

use crate::args::GroupCommand;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::messaging::{parse_group, Me};

/// The server's refusals, said plainly.
fn explain(group: &str, e: CliError) -> CliError {
    let CliError::Server { code, detail, .. } = &e else {
        return e;
    };
    CliError::Local(match code {
        ErrorCode::NotAdmin => format!("only an admin of {group} can do that"),
        ErrorCode::GroupNotFound => {
            format!("there is no group called {group}, or you are not in it")
        }
        ErrorCode::GroupNameTaken => format!("a group called {group} already exists"),
        ErrorCode::MemberNotFound => format!("that user is not in {group}"),
        ErrorCode::AlreadyMember => format!("that user is already in {group}"),
        ErrorCode::AlreadyAdmin => format!("that member is already an admin of {group}"),
        ErrorCode::GroupFull | ErrorCode::GroupTooLarge | ErrorCode::UserNotFound => detail.clone(),
        _ => return e,
    })
}

fn parse_user(name: &str) -> Result<String> {
    Username::parse(name)
        .map(Username::into_string)
        .map_err(|e| CliError::Usage(format!("{name:?}: {e}")))
}

fn describe(group: &Group) -> String {
    format!(
        "{}\n  admins:  {}\n  members: {}\n  created: {}",
        group.name,
        group.admins.join(", "),
        group.members.join(", "),
        group.created_at.format("%Y-%m-%d %H:%M:%S")
    )
}

pub async fn run(ctx: &Context, command: &GroupCommand) -> Result<()> {
    let (me, client) = Me::load(ctx)?;
    match command {
        GroupCommand::Create { name, members } => {
            let name = parse_group(name)?;
            let members = members
                .iter()
                .map(|m| parse_user(m))
                .collect::<Result<Vec<_>>>()?;
            let group = client
                .create_group(&CreateGroup {
                    name: name.clone(),
                    members,
                })
                .await
                .map_err(|e| explain(&name, e))?;
            ctx.home.save_group_members(&name, &group.members)?;
            ctx.print(json!(group), || {
                format!(
                    "Created group {} with {}.",
                    group.name,
                    group.members.join(", ")
                )
            });
        }
        GroupCommand::Add { name, username } => {
            let (name, username) = (parse_group(name)?, parse_user(username)?);
            let group = client
                .add_member(&name, &username)
                .await
                .map_err(|e| explain(&name, e))?;
            ctx.home.save_group_members(&name, &group.members)?;
            ctx.print(json!(group), || format!("Added {username} to {name}."));
        }
        GroupCommand::Remove { name, username } => {
            let (name, username) = (parse_group(name)?, parse_user(username)?);
            client
                .remove_member(&name, &username)
                .await
                .map_err(|e| explain(&name, e))?;
            ctx.home.forget_group_members(&name)?;
            ctx.print(json!({"group": name, "removed": username}), || {
                format!("Removed {username} from {name}.")
            });
        }
        GroupCommand::Leave { name } => {
            let name = parse_group(name)?;
            client
                .remove_member(&name, me.name())
                .await
                .map_err(|e| explain(&name, e))?;
            ctx.home.forget_group_members(&name)?;
            ctx.print(json!({"group": name, "left": true}), || {
                format!("You left {name}.")
            });
        }
        GroupCommand::Admin { name, username } => {
            let (name, username) = (parse_group(name)?, parse_user(username)?);
            let group = client
                .add_admin(&name, &username)
                .await
                .map_err(|e| explain(&name, e))?;
            ctx.print(json!(group), || {
                format!("{username} is now an admin of {name}.")
            });
        }
        GroupCommand::List => {
            let list = client.groups().await?;
            if ctx.json {
                ctx.print(json!(list), String::new);
            } else {
                for group in &list.groups {
                    crate::output::line(&format!(
                        "{} ({} members)",
                        group.name,
                        group.members.len()
                    ));
                }
            }
        }
        GroupCommand::Info { name } => {
            let name = parse_group(name)?;
            let group = client.group(&name).await.map_err(|e| explain(&name, e))?;
            ctx.home.save_group_members(&name, &group.members)?;
            ctx.print(json!(group), || describe(&group));
        }
    }
    Ok(())
}
