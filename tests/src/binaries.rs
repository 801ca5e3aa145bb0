//! The workspace and the binaries built from it, which the tests run as real processes.
//!
//! `cargo test` builds the tests, not the binaries they start, so a binary left over
//! from before an edit would quietly test old code. [`bin`] refuses one that is older
//! than any source it is built from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// What each binary is built from, relative to the workspace root: folders (their `.rs`
/// and `.sql` files, however deep) and single files. Not `Cargo.lock`: it changes for
/// one crate's dependencies and cargo then relinks only the binaries that use them.
const SOURCES: &[(&str, &[&str])] = &[
    (
        "fastchat-api",
        &["api/src", "api/build.rs", "protocol/src", "migrations"],
    ),
    ("fastchat", &["cli/src", "protocol/src"]),
    ("fastchat-balancer", &["balancer/src", "protocol/src"]),
];

/// A binary built from this workspace, next to the test executable's `deps` folder.
/// Fails the test when it is missing or older than one of its sources; checked once per
/// binary per test process.
pub fn bin(name: &str) -> PathBuf {
    static CHECKED: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let verdict = CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name.to_owned())
        .or_insert_with(|| check(name))
        .clone();
    verdict.unwrap_or_else(|refusal| panic!("{refusal}"))
}

/// The binary's path, or why it must not be run.
fn check(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the test executable's path: {e}"))?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("test executables live in target/<profile>/deps")?;
    let path = dir.join(name);
    let root = root();
    let shown = path
        .strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string();
    let rebuild = "run cargo build --workspace --bins (scripts/test does)";
    let built = modified(&path).ok_or_else(|| format!("{shown} is missing: {rebuild}"))?;
    let sources = SOURCES
        .iter()
        .find(|(binary, _)| *binary == name)
        .map(|(_, sources)| *sources)
        .ok_or_else(|| format!("the test kit does not know what {name} is built from"))?;
    match newest_source(&root, sources) {
        Some((source, changed)) if changed > built => {
            let source = source.strip_prefix(&root).unwrap_or(&source);
            Err(format!(
                "{shown} is older than {}: {rebuild}",
                source.display()
            ))
        }
        _ => Ok(path),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The most recently modified of `sources` (under `root`), and when. A folder counts
/// through its `.rs` and `.sql` files, so an editor's scratch file does not.
fn newest_source(root: &Path, sources: &[&str]) -> Option<(PathBuf, SystemTime)> {
    fn visit(path: PathBuf, top: bool, newest: &mut Option<(PathBuf, SystemTime)>) {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).into_iter().flatten().flatten();
            for entry in entries {
                visit(entry.path(), false, newest);
            }
            return;
        }
        let is_source = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("rs" | "sql")
        );
        if !(top || is_source) {
            return;
        }
        if let Some(changed) = modified(&path) {
            if newest.as_ref().is_none_or(|(_, t)| changed > *t) {
                *newest = Some((path, changed));
            }
        }
    }
    let mut newest = None;
    for source in sources {
        visit(root.join(source), true, &mut newest);
    }
    newest
}

/// Runs `script` with scripts/lib.sh sourced and `$1`, `$2`.. set to `args`; its stdout.
pub fn lib_sh(script: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(r#"source "$0" && {script}"#))
        .arg(root().join("scripts/lib.sh"))
        .args(args)
        .env("FASTCHAT_PG_FSYNC", "off")
        .output()
        .expect("running scripts/lib.sh");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_newest_rust_or_sql_file_counts_and_other_files_do_not() {
        let dir = std::env::temp_dir().join(format!("fastchat-sources-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("crate/src/deep")).expect("folders");
        let start = SystemTime::now() - Duration::from_secs(3600);
        let files = [
            ("crate/src/lib.rs", 1),
            ("crate/src/deep/module.rs", 3),
            ("crate/src/notes.txt", 9),
            ("crate/src/lib.rs.orig", 9),
            ("Cargo.lock", 2),
        ];
        for (file, minutes) in files {
            File::create(dir.join(file))
                .and_then(|f| f.set_modified(start + Duration::from_secs(60 * minutes)))
                .expect("a file with a known time");
        }
        let (newest, _) =
            newest_source(&dir, &["crate/src", "Cargo.lock", "missing/src"]).expect("some source");
        assert_eq!(newest, dir.join("crate/src/deep/module.rs"));
        let (newest, _) = newest_source(&dir, &["Cargo.lock"]).expect("the lock");
        assert_eq!(
            newest,
            dir.join("Cargo.lock"),
            "a named file counts as it is"
        );
        std::fs::remove_dir_all(&dir).expect("cleaning up");
    }

    /// Every workspace crate a binary's crate depends on is among the binary's sources,
    /// so adding such a dependency cannot leave the table behind.
    #[test]
    fn each_binary_lists_the_workspace_crates_it_depends_on() {
        for (binary, crate_dir) in [
            ("fastchat-api", "api"),
            ("fastchat", "cli"),
            ("fastchat-balancer", "balancer"),
        ] {
            let (_, sources) = SOURCES.iter().find(|(b, _)| *b == binary).expect("listed");
            let manifest = std::fs::read_to_string(root().join(crate_dir).join("Cargo.toml"))
                .expect("the crate's manifest");
            let mut in_dependencies = false;
            for line in manifest.lines().map(str::trim) {
                if line.starts_with('[') {
                    in_dependencies = line == "[dependencies]";
                } else if let Some(dependency) =
                    line.strip_prefix("fastchat-").filter(|_| in_dependencies)
                {
                    let dir = dependency
                        .split(['.', ' ', '='])
                        .next()
                        .expect("a crate name");
                    let src = format!("{dir}/src");
                    assert!(
                        sources.contains(&src.as_str()),
                        "{binary} depends on fastchat-{dir}: add {src} to its sources"
                    );
                }
            }
            let own = format!("{crate_dir}/src");
            assert!(sources.contains(&own.as_str()), "{binary}: {own}");
        }
    }
}
