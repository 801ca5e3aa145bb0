//! Inbox wake-ups over NATS (`FASTCHAT_NATS_URL`) instead of PostgreSQL NOTIFY: messages
//! and group events cross between two api servers at once, the database notifies no
//! one, and a broker that dies and comes back loses nothing. (The default, NOTIFY, is
//! what every other test runs on; the fault suite restarts and crashes its database.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastchat_tests::nats::NatsBroker;
use fastchat_tests::sse::SseClient;
use fastchat_tests::{eventually, Cluster};
use tokio_postgres::{AsyncMessage, NoTls};

const WAIT: Duration = Duration::from_secs(20);

/// Every payload sent on the wake-up channel of the database at `url`, from now on.
async fn listen_to_the_database(url: &str) -> (tokio_postgres::Client, Arc<Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connecting to listen");
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute("LISTEN fastchat_inbox")
        .await
        .expect("LISTEN");
    (client, heard)
}

/// The seqs of the next `n` events on `stream`.
async fn next_seqs(stream: &mut SseClient, n: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    for _ in 0..n {
        let event = stream.next_event(WAIT).await.expect("an event, pushed");
        seqs.push(event.data["seq"].as_i64().expect("a seq"));
    }
    seqs
}

#[tokio::test]
async fn over_nats_messages_and_group_events_cross_servers_and_the_database_notifies_no_one() {
    let broker = NatsBroker::start().await;
    let cluster = Cluster::start_with(2, &[("FASTCHAT_NATS_URL", &broker.url)]).await;
    let (listener, heard) = listen_to_the_database(&cluster.db.url).await;
    let alice = cluster.api(0).user("alice").await;
    let bob = cluster.api(1).user("bob").await;
    let mut stream = bob.events(Some(0)).await;

    for _ in 0..3 {
        alice.send_opaque_to(&bob.name).await.assert_status(201);
    }
    assert_eq!(next_seqs(&mut stream, 3).await, [1, 2, 3]);
    alice
        .create_group("team", &["bob"])
        .await
        .assert_status(201);
    let event = stream.next_event(WAIT).await.expect("the group event");
    assert_eq!(event.data["seq"], 4);
    assert_eq!(event.data["type"], "group.created", "{:?}", event.data);
    alice
        .send_opaque_to_group("team", &["alice", "bob"])
        .await
        .assert_status(201);
    assert_eq!(next_seqs(&mut stream, 1).await, [5]);

    // The listener hears what is sent on the channel (so its silence means something):
    // a probe sent now is the first thing it heard.
    listener
        .batch_execute("NOTIFY fastchat_inbox, 'probe'")
        .await
        .expect("the probe");
    eventually(WAIT, "the probe on the channel", || async {
        let heard = heard.lock().unwrap_or_else(|e| e.into_inner());
        (!heard.is_empty()).then(|| heard.clone())
    })
    .await;
    assert_eq!(
        *heard.lock().unwrap_or_else(|e| e.into_inner()),
        ["probe"],
        "the database notified no one of the messages"
    );
}

#[tokio::test]
async fn over_nats_a_broker_that_dies_and_comes_back_loses_nothing() {
    let mut broker = NatsBroker::start().await;
    let cluster = Cluster::start_with(2, &[("FASTCHAT_NATS_URL", &broker.url)]).await;
    let alice = cluster.api(0).user("alice").await;
    let bob = cluster.api(1).user("bob").await;
    let mut stream = bob.events(Some(0)).await;

    for _ in 0..5 {
        alice.send_opaque_to(&bob.name).await.assert_status(201);
    }
    assert_eq!(next_seqs(&mut stream, 5).await, [1, 2, 3, 4, 5]);

    // Sent while no broker runs: stored and acknowledged, and on bob's stream once the
    // servers are back on NATS.
    broker.kill();
    for _ in 0..5 {
        alice.send_opaque_to(&bob.name).await.assert_status(201);
    }
    broker.start_again().await;
    assert_eq!(next_seqs(&mut stream, 5).await, [6, 7, 8, 9, 10]);

    for _ in 0..5 {
        alice.send_opaque_to(&bob.name).await.assert_status(201);
    }
    assert_eq!(next_seqs(&mut stream, 5).await, [11, 12, 13, 14, 15]);
    assert!(
        stream
            .next_event(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing twice"
    );
}
