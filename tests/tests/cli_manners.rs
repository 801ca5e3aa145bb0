//! The stumbles a new user met, each fixed: `send` takes the rest of the line, names
//! that cannot exist are bad usage everywhere, a server that cannot be reached gets a
//! short answer that says what to do, a session's token goes to its own server only,
//! plain HTTP goes to this machine only, logging in as someone else ends the session
//! before, `whoami` answers offline, times are local, images are saved once, signup
//! costs one bcrypt, and help has a description for every argument and examples.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fastchat_tests::{root, CliHome, Cluster, Proxy};
use serde_json::Value;

fn texts(home: &CliHome, server: &str) -> Vec<String> {
    home.run(server, &["recv", "--json"], "")
        .json_lines()
        .iter()
        .filter_map(|l| l["text"].as_str().map(str::to_owned))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn send_takes_the_rest_of_the_line_even_when_it_starts_with_a_dash() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice
        .run(&server, &["send", "bob", "hello", "world"], "")
        .success();
    alice
        .run(&server, &["send", "bob", "-5", "degrees", "today"], "")
        .success();
    alice
        .run(
            &server,
            &["send", "bob", "--", "--verbose", "is", "a", "flag"],
            "",
        )
        .success();
    assert_eq!(
        texts(&bob, &server),
        ["hello world", "-5 degrees today", "--verbose is a flag"]
    );
}

#[tokio::test]
async fn a_name_that_cannot_exist_is_bad_usage_everywhere() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let cases: &[&[&str]] = &[
        &["users", "Bad!"],
        &["send", "Bob", "hi"],
        &["send", "--group", "a b", "hi"],
        &["history", "x"],
        &["history", "--group", "NO"],
        &["chat", "B-O-B"],
        &["verify", "bob!"],
        &["trust", "bob!"],
        &["group", "create", "Team"],
        &["group", "add", "team", "Dave"],
        &["group", "info", "t"],
        &["login", "Alice", "--password-stdin"],
    ];
    for args in cases {
        let out = alice.run(&server, args, "password of alice\n");
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
    }
    // Even when not logged in: the name is wrong before anything else.
    let out = CliHome::new().run(&server, &["send", "Bob", "hi"], "");
    assert_eq!(out.code(), 2, "{}", out.stderr());
}

#[tokio::test]
async fn an_unreachable_server_gets_a_short_answer_that_says_what_to_do() {
    let home = CliHome::new();
    let out = home.run(
        "http://127.0.0.1:9",
        &["login", "alice", "--password-stdin"],
        "password of alice\n",
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    let stderr = out.stderr();
    assert!(
        stderr.contains(
            "cannot reach the FastChat server at http://127.0.0.1:9 (connection refused)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("is the server running? (--server / FASTCHAT_SERVER)"),
        "{stderr}"
    );
    assert!(!stderr.contains("for url"), "the URL twice: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn the_session_goes_only_to_its_own_server_and_plain_http_only_to_this_machine() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let proxy = Proxy::start(&server).await;
    for args in [
        &["recv"][..],
        &["users"],
        &["send", "bob", "hi"],
        &["whoami"],
    ] {
        let out = alice.run(&proxy.url, args, "");
        assert_eq!(out.code(), 4, "{args:?}: {}", out.stderr());
        assert!(
            out.stderr().contains("Log in there first"),
            "{}",
            out.stderr()
        );
    }
    assert!(
        proxy.requests().is_empty(),
        "the session went to another server: {:?}",
        proxy.requests()
    );
    // Logging in there moves the session, on purpose.
    alice.log_in_at(&proxy.url);
    alice.run(&proxy.url, &["whoami"], "").success();

    for url in [
        "http://chat.example.org",
        "http://10.1.2.3:8080",
        "ftp://127.0.0.1",
    ] {
        let out = CliHome::new().run(url, &["login", "alice", "--password-stdin"], "x\n");
        assert_eq!(out.code(), 2, "{url}: {}", out.stderr());
    }
    let out = CliHome::new().run(
        "http://chat.example.org",
        &["login", "alice", "--password-stdin"],
        "x\n",
    );
    assert!(out.stderr().contains("--insecure-http"), "{}", out.stderr());
    // localhost is this machine.
    let local = server.replace("127.0.0.1", "localhost");
    let home = CliHome::new();
    home.run(
        &local,
        &["login", "alice", "--password-stdin"],
        "password of alice\n",
    )
    .success();
}

#[tokio::test]
async fn logging_in_as_someone_else_ends_the_session_before() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let home = CliHome::signed_up(&server, "alice");
    let _bob = CliHome::signed_up(&server, "bob");
    let alices = home.token();
    let login = home
        .run(
            &server,
            &["login", "bob", "--password-stdin", "--json"],
            "password of bob\n",
        )
        .json();
    assert_eq!(login["ended_session_of"], "alice");
    cluster
        .api(0)
        .as_user("alice", &alices)
        .profile("alice")
        .await
        .assert_problem(401, "invalid_token");
    let out = home.run(&server, &["whoami"], "");
    assert!(out.stdout().starts_with("bob on "), "{}", out.stdout());
}

#[tokio::test]
async fn whoami_answers_offline_in_local_time_to_the_second() {
    let mut cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let mut command = alice.command(&server);
    command.env("TZ", "Asia/Tokyo").arg("whoami");
    let out = command.output().expect("whoami");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let expires = text
        .lines()
        .find_map(|l| l.strip_prefix("Session expires: "))
        .unwrap_or_else(|| panic!("{text}"));
    // 2026-12-31 14:03:07 +09:00: seconds at most, and the zone.
    assert_eq!(
        expires.len(),
        "2026-12-31 14:03:07 +09:00".len(),
        "{expires}"
    );
    assert!(expires.ends_with(" +09:00"), "{expires}");

    let fingerprint = alice.run(&server, &["whoami", "--json"], "").json()["fingerprint"].clone();
    cluster.servers[0].signal("KILL");
    cluster.servers[0].wait_exit(std::time::Duration::from_secs(10));
    let offline = alice.run(&server, &["whoami", "--json"], "").json();
    assert_eq!(offline["confirmed_by_server"], false);
    assert_eq!(offline["fingerprint"], fingerprint);
    let out = alice.run(&server, &["whoami"], "");
    out.success();
    assert!(out.stdout().contains("offline"), "{}", out.stdout());
    drop(cluster.servers.pop());
}

#[tokio::test]
async fn times_are_local_and_say_today() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice
        .run(&server, &["send", "bob", "what time"], "")
        .success();
    let history = bob
        .run(&server, &["history", "alice", "--json"], "")
        .json_lines();
    let sent_at: chrono::DateTime<chrono::Utc> = history[0]["sent_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a time");
    for (tz, hours) in [("UTC", 0), ("Asia/Tokyo", 9), ("America/Sao_Paulo", -3)] {
        let zone = chrono::FixedOffset::east_opt(hours * 3600).expect("an offset");
        let local = sent_at.with_timezone(&zone);
        let now = chrono::Utc::now().with_timezone(&zone);
        let expected = if local.date_naive() == now.date_naive() {
            local.format("%H:%M alice: what time").to_string()
        } else {
            local.format("yesterday %H:%M alice: what time").to_string()
        };
        let mut command = bob.command(&server);
        command.env("TZ", tz).args(["history", "alice"]);
        let out = command.output().expect("history");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            expected,
            "TZ={tz}"
        );
    }
}

#[tokio::test]
async fn an_image_is_saved_once_privately_and_the_senders_own_is_never_downloaded() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    let png =
        std::fs::canonicalize(root().join("tests/fixtures/drawing.png")).expect("the fixture");
    let png = png.to_str().expect("utf-8");
    alice
        .run(&server, &["send", "bob", "--image", png], "")
        .success();

    let first = bob.run(&server, &["recv", "--json"], "").json_lines();
    let saved = first[0]["saved"].as_str().expect("saved").to_owned();
    let downloads = bob.dir.join("downloads");
    assert_eq!(mode(&downloads), 0o700);
    assert_eq!(mode(Path::new(&saved)), 0o600);
    for _ in 0..3 {
        let again = bob
            .run(&server, &["history", "alice", "--json"], "")
            .json_lines();
        assert_eq!(again[0]["saved"], saved.as_str());
        let text = bob.run(&server, &["history", "alice"], "");
        assert!(
            text.stdout().contains(&format!("already saved at {saved}")),
            "{}",
            text.stdout()
        );
    }
    let files = std::fs::read_dir(&downloads).expect("downloads").count();
    assert_eq!(files, 1, "saved more than once");

    // The sender's history points at the file she sent and downloads nothing.
    let hers = alice.run(&server, &["history", "bob"], "");
    assert!(
        hers.stdout().contains(&format!("sent from {png}")),
        "{}",
        hers.stdout()
    );
    assert!(
        !alice.dir.join("downloads").exists(),
        "the sender downloaded her own image"
    );
    let json = alice
        .run(&server, &["history", "bob", "--json"], "")
        .json_lines();
    assert_eq!(json[0]["saved"], png);

    // A folder of one's own choosing is made private too.
    let elsewhere = std::env::temp_dir().join(format!("fastchat-dl-{}", uuid::Uuid::new_v4()));
    let mut command = bob.command(&server);
    command
        .env("FASTCHAT_DOWNLOADS", &elsewhere)
        .args(["history", "alice", "--json"]);
    let out = command.output().expect("history");
    assert!(out.status.success());
    let line: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().expect("a line"))
            .expect("json");
    // Already saved (in the home's downloads): not saved again elsewhere.
    assert_eq!(line["saved"], saved.as_str());
    assert!(!elsewhere.exists());
}

#[tokio::test]
async fn signup_answers_with_a_session_and_never_logs_in_after() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let proxy = Proxy::start(&server).await;
    let home = CliHome::new();
    home.run(
        &proxy.url,
        &["signup", "alice", "--password-stdin"],
        "password of alice\n",
    )
    .success();
    let paths: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        ["GET /v1/usernames/alice", "POST /v1/users"],
        "one bcrypt: the signup, no login after it"
    );
    home.run(&proxy.url, &["whoami"], "").success();
    // The name is checked before anything is asked for or made.
    let out = CliHome::new().run(&server, &["signup", "alice", "--password-stdin"], "");
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("alice is taken"), "{}", out.stderr());
}

#[tokio::test]
async fn help_describes_every_argument_and_shows_examples() {
    let home = CliHome::new();
    let commands: &[&[&str]] = &[
        &["signup"],
        &["login"],
        &["logout"],
        &["whoami"],
        &["users"],
        &["send"],
        &["recv"],
        &["history"],
        &["chat"],
        &["conversations"],
        &["verify"],
        &["trust"],
        &["completions"],
        &["manpage"],
        &["group", "create"],
        &["group", "add"],
        &["group", "remove"],
        &["group", "leave"],
        &["group", "admin"],
        &["group", "list"],
        &["group", "info"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = home.run("http://127.0.0.1:9", &args, "");
        out.success();
        let help = out.stdout();
        assert!(
            help.contains("Example"),
            "{command:?} has no example:\n{help}"
        );
        // Every argument line ("  <NAME>  description") has a description.
        let mut in_arguments = false;
        for line in help.lines() {
            if line == "Arguments:" {
                in_arguments = true;
                continue;
            }
            if in_arguments && !line.starts_with("  ") {
                in_arguments = false;
            }
            if in_arguments && line.trim_start().starts_with(['<', '[']) {
                let described = line
                    .trim()
                    .split_once("  ")
                    .is_some_and(|(_, d)| !d.trim().is_empty());
                assert!(
                    described,
                    "{command:?}: an argument without a description: {line:?}"
                );
            }
        }
    }
    let out = home.run("http://127.0.0.1:9", &["completions", "bash"], "");
    out.success();
    assert!(out.stdout().contains("complete -F"), "{}", out.stdout());
    let out = home.run("http://127.0.0.1:9", &["manpage"], "");
    out.success();
    assert!(out.stdout().contains(".TH fastchat"), "{}", out.stdout());
    assert!(out.stdout().contains("conversations"));
}
