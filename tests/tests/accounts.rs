//! Accounts and sessions against real api servers and a real PostgreSQL.

use std::time::Duration;

use fastchat_protocol::keys;
use fastchat_tests::api::{test_public_key, with_overrides, TEST_PASSWORD};
use fastchat_tests::{eventually, paths, Cluster};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_token_from_one_server_works_on_another_until_logout_ends_it_everywhere() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (cluster.api(0), cluster.api(1));

    let created = one.signup("alice").await;
    let body = created.assert_status(201);
    assert_eq!(body["username"], "alice");
    assert!(body["created_at"].is_string());

    let session = one.login_answer("alice", TEST_PASSWORD).await;
    let session = session.assert_status(201).clone();
    assert_eq!(session["username"], "alice");
    assert!(session["expires_at"].is_string());
    let alice = one.as_user("alice", session["token"].as_str().expect("token"));

    // Made on server one, good on server two.
    let profile = alice.on(&two).profile("alice").await;
    let profile = profile.assert_status(200);
    assert_eq!(profile["username"], "alice");
    assert_eq!(profile["public_key"], test_public_key());
    assert_eq!(profile["online"], false);

    // Logged out on server two: dead on both.
    let out = alice.on(&two).logout().await;
    out.assert_status(204);
    for api in [&one, &two] {
        alice
            .on(api)
            .profile("alice")
            .await
            .assert_problem(401, "invalid_token");
    }
    // A second logout with the dead token is refused too.
    alice.logout().await.assert_problem(401, "invalid_token");
}

#[tokio::test]
async fn bad_signups_get_their_code_and_change_nothing() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    api.signup("taken").await.assert_status(201);
    let small_key = {
        let key = keys::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).expect("key");
        keys::public_key_pem(&key.to_public_key())
    };
    let good = |overrides: Value| {
        let body = json!({"username": "newuser", "password": TEST_PASSWORD, "public_key": test_public_key()});
        with_overrides(body, overrides)
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "taken name",
            json!({"username": "taken"}),
            409,
            "username_taken",
        ),
        (
            "short name",
            json!({"username": "ab"}),
            400,
            "invalid_username",
        ),
        (
            "long name",
            json!({"username": "a".repeat(33)}),
            400,
            "invalid_username",
        ),
        (
            "upper case",
            json!({"username": "Alice"}),
            400,
            "invalid_username",
        ),
        (
            "space",
            json!({"username": "al ice"}),
            400,
            "invalid_username",
        ),
        (
            "unicode",
            json!({"username": "élise"}),
            400,
            "invalid_username",
        ),
        (
            "short password",
            json!({"password": "1234567"}),
            400,
            "invalid_password",
        ),
        (
            "password over 72 bytes",
            json!({"password": "x".repeat(73)}),
            400,
            "invalid_password",
        ),
        (
            "not a key",
            json!({"public_key": "hello"}),
            400,
            "invalid_public_key",
        ),
        (
            "1024-bit key",
            json!({"public_key": small_key}),
            400,
            "invalid_public_key",
        ),
        (
            "empty backup",
            json!({"key_backup": ""}),
            400,
            "invalid_key_backup",
        ),
        (
            "huge backup",
            json!({"key_backup": "A".repeat(16 * 1024 + 1)}),
            400,
            "invalid_key_backup",
        ),
        (
            "missing field",
            json!({"public_key": null}),
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            json!({"admin": true}),
            400,
            "malformed_json",
        ),
        ("wrong type", json!({"username": 42}), 400, "malformed_json"),
    ];
    let before = cluster.db.count("users").await;
    for (what, overrides, status, code) in cases {
        let answer = api.signup_with(good(overrides)).await;
        assert_eq!(answer.body["code"], code, "{what}: {}", answer.text);
        answer.assert_problem(status, code);
    }
    api.raw(
        Method::POST,
        paths::USERS,
        None,
        "application/json",
        b"{\"username\": ".to_vec(),
    )
    .await
    .assert_problem(400, "malformed_json");
    api.raw(
        Method::POST,
        paths::USERS,
        None,
        "text/plain",
        b"{}".to_vec(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    api.raw(
        Method::POST,
        paths::USERS,
        None,
        "application/json",
        vec![b' '; 2 * 1024 * 1024],
    )
    .await
    .assert_problem(413, "body_too_large");
    assert_eq!(
        cluster.db.count("users").await,
        before,
        "a refused signup stored a user"
    );

    // And the good body really is good: the cases above failed for their one change.
    api.signup_with(good(json!({}))).await.assert_status(201);
    assert_eq!(cluster.db.count("users").await, before + 1);
}

#[tokio::test]
async fn bad_logins_and_bad_tokens_are_refused_and_store_nothing() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    api.signup("alice").await.assert_status(201);

    let sessions = cluster.db.count("sessions").await;
    api.login_answer("alice", "wrong password")
        .await
        .assert_problem(401, "invalid_credentials");
    api.login_answer("nobody", TEST_PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    api.login_answer("NOT A NAME", TEST_PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    api.login_with(json!({"username": "alice"}))
        .await
        .assert_problem(400, "malformed_json");
    assert_eq!(cluster.db.count("sessions").await, sessions);

    let no_token = api
        .call(Method::GET, &paths::user("alice"), None, None)
        .await;
    no_token.assert_problem(401, "missing_token");
    for token in ["garbage", &"A".repeat(43), "Bearer", &"x".repeat(5000)] {
        api.as_user("alice", token)
            .profile("alice")
            .await
            .assert_problem(401, "invalid_token");
    }
    for (method, path) in [
        (Method::GET, paths::USERS),
        (Method::GET, paths::KEY_BACKUP),
        (Method::DELETE, paths::CURRENT_SESSION),
    ] {
        api.call(method, path, None, None)
            .await
            .assert_problem(401, "missing_token");
    }
}

#[tokio::test]
async fn repeated_failed_logins_lock_that_username_for_a_while() {
    let cluster = Cluster::start_with(
        2,
        &[
            ("FASTCHAT_LOGIN_MAX_FAILURES", "3"),
            ("FASTCHAT_LOGIN_LOCKOUT_SECS", "2"),
        ],
    )
    .await;
    let (one, two) = (cluster.api(0), cluster.api(1));
    one.signup("alice").await.assert_status(201);
    one.signup("bob").await.assert_status(201);

    // Failures on either server count together.
    for api in [&one, &two, &one] {
        api.login_answer("alice", "wrong password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    let locked = two.login_answer("alice", TEST_PASSWORD).await;
    locked.assert_problem(429, "too_many_attempts");
    let retry: u64 = locked
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=3).contains(&retry), "Retry-After {retry}");

    // Someone else is unaffected.
    one.login("bob").await;

    // When the lockout ends the right password works again.
    eventually(Duration::from_secs(10), "the lockout to end", || async {
        (one.login_answer("alice", TEST_PASSWORD).await.status == 201).then_some(())
    })
    .await;
}

#[tokio::test]
async fn passwords_are_bcrypt_with_a_salt_each_and_tokens_are_kept_only_as_hashes() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;

    let db = cluster.db.client().await;
    let hashes: Vec<String> = db
        .query("SELECT password_hash FROM users ORDER BY username", &[])
        .await
        .expect("query")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(hashes.len(), 2);
    for hash in &hashes {
        assert!(
            hash.starts_with("$2b$04$"),
            "not bcrypt at the configured cost: {hash}"
        );
        assert!(bcrypt::verify(TEST_PASSWORD, hash).expect("valid bcrypt"));
    }
    assert_ne!(
        hashes[0], hashes[1],
        "same password, same hash: no per-user salt"
    );
    assert_ne!(hashes[0][7..29], hashes[1][7..29], "the salts are equal");

    let stored: Vec<Vec<u8>> = db
        .query("SELECT token_hash FROM sessions", &[])
        .await
        .expect("query")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for user in [&alice, &bob] {
        let hash = Sha256::digest(user.token.as_bytes()).to_vec();
        assert!(stored.contains(&hash), "the token's SHA-256 is not stored");
    }

    let dump = cluster.db.dump();
    assert!(dump.contains("$2b$04$"), "the dump is not of this database");
    for secret in [alice.token.as_str(), bob.token.as_str(), TEST_PASSWORD] {
        assert!(!dump.contains(secret), "{secret} is stored in clear");
    }
}

#[tokio::test]
async fn users_are_listed_by_prefix_and_looked_up_by_name() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let ab_c = api.user("ab_c").await;
    for name in ["abxc", "abz", "zed"] {
        api.signup(name).await.assert_status(201);
    }
    let names = |answer: &Value| -> Vec<String> {
        answer["users"]
            .as_array()
            .expect("users array")
            .iter()
            .map(|u| {
                assert_eq!(u["online"], false);
                u["username"].as_str().expect("name").to_owned()
            })
            .collect()
    };
    let all = ab_c.users().await;
    assert_eq!(
        names(all.assert_status(200)),
        ["ab_c", "abxc", "abz", "zed"]
    );
    // `_` is a literal, not a wildcard.
    let underscore = ab_c.users_query("prefix=ab_").await;
    assert_eq!(names(underscore.assert_status(200)), ["ab_c"]);
    let limited = ab_c.users_query("prefix=ab&limit=2").await;
    assert_eq!(names(limited.assert_status(200)), ["ab_c", "abxc"]);
    let none = ab_c.users_query("prefix=q").await;
    assert_eq!(names(none.assert_status(200)), Vec::<String>::new());

    for bad in [
        "prefix=A%25",
        "prefix=%27;drop",
        "limit=0",
        "limit=201",
        "limit=x",
    ] {
        ab_c.users_query(bad)
            .await
            .assert_problem(400, "invalid_query");
    }
    ab_c.profile("nobody")
        .await
        .assert_problem(404, "user_not_found");
    ab_c.profile("NOT%20VALID")
        .await
        .assert_problem(404, "user_not_found");
}

#[tokio::test]
async fn the_key_backup_comes_back_only_to_its_owner() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let created = api
        .signup_with(json!({"username": "alice", "password": TEST_PASSWORD,
                   "public_key": test_public_key(), "key_backup": "b3BhcXVlIGJhY2t1cCBvZiBhbGljZQ=="}))
        .await;
    created.assert_status(201);
    let alice = api.login("alice").await;
    let bob = api.user("bob").await;

    let backup = alice.key_backup().await;
    assert_eq!(
        backup.assert_status(200)["key_backup"],
        "b3BhcXVlIGJhY2t1cCBvZiBhbGljZQ=="
    );
    bob.key_backup().await.assert_problem(404, "no_key_backup");
}

#[tokio::test]
async fn probes_metrics_and_unknown_routes() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(api.url(path)).send();

    assert_eq!(get(paths::HEALTHZ).await.expect("healthz").status(), 200);
    assert_eq!(get(paths::READYZ).await.expect("readyz").status(), 200);
    api.signup("alice").await.assert_status(201);
    // Metrics are on the admin listener, not on the port clients use.
    let metrics = api.metrics().await;
    for hidden in [paths::METRICS, "/%6detrics", "/metrics/"] {
        let answer = get(hidden).await.expect("an answer");
        assert_eq!(answer.status(), 404, "{hidden} on the public port");
    }
    let signups = format!(
        r#"fastchat_http_requests_total{{method="POST",route="{}",status="201"}} 1"#,
        paths::USERS
    );
    assert!(metrics.contains(&signups), "{metrics}");
    assert!(
        metrics.contains("fastchat_db_pool_connections"),
        "{metrics}"
    );

    api.call(Method::GET, "/v2/nothing", None, None)
        .await
        .assert_problem(404, "not_found");
    api.call(Method::PUT, paths::USERS, None, None)
        .await
        .assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn servers_started_together_migrate_once_and_stop_cleanly_on_sigterm() {
    // Four servers migrating one fresh database at the same moment.
    let mut cluster = Cluster::start_unmigrated(4).await;
    let migrations = cluster.db.count("__diesel_schema_migrations").await;
    assert!(migrations >= 1);
    for i in 0..4 {
        cluster
            .api(i)
            .signup(&format!("user{i}"))
            .await
            .assert_status(201);
    }

    let server = &mut cluster.servers[0];
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "SIGTERM should stop the server cleanly: {status}"
    );
    // The others carry on.
    cluster.api(1).signup("after").await.assert_status(201);
}
