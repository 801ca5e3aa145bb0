//! Conversations and unread counts: `fastchat conversations` lists people and groups
//! newest first with what is unread; reading (`recv`, `history`, `chat`) marks read up
//! to what was shown, and the mark is the server's, so two homes of one user on two
//! servers agree. The read-mark resource on its own: marks only move forward, and only
//! to a message the reader received in that conversation.

use std::time::Duration;

use fastchat_tests::{eventually, CliHome, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// `conversations --json`: (name, unread) in order, groups as `@name`.
fn conversations(home: &CliHome, server: &str) -> Vec<(String, i64)> {
    home.run(server, &["conversations", "--json"], "")
        .json_lines()
        .iter()
        .map(|c| {
            let name = match (&c["with"], &c["group"]) {
                (Value::String(user), _) => user.clone(),
                (_, Value::String(group)) => format!("@{group}"),
                _ => panic!("a conversation with no one: {c}"),
            };
            (name, c["unread"].as_i64().expect("unread"))
        })
        .collect()
}

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(n, u)| ((*n).to_owned(), *u)).collect()
}

#[tokio::test]
async fn two_homes_of_one_user_on_two_servers_agree_on_what_is_unread() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let alice_too = CliHome::new();
    alice_too
        .run(
            &two,
            &["login", "alice", "--password-stdin"],
            "password of alice\n",
        )
        .success();
    let bob = CliHome::signed_up(&one, "bob");
    let carol = CliHome::signed_up(&two, "carol");

    assert!(conversations(&alice, &one).is_empty());
    for text in ["one", "two", "three"] {
        bob.run(&one, &["send", "alice", text], "").success();
    }
    carol
        .run(&two, &["group", "create", "team", "alice", "bob"], "")
        .success();
    carol
        .run(&two, &["send", "--group", "team", "hello", "team"], "")
        .success();
    carol.run(&two, &["send", "alice", "psst"], "").success();

    // Newest first, with the unread counts, the same from both homes.
    let expected = pairs(&[("carol", 1), ("@team", 1), ("bob", 3)]);
    assert_eq!(conversations(&alice, &one), expected);
    assert_eq!(conversations(&alice_too, &two), expected);
    let text = alice.run(&one, &["conversations"], "");
    text.success();
    let stdout = text.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", text.stdout());
    assert!(
        lines[2].starts_with("bob ") && lines[2].ends_with("  3 unread"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("@team "), "{lines:?}");

    // Read on the second home (the other server): read on the first as well.
    alice_too.run(&two, &["recv"], "").success();
    assert_eq!(
        conversations(&alice, &one),
        pairs(&[("carol", 0), ("@team", 0), ("bob", 0)])
    );

    // A new message is unread again; reading its history (the newest page) marks it.
    bob.run(&one, &["send", "alice", "four"], "").success();
    assert_eq!(conversations(&alice_too, &two)[0], ("bob".to_owned(), 1));
    alice.run(&one, &["history", "bob"], "").success();
    assert_eq!(conversations(&alice_too, &two)[0], ("bob".to_owned(), 0));

    // A chat marks what it shows, as it shows it.
    let observer = alice.user_on(&cluster.api(0));
    let chat = alice_too.spawn(&two, &["chat", "--group", "team"]);
    eventually(WAIT, "alice's chat to connect", || async {
        let answer = observer.profile("alice").await;
        (answer.body["online"] == true).then_some(())
    })
    .await;
    carol
        .run(&two, &["send", "--group", "team", "live", "one"], "")
        .success();
    // (The recent conversation comes first.)
    let mut line = String::new();
    while !line.ends_with(" carol: live one") {
        line = chat.next_line(WAIT).expect("the live line");
    }
    eventually(WAIT, "the chat to mark the group read", || async {
        let team = conversations(&alice, &one)
            .into_iter()
            .find(|(name, _)| name == "@team")?;
        (team.1 == 0).then_some(())
    })
    .await;
    assert!(chat.finish(WAIT).success());
}

#[tokio::test]
async fn read_marks_move_forward_only_and_only_to_messages_received() {
    let cluster = Cluster::start(2).await;
    let alice = cluster.api(0).user("alice").await;
    let bob = cluster.api(1).user("bob").await;
    let carol = cluster.api(0).user("carol").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let sent = bob.send_opaque_to(&alice).await;
        ids.push(sent.assert_status(201)["id"].as_i64().expect("an id"));
    }
    let mine = alice.send_opaque_to(&bob).await;
    let own_id = mine.assert_status(201)["id"].as_i64().expect("an id");
    carol.send_opaque_to(&alice).await.assert_status(201);

    let list = alice.conversations().await;
    let list = list.assert_status(200)["conversations"].clone();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list[0]["with"], "carol");
    assert_eq!(list[1]["with"], "bob");
    assert_eq!(
        list[1]["unread"], 3,
        "alice's own message is not unread: {list}"
    );
    assert_eq!(list[1]["last_message_id"], own_id);
    assert_eq!(list[1]["read_up_to"], Value::Null);

    // On the other server, the same mark.
    let alice_on_two = alice.on(&cluster.api(1));
    alice_on_two
        .mark_read("bob", ids[1])
        .await
        .assert_status(200);
    let list = alice.conversations().await;
    assert_eq!(list.assert_status(200)["conversations"][1]["unread"], 1);
    assert_eq!(list.body["conversations"][1]["read_up_to"], ids[1]);

    // Backwards is no move.
    let back = alice.mark_read("bob", ids[0]).await;
    assert_eq!(back.assert_status(200)["read_up_to"], ids[1]);

    // Only a message alice received in that conversation.
    alice
        .mark_read("bob", own_id)
        .await
        .assert_problem(404, "message_not_found");
    alice
        .mark_read("carol", ids[2])
        .await
        .assert_problem(404, "message_not_found");
    carol
        .mark_read("bob", ids[2])
        .await
        .assert_problem(404, "message_not_found");
    alice
        .mark_read("nobody", ids[2])
        .await
        .assert_problem(404, "user_not_found");
    alice
        .mark_group_read("nogroup", ids[2])
        .await
        .assert_problem(404, "group_not_found");
    let list = alice.conversations().await;
    assert_eq!(list.assert_status(200)["conversations"][1]["unread"], 1);

    // Groups: a member's mark, counted from the member's inbox.
    alice
        .create_group("team", &["bob"])
        .await
        .assert_status(201);
    let sent = bob.send_opaque_to_group("team", &["alice", "bob"]).await;
    let group_message = sent.assert_status(201)["id"].as_i64().expect("an id");
    let list = alice.conversations().await;
    let team = list.assert_status(200)["conversations"][0].clone();
    assert_eq!(team["group"], "team", "{team}");
    assert_eq!(team["unread"], 1);
    alice
        .mark_group_read("team", group_message)
        .await
        .assert_status(200);
    let list = alice.conversations().await;
    assert_eq!(list.assert_status(200)["conversations"][0]["unread"], 0);
}
