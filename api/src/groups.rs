//! Groups: any user creates one and becomes its admin; admins add and remove members
//! and make other admins; members leave. Every change locks the group's row, so
//! concurrent changes to one group apply one after another, and every member's inbox
//! gets an event for each.
//!
//! When the last admin leaves (or is removed) and members remain, the member who joined
//! earliest becomes admin. When the last member leaves, the group is deleted.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use fastchat_protocol::names::is_valid_name;
use fastchat_protocol::wire::{
    CreateGroup, EventBody, Group, GroupEvent, GroupList, GroupUser, MessagePage,
};

use crate::auth::AuthUser;
use crate::db::{self, PgConn};
use crate::error::ApiError;
use crate::messages::{self, Delivery, HistoryQuery};
use crate::schema::{group_members, groups, users};
use crate::startup::AppState;

/// One member, in the order they joined.
#[derive(Debug, Clone, Queryable)]
pub struct Member {
    pub user_id: i64,
    pub username: String,
    pub is_admin: bool,
}

/// A group row and its members, read under the group's row lock.
pub struct LockedGroup {
    pub id: i64,
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

pub fn group_not_found() -> ApiError {
    ApiError::not_found("group_not_found", "no such group, or you are not a member")
}

fn not_admin() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "not_admin",
        "only the group's admins may do that",
    )
}

fn member_not_found() -> ApiError {
    ApiError::not_found("member_not_found", "that user is not a member of the group")
}

impl LockedGroup {
    pub fn member(&self, user_id: i64) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == user_id)
    }

    pub fn member_ids(&self) -> Vec<i64> {
        self.members.iter().map(|m| m.user_id).collect()
    }

    fn view(&self) -> Group {
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
}

/// Loads `name` with its members, locking its row; the caller must be a member (to
/// anyone else the group does not exist).
pub fn lock(
    conn: &mut PgConn,
    name: &str,
    caller: i64,
    lock: Lock,
) -> Result<LockedGroup, ApiError> {
    if !is_valid_name(name) {
        return Err(group_not_found());
    }
    let query = groups::table.filter(groups::name.eq(name)).select((
        groups::id,
        groups::name,
        groups::created_at,
    ));
    let row = match lock {
        Lock::Share => query
            .for_share()
            .first::<(i64, String, DateTime<Utc>)>(conn),
        Lock::Update => query
            .for_update()
            .first::<(i64, String, DateTime<Utc>)>(conn),
    }
    .optional()?;
    let (id, name, created_at) = row.ok_or_else(group_not_found)?;
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
        return Err(group_not_found());
    }
    Ok(group)
}

/// [`lock`] for a change only admins may make.
fn lock_as_admin(conn: &mut PgConn, name: &str, caller: i64) -> Result<LockedGroup, ApiError> {
    let group = lock(conn, name, caller, Lock::Update)?;
    if group.member(caller).is_some_and(|m| m.is_admin) {
        Ok(group)
    } else {
        Err(not_admin())
    }
}

fn find_user(conn: &mut PgConn, username: &str) -> Result<(i64, String), ApiError> {
    let id = if is_valid_name(username) {
        users::table
            .filter(users::username.eq(username))
            .select(users::id)
            .first::<i64>(conn)
            .optional()?
    } else {
        None
    };
    id.map(|id| (id, username.to_owned())).ok_or_else(|| {
        ApiError::not_found("user_not_found", format!("no user is called {username:?}"))
    })
}

/// Makes the member at `index` an admin and tells every member.
fn promote(
    conn: &mut PgConn,
    group: &mut LockedGroup,
    index: usize,
    by: &str,
) -> Result<(), ApiError> {
    let member = &mut group.members[index];
    member.is_admin = true;
    diesel::update(group_members::table.find((group.id, member.user_id)))
        .set(group_members::is_admin.eq(true))
        .execute(conn)?;
    let event = group.event(&group.members[index].username, by);
    announce(conn, &group.member_ids(), EventBody::AdminAdded(event))
}

fn announce(conn: &mut PgConn, to: &[i64], body: EventBody) -> Result<(), ApiError> {
    let event = serde_json::to_value(&body).map_err(|e| ApiError::Internal(e.into()))?;
    messages::deliver(conn, to, Delivery::Event(event))?;
    Ok(())
}

/// `POST /v1/groups`
pub async fn create(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: web::Json<CreateGroup>,
) -> Result<HttpResponse, ApiError> {
    let CreateGroup { name, mut members } = body.into_inner();
    if !is_valid_name(&name) {
        return Err(ApiError::bad_request(
            "invalid_group_name",
            "a group name is 3 to 32 characters of a-z, 0-9 and _",
        ));
    }
    members.retain(|m| *m != caller.username);
    members.sort();
    members.dedup();
    let max = state.config.group_max_members;
    if members.len() + 1 > max {
        return Err(ApiError::bad_request(
            "group_too_large",
            format!("a group has at most {max} members"),
        ));
    }
    let group = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let mut joining = vec![(caller.user_id, caller.username.clone())];
            for name in &members {
                joining.push(find_user(conn, name)?);
            }
            let created = diesel::insert_into(groups::table)
                .values(groups::name.eq(&name))
                .on_conflict(groups::name)
                .do_nothing()
                .returning(groups::id)
                .get_result::<i64>(conn)
                .optional()?;
            let group_id = created.ok_or_else(|| {
                ApiError::conflict("group_name_taken", "a group with that name exists")
            })?;
            let rows: Vec<_> = joining
                .iter()
                .map(|(user_id, _)| {
                    (
                        group_members::group_id.eq(group_id),
                        group_members::user_id.eq(user_id),
                        group_members::is_admin.eq(*user_id == caller.user_id),
                    )
                })
                .collect();
            diesel::insert_into(group_members::table)
                .values(&rows)
                .execute(conn)?;
            let group = lock(conn, &name, caller.user_id, Lock::Update)?;
            let event = group.event(&caller.username, &caller.username);
            announce(conn, &group.member_ids(), EventBody::GroupCreated(event))?;
            Ok(group.view())
        })
    })
    .await?;
    tracing::info!(group = %group.name, members = group.members.len(), "group created");
    Ok(HttpResponse::Created().json(group))
}

/// `GET /v1/groups`: the caller's groups.
pub async fn list(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<web::Json<GroupList>, ApiError> {
    let groups = db::run(&state.pool, move |conn| {
        let names = group_members::table
            .inner_join(groups::table)
            .filter(group_members::user_id.eq(caller.user_id))
            .order(groups::name)
            .select(groups::name)
            .load::<String>(conn)?;
        conn.transaction(|conn| {
            names
                .iter()
                .map(|name| lock(conn, name, caller.user_id, Lock::Share).map(|g| g.view()))
                .collect::<Result<Vec<_>, _>>()
        })
    })
    .await?;
    Ok(web::Json(GroupList { groups }))
}

/// `GET /v1/groups/{name}`
pub async fn get(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
) -> Result<web::Json<Group>, ApiError> {
    let name = path.into_inner();
    let group = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| Ok(lock(conn, &name, caller.user_id, Lock::Share)?.view()))
    })
    .await?;
    Ok(web::Json(group))
}

/// `POST /v1/groups/{name}/members` (admins only)
pub async fn add_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    body: web::Json<GroupUser>,
) -> Result<web::Json<Group>, ApiError> {
    let name = path.into_inner();
    let username = body.into_inner().username;
    let max = state.config.group_max_members;
    let group = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let mut group = lock_as_admin(conn, &name, caller.user_id)?;
            let (user_id, username) = find_user(conn, &username)?;
            if group.member(user_id).is_some() {
                return Err(ApiError::conflict(
                    "already_member",
                    "that user is already a member",
                ));
            }
            if group.members.len() >= max {
                return Err(ApiError::conflict(
                    "group_full",
                    format!("a group has at most {max} members"),
                ));
            }
            diesel::insert_into(group_members::table)
                .values((
                    group_members::group_id.eq(group.id),
                    group_members::user_id.eq(user_id),
                ))
                .execute(conn)?;
            group.members.push(Member {
                user_id,
                username: username.clone(),
                is_admin: false,
            });
            let event = group.event(&username, &caller.username);
            announce(conn, &group.member_ids(), EventBody::MemberAdded(event))?;
            Ok(group.view())
        })
    })
    .await?;
    Ok(web::Json(group))
}

/// `DELETE /v1/groups/{name}/members/{username}`: an admin removes a member, or a
/// member leaves.
pub async fn remove_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, username) = path.into_inner();
    db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let mut group = lock(conn, &name, caller.user_id, Lock::Update)?;
            let leaving = username == caller.username;
            if !leaving && !group.member(caller.user_id).is_some_and(|m| m.is_admin) {
                return Err(not_admin());
            }
            let target = group
                .members
                .iter()
                .position(|m| m.username == username)
                .ok_or_else(member_not_found)?;
            // Everyone, the removed member included, hears of it.
            let event = group.event(&username, &caller.username);
            announce(conn, &group.member_ids(), EventBody::MemberRemoved(event))?;
            let removed = group.members.remove(target);
            diesel::delete(group_members::table.find((group.id, removed.user_id))).execute(conn)?;

            if group.members.is_empty() {
                diesel::delete(groups::table.find(group.id)).execute(conn)?;
            } else if !group.members.iter().any(|m| m.is_admin) {
                promote(conn, &mut group, 0, &caller.username)?;
            }
            Ok(())
        })
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/groups/{name}/admins` (admins only)
pub async fn add_admin(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    body: web::Json<GroupUser>,
) -> Result<web::Json<Group>, ApiError> {
    let name = path.into_inner();
    let username = body.into_inner().username;
    let group = db::run(&state.pool, move |conn| {
        conn.transaction(|conn| {
            let mut group = lock_as_admin(conn, &name, caller.user_id)?;
            let target = group
                .members
                .iter()
                .position(|m| m.username == username)
                .ok_or_else(member_not_found)?;
            if group.members[target].is_admin {
                return Err(ApiError::conflict(
                    "already_admin",
                    "that member is already an admin",
                ));
            }
            promote(conn, &mut group, target, &caller.username)?;
            Ok(group.view())
        })
    })
    .await?;
    Ok(web::Json(group))
}

/// `GET /v1/groups/{name}/messages`: members only; each sees what was sent while they
/// were a member (the messages that carry a key for them).
pub async fn history(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<MessagePage>, ApiError> {
    let name = path.into_inner();
    let (before, limit) = query.into_inner().validated()?;
    let reader = caller.user_id;
    let rows = db::run(&state.pool, move |conn| {
        let group = conn.transaction(|conn| lock(conn, &name, reader, Lock::Share))?;
        Ok(messages::load_group_history(
            conn, reader, group.id, before, limit,
        )?)
    })
    .await?;
    Ok(web::Json(messages::page(rows, limit, &caller.username)))
}
