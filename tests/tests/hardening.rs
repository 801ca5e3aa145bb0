//! The api as an attacker on the internet meets it: odd bytes in every field, guesses
//! made in parallel, more of everything than a person would ask for, and sessions that
//! should be over.

use std::time::{Duration, Instant};

use fastchat_tests::api::{
    direct_message, group_message, opaque_envelope, opaque_group_envelope, test_public_key,
    TEST_PASSWORD,
};
use fastchat_tests::{eventually, paths, Answer, Api, Cluster, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

/// Every string in `body`, each as a path of keys and indexes.
fn string_leaves(body: &Value) -> Vec<Vec<Value>> {
    fn walk(value: &Value, at: &mut Vec<Value>, found: &mut Vec<Vec<Value>>) {
        match value {
            Value::String(_) => found.push(at.clone()),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    at.push(json!(i));
                    walk(item, at, found);
                    at.pop();
                }
            }
            Value::Object(fields) => {
                for (key, item) in fields {
                    at.push(json!(key));
                    walk(item, at, found);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(body, &mut Vec::new(), &mut found);
    found
}

fn leaf_mut<'a>(body: &'a mut Value, at: &[Value]) -> &'a mut Value {
    at.iter().fold(body, |value, step| match step {
        Value::String(key) => &mut value[key.as_str()],
        Value::Number(i) => &mut value[usize::try_from(i.as_u64().expect("index")).expect("index")],
        _ => unreachable!("paths hold keys and indexes"),
    })
}

/// How many rows each table a request could change holds.
async fn row_counts(db: &TestDb) -> Vec<(String, i64)> {
    let client = db.client().await;
    let mut counts = Vec::new();
    for table in [
        "users",
        "sessions",
        "messages",
        "message_keys",
        "inboxes",
        "groups",
        "group_members",
        "group_statements",
        "blobs",
    ] {
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("counting {table}: {e}"));
        counts.push((table.to_owned(), row.get(0)));
    }
    let contacts = client
        .query_one(
            "SELECT count(*) FROM users WHERE contacts_backup IS NOT NULL",
            &[],
        )
        .await
        .expect("counting contact backups");
    counts.push(("contacts backups".to_owned(), contacts.get(0)));
    counts
}

#[tokio::test]
async fn a_nul_or_a_control_character_in_any_field_is_refused_with_a_4xx_and_changes_nothing() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    alice
        .create_group("team", &["bob"])
        .await
        .assert_status(201);
    let view = alice.group("team").await;
    let binding =
        json!({"id": view.body["id"], "epoch": view.body["epoch"], "head": view.body["head"]});
    let carol = api.user("carol").await;

    let bodies: Vec<(Method, String, Option<&str>, Value)> = vec![
        (
            Method::POST,
            paths::USERS.to_owned(),
            None,
            json!({"username": "dave", "password": TEST_PASSWORD, "public_key": test_public_key(),
                   "key_backup": "c2VjcmV0"}),
        ),
        (
            Method::POST,
            paths::SESSIONS.to_owned(),
            None,
            json!({"username": "carol", "password": TEST_PASSWORD}),
        ),
        (
            Method::PUT,
            "/v1/me/contacts".to_owned(),
            Some(&alice.token),
            json!({"contacts": "c2VhbGVk"}),
        ),
        (
            Method::POST,
            paths::MESSAGES.to_owned(),
            Some(&alice.token),
            direct_message("bob", opaque_envelope(&["bob", "alice"])),
        ),
        (
            Method::POST,
            paths::MESSAGES.to_owned(),
            Some(&alice.token),
            group_message(
                "team",
                opaque_group_envelope(&["alice", "bob"], binding.clone()),
            ),
        ),
        (
            Method::POST,
            paths::GROUPS.to_owned(),
            Some(&alice.token),
            alice.group_creation("crew", &["bob"]),
        ),
        (
            Method::POST,
            paths::group_members("team"),
            Some(&alice.token),
            alice.add_member_body("team", "carol").await,
        ),
    ];
    let before = row_counts(&cluster.db).await;
    let mut tried = 0;
    for (method, path, token, body) in &bodies {
        for at in string_leaves(body) {
            let original = leaf_mut(&mut body.clone(), &at).clone();
            let original = original.as_str().expect("a string leaf").to_owned();
            for odd in [
                format!("{original}\u{0}"),
                "\u{0}".to_owned(),
                format!("\u{1b}[31m{original}"),
            ] {
                let mut sent = body.clone();
                *leaf_mut(&mut sent, &at) = json!(odd);
                let answer = api.call(method.clone(), path, *token, Some(sent)).await;
                assert!(
                    answer.status.is_client_error(),
                    "{method} {path} with {odd:?} at {at:?}: {} {}",
                    answer.status,
                    answer.text
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 60, "only {tried} cases");

    // In paths, queries and headers too.
    for path in [
        paths::user("a%00b"),
        paths::conversation("bob%00"),
        paths::group("team%00"),
        paths::group_messages("te%00am"),
        format!("{}/statements", paths::group("%00")),
        paths::blob("%00"),
        paths::with_query(paths::USERS, "prefix=a%00"),
        paths::with_query(paths::INBOX, "after=1%00"),
        paths::with_query(&paths::conversation("bob"), "before=%00"),
    ] {
        let answer = alice.call(Method::GET, &path, None).await;
        assert!(
            answer.status.is_client_error(),
            "GET {path}: {} {}",
            answer.status,
            answer.text
        );
    }
    let odd_member = alice
        .call(
            Method::DELETE,
            &paths::group_member("team", "bob%00"),
            Some(json!({})),
        )
        .await;
    assert!(odd_member.status.is_client_error(), "{}", odd_member.text);
    let odd_client = api
        .request(Method::POST, paths::SESSIONS)
        .header("x-fastchat-client", "10.0.0.1; DROP TABLE users")
        .json(&json!({"username": "carol", "password": "wrong password"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(odd_client.status(), 401, "an odd client header is ignored");

    assert_eq!(row_counts(&cluster.db).await, before, "nothing changed");
    // And everything still works.
    alice.send_opaque_to(&bob).await.assert_status(201);
    carol.profile("alice").await.assert_status(200);
}

#[tokio::test]
async fn a_public_key_is_capped_and_stored_and_served_in_canonical_form() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let signup = |name: &str, key: String| json!({"username": name, "password": TEST_PASSWORD, "public_key": key});
    let pem = test_public_key().to_owned();
    let refused = [
        ("huge", format!("{pem}{}", " ".repeat(900_000))),
        (
            "escapes first",
            format!("\u{1b}]0;owned\u{7}\u{1b}[2J{pem}"),
        ),
        ("text after", format!("{pem}\nand then some")),
        ("not PEM", "ssh-rsa AAAAB3NzaC1yc2E".to_owned()),
    ];
    for (what, key) in refused {
        let answer = api.signup_with(signup("eve", key)).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.text);
        assert_eq!(answer.body["code"], "invalid_public_key", "{what}");
    }
    // The same key with Windows line ends is taken, and kept as the canonical PEM.
    let crlf = pem.replace('\n', "\r\n");
    api.signup_with(signup("eve", crlf))
        .await
        .assert_status(201);
    let alice = api.user("alice").await;
    let profile = alice.profile("eve").await;
    assert_eq!(profile.assert_status(200)["public_key"], pem);
    // A key backup that is not base64 is refused.
    let answer = api
        .signup_with(json!({"username": "frank", "password": TEST_PASSWORD,
                            "public_key": pem, "key_backup": "not base64!"}))
        .await;
    answer.assert_problem(400, "invalid_key_backup");
}

#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let unknown = "a".repeat(43);
    for (method, path) in [
        (Method::POST, paths::MESSAGES.to_owned()),
        (Method::POST, paths::GROUPS.to_owned()),
        (Method::PUT, "/v1/me/contacts".to_owned()),
        (Method::POST, paths::group_members("team")),
    ] {
        let answer = api
            .raw(
                method.clone(),
                &path,
                Some(&unknown),
                "application/json",
                b"{not json".to_vec(),
            )
            .await;
        assert_eq!(answer.status, 401, "{method} {path}: {}", answer.text);
        let huge = api
            .raw(
                method.clone(),
                &path,
                Some(&unknown),
                "application/json",
                vec![b' '; 4 << 20],
            )
            .await;
        assert_eq!(huge.status, 401, "{method} {path} (4 MiB): {}", huge.text);
    }
    let blob = api
        .raw(
            Method::POST,
            paths::BLOBS,
            None,
            "application/octet-stream",
            vec![0; 1 << 20],
        )
        .await;
    blob.assert_problem(401, "missing_token");
}

/// Logs in as `username` from `client` (as the balancer names it).
async fn login_from(api: &Api, username: &str, password: &str, client: &str) -> Answer {
    let response = api
        .request(Method::POST, paths::SESSIONS)
        .header("x-fastchat-client", client)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, retry_after) = (header("content-type"), header("retry-after"));
    let text = response.text().await.expect("body");
    Answer {
        status,
        content_type: content_type.unwrap_or_default(),
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

#[tokio::test]
async fn parallel_guesses_are_all_counted_and_hold_back_only_the_guesser() {
    // The production bcrypt cost: each check that gets through takes a while.
    let cluster = Cluster::start_with(
        2,
        &[
            ("FASTCHAT_BCRYPT_COST", "12"),
            ("FASTCHAT_LOGIN_MAX_FAILURES", "5"),
        ],
    )
    .await;
    let (one, two) = (cluster.api(0), cluster.api(1));
    one.signup("alice").await.assert_status(201);

    let guesses: Vec<_> = (0..60)
        .map(|i| {
            let api = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move {
                login_from(&api, "alice", "wrong password", "198.51.100.7").await
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        let answer = guess.await.expect("a guess");
        match answer.status.as_u16() {
            401 => checked += 1,
            429 => {
                assert_eq!(answer.body["code"], "too_many_attempts");
                let retry: u64 = answer
                    .retry_after
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .expect("Retry-After");
                assert!(retry >= 1);
            }
            other => panic!("a guess got {other}: {}", answer.text),
        }
    }
    assert_eq!(
        checked, 5,
        "only the allowed number of guesses reached bcrypt"
    );
    // Even the right password is held back from the guesser's address...
    login_from(&one, "alice", TEST_PASSWORD, "198.51.100.7")
        .await
        .assert_problem(429, "too_many_attempts");
    // ...but alice, elsewhere, logs in.
    login_from(&two, "alice", TEST_PASSWORD, "203.0.113.20")
        .await
        .assert_status(201);
}

#[tokio::test]
async fn logins_for_names_nobody_has_cost_bounded_work_and_leave_no_row_per_name() {
    let cluster = Cluster::start_with(1, &[("FASTCHAT_LOGIN_MAX_PER_ADDRESS", "20")]).await;
    let api = cluster.api(0);
    api.signup("alice").await.assert_status(201);

    let started = Instant::now();
    let mut checked = 0;
    for i in 0..300 {
        let answer = login_from(&api, &format!("nobody_{i}"), "guess", "192.0.2.9").await;
        match answer.status.as_u16() {
            401 => checked += 1,
            429 => assert!(answer.retry_after.is_some(), "Retry-After"),
            other => panic!("got {other}: {}", answer.text),
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(
        checked, 20,
        "one address gets its ceiling of checks, whatever the names"
    );
    let client = cluster.db.client().await;
    let per_name: i64 = client
        .query_one("SELECT count(*) FROM login_attempts", &[])
        .await
        .expect("counted")
        .get(0);
    let per_address: i64 = client
        .query_one("SELECT count(*) FROM address_attempts", &[])
        .await
        .expect("counted")
        .get(0);
    assert_eq!((per_name, per_address), (0, 1), "after {elapsed:?}");
    // Someone else, from another address, is not slowed or held back.
    login_from(&api, "alice", TEST_PASSWORD, "192.0.2.10")
        .await
        .assert_status(201);
}

#[tokio::test]
async fn streams_are_capped_per_session_and_per_user() {
    let cluster = Cluster::start_with(
        1,
        &[
            ("FASTCHAT_STREAMS_PER_SESSION", "3"),
            ("FASTCHAT_STREAMS_PER_USER", "5"),
            // A server notices a client that left when it next writes to it.
            ("FASTCHAT_SSE_KEEPALIVE_SECS", "1"),
        ],
    )
    .await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(alice.events(None).await);
    }
    let refused = alice.call(Method::GET, paths::EVENTS, None).await;
    refused.assert_problem(429, "too_many_streams");
    // As every 429, it says when to try again.
    let retry: Option<u64> = refused.retry_after.as_deref().and_then(|s| s.parse().ok());
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {refused:?}");
    // Another session of hers has its own, up to her limit as a user.
    let laptop = api.login("alice").await;
    open.push(laptop.events(None).await);
    open.push(laptop.events(None).await);
    let refused = laptop.call(Method::GET, paths::EVENTS, None).await;
    refused.assert_problem(429, "too_many_streams");
    // A stream that closes frees its place.
    drop(open.remove(0));
    let freed = eventually(Duration::from_secs(10), "a place to free up", || async {
        alice.try_resume(0).await
    })
    .await;
    open.push(freed);
    assert_eq!(open.len(), 5);
}

#[tokio::test]
async fn uploads_are_held_to_a_rate_and_a_daily_volume_per_user() {
    let cluster = Cluster::start_with(
        1,
        &[
            ("FASTCHAT_BLOB_UPLOADS_PER_HOUR", "3"),
            ("FASTCHAT_BLOB_BYTES_PER_DAY", "3000000"),
        ],
    )
    .await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    for _ in 0..3 {
        alice.upload_blob(vec![7; 1000]).await.assert_status(201);
    }
    let over = alice.upload_blob(vec![7; 1000]).await;
    over.assert_problem(429, "rate_limited");
    assert!(over.retry_after.is_some(), "Retry-After");
    // The volume: two megabytes, then one more is too much for the day.
    bob.upload_blob(vec![1; 2_000_000]).await.assert_status(201);
    let over = bob.upload_blob(vec![1; 1_500_000]).await;
    over.assert_problem(429, "rate_limited");
    assert!(over.retry_after.is_some(), "Retry-After");
    bob.upload_blob(vec![1; 900_000]).await.assert_status(201);
    let blobs: i64 = cluster
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM blobs", &[])
        .await
        .expect("counted")
        .get(0);
    assert_eq!(blobs, 5, "what was refused was not kept");
}

#[tokio::test]
async fn logout_and_expiry_end_open_streams_on_every_server_within_a_second() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (cluster.api(0), cluster.api(1));
    let alice = one.user("alice").await;
    let bob = one.user("bob").await;

    // A logout on one server ends the session's streams on both.
    let mut here = alice.events(None).await;
    let mut there = alice.on(&two).events(None).await;
    let other_session = one.login("alice").await;
    let mut unrelated = other_session.on(&two).events(None).await;
    alice.logout().await.assert_status(204);
    let ended = Instant::now();
    assert!(
        here.ends_within(Duration::from_secs(3)).await,
        "the stream on one ends"
    );
    assert!(
        there.ends_within(Duration::from_secs(3)).await,
        "the stream on two ends"
    );
    assert!(
        ended.elapsed() < Duration::from_millis(1500),
        "both ended in {:?}",
        ended.elapsed()
    );
    // Her other session goes on.
    bob.send_opaque_to("alice").await.assert_status(201);
    let event = unrelated.next_event(Duration::from_secs(10)).await;
    assert_eq!(event.expect("pushed").data["message"]["from"], "bob");

    // An expiry moved into the past (as an operator revoking a session would) ends it.
    let client = cluster.db.client().await;
    client
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' \
             WHERE user_id = (SELECT id FROM users WHERE username = 'alice')",
            &[],
        )
        .await
        .expect("expired");
    assert!(
        unrelated.ends_within(Duration::from_secs(3)).await,
        "an expired session's stream ends"
    );

    // A session reaching its expiry while its stream is open: the stream ends then.
    let short = one.login("bob").await;
    client
        .execute(
            "UPDATE sessions SET expires_at = now() + interval '2 seconds' \
             WHERE user_id = (SELECT id FROM users WHERE username = 'bob')",
            &[],
        )
        .await
        .expect("shortened");
    let mut expiring = short.on(&two).events(None).await;
    assert!(
        expiring.ends_within(Duration::from_secs(5)).await,
        "the stream ends when the session does"
    );
    short
        .profile("bob")
        .await
        .assert_problem(401, "invalid_token");
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_and_resumes_where_it_left_off() {
    use base64::Engine;
    use tokio::io::AsyncWriteExt;

    let cluster = Cluster::start_with(
        1,
        &[
            ("FASTCHAT_SSE_KEEPALIVE_SECS", "1"),
            ("FASTCHAT_STREAM_STALL_SECS", "3"),
        ],
    )
    .await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let server = &cluster.servers[0];

    // A client with a small window that opens its stream and never reads from it.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let address = server.addr().parse().expect("an address");
    let mut stuck = socket.connect(address).await.expect("connected");
    let request = format!(
        "GET {}?after=0 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        paths::EVENTS,
        server.addr(),
        alice.token
    );
    stuck.write_all(request.as_bytes()).await.expect("asked");
    eventually(Duration::from_secs(10), "the stream to open", || async {
        (server.open_streams().await == Some(1.0)).then_some(())
    })
    .await;

    // More than the socket's buffers hold.
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0x5a; 60_000]);
    let mut sent = Vec::new();
    for _ in 0..160 {
        let mut envelope = opaque_envelope(&["alice", "bob"]);
        envelope["ciphertext"] = json!(big);
        let answer = bob.send_to("alice", envelope).await;
        sent.push(answer.assert_status(201)["id"].clone());
    }
    eventually(
        Duration::from_secs(20),
        "the stuck stream to be cut",
        || async { (server.open_streams().await == Some(0.0)).then_some(()) },
    )
    .await;
    drop(stuck);

    // Reading again from where it was, she gets everything once, in order.
    let mut resumed = alice.resume(0).await;
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let event = resumed
            .next_event(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("only {} of {} arrived", got.len(), sent.len()));
        got.push(event.data["message"]["id"].clone());
    }
    assert_eq!(got, sent);
}
