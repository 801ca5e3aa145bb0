//! The groups this user is in, as their signed chains say: each statement verified here
//! with its signer's key (the one the chain itself names for them), from the group's
//! first statement on. The server's word for who is in a group is never taken; its view
//! must agree with the chain or it is refused.
//!
//! `<home>/groups/<group id>.json` keeps each group's verified chain (the file name is
//! the id this client parsed, never a name the server sent), and `groups/index.json`
//! maps each name to the group that has it now (a name can be re-used after a group
//! ends; its id cannot).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use fastchat_protocol::group::{Applied, Change, GroupState, SignedStatement, Statement};
use fastchat_protocol::names::GroupName;
use fastchat_protocol::problem::ErrorCode;
use fastchat_protocol::wire::GroupEvent;
use serde::{Deserialize, Serialize};

use crate::contacts::Contacts;
use crate::error::{CliError, Result};
use crate::home::Home;
use crate::net::client::Client;

#[derive(Serialize, Deserialize)]
struct KeptChain {
    statements: Vec<SignedStatement>,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    groups: BTreeMap<GroupName, uuid::Uuid>,
}

/// A group's verified chain and the state it comes to.
struct Kept {
    statements: Vec<SignedStatement>,
    state: GroupState,
}

fn chain_file(id: uuid::Uuid) -> PathBuf {
    PathBuf::from("groups").join(format!("{}.json", id.hyphenated()))
}

const INDEX: &str = "groups/index.json";

pub fn no_such_group(group: &GroupName) -> CliError {
    CliError::refused(
        ErrorCode::GroupNotFound,
        format!("there is no group called {group}, or you are not in it"),
    )
}

/// What a statement did, in words, from the statement itself.
pub fn describe(applied: &Applied) -> Vec<String> {
    let s = &applied.statement;
    let (by, group) = (&s.by, &s.name);
    let mut lines = vec![match &s.change {
        Change::Create { members } => {
            let others: Vec<&str> = members.iter().skip(1).map(|(m, _)| m.as_str()).collect();
            if others.is_empty() {
                format!("{by} created group {group}")
            } else {
                format!("{by} created group {group} with {}", others.join(", "))
            }
        }
        Change::Add { user, fingerprint } => {
            format!("{by} added {user} to {group} ({user}'s key: {fingerprint})")
        }
        Change::Remove { user } => format!("{by} removed {user} from {group}"),
        Change::Leave => format!("{by} left {group}"),
        Change::Promote { user } => format!("{by} made {user} an admin of {group}"),
    }];
    if let Some(admin) = &applied.promoted {
        lines.push(format!(
            "{admin} is now an admin of {group} (the last admin left)"
        ));
    }
    if applied.ended {
        lines.push(format!("{group} has ended: its last member left"));
    }
    lines
}

/// What absorbing a group event came to.
pub enum Absorbed {
    /// New statements, verified and applied: what they did, in words.
    Applied(Vec<String>),
    /// Already in the chain here.
    Known,
    /// An admin made by the rule (no statement of its own) that the chain agrees with.
    Automatic(String),
    /// A change to a group this user is no longer in (or that no longer exists), which it
    /// cannot fetch the history to check.
    Unverifiable(String),
}

pub struct Chains<'a> {
    home: &'a Home,
    kept: HashMap<uuid::Uuid, Kept>,
}

impl<'a> Chains<'a> {
    pub fn new(home: &'a Home) -> Self {
        Self {
            home,
            kept: HashMap::new(),
        }
    }

    fn index(&self) -> Result<Index> {
        Ok(self.home.read_json(Path::new(INDEX))?.unwrap_or_default())
    }

    /// The id of the group now called `name`, as this client last verified it.
    pub fn id_of(&self, name: &GroupName) -> Result<Option<uuid::Uuid>> {
        Ok(self.index()?.groups.get(name).copied())
    }

    /// Loads a kept chain, replaying it (it was verified when it was kept).
    fn load(&mut self, id: uuid::Uuid) -> Result<Option<&mut Kept>> {
        if !self.kept.contains_key(&id) {
            let Some(chain) = self.home.read_json::<KeptChain>(&chain_file(id))? else {
                return Ok(None);
            };
            let damaged = |e: fastchat_protocol::group::ChainError| {
                CliError::local(&format!("the kept chain of group {id} is damaged"), e)
            };
            let (first, rest) = chain
                .statements
                .split_first()
                .ok_or_else(|| CliError::Local(format!("the kept chain of group {id} is empty")))?;
            let mut state = GroupState::replay_create(first).map_err(damaged)?;
            for statement in rest {
                state.replay(statement).map_err(damaged)?;
            }
            self.kept.insert(
                id,
                Kept {
                    statements: chain.statements,
                    state,
                },
            );
        }
        Ok(self.kept.get_mut(&id))
    }

    fn save(&self, id: uuid::Uuid) -> Result<()> {
        let Some(kept) = self.kept.get(&id) else {
            return Ok(());
        };
        self.home.write_json(
            &chain_file(id),
            &KeptChain {
                statements: kept.statements.clone(),
            },
        )?;
        let mut index = self.index()?;
        index.groups.insert(kept.state.name.clone(), id);
        self.home.write_json(Path::new(INDEX), &index)
    }

    /// The group's state as this client verified it last, without asking the server.
    pub fn local(&mut self, name: &GroupName) -> Result<Option<GroupState>> {
        let Some(id) = self.id_of(name)? else {
            return Ok(None);
        };
        Ok(self.load(id)?.map(|k| k.state.clone()))
    }

    /// The group's state just after statement `epoch`, if this client has verified that far.
    pub fn state_at(&mut self, id: uuid::Uuid, epoch: u64) -> Result<Option<GroupState>> {
        let Some(kept) = self.load(id)? else {
            return Ok(None);
        };
        let Some(upto) = usize::try_from(epoch)
            .ok()
            .filter(|&e| e < kept.statements.len())
        else {
            return Ok(None);
        };
        let replay = || -> std::result::Result<GroupState, fastchat_protocol::group::ChainError> {
            let mut state = GroupState::replay_create(&kept.statements[0])?;
            for statement in &kept.statements[1..=upto] {
                state.replay(statement)?;
            }
            Ok(state)
        };
        replay()
            .map(Some)
            .map_err(|e| CliError::local("replaying a kept chain", e))
    }

    /// Verifies `next` with its signer's key and applies it to the kept chain `id` (or,
    /// for a first statement, starts one).
    async fn verify_and_apply(
        &mut self,
        contacts: &mut Contacts<'_>,
        id: Option<uuid::Uuid>,
        next: &SignedStatement,
    ) -> Result<(uuid::Uuid, Applied)> {
        let statement = Statement::parse(&next.text)
            .map_err(|e| CliError::Untrusted(format!("a membership statement: {e}")))?;
        let refused = |e: fastchat_protocol::group::ChainError| {
            CliError::Untrusted(format!("a membership statement of {}: {e}", statement.name))
        };
        let kept = match id {
            Some(id) => self.load(id)?,
            None => None,
        };
        let Some(kept) = kept else {
            // The first statement: signed by the creator, with the key it names for them.
            let key = contacts.public_key(&statement.by).await?;
            let state = GroupState::create(next, &key).map_err(refused)?;
            let id = state.id;
            let applied = Applied {
                statement,
                promoted: None,
                ended: false,
            };
            self.kept.insert(
                id,
                Kept {
                    statements: vec![next.clone()],
                    state,
                },
            );
            return Ok((id, applied));
        };
        let id = kept.state.id;
        let expected = kept
            .state
            .member(statement.by.as_str())
            .map(|m| m.fingerprint.clone())
            .ok_or_else(|| {
                CliError::Untrusted(format!(
                    "a membership statement of {} is signed by {}, who is not a member",
                    statement.name, statement.by
                ))
            })?;
        let key = contacts
            .key_with_fingerprint(&statement.by, &expected)
            .await?;
        let kept = self
            .load(id)?
            .ok_or_else(|| CliError::Local("a kept chain vanished".into()))?;
        let applied = kept.state.apply(next, &key).map_err(refused)?;
        kept.statements.push(next.clone());
        Ok((id, applied))
    }

    /// Brings the group now called `name` up to date with the server, verifying every new
    /// statement: its state, and what the new statements did, in words.
    pub async fn sync(
        &mut self,
        client: &Client,
        contacts: &mut Contacts<'_>,
        name: &GroupName,
    ) -> Result<(GroupState, Vec<String>)> {
        let view = client.group(name.as_str()).await.map_err(|e| match e {
            CliError::Server {
                code: ErrorCode::GroupNotFound,
                ..
            } => no_such_group(name),
            other => other,
        })?;
        if view.name != *name {
            return Err(CliError::Untrusted(format!(
                "asked for group {name}, the server answered with {}",
                view.name
            )));
        }
        let have = self
            .load(view.id)?
            .map(|k| (k.state.seq, k.state.head.to_hex()));
        let behind = match &have {
            Some((seq, head))
                if *seq > view.epoch || (*seq == view.epoch && *head != view.head) =>
            {
                return Err(CliError::Untrusted(format!(
                    "the server's account of {name} disagrees with its signed history as this \
                     client verified it"
                )))
            }
            Some((seq, _)) => *seq < view.epoch,
            None => true,
        };
        let mut notices = Vec::new();
        if behind {
            let chain = client
                .statements(name.as_str(), have.as_ref().map(|(seq, _)| *seq))
                .await?;
            if chain.group_id != view.id {
                return Err(CliError::Untrusted(format!(
                    "the server sent the chain of another group as {name}'s"
                )));
            }
            let mut id = have.as_ref().map(|_| view.id);
            for entry in &chain.statements {
                let (applied_id, applied) = self
                    .verify_and_apply(contacts, id, &entry.statement)
                    .await?;
                id = Some(applied_id);
                notices.extend(describe(&applied));
            }
        }
        let kept = self
            .load(view.id)?
            .ok_or_else(|| CliError::Untrusted(format!("the server sent no history for {name}")))?;
        let state = kept.state.clone();
        let mut members: Vec<&str> = state.members.iter().map(|m| m.name.as_str()).collect();
        members.sort_unstable();
        let claimed: Vec<&str> = view.members.iter().map(|m| m.as_str()).collect();
        if state.id != view.id
            || state.seq != view.epoch
            || state.head.to_hex() != view.head
            || members != claimed
        {
            return Err(CliError::Untrusted(format!(
                "the server's account of {name} is not what its signed history comes to"
            )));
        }
        self.save(view.id)?;
        Ok((state, notices))
    }

    /// Records a statement this user signed and the server accepted.
    pub fn record_own(
        &mut self,
        id: uuid::Uuid,
        state: GroupState,
        statement: SignedStatement,
    ) -> Result<()> {
        match self.kept.get_mut(&id) {
            Some(kept) => {
                kept.statements.push(statement);
                kept.state = state;
            }
            None => {
                self.kept.insert(
                    id,
                    Kept {
                        statements: vec![statement],
                        state,
                    },
                );
            }
        }
        self.save(id)
    }

    /// Takes in a group event from the inbox: its statement verified and applied (or the
    /// chain fetched and verified, where this client has a gap), or an automatic admin
    /// checked against the chain.
    pub async fn absorb(
        &mut self,
        client: &Client,
        contacts: &mut Contacts<'_>,
        event: &GroupEvent,
    ) -> Result<Absorbed> {
        let id = event.group_id;
        let have = self.load(id)?.map(|k| (k.state.seq, k.state.name.clone()));
        if let Some((_, name)) = &have {
            if *name != event.group {
                return Err(CliError::Untrusted(format!(
                    "an event calls group {} {}",
                    name, event.group
                )));
            }
        }
        let Some(statement) = &event.statement else {
            // An admin by the rule: the chain must say so at that point.
            let Some(state) = self.state_at(id, event.epoch)? else {
                return Ok(Absorbed::Unverifiable(format!(
                    "{} is now an admin of {}, a group whose history this client does not have",
                    event.username, event.group
                )));
            };
            return if state.is_admin(event.username.as_str()) {
                Ok(Absorbed::Automatic(format!(
                    "{} is now an admin of {} (the last admin left)",
                    event.username, event.group
                )))
            } else {
                Err(CliError::Untrusted(format!(
                    "the server says {} is an admin of {}; its signed history does not",
                    event.username, event.group
                )))
            };
        };
        match have {
            Some((seq, _)) if event.epoch <= seq => {
                let kept = self
                    .load(id)?
                    .ok_or_else(|| CliError::Local("a kept chain vanished".into()))?;
                let known = usize::try_from(event.epoch)
                    .ok()
                    .and_then(|e| kept.statements.get(e))
                    .is_some_and(|s| s.hash() == statement.hash());
                if known {
                    Ok(Absorbed::Known)
                } else {
                    Err(CliError::Untrusted(format!(
                        "the server sent a statement of {} that contradicts its history",
                        event.group
                    )))
                }
            }
            Some((seq, _)) if event.epoch == seq + 1 => {
                let (_, applied) = self.verify_and_apply(contacts, Some(id), statement).await?;
                self.save(id)?;
                Ok(Absorbed::Applied(describe(&applied)))
            }
            None if event.epoch == 0 => {
                let (id, applied) = self.verify_and_apply(contacts, None, statement).await?;
                self.save(id)?;
                Ok(Absorbed::Applied(describe(&applied)))
            }
            // A gap (or a group new to this client): fetch and verify what is missing.
            _ => match self.sync(client, contacts, &event.group).await {
                Ok((state, notices)) if state.id == id => Ok(Absorbed::Applied(notices)),
                // Since re-created under its name, or left: its history is out of reach.
                Ok(_) | Err(CliError::Local(_) | CliError::Refused { .. }) => {
                    Ok(Absorbed::Unverifiable(format!(
                        "a change to {} that cannot be checked: you are no longer in that group",
                        event.group
                    )))
                }
                Err(e) => Err(e),
            },
        }
    }
}
