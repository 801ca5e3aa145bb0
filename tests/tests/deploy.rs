//! The deployment files in `deploy/` against the binaries (`deploy/check` verifies the
//! systemd units themselves):
//! - the env templates a unit reads (its `EnvironmentFile=` lines: `/etc/fastchat/X` is
//!   `deploy/X.example`, `%i` read as 1) name every setting of the binary it runs and
//!   nothing else, and one left at its default (`#FASTCHAT_X=value`) shows the default.
//!   A binary's settings are the `[env: …]` its `--help` lists, and the `"FASTCHAT_…"`
//!   names its sources read outside the flags (the log filter);
//! - the database roles README.md makes are enough: the api servers migrate and serve as
//!   the database's owner, the balancer routes with a role that reads only the registry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use fastchat_tests::{admin_url, bin, connect, root, Api, ApiServer, BalancerProcess};

/// Each setting a binary accepts, with the default its `--help` gives, if any.
type Settings = BTreeMap<String, Option<String>>;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every setting `binary` accepts: the variables its `--help` names, with their defaults,
/// and those its crate's sources name (read outside the flags, as the log filter is).
fn accepted(binary: &str) -> Settings {
    let mut command = Command::new(bin(binary));
    // Unset, a variable's value is not shown in the help: `[env: NAME=]`.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FASTCHAT_") {
            command.env_remove(key);
        }
    }
    let out = command
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{binary} --help: {e}"));
    assert!(out.status.success(), "{binary} --help failed");
    // Lines joined, so that wrapping cannot split a note. clap writes `[env: NAME=]` (or
    // `[env: NAME]` for a hidden value), then `[default: VALUE]` when there is one.
    let help = String::from_utf8_lossy(&out.stdout);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut settings = Settings::new();
    for note in help.split("[env: ").skip(1) {
        let name = note.split(['=', ']']).next().unwrap_or_default();
        let after = note
            .split_once(']')
            .map_or("", |(_, after)| after.trim_start());
        let default = after
            .strip_prefix("[default: ")
            .and_then(|d| d.split_once(']'))
            .map(|(default, _)| default.to_owned());
        settings.insert(name.to_owned(), default);
    }
    let crate_dir = binary.strip_prefix("fastchat-").unwrap_or(binary);
    for name in names_in_sources(&root().join(crate_dir).join("src")) {
        settings.entry(name).or_insert(None);
    }
    settings
}

/// Every `"FASTCHAT_…"` string literal in the `.rs` files under `dir`.
fn names_in_sources(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            names.extend(names_in_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            for literal in read(&path).split("\"FASTCHAT_").skip(1) {
                let Some((rest, _)) = literal.split_once('"') else {
                    continue;
                };
                if rest
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    names.insert(format!("FASTCHAT_{rest}"));
                }
            }
        }
    }
    names
}

/// `(name, value, commented out)` for each `FASTCHAT_X=value` or `#FASTCHAT_X=value`.
fn settings_in(template: &str) -> Vec<(&str, &str, bool)> {
    template
        .lines()
        .filter_map(|line| {
            let body = line.strip_prefix('#').unwrap_or(line);
            let (name, value) = body.split_once('=')?;
            let is_name = name.starts_with("FASTCHAT_")
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then_some((name, value, line.starts_with('#')))
        })
        .collect()
}

/// For each binary a unit in `deploy/` runs from /usr/local/bin, the templates of the
/// files it reads: `(deploy/NAME.example, its text)`.
fn templates() -> BTreeMap<String, Vec<(String, String)>> {
    let mut templates: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let dir = root().join("deploy");
    for entry in std::fs::read_dir(&dir).expect("deploy/") {
        let path = entry.expect("a folder entry").path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let unit = read(&path);
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/"));
        let Some(binary) = exec.and_then(|e| e.split_whitespace().next()) else {
            continue;
        };
        for file in unit
            .lines()
            .filter_map(|l| l.strip_prefix("EnvironmentFile="))
        {
            let name = file.trim_start_matches('-').strip_prefix("/etc/fastchat/");
            let name = name
                .unwrap_or_else(|| panic!("{}: {file} is not in /etc/fastchat", path.display()));
            let template = format!("deploy/{}.example", name.replace("%i", "1"));
            let text = read(&root().join(&template));
            templates
                .entry(binary.to_owned())
                .or_default()
                .push((template, text));
        }
    }
    templates
}

/// What the templates of `binary` and the settings it accepts disagree on.
fn disagreements(binary: &str, accepted: &Settings, templates: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut named = BTreeSet::new();
    for (file, text) in templates {
        for (name, value, commented) in settings_in(text) {
            named.insert(name);
            match accepted.get(name) {
                None => found.push(format!("{file}: {name} is not a setting of {binary}")),
                Some(Some(default)) if commented && value != default => found.push(format!(
                    "{file}: #{name}={value}, but its default is {default}"
                )),
                Some(_) => {}
            }
        }
    }
    let files: Vec<&str> = templates.iter().map(|(file, _)| file.as_str()).collect();
    for name in accepted
        .keys()
        .filter(|name| !named.contains(name.as_str()))
    {
        found.push(format!(
            "{binary} accepts {name}, which {files:?} do not name"
        ));
    }
    found
}

#[test]
fn the_templates_name_every_setting_of_the_binaries_and_nothing_else() {
    let templates = templates();
    let binaries: Vec<&str> = templates.keys().map(String::as_str).collect();
    assert_eq!(
        binaries,
        ["fastchat-api", "fastchat-balancer"],
        "the units' binaries"
    );
    for (binary, files) in &templates {
        let accepted = accepted(binary);
        // The help was read: the settings every binary has are there, and defaults.
        for name in ["FASTCHAT_DATABASE_URL", "FASTCHAT_LOG"] {
            assert!(
                accepted.contains_key(name),
                "{binary}: no {name} in {accepted:?}"
            );
        }
        assert!(
            accepted.values().flatten().count() >= 5,
            "{binary}: {accepted:?}"
        );
        let found = disagreements(binary, &accepted, files);
        assert!(
            found.is_empty(),
            "deploy/ and {binary}:\n{}",
            found.join("\n")
        );
    }
    // A template no unit reads would go unchecked.
    let read_by_units: BTreeSet<String> = templates
        .values()
        .flatten()
        .map(|(f, _)| f.clone())
        .collect();
    for entry in std::fs::read_dir(root().join("deploy")).expect("deploy/") {
        let name = entry
            .expect("a folder entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let file = format!("deploy/{name}");
        if name.ends_with(".env.example") {
            assert!(read_by_units.contains(&file), "no unit reads {file}");
        }
    }
}

#[test]
fn a_new_setting_an_unknown_one_and_a_wrong_default_are_caught() {
    let templates = templates();
    let files = &templates["fastchat-api"];
    let mut accepted = accepted("fastchat-api");
    assert_eq!(
        disagreements("fastchat-api", &accepted, files),
        Vec::<String>::new()
    );

    let with = |line: &str| {
        let mut files = files.clone();
        files[0].1.push_str(line);
        disagreements("fastchat-api", &accepted, &files)
    };
    let unknown = with("\n#FASTCHAT_NO_SUCH_SETTING=1\n");
    assert!(
        unknown
            .iter()
            .any(|d| d.contains("FASTCHAT_NO_SUCH_SETTING is not a setting")),
        "{unknown:?}"
    );
    let drifted = with("\n#FASTCHAT_BCRYPT_COST=10\n");
    assert!(
        drifted.iter().any(|d| d.contains("but its default is 12")),
        "{drifted:?}"
    );

    accepted.insert("FASTCHAT_NEW_SETTING".to_owned(), None);
    let missing = disagreements("fastchat-api", &accepted, files);
    assert!(
        missing
            .iter()
            .any(|d| d.contains("accepts FASTCHAT_NEW_SETTING")),
        "{missing:?}"
    );
}

/// Drops the test's database and roles with psql when the test ends, however it ends.
struct DropAfter(Vec<String>);

impl Drop for DropAfter {
    fn drop(&mut self) {
        let mut psql = Command::new("psql");
        psql.arg(format!("{}/postgres", admin_url())).arg("-q");
        for sql in &self.0 {
            psql.arg("-c").arg(sql);
        }
        let _ = psql.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

#[tokio::test]
async fn the_readmes_database_roles_are_enough_and_the_balancer_reads_only_the_registry() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (db, owner, reader) = (
        format!("deploy_{id}"),
        format!("deploy_api_{id}"),
        format!("deploy_balancer_{id}"),
    );
    let _cleanup = DropAfter(vec![
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS {owner}, {reader}"),
    ]);
    // README.md's roles and database, with the test's names (each password its role's).
    let admin = connect(&format!("{}/postgres", admin_url())).await;
    for sql in [
        format!("CREATE ROLE {owner} LOGIN PASSWORD '{owner}'"),
        format!("CREATE ROLE {reader} LOGIN PASSWORD '{reader}'"),
        format!("CREATE DATABASE {db} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let server = admin_url()
        .rsplit_once('@')
        .map_or("", |(_, server)| server);
    let url = |role: &str| format!("postgres://{role}:{role}@{server}/{db}");

    // A server migrates the empty database as its owner, no superuser; then the grant.
    let api = ApiServer::spawn(&url(&owner), &[]).ready();
    let grant = format!("GRANT SELECT ON servers TO {reader}");
    let superuser = connect(&format!("{}/{db}", admin_url())).await;
    superuser
        .batch_execute(&grant)
        .await
        .unwrap_or_else(|e| panic!("{grant}: {e}"));

    // The balancer finds the server in the registry and routes to it.
    let balancer = BalancerProcess::spawn(Some(&url(&reader)), &[]);
    balancer.wait_healthy(&[&api.addr()]).await;
    let through = Api::new(&balancer.url);
    let alice = through.user("alice").await;
    let bob = through.user("bob").await;
    alice.send_opaque_to(&bob).await.assert_status(201);

    // And reads nothing else.
    let as_balancer = connect(&url(&reader)).await;
    for table in ["users", "sessions", "messages"] {
        let refused = as_balancer
            .query_one(&format!("SELECT 1 FROM {table}"), &[])
            .await;
        let code = refused
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_owned()));
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "the balancer's role reads {table}"
        );
    }
}
