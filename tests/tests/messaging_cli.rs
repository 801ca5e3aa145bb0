//! One-to-one messaging as people use it: the real `fastchat` binary on two api servers.

use std::time::Duration;

use fastchat_tests::{eventually, CliHome, Cluster, TestUser};

const WAIT: Duration = Duration::from_secs(20);

/// Whether `observer` sees `who` online.
async fn online(observer: &TestUser, who: &str) -> bool {
    let answer = observer.profile(who).await;
    answer.body["online"] == true
}

#[tokio::test]
async fn alice_and_bob_on_different_servers_talk_live_in_both_directions() {
    // Quick keep-alives, so the server notices bob leaving (on its next write) quickly.
    let cluster = Cluster::start_with(2, &[("FASTCHAT_SSE_KEEPALIVE_SECS", "1")]).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");
    let alice_http = alice.user_on(&cluster.api(0));

    let alice_live = alice.spawn(&one, &["recv", "--follow", "--json"]);
    let bob_live = bob.spawn(&two, &["recv", "--follow", "--json"]);
    for who in ["alice", "bob"] {
        eventually(WAIT, &format!("{who} to be online"), || async {
            online(&alice_http, who).await.then_some(())
        })
        .await;
    }

    alice
        .run(&one, &["send", "bob", "hello bob, from server one"], "")
        .success();
    let got = bob_live.next_json(WAIT);
    assert_eq!(got["type"], "message");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["text"], "hello bob, from server one");

    bob.run(&two, &["send", "alice", "-"], "hi alice\nsecond line\n")
        .success();
    let got = alice_live.next_json(WAIT);
    assert_eq!(got["from"], "bob");
    assert_eq!(got["text"], "hi alice\nsecond line");

    // Alice does not receive her own message, and bob's stream holds no more.
    assert!(alice_live.next_line(Duration::from_millis(300)).is_none());
    drop(bob_live);
    eventually(WAIT, "bob to go offline", || async {
        (!online(&alice_http, "bob").await).then_some(())
    })
    .await;
}

#[tokio::test]
async fn messages_to_an_offline_user_wait_and_arrive_in_order_once() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");

    for i in 1..=5 {
        alice
            .run(&one, &["send", "bob", &format!("message {i}")], "")
            .success();
    }
    let out = bob.run(&two, &["recv", "--json"], "");
    out.success();
    let lines = out.json_lines();
    let texts: Vec<&str> = lines
        .iter()
        .map(|l| l["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        texts,
        [
            "message 1",
            "message 2",
            "message 3",
            "message 4",
            "message 5"
        ]
    );
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| l["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    // Shown once: the next recv has nothing new, then only what came after.
    let again = bob.run(&two, &["recv", "--json"], "");
    again.success();
    assert_eq!(again.stdout(), "");
    alice.run(&one, &["send", "bob", "message 6"], "").success();
    // On the other server too (the session goes where its user logs in).
    bob.log_in_at(&one);
    let third = bob.run(&one, &["recv"], "");
    third.success();
    assert!(
        third.stdout().trim_end().ends_with("alice: message 6"),
        "{}",
        third.stdout()
    );
    assert_eq!(third.stdout().lines().count(), 1);

    // History shows both sides, oldest first.
    bob.run(&one, &["send", "alice", "got them"], "").success();
    let history = alice.run(&one, &["history", "bob", "--json", "--limit", "3"], "");
    let texts = history.texts();
    assert_eq!(texts, ["message 5", "message 6", "got them"]);
}

#[tokio::test]
async fn a_canary_sent_through_the_system_never_reaches_the_database_in_clear() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");
    let canary = format!("CANARY-{}", uuid::Uuid::new_v4());
    alice.run(&one, &["send", "bob", &canary], "").success();
    let got = bob.run(&two, &["recv", "--json"], "");
    assert!(
        got.stdout().contains(&canary),
        "bob did not get the canary: {}",
        got.stdout()
    );

    let dump = cluster.db.dump();
    assert!(
        dump.contains("alice") && dump.contains("bob"),
        "the dump is not of this database"
    );
    assert!(!dump.contains(&canary), "the plaintext is in the database");
    assert!(
        !dump.contains("PRIVATE KEY"),
        "a private key is in the database"
    );
    assert!(
        !dump.contains("password of alice"),
        "a password is in the database"
    );
}

#[tokio::test]
async fn a_tampered_message_is_refused_loudly_and_the_rest_still_arrive() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    let _carol = CliHome::signed_up(&server, "carol");
    for text in [
        "changed ciphertext",
        "changed sender",
        "wrong signature",
        "untouched",
    ] {
        alice.run(&server, &["send", "bob", text], "").success();
    }
    // The server turns hostile: it edits what it stores.
    let db = cluster.db.client().await;
    let ids: Vec<i64> = db
        .query("SELECT id FROM messages ORDER BY id", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    db.execute(
        "UPDATE messages SET ciphertext = 'AAAA' || substr(ciphertext, 5) WHERE id = $1",
        &[&ids[0]],
    )
    .await
    .expect("tamper");
    db.execute(
        "UPDATE messages SET sender_id = (SELECT id FROM users WHERE username = 'carol') WHERE id = $1",
        &[&ids[1]],
    )
    .await
    .expect("tamper");
    db.execute(
        "UPDATE messages SET sig = (SELECT sig FROM messages WHERE id = $2) WHERE id = $1",
        &[&ids[2], &ids[3]],
    )
    .await
    .expect("tamper");

    let out = bob.run(&server, &["recv", "--json"], "");
    assert_eq!(out.code(), 5, "stderr: {}", out.stderr());
    // With --json, stderr is the one error line; each refusal is a `rejected` line.
    let error: serde_json::Value =
        serde_json::from_str(out.stderr().trim()).expect("one JSON error line");
    assert_eq!(error["code"], "unverified");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("3 message(s) failed verification")),
        "{error}"
    );
    // It exited 5 (checked above), so parse its output without asserting success.
    let lines = fastchat_tests::json_lines(&out.stdout());
    let rejected: Vec<i64> = lines
        .iter()
        .filter(|l| l["type"] == "rejected")
        .map(|l| l["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(rejected, ids[..3]);
    let shown: Vec<&str> = lines.iter().filter_map(|l| l["text"].as_str()).collect();
    assert_eq!(shown, ["untouched"]);
    // In text mode nothing of the tampered messages is printed either.
    let text = bob.run(&server, &["history", "alice"], "");
    assert_eq!(text.code(), 5);
    assert!(
        !text.stdout().contains("changed") && !text.stdout().contains("wrong"),
        "{}",
        text.stdout()
    );
    assert!(text.stdout().contains("untouched"));
}

#[tokio::test]
async fn chat_shows_each_side_the_others_lines_live() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");
    alice
        .run(&one, &["send", "bob", "before the chat"], "")
        .success();
    let alice_http = alice.user_on(&cluster.api(0));

    let mut alice_chat = alice.spawn(&one, &["chat", "bob"]);
    let mut bob_chat = bob.spawn(&two, &["chat", "alice"]);
    // Each first sees the recent conversation.
    let line = alice_chat.next_line(WAIT).expect("history line");
    assert!(line.ends_with(" you: before the chat"), "{line}");
    let line = bob_chat.next_line(WAIT).expect("history line");
    assert!(line.ends_with(" alice: before the chat"), "{line}");
    for who in ["alice", "bob"] {
        eventually(WAIT, &format!("{who}'s chat to connect"), || async {
            online(&alice_http, who).await.then_some(())
        })
        .await;
    }

    alice_chat.write_line("hello bob, live");
    // Her own line comes back with its time once the server has it.
    let line = alice_chat.next_line(WAIT).expect("alice's line echoed");
    assert!(line.ends_with(" you: hello bob, live"), "{line}");
    let line = bob_chat.next_line(WAIT).expect("bob sees alice's line");
    assert!(line.ends_with(" alice: hello bob, live"), "{line}");
    bob_chat.write_line("hello alice, live");
    let line = alice_chat.next_line(WAIT).expect("alice sees bob's line");
    assert!(line.ends_with(" bob: hello alice, live"), "{line}");

    assert!(alice_chat.finish(WAIT).success());
    assert!(bob_chat.finish(WAIT).success());
}

#[tokio::test]
async fn recv_follow_reconnects_on_its_own_and_resumes_where_it_left_off() {
    let mut cluster = Cluster::start_with(2, &[("FASTCHAT_SSE_KEEPALIVE_SECS", "1")]).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&two, "alice");
    let bob = CliHome::signed_up(&one, "bob");
    let bob_live = bob.spawn(&one, &["recv", "--follow", "--json"]);
    let alice_http = alice.user_on(&cluster.api(0));
    eventually(WAIT, "bob to be online", || async {
        online(&alice_http, "bob").await.then_some(())
    })
    .await;
    alice
        .run(&two, &["send", "bob", "before the crash"], "")
        .success();
    assert_eq!(bob_live.next_json(WAIT)["text"], "before the crash");

    // Bob's server dies; while it is down alice keeps writing through the other one.
    cluster.servers[0].signal("KILL");
    cluster.servers[0].wait_exit(WAIT);
    for i in 1..=3 {
        alice
            .run(&two, &["send", "bob", &format!("while down {i}")], "")
            .success();
    }
    // It comes back on the same address; bob's CLI reconnects by itself with
    // Last-Event-ID and gets exactly what it missed.
    let listen = one.trim_start_matches("http://").to_owned();
    let restarted =
        fastchat_tests::ApiServer::spawn(&cluster.db.url, &[("FASTCHAT_LISTEN", &listen)]).ready();
    cluster.servers[0] = restarted;
    for i in 1..=3 {
        let got = bob_live.next_json(WAIT);
        assert_eq!(got["text"], format!("while down {i}"));
        assert_eq!(got["seq"], 1 + i);
    }
    assert!(
        bob_live.next_line(Duration::from_millis(500)).is_none(),
        "something arrived twice"
    );
}
