//! What HTTP and `openapi.yaml` promise every client beyond the bodies: a 405 names the
//! methods a path takes, every 503 says when to come back, a whole number is whole
//! however JSON spells it, and a seq is refused past the range every seq has.
//! (`scripts/contract` checks the same against the whole document; these pin what it
//! found the server doing otherwise.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fastchat_api::routes::ROUTES;
use fastchat_tests::{eventually, paths, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

/// `path` with each `{parameter}` filled in: routing comes before any parameter is read.
fn filled(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |i| open + i + 1);
        out.push_str("someone");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// The methods an `Allow` header names.
fn allowed(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_allow_naming_the_ones_it_does() {
    let cluster = Cluster::start(1).await;
    let server = &cluster.servers[0];
    let mut methods: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (method, path) in ROUTES {
        methods
            .entry(format!("{}{}", server.url, filled(path)))
            .or_default()
            .insert((*method).to_owned());
    }
    // The admin listener's probes and metrics take GET only.
    for path in [paths::HEALTHZ, paths::READYZ, paths::METRICS] {
        methods.insert(
            format!("{}{path}", server.admin_url),
            BTreeSet::from(["GET".to_owned()]),
        );
    }
    let http = reqwest::Client::new();
    for (url, takes) in &methods {
        let answer = http
            .request(Method::PATCH, url)
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 405, "PATCH {url}");
        let allow = answer
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(allowed);
        assert_eq!(allow.as_ref(), Some(takes), "Allow of {url}");
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "application/problem+json", "PATCH {url}");
        let body: Value = answer.json().await.expect("a problem body");
        assert_eq!(body["code"], "method_not_allowed", "PATCH {url}");
    }
}

#[tokio::test]
async fn readiness_without_its_database_is_503_with_retry_after() {
    let cluster = Cluster::start(1).await;
    let server = &cluster.servers[0];
    let readyz = format!("{}{}", server.admin_url, paths::READYZ);
    let admin = fastchat_tests::connect(&format!("{}/postgres", fastchat_tests::admin_url())).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            cluster.db.name
        ))
        .await
        .expect("closing the server's database to new connections");
    // The connections the server holds are cut at every try, so that none made as the
    // database was being closed lives on; a loaded machine may take a while to answer.
    let cut = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        cluster.db.name
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let retry_after = eventually(Duration::from_secs(60), "readyz to answer 503", || async {
        admin.batch_execute(&cut).await.ok()?;
        let answer = http.get(&readyz).send().await.ok()?;
        (answer.status() == 503).then(|| {
            answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
    })
    .await;
    let secs: Option<u64> = retry_after.as_deref().and_then(|s| s.parse().ok());
    assert!(secs.is_some_and(|s| s >= 1), "Retry-After: {retry_after:?}");
}

#[tokio::test]
async fn a_whole_number_is_taken_however_json_spells_it() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let id = alice.send_opaque_to("bob").await.assert_status(201)["id"]
        .as_i64()
        .expect("a message id");
    // `114.0` is the number 114, as JSON (and openapi.yaml's `integer`) has it.
    let read = bob
        .call(
            Method::PUT,
            &paths::conversation_read("alice"),
            Some(json!({"up_to": id as f64})),
        )
        .await;
    assert_eq!(read.assert_status(200)["read_up_to"], id);
    // A fraction is not a message id.
    bob.call(
        Method::PUT,
        &paths::conversation_read("alice"),
        Some(json!({"up_to": id as f64 + 0.5})),
    )
    .await
    .assert_problem(400, "malformed_json");

    // A group message's epoch, written as a float.
    alice
        .create_group("team", &["bob"])
        .await
        .assert_status(201);
    let view = alice.group("team").await;
    let group = view.assert_status(200);
    let epoch = group["epoch"].as_u64().expect("an epoch") as f64;
    let binding = json!({"id": group["id"], "epoch": epoch, "head": group["head"]});
    let envelope = fastchat_tests::api::opaque_group_envelope(&["alice", "bob"], binding);
    alice
        .send_to_group("team", envelope)
        .await
        .assert_status(201);
}

#[tokio::test]
async fn a_seq_past_the_range_of_every_seq_is_refused_with_400() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    api.user("bob").await;
    alice
        .create_group("team", &["bob"])
        .await
        .assert_status(201);
    let past = "9223372036854775808"; // i64::MAX + 1
    let chain = format!("{}/statements?after={past}", paths::group("team"));
    alice
        .call(Method::GET, &chain, None)
        .await
        .assert_problem(400, "invalid_query");
    // The same seq as a group message's epoch.
    let view = alice.group("team").await;
    let group = view.assert_status(200);
    let binding = json!({"id": group["id"], "epoch": u64::MAX / 2 + 1, "head": group["head"]});
    let envelope = fastchat_tests::api::opaque_group_envelope(&["alice", "bob"], binding);
    alice
        .send_to_group("team", envelope)
        .await
        .assert_problem(400, "invalid_envelope");
    // Nothing was stored.
    assert_eq!(cluster.db.count("messages").await, 0);
}
