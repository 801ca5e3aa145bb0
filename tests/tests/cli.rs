//! The `fastchat` binary as a new user would run it.

use std::os::unix::fs::PermissionsExt;

use fastchat_tests::{CliHome, Cluster};

const PASSWORD: &str = "hunter2 but longer\n";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn signup_here_login_elsewhere_restores_the_key_then_whoami_and_logout() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (&cluster.servers[0].url, &cluster.servers[1].url);

    let first = CliHome::new();
    let signed_up = first
        .run(
            one,
            &["signup", "alice", "--password-stdin", "--json"],
            PASSWORD,
        )
        .json();
    assert_eq!(signed_up["username"], "alice");
    let fingerprint = signed_up["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();
    assert_eq!(
        fingerprint.len(),
        79,
        "sha-256 hex in groups of four: {fingerprint}"
    );
    assert_eq!(mode(&first.dir.join("keys/alice.pem")), 0o600);
    assert_eq!(mode(&first.dir.join("session.json")), 0o600);
    assert_eq!(mode(&first.dir), 0o700);

    // The password itself never reached the server: only its bcrypt of a derived key.
    let dump = cluster.db.dump();
    assert!(
        !dump.contains(PASSWORD.trim()),
        "the password is in the database"
    );
    assert!(
        !dump.contains("PRIVATE KEY"),
        "a private key is in the database"
    );

    // A second, empty home on the other server: login restores the same key.
    let second = CliHome::new();
    let logged_in = second
        .run(
            two,
            &["login", "alice", "--password-stdin", "--json"],
            PASSWORD,
        )
        .json();
    assert_eq!(logged_in["fingerprint"], fingerprint.as_str());
    let restored = std::fs::read_to_string(second.dir.join("keys/alice.pem")).expect("key file");
    let original = std::fs::read_to_string(first.dir.join("keys/alice.pem")).expect("key file");
    assert_eq!(restored, original, "the restored private key differs");
    assert_eq!(mode(&second.dir.join("keys/alice.pem")), 0o600);

    let who = second.run(two, &["whoami"], "");
    assert_eq!(who.code(), 0, "{}", who.stderr());
    assert!(who.stdout().contains("alice"), "{}", who.stdout());
    assert!(who.stdout().contains(&fingerprint), "{}", who.stdout());

    let users = second.run(two, &["users", "--json"], "").json();
    assert_eq!(users["type"], "user");
    assert_eq!(users["username"], "alice");

    let session: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(second.dir.join("session.json")).expect("session file"),
    )
    .expect("session json");
    let token = session["token"].as_str().expect("token").to_owned();

    let out = second.run(two, &["logout"], "");
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(!second.dir.join("session.json").exists());
    let after = second.run(two, &["whoami"], "");
    assert_eq!(after.code(), 4);
    assert!(
        after.stderr().contains("not logged in"),
        "{}",
        after.stderr()
    );
    // The token is dead on both servers; the first home's session still lives.
    for i in 0..2 {
        cluster
            .api(i)
            .as_user("alice", &token)
            .profile("alice")
            .await
            .assert_problem(401, "invalid_token");
    }
    assert_eq!(first.run(one, &["whoami"], "").code(), 0);
}

#[tokio::test]
async fn every_failure_gets_a_clear_message_and_its_exit_code() {
    let cluster = Cluster::start(1).await;
    let server = &cluster.servers[0].url;
    let home = CliHome::new();
    home.run(server, &["signup", "alice", "--password-stdin"], PASSWORD)
        .success();

    let cases: Vec<(Vec<&str>, &str, i32, &str)> = vec![
        (
            vec!["signup", "alice", "--password-stdin"],
            PASSWORD,
            1,
            "is taken",
        ),
        (
            vec!["signup", "Bad Name", "--password-stdin"],
            PASSWORD,
            2,
            "username",
        ),
        (
            vec!["signup", "bob", "--password-stdin"],
            "short\n",
            2,
            "at least 8",
        ),
        (vec!["signup", "bob", "--password-stdin"], "\n", 2, "empty"),
        (vec!["signup", "bob"], "", 2, "--password-stdin"),
        (
            vec!["login", "alice", "--password-stdin"],
            "wrong password\n",
            4,
            "wrong username or password",
        ),
        (
            vec!["login", "nobody", "--password-stdin"],
            PASSWORD,
            4,
            "wrong username or password",
        ),
        (vec!["frobnicate"], "", 2, "unrecognized subcommand"),
    ];
    for (args, stdin, code, message) in cases {
        let fresh = CliHome::new();
        let out = fresh.run(server, &args, stdin);
        assert_eq!(out.code(), code, "{args:?}: {}", out.stderr());
        assert!(out.stderr().contains(message), "{args:?}: {}", out.stderr());
    }

    let empty = CliHome::new();
    let out = empty.run(server, &["whoami"], "");
    assert_eq!(out.code(), 4);
    assert!(out.stderr().contains("not logged in"), "{}", out.stderr());

    // Nothing listens on port 9 of loopback.
    let out = CliHome::new().run(
        "http://127.0.0.1:9",
        &["login", "alice", "--password-stdin"],
        PASSWORD,
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    assert!(out.stderr().contains("cannot reach"), "{}", out.stderr());

    let out = CliHome::new().run(
        "ftp://example",
        &["login", "alice", "--password-stdin"],
        PASSWORD,
    );
    assert_eq!(out.code(), 2, "{}", out.stderr());

    // Only one user was ever created.
    assert_eq!(cluster.db.count("users").await, 1);
}
