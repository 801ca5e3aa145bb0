//! Groups against real api servers: delivery to every member, admin powers, who may
//! read what, and concurrent membership changes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use fastchat_tests::api::{group_message, opaque_envelope, opaque_group_envelope, seqs_of, Answer};
use fastchat_tests::{CliHome, Cluster, TestUser};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Every event in `user`'s inbox.
async fn inbox(user: &TestUser) -> Vec<Value> {
    let page = user.inbox(0).await;
    page.assert_status(200)["events"]
        .as_array()
        .expect("events")
        .clone()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

#[tokio::test]
async fn a_group_spread_over_two_servers_gets_every_message_once() {
    const EACH: usize = 5;
    let cluster = Cluster::start(2).await;
    let apis = [cluster.api(0), cluster.api(1)];
    let names = ["alice", "bob", "carol", "dave"];
    let mut users = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        users.insert(*name, apis[i % 2].user(name).await);
    }
    let group = users["alice"]
        .on(&apis[0])
        .create_group("team", &["bob", "carol", "dave"])
        .await;
    let group = group.assert_status(201);
    assert_eq!(group["admins"], json!(["alice"]));
    assert_eq!(group["members"], json!(["alice", "bob", "carol", "dave"]));

    let mut streams = Vec::new();
    for (i, name) in names.iter().enumerate() {
        streams.push(users[name].on(&apis[(i + 1) % 2]).events(Some(0)).await);
    }
    let senders: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let sender = users[name].on(&apis[i % 2]);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..EACH {
                    let answer = sender.send_opaque_to_group("team", &names).await;
                    ids.push(answer.assert_status(201)["id"].as_i64().expect("id"));
                }
                (sender.name, ids)
            })
        })
        .collect();
    let mut sent_by: HashMap<String, Vec<i64>> = HashMap::new();
    for sender in senders {
        let (name, ids) = sender.await.expect("sender");
        sent_by.insert(name, ids);
    }

    for (i, name) in names.iter().enumerate() {
        let stream = &mut streams[i];
        let created = stream.next_event(WAIT).await.expect("group.created");
        assert_eq!(created.event.as_deref(), Some("group.created"));
        assert_eq!(created.data["group"], "team");
        assert_eq!(created.data["by"], "alice");
        let mut got = Vec::new();
        let mut seqs = vec![created.data["seq"].as_i64().expect("seq")];
        while got.len() < EACH * (names.len() - 1) {
            let event = stream
                .next_event(WAIT)
                .await
                .unwrap_or_else(|| panic!("{name} stalled"));
            assert_eq!(event.data["message"]["group"], "team");
            seqs.push(event.data["seq"].as_i64().expect("seq"));
            got.push(event.data["message"]["id"].as_i64().expect("id"));
        }
        assert!(
            stream
                .next_event(Duration::from_millis(300))
                .await
                .is_none(),
            "{name} got extra"
        );
        let expected: HashSet<i64> = sent_by
            .iter()
            .filter(|(sender, _)| sender.as_str() != *name)
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        let got_set: HashSet<i64> = got.iter().copied().collect();
        assert_eq!(got_set.len(), got.len(), "{name} got a message twice");
        assert_eq!(
            got_set, expected,
            "{name} did not get exactly the others' messages"
        );
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{name}'s seqs have a gap"
        );
    }
}

/// Events sent on streams from `source` ("pushed" or "inbox"), over every server.
async fn stream_events(apis: &[fastchat_tests::Api], source: &str) -> f64 {
    let mut total = 0.0;
    for api in apis {
        total += api.stream_events(source).await;
    }
    total
}

/// Group messages read to push them to streams, over every server.
async fn group_push_reads(apis: &[fastchat_tests::Api]) -> f64 {
    let mut total = 0.0;
    for api in apis {
        total += api.batched_requests("group_pushes").await;
    }
    total
}

/// A group message reaches its members' open streams whole, on every server, with no
/// inbox read: the server that stores it tells the others which seq of each member's
/// inbox holds it, and each reads the message and its members' keys once (the storing
/// server pushes to its own streams from what it stored). What every stream shows must
/// still be exactly what that member's inbox holds, seq by seq: one message at a time,
/// and a burst from every member at once (stored together, several to each member in
/// one transaction, told in whatever order).
#[tokio::test]
async fn group_messages_are_pushed_to_every_servers_streams_exactly_as_the_inboxes_hold_them() {
    group_messages_show_as_the_inboxes_hold_them(Cluster::start(2).await).await;
}

/// The same with NATS carrying the wake-ups.
#[tokio::test]
async fn over_nats_group_messages_are_pushed_exactly_as_the_inboxes_hold_them() {
    let broker = fastchat_tests::nats::NatsBroker::start().await;
    let cluster = Cluster::start_with(2, &[("FASTCHAT_NATS_URL", &broker.url)]).await;
    group_messages_show_as_the_inboxes_hold_them(cluster).await;
}

async fn group_messages_show_as_the_inboxes_hold_them(cluster: Cluster) {
    const ONE_AT_A_TIME: usize = 6;
    const BURST_EACH: usize = 3;
    let apis = [cluster.api(0), cluster.api(1)];
    let names = ["ann", "bob", "cyd", "dee", "eve"];
    let mut users = Vec::new();
    for (i, name) in names.iter().enumerate() {
        users.push(apis[i % 2].user(name).await);
    }
    users[0]
        .create_group("crew", &names[1..])
        .await
        .assert_status(201);
    // Each stream on the other server from its user's sends.
    let mut streams = Vec::new();
    for (i, user) in users.iter().enumerate() {
        streams.push(user.on(&apis[(i + 1) % 2]).events(Some(0)).await);
    }
    let mut shown: Vec<Vec<Value>> = vec![Vec::new(); names.len()];
    for (i, stream) in streams.iter_mut().enumerate() {
        let created = stream.next_event(WAIT).await.expect("group.created");
        assert_eq!(created.event.as_deref(), Some("group.created"));
        shown[i].push(created.data);
    }
    let (pushed_before, read_before, group_reads_before) = (
        stream_events(&apis, "pushed").await,
        stream_events(&apis, "inbox").await,
        group_push_reads(&apis).await,
    );

    // One at a time, from members on both servers, each seen by all before the next.
    for n in 0..ONE_AT_A_TIME {
        let sender = n % names.len();
        users[sender]
            .send_opaque_to_group("crew", &names)
            .await
            .assert_status(201);
        for (i, stream) in streams.iter_mut().enumerate() {
            if i != sender {
                let event = stream
                    .next_event(WAIT)
                    .await
                    .unwrap_or_else(|| panic!("{} did not get message {n}", names[i]));
                shown[i].push(event.data);
            }
        }
    }
    let deliveries = (ONE_AT_A_TIME * (names.len() - 1)) as f64;
    assert_eq!(
        stream_events(&apis, "pushed").await - pushed_before,
        deliveries,
        "every delivery of a message to a waiting stream is pushed"
    );
    assert_eq!(
        stream_events(&apis, "inbox").await - read_before,
        0.0,
        "and none is read back from an inbox"
    );
    // The other server reads each message to push it; the server that stored it has
    // what it stored and pushes its members' events from that, whenever its
    // notification comes back to it.
    let group_reads = group_push_reads(&apis).await - group_reads_before;
    assert_eq!(
        group_reads, ONE_AT_A_TIME as f64,
        "reads of {ONE_AT_A_TIME} group messages to push them"
    );

    // A burst from everyone at once.
    let sends = users.iter().flat_map(|user| {
        (0..BURST_EACH).map(move |_| async move { user.send_opaque_to_group("crew", &names).await })
    });
    for answer in futures_util::future::join_all(sends).await {
        answer.assert_status(201);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let sent_alone = (0..ONE_AT_A_TIME).filter(|n| n % names.len() == i).count();
        let expected = 1 + ONE_AT_A_TIME - sent_alone + (names.len() - 1) * BURST_EACH;
        while shown[i].len() < expected {
            let event = stream
                .next_event(WAIT)
                .await
                .unwrap_or_else(|| panic!("{} stalled after {}", names[i], shown[i].len()));
            shown[i].push(event.data);
        }
        assert!(
            stream
                .next_event(Duration::from_millis(300))
                .await
                .is_none(),
            "{} was shown more than it was sent",
            names[i]
        );
        let held = inbox(&users[i]).await;
        assert_eq!(held.len(), expected, "{}'s inbox", names[i]);
        assert_eq!(
            shown[i], held,
            "{}'s stream shows what the inbox holds",
            names[i]
        );
    }
}

/// Group messages that arrive together are stored together (one transaction), yet each
/// is answered as if it had come alone: a retry gets the first answer; a message sealed
/// for the wrong members, for a state the group has left, to no group, or from someone
/// outside the group is refused on its own; and every member's inbox holds each stored
/// message once, with no gap in its seqs.
#[tokio::test]
async fn group_sends_served_together_are_each_answered_on_their_own() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let ann = api.user("ann").await;
    let ben = api.user("ben").await;
    let cat = api.user("cat").await;
    let dan = api.user("dan").await;
    ann.create_group("crew", &["ben", "cat"])
        .await
        .assert_status(201);
    ann.create_group("pair", &["ben"]).await.assert_status(201);
    let binding = |view: Answer| {
        let view = view.assert_status(200);
        json!({"id": view["id"], "epoch": view["epoch"], "head": view["head"]})
    };
    let (crew, pair) = (
        binding(ann.group("crew").await),
        binding(ann.group("pair").await),
    );
    let mut stale = crew.clone();
    stale["epoch"] = json!(7);
    let to = |group: &str, members: &[&str], binding: &Value| {
        group_message(group, opaque_group_envelope(members, binding.clone()))
    };

    // Who sends what, and what each should get: 201 (with an id to match) or a code.
    let everyone = ["ann", "ben", "cat"];
    let mut sends: Vec<(&TestUser, Value, &str)> = Vec::new();
    let mut retried = Vec::new();
    for i in 0..20 {
        let sender = [&ann, &ben, &cat][i % 3];
        sends.push((sender, to("crew", &everyone, &crew), "201"));
    }
    for _ in 0..5 {
        // The same message twice at once, as a client retrying on a timeout would.
        let body = to("crew", &everyone, &crew);
        retried.push(body["client_id"].as_str().expect("id").to_owned());
        sends.push((&ben, body.clone(), "201"));
        sends.push((&ben, body, "201"));
        sends.push((&ann, to("pair", &["ann", "ben"], &pair), "201"));
        sends.push((
            &ann,
            to("crew", &["ann", "ben"], &crew),
            "recipients_mismatch",
        ));
        sends.push((&cat, to("crew", &everyone, &stale), "recipients_mismatch"));
        sends.push((
            &ann,
            to("no_such_crew", &everyone, &crew),
            "group_not_found",
        ));
        sends.push((&dan, to("crew", &everyone, &crew), "group_not_found"));
    }
    let answers = futures_util::future::join_all(
        sends
            .iter()
            .map(|(sender, body, _)| sender.send(body.clone())),
    )
    .await;

    let mut ids_by_client: HashMap<String, Vec<i64>> = HashMap::new();
    let mut stored_to: HashMap<&str, BTreeSet<i64>> = HashMap::new();
    let mut sent_by: HashMap<i64, String> = HashMap::new();
    for ((sender, body, expected), answer) in sends.iter().zip(&answers) {
        match *expected {
            "201" => {
                let id = answer.assert_status(201)["id"].as_i64().expect("id");
                let client_id = body["client_id"].as_str().expect("client_id");
                ids_by_client
                    .entry(client_id.to_owned())
                    .or_default()
                    .push(id);
                let group = body["group"].as_str().expect("group");
                stored_to.entry(group).or_default().insert(id);
                sent_by.insert(id, sender.name.clone());
            }
            "group_not_found" => {
                answer.assert_problem(404, expected);
            }
            _ => {
                answer.assert_problem(409, expected);
            }
        }
    }
    for client_id in &retried {
        let ids = &ids_by_client[client_id];
        assert_eq!(
            ids,
            &[ids[0], ids[0]],
            "a retry is answered with the first send's id"
        );
    }
    assert_eq!(stored_to["crew"].len(), 25);
    assert_eq!(stored_to["pair"].len(), 5);

    for (member, groups) in [
        (&ann, vec!["crew", "pair"]),
        (&ben, vec!["crew", "pair"]),
        (&cat, vec!["crew"]),
    ] {
        let events = inbox(member).await;
        let seqs = seqs_of(&events);
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{}'s seqs have a gap",
            member.name
        );
        let delivered: Vec<i64> = events
            .iter()
            .filter(|e| e["type"] == "message")
            .map(|e| e["message"]["id"].as_i64().expect("id"))
            .collect();
        let once: BTreeSet<i64> = delivered.iter().copied().collect();
        assert_eq!(
            once.len(),
            delivered.len(),
            "{} got a message twice",
            member.name
        );
        let expected: BTreeSet<i64> = groups
            .iter()
            .flat_map(|g| stored_to[g].iter().copied())
            .filter(|id| sent_by[id] != member.name)
            .collect();
        assert_eq!(
            once, expected,
            "{} got exactly the others' stored messages",
            member.name
        );
    }
    let dan_events = inbox(&dan).await;
    assert!(dan_events.is_empty(), "the outsider got {dan_events:?}");

    // And they really were served together, not one by one.
    let text = api.metrics().await;
    let of_sends = |name: &str| fastchat_tests::metric_where(&text, name, "kind", "group_sends");
    let (batches, requests) = (
        of_sends("fastchat_batch_size_count"),
        of_sends("fastchat_batch_size_sum"),
    );
    assert_eq!(
        requests,
        sends.len() as f64,
        "every group send went through the batcher"
    );
    assert!(
        batches < requests,
        "{requests} group sends came in {batches} batches"
    );
}

#[tokio::test]
async fn only_admins_change_membership_and_outsiders_see_nothing() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let eve = api.user("eve").await;
    api.signup("carol").await.assert_status(201);
    api.signup("dave").await.assert_status(201);
    alice
        .create_group("team", &["bob", "carol"])
        .await
        .assert_status(201);

    let tables = ["group_members", "groups", "messages", "inbox_events"];
    let mut before = Vec::new();
    for t in tables {
        before.push(cluster.db.count(t).await);
    }
    /// What is tried (by whom and how: run when its turn comes), and the refusal expected.
    type Refusal<'a> = (&'a str, BoxFuture<'a, Answer>, u16, &'a str);
    let refusals: Vec<Refusal> = vec![
        (
            "member adds",
            bob.add_member("team", "dave").boxed(),
            403,
            "not_admin",
        ),
        (
            "member removes",
            bob.remove_member("team", "carol").boxed(),
            403,
            "not_admin",
        ),
        (
            "member promotes",
            bob.promote("team", "bob").boxed(),
            403,
            "not_admin",
        ),
        (
            "outsider reads",
            eve.group("team").boxed(),
            404,
            "group_not_found",
        ),
        (
            "outsider history",
            eve.group_history("team").boxed(),
            404,
            "group_not_found",
        ),
        (
            "outsider adds",
            eve.add_member("team", "eve").boxed(),
            404,
            "group_not_found",
        ),
        (
            "outsider removes",
            eve.remove_member("team", "bob").boxed(),
            404,
            "group_not_found",
        ),
        (
            "no such group",
            alice.group("nothing").boxed(),
            404,
            "group_not_found",
        ),
        (
            "add unknown",
            alice.add_member("team", "nobody").boxed(),
            404,
            "user_not_found",
        ),
        (
            "add twice",
            alice.add_member("team", "bob").boxed(),
            409,
            "already_member",
        ),
        (
            "remove stranger",
            alice.remove_member("team", "dave").boxed(),
            404,
            "member_not_found",
        ),
        (
            "admin twice",
            alice.promote("team", "alice").boxed(),
            409,
            "already_admin",
        ),
        (
            "admin a stranger",
            alice.promote("team", "dave").boxed(),
            404,
            "member_not_found",
        ),
        (
            "bad name",
            alice.create_group("Bad Name", &[]).boxed(),
            400,
            "invalid_group_name",
        ),
        (
            "name taken",
            alice.create_group("team", &[]).boxed(),
            409,
            "group_name_taken",
        ),
        (
            "unknown member",
            alice.create_group("other", &["nobody"]).boxed(),
            404,
            "user_not_found",
        ),
        (
            "extra field",
            alice
                .create_group_with(json!({"name": "other", "topic": "x"}))
                .boxed(),
            400,
            "malformed_json",
        ),
    ];
    for (what, attempt, status, code) in refusals {
        let answer = attempt.await;
        assert_eq!(answer.body["code"], code, "{what}: {}", answer.text);
        answer.assert_problem(status, code);
    }
    // Sending: outsiders may not, and the keys must name exactly the members.
    eve.send_opaque_to_group("team", &["alice", "bob", "carol", "eve"])
        .await
        .assert_problem(404, "group_not_found");
    let stale = alice.send_opaque_to_group("team", &["alice", "bob"]).await;
    stale.assert_problem(409, "recipients_mismatch");
    assert_eq!(stale.body["members"], json!(["alice", "bob", "carol"]));
    for (i, t) in tables.iter().enumerate() {
        assert_eq!(
            cluster.db.count(t).await,
            before[i],
            "a refusal changed {t}"
        );
    }
    let eves = eve.groups().await;
    assert_eq!(eves.assert_status(200)["groups"], json!([]));
    let bobs = bob.groups().await;
    assert_eq!(bobs.assert_status(200)["groups"][0]["name"], "team");
}

#[tokio::test]
async fn a_removed_member_gets_nothing_new_and_a_new_member_only_what_follows() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let carol = api.user("carol").await;
    alice
        .create_group("team", &["bob"])
        .await
        .assert_status(201);
    let m1 = alice
        .send_opaque_to_group("team", &["alice", "bob"])
        .await
        .assert_status(201)["id"]
        .clone();
    alice.remove_member("team", &bob).await.assert_status(204);
    let m2 = alice
        .send_opaque_to_group("team", &["alice"])
        .await
        .assert_status(201)["id"]
        .clone();
    alice.add_member("team", &carol).await.assert_status(200);
    let m3 = alice
        .send_opaque_to_group("team", &["alice", "carol"])
        .await
        .assert_status(201)["id"]
        .clone();

    let bobs = inbox(&bob).await;
    assert_eq!(
        types(&bobs),
        ["group.created", "message", "group.member_removed"]
    );
    assert_eq!(bobs[1]["message"]["id"], m1);
    assert_eq!(bobs[2]["username"], "bob");
    assert_eq!(bobs[2]["by"], "alice");
    // Nothing sent after his removal carries a key he could use.
    let db = cluster.db.client().await;
    let bobs_keys: i64 = db
        .query_one(
            "SELECT count(*) FROM message_keys k JOIN users u ON u.id = k.user_id
              WHERE u.username = 'bob' AND k.message_id = ANY($1)",
            &[&vec![m2.as_i64().expect("id"), m3.as_i64().expect("id")]],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(bobs_keys, 0);
    bob.group_history("team")
        .await
        .assert_problem(404, "group_not_found");

    let carols = inbox(&carol).await;
    assert_eq!(types(&carols), ["group.member_added", "message"]);
    assert_eq!(carols[1]["message"]["id"], m3);
    let history = carol.group_history("team").await;
    let ids: Vec<Value> = history.assert_status(200)["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(
        ids,
        std::slice::from_ref(&m3),
        "carol reads only what was sent after she joined"
    );
    let alices: Vec<Value> = alice.group_history("team").await.body["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(alices, [m3, m2, m1]);
}

#[tokio::test]
async fn concurrent_membership_changes_leave_a_consistent_group_with_an_admin() {
    const USERS: usize = 16;
    let cluster = Cluster::start(2).await;
    let (one, two) = (cluster.api(0), cluster.api(1));
    let alice = one.user("alice").await;
    let admin2 = one.user("admin2").await;
    let sender = one.user("sender").await;
    for i in 0..USERS {
        one.signup(&format!("user{i}")).await.assert_status(201);
    }
    alice
        .create_group("team", &["admin2", "sender"])
        .await
        .assert_status(201);
    alice.promote("team", &admin2).await.assert_status(200);

    // Two admins on two servers add (and remove again) users at once, while a member
    // keeps sending with whatever member list it last heard of.
    let admin_task = |admin: TestUser, users: Vec<String>| {
        tokio::spawn(async move {
            for user in &users {
                let added = admin.add_member("team", user).await;
                added.assert_status(200);
            }
            // Remove every other one again.
            for user in users.iter().step_by(2) {
                admin.remove_member("team", user).await.assert_status(204);
            }
        })
    };
    let names: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    let first = admin_task(alice.clone(), names[..USERS / 2].to_vec());
    let second = admin_task(admin2.on(&two), names[USERS / 2..].to_vec());
    let messages = {
        let sender = sender.on(&two);
        tokio::spawn(async move {
            let mut members: Vec<String> = vec!["alice".into(), "admin2".into(), "sender".into()];
            let mut sent = 0;
            let mut mismatches = 0;
            while sent < 30 {
                let keys: Vec<&str> = members.iter().map(String::as_str).collect();
                let answer = sender.send_opaque_to_group("team", &keys).await;
                match answer.status.as_u16() {
                    201 => sent += 1,
                    409 => {
                        mismatches += 1;
                        members = serde_json::from_value(answer.body["members"].clone())
                            .expect("members");
                    }
                    other => panic!("a group send answered {other}: {}", answer.text),
                }
            }
            mismatches
        })
    };
    first.await.expect("first admin");
    second.await.expect("second admin");
    messages.await.expect("sender");

    let group = alice.group("team").await;
    let group = group.assert_status(200).clone();
    let mut expected: BTreeSet<String> = ["alice", "admin2", "sender"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.extend(names.iter().skip(1).step_by(2).cloned());
    let members: BTreeSet<String> =
        serde_json::from_value(group["members"].clone()).expect("members");
    assert_eq!(members, expected);
    let rows: i64 = cluster
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM group_members", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows as usize, expected.len());
    // Every message went to exactly the members at the time: each has one key per
    // recipient, and its recipients were all members then (no key for a stranger).
    let orphans: i64 = cluster
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM messages m
              WHERE m.group_id IS NOT NULL
                AND (SELECT count(*) FROM message_keys k WHERE k.message_id = m.id)
                    <> (SELECT count(*) FROM inbox_events e WHERE e.message_id = m.id) + 1",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(orphans, 0, "a message's keys and deliveries disagree");

    // Both admins leave at the same moment: the group still has an admin.
    let admin2_on_two = admin2.on(&two);
    let (a, b) = tokio::join!(alice.leave("team"), admin2_on_two.leave("team"));
    a.assert_status(204);
    b.assert_status(204);
    let group = sender.group("team").await;
    let admins = group.assert_status(200)["admins"]
        .as_array()
        .expect("admins")
        .clone();
    assert_eq!(
        admins,
        [json!("sender")],
        "the longest-standing member takes over"
    );
}

#[tokio::test]
async fn one_message_reaches_every_member_of_a_group_of_several_hundred() {
    const MEMBERS: usize = 300;
    let cluster = Cluster::start(2).await;
    let api = cluster.api(0);
    let owner = api.user("owner").await;
    let names: Vec<String> = (1..MEMBERS).map(|i| format!("member{i:03}")).collect();
    let mut signups = tokio::task::JoinSet::new();
    for chunk in names.chunks(30) {
        let (api, chunk) = (cluster.api(1), chunk.to_vec());
        signups.spawn(async move {
            for name in chunk {
                api.signup(&name).await.assert_status(201);
            }
        });
    }
    while let Some(done) = signups.join_next().await {
        done.expect("signup task");
    }
    let member_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let group = owner.create_group("crowd", &member_refs).await;
    let group = group.assert_status(201);
    assert_eq!(group["members"].as_array().expect("members").len(), MEMBERS);

    // A few members listen live, on the other server.
    let mut listeners = Vec::new();
    for name in names.iter().step_by(60) {
        let member = cluster.api(1).login(name).await;
        listeners.push(member.events(None).await);
    }
    let mut keys = member_refs.clone();
    keys.push("owner");
    let sent = owner.send_opaque_to_group("crowd", &keys).await;
    let id = sent.assert_status(201)["id"].as_i64().expect("id");
    for listener in &mut listeners {
        let event = listener
            .next_event(WAIT)
            .await
            .expect("pushed to a listener");
        assert_eq!(event.data["message"]["id"], id);
        assert_eq!(
            event.data["message"]["envelope"]["keys"]
                .as_object()
                .expect("keys")
                .len(),
            1
        );
    }
    // And every member's inbox holds it, once.
    let deliveries: i64 = cluster
        .db
        .client()
        .await
        .query_one(
            "SELECT count(DISTINCT user_id) FROM inbox_events WHERE message_id = $1",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(deliveries as usize, MEMBERS - 1);
}

#[tokio::test]
async fn group_commands_work_as_a_person_would_use_them() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");
    let carol = CliHome::signed_up(&one, "carol");
    let dave = CliHome::signed_up(&two, "dave");

    let created = alice.run(&one, &["group", "create", "team", "bob", "carol"], "");
    created.success();
    assert!(
        created.stdout().contains("Created group team"),
        "{}",
        created.stdout()
    );
    bob.run(&two, &["send", "--group", "team", "hi team"], "")
        .success();

    let got = carol.run(&one, &["recv", "--json"], "");
    got.success();
    let lines = got.json_lines();
    assert_eq!(lines[0]["type"], "group.created");
    assert_eq!(lines[1]["group"], "team");
    assert_eq!(lines[1]["from"], "bob");
    assert_eq!(lines[1]["text"], "hi team");

    // Refusals are said plainly.
    let denied = bob.run(&two, &["group", "add", "team", "dave"], "");
    assert_eq!(denied.code(), 1);
    assert!(
        denied
            .stderr()
            .contains("only an admin of team can do that"),
        "{}",
        denied.stderr()
    );
    let outsider = dave.run(&two, &["send", "--group", "team", "let me in"], "");
    assert_eq!(outsider.code(), 1);
    assert!(
        outsider.stderr().contains("no group called team"),
        "{}",
        outsider.stderr()
    );

    // Bob knows the members from his last send; alice adds dave behind his back. His
    // next send is refused by the server, and the CLI re-encrypts for dave on its own.
    alice
        .run(&one, &["group", "add", "team", "dave"], "")
        .success();
    bob.run(&two, &["send", "--group", "team", "welcome dave"], "")
        .success();
    let daves = dave.run(&two, &["recv", "--json"], "");
    daves.success();
    assert!(
        daves.stdout().contains("\"text\":\"welcome dave\""),
        "{}",
        daves.stdout()
    );

    // Carol is removed: she hears of it, and nothing after.
    alice
        .run(&one, &["group", "remove", "team", "carol"], "")
        .success();
    alice
        .run(&one, &["send", "--group", "team", "carol is gone"], "")
        .success();
    let carols = carol.run(&one, &["recv"], "");
    carols.success();
    assert!(
        carols.stdout().contains("alice removed carol from team"),
        "{}",
        carols.stdout()
    );
    assert!(
        !carols.stdout().contains("carol is gone"),
        "{}",
        carols.stdout()
    );
    let barred = carol.run(&one, &["history", "--group", "team"], "");
    assert_eq!(barred.code(), 1);

    let history = bob.run(&two, &["history", "--group", "team", "--json"], "");
    let texts = history.texts();
    assert_eq!(texts, ["hi team", "welcome dave", "carol is gone"]);

    // Alice leaves; bob, the longest-standing member, becomes admin.
    alice.run(&one, &["group", "leave", "team"], "").success();
    let info = bob
        .run(&two, &["group", "info", "team", "--json"], "")
        .json();
    assert_eq!(info["admins"], json!(["bob"]));
    assert_eq!(info["members"], json!(["bob", "dave"]));
    let list = dave.run(&two, &["group", "list"], "");
    assert_eq!(list.stdout().trim(), "team (2 members)");
}

#[tokio::test]
async fn a_group_chat_shows_everyone_the_others_lines_live() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");
    let carol = CliHome::signed_up(&one, "carol");
    alice
        .run(&one, &["group", "create", "team", "bob", "carol"], "")
        .success();

    let mut chats = vec![
        alice.spawn(&one, &["chat", "--group", "team"]),
        bob.spawn(&two, &["chat", "--group", "team"]),
        carol.spawn(&one, &["chat", "--group", "team"]),
    ];
    let observer = alice.user_on(&cluster.api(0));
    for who in ["alice", "bob", "carol"] {
        fastchat_tests::eventually(WAIT, &format!("{who}'s chat to connect"), || async {
            let answer = observer.profile(who).await;
            (answer.body["online"] == true).then_some(())
        })
        .await;
    }
    chats[1].write_line("bob says hi to the team");
    for (i, who) in [(0, "alice"), (2, "carol")] {
        let line = chats[i]
            .next_line(WAIT)
            .unwrap_or_else(|| panic!("{who} saw nothing"));
        assert!(
            line.ends_with(" bob: bob says hi to the team"),
            "{who}: {line}"
        );
    }
    let echo = chats[1].next_line(WAIT).expect("bob's own line echoed");
    assert!(echo.ends_with(" you: bob says hi to the team"), "{echo}");
    for chat in chats.drain(..) {
        assert!(chat.finish(WAIT).success());
    }
}

/// When its last member leaves, a group goes, and its messages take their wrapped keys
/// and inbox deliveries with them; other conversations keep theirs.
#[tokio::test]
async fn a_deleted_group_takes_its_messages_keys_and_deliveries_with_it() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    alice
        .create_group("crew", &["bob"])
        .await
        .assert_status(201);
    for _ in 0..3 {
        alice
            .send_opaque_to_group("crew", &["alice", "bob"])
            .await
            .assert_status(201);
    }
    alice.send_opaque_to(&bob).await.assert_status(201);
    let db = cluster.db.client().await;
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM message_keys").await, 8);
    assert_eq!(
        count("SELECT count(*) FROM inbox_events WHERE message_id IS NOT NULL").await,
        4
    );

    for member in [&bob, &alice] {
        member.leave("crew").await.assert_status(204);
    }
    assert_eq!(count("SELECT count(*) FROM groups").await, 0);
    assert_eq!(count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(
        count("SELECT count(*) FROM message_keys").await,
        2,
        "only the one-to-one message's keys are left"
    );
    assert_eq!(
        count("SELECT count(*) FROM inbox_events WHERE message_id IS NOT NULL").await,
        1,
        "only bob's delivery of the one-to-one message is left"
    );
}

/// When many streams wake at once, the server reads their inboxes in one query, which
/// carries each message once and leaves its other readers' rows to be filled in from
/// it. Each reader must still get exactly what it reads on its own.
#[tokio::test]
async fn a_batched_inbox_read_gives_each_reader_what_it_reads_alone() {
    use fastchat_api::ids::{Seq, UserId};
    use fastchat_api::store::inbox::{read_inboxes, InboxRead};

    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let carol = api.user("carol").await;
    let dave = api.user("dave").await;
    alice
        .create_group("trio", &["bob", "carol"])
        .await
        .assert_status(201);
    for _ in 0..2 {
        alice
            .send_opaque_to_group("trio", &["alice", "bob", "carol"])
            .await
            .assert_status(201);
    }
    let direct = json!({
        "to": "bob",
        "client_id": uuid::Uuid::new_v4().to_string(),
        "kind": "text",
        "envelope": opaque_envelope(&["alice", "bob"]),
    });
    alice.send(direct).await.assert_status(201);

    let readers = [
        ("bob", &bob),
        ("carol", &carol),
        ("dave", &dave),
        ("alice", &alice),
    ];
    let mut alone = Vec::new();
    for (_, user) in readers {
        alone.push(inbox(user).await);
    }
    assert_eq!(
        alone[0].len(),
        4,
        "bob: added, two group messages, one direct"
    );
    assert_eq!(alone[1].len(), 3, "carol: added, two group messages");
    assert!(alone[2].is_empty(), "dave has nothing");

    let pool = fastchat_api::db::build_pool(&cluster.db.url, 2).expect("pool");
    let ids = cluster.db.client().await;
    let mut reads = Vec::new();
    for (name, _) in readers {
        let row = ids
            .query_one("SELECT id FROM users WHERE username = $1", &[&name])
            .await
            .expect("user id");
        reads.push(InboxRead {
            user_id: UserId(row.get(0)),
            reader: name.to_owned(),
            after: Seq(0),
            limit: 1000,
        });
    }
    let together = tokio::task::spawn_blocking(move || read_inboxes(&pool, reads))
        .await
        .expect("read");
    assert_eq!(together.len(), readers.len());
    for ((name, _), (batched, alone)) in readers.iter().zip(together.into_iter().zip(alone)) {
        let batched = batched.unwrap_or_else(|e| panic!("{name}'s batched read: {e}"));
        let batched = serde_json::to_value(batched).expect("events as json");
        assert_eq!(batched, Value::Array(alone), "{name}'s events");
    }
}
