//! Ends the streams of sessions that end: at once when a session expires (each stream's
//! hub entry knows when), at once on logout (a revocation notification), and, as the
//! backstop for a notification missed while the listener was away, by checking every
//! open session against the database now and then (taking any new expiry), and right
//! after the listener is back.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::db::PgPool;
use crate::live::hub::Hub;
use crate::store::sessions::find_sessions;

const EXPIRY_EVERY: Duration = Duration::from_secs(1);
const CHECK_EVERY: Duration = Duration::from_secs(30);

pub async fn run(pool: PgPool, hub: Arc<Hub>) {
    let mut expiry = tokio::time::interval(EXPIRY_EVERY);
    let mut check = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = expiry.tick() => {
                let ended = hub.revoke_expired(Utc::now());
                if ended > 0 {
                    tracing::info!(sessions = ended, "expired sessions' streams ended");
                }
                continue;
            }
            _ = check.tick() => {}
            _ = hub.session_check_asked() => {}
        }
        let open = hub.open_sessions();
        if open.is_empty() {
            continue;
        }
        let pool = pool.clone();
        let asked = open.clone();
        let Ok(found) = tokio::task::spawn_blocking(move || find_sessions(&pool, asked)).await
        else {
            continue;
        };
        let mut gone: Vec<&[u8]> = Vec::new();
        for (hash, found) in open.iter().zip(&found) {
            match found {
                Ok(Some(session)) => hub.set_expiry(hash, session.expires_at),
                Ok(None) => gone.push(hash),
                Err(_) => {}
            }
        }
        if !gone.is_empty() {
            tracing::info!(sessions = gone.len(), "ended sessions' streams closed");
            hub.revoke(gone);
        }
    }
}
