//! The heartbeat loop on its own, against a real database: while it runs, a server
//! that someone took for dead comes back to the registry; once it has been stopped, it
//! never does (a stopping server deletes its row right after, and a heartbeat that put
//! the row back would keep a stopped server listed).

use std::time::{Duration, Instant};

use fastchat_api::live::hub::Hub;
use fastchat_api::live::presence::{Presence, HEARTBEAT_EVERY};
use fastchat_api::store::servers::ServerIdentity;
use fastchat_tests::{eventually, TestDb};

async fn listed(db: &TestDb, me: &ServerIdentity) -> bool {
    db.client()
        .await
        .query_opt(
            "SELECT 1 FROM servers WHERE id::text = $1",
            &[&me.id.to_string()],
        )
        .await
        .expect("reading the registry")
        .is_some()
}

async fn forget(db: &TestDb, me: &ServerIdentity) {
    db.client()
        .await
        .execute(
            "DELETE FROM servers WHERE id::text = $1",
            &[&me.id.to_string()],
        )
        .await
        .expect("deleting the row");
}

#[tokio::test]
async fn a_stopped_heartbeat_never_puts_its_server_back_in_the_registry() {
    let db = TestDb::create().await;
    let pool = fastchat_api::db::build_pool(&db.url, 2).expect("a pool");
    let me = ServerIdentity {
        id: uuid::Uuid::new_v4(),
        address: "127.0.0.1:1".into(),
        admin_address: "127.0.0.1:2".into(),
    };
    let (presence_tx, presence_rx) = tokio::sync::mpsc::unbounded_channel();
    // No group messages in this test: their reader is not needed.
    let hub = Hub::new(presence_tx, tokio::sync::mpsc::unbounded_channel().0);
    let presence = Presence::spawn(pool, hub, me.clone(), presence_rx);
    let wait = HEARTBEAT_EVERY * 3;

    // Running: the first heartbeat finds no row and registers; taken for dead, it
    // registers again.
    eventually(wait, "the heartbeat to register the server", || async {
        listed(&db, &me).await.then_some(())
    })
    .await;
    forget(&db, &me).await;
    eventually(wait, "the heartbeat to bring the server back", || async {
        listed(&db, &me).await.then_some(())
    })
    .await;

    // Stopped: the row, deleted as a stopping server deletes it, stays gone through
    // more than one heartbeat's time.
    presence.stop().await;
    forget(&db, &me).await;
    let until = Instant::now() + HEARTBEAT_EVERY + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(
            !listed(&db, &me).await,
            "a stopped heartbeat put its server back in the registry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
