//! Groups: membership is a chain of signed statements (`fastchat_protocol::group`).
//! The server applies a statement only if [`GroupState::apply`] (the code every client
//! runs) accepts it with the signer's key, stores the chain for members to verify, and
//! keeps `group_members` as what the chain comes to, for delivery.
//!
//! Every operation locks the group's row: sends share it, membership changes take it
//! alone, so a send's key check and its delivery see one membership, and concurrent
//! changes to a group apply one after another (the second, signed against the old head,
//! is refused as stale). Every member hears of every change through their inbox, with
//! the statement that made it. To anyone but a member a group does not exist.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use fastchat_protocol::group::{
    self as chain, Applied, ChainError, Change, GroupState, SignedStatement, StatementHash,
};
use fastchat_protocol::keys::{fingerprint, parse_public_key_pem, RsaPublicKey};
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::{ChainEntry, EventBody, Group, GroupEvent};

use crate::db::PgConn;
use crate::error::ApiError;
use crate::ids::{GroupId, UserId};
use crate::schema::{group_members, group_statements, groups, users};
use crate::store::inbox::{self, Delivery};

/// One member, in the order they joined.
#[derive(Debug, Clone, Queryable)]
pub struct Member {
    pub user_id: UserId,
    pub username: String,
    pub is_admin: bool,
    pub key_fingerprint: String,
}

/// A group and its members, read under the group's row lock.
pub struct LockedGroup {
    pub id: GroupId,
    pub uid: uuid::Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub epoch: i64,
    pub head: Vec<u8>,
    pub members: Vec<Member>,
}

#[derive(Clone, Copy)]
pub enum Lock {
    /// Sending: many at once, but not during a membership change.
    Share,
    /// Changing membership: one at a time.
    Update,
}

/// The one who makes a change.
pub struct Actor<'a> {
    pub id: UserId,
    pub name: &'a str,
}

/// What a request asks a statement to do; the statement must say the same.
pub enum Request {
    Add(String),
    /// `DELETE .../members/{username}`: a removal, or the caller leaving.
    Remove(String),
    Promote(String),
}

fn stored_name<T>(
    parse: fn(&str) -> Result<T, fastchat_protocol::names::InvalidName>,
    name: &str,
) -> Result<T, ApiError> {
    parse(name).map_err(|_| ApiError::internal(format!("the database holds the name {name:?}")))
}

impl LockedGroup {
    pub fn member(&self, user: UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == user)
    }

    pub fn member_ids(&self) -> Vec<UserId> {
        self.members.iter().map(|m| m.user_id).collect()
    }

    pub fn head_hex(&self) -> String {
        hex::encode(&self.head)
    }

    /// The group as its members see it; names sorted.
    pub fn view(&self) -> Result<Group, ApiError> {
        let names = |admins_only: bool| -> Result<Vec<Username>, ApiError> {
            let mut names = self
                .members
                .iter()
                .filter(|m| m.is_admin || !admins_only)
                .map(|m| stored_name(Username::parse, &m.username))
                .collect::<Result<Vec<_>, _>>()?;
            names.sort();
            Ok(names)
        };
        Ok(Group {
            name: stored_name(GroupName::parse, &self.name)?,
            id: self.uid,
            admins: names(true)?,
            members: names(false)?,
            created_at: self.created_at,
            epoch: self.epoch_u64(),
            head: self.head_hex(),
        })
    }

    fn epoch_u64(&self) -> u64 {
        u64::try_from(self.epoch).unwrap_or_default()
    }

    /// The chain's state as this server holds it: what the next statement must follow.
    fn state(&self) -> Result<GroupState, ApiError> {
        let head: [u8; 32] = self
            .head
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::internal("a group head that is not 32 bytes"))?;
        Ok(GroupState {
            id: self.uid,
            name: stored_name(GroupName::parse, &self.name)?,
            seq: self.epoch_u64(),
            head: StatementHash(head),
            created_at: self.created_at,
            members: self
                .members
                .iter()
                .map(|m| {
                    Ok(chain::Member {
                        name: stored_name(Username::parse, &m.username)?,
                        fingerprint: m.key_fingerprint.clone(),
                        admin: m.is_admin,
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        })
    }

    /// Tells every current member.
    fn announce(&self, conn: &mut PgConn, body: &EventBody) -> Result<(), ApiError> {
        let event = serde_json::to_value(body).map_err(|e| ApiError::Internal(e.into()))?;
        inbox::deliver_to_all(conn, &self.member_ids(), Delivery::GroupEvent(event))?;
        Ok(())
    }

    fn event(
        &self,
        username: &str,
        by: &str,
        statement: Option<&SignedStatement>,
    ) -> Result<GroupEvent, ApiError> {
        Ok(GroupEvent {
            group: stored_name(GroupName::parse, &self.name)?,
            group_id: self.uid,
            username: stored_name(Username::parse, username)?,
            by: stored_name(Username::parse, by)?,
            epoch: self.epoch_u64(),
            statement: statement.cloned(),
        })
    }
}

/// Loads `name` with its members, locking its row; `caller` must be a member.
pub fn lock(
    conn: &mut PgConn,
    name: &GroupName,
    caller: UserId,
    lock: Lock,
) -> Result<LockedGroup, ApiError> {
    lock_by_name(conn, name.as_str(), lock)?
        .filter(|group| group.member(caller).is_some())
        .ok_or_else(ApiError::group_not_found)
}

/// Loads `name` with its members, locking its row, whoever asks (`None`: no such group).
pub fn lock_by_name(conn: &mut PgConn, name: &str, lock: Lock) -> QueryResult<Option<LockedGroup>> {
    type Row = (GroupId, uuid::Uuid, String, DateTime<Utc>, i64, Vec<u8>);
    let query = groups::table.filter(groups::name.eq(name)).select((
        groups::id,
        groups::uid,
        groups::name,
        groups::created_at,
        groups::epoch,
        groups::head,
    ));
    let row = match lock {
        Lock::Share => query.for_share().first::<Row>(conn),
        Lock::Update => query.for_update().first::<Row>(conn),
    }
    .optional()?;
    let Some((id, uid, name, created_at, epoch, head)) = row else {
        return Ok(None);
    };
    let members = group_members::table
        .inner_join(users::table)
        .filter(group_members::group_id.eq(id))
        .order((group_members::joined_at, group_members::user_id))
        .select((
            users::id,
            users::username,
            group_members::is_admin,
            group_members::key_fingerprint,
        ))
        .load::<Member>(conn)?;
    Ok(Some(LockedGroup {
        id,
        uid,
        name,
        created_at,
        epoch,
        head,
        members,
    }))
}

/// A user's id and public key, as the server has them.
fn user_key(conn: &mut PgConn, name: &str) -> Result<Option<(UserId, RsaPublicKey)>, ApiError> {
    let found = users::table
        .filter(users::username.eq(name))
        .select((users::id, users::public_key))
        .first::<(UserId, String)>(conn)
        .optional()?;
    found
        .map(|(id, pem)| {
            let key = parse_public_key_pem(&pem)
                .map_err(|e| ApiError::internal(format!("{name}'s stored public key: {e}")))?;
            Ok((id, key))
        })
        .transpose()
}

/// How a refused statement is answered.
fn refusal(error: ChainError, epoch: u64) -> ApiError {
    match error {
        ChainError::OutOfOrder { .. } => ApiError::stale_statement(epoch),
        ChainError::NotAdmin(_) => ApiError::not_admin(),
        ChainError::NotMember(_) => ApiError::member_not_found(),
        ChainError::AlreadyMember(_) => ApiError::already_member(),
        ChainError::AlreadyAdmin(_) => ApiError::already_admin(),
        ChainError::KeyMismatch(user) => ApiError::key_mismatch(&user),
        other @ (ChainError::Malformed(_)
        | ChainError::BadSignature(_)
        | ChainError::WrongGroup
        | ChainError::Ended) => ApiError::invalid_statement(other.to_string()),
    }
}

/// The statement's signer must be the caller.
fn signed_by_caller(statement: &SignedStatement, caller: &str) -> Result<(), ApiError> {
    let parsed = chain::Statement::parse(&statement.text)
        .map_err(|e| ApiError::invalid_statement(e.to_string()))?;
    if parsed.by.as_str() != caller {
        return Err(ApiError::invalid_statement(
            "the statement is signed in another's name",
        ));
    }
    Ok(())
}

fn store_statement(
    conn: &mut PgConn,
    group: GroupId,
    seq: u64,
    statement: &SignedStatement,
) -> Result<(), ApiError> {
    let seq = i64::try_from(seq).map_err(|_| ApiError::invalid_statement("seq is too large"))?;
    diesel::insert_into(group_statements::table)
        .values((
            group_statements::group_id.eq(group),
            group_statements::seq.eq(seq),
            group_statements::text.eq(&statement.text),
            group_statements::sig.eq(&statement.sig),
        ))
        .execute(conn)?;
    Ok(())
}

/// Creates a group from its first statement, signed by `creator`: `name` with the
/// creator as its admin and `members` (as the request lists them) as the others.
pub fn create(
    conn: &mut PgConn,
    creator: Actor<'_>,
    name: &GroupName,
    members: &[Username],
    first: &SignedStatement,
    max: usize,
) -> Result<Group, ApiError> {
    signed_by_caller(first, creator.name)?;
    conn.transaction(|conn| {
        let (_, creator_key) =
            user_key(conn, creator.name)?.ok_or_else(ApiError::user_not_found)?;
        let state = GroupState::create(first, &creator_key).map_err(|e| refusal(e, 0))?;
        let mut named: Vec<&str> = state
            .members
            .iter()
            .skip(1)
            .map(|m| m.name.as_str())
            .collect();
        let mut asked: Vec<&str> = members.iter().map(Username::as_str).collect();
        named.sort_unstable();
        asked.sort_unstable();
        if state.name != *name || named != asked {
            return Err(ApiError::invalid_statement(
                "the statement does not create the group the request names",
            ));
        }
        if state.members.len() > max {
            return Err(ApiError::group_too_large(max));
        }
        let mut rows = Vec::with_capacity(state.members.len());
        for member in &state.members {
            let (user_id, key) =
                user_key(conn, member.name.as_str())?.ok_or_else(ApiError::user_not_found)?;
            if fingerprint(&key) != member.fingerprint {
                return Err(ApiError::key_mismatch(member.name.as_str()));
            }
            rows.push((user_id, member));
        }
        let group_id = diesel::insert_into(groups::table)
            .values((
                groups::name.eq(name.as_str()),
                groups::uid.eq(state.id),
                groups::epoch.eq(0),
                groups::head.eq(state.head.0.to_vec()),
            ))
            .on_conflict(groups::name)
            .do_nothing()
            .returning(groups::id)
            .get_result::<GroupId>(conn)
            .optional()?
            .ok_or_else(ApiError::group_name_taken)?;
        let values: Vec<_> = rows
            .iter()
            .map(|(user_id, member)| {
                (
                    group_members::group_id.eq(group_id),
                    group_members::user_id.eq(*user_id),
                    group_members::is_admin.eq(member.admin),
                    group_members::key_fingerprint.eq(&member.fingerprint),
                )
            })
            .collect();
        diesel::insert_into(group_members::table)
            .values(&values)
            .execute(conn)?;
        store_statement(conn, group_id, 0, first)?;
        let group = lock(conn, name, creator.id, Lock::Update)?;
        let event = group.event(creator.name, creator.name, Some(first))?;
        group.announce(conn, &EventBody::GroupCreated(event))?;
        group.view()
    })
}

/// Applies the next statement of `name`'s chain, signed by `caller`, which must do what
/// `request` asks. The group holds at most `max` members. Returns the group after it.
pub fn apply(
    conn: &mut PgConn,
    caller: Actor<'_>,
    name: &GroupName,
    request: &Request,
    next: &SignedStatement,
    max: usize,
) -> Result<Option<Group>, ApiError> {
    conn.transaction(|conn| {
        let mut group = lock(conn, name, caller.id, Lock::Update)?;
        signed_by_caller(next, caller.name)?;
        let mut state = group.state()?;
        let (_, caller_key) = user_key(conn, caller.name)?.ok_or_else(ApiError::user_not_found)?;
        let Applied {
            statement,
            promoted,
            ended,
        } = state
            .apply(next, &caller_key)
            .map_err(|e| refusal(e, group.epoch_u64()))?;
        let matches = match (request, &statement.change) {
            (Request::Add(user), Change::Add { user: added, .. }) => added == user.as_str(),
            (Request::Remove(user), Change::Remove { user: removed }) => removed == user.as_str(),
            (Request::Remove(user), Change::Leave) => user == caller.name,
            (Request::Promote(user), Change::Promote { user: promoted }) => {
                promoted == user.as_str()
            }
            _ => false,
        };
        if !matches {
            return Err(ApiError::invalid_statement(
                "the statement does not make the change the request asks for",
            ));
        }
        group.epoch = i64::try_from(state.seq)
            .map_err(|_| ApiError::invalid_statement("seq is too large"))?;
        group.head = state.head.0.to_vec();
        diesel::update(groups::table.find(group.id))
            .set((groups::epoch.eq(group.epoch), groups::head.eq(&group.head)))
            .execute(conn)?;
        store_statement(conn, group.id, state.seq, next)?;
        match &statement.change {
            Change::Add {
                user,
                fingerprint: fp,
            } => {
                let (user_id, key) =
                    user_key(conn, user.as_str())?.ok_or_else(ApiError::user_not_found)?;
                if fingerprint(&key) != *fp {
                    return Err(ApiError::key_mismatch(user.as_str()));
                }
                if group.members.len() >= max {
                    return Err(ApiError::group_full(max));
                }
                diesel::insert_into(group_members::table)
                    .values((
                        group_members::group_id.eq(group.id),
                        group_members::user_id.eq(user_id),
                        group_members::key_fingerprint.eq(fp),
                    ))
                    .execute(conn)?;
                group.members.push(Member {
                    user_id,
                    username: user.to_string(),
                    is_admin: false,
                    key_fingerprint: fp.clone(),
                });
                let event = group.event(user.as_str(), caller.name, Some(next))?;
                group.announce(conn, &EventBody::MemberAdded(event))?;
            }
            Change::Remove { user } => remove(conn, &mut group, user.as_str(), caller.name, next)?,
            Change::Leave => remove(conn, &mut group, caller.name, caller.name, next)?,
            Change::Promote { user } => {
                set_admin(conn, &mut group, user.as_str())?;
                let event = group.event(user.as_str(), caller.name, Some(next))?;
                group.announce(conn, &EventBody::AdminAdded(event))?;
            }
            Change::Create { .. } => {
                return Err(ApiError::invalid_statement("a group is created only once"))
            }
        }
        if ended {
            diesel::delete(groups::table.find(group.id)).execute(conn)?;
            return Ok(None);
        }
        if let Some(admin) = promoted {
            // The rule every client applies on its own: no statement of its own.
            set_admin(conn, &mut group, admin.as_str())?;
            let event = group.event(admin.as_str(), caller.name, None)?;
            group.announce(conn, &EventBody::AdminAdded(event))?;
        }
        group.view().map(Some)
    })
}

/// Removes `username`, after telling every member, the removed one included.
fn remove(
    conn: &mut PgConn,
    group: &mut LockedGroup,
    username: &str,
    by: &str,
    statement: &SignedStatement,
) -> Result<(), ApiError> {
    let event = group.event(username, by, Some(statement))?;
    group.announce(conn, &EventBody::MemberRemoved(event))?;
    let at = group
        .members
        .iter()
        .position(|m| m.username == username)
        .ok_or_else(ApiError::member_not_found)?;
    let removed = group.members.remove(at);
    diesel::delete(group_members::table.find((group.id, removed.user_id))).execute(conn)?;
    Ok(())
}

fn set_admin(conn: &mut PgConn, group: &mut LockedGroup, username: &str) -> Result<(), ApiError> {
    let member = group
        .members
        .iter_mut()
        .find(|m| m.username == username)
        .ok_or_else(ApiError::member_not_found)?;
    member.is_admin = true;
    diesel::update(group_members::table.find((group.id, member.user_id)))
        .set(group_members::is_admin.eq(true))
        .execute(conn)?;
    Ok(())
}

/// The group as `reader` (a member) sees it.
pub fn view(conn: &mut PgConn, name: &GroupName, reader: UserId) -> Result<Group, ApiError> {
    conn.transaction(|conn| lock(conn, name, reader, Lock::Share)?.view())
}

/// Every group `reader` is in, alphabetically.
pub fn views_of_member(conn: &mut PgConn, reader: UserId) -> Result<Vec<Group>, ApiError> {
    let names: Vec<String> = group_members::table
        .inner_join(groups::table)
        .filter(group_members::user_id.eq(reader))
        .order(groups::name)
        .select(groups::name)
        .load(conn)?;
    conn.transaction(|conn| {
        names
            .iter()
            .map(|name| {
                let name = stored_name(GroupName::parse, name)?;
                lock(conn, &name, reader, Lock::Share)?.view()
            })
            .collect()
    })
}

/// The statements of `name`'s chain after seq `after` (all of them for `None`), oldest
/// first, for `reader`, a member.
pub fn chain(
    conn: &mut PgConn,
    name: &GroupName,
    reader: UserId,
    after: Option<u64>,
) -> Result<(uuid::Uuid, Vec<ChainEntry>), ApiError> {
    let group = conn.transaction(|conn| lock(conn, name, reader, Lock::Share))?;
    let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
    let rows = group_statements::table
        .filter(group_statements::group_id.eq(group.id))
        .filter(group_statements::seq.gt(after))
        .order(group_statements::seq)
        .select((
            group_statements::seq,
            group_statements::text,
            group_statements::sig,
        ))
        .load::<(i64, String, String)>(conn)?;
    let entries = rows
        .into_iter()
        .map(|(seq, text, sig)| ChainEntry {
            seq: u64::try_from(seq).unwrap_or_default(),
            statement: SignedStatement { text, sig },
        })
        .collect();
    Ok((group.uid, entries))
}
