//! No import circles between the files of any crate of the workspace (issue 16, items 1
//! and 5): a file may use a file that does not use it back, directly or through others.
//! Paths are read from the source (`crate::`, `super::`, `self::`, and a `mod.rs`'s own
//! children), comments and `mod tests { … }` blocks left out; a path names the deepest
//! file its leading segments reach. It runs over the crates in [`CRATES`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

fn modules(dir: &Path, prefix: &Module, found: &mut BTreeMap<Module, String>) {
    let entries = std::fs::read_dir(dir).expect("source directory is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_dir() {
            let mut inner = prefix.clone();
            inner.push(name);
            modules(&path, &inner, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module = prefix.clone();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            found.insert(module, code_of(&text));
        }
    }
}

/// The text without comments and without an inline `mod tests { … }` block.
fn code_of(text: &str) -> String {
    let code: Vec<&str> = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect();
    let code = code.join("\n");
    match code.find("#[cfg(test)]\nmod tests {") {
        Some(at) => code[..at].to_string(),
        None => code,
    }
}

/// The paths after `root::` in `code`, each as its segments (a `{a, b::c}` group gives
/// one path per item).
fn paths_after(code: &str, root: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let needle = format!("{root}::");
    for (at, _) in code.match_indices(&needle) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + needle.len()..];
        let mut segments = Vec::new();
        let mut chars = rest;
        loop {
            if let Some(group) = chars.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let item: Vec<String> = item
                        .trim()
                        .split("::")
                        .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
                        .filter(|s| !s.is_empty() && s != "self")
                        .collect();
                    let mut path = segments.clone();
                    path.extend(item);
                    out.push(path);
                }
                break;
            }
            let len = chars
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(chars.len());
            if len == 0 {
                break;
            }
            segments.push(chars[..len].to_string());
            chars = &chars[len..];
            match chars.strip_prefix("::") {
                Some(next) => chars = next,
                None => {
                    out.push(segments.clone());
                    break;
                }
            }
        }
    }
    out
}

/// The deepest file `path` (absolute) reaches, if another than `from`.
fn file_of(files: &BTreeMap<Module, String>, path: &[String]) -> Option<Module> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| files.contains_key(m))
}

fn edges(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges = BTreeMap::new();
    for (me, code) in files {
        let mut uses = BTreeSet::new();
        let parent = me[..me.len().saturating_sub(1)].to_vec();
        let mut absolute = Vec::new();
        for path in paths_after(code, "crate") {
            absolute.push(path);
        }
        for (root, base) in [("super", &parent), ("self", me)] {
            for path in paths_after(code, root) {
                absolute.push(base.iter().cloned().chain(path).collect());
            }
        }
        // A `mod.rs`'s relative `use child::…`.
        for line in code.lines() {
            let line = line.trim_start().trim_start_matches("pub(crate) ");
            let line = line.trim_start_matches("pub ");
            if let Some(rest) = line.strip_prefix("use ") {
                let child = rest.split("::").next().unwrap_or_default().to_string();
                let mut path = me.clone();
                path.push(child);
                if files.contains_key(&path) {
                    absolute.push(path);
                }
            }
        }
        for path in absolute {
            if let Some(file) = file_of(files, &path) {
                if &file != me {
                    uses.insert(file);
                }
            }
        }
        edges.insert(me.clone(), uses);
    }
    edges
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    edges: &BTreeMap<Module, BTreeSet<Module>>,
    start: &Module,
    at: &Module,
    trail: &mut Vec<Module>,
    seen: &mut BTreeSet<Module>,
) -> Option<Vec<Module>> {
    for next in edges.get(at).into_iter().flatten() {
        if next == start {
            let mut cycle = trail.clone();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if seen.insert(next.clone()) {
            trail.push(next.clone());
            if let Some(cycle) = cycle_from(edges, start, next, trail, seen) {
                return Some(cycle);
            }
            trail.pop();
        }
    }
    None
}

/// The crates checked (folders under the workspace root): every library and service of
/// the workspace, each with the fewest files it has, so that a wrong folder cannot pass by
/// reading nothing.
const CRATES: &[(&str, usize)] = &[
    ("protocol", 8),
    ("metrics", 2),
    ("vault", 2),
    ("store", 10),
    ("runtime", 20),
    ("audit", 20),
    ("common", 8),
    ("smartapi", 10),
    ("smartapi-sim", 10),
    ("order-worker", 20),
    ("user-api", 10),
    ("publisher", 10),
    ("cli", 20),
    ("migrations", 5),
];

/// The import circles among the files under `<crate>/src`, each as
/// `<crate>: crate::a -> crate::b -> … -> crate::a` (one per set of files).
fn cycles(dir: &str, at_least: usize) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join("src");
    let mut files = BTreeMap::new();
    modules(&root, &Vec::new(), &mut files);
    assert!(
        files.len() >= at_least,
        "{dir}: found {} files",
        files.len()
    );
    let edges = edges(&files);
    let mut seen: BTreeSet<BTreeSet<Module>> = BTreeSet::new();
    let mut found = Vec::new();
    for start in files.keys() {
        let mut trail = vec![start.clone()];
        let Some(cycle) = cycle_from(&edges, start, start, &mut trail, &mut BTreeSet::new()) else {
            continue;
        };
        if seen.insert(cycle.iter().cloned().collect()) {
            let names: Vec<String> = cycle
                .iter()
                .map(|m| format!("crate::{}", m.join("::")))
                .collect();
            found.push(format!("{dir}: {}", names.join(" -> ")));
        }
    }
    found
}

#[test]
fn no_file_of_any_crate_imports_one_that_imports_it_back() {
    let found: Vec<String> = CRATES
        .iter()
        .flat_map(|(dir, at_least)| cycles(dir, *at_least))
        .collect();
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_circle() {
    // Two files that use each other, and a third that only uses one of them.
    let mut files = BTreeMap::new();
    files.insert(vec!["a".to_string()], "use crate::b::B;".to_string());
    files.insert(vec!["b".to_string()], "use super::a::A;".to_string());
    files.insert(vec!["c".to_string()], "use crate::a::A;".to_string());
    let edges = edges(&files);
    let a = vec!["a".to_string()];
    let cycle = cycle_from(&edges, &a, &a, &mut vec![a.clone()], &mut BTreeSet::new());
    assert_eq!(cycle.map(|c| c.len()), Some(3), "a -> b -> a");
    let c = vec!["c".to_string()];
    let none = cycle_from(&edges, &c, &c, &mut vec![c.clone()], &mut BTreeSet::new());
    assert_eq!(none, None);
}
