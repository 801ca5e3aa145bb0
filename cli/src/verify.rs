//! `verify` and `trust`: the safety number two people compare to know their clients use
//! each other's real keys, and accepting a contact's new key once they have.

use fastchat_protocol::keys;
use fastchat_protocol::safety::safety_number;

use crate::contacts::Contacts;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::me::Me;
use crate::output::{self, json::Line};
use crate::send::parse_user;

/// Twelve groups of five digits, as three lines of four.
fn lines_of(number: &[String]) -> String {
    number
        .chunks(4)
        .map(|row| format!("  {}", row.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `verify <user>`: the safety number for this user and `user`, from the key this
/// client has pinned for them (pinned now, on first contact); with `confirm`, marks them
/// verified.
pub async fn verify(ctx: &Context, user: &str, confirm: bool) -> Result<()> {
    let user = parse_user(user)?;
    let (me, client) = Me::load(ctx)?;
    if user == *me.name() {
        return Err(CliError::Usage(
            "a safety number is between you and someone else".into(),
        ));
    }
    let mut contacts = Contacts::load(&ctx.home, &client, &me.owner, ctx.json)?;
    let key = contacts.public_key(&user).await?;
    let number = safety_number((me.name().as_str(), &me.public), (user.as_str(), &key));
    let fingerprint = keys::fingerprint(&key);
    if confirm {
        contacts.mark_verified(&user).await?;
    }
    let verified = contacts.get(&user).is_some_and(|c| c.verified);
    if ctx.json {
        Line::SafetyNumber {
            user,
            safety_number: number.join(" "),
            fingerprint,
            verified,
        }
        .print();
        return Ok(());
    }
    output::line(&{
        let status = if confirm {
            format!("Marked {user} as verified.")
        } else if verified {
            format!("{user} is verified.")
        } else {
            format!(
                "Compare this number with {user}, in person or on a call: their \
                     `fastchat verify {}` shows the same one. If it matches, run \
                     `fastchat verify {user} --confirm`.",
                me.name()
            )
        };
        format!(
            "Safety number with {user}:\n{}\n{user}'s key fingerprint: {fingerprint}\n{status}",
            lines_of(&number)
        )
    });
    Ok(())
}

/// `trust <user>`: accepts the key the server now gives for `user` in place of the
/// pinned one (after comparing safety numbers with them).
pub async fn trust(ctx: &Context, user: &str) -> Result<()> {
    let user = parse_user(user)?;
    let (me, client) = Me::load(ctx)?;
    let mut contacts = Contacts::load(&ctx.home, &client, &me.owner, ctx.json)?;
    let key = contacts.served_key(&user).await?;
    let fingerprint = keys::fingerprint(&key);
    let before = contacts.get(&user).map(|c| c.fingerprint.clone());
    contacts.trust(&user, &key).await?;
    let number = safety_number((me.name().as_str(), &me.public), (user.as_str(), &key));
    if ctx.json {
        Line::Trusted {
            user,
            fingerprint,
            previous_fingerprint: before,
            safety_number: number.join(" "),
        }
        .print();
        return Ok(());
    }
    output::line(&{
        let was = before.map_or_else(String::new, |b| format!(" (was {b})"));
        format!(
            "Now using {user}'s key {fingerprint}{was}.\nSafety number with {user}:\n{}",
            lines_of(&number)
        )
    });
    Ok(())
}
