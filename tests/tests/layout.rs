//! The shape of the code: the api's modules form layers, each importing only from those
//! below it (as `api/src/lib.rs` describes them), the lower layers know nothing of HTTP,
//! and no crate of the workspace has an import cycle between its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fastchat_tests::root;

/// Module path (`store::messages`) → the module paths it names with `crate::`.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module of the crate whose sources are in `src`, with the modules it imports.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .filter_map(|file| {
            let name = module_name(src, file)?;
            let text = std::fs::read_to_string(file).expect("a readable source file");
            Some((name, strip_comments(&text)))
        })
        .collect();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, text)| {
            let imports = crate_paths(text)
                .into_iter()
                .filter_map(|path| longest_module(&path, &known))
                .filter(|target| target != name)
                .collect();
            (name.clone(), imports)
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `store/messages.rs` → `store::messages`; `store/mod.rs` → `store`; the crate roots
/// (lib.rs, main.rs) and binaries declare modules rather than import them: `None`.
fn module_name(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [] => None,
        [only] if only == "lib" || only == "main" => None,
        _ => Some(parts.join("::")),
    }
}

/// The text without `//` and `/* */` comments and without string literals, so that
/// neither prose nor strings count as imports.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every path that starts with `crate::`, with `use` groups expanded:
/// `crate::store::{self, inbox::Delivery}` → `store`, `store::inbox::Delivery`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let tree = use_tree(rest);
        expand("", tree, &mut paths);
    }
    paths
}

/// The use tree at the start of `text`: a path, possibly ending in a `{...}` group.
fn use_tree(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return &text[..i],
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..=i];
                }
            }
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => {
                return &text[..i];
            }
            _ => {}
        }
    }
    text
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let (head, group) = match tree.find('{') {
        Some(open) => (&tree[..open], Some(&tree[open + 1..tree.len() - 1])),
        None => (tree, None),
    };
    let head = head.trim().trim_end_matches("::");
    let joined = match (prefix.is_empty(), head.is_empty()) {
        (_, true) => prefix.to_owned(),
        (true, false) => head.to_owned(),
        (false, false) => format!("{prefix}::{head}"),
    };
    let Some(group) = group else {
        out.push(joined);
        return;
    };
    for item in split_top_level(group) {
        let item = item.split(" as ").next().unwrap_or("").trim();
        match item {
            "" | "*" => out.push(joined.clone()),
            "self" => out.push(joined.clone()),
            _ => expand(&joined, item, out),
        }
    }
}

fn split_top_level(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The module a path names: its longest prefix that is a module.
fn longest_module(path: &str, known: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| known.contains(candidate))
}

/// One import cycle, if the graph has any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            Some(false) => return None,
            None => {}
        }
        state.insert(node.to_owned(), true);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.to_owned(), false);
        None
    }
    let mut state = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut state, &mut Vec::new()))
}

/// The api's layers, bottom first, as `api/src/lib.rs` lists them.
const API_LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "batch",
            "config",
            "db",
            "error",
            "ids",
            "metrics",
            "notification",
            "schema",
            "telemetry",
            "wakeups",
        ],
    ),
    ("store", &["store"]),
    ("live", &["live"]),
    ("state", &["state"]),
    ("handlers", &["handlers"]),
    ("wiring", &["routes", "startup"]),
];

fn api_layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or(module);
    API_LAYERS
        .iter()
        .position(|(_, members)| members.contains(&top))
        .unwrap_or_else(|| panic!("api module {module} belongs to no layer: add it to API_LAYERS and to api/src/lib.rs"))
}

#[test]
fn every_api_module_imports_only_from_its_own_layer_and_those_below() {
    let graph = module_graph(&root().join("api/src"));
    assert!(
        graph.contains_key("store::messages"),
        "the api's modules were read"
    );
    let mut upward = Vec::new();
    for (module, imports) in &graph {
        for import in imports {
            let (from, to) = (api_layer(module), api_layer(import));
            if to > from {
                upward.push(format!(
                    "{module} ({}) imports {import} ({})",
                    API_LAYERS[from].0, API_LAYERS[to].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_store_and_the_foundation_know_nothing_of_http_or_the_app_state() {
    let src = root().join("api/src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    let mut offenders = Vec::new();
    for file in files {
        let Some(module) = module_name(&src, &file) else {
            continue;
        };
        if api_layer(&module) > 1 {
            continue;
        }
        let text = strip_comments(&std::fs::read_to_string(&file).expect("readable"));
        for word in ["actix", "AppState", "HttpRequest", "HttpResponse"] {
            if text.contains(word) {
                offenders.push(format!("{module} mentions {word}"));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn no_crate_in_the_workspace_has_an_import_cycle() {
    for krate in ["api", "cli", "protocol", "balancer", "bench", "tests"] {
        let graph = module_graph(&root().join(krate).join("src"));
        assert!(!graph.is_empty() || krate == "tests", "{krate} has modules");
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{krate}: modules import each other in a cycle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_import_reader_expands_groups_and_finds_cycles() {
    let text = strip_comments(
        "use crate::store::{self, inbox::{Delivery, deliver}, users as u};\n\
         // use crate::routes;\n\
         let x = crate::db::run(\"crate::startup\");\n",
    );
    let paths = crate_paths(&text);
    assert_eq!(
        paths,
        [
            "store",
            "store::inbox::Delivery",
            "store::inbox::deliver",
            "store::users",
            "db::run"
        ]
    );
    let graph: Graph = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), ["c".to_owned()].into()),
        ("c".to_owned(), ["a".to_owned()].into()),
    ]
    .into();
    assert_eq!(find_cycle(&graph).map(|c| c.len()), Some(4));
    let acyclic: Graph = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), BTreeSet::new()),
    ]
    .into();
    assert!(find_cycle(&acyclic).is_none());
}
