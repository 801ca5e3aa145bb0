//! Message delivery over HTTP and server-sent events: ordering, exactly-once across
//! reconnects and server deaths, and every refusal.

use std::collections::HashSet;
use std::time::Duration;

use fastchat_tests::api::{direct_message, opaque_envelope, seqs_of, with_overrides};
use fastchat_tests::{paths, Api, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn seq_of(event: &fastchat_tests::sse::SseEvent) -> i64 {
    let seq = event.data["seq"].as_i64().expect("seq");
    assert_eq!(
        event.id.as_deref(),
        Some(seq.to_string().as_str()),
        "id is the seq"
    );
    seq
}

#[tokio::test]
async fn a_resuming_reader_sees_every_message_once_in_seq_order_under_concurrent_writers() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 600;
    let cluster = Cluster::start(2).await;
    let apis = [cluster.api(0), cluster.api(1)];
    let reader = apis[0].user("reader").await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        writers.push(apis[0].user(&format!("writer{w}")).await);
    }

    let senders: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, writer)| {
            let writer = writer.on(&apis[w % 2]);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for _ in 0..PER_WRITER {
                    let answer = writer.send_opaque_to("reader").await;
                    acked.push(answer.assert_status(201)["id"].as_i64().expect("id"));
                }
                acked
            })
        })
        .collect();

    // Read while they write, hopping between servers with Last-Event-ID.
    let total = WRITERS * PER_WRITER;
    let mut seqs = Vec::with_capacity(total);
    let mut ids = Vec::with_capacity(total);
    let mut hops = 0;
    let mut stream = reader.events(Some(0)).await;
    while seqs.len() < total {
        if seqs.len() >= (hops + 1) * 450 {
            hops += 1;
            let last = *seqs.last().expect("some seen");
            stream = reader.on(&apis[hops % 2]).resume(last).await;
        }
        let event = stream
            .next_event(WAIT)
            .await
            .unwrap_or_else(|| panic!("stream stalled after {} events", seqs.len()));
        assert_eq!(event.event.as_deref(), Some("message"));
        seqs.push(seq_of(&event));
        ids.push(event.data["message"]["id"].as_i64().expect("message id"));
    }
    let mut acked = HashSet::new();
    for sender in senders {
        acked.extend(sender.await.expect("sender task"));
    }

    assert!(hops >= 4, "the reader should have resumed several times");
    let expected: Vec<i64> = (1..=total as i64).collect();
    assert_eq!(
        seqs, expected,
        "seqs must run 1, 2, 3, ... with no gap or repeat"
    );
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), total, "a message arrived twice");
    assert_eq!(
        unique, acked,
        "what arrived is exactly what was acknowledged"
    );
    assert!(stream
        .next_event(Duration::from_millis(300))
        .await
        .is_none());
}

#[tokio::test]
async fn killing_the_server_that_holds_a_stream_loses_nothing() {
    const MESSAGES: usize = 120;
    let cluster = Cluster::start(2).await;
    let (doomed, survivor) = (cluster.api(0), cluster.api(1));
    let bob = survivor.user("bob").await;
    let alice = survivor.user("alice").await;

    let mut stream = bob.on(&doomed).events(Some(0)).await;
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for _ in 0..MESSAGES {
                let answer = alice.send_opaque_to("bob").await;
                acked.push(answer.assert_status(201)["id"].as_i64().expect("id"));
            }
            acked
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let event = stream
            .next_event(WAIT)
            .await
            .expect("events before the kill");
        seen.push((
            seq_of(&event),
            event.data["message"]["id"].as_i64().expect("id"),
        ));
    }
    cluster.servers[0].signal("KILL");
    // The dead server's stream ends (its connection resets)...
    while let Some(event) = stream.next_event(WAIT).await {
        seen.push((
            seq_of(&event),
            event.data["message"]["id"].as_i64().expect("id"),
        ));
    }
    // ...and bob resumes on the survivor from the last seq he saw.
    let last = seen.last().expect("seen some").0;
    let mut stream = bob.resume(last).await;
    while seen.len() < MESSAGES {
        let event = stream
            .next_event(WAIT)
            .await
            .expect("events after the kill");
        seen.push((
            seq_of(&event),
            event.data["message"]["id"].as_i64().expect("id"),
        ));
    }
    let acked = sender.await.expect("sender");
    let seqs: Vec<i64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=MESSAGES as i64).collect::<Vec<_>>());
    let ids: Vec<i64> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids, acked,
        "one writer's messages arrive in the order they were acknowledged"
    );
}

#[tokio::test]
async fn streams_replay_resume_or_start_now_and_keep_alive() {
    let cluster = Cluster::start_with(2, &[("FASTCHAT_SSE_KEEPALIVE_SECS", "1")]).await;
    let (one, two) = (cluster.api(0), cluster.api(1));
    let alice = one.user("alice").await;
    let bob = one.user("bob").await;
    for _ in 0..3 {
        alice.send_opaque_to(&bob).await.assert_status(201);
    }

    let mut replay = bob.on(&two).events(Some(0)).await;
    for seq in 1..=3 {
        assert_eq!(
            seq_of(&replay.next_event(WAIT).await.expect("replayed")),
            seq
        );
    }
    // Last-Event-ID wins over ?after= (browsers resend the original URL).
    let mut resumed = bob.events_with(Some(2), Some(0)).await;
    assert_eq!(seq_of(&resumed.next_event(WAIT).await.expect("resumed")), 3);
    let mut fresh = bob.on(&two).events(None).await;
    // Keep-alives flow on an idle stream, and a retry hint was given.
    // (No event is due: this reads until the deadline, counting comments.)
    assert!(fresh
        .next_event(Duration::from_millis(2500))
        .await
        .is_none());
    assert!(
        fresh.comments > 0,
        "no keep-alive within 2.5 s at a 1 s interval"
    );
    assert_eq!(fresh.retry_hints, ["2000"]);

    // The fresh stream starts now: it gets the fourth message, pushed across servers.
    alice.send_opaque_to(&bob).await.assert_status(201);
    let event = fresh.next_event(WAIT).await.expect("pushed");
    assert_eq!(seq_of(&event), 4);
    assert_eq!(event.data["message"]["from"], "alice");
    assert_eq!(event.data["message"]["to"], "bob");
    let keys = event.data["message"]["envelope"]["keys"]
        .as_object()
        .expect("keys");
    assert_eq!(
        keys.keys().collect::<Vec<_>>(),
        ["bob"],
        "a reader gets only its own key"
    );

    let page = bob.on(&two).inbox_query("after=1&limit=2").await;
    let page = page.assert_status(200);
    let seqs = seqs_of(page["events"].as_array().expect("events"));
    assert_eq!(seqs, [2, 3]);
    assert_eq!(page["next"], 3);
}

#[tokio::test]
async fn a_server_whose_listener_reconnects_catches_up_from_the_table() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (cluster.api(0), cluster.api(1));
    let alice = one.user("alice").await;
    let bob = one.user("bob").await;
    let mut stream = bob.on(&two).events(None).await;
    // Give the stream something to prove it is live first.
    alice.send_opaque_to(&bob).await.assert_status(201);
    assert_eq!(seq_of(&stream.next_event(WAIT).await.expect("first")), 1);

    // Cut every LISTEN connection; a message sent now has no listener to wake.
    let db = cluster.db.client().await;
    let cut: i64 = db
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            &[],
        )
        .await
        .expect("terminate listeners")
        .get(0);
    assert_eq!(cut, 2, "each server holds one listener connection");
    alice.send_opaque_to(&bob).await.assert_status(201);
    let event = stream
        .next_event(WAIT)
        .await
        .expect("caught up after reconnecting");
    assert_eq!(seq_of(&event), 2);
}

#[tokio::test]
async fn bad_messages_get_their_problem_and_store_nothing() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    api.signup("carol").await.assert_status(201);

    let base = |overrides: Value| {
        let body = json!({
            "to": "bob",
            "client_id": uuid::Uuid::new_v4().to_string(),
            "kind": "text",
            "envelope": opaque_envelope(&["alice", "bob"]),
        });
        with_overrides(body, overrides)
    };
    let envelope_with = |field: &str, value: Value| {
        let mut envelope = opaque_envelope(&["alice", "bob"]);
        envelope[field] = value;
        json!({ "envelope": envelope })
    };
    let huge = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(vec![7u8; 64 * 1024 + 1])
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "a key missing",
            json!({"envelope": opaque_envelope(&["alice"])}),
            409,
            "recipients_mismatch",
        ),
        (
            "a key too many",
            json!({"envelope": opaque_envelope(&["alice", "bob", "carol"])}),
            409,
            "recipients_mismatch",
        ),
        (
            "unknown user",
            json!({"to": "nobody"}),
            404,
            "user_not_found",
        ),
        (
            "invalid user",
            json!({"to": "No Body"}),
            404,
            "user_not_found",
        ),
        (
            "to yourself",
            json!({"to": "alice", "envelope": opaque_envelope(&["alice"])}),
            400,
            "invalid_recipient",
        ),
        (
            "to and group",
            json!({"group": "friends"}),
            400,
            "invalid_recipient",
        ),
        (
            "no recipient",
            json!({"to": null}),
            400,
            "invalid_recipient",
        ),
        (
            "bad client_id",
            json!({"client_id": "not-a-uuid"}),
            400,
            "invalid_client_id",
        ),
        ("bad kind", json!({"kind": "video"}), 400, "invalid_kind"),
        (
            "attachment",
            json!({"attachments": ["nope"]}),
            400,
            "invalid_attachment",
        ),
        (
            "the old version",
            envelope_with("v", json!(1)),
            400,
            "invalid_envelope",
        ),
        (
            "a newer version",
            envelope_with("v", json!(3)),
            400,
            "invalid_envelope",
        ),
        (
            "no signed time",
            envelope_with("sent_at", Value::Null),
            400,
            "invalid_envelope",
        ),
        (
            "a time not in canonical form",
            envelope_with("sent_at", json!("2026-12-01 12:00:00")),
            400,
            "invalid_envelope",
        ),
        (
            "a group state on a one-to-one message",
            envelope_with(
                "group",
                json!({"id": uuid::Uuid::new_v4(), "epoch": 0, "head": "00".repeat(32)}),
            ),
            400,
            "invalid_envelope",
        ),
        (
            "other alg",
            envelope_with("alg", json!("ROT13")),
            400,
            "invalid_envelope",
        ),
        (
            "bad base64",
            envelope_with("nonce", json!("%%%")),
            400,
            "invalid_envelope",
        ),
        (
            "short nonce",
            envelope_with("nonce", json!("AAAA")),
            400,
            "invalid_envelope",
        ),
        (
            "short sig",
            envelope_with("sig", json!("AAAA")),
            400,
            "invalid_envelope",
        ),
        (
            "oversized",
            envelope_with("ciphertext", json!(huge)),
            413,
            "message_too_large",
        ),
        (
            "unknown field",
            json!({"priority": "high"}),
            400,
            "malformed_json",
        ),
        (
            "missing envelope",
            json!({"envelope": null}),
            400,
            "malformed_json",
        ),
    ];
    let tables = ["messages", "message_keys", "inbox_events"];
    let mut before = Vec::new();
    for t in tables {
        before.push(cluster.db.count(t).await);
    }
    for (what, overrides, status, code) in cases {
        let answer = alice.send(base(overrides)).await;
        assert_eq!(answer.body["code"], code, "{what}: {}", answer.text);
        answer.assert_problem(status, code);
        if code == "recipients_mismatch" {
            assert_eq!(answer.body["members"], json!(["alice", "bob"]), "{what}");
        }
    }
    alice
        .raw(
            Method::POST,
            paths::MESSAGES,
            "application/json",
            b"{\"to\":".to_vec(),
        )
        .await
        .assert_problem(400, "malformed_json");
    api.call(Method::POST, paths::MESSAGES, None, Some(base(json!({}))))
        .await
        .assert_problem(401, "missing_token");
    api.as_user("alice", "not-a-token")
        .send(base(json!({})))
        .await
        .assert_problem(401, "invalid_token");
    for (i, t) in tables.iter().enumerate() {
        assert_eq!(
            cluster.db.count(t).await,
            before[i],
            "a refused message wrote to {t}"
        );
    }

    // A retry with the same client_id is the same message, stored once.
    let body = base(json!({}));
    let first = alice.send(body.clone()).await;
    let retry = alice.send(body.clone()).await;
    assert_eq!(first.assert_status(201), retry.assert_status(201));
    assert_eq!(cluster.db.count("messages").await, before[0] + 1);
    assert_eq!(cluster.db.count("inbox_events").await, before[2] + 1);
    let mut reused = body.clone();
    reused["to"] = json!("carol");
    reused["envelope"] = opaque_envelope(&["alice", "carol"]);
    alice
        .send(reused)
        .await
        .assert_problem(409, "client_id_reused");

    // Reading: bad cursors and strangers.
    for query in ["after=-1", "limit=0", "limit=1001", "after=x"] {
        alice
            .inbox_query(query)
            .await
            .assert_problem(400, "invalid_query");
    }
    let bad_resume = alice
        .request(Method::GET, paths::EVENTS)
        .header("last-event-id", "abc")
        .send()
        .await
        .expect("request");
    assert_eq!(bad_resume.status(), 400);
    api.call(Method::GET, paths::EVENTS, None, None)
        .await
        .assert_problem(401, "missing_token");
    alice
        .conversation("nobody")
        .await
        .assert_problem(404, "user_not_found");
    alice
        .conversation_query(&bob, "limit=0")
        .await
        .assert_problem(400, "invalid_query");
    let carol = api.login("carol").await;
    let snooping = carol.conversation(&alice).await;
    assert_eq!(
        snooping.assert_status(200)["messages"],
        json!([]),
        "carol reads nothing of alice and bob"
    );
    let bobs_view = api.login("bob").await.conversation(&alice).await;
    assert_eq!(
        bobs_view.assert_status(200)["messages"]
            .as_array()
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test]
async fn history_pages_back_newest_first() {
    let cluster = Cluster::start(1).await;
    let api: Api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let (from, to) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        sent.push(
            from.send_opaque_to(to).await.assert_status(201)["id"]
                .as_i64()
                .expect("id"),
        );
    }
    let page = alice.conversation_query(&bob, "limit=3").await;
    let page = page.assert_status(200).clone();
    let ids: Vec<i64> = page["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [sent[4], sent[3], sent[2]]);
    assert_eq!(page["next"], sent[2]);
    let older = alice
        .conversation_query(&bob, &format!("limit=3&before={}", sent[2]))
        .await;
    let older = older.assert_status(200);
    let ids: Vec<i64> = older["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [sent[1], sent[0]]);
    assert_eq!(older["next"], Value::Null);
    for message in older["messages"].as_array().expect("list") {
        let keys = message["envelope"]["keys"].as_object().expect("keys");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["alice"]);
    }
}

/// Sends that arrive together are stored together (one transaction), yet each is
/// answered as if it had come alone: retries get the first answer, refusals refuse only
/// their own message, and the recipient's inbox holds each stored message once.
#[tokio::test]
async fn sends_served_together_are_each_answered_on_their_own() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let ann = api.user("ann").await;
    api.user("bob").await;
    api.user("carl").await;
    let message = |to: &str, keys: &[&str]| direct_message(to, opaque_envelope(keys));
    // What each send should get: 201 (with an id to match), or a problem code.
    let mut sends: Vec<(Value, &str)> = Vec::new();
    let mut retried = Vec::new();
    for _ in 0..40 {
        sends.push((message("bob", &["ann", "bob"]), "201"));
    }
    for _ in 0..10 {
        // The same message twice at once, as a client retrying on a timeout would.
        let body = message("bob", &["ann", "bob"]);
        retried.push(body["client_id"].as_str().expect("id").to_owned());
        sends.push((body.clone(), "201"));
        sends.push((body, "201"));
    }
    for _ in 0..10 {
        sends.push((
            message("nobody_here", &["ann", "nobody_here"]),
            "user_not_found",
        ));
        sends.push((message("bob", &["ann", "carl"]), "recipients_mismatch"));
    }
    let answers = futures_util::future::join_all(sends.iter().map(|(body, _)| {
        let ann = ann.clone();
        let body = body.clone();
        async move { ann.send(body).await }
    }))
    .await;

    let mut ids_by_client: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for ((body, expected), answer) in sends.iter().zip(&answers) {
        if *expected == "201" {
            let id = answer.assert_status(201)["id"].as_i64().expect("id");
            let client_id = body["client_id"].as_str().expect("client_id").to_owned();
            ids_by_client.entry(client_id).or_default().push(id);
        } else {
            let status = if *expected == "user_not_found" {
                404
            } else {
                409
            };
            answer.assert_problem(status, expected);
        }
    }
    for client_id in &retried {
        let ids = &ids_by_client[client_id];
        assert_eq!(ids.len(), 2);
        assert_eq!(
            ids[0], ids[1],
            "a retry is answered with the first send's id"
        );
    }
    let mut stored: Vec<i64> = ids_by_client.values().map(|ids| ids[0]).collect();
    stored.sort_unstable();
    assert_eq!(stored.len(), 50);

    let bob = api.login("bob").await;
    let page = bob.inbox(0).await;
    let events = page.assert_status(200)["events"]
        .as_array()
        .expect("events")
        .clone();
    let seqs = seqs_of(&events);
    assert_eq!(
        seqs,
        (1..=50).collect::<Vec<_>>(),
        "one event per stored message, no gaps"
    );
    let mut delivered: Vec<i64> = events
        .iter()
        .map(|e| e["message"]["id"].as_i64().expect("a message"))
        .collect();
    delivered.sort_unstable();
    assert_eq!(
        delivered, stored,
        "each stored message once, nothing refused"
    );

    // And they really were served together, not one by one.
    let text = api.metrics().await;
    let of_sends = |name: &str| fastchat_tests::metric_where(&text, name, "kind", "direct_sends");
    let (batches, requests) = (
        of_sends("fastchat_batch_size_count"),
        of_sends("fastchat_batch_size_sum"),
    );
    assert_eq!(requests, 80.0, "every send went through the batcher");
    assert!(
        batches < requests,
        "{requests} sends came in {batches} batches"
    );
    assert_eq!(
        of_sends("fastchat_batch_wait_seconds_count"),
        80.0,
        "every send's wait in the queue is observed"
    );
    assert_eq!(
        of_sends("fastchat_batch_seconds_count"),
        batches,
        "every batch's time is observed"
    );
}

/// A one-to-one message reaches an open stream whole, in its notification, with no
/// inbox read. What the stream shows must still be exactly what the inbox holds, seq by
/// seq: one message at a time, several to the same reader stored together, and one too
/// big for a notification (read back instead) in among them.
#[tokio::test]
async fn pushed_messages_show_on_streams_exactly_as_the_inbox_holds_them() {
    pushes_show_as_the_inbox_holds_them(Cluster::start(2).await).await;
}

/// The same with NATS carrying the wake-ups, whose pushes the servers publish once each
/// message has committed, from two servers at once and so not always in seq order.
#[tokio::test]
async fn over_nats_pushed_messages_show_on_streams_exactly_as_the_inbox_holds_them() {
    let broker = fastchat_tests::nats::NatsBroker::start().await;
    let cluster = Cluster::start_with(2, &[("FASTCHAT_NATS_URL", &broker.url)]).await;
    pushes_show_as_the_inbox_holds_them(cluster).await;
}

async fn pushes_show_as_the_inbox_holds_them(cluster: Cluster) {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    let (home, other) = (cluster.api(0), cluster.api(1));
    let bob = home.user("bob").await;
    let ann = other.user("ann").await;
    let cyd = other.user("cyd").await;
    let mut stream = bob.events(Some(0)).await;
    let mut shown = Vec::new();

    // One at a time, each seen before the next goes: every one is pushed.
    for _ in 0..5 {
        ann.send_opaque_to(&bob).await.assert_status(201);
        shown.push(stream.next_event(WAIT).await.expect("a pushed message"));
    }
    assert!(
        home.stream_events("pushed").await >= 5.0,
        "messages to a waiting stream are pushed, not read back"
    );

    // Many at once from two senders: stored together, several to bob in one batch.
    let sends = (0..30).map(|i| {
        let sender = if i % 2 == 0 {
            ann.clone()
        } else {
            cyd.on(&home)
        };
        async move { sender.send_opaque_to("bob").await }
    });
    for answer in futures_util::future::join_all(sends).await {
        answer.assert_status(201);
    }
    // Too big for a notification: bob's server reads it back.
    let big_envelope = with_overrides(
        opaque_envelope(&["ann", "bob"]),
        json!({ "ciphertext": STANDARD.encode(vec![7u8; 9_000]) }),
    );
    ann.send_to(&bob, big_envelope).await.assert_status(201);
    for _ in 0..3 {
        ann.send_opaque_to(&bob).await.assert_status(201);
    }
    while shown.len() < 39 {
        let event = stream
            .next_event(WAIT)
            .await
            .unwrap_or_else(|| panic!("the stream stalled after {} events", shown.len()));
        shown.push(event);
    }
    assert!(stream
        .next_event(Duration::from_millis(300))
        .await
        .is_none());

    let inbox = bob.inbox(0).await;
    let held = inbox.assert_status(200)["events"]
        .as_array()
        .expect("events")
        .clone();
    assert_eq!(held.len(), 39);
    for (event, held) in shown.iter().zip(&held) {
        assert_eq!(event.event.as_deref(), Some("message"));
        seq_of(event);
        assert_eq!(&event.data, held, "the stream shows what the inbox holds");
    }
    assert!(
        home.stream_events("inbox").await >= 1.0,
        "the message too big to push was read back"
    );

    // Every event that followed a wake-up had its time in the server observed: each
    // pushed one, and at least the one read back after its wake-up.
    let text = home.metrics().await;
    let delays = |source: &str| {
        fastchat_tests::metric_where(
            &text,
            "fastchat_sse_event_delay_seconds_count",
            "source",
            source,
        )
    };
    let pushed =
        fastchat_tests::metric_where(&text, "fastchat_sse_events_total", "source", "pushed");
    assert_eq!(
        delays("pushed"),
        pushed,
        "each pushed event's delay is observed"
    );
    assert!(
        delays("inbox") >= 1.0,
        "the event read back after its wake-up had its delay observed"
    );
}
