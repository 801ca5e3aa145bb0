//! The database layer on its own, without HTTP: the SQL functions as the migrations
//! leave them (pinned in `api/sql/functions.sql`), `schema.rs` as diesel writes it, the
//! notification contract as PostgreSQL really sends it, and the invariants the sending
//! functions keep under concurrency.
//!
//! After a migration changes a function or trigger, rewrite the pinned file with
//! `FASTCHAT_BLESS=1 scripts/test -p fastchat-tests --test store` and review the diff.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use diesel::Connection;
use fastchat_api::db::{self, PgPool};
use fastchat_api::ids::{Seq, UserId};
use fastchat_api::notification::{self, Notification, PushedEvent, PushedMessage};
use fastchat_api::store::inbox::{self, Delivery, InboxRead};
use fastchat_api::store::messages::{send_direct_batch, DirectSend, Outgoing};
use fastchat_api::store::sessions::{self, SessionUser};
use fastchat_api::store::users::{self, NewUser};
use fastchat_protocol::envelope::{self, Envelope, Kind};
use fastchat_protocol::names::Username;
use fastchat_protocol::wire::EventBody;
use fastchat_tests::{root, TestDb};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

const PINNED: &str = "api/sql/functions.sql";
const PINNED_HEADER: &str = "\
-- The current definition of every FastChat SQL function and trigger, as PostgreSQL
-- prints them from a database the migrations made. Do not edit: a test compares this
-- file with the database; after a migration changes one, rewrite it with
--   FASTCHAT_BLESS=1 scripts/test -p fastchat-tests --test store
-- and review the diff.
";

/// Every `fastchat_*` function and every trigger, as PostgreSQL prints them, in name order.
async fn current_definitions(db: &TestDb) -> String {
    let rows = db
        .client()
        .await
        .query(
            "SELECT name, def FROM (
                 SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
                            AS name,
                        rtrim(pg_get_functiondef(p.oid), E'\\n') || ';' AS def
                   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = 'public' AND p.proname LIKE 'fastchat\\_%'
                 UNION ALL
                 SELECT 'trigger ' || t.tgname, pg_get_triggerdef(t.oid) || ';'
                   FROM pg_trigger t WHERE NOT t.tgisinternal
             ) d ORDER BY name",
            &[],
        )
        .await
        .expect("reading the definitions");
    let mut text = PINNED_HEADER.to_owned();
    for row in rows {
        let (name, def): (String, String) = (row.get(0), row.get(1));
        text.push_str(&format!("\n-- {name}\n{def}\n"));
    }
    text
}

#[tokio::test]
async fn the_pinned_sql_is_what_the_migrations_define() {
    let db = TestDb::create().await;
    let current = current_definitions(&db).await;
    let path = root().join(PINNED);
    if std::env::var_os("FASTCHAT_BLESS").is_some() {
        std::fs::write(&path, &current).expect("writing the pinned SQL");
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    if pinned != current {
        let first = pinned
            .lines()
            .zip(current.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(pinned.lines().count().min(current.lines().count()));
        panic!(
            "{PINNED} differs from the migrated database from line {}:\n  pinned:   {:?}\n  database: {:?}\n\
             If a migration changed it on purpose, rewrite the file with \
             FASTCHAT_BLESS=1 scripts/test -p fastchat-tests --test store",
            first + 1,
            pinned.lines().nth(first).unwrap_or("(end of file)"),
            current.lines().nth(first).unwrap_or("(end of output)"),
        );
    }
    for function in [
        "fastchat_deliver",
        "fastchat_find_live_sessions",
        "fastchat_login_attempt",
        "fastchat_read_inbox_events",
        "fastchat_send_direct_messages",
        "fastchat_wake",
    ] {
        assert!(
            pinned.contains(&format!("\n-- {function}(")),
            "{function} is pinned"
        );
    }
}

#[tokio::test]
async fn schema_rs_is_what_diesel_print_schema_writes_from_the_migrations() {
    let db = TestDb::create().await;
    let diesel = std::env::var("FASTCHAT_DIESEL").unwrap_or_else(|_| "diesel".to_owned());
    let out = Command::new(&diesel)
        .args(["print-schema", "--database-url", &db.url])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {diesel} ({e}): install it with `cargo install diesel_cli \
                 --no-default-features --features postgres` (scripts/test does)"
            )
        });
    assert!(
        out.status.success(),
        "diesel print-schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("utf-8 schema");
    let ours = std::fs::read_to_string(root().join("api/src/schema.rs")).expect("schema.rs");
    assert_eq!(
        ours, printed,
        "api/src/schema.rs is not what `diesel print-schema` writes from the migrations"
    );
}

fn pool(db: &TestDb) -> PgPool {
    db::build_pool(&db.url, 4).expect("a pool")
}

/// Signs up `names` directly in the database; their ids, in order.
fn make_users(pool: &PgPool, names: &[&str]) -> Vec<UserId> {
    let mut conn = pool.get().expect("a connection");
    names
        .iter()
        .map(|name| {
            let new = NewUser {
                username: (*name).to_owned(),
                password_hash: "not a hash".into(),
                public_key: "not a key".into(),
                key_backup: None,
            };
            users::create(&mut conn, &new)
                .expect("insert")
                .expect("a new name");
            let name = Username::parse(name).expect("a valid name");
            users::find_id(&mut conn, &name)
                .expect("lookup")
                .expect("found")
        })
        .collect()
}

fn envelope(from: &str, to: &str, ciphertext_len: usize) -> Envelope {
    Envelope {
        v: envelope::VERSION,
        alg: envelope::ALGORITHM.to_owned(),
        sent_at: Some("2026-12-01T12:00:00.000Z".into()),
        group: None,
        nonce: "bm9uY2Vub25jZW5v".into(),
        ciphertext: "c".repeat(ciphertext_len),
        keys: [
            (from.to_owned(), format!("key for {from}")),
            (to.to_owned(), format!("key for {to}")),
        ]
        .into(),
        sig: "signature".into(),
    }
}

fn direct(
    sender: (UserId, &str),
    to: &str,
    client_id: uuid::Uuid,
    ciphertext_len: usize,
) -> DirectSend {
    DirectSend {
        message: Outgoing {
            sender: SessionUser {
                user_id: sender.0,
                username: sender.1.to_owned(),
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            },
            client_id,
            kind: Kind::Text,
            envelope: envelope(sender.1, to, ciphertext_len),
            attachments: Vec::new(),
        },
        recipient: Username::parse(to).expect("a valid name"),
    }
}

/// Everything PostgreSQL notifies on the server's channel, as it arrives.
async fn listen(db: &TestDb) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("a listening connection");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(AsyncMessage::Notification(n)) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", notification::CHANNEL))
        .await
        .expect("LISTEN");
    (client, rx)
}

async fn next_payload(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a notification within 10 s")
        .expect("the listener is running")
}

#[tokio::test]
async fn the_notification_contract_is_what_the_sql_functions_really_send() {
    let db = TestDb::create().await;
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT fastchat_notification_channel(), fastchat_notification_max_bytes()",
            &[],
        )
        .await
        .expect("the contract's constants");
    assert_eq!(row.get::<_, String>(0), notification::CHANNEL);
    assert_eq!(
        usize::try_from(row.get::<_, i32>(1)).expect("positive"),
        notification::MAX_PAYLOAD_BYTES
    );

    let pool = pool(&db);
    let ids = make_users(&pool, &["alice", "bob"]);
    let (alice, bob) = (ids[0], ids[1]);
    let (_listener, mut payloads) = listen(&db).await;

    // A one-to-one message goes to its recipient's server whole.
    let client_id = uuid::Uuid::new_v4();
    let sends = vec![direct((alice, "alice"), "bob", client_id, 100)];
    let batch_pool = pool.clone();
    let answers = tokio::task::spawn_blocking(move || send_direct_batch(&batch_pool, &sends))
        .await
        .expect("sent");
    let sent = answers
        .into_iter()
        .next()
        .expect("one answer")
        .expect("stored");
    let payload = next_payload(&mut payloads).await;
    let Ok(Notification::Push { recipient, event }) = Notification::decode(&payload) else {
        panic!("not a push: {payload}");
    };
    assert_eq!(recipient, bob);
    let sent_envelope = envelope("alice", "bob", 100);
    let expected = PushedEvent {
        seq: Seq(1),
        message: PushedMessage {
            id: fastchat_api::ids::MessageId(sent.id),
            sender: "alice".into(),
            recipient: "bob".into(),
            kind: "text".into(),
            client_id,
            sent_at: sent.sent_at,
            nonce: sent_envelope.nonce.clone(),
            ciphertext: sent_envelope.ciphertext.clone(),
            sig: sent_envelope.sig.clone(),
            attachments: Vec::new(),
            signed_at: Some("2026-12-01T12:00:00.000Z".into()),
            wrapped_key: "key for bob".into(),
        },
    };
    assert_eq!(PushedEvent::decode(event).expect("decodes"), expected);
    // And it is exactly what bob's inbox holds.
    let read = inbox::read_inboxes(
        &pool,
        vec![InboxRead {
            user_id: bob,
            reader: "bob".into(),
            after: Seq(0),
            limit: 10,
        }],
    );
    let events = read.into_iter().next().expect("an answer").expect("read");
    assert_eq!(events.len(), 1);
    let EventBody::Message { message } = &events[0].body else {
        panic!("not a message");
    };
    assert_eq!(message.id, sent.id);
    assert_eq!(message.envelope.ciphertext, sent_envelope.ciphertext);

    // A message too big for a notification wakes its recipient instead.
    let big = vec![direct(
        (alice, "alice"),
        "bob",
        uuid::Uuid::new_v4(),
        notification::MAX_PAYLOAD_BYTES,
    )];
    let batch_pool = pool.clone();
    tokio::task::spawn_blocking(move || send_direct_batch(&batch_pool, &big))
        .await
        .expect("sent")
        .into_iter()
        .next()
        .expect("one answer")
        .expect("stored");
    let payload = next_payload(&mut payloads).await;
    assert_eq!(
        Notification::decode(&payload).expect("decodes"),
        Notification::Wake(vec![bob]),
        "{payload:.100}"
    );

    // Group events wake every member, in payloads under the limit.
    let many: Vec<UserId> = (1_000_000_000_000..1_000_000_001_000).map(UserId).collect();
    let mut conn = pool.get().expect("a connection");
    inbox::deliver(
        &mut conn,
        many.iter()
            .map(|&u| (u, Delivery::GroupEvent(serde_json::json!({}))))
            .collect(),
    )
    .expect("delivered to no inbox: those users do not exist");
    let mut woken = Vec::new();
    while woken.len() < many.len() {
        let payload = next_payload(&mut payloads).await;
        assert!(payload.len() <= notification::MAX_PAYLOAD_BYTES);
        match Notification::decode(&payload) {
            Ok(Notification::Wake(users)) => woken.extend(users),
            other => panic!("not a wake-up: {other:?}"),
        }
    }
    assert_eq!(woken, many);

    // Whatever ends a live session tells every server, with its token's hash: a logout,
    // an expiry moved into the past, a user deleted. One already expired is not news.
    let session = |conn: &mut db::PgConn, n: u8, user: UserId, expires_in_secs: i64| {
        let hash = vec![n; 32];
        let expires_at = chrono::Utc::now() + chrono::Duration::seconds(expires_in_secs);
        sessions::create(conn, &hash, user, None, expires_at).expect("a session");
        hash
    };
    let revoked = |payload: &str| match Notification::decode(payload) {
        Ok(Notification::Revoke(hash)) => hash,
        other => panic!("not a revocation: {other:?}"),
    };
    let logged_out = session(&mut conn, 1, alice, 3600);
    sessions::delete(&mut conn, &logged_out).expect("logged out");
    assert_eq!(revoked(&next_payload(&mut payloads).await), logged_out);
    let cut_short = session(&mut conn, 2, alice, 3600);
    let already_over = session(&mut conn, 3, alice, -1);
    client
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1",
            &[&alice.0],
        )
        .await
        .expect("expiry moved");
    assert_eq!(revoked(&next_payload(&mut payloads).await), cut_short);
    let of_bob = session(&mut conn, 4, bob, 3600);
    client
        .execute("DELETE FROM users WHERE id = $1", &[&bob.0])
        .await
        .expect("bob deleted");
    assert_eq!(revoked(&next_payload(&mut payloads).await), of_bob);
    client
        .execute(
            "DELETE FROM sessions WHERE token_hash = $1",
            &[&already_over],
        )
        .await
        .expect("deleted");
    client
        .execute("SELECT pg_notify($1, 'end')", &[&notification::CHANNEL])
        .await
        .expect("a marker");
    assert_eq!(
        next_payload(&mut payloads).await,
        "end",
        "nothing before the marker"
    );
}

#[tokio::test]
async fn the_same_client_id_twice_in_one_batch_stores_one_message() {
    let db = TestDb::create().await;
    let pool = pool(&db);
    let ids = make_users(&pool, &["alice", "bob", "carol"]);
    let alice = (ids[0], "alice");
    let client_id = uuid::Uuid::new_v4();
    let sends = vec![
        direct(alice, "bob", client_id, 50),
        direct(alice, "bob", client_id, 50),
        direct(alice, "carol", client_id, 50),
        direct(alice, "nobody", uuid::Uuid::new_v4(), 50),
    ];
    let batch_pool = pool.clone();
    let answers = tokio::task::spawn_blocking(move || send_direct_batch(&batch_pool, &sends))
        .await
        .expect("sent");
    let first = answers[0].as_ref().expect("the first is stored");
    let second = answers[1].as_ref().expect("the second is a retry");
    assert_eq!((first.id, first.sent_at), (second.id, second.sent_at));
    let reused = answers[2]
        .as_ref()
        .expect_err("another recipient, same client_id");
    assert_eq!(reused.code().as_str(), "client_id_reused");
    let unknown = answers[3].as_ref().expect_err("no such user");
    assert_eq!(unknown.code().as_str(), "user_not_found");
    assert_eq!(db.count("messages").await, 1);
    assert_eq!(db.count("inbox_events").await, 1);
    assert_eq!(db.count("message_keys").await, 2);

    // The same again, later: answered as before, nothing new.
    let again = vec![direct(alice, "bob", client_id, 50)];
    let batch_pool = pool.clone();
    let answers = tokio::task::spawn_blocking(move || send_direct_batch(&batch_pool, &again))
        .await
        .expect("sent");
    assert_eq!(answers[0].as_ref().expect("a retry").id, first.id);
    assert_eq!(db.count("messages").await, 1);
}

/// Writers deliver to overlapping sets of inboxes in transactions that commit in any
/// order, while a reader follows one inbox by cursor: it must never find a seq missing
/// that a later read would show (the reader that moved past it would skip it for good),
/// and at the end every inbox holds 1, 2, 3, ... with no gap, whichever way each
/// delivery took (one event an inbox, or several).
#[tokio::test]
async fn inbox_seqs_follow_commit_order_with_no_gap_under_concurrent_delivery() {
    const WRITERS: usize = 4;
    const DELIVERIES: usize = 150;
    let db = TestDb::create().await;
    // A connection for each writer, which holds it throughout, and one for the reader.
    let pool = db::build_pool(&db.url, WRITERS as u32 + 1).expect("a pool");
    let users = make_users(&pool, &["u_a", "u_b", "u_c", "u_d", "u_e"]);
    let watched = users[0];

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (pool, users) = (pool.clone(), users.clone());
            std::thread::spawn(move || {
                let mut conn = pool.get().expect("a connection");
                let mut sent: BTreeMap<UserId, usize> = BTreeMap::new();
                for i in 0..DELIVERIES {
                    // Every delivery reaches the watched inbox and some of the others,
                    // in an order of its own.
                    let mut to: Vec<UserId> = users
                        .iter()
                        .copied()
                        .enumerate()
                        .filter(|(n, _)| *n == 0 || (n + i + w) % 3 == 0)
                        .map(|(_, u)| u)
                        .collect();
                    let turn = (i + w) % to.len();
                    to.rotate_left(turn);
                    // Now and then each inbox gets the event twice: the general way,
                    // where the others take the one-event-an-inbox way.
                    if i % 5 == 0 {
                        to.extend(to.clone());
                    }
                    conn.transaction::<_, diesel::result::Error, _>(|conn| {
                        let event = Delivery::GroupEvent(serde_json::json!({
                            "type": "group.created", "group": "race", "username": "u_a",
                            "by": format!("w{w}i{i}"), "epoch": i,
                            "group_id": uuid::Uuid::nil(),
                        }));
                        inbox::deliver_to_all(conn, &to, event)?;
                        // Hold the counters a little, so commits interleave.
                        diesel::RunQueryDsl::execute(
                            diesel::sql_query(format!(
                                "SELECT pg_sleep({})",
                                (i % 4) as f64 / 1000.0
                            )),
                            conn,
                        )?;
                        Ok(())
                    })
                    .expect("delivered");
                    for user in to {
                        *sent.entry(user).or_default() += 1;
                    }
                }
                sent
            })
        })
        .collect();

    let reader_pool = pool.clone();
    let total = WRITERS * DELIVERIES;
    let reader = tokio::task::spawn_blocking(move || {
        let mut cursor = Seq(0);
        let mut reads = 0;
        while (cursor.0 as usize) < total {
            let page = inbox::read_inboxes(
                &reader_pool,
                vec![InboxRead {
                    user_id: watched,
                    reader: "u_a".into(),
                    after: cursor,
                    limit: 50,
                }],
            );
            let events = page.into_iter().next().expect("an answer").expect("a read");
            for event in events {
                assert_eq!(
                    Seq(event.seq),
                    cursor.next(),
                    "the reader at {cursor} was shown {} first",
                    event.seq
                );
                cursor = Seq(event.seq);
            }
            reads += 1;
        }
        reads
    });
    let mut expected: BTreeMap<UserId, usize> = BTreeMap::new();
    for writer in writers {
        for (user, n) in writer.join().expect("a writer") {
            *expected.entry(user).or_default() += n;
        }
    }
    let reads = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reader caught up")
        .expect("the reader");
    assert!(reads > 1, "the reader read while the writers wrote");

    let client = db.client().await;
    for (user, count) in expected {
        let seqs: Vec<i64> = client
            .query(
                "SELECT seq FROM inbox_events WHERE user_id = $1 ORDER BY seq",
                &[&user.0],
            )
            .await
            .expect("the inbox")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let want: Vec<i64> = (1..=count as i64).collect();
        assert_eq!(seqs, want, "inbox of user {user}");
    }
}
