//! `/v1/groups`: groups whose membership is a chain of signed statements. Any user
//! creates one with its first statement and becomes its admin; admins add and remove
//! members and make other admins; members leave; each change comes with the statement
//! its maker signed. The rules live in `store::groups` and `fastchat_protocol::group`.

use actix_web::{web, HttpResponse};
use fastchat_protocol::names::{GroupName, Username};
use fastchat_protocol::wire::{
    Chain, CreateGroup, Group, GroupList, GroupUser, MessagePage, RemoveMember,
};
use serde::Deserialize;

use crate::db;
use crate::error::ApiError;
use crate::handlers::auth::AuthUser;
use crate::handlers::messages::HistoryQuery;
use crate::state::AppState;
use crate::store::groups::{self, Actor, Request};
use crate::store::messages;

/// A group named in a path: to a non-member, one that cannot exist is as unknown as any.
fn group_in_path(name: &str) -> Result<GroupName, ApiError> {
    GroupName::parse(name).map_err(|_| ApiError::group_not_found())
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
    let CreateGroup {
        name,
        members,
        statement,
    } = body.into_inner();
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
        .map(|m| Username::parse(m).map_err(|_| ApiError::user_not_found()))
        .collect::<Result<Vec<_>, _>>()?;
    let group = db::run(&state.pool, move |conn| {
        groups::create(conn, actor(&caller), &name, &others, &statement, max)
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

#[derive(Debug, Deserialize)]
pub struct ChainQuery {
    /// A seq, as everywhere: 0 to `i64::MAX`.
    after: Option<i64>,
}

/// `GET /v1/groups/{name}/statements?after=`: the chain, for members to verify.
pub async fn statements(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    query: web::Query<ChainQuery>,
) -> Result<web::Json<Chain>, ApiError> {
    let name = group_in_path(&path)?;
    let reader = caller.user.user_id;
    let after = query
        .after
        .map(u64::try_from)
        .transpose()
        .map_err(|_| ApiError::invalid_query("after is 0 or more"))?;
    let (group_id, statements) = db::run(&state.pool, move |conn| {
        groups::chain(conn, &name, reader, after)
    })
    .await?;
    Ok(web::Json(Chain {
        group_id,
        statements,
    }))
}

/// Applies a membership statement for one of the routes below.
async fn change(
    state: &AppState,
    caller: AuthUser,
    name: &str,
    request: Request,
    statement: fastchat_protocol::group::SignedStatement,
) -> Result<Option<Group>, ApiError> {
    let name = group_in_path(name)?;
    let max = state.config.group_max_members;
    db::run(&state.pool, move |conn| {
        groups::apply(conn, actor(&caller), &name, &request, &statement, max)
    })
    .await
}

/// `POST /v1/groups/{name}/members` (admins only)
pub async fn add_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    body: web::Json<GroupUser>,
) -> Result<HttpResponse, ApiError> {
    let GroupUser {
        username,
        statement,
    } = body.into_inner();
    let group = change(&state, caller, &path, Request::Add(username), statement).await?;
    Ok(HttpResponse::Ok().json(group))
}

/// `DELETE /v1/groups/{name}/members/{username}`: an admin removes a member, or a
/// member leaves.
pub async fn remove_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<RemoveMember>,
) -> Result<HttpResponse, ApiError> {
    let (name, username) = path.into_inner();
    let statement = body.into_inner().statement;
    change(&state, caller, &name, Request::Remove(username), statement).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/groups/{name}/admins` (admins only)
pub async fn add_admin(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<String>,
    body: web::Json<GroupUser>,
) -> Result<HttpResponse, ApiError> {
    let GroupUser {
        username,
        statement,
    } = body.into_inner();
    let group = change(&state, caller, &path, Request::Promote(username), statement).await?;
    Ok(HttpResponse::Ok().json(group))
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
