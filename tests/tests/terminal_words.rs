//! A word wherever a person at a terminal would otherwise meet silence, and none of it
//! in a pipe or with `--json`: the real binary on a pseudo-terminal.

use std::time::Duration;

use fastchat_tests::pty::keys;
use fastchat_tests::{root, BalancerProcess, CliHome, Cluster};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn empty_answers_say_so_on_a_terminal_and_nothing_in_a_pipe() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    for (args, words) in [
        (&["recv"][..], "No new messages."),
        (&["users", "zz"], "No users whose names start with zz."),
        (&["group", "list"], "You are in no groups."),
        (&["conversations"], "No conversations yet."),
    ] {
        let mut screen = alice.on_terminal(&server, args);
        assert_eq!(screen.wait_exit(WAIT), 0, "{args:?}: {}", screen.text());
        assert!(
            screen.text().contains(words),
            "{args:?}:\n{}",
            screen.text()
        );
        let piped = alice.run(&server, args, "");
        piped.success();
        assert_eq!(piped.stdout(), "", "{args:?} in a pipe");
        let mut json = vec!["--json"];
        json.extend_from_slice(args);
        assert_eq!(
            alice.run(&server, &json, "").stdout(),
            "",
            "{args:?} --json"
        );
    }
}

#[tokio::test]
async fn send_dash_at_a_terminal_says_how_to_end_the_message() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    let mut screen = alice.on_terminal(&server, &["send", "bob", "-"]);
    screen.wait_for(WAIT, "Type your message, then press Enter and Ctrl-D");
    screen.type_keys("typed at a terminal");
    screen.type_keys(keys::ENTER);
    screen.type_keys(keys::CTRL_D);
    assert_eq!(screen.wait_exit(WAIT), 0, "{}", screen.text());
    let got = bob.run(&server, &["recv", "--json"], "").json_lines();
    assert_eq!(got[0]["text"], "typed at a terminal");
}

#[tokio::test]
async fn signup_says_the_rules_first_and_asks_again_until_they_are_met() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let _taken = CliHome::signed_up(&server, "alice");

    // A taken name is said before any password is asked for.
    let home = CliHome::new();
    let mut screen = home.on_terminal(&server, &["signup", "alice"]);
    assert_eq!(screen.wait_exit(WAIT), 1, "{}", screen.text());
    assert!(
        screen.text().contains("alice is taken"),
        "{}",
        screen.text()
    );
    assert!(!screen.text().contains("Password"), "{}", screen.text());

    let mut screen = home.on_terminal(&server, &["signup", "dave"]);
    screen.wait_for(WAIT, "Choose a password of at least 8 characters.");
    screen.wait_for(WAIT, "Password:");
    screen.type_keys("short");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "That is too short");
    screen.type_keys("long enough one");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "Password again:");
    screen.type_keys("something else");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "The passwords do not match. Try again.");
    screen.type_keys("long enough one");
    screen.type_keys(keys::ENTER);
    screen.wait_until(WAIT, "the second \"Password again:\"", |rows| {
        rows.iter()
            .filter(|r| r.contains("Password again:"))
            .count()
            == 2
    });
    screen.type_keys("long enough one");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "Generating your key…");
    screen.wait_for(WAIT, "Signed up and logged in as dave.");
    assert_eq!(screen.wait_exit(WAIT), 0, "{}", screen.text());
    assert!(
        !screen.text().contains("long enough"),
        "the password was echoed"
    );
    home.run(
        &server,
        &["login", "dave", "--password-stdin"],
        "long enough one\n",
    )
    .success();
}

#[tokio::test]
async fn recv_follow_says_when_the_connection_goes_and_comes_back() {
    let cluster = Cluster::start(1).await;
    let addr = cluster.servers[0].addr();
    let balancer = BalancerProcess::spawn(None, &[&addr]);
    balancer.wait_healthy(&[&addr]).await;
    let url = balancer.url.clone();
    let alice = CliHome::signed_up(&url, "alice");
    let bob = CliHome::signed_up(&url, "bob");

    let mut screen = alice.on_terminal(&url, &["recv", "--follow"]);
    screen.wait_for(WAIT, "No new messages. Waiting for more");
    let observer = alice.user_on(&cluster.api(0));
    fastchat_tests::eventually(WAIT, "alice's stream to connect", || async {
        (observer.profile("alice").await.body["online"] == true).then_some(())
    })
    .await;
    let port = balancer.port();
    balancer.kill();
    screen.wait_for(
        WAIT,
        "fastchat: connection lost (the connection was cut); reconnecting…",
    );
    let balancer = BalancerProcess::spawn_on(port, None, &[&addr]);
    balancer.wait_healthy(&[&addr]).await;
    screen.wait_for(WAIT, "connected again; nothing was missed.");
    bob.run(&url, &["send", "alice", "after the outage"], "")
        .success();
    screen.wait_for(WAIT, " bob: after the outage");
    let text = screen.text();
    assert_eq!(
        text.matches("reconnecting…").count(),
        1,
        "said once:\n{text}"
    );
}

#[tokio::test]
async fn an_upload_shows_its_real_size() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let _bob = CliHome::signed_up(&server, "bob");
    let jpeg = root().join("tests/fixtures/photo.jpg");
    let mut screen = alice.on_terminal(
        &server,
        &["send", "bob", "--image", jpeg.to_str().expect("utf-8")],
    );
    assert_eq!(screen.wait_exit(WAIT), 0, "{}", screen.text());
    let text = screen.text();
    // 4,004 bytes and the 16-byte tag.
    assert!(
        text.contains("uploading 100% (3.9 KiB of 3.9 KiB)"),
        "{text}"
    );
    assert!(!text.contains("0 of 0"), "{text}");
}
