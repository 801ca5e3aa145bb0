//! Groups whose membership is a signed chain, as people use them through the CLI: every
//! change is verified by every member's client, a new member is shown to a sender before
//! a message goes out to them, the automatic rules come out the same everywhere, and the
//! server refuses statements that do not follow the chain.

use fastchat_protocol::group::{Change, Statement, StatementHash};
use fastchat_protocol::names::{GroupName, Username};
use fastchat_tests::api::{test_fingerprint, test_private_key};
use fastchat_tests::{CliHome, Cluster, Proxy};
use serde_json::{json, Value};

fn texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["text"].as_str().map(str::to_owned))
        .collect()
}

fn info(home: &CliHome, server: &str, group: &str) -> Value {
    home.run(server, &["group", "info", group, "--json"], "")
        .json()
}

#[tokio::test]
async fn every_member_verifies_every_change_and_the_rules_come_out_the_same_everywhere() {
    let cluster = Cluster::start(2).await;
    let (one, two) = (
        cluster.servers[0].url.clone(),
        cluster.servers[1].url.clone(),
    );
    let alice = CliHome::signed_up(&one, "alice");
    let bob = CliHome::signed_up(&two, "bob");
    let carol = CliHome::signed_up(&one, "carol");
    let dave = CliHome::signed_up(&two, "dave");

    alice
        .run(&one, &["group", "create", "team", "bob", "carol"], "")
        .success();
    let bobs = bob.run(&two, &["recv", "--json"], "").json_lines();
    assert_eq!(bobs[0]["type"], "group.created");
    assert_eq!(bobs[0]["text"], "alice created group team with bob, carol");
    assert_eq!(bobs[0]["verified"], true);
    let seen_by_carol = info(&carol, &one, "team");
    assert_eq!(seen_by_carol["members"], json!(["alice", "bob", "carol"]));
    assert_eq!(seen_by_carol["admins"], json!(["alice"]));

    // alice adds dave; bob, who has not looked since, is shown dave before his message
    // goes out to him, once.
    let added = alice.run(&one, &["group", "add", "team", "dave"], "");
    added.success();
    let dave_fp = info(&alice, &one, "team")["keys"]["dave"]
        .as_str()
        .expect("dave's key in the chain")
        .to_owned();
    let sent = bob.run(&two, &["send", "--group", "team", "hi all"], "");
    sent.success();
    let shown = format!("alice added dave to team (dave's key: {dave_fp})");
    assert_eq!(
        sent.stderr().matches(&shown).count(),
        1,
        "{}",
        sent.stderr()
    );
    let again = bob.run(&two, &["send", "--group", "team", "again"], "");
    again.success();
    assert!(!again.stderr().contains("added dave"), "{}", again.stderr());
    // dave's client verifies the whole chain from the first statement on.
    let daves = dave.run(&two, &["recv", "--json"], "").json_lines();
    assert!(texts(&daves).contains(&"hi all".to_owned()), "{daves:?}");
    assert!(texts(&daves).contains(&"again".to_owned()), "{daves:?}");

    // bob becomes an admin too; carol is removed while bob sends.
    alice
        .run(&one, &["group", "admin", "team", "bob"], "")
        .success();
    bob.run(&two, &["send", "--group", "team", "before"], "")
        .success();
    alice
        .run(&one, &["group", "remove", "team", "carol"], "")
        .success();
    bob.run(&two, &["send", "--group", "team", "after"], "")
        .success();
    let carols = carol.run(&one, &["recv", "--json"], "").json_lines();
    let carol_texts = texts(&carols);
    assert!(
        carol_texts.contains(&"before".to_owned()),
        "{carol_texts:?}"
    );
    assert!(
        !carol_texts.contains(&"after".to_owned()),
        "{carol_texts:?}"
    );
    assert!(
        carol_texts.contains(&"alice removed carol from team".to_owned()),
        "{carol_texts:?}"
    );
    let refused = carol.run(&one, &["send", "--group", "team", "let me in"], "");
    assert_ne!(refused.code(), 0);

    // Both admins leave: dave, who joined earliest of who is left, is admin, as every
    // client works out for itself.
    alice.run(&one, &["group", "leave", "team"], "").success();
    bob.run(&two, &["group", "leave", "team"], "").success();
    let daves = dave.run(&two, &["recv", "--json"], "").json_lines();
    assert!(
        texts(&daves).contains(&"dave is now an admin of team (the last admin left)".to_owned()),
        "{daves:?}"
    );
    assert_eq!(info(&dave, &two, "team")["admins"], json!(["dave"]));

    // The last member leaves: the group ends, and its name is free for another group.
    dave.run(&two, &["group", "leave", "team"], "").success();
    assert_ne!(dave.run(&two, &["group", "info", "team"], "").code(), 0);
    carol
        .run(&one, &["group", "create", "team", "dave"], "")
        .success();
    let daves = dave.run(&two, &["recv", "--json"], "").json_lines();
    assert!(
        texts(&daves).contains(&"carol created group team with dave".to_owned()),
        "{daves:?}"
    );
    carol
        .run(&one, &["send", "--group", "team", "a new team"], "")
        .success();
    let history = dave
        .run(&two, &["history", "--group", "team", "--json"], "")
        .json_lines();
    assert_eq!(texts(&history), ["a new team"]);
    let new_info = info(&dave, &two, "team");
    assert_eq!(new_info["members"], json!(["carol", "dave"]));
    assert_ne!(
        new_info["id"], seen_by_carol["id"],
        "a new group, with an id of its own"
    );

    // A fresh home verifies the chain again from the start, and has the pins back.
    let dave2 = CliHome::new();
    dave2
        .run(
            &one,
            &["login", "dave", "--password-stdin"],
            "password of dave\n",
        )
        .success();
    assert_eq!(info(&dave2, &one, "team"), new_info);
    carol
        .run(&one, &["send", "--group", "team", "welcome back"], "")
        .success();
    let fresh = dave2.run(&one, &["recv", "--json"], "").json_lines();
    assert!(
        texts(&fresh).contains(&"welcome back".to_owned()),
        "{fresh:?}"
    );
}

/// A message of the group that had a name before is not shown in the history of the
/// group that has it now, and a group message bound to a state the chain does not have
/// is refused.
#[tokio::test]
async fn group_messages_cannot_be_moved_into_another_group_or_state() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice
        .run(&server, &["group", "create", "crew", "bob"], "")
        .success();
    alice
        .run(&server, &["send", "--group", "crew", "old plans"], "")
        .success();
    bob.run(&server, &["recv"], "").success();
    let old = bob
        .user_on(&cluster.api(0))
        .group_history("crew")
        .await
        .body["messages"][0]
        .clone();
    alice
        .run(&server, &["group", "remove", "crew", "bob"], "")
        .success();
    alice
        .run(&server, &["group", "leave", "crew"], "")
        .success();
    alice
        .run(&server, &["group", "create", "crew", "bob"], "")
        .success();
    alice
        .run(&server, &["send", "--group", "crew", "new plans"], "")
        .success();

    // The server slips the old message into the new group's history.
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    let slipped = old.clone();
    proxy.rewrite("GET", "/v1/groups/crew/messages", move |_, reply| {
        if let Some(messages) = reply.body["messages"].as_array_mut() {
            messages.push(slipped.clone());
        }
    });
    let out = bob.run(&proxy.url, &["history", "--group", "crew", "--json"], "");
    assert_eq!(out.code(), 5, "{}", out.stderr());
    assert_eq!(
        texts(&fastchat_tests::json_lines(&out.stdout())),
        ["new plans"]
    );
    assert!(
        out.stdout().contains("an earlier group called crew"),
        "the rejected line says why: {}",
        out.stdout()
    );

    // And a message whose state the server rewrote does not verify.
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    proxy.rewrite("GET", "/v1/groups/crew/messages", |_, reply| {
        for message in reply.body["messages"].as_array_mut().into_iter().flatten() {
            message["envelope"]["group"]["head"] = json!("00".repeat(32));
        }
    });
    let out = bob.run(&proxy.url, &["history", "--group", "crew"], "");
    assert_eq!(out.code(), 5, "{}", out.stderr());
    assert!(!out.stdout().contains("new plans"), "{}", out.stdout());
}

/// The server applies a statement only if it follows the chain and its signer may make
/// it; anything else is a 4xx, and nothing changes.
#[tokio::test]
async fn the_server_refuses_statements_that_do_not_follow_the_chain() {
    let cluster = Cluster::start(1).await;
    let api = cluster.api(0);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let carol = api.user("carol").await;
    api.signup("dave").await.assert_status(201);
    alice
        .create_group("team", &["bob", "carol"])
        .await
        .assert_status(201);
    alice.remove_member("team", &carol).await.assert_status(204);
    let view = alice.group("team").await.body;
    let (id, epoch) = (
        uuid::Uuid::parse_str(view["id"].as_str().expect("id")).expect("a uuid"),
        view["epoch"].as_u64().expect("epoch"),
    );
    let head = StatementHash::parse(view["head"].as_str().expect("head")).expect("a hash");
    let statement = |by: &str, seq: u64, prev: StatementHash, change: Change| {
        Statement {
            group: id,
            name: GroupName::parse("team").expect("a name"),
            seq,
            prev: Some(prev),
            by: Username::parse(by).expect("a name"),
            at: chrono::Utc::now(),
            change,
        }
        .sign(test_private_key())
    };
    let add_dave = || Change::Add {
        user: Username::parse("dave").expect("a name"),
        fingerprint: test_fingerprint(),
    };
    let members = fastchat_tests::paths::group_members("team");
    let tables = [
        "group_members",
        "group_statements",
        "groups",
        "inbox_events",
    ];
    let mut before = Vec::new();
    for t in tables {
        before.push(cluster.db.count(t).await);
    }
    let cases = [
        // bob is a member, but no admin.
        (
            &bob,
            statement("bob", epoch + 1, head, add_dave()),
            403,
            "not_admin",
        ),
        // carol was removed: to her the group does not exist.
        (
            &carol,
            statement("carol", epoch + 1, head, add_dave()),
            404,
            "group_not_found",
        ),
        // alice passes on a statement carol signed.
        (
            &alice,
            statement("carol", epoch + 1, head, add_dave()),
            400,
            "invalid_statement",
        ),
        // Out of order: a seq ahead, and the head before the last.
        (
            &alice,
            statement("alice", epoch + 2, head, add_dave()),
            409,
            "stale_statement",
        ),
        (
            &alice,
            statement("alice", epoch, head, add_dave()),
            409,
            "stale_statement",
        ),
        (
            &alice,
            statement("alice", epoch + 1, StatementHash([7; 32]), add_dave()),
            409,
            "stale_statement",
        ),
        // A key that is not dave's.
        (
            &alice,
            statement(
                "alice",
                epoch + 1,
                head,
                Change::Add {
                    user: Username::parse("dave").expect("a name"),
                    fingerprint: "0000:".repeat(15) + "0000",
                },
            ),
            409,
            "key_mismatch",
        ),
        // A statement that says another change than the request.
        (
            &alice,
            statement(
                "alice",
                epoch + 1,
                head,
                Change::Promote {
                    user: Username::parse("bob").expect("a name"),
                },
            ),
            400,
            "invalid_statement",
        ),
    ];
    for (who, signed, status, code) in cases {
        let answer = who
            .call(
                reqwest::Method::POST,
                &members,
                Some(json!({"username": "dave", "statement": signed})),
            )
            .await;
        answer.assert_problem(status, code);
    }
    // Signed with a key that is not alice's.
    let mut forged = statement("alice", epoch + 1, head, add_dave());
    let other = fastchat_protocol::keys::generate_private_key().expect("a key");
    forged.sig = Statement::parse(&forged.text)
        .expect("parses")
        .sign(&other)
        .sig;
    alice
        .call(
            reqwest::Method::POST,
            &members,
            Some(json!({"username": "dave", "statement": forged})),
        )
        .await
        .assert_problem(400, "invalid_statement");
    for (i, t) in tables.iter().enumerate() {
        assert_eq!(
            cluster.db.count(t).await,
            before[i],
            "a refusal changed {t}"
        );
    }
    assert_eq!(alice.group("team").await.body["epoch"], json!(epoch));
    // The right statement, after all that, is taken.
    alice.add_member("team", "dave").await.assert_status(200);
}
