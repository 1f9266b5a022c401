//! No import circles between the crate's files: a file may use a file that does not use
//! it back, directly or through others. Paths are read from the source (`crate::`,
//! `super::`, `self::`, and a `mod.rs`'s own children), comments and `mod tests { … }`
//! blocks left out; a path names the deepest file its leading segments reach.

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

#[test]
fn no_file_of_the_crate_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    modules(&root, &Vec::new(), &mut files);
    assert!(files.len() > 20, "found the crate's files");
    let edges = edges(&files);
    for start in files.keys() {
        let mut trail = vec![start.clone()];
        let cycle = cycle_from(&edges, start, start, &mut trail, &mut BTreeSet::new());
        let cycle: Option<Vec<String>> = cycle.map(|c| {
            c.iter()
                .map(|m| format!("crate::{}", m.join("::")))
                .collect()
        });
        assert_eq!(cycle, None, "an import circle");
    }
}
