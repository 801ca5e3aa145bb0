//! Users: accounts, public keys and key backups.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use fastchat_protocol::names::Username;

use crate::db::PgConn;
use crate::ids::UserId;
use crate::schema::{inboxes, users};

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub username: String,
    pub password_hash: String,
    pub public_key: String,
    pub key_backup: Option<String>,
}

/// A user as others see them.
pub struct Profile {
    pub id: UserId,
    pub username: String,
    pub public_key: String,
}

pub fn exists(conn: &mut PgConn, username: &Username) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table.filter(users::username.eq(username.as_str())),
    ))
    .get_result(conn)
}

/// Creates the user and their (empty) inbox: their id and when; `None` when the name
/// was taken first.
pub fn create(conn: &mut PgConn, new: &NewUser) -> QueryResult<Option<(UserId, DateTime<Utc>)>> {
    conn.transaction(|conn| {
        let created = diesel::insert_into(users::table)
            .values(new)
            .on_conflict(users::username)
            .do_nothing()
            .returning((users::id, users::created_at))
            .get_result::<(UserId, DateTime<Utc>)>(conn)
            .optional()?;
        if let Some((id, _)) = &created {
            diesel::insert_into(inboxes::table)
                .values(inboxes::user_id.eq(id))
                .execute(conn)?;
        }
        Ok(created)
    })
}

pub fn find_id(conn: &mut PgConn, username: &Username) -> QueryResult<Option<UserId>> {
    users::table
        .filter(users::username.eq(username.as_str()))
        .select(users::id)
        .first(conn)
        .optional()
}

pub fn profile(conn: &mut PgConn, username: &Username) -> QueryResult<Option<Profile>> {
    users::table
        .filter(users::username.eq(username.as_str()))
        .select((users::id, users::username, users::public_key))
        .first::<(UserId, String, String)>(conn)
        .optional()
        .map(|found| {
            found.map(|(id, username, public_key)| Profile {
                id,
                username,
                public_key,
            })
        })
}

/// The user's id and password hash, to check a login against.
pub fn credentials(
    conn: &mut PgConn,
    username: &Username,
) -> QueryResult<Option<(UserId, String)>> {
    users::table
        .filter(users::username.eq(username.as_str()))
        .select((users::id, users::password_hash))
        .first(conn)
        .optional()
}

/// Up to `limit` users whose names start with `prefix` (a-z, 0-9 and _ only), in
/// alphabetical order.
pub fn with_prefix(
    conn: &mut PgConn,
    prefix: &str,
    limit: i64,
) -> QueryResult<Vec<(UserId, String)>> {
    // `_` is a LIKE wildcard; it is the only one a valid prefix can hold.
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    users::table
        .filter(users::username.like(pattern))
        .order(users::username)
        .limit(limit)
        .select((users::id, users::username))
        .load(conn)
}

pub fn key_backup(conn: &mut PgConn, user: UserId) -> QueryResult<Option<String>> {
    users::table
        .find(user)
        .select(users::key_backup)
        .first(conn)
}

pub fn contacts_backup(conn: &mut PgConn, user: UserId) -> QueryResult<Option<String>> {
    users::table
        .find(user)
        .select(users::contacts_backup)
        .first(conn)
}

pub fn set_contacts_backup(conn: &mut PgConn, user: UserId, backup: &str) -> QueryResult<()> {
    diesel::update(users::table.find(user))
        .set(users::contacts_backup.eq(backup))
        .execute(conn)
        .map(drop)
}
