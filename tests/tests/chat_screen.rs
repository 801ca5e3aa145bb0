//! The live chat as a person sees it: the real `fastchat chat` on a pseudo-terminal,
//! its screen drawn by a terminal emulator. What arrives appears above the prompt and
//! the line being typed stays intact; keys edit; commands are commands; a failed send
//! is retried and lands once; a balancer restart loses and doubles nothing.

use std::time::Duration;

use fastchat_tests::pty::{keys, Terminal};
use fastchat_tests::{eventually, BalancerProcess, CliHome, Cluster};

const WAIT: Duration = Duration::from_secs(30);

/// The index of the first row that ends with `text`.
fn row_ending(rows: &[String], text: &str) -> Option<usize> {
    rows.iter().position(|r| r.ends_with(text))
}

/// The texts `home` receives next (`recv --json`), in order.
fn received(home: &CliHome, server: &str) -> Vec<String> {
    home.run(server, &["recv", "--json"], "")
        .json_lines()
        .iter()
        .filter(|l| l["type"] == "message")
        .filter_map(|l| l["text"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until the chat is live (its opening line is on the screen).
fn wait_ready(screen: &mut Terminal, with: &str) {
    screen.wait_for(WAIT, &format!("-- chatting with {with}"));
}

#[tokio::test]
async fn an_incoming_line_appears_above_an_intact_prompt_and_keys_edit_the_line() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    bob.run(&server, &["send", "alice", "before the chat"], "")
        .success();

    let mut screen = alice.on_terminal(&server, &["chat", "bob"]);
    wait_ready(&mut screen, "bob");
    let rows = screen.rows();
    assert!(
        row_ending(&rows, " bob: before the chat").is_some(),
        "the recent conversation first:\n{}",
        rows.join("\n")
    );

    // Half a line typed when bob's message arrives: his line is printed above the
    // prompt, and the half line is still there, as typed.
    screen.type_keys("half a li");
    screen.wait_until(WAIT, "the half line at the prompt", |rows| {
        rows.iter().any(|r| r == "> half a li")
    });
    bob.run(&server, &["send", "alice", "hello from bob"], "")
        .success();
    screen.wait_until(WAIT, "bob's line and the prompt redrawn", |rows| {
        row_ending(rows, " bob: hello from bob").is_some()
            && rows.iter().any(|r| r == "> half a li")
    });
    let rows = screen.rows();
    let incoming = row_ending(&rows, " bob: hello from bob").expect("bob's line");
    let prompt = rows
        .iter()
        .position(|r| r == "> half a li")
        .unwrap_or_else(|| panic!("the typed line was garbled:\n{}", rows.join("\n")));
    assert!(
        incoming < prompt,
        "bob's line is above the prompt:\n{}",
        rows.join("\n")
    );
    assert_eq!(screen.cursor_row(), "> half a li");

    // Finishing the line sends it, and it comes back as "HH:MM you: ..." in place of
    // the typed text.
    screen.type_keys("ne");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, " you: half a line");
    assert!(
        !screen.rows().iter().any(|r| r == "> half a line"),
        "the typed line stays beside its echo:\n{}",
        screen.text()
    );

    // Arrow keys move in the line (no escape codes in the message), Ctrl-W deletes a
    // word.
    screen.type_keys("helo");
    screen.type_keys(keys::LEFT);
    screen.type_keys("l");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, " you: hello");
    screen.type_keys("one two");
    screen.type_keys(keys::CTRL_W);
    screen.type_keys("three");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, " you: one three");
    let png = fastchat_tests::root().join("tests/fixtures/drawing.png");
    screen.type_keys(&format!("/image {}", png.display()));
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "drawing.png]");

    // Commands are commands, not messages.
    screen.type_keys("/help");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "/image <path>");
    screen.type_keys("/who");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "In bob: alice (you), bob (offline)");
    screen.type_keys("/quit");
    screen.type_keys(keys::ENTER);
    assert_eq!(screen.wait_exit(WAIT), 0, "{}", screen.text());

    let got = bob.run(&server, &["recv", "--json"], "").json_lines();
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or(""),
                l["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("text", "half a line"),
            ("text", "hello"),
            ("text", "one three"),
            ("image", "")
        ]
    );
}

#[tokio::test]
async fn other_conversations_are_noticed_and_removal_makes_the_chat_read_only() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    let carol = CliHome::signed_up(&server, "carol");
    alice
        .run(&server, &["group", "create", "team", "bob", "carol"], "")
        .success();

    let mut screen = bob.on_terminal(&server, &["chat", "--group", "team"]);
    wait_ready(&mut screen, "group team");
    carol
        .run(&server, &["send", "bob", "psst, only for you"], "")
        .success();
    screen.wait_for(
        WAIT,
        "(new message from carol: `fastchat chat carol` to read it)",
    );
    assert!(
        !screen.text().contains("psst"),
        "another conversation's message is shown in this one:\n{}",
        screen.text()
    );
    carol
        .run(&server, &["send", "--group", "team", "hi team"], "")
        .success();
    screen.wait_for(WAIT, " carol: hi team");

    alice
        .run(&server, &["group", "remove", "team", "bob"], "")
        .success();
    screen.wait_for(WAIT, "You are no longer in group team (alice removed you)");
    screen.type_keys("am I still here?");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "(not sent: you are no longer in group team");
    screen.type_keys(keys::CTRL_D);
    assert_eq!(screen.wait_exit(WAIT), 0, "{}", screen.text());
    assert_eq!(cluster.db.count("messages").await, 2, "bob's line went out");

    // carol's message waits for bob's recv, unread.
    let got = received(&bob, &server);
    assert!(got.contains(&"psst, only for you".to_owned()), "{got:?}");
}

#[tokio::test]
async fn a_balancer_restart_during_a_chat_loses_no_line_and_sends_none_twice() {
    let cluster = Cluster::start(1).await;
    let addr = cluster.servers[0].addr();
    let balancer = BalancerProcess::spawn(None, &[&addr]);
    balancer.wait_healthy(&[&addr]).await;
    let url = balancer.url.clone();
    let alice = CliHome::signed_up(&url, "alice");
    let bob = CliHome::signed_up(&url, "bob");

    let mut screen = alice.on_terminal(&url, &["chat", "bob"]);
    wait_ready(&mut screen, "bob");
    let mut bobs = bob.spawn(&url, &["chat", "alice"]);
    let observer = alice.user_on(&cluster.api(0));
    eventually(WAIT, "bob's chat to connect", || async {
        (observer.profile("bob").await.body["online"] == true).then_some(())
    })
    .await;
    screen.type_keys("first");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, " you: first");
    let line = bobs.next_line(WAIT).expect("bob sees alice's first line");
    assert!(line.ends_with(" alice: first"), "{line}");
    bobs.write_line("bob before");
    screen.wait_for(WAIT, " bob: bob before");
    assert!(bobs
        .next_line(WAIT)
        .expect("bob's echo")
        .ends_with(" you: bob before"));

    // The balancer goes; both type meanwhile.
    let port = balancer.port();
    balancer.kill();
    screen.type_keys("during the outage");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, "(not sent yet, retrying");
    screen.wait_for(WAIT, "-- connection lost");
    bobs.write_line("bob during the outage");

    // It comes back where it was: everything lands, once.
    let balancer = BalancerProcess::spawn_on(port, None, &[&addr]);
    balancer.wait_healthy(&[&addr]).await;
    screen.wait_for(WAIT, "-- connected again --");
    screen.wait_for(WAIT, " you: during the outage (sent after retrying)");
    screen.wait_for(WAIT, " bob: bob during the outage");
    let mut bob_saw = Vec::new();
    while !bob_saw
        .iter()
        .any(|l: &String| l.ends_with(" alice: during the outage"))
    {
        bob_saw.push(
            bobs.next_line(WAIT)
                .expect("bob sees the line from the outage"),
        );
    }
    screen.type_keys("after");
    screen.type_keys(keys::ENTER);
    screen.wait_for(WAIT, " you: after");
    while !bob_saw.iter().any(|l| l.ends_with(" alice: after")) {
        bob_saw.push(bobs.next_line(WAIT).expect("bob sees alice's last line"));
    }
    screen.type_keys("/quit");
    screen.type_keys(keys::ENTER);
    assert_eq!(screen.wait_exit(WAIT), 0, "{}", screen.text());
    assert!(bobs.finish(WAIT).success());

    let text = screen.text();
    for line in [
        " you: first",
        " bob: bob before",
        " bob: bob during the outage",
        " you: during the outage (sent after retrying)",
    ] {
        assert_eq!(
            text.lines().filter(|r| r.ends_with(line)).count(),
            1,
            "{line:?} not exactly once:\n{text}"
        );
    }
    assert_eq!(
        bob_saw
            .iter()
            .filter(|l| l.ends_with(" alice: during the outage"))
            .count(),
        1,
        "{bob_saw:?}"
    );
    assert_eq!(
        cluster.db.count("messages").await,
        5,
        "a line was lost or stored twice"
    );
}
