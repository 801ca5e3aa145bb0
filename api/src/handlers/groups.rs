//! `/v1/groups`: any user creates one and becomes its admin; admins add and remove
//! members and make other admins; members leave. The rules live in `store::groups`.

use actix_web::{web, HttpResponse};
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::{CreateGroup, Group, GroupList, GroupUser, MessagePage};

use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::AuthUser;
use crate::handlers::messages::HistoryQuery;
use crate::state::AppState;
use crate::store::groups::{self, Actor};
use crate::store::messages;

/// A group named in a path: to a non-member, one that cannot exist is as unknown as any.
fn group_in_path(name: &str) -> Result<GroupName, ApiError> {
    GroupName::parse(name).map_err(|_| ApiError::group_not_found())
}

/// A user named in a request; `None` for a name no user can have. The store answers
/// that only once the caller's rights are checked, so an outsider learns nothing.
fn named(name: &str) -> Option<Username> {
    Username::parse(name).ok()
}

fn actor(caller: &AuthUser) -> Actor<'_> {
    Actor {
        id: caller.user.user_id,
        name: &caller.user.username,
    }
}

/// `POST /v1/groups`
pub async fn create(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: web::Json<CreateGroup>,
) -> Result<HttpResponse, ApiError> {
    let CreateGroup { name, members } = body.into_inner();
    let name = GroupName::parse(&name).map_err(|_| ApiError::invalid_group_name())?;
    let mut others: Vec<&String> = members
        .iter()
        .filter(|m| **m != caller.user.username)
        .collect();
    others.sort();
    others.dedup();
    let max = state.config.group_max_members;
    if others.len() + 1 > max {
        return Err(ApiError::group_too_large(max));
    }
    let others = others
        .into_iter()
        .map(|m| named(m).ok_or_else(ApiError::user_not_found))
        .collect::<Result<Vec<_>, _>>()?;
    let group = db::run(&state.pool, move |conn| {
        groups::create(conn, actor(&caller), &name, &others)
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
    let reader = caller.user.user_id;
    let groups = db::run(&state.pool, move |conn| {
        groups::views_of_member(conn, reader)
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
    let name = group_in_path(&path)?;
    let reader = caller.user.user_id;
    let group = db::run(&state.pool, move |conn| groups::view(conn, &name, reader)).await?;
    Ok(web::Json(group))
}

/// `POST /v1/groups/{name}/members` (admins only)
pub async fn add_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    body: web::Json<GroupUser>,
) -> Result<web::Json<Group>, ApiError> {
    let name = group_in_path(&path)?;
    let username = body.into_inner().username;
    let max = state.config.group_max_members;
    let group = db::run(&state.pool, move |conn| {
        groups::add_member(conn, actor(&caller), &name, named(&username).as_ref(), max)
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
    let name = group_in_path(&name)?;
    db::run(&state.pool, move |conn| {
        groups::remove_member(conn, actor(&caller), &name, &username)
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
    let name = group_in_path(&path)?;
    let username = body.into_inner().username;
    let group = db::run(&state.pool, move |conn| {
        groups::add_admin(conn, actor(&caller), &name, named(&username).as_ref())
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
    let name = group_in_path(&path)?;
    let page = query.into_inner().page()?;
    let messages = db::run(&state.pool, move |conn| {
        messages::group_page(conn, &caller.user, &name, page)
    })
    .await?;
    Ok(web::Json(messages))
}
