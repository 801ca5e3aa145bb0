//! `--json` keeps the promise of `docs/cli-json.md`: every command prints JSON Lines,
//! every line has a `type` the document lists, with exactly the fields it lists; a
//! failure is one `error` object on stderr carrying the server's `code`.

use std::collections::{BTreeMap, BTreeSet};

use fastchat_tests::{root, CliHome, CliOutput, Cluster, Proxy};
use serde_json::{json, Value};

/// Type → its fields, as `docs/cli-json.md` lists them: each `### ` heading names one
/// or more types in backquotes, and the table after it has a row per field.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("docs/cli-json.md")).expect("docs/cli-json.md");
    let mut types = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            current = heading
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            for name in &current {
                types.insert(name.clone(), BTreeSet::new());
            }
        } else if line.starts_with("## ") {
            current.clear();
        } else if let Some(row) = line.strip_prefix("| `") {
            let field = row.split('`').next().unwrap_or_default().to_owned();
            for name in &current {
                types
                    .get_mut(name)
                    .expect("a heading")
                    .insert(field.clone());
            }
        }
    }
    types
}

/// Every line of `output` is a documented object with exactly its fields.
#[track_caller]
fn check_lines(doc: &BTreeMap<String, BTreeSet<String>>, text: &str, seen: &mut BTreeSet<String>) {
    for line in text.lines() {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        let kind = object["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type: {line}"));
        let fields: BTreeSet<String> = object.keys().filter(|k| *k != "type").cloned().collect();
        let expected = doc
            .get(kind)
            .unwrap_or_else(|| panic!("type {kind:?} is not in docs/cli-json.md: {line}"));
        assert_eq!(
            &fields, expected,
            "the fields of {kind:?} differ from the document: {line}"
        );
        seen.insert(kind.to_owned());
    }
}

struct Checker {
    doc: BTreeMap<String, BTreeSet<String>>,
    seen: BTreeSet<String>,
}

impl Checker {
    /// Checks a command's stdout (and, for a failure, its one stderr line).
    #[track_caller]
    fn check(&mut self, out: &CliOutput) {
        check_lines(&self.doc, &out.stdout(), &mut self.seen);
        if out.code() != 0 {
            let stderr = out.stderr();
            assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
            check_lines(&self.doc, &stderr, &mut self.seen);
            let error: Value = serde_json::from_str(stderr.trim()).expect("an error object");
            assert_eq!(error["type"], "error");
            assert_eq!(error["exit_code"], out.code());
        }
    }

    #[track_caller]
    fn run(&mut self, home: &CliHome, server: &str, args: &[&str], stdin: &str) -> Vec<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = home.run(server, &all, stdin);
        self.check(&out);
        assert_eq!(out.code(), 0, "{args:?}: {}", out.stderr());
        fastchat_tests::json_lines(&out.stdout())
    }

    /// A failing command: its one error object.
    #[track_caller]
    fn fail(&mut self, home: &CliHome, server: &str, args: &[&str]) -> Value {
        self.fail_with(home, server, args, "")
    }

    #[track_caller]
    fn fail_with(&mut self, home: &CliHome, server: &str, args: &[&str], stdin: &str) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = home.run(server, &all, stdin);
        assert_ne!(out.code(), 0, "{args:?} should fail: {}", out.stdout());
        self.check(&out);
        serde_json::from_str(out.stderr().trim()).expect("an error object")
    }
}

#[tokio::test]
async fn every_json_line_is_a_documented_object_with_exactly_its_fields() {
    let cluster = Cluster::start(1).await;
    let server = cluster.servers[0].url.clone();
    let mut c = Checker {
        doc: documented(),
        seen: BTreeSet::new(),
    };
    assert!(
        c.doc.len() >= 19,
        "the document lists too few types: {:?}",
        c.doc.keys()
    );

    let alice = CliHome::new();
    let bob = CliHome::new();
    let carol = CliHome::new();
    for (home, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        let lines = c.run(
            home,
            &server,
            &["signup", name, "--password-stdin"],
            &format!("password of {name}\n"),
        );
        assert_eq!(lines.len(), 1);
    }
    c.run(&alice, &server, &["whoami"], "");
    let users = c.run(&alice, &server, &["users"], "");
    assert_eq!(users.len(), 3, "one line per user: {users:?}");

    let sent = c.run(&alice, &server, &["send", "bob", "hello", "bob"], "");
    assert_eq!(sent[0]["type"], "sent");
    let png = root().join("tests/fixtures/drawing.png");
    c.run(
        &alice,
        &server,
        &["send", "bob", "--image", png.to_str().expect("utf-8")],
        "",
    );
    c.run(&alice, &server, &["group", "create", "team", "bob"], "");
    c.run(&alice, &server, &["group", "add", "team", "carol"], "");
    c.run(&alice, &server, &["group", "admin", "team", "bob"], "");
    c.run(
        &alice,
        &server,
        &["send", "--group", "team", "hi", "team"],
        "",
    );
    c.run(&alice, &server, &["group", "remove", "team", "carol"], "");
    c.run(&alice, &server, &["group", "info", "team"], "");
    c.run(&alice, &server, &["group", "list"], "");

    let got = c.run(&bob, &server, &["recv"], "");
    let types: BTreeSet<&str> = got.iter().filter_map(|l| l["type"].as_str()).collect();
    for kind in [
        "message",
        "group.created",
        "group.member_added",
        "group.admin_added",
        "group.member_removed",
    ] {
        assert!(types.contains(kind), "no {kind} in {got:?}");
    }
    let history = c.run(&bob, &server, &["history", "alice", "--limit", "1"], "");
    let page = history.last().expect("a page line");
    assert_eq!(page["type"], "page");
    assert!(
        page["before"].as_i64().is_some(),
        "a cursor for the older page: {page}"
    );
    let older = c.run(
        &bob,
        &server,
        &["history", "alice", "--before", &page["before"].to_string()],
        "",
    );
    assert_eq!(older.last().expect("a page line")["before"], Value::Null);
    c.run(&bob, &server, &["conversations"], "");
    c.run(&bob, &server, &["verify", "alice"], "");
    c.run(&bob, &server, &["trust", "alice"], "");
    c.run(&bob, &server, &["group", "leave", "team"], "");

    // A message the server tampered with is a `rejected` line.
    c.run(&alice, &server, &["send", "bob", "tampered"], "");
    let proxy = Proxy::start(&server).await;
    bob.log_in_at(&proxy.url);
    proxy.rewrite("GET", "/v1/inbox", |_, reply| {
        for event in reply.body["events"].as_array_mut().into_iter().flatten() {
            if event["message"].is_object() {
                event["message"]["envelope"]["ciphertext"] = json!("AAAAAAAAAAAAAAAAAAAAAAAA");
            }
        }
    });
    let out = bob.run(&proxy.url, &["--json", "recv"], "");
    assert_eq!(out.code(), 5, "{}", out.stderr());
    c.check(&out);
    bob.log_in_at(&server);

    // Errors carry the server's code, and a code of their own when the server did not
    // refuse.
    let error = c.fail(&alice, &server, &["send", "nobody", "hi"]);
    assert_eq!(error["code"], "user_not_found", "{error}");
    assert_eq!(error["status"], 404);
    let error = c.fail(&alice, &server, &["send", "Not A Name", "hi"]);
    assert_eq!(error["code"], "usage");
    assert_eq!(error["exit_code"], 2);
    let error = c.fail(&alice, &server, &["frobnicate"]);
    assert_eq!(error["code"], "usage");
    let error = c.fail(&alice, "http://127.0.0.1:9", &["whoami"]);
    assert_eq!(error["code"], "logged_in_elsewhere", "{error}");
    let error = c.fail_with(
        &CliHome::new(),
        "http://127.0.0.1:9",
        &["login", "alice", "--password-stdin"],
        "password of alice\n",
    );
    assert_eq!(error["code"], "unreachable", "{error}");

    c.run(&alice, &server, &["logout"], "");
    let again = CliHome::new();
    c.run(
        &again,
        &server,
        &["login", "alice", "--password-stdin"],
        "password of alice\n",
    );

    let missing: Vec<&String> = c.doc.keys().filter(|k| !c.seen.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "documented but never printed: {missing:?}"
    );
}
