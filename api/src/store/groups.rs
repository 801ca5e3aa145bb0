//! Groups and their members. Every operation locks the group's row: sends share it,
//! membership changes take it alone, so a send's key check and its delivery see one
//! membership, and concurrent changes to a group apply one after another. Every member
//! hears of every change through their inbox.
//!
//! To anyone but a member a group does not exist. When the last admin leaves (or is
//! removed) and members remain, the member who joined earliest becomes admin; when the
//! last member leaves, the group is deleted.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::{EventBody, Group, GroupEvent};

use crate::db::PgConn;
use crate::error::ApiError;
use crate::ids::{GroupId, UserId};
use crate::schema::{group_members, groups, users};
use crate::store::inbox::{self, Delivery};
use crate::store::users as user_store;

/// One member, in the order they joined.
#[derive(Debug, Clone, Queryable)]
pub struct Member {
    pub user_id: UserId,
    pub username: String,
    pub is_admin: bool,
}

/// A group and its members, read under the group's row lock.
pub struct LockedGroup {
    pub id: GroupId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub members: Vec<Member>,
}

#[derive(Clone, Copy)]
pub enum Lock {
    /// Sending: many at once, but not during a membership change.
    Share,
    /// Changing membership: one at a time.
    Update,
}

impl LockedGroup {
    pub fn member(&self, user: UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == user)
    }

    fn is_admin(&self, user: UserId) -> bool {
        self.member(user).is_some_and(|m| m.is_admin)
    }

    pub fn member_ids(&self) -> Vec<UserId> {
        self.members.iter().map(|m| m.user_id).collect()
    }

    /// The group as its members see it; names sorted.
    pub fn view(&self) -> Group {
        let mut members: Vec<String> = self.members.iter().map(|m| m.username.clone()).collect();
        let mut admins: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.is_admin)
            .map(|m| m.username.clone())
            .collect();
        members.sort();
        admins.sort();
        Group {
            name: self.name.clone(),
            admins,
            members,
            created_at: self.created_at,
        }
    }

    fn event(&self, username: &str, by: &str) -> GroupEvent {
        GroupEvent {
            group: self.name.clone(),
            username: username.to_owned(),
            by: by.to_owned(),
        }
    }

    /// Tells every current member.
    fn announce(&self, conn: &mut PgConn, body: EventBody) -> Result<(), ApiError> {
        let event = serde_json::to_value(&body).map_err(|e| ApiError::Internal(e.into()))?;
        inbox::deliver_to_all(conn, &self.member_ids(), Delivery::GroupEvent(event))?;
        Ok(())
    }

    /// Makes the member at `index` an admin and tells every member.
    fn promote(&mut self, conn: &mut PgConn, index: usize, by: &str) -> Result<(), ApiError> {
        let member = &mut self.members[index];
        member.is_admin = true;
        diesel::update(group_members::table.find((self.id, member.user_id)))
            .set(group_members::is_admin.eq(true))
            .execute(conn)?;
        let event = self.event(&self.members[index].username, by);
        self.announce(conn, EventBody::AdminAdded(event))
    }

    fn position(&self, username: &str) -> Result<usize, ApiError> {
        self.members
            .iter()
            .position(|m| m.username == username)
            .ok_or_else(ApiError::member_not_found)
    }
}

/// Loads `name` with its members, locking its row; `caller` must be a member.
pub fn lock(
    conn: &mut PgConn,
    name: &GroupName,
    caller: UserId,
    lock: Lock,
) -> Result<LockedGroup, ApiError> {
    let query = groups::table
        .filter(groups::name.eq(name.as_str()))
        .select((groups::id, groups::name, groups::created_at));
    let row = match lock {
        Lock::Share => query
            .for_share()
            .first::<(GroupId, String, DateTime<Utc>)>(conn),
        Lock::Update => query
            .for_update()
            .first::<(GroupId, String, DateTime<Utc>)>(conn),
    }
    .optional()?;
    let (id, name, created_at) = row.ok_or_else(ApiError::group_not_found)?;
    let members = group_members::table
        .inner_join(users::table)
        .filter(group_members::group_id.eq(id))
        .order((group_members::joined_at, group_members::user_id))
        .select((users::id, users::username, group_members::is_admin))
        .load::<Member>(conn)?;
    let group = LockedGroup {
        id,
        name,
        created_at,
        members,
    };
    if group.member(caller).is_none() {
        return Err(ApiError::group_not_found());
    }
    Ok(group)
}

/// [`lock`] for a change only admins may make.
fn lock_as_admin(
    conn: &mut PgConn,
    name: &GroupName,
    caller: UserId,
) -> Result<LockedGroup, ApiError> {
    let group = lock(conn, name, caller, Lock::Update)?;
    if group.is_admin(caller) {
        Ok(group)
    } else {
        Err(ApiError::not_admin())
    }
}

/// The one who makes a change.
pub struct Actor<'a> {
    pub id: UserId,
    pub name: &'a str,
}

/// Creates `name` with `creator` as its admin and `members` (without the creator, each
/// once) as the others.
pub fn create(
    conn: &mut PgConn,
    creator: Actor<'_>,
    name: &GroupName,
    members: &[Username],
) -> Result<Group, ApiError> {
    conn.transaction(|conn| {
        let mut joining = vec![creator.id];
        for member in members {
            joining.push(user_store::find_id(conn, member)?.ok_or_else(ApiError::user_not_found)?);
        }
        let group_id = diesel::insert_into(groups::table)
            .values(groups::name.eq(name.as_str()))
            .on_conflict(groups::name)
            .do_nothing()
            .returning(groups::id)
            .get_result::<GroupId>(conn)
            .optional()?
            .ok_or_else(ApiError::group_name_taken)?;
        let rows: Vec<_> = joining
            .iter()
            .map(|&user| {
                (
                    group_members::group_id.eq(group_id),
                    group_members::user_id.eq(user),
                    group_members::is_admin.eq(user == creator.id),
                )
            })
            .collect();
        diesel::insert_into(group_members::table)
            .values(&rows)
            .execute(conn)?;
        let group = lock(conn, name, creator.id, Lock::Update)?;
        let event = group.event(creator.name, creator.name);
        group.announce(conn, EventBody::GroupCreated(event))?;
        Ok(group.view())
    })
}

/// The names of the groups `user` is in, alphabetically.
pub fn names_of_member(conn: &mut PgConn, user: UserId) -> QueryResult<Vec<String>> {
    group_members::table
        .inner_join(groups::table)
        .filter(group_members::user_id.eq(user))
        .order(groups::name)
        .select(groups::name)
        .load(conn)
}

/// The group as `reader` (a member) sees it.
pub fn view(conn: &mut PgConn, name: &GroupName, reader: UserId) -> Result<Group, ApiError> {
    conn.transaction(|conn| Ok(lock(conn, name, reader, Lock::Share)?.view()))
}

/// Every group `reader` is in, alphabetically.
pub fn views_of_member(conn: &mut PgConn, reader: UserId) -> Result<Vec<Group>, ApiError> {
    let names = names_of_member(conn, reader)?;
    conn.transaction(|conn| {
        names
            .iter()
            .filter_map(|name| GroupName::parse(name).ok())
            .map(|name| lock(conn, &name, reader, Lock::Share).map(|g| g.view()))
            .collect()
    })
}

/// An admin adds `username` (`None`: a name no user can have); the group holds at most
/// `max` members.
pub fn add_member(
    conn: &mut PgConn,
    admin: Actor<'_>,
    name: &GroupName,
    username: Option<&Username>,
    max: usize,
) -> Result<Group, ApiError> {
    conn.transaction(|conn| {
        let mut group = lock_as_admin(conn, name, admin.id)?;
        let username = username.ok_or_else(ApiError::user_not_found)?;
        let user_id = user_store::find_id(conn, username)?.ok_or_else(ApiError::user_not_found)?;
        if group.member(user_id).is_some() {
            return Err(ApiError::already_member());
        }
        if group.members.len() >= max {
            return Err(ApiError::group_full(max));
        }
        diesel::insert_into(group_members::table)
            .values((
                group_members::group_id.eq(group.id),
                group_members::user_id.eq(user_id),
            ))
            .execute(conn)?;
        group.members.push(Member {
            user_id,
            username: username.to_string(),
            is_admin: false,
        });
        let event = group.event(username.as_str(), admin.name);
        group.announce(conn, EventBody::MemberAdded(event))?;
        Ok(group.view())
    })
}

/// An admin removes `username`, or a member leaves (`username` is the caller). The name
/// is only compared with the members', so one that cannot exist is simply not a member.
pub fn remove_member(
    conn: &mut PgConn,
    caller: Actor<'_>,
    name: &GroupName,
    username: &str,
) -> Result<(), ApiError> {
    conn.transaction(|conn| {
        let mut group = lock(conn, name, caller.id, Lock::Update)?;
        let leaving = username == caller.name;
        if !leaving && !group.is_admin(caller.id) {
            return Err(ApiError::not_admin());
        }
        let target = group.position(username)?;
        // Everyone, the removed member included, hears of it.
        let event = group.event(username, caller.name);
        group.announce(conn, EventBody::MemberRemoved(event))?;
        let removed = group.members.remove(target);
        diesel::delete(group_members::table.find((group.id, removed.user_id))).execute(conn)?;
        if group.members.is_empty() {
            diesel::delete(groups::table.find(group.id)).execute(conn)?;
        } else if !group.members.iter().any(|m| m.is_admin) {
            group.promote(conn, 0, caller.name)?;
        }
        Ok(())
    })
}

/// An admin makes the member `username` an admin too (`None`: a name no user can have).
pub fn add_admin(
    conn: &mut PgConn,
    admin: Actor<'_>,
    name: &GroupName,
    username: Option<&Username>,
) -> Result<Group, ApiError> {
    conn.transaction(|conn| {
        let mut group = lock_as_admin(conn, name, admin.id)?;
        let username = username.ok_or_else(ApiError::member_not_found)?;
        let target = group.position(username.as_str())?;
        if group.members[target].is_admin {
            return Err(ApiError::already_admin());
        }
        group.promote(conn, target, admin.name)?;
        Ok(group.view())
    })
}
