//! `fastchat group ...`: create groups and manage who is in them. Every change is a
//! statement this client signs, after verifying the group's chain up to now; what the
//! commands show of a group is what its verified chain says, never the server's word.

use chrono::Utc;
use fastchat_protocol::group::{ChainError, Change, GroupState, Statement};
use fastchat_protocol::keys;
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::CreateGroup;

use crate::args::GroupCommand;
use crate::chains::Chains;
use crate::contacts::Contacts;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::me::Me;
use crate::net::client::Client;
use crate::output::json::{GroupOut, Line};
use crate::output::{self, time};
use crate::send::{parse_group, parse_user, tell};

/// Attempts at a change whose statement keeps being overtaken by others'.
const STALE_RETRIES: usize = 3;

/// The server's refusals, said plainly.
fn explain(group: &GroupName, e: CliError) -> CliError {
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

/// What the group's rules say about a change, before it goes to the server.
fn refused(group: &GroupName, e: ChainError) -> CliError {
    CliError::Local(match e {
        ChainError::NotAdmin(_) => format!("only an admin of {group} can do that"),
        ChainError::NotMember(user) => format!("{user} is not in {group}"),
        ChainError::AlreadyMember(user) => format!("{user} is already in {group}"),
        ChainError::AlreadyAdmin(user) => format!("{user} is already an admin of {group}"),
        other => format!("{group}: {other}"),
    })
}

/// A group as its verified chain says, for people and for `--json`.
fn describe(state: &GroupState) -> (GroupOut, String) {
    let mut members: Vec<String> = state.members.iter().map(|m| m.name.to_string()).collect();
    let mut admins: Vec<String> = state.admins().map(|m| m.name.to_string()).collect();
    members.sort_unstable();
    admins.sort_unstable();
    let value = GroupOut {
        name: state.name.clone(),
        id: state.id,
        admins: admins.clone(),
        members: members.clone(),
        created_at: state.created_at,
        epoch: state.seq,
        head: state.head.to_hex(),
        keys: state
            .members
            .iter()
            .map(|m| (m.name.to_string(), m.fingerprint.clone()))
            .collect(),
    };
    let text = format!(
        "{}\n  admins:  {}\n  members: {}\n  created: {}\n  (verified from its signed history: {} changes)",
        state.name,
        admins.join(", "),
        members.join(", "),
        time::when(state.created_at),
        state.seq
    );
    (value, text)
}

/// Signs and sends the change `make` computes from the group's verified state, after
/// checking it against the group's rules; a statement overtaken by another member's is
/// made again on the newer state.
async fn change(
    ctx: &Context,
    me: &Me,
    client: &Client,
    contacts: &mut Contacts<'_>,
    chains: &mut Chains<'_>,
    group: &GroupName,
    change: Change,
) -> Result<GroupState> {
    for _ in 0..STALE_RETRIES {
        let (state, notices) = chains.sync(client, contacts, group).await?;
        tell(ctx, &notices);
        let statement = state
            .next(me.name(), Utc::now(), change.clone())
            .sign(&me.key);
        let mut after = state.clone();
        after
            .apply(&statement, &me.public)
            .map_err(|e| refused(group, e))?;
        let posted = match &change {
            Change::Add { user, .. } => {
                client
                    .add_member(group.as_str(), user.as_str(), statement.clone())
                    .await
            }
            Change::Remove { user } => {
                client
                    .remove_member(group.as_str(), user.as_str(), statement.clone())
                    .await
            }
            Change::Leave => {
                client
                    .remove_member(group.as_str(), me.name().as_str(), statement.clone())
                    .await
            }
            Change::Promote { user } => {
                client
                    .add_admin(group.as_str(), user.as_str(), statement.clone())
                    .await
            }
            Change::Create { .. } => return Err(CliError::Local("a group is created once".into())),
        };
        match posted {
            Ok(()) => {
                chains.record_own(after.id, after.clone(), statement)?;
                return Ok(after);
            }
            Err(CliError::Server {
                code: ErrorCode::StaleStatement,
                ..
            }) => continue,
            Err(e) => return Err(explain(group, e)),
        }
    }
    Err(CliError::Local(format!(
        "{group} keeps changing under this change; try again"
    )))
}

/// The key to name for a new member: theirs as pinned here (pinned now if new).
async fn member_key(contacts: &mut Contacts<'_>, user: &Username) -> Result<String> {
    Ok(keys::fingerprint(&contacts.public_key(user).await?))
}

/// Prints a group's state: the `group` object with `--json`, else `text`.
fn print_group(ctx: &Context, state: &GroupState, text: impl FnOnce() -> String) {
    if ctx.json {
        Line::Group(describe(state).0).print();
    } else {
        output::line(&text());
    }
}

/// Names that cannot exist are bad usage, before anything else happens.
fn check_names(command: &GroupCommand) -> Result<()> {
    match command {
        GroupCommand::Create { name, members } => {
            parse_group(name)?;
            for member in members {
                parse_user(member)?;
            }
        }
        GroupCommand::Add { name, username }
        | GroupCommand::Remove { name, username }
        | GroupCommand::Admin { name, username } => {
            parse_group(name)?;
            parse_user(username)?;
        }
        GroupCommand::Leave { name } | GroupCommand::Info { name } => drop(parse_group(name)?),
        GroupCommand::List => {}
    }
    Ok(())
}

pub async fn run(ctx: &Context, command: &GroupCommand) -> Result<()> {
    check_names(command)?;
    let (me, client) = Me::load(ctx)?;
    let mut contacts = Contacts::load(&ctx.home, &client, &me.owner, ctx.json)?;
    let mut chains = Chains::new(&ctx.home);
    let name_of = |name: &str| parse_group(name);
    match command {
        GroupCommand::Create { name, members } => {
            let name = name_of(name)?;
            let mut others = Vec::new();
            for member in members {
                let user = parse_user(member)?;
                if user != *me.name() && !others.contains(&user) {
                    others.push(user);
                }
            }
            let mut named = vec![(me.name().clone(), keys::fingerprint(&me.public))];
            for user in &others {
                named.push((user.clone(), member_key(&mut contacts, user).await?));
            }
            let first = Statement {
                group: uuid::Uuid::new_v4(),
                name: name.clone(),
                seq: 0,
                prev: None,
                by: me.name().clone(),
                at: Utc::now(),
                change: Change::Create { members: named },
            }
            .sign(&me.key);
            let state = GroupState::create(&first, &me.public).map_err(|e| refused(&name, e))?;
            client
                .create_group(&CreateGroup {
                    name: name.to_string(),
                    members: others.iter().map(Username::to_string).collect(),
                    statement: first.clone(),
                })
                .await
                .map_err(|e| explain(&name, e))?;
            chains.record_own(state.id, state.clone(), first)?;
            let with: Vec<String> = others.iter().map(Username::to_string).collect();
            print_group(ctx, &state, || {
                if with.is_empty() {
                    format!("Created group {name}.")
                } else {
                    format!("Created group {name} with {}.", with.join(", "))
                }
            });
        }
        GroupCommand::Add { name, username } => {
            let (name, user) = (name_of(name)?, parse_user(username)?);
            let fingerprint = member_key(&mut contacts, &user).await?;
            let change_made = Change::Add {
                user: user.clone(),
                fingerprint: fingerprint.clone(),
            };
            let state = change(
                ctx,
                &me,
                &client,
                &mut contacts,
                &mut chains,
                &name,
                change_made,
            )
            .await?;
            print_group(ctx, &state, || {
                format!("Added {user} to {name} ({user}'s key: {fingerprint}).")
            });
        }
        GroupCommand::Remove { name, username } => {
            let (name, user) = (name_of(name)?, parse_user(username)?);
            let change_made = if user == *me.name() {
                Change::Leave
            } else {
                Change::Remove { user: user.clone() }
            };
            let state = change(
                ctx,
                &me,
                &client,
                &mut contacts,
                &mut chains,
                &name,
                change_made,
            )
            .await?;
            if user == *me.name() {
                print_left(ctx, &name);
            } else {
                print_group(ctx, &state, || format!("Removed {user} from {name}."));
            }
        }
        GroupCommand::Leave { name } => {
            let name = name_of(name)?;
            change(
                ctx,
                &me,
                &client,
                &mut contacts,
                &mut chains,
                &name,
                Change::Leave,
            )
            .await?;
            print_left(ctx, &name);
        }
        GroupCommand::Admin { name, username } => {
            let (name, user) = (name_of(name)?, parse_user(username)?);
            let change_made = Change::Promote { user: user.clone() };
            let state = change(
                ctx,
                &me,
                &client,
                &mut contacts,
                &mut chains,
                &name,
                change_made,
            )
            .await?;
            print_group(ctx, &state, || format!("{user} is now an admin of {name}."));
        }
        GroupCommand::List => {
            let listed = client.groups().await?;
            for dropped in listed.dropped.iter().filter(|_| !ctx.json) {
                crate::notice!(
                    "fastchat: WARNING: dropped a group the server listed that this client \
                     cannot trust: {}",
                    crate::output::sanitize_line(&dropped.reason)
                );
            }
            let mut groups = Vec::new();
            for group in &listed.items {
                let (state, notices) = chains.sync(&client, &mut contacts, &group.name).await?;
                tell(ctx, &notices);
                groups.push(state);
            }
            if ctx.json {
                for group in &groups {
                    Line::Group(describe(group).0).print();
                }
            } else {
                for group in &groups {
                    output::line(&format!("{} ({} members)", group.name, group.members.len()));
                }
                if groups.is_empty() && ctx.for_a_person() {
                    output::line(
                        "You are in no groups. Make one with \
                         `fastchat group create <name> <members>...`.",
                    );
                }
            }
        }
        GroupCommand::Info { name } => {
            let name = name_of(name)?;
            let (state, notices) = chains.sync(&client, &mut contacts, &name).await?;
            tell(ctx, &notices);
            let (_, text) = describe(&state);
            print_group(ctx, &state, || text);
        }
    }
    Ok(())
}

fn print_left(ctx: &Context, group: &GroupName) {
    if ctx.json {
        Line::Left {
            group: group.clone(),
        }
        .print();
    } else {
        output::line(&format!("You left {group}."));
    }
}
