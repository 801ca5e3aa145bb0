//! The server lies, and the CLI still does the right thing. A [`Proxy`] between the real
//! `fastchat` CLI and the real server rewrites its answers, or answers in its place, as
//! a server (or, with no TLS, a network) that wants to read, forge or replay messages,
//! or to make the CLI print or write what it should not.

use std::path::Path;

use fastchat_tests::{CliHome, Cluster, Proxy};
use serde_json::{json, Value};

fn group_messages(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "message")
        .filter_map(|l| l["text"].as_str().map(str::to_owned))
        .collect()
}

/// 1. The server asks the sender to encrypt for one more "member" (a 409 naming eve):
/// the CLI checks the group's signed chain, finds no eve in it, and sends nothing.
#[tokio::test]
async fn a_ghost_member_in_a_409_is_refused_and_nothing_is_sealed_for_them() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    let _eve = CliHome::signed_up(&server, "eve");
    alice
        .run(&server, &["group", "create", "team", "bob"], "")
        .success();

    let proxy = Proxy::start(&server).await;
    alice.log_in_at(&proxy.url);
    proxy.answer_once(
        "POST",
        "/v1/messages",
        409,
        json!({"type": "about:blank", "title": "Conflict", "status": 409,
               "code": "recipients_mismatch", "members": ["alice", "bob", "eve"]}),
    );
    let out = alice.run(&proxy.url, &["send", "--group", "team", "our secret"], "");
    assert_ne!(out.code(), 0, "the send must fail: {}", out.stdout());
    assert!(
        out.stderr().contains("than its signed history has"),
        "{}",
        out.stderr()
    );
    let sealed_for_eve = proxy
        .requests()
        .iter()
        .any(|r| r.path == "/v1/messages" && !r.json()["envelope"]["keys"]["eve"].is_null());
    assert!(!sealed_for_eve, "a message was sealed for eve");
    assert!(
        !proxy.requests().iter().any(|r| r.path == "/v1/users/eve"),
        "the CLI fetched eve's key"
    );
    assert_eq!(
        cluster.db.count("messages").await,
        0,
        "nothing reached the server"
    );

    // A chain that claims eve joined, signed by eve (who is no admin, nor a member):
    // refused as well.
    let chain = alice.user_on(&cluster.api(0)).statements("team").await;
    let genesis = chain.body["statements"][0]["statement"]["text"]
        .as_str()
        .expect("the first statement")
        .to_owned();
    let parsed = fastchat_protocol::group::Statement::parse(&genesis).expect("a statement");
    let eve_key = fastchat_protocol::keys::generate_private_key().expect("a key");
    let eve = fastchat_protocol::names::Username::parse("eve").expect("a name");
    let forged = fastchat_protocol::group::Statement {
        seq: 1,
        prev: Some(fastchat_protocol::group::StatementHash::of(&genesis)),
        by: eve.clone(),
        change: fastchat_protocol::group::Change::Add {
            user: eve,
            fingerprint: fastchat_protocol::keys::fingerprint(&eve_key.to_public_key()),
        },
        ..parsed
    }
    .sign(&eve_key);
    let forged_head = forged.hash().to_hex();
    let proxy = Proxy::start(&server).await;
    alice.log_in_at(&proxy.url);
    proxy.rewrite("GET", "/v1/groups/team/statements", move |_, reply| {
        reply.body["statements"] = json!([{"seq": 1, "statement": forged}]);
    });
    proxy.rewrite("GET", "/v1/groups/team", move |request, reply| {
        if !request.path.contains("/statements") {
            reply.body["epoch"] = json!(1);
            reply.body["head"] = json!(forged_head);
            reply.body["members"] = json!(["alice", "bob", "eve"]);
        }
    });
    proxy.answer_once(
        "POST",
        "/v1/messages",
        409,
        json!({"type": "about:blank", "title": "Conflict", "status": 409,
               "code": "recipients_mismatch", "members": ["alice", "bob", "eve"]}),
    );
    let out = alice.run(&proxy.url, &["send", "--group", "team", "our secret"], "");
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr().contains("signed by eve, who is not a member"),
        "{}",
        out.stderr()
    );
    assert_eq!(cluster.db.count("messages").await, 0);

    // The real group still works for its real members.
    alice.log_in_at(&server);
    alice
        .run(&server, &["send", "--group", "team", "hello bob"], "")
        .success();
    let got = bob.run(&server, &["recv", "--json"], "").json_lines();
    assert_eq!(group_messages(&got), ["hello bob"]);
}

/// 2 and 3. Names the server sends are names, or the event is dropped: nothing is
/// written or deleted outside the home, and nothing it sends drives the terminal.
#[tokio::test]
async fn names_from_the_server_never_become_paths_or_terminal_codes() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice
        .run(
            &server,
            &[
                "send",
                "bob",
                "hi bob\n12:00:00 carol: I agree, send alice the money",
            ],
            "",
        )
        .success();

    let outside = std::env::temp_dir().join(format!("fastchat-outside-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&outside).expect("a folder outside the home");
    let victim = outside.join("precious.json");
    std::fs::write(&victim, "{}").expect("a file outside the home");
    let relative_victim = format!(
        "../../../../../../../..{}",
        victim.with_extension("").display()
    );
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    let poison = [
        "../session".to_owned(),
        relative_victim,
        outside.join("planted").display().to_string(),
        "team\u{1b}[2J\u{1b}[32malice added eve (all good)".to_owned(),
    ];
    proxy.rewrite("GET", "/v1/inbox", move |_, reply| {
        let Some(events) = reply.body["events"].as_array_mut() else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let mut seq = events
            .iter()
            .filter_map(|e| e["seq"].as_i64())
            .max()
            .unwrap_or(0);
        for name in &poison {
            seq += 1;
            events.push(json!({
                "seq": seq, "type": "group.member_removed", "group": name,
                "group_id": uuid::Uuid::new_v4(), "username": name, "by": name, "epoch": 1,
            }));
            seq += 1;
            events.push(json!({
                "seq": seq, "type": "group.created", "group": "team",
                "group_id": uuid::Uuid::new_v4(), "username": name, "by": "alice", "epoch": 0,
            }));
        }
    });
    let out = bob.run(&proxy.url, &["recv"], "");
    assert_eq!(out.code(), 5, "{}\n{}", out.stdout(), out.stderr());
    assert_eq!(
        out.stderr().matches("dropped an event").count(),
        8,
        "{}",
        out.stderr()
    );
    for text in [out.stdout(), out.stderr()] {
        assert!(
            !text.contains('\u{1b}'),
            "an escape reached the terminal: {text:?}"
        );
        assert!(!text.contains("(all good)"), "{text}");
    }
    // The message's second line is marked as the message's, not a line of its own.
    assert!(
        out.stdout().contains("\n  | 12:00:00 carol: I agree"),
        "{}",
        out.stdout()
    );
    assert!(
        bob.dir.join("session.json").exists(),
        "the session survived"
    );
    assert!(victim.exists(), "a file outside the home was deleted");
    assert_eq!(
        std::fs::read_dir(&outside).expect("the folder").count(),
        1,
        "something was written outside the home"
    );
    bob.log_in_at(&server);
    bob.run(&server, &["whoami"], "").success();

    // A problem's detail is the server's text too.
    let proxy = Proxy::start(&server).await;
    alice.log_in_at(&proxy.url);
    proxy.answer_once(
        "POST",
        "/v1/messages",
        400,
        json!({"type": "about:blank", "title": "Bad Request", "status": 400,
               "code": "invalid_envelope", "detail": "refused\u{1b}]0;pwned\u{7}\u{1b}[2J"}),
    );
    let out = alice.run(&proxy.url, &["send", "bob", "hello"], "");
    assert_eq!(out.code(), 1);
    assert!(out.stderr().contains("refused"), "{:?}", out.stderr());
    assert!(!out.stderr().contains('\u{1b}'), "{:?}", out.stderr());
    std::fs::remove_dir_all(&outside).ok();
    assert!(!Path::new(&bob.dir.join("..").join("session.json")).exists());
}

/// 4. An old message served again, under a new seq and a time five years on, is not
/// shown twice; a message whose server time is far from its signed time says so.
#[tokio::test]
async fn a_replayed_message_is_refused_and_a_server_time_far_from_the_signed_one_is_shown() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice
        .run(&server, &["send", "bob", "pay carol 10"], "")
        .success();
    let first = bob.run(&server, &["recv", "--json"], "").json_lines();
    assert_eq!(group_messages(&first), ["pay carol 10"]);
    let original = bob.user_on(&cluster.api(0)).inbox(0).await.body["events"][0].clone();
    assert_eq!(original["type"], "message");

    alice
        .run(&server, &["send", "bob", "and nothing more"], "")
        .success();
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    proxy.rewrite("GET", "/v1/inbox", move |_, reply| {
        let Some(events) = reply.body["events"].as_array_mut() else {
            return;
        };
        let Some(last) = events.iter().filter_map(|e| e["seq"].as_i64()).max() else {
            return;
        };
        // The new message's server time is moved five years on.
        for event in events.iter_mut() {
            event["message"]["sent_at"] = json!("2031-12-01T12:00:00Z");
        }
        let mut replayed = original.clone();
        replayed["seq"] = json!(last + 1);
        replayed["message"]["id"] = json!(9_999_999);
        replayed["message"]["sent_at"] = json!("2031-12-01T12:00:00Z");
        events.push(replayed);
    });
    let out = bob.run(&proxy.url, &["recv", "--json"], "");
    assert_eq!(out.code(), 5, "{}", out.stderr());
    let lines = fastchat_tests::json_lines(&out.stdout());
    assert_eq!(group_messages(&lines), ["and nothing more"], "shown twice");
    assert!(out.stdout().contains("shown before"), "{}", out.stdout());
    let shown = lines
        .iter()
        .find(|l| l["type"] == "message")
        .expect("shown");
    assert_eq!(shown["server_time"], "2031-12-01T12:00:00Z");
    assert_ne!(
        shown["sent_at"], shown["server_time"],
        "the signed time is shown"
    );

    // In text, the disagreement is spelled out.
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    proxy.rewrite("GET", "/v1/conversations/alice/messages", |_, reply| {
        for message in reply.body["messages"].as_array_mut().into_iter().flatten() {
            message["sent_at"] = json!("2031-12-01T12:00:00Z");
        }
    });
    let out = bob.run(&proxy.url, &["history", "alice"], "");
    out.success();
    assert_eq!(
        out.stdout().matches("(the server says 2031-12-01").count(),
        2,
        "{}",
        out.stdout()
    );
}

/// 5. A key swapped before first contact is caught by comparing safety numbers; a key
/// swapped after is refused with its own exit code until the user trusts it; pins and
/// verifications come back on a fresh home.
#[tokio::test]
async fn swapped_keys_are_caught_by_safety_numbers_and_refused_after_pinning() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    let carol = CliHome::signed_up(&server, "carol");
    let mallory_key = fastchat_protocol::keys::generate_private_key().expect("a key");
    let mallory_pem = fastchat_protocol::keys::public_key_pem(&mallory_key.to_public_key());
    let proxy = Proxy::start(&server).await;
    alice.log_in_at(&proxy.url);
    let swapped = mallory_pem.clone();
    proxy.rewrite("GET", "/v1/users/bob", move |_, reply| {
        reply.body["public_key"] = json!(swapped);
    });

    // Before alice's first contact with bob, the server hands her mallory's key as his:
    // the number she reads to bob is not the one his client shows.
    let out = alice.run(&proxy.url, &["verify", "bob"], "");
    assert!(
        out.stderr().contains("first contact with bob"),
        "{}",
        out.stderr()
    );
    let fooled = alice
        .run(&proxy.url, &["verify", "bob", "--json"], "")
        .json();
    let bobs_view = bob.run(&server, &["verify", "alice", "--json"], "").json();
    assert_eq!(
        bobs_view["safety_number"]
            .as_str()
            .map(|n| n.split(' ').count()),
        Some(12)
    );
    assert_ne!(
        fooled["safety_number"], bobs_view["safety_number"],
        "the swap shows"
    );

    // carol's first contact is honest: her number is bob's, and she marks him verified.
    let real = carol
        .run(&server, &["verify", "bob", "--confirm", "--json"], "")
        .json();
    let bob_for_carol = bob.run(&server, &["verify", "carol", "--json"], "").json();
    assert_eq!(real["safety_number"], bob_for_carol["safety_number"]);
    assert_eq!(real["verified"], true);

    // Then the server swaps bob's key: refused, exit 6, nothing sent.
    carol.log_in_at(&proxy.url);
    let out = carol.run(&proxy.url, &["send", "bob", "for bob only"], "");
    assert_eq!(out.code(), 6, "{}", out.stderr());
    assert!(
        out.stderr().contains("different public key for bob"),
        "{}",
        out.stderr()
    );
    assert_eq!(cluster.db.count("messages").await, 0);

    // Her pin and her verification come back in a fresh home, and refuse the swap there.
    let carol2 = CliHome::new();
    let login = carol2
        .run(
            &proxy.url,
            &["login", "carol", "--password-stdin", "--json"],
            "password of carol\n",
        )
        .json();
    assert!(login["contacts_restored"].as_u64() >= Some(1), "{login}");
    let out = carol2.run(&proxy.url, &["send", "bob", "for bob only"], "");
    assert_eq!(
        out.code(),
        6,
        "the restored pin refuses the swap: {}",
        out.stderr()
    );
    carol2.log_in_at(&server);
    let restored = carol2.run(&server, &["verify", "bob", "--json"], "").json();
    assert_eq!(restored["verified"], true);
    assert_eq!(restored["safety_number"], real["safety_number"]);

    // Accepting a new key is the user's call: after `trust`, it is the one used.
    carol2.log_in_at(&proxy.url);
    let trusted = carol2
        .run(&proxy.url, &["trust", "bob", "--json"], "")
        .json();
    assert_eq!(
        trusted["fingerprint"],
        fastchat_protocol::keys::fingerprint(&mallory_key.to_public_key())
    );
    carol2
        .run(&proxy.url, &["send", "bob", "now mallory's"], "")
        .success();
}

/// Messages of the old envelope version: a one-to-one one still opens, marked as having
/// no signed time; a group one is refused, since nothing binds it to the group's
/// membership; the CLI says which and why.
#[tokio::test]
async fn old_format_messages_are_explained_not_trusted_blindly() {
    use fastchat_protocol::envelope::{self, Destination, Header, Kind, Plaintext};
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice
        .run(&server, &["group", "create", "pair", "bob"], "")
        .success();
    alice
        .run(&server, &["send", "bob", "a new one"], "")
        .success();
    alice
        .run(&server, &["send", "--group", "pair", "a new group one"], "")
        .success();

    // A v1 message, as alice's client sealed them before: her key signs it for bob.
    let alice_key = fastchat_protocol::keys::parse_private_key_pem(
        &std::fs::read_to_string(alice.dir.join("keys/alice.pem")).expect("alice's key"),
    )
    .expect("a private key");
    let bob_profile = bob.user_on(&cluster.api(0)).profile("bob").await.body;
    let bob_key = fastchat_protocol::keys::parse_public_key_pem(
        bob_profile["public_key"].as_str().expect("bob's key"),
    )
    .expect("a public key");
    let client_id = uuid::Uuid::new_v4();
    let header = Header {
        from: "alice".into(),
        to: Destination::User("bob".into()),
        kind: Kind::Text,
        client_id,
        sent_at: None,
        group: None,
    };
    let text = Plaintext::Text {
        text: "from before v2".into(),
    };
    let old =
        envelope::seal(&header, &text, &alice_key, &[("bob".into(), bob_key)]).expect("sealed");
    assert_eq!(old.v, 1);
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    proxy.rewrite("GET", "/v1/inbox", move |_, reply| {
        let Some(events) = reply.body["events"].as_array_mut() else {
            return;
        };
        for event in events.iter_mut() {
            let message = &mut event["message"];
            if message.is_null() {
                continue;
            }
            if message["group"].is_null() {
                // The one-to-one message becomes the old one.
                message["client_id"] = json!(client_id);
                message["envelope"] = json!(old);
            } else {
                // The group message is passed off as v1.
                let envelope = &mut message["envelope"];
                envelope["v"] = json!(1);
                if let Some(fields) = envelope.as_object_mut() {
                    fields.remove("sent_at");
                    fields.remove("group");
                }
            }
        }
    });
    let out = bob.run(&proxy.url, &["recv"], "");
    assert_eq!(out.code(), 5, "{}", out.stderr());
    assert!(
        out.stdout()
            .contains("(old format: no signed time): from before v2"),
        "{}",
        out.stdout()
    );
    assert!(
        !out.stdout().contains("a new group one"),
        "{}",
        out.stdout()
    );
    assert!(
        out.stderr()
            .contains("old format (v1), which does not bind a group message"),
        "{}",
        out.stderr()
    );
}

/// On the live stream too, an event whose names are not names is dropped with a
/// warning, and the stream goes on.
#[tokio::test]
async fn a_live_stream_drops_a_poisoned_event_and_goes_on() {
    use std::time::Duration;
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice.run(&server, &["send", "bob", "hello"], "").success();
    bob.run(&server, &["recv"], "").success();

    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    proxy.rewrite_events(|event| {
        if event["message"]["envelope"].is_object()
            && event["seq"].as_i64().is_some_and(|seq| seq % 2 == 0)
        {
            event["message"]["from"] = json!("../../\u{1b}[2Jroot");
        }
    });
    let mut live = bob.spawn(&proxy.url, &["recv", "--follow", "--json"]);
    // Sent only once the stream is asked for: a message sent earlier would come in
    // the catch-up read of the inbox, which this proxy leaves alone.
    fastchat_tests::eventually(Duration::from_secs(20), "the live stream", || async {
        proxy
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.starts_with("/v1/events"))
            .then_some(())
    })
    .await;
    for text in ["poisoned in transit", "arrives whole"] {
        alice.run(&server, &["send", "bob", text], "").success();
    }
    let line = live.next_json(Duration::from_secs(20));
    assert_eq!(line["type"], "rejected", "{line}");
    let line = live.next_json(Duration::from_secs(20));
    assert_eq!(line["text"], "arrives whole", "{line}");
    live.child.kill().ok();
}

/// The server spells a group message's epoch in ways JSON allows but no whole number
/// is (a fraction, or a float past 2^53 that stands for many integers at once): the
/// CLI refuses that message, shows the others, and says it refused one.
#[tokio::test]
async fn an_epoch_that_is_not_a_whole_number_is_refused_and_the_rest_are_shown() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let alice = CliHome::signed_up(&server, "alice");
    let bob = CliHome::signed_up(&server, "bob");
    alice
        .run(&server, &["group", "create", "team", "bob"], "")
        .success();
    for text in ["one", "two", "three"] {
        alice
            .run(&server, &["send", "--group", "team", text], "")
            .success();
    }
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    proxy.rewrite("GET", "/v1/inbox", |_, reply| {
        let messages = reply.body["events"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .filter(|e| e["message"]["envelope"]["group"]["epoch"].is_u64());
        // The first two group messages: "one" and "two".
        for (event, epoch) in messages.zip([json!(0.5), json!(1e300)]) {
            event["message"]["envelope"]["group"]["epoch"] = epoch;
        }
    });
    let out = bob.run(&proxy.url, &["recv", "--json"], "");
    assert_eq!(out.code(), 5, "{}", out.stderr());
    let lines = fastchat_tests::json_lines(&out.stdout());
    let rejected = lines.iter().filter(|l| l["type"] == "rejected").count();
    assert_eq!(rejected, 2, "{}", out.stdout());
    assert_eq!(group_messages(&lines), ["three"], "{}", out.stdout());
}
