//! The crate layers: a lower crate never depends on a higher one, and the crates a client
//! links (the protocol, the SmartAPI client) pull in no database, HTTP server or vault.
//!
//! The order (documented in `docs/ARCHITECTURE.md`, "Crates and layers"), lowest first:
//!
//! | layer | crates |
//! |---|---|
//! | 0 wire | `pinnacle-protocol` |
//! | 1 foundations | `pinnacle-metrics`, `pinnacle-vault`, `pinnacle-store` |
//! | 2 runtime | `pinnacle-runtime`, `pinnacle-migrations` |
//! | 3 audit | `pinnacle-audit` |
//! | 4 shared | `pinnacle-common` |
//! | 5 brokers | `pinnacle-smartapi`, `pinnacle-smartapi-sim` |
//! | 6 services | `pinnacle-publisher`, `pinnacle-order-worker`, `pinnacle-user-api` |
//! | 7 binary | `pinnacle-cli` |
//! | 8 tests | `pinnacle-tests` |
//!
//! A normal or build dependency on another workspace crate must point to a strictly lower
//! layer; a dev-dependency (tests only) may also point sideways, never up. A workspace
//! crate missing from the table fails the test, so a new crate gets a layer on purpose.
//! The facts come from Cargo itself: `cargo metadata --no-deps` for the declared
//! dependencies and `cargo tree` for what a crate really links.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Every workspace crate and its layer (lower numbers lower in the stack).
const LAYERS: &[(&str, u8)] = &[
    ("pinnacle-protocol", 0),
    ("pinnacle-metrics", 1),
    ("pinnacle-vault", 1),
    ("pinnacle-store", 1),
    ("pinnacle-runtime", 2),
    ("pinnacle-migrations", 2),
    ("pinnacle-audit", 3),
    ("pinnacle-common", 4),
    ("pinnacle-smartapi", 5),
    ("pinnacle-smartapi-sim", 5),
    ("pinnacle-publisher", 6),
    ("pinnacle-order-worker", 6),
    ("pinnacle-user-api", 6),
    ("pinnacle-cli", 7),
    ("pinnacle-tests", 8),
];

/// Crates (name prefixes) that each low crate must not link, even indirectly.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "pinnacle-protocol",
        &[
            "sea-orm",
            "sqlx",
            "axum",
            "hyper",
            "tower",
            "aes-gcm",
            "pinnacle-",
        ],
    ),
    (
        "pinnacle-metrics",
        &[
            "sea-orm",
            "sqlx",
            "axum",
            "hyper",
            "tower",
            "pinnacle-common",
        ],
    ),
    (
        "pinnacle-vault",
        &[
            "sea-orm",
            "sqlx",
            "axum",
            "hyper",
            "tower",
            "async-nats",
            "pinnacle-",
        ],
    ),
    (
        "pinnacle-store",
        &[
            "axum",
            "hyper",
            "tower",
            "async-nats",
            "aes-gcm",
            "pinnacle-",
        ],
    ),
    (
        "pinnacle-runtime",
        &[
            "sea-orm",
            "sqlx",
            "pinnacle-store",
            "pinnacle-audit",
            "pinnacle-common",
        ],
    ),
    (
        "pinnacle-smartapi",
        &[
            "sea-orm",
            "sqlx",
            "axum",
            "aes-gcm",
            "pinnacle-common",
            "pinnacle-vault",
        ],
    ),
];

/// The workspace's root directory (this crate is `<root>/tests`).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("tests/ has a parent")
}

/// Runs cargo (the one running this test) in the workspace root and returns its stdout.
fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo prints UTF-8")
}

fn layer(name: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(crate_, _)| *crate_ == name)
        .map(|(_, l)| *l)
}

/// The dependency edges between workspace crates: (from, to, kind), kind `normal`,
/// `dev` or `build`.
fn workspace_edges(metadata: &Value) -> Vec<(String, String, String)> {
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut edges = Vec::new();
    for package in packages {
        let from = package["name"].as_str().expect("a name");
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let to = dep["name"].as_str().expect("a dependency name");
            if members.contains(to) {
                let kind = dep["kind"].as_str().unwrap_or("normal").to_string();
                edges.push((from.to_string(), to.to_string(), kind));
            }
        }
    }
    edges
}

/// The layering violations among `edges` (empty when the layers hold).
fn violations(members: &[&str], edges: &[(String, String, String)]) -> Vec<String> {
    let mut found: Vec<String> = members
        .iter()
        .filter(|name| layer(name).is_none())
        .map(|name| format!("{name} has no layer in tests/layers.rs"))
        .collect();
    for (from, to, kind) in edges {
        let (Some(lower), Some(upper)) = (layer(to), layer(from)) else {
            continue;
        };
        let allowed = if kind == "dev" {
            lower <= upper
        } else {
            lower < upper
        };
        if !allowed {
            found.push(format!(
                "{from} (layer {upper}) has a {kind} dependency on {to} (layer {lower})"
            ));
        }
    }
    found
}

#[test]
fn no_crate_depends_on_a_higher_layer() {
    let text = cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]);
    let metadata: Value = serde_json::from_str(&text).expect("cargo metadata is JSON");
    let members: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(members.contains(&"pinnacle-protocol"), "{members:?}");
    let edges = workspace_edges(&metadata);
    assert!(!edges.is_empty(), "no workspace edges found: {text:.200}");
    let found = violations(&members, &edges);
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

/// The crates `package` links on this host (normal and build dependencies, with the
/// features a build of `package` alone enables).
fn linked(package: &str) -> BTreeSet<String> {
    let text = cargo(&[
        "tree",
        "--offline",
        "-p",
        package,
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "-f",
        "{p}",
    ]);
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_string)
        .collect()
}

#[test]
fn client_crates_link_no_database_server_or_vault() {
    let mut found = Vec::new();
    for (package, forbidden) in FORBIDDEN {
        let linked = linked(package);
        assert!(linked.contains("serde"), "{package} links: {linked:?}");
        for name in &linked {
            if forbidden.iter().any(|prefix| name.starts_with(prefix)) {
                found.push(format!("{package} links {name}"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_upward_edge() {
    // A deliberately broken graph: the check must name the edge, not pass it.
    let edges = vec![(
        "pinnacle-protocol".to_string(),
        "pinnacle-common".to_string(),
        "normal".to_string(),
    )];
    let found = violations(&["pinnacle-protocol", "pinnacle-common"], &edges);
    assert_eq!(found.len(), 1, "{found:?}");
    let sideways = vec![(
        "pinnacle-publisher".to_string(),
        "pinnacle-order-worker".to_string(),
        "normal".to_string(),
    )];
    assert_eq!(violations(&[], &sideways).len(), 1);
    // The split crates: the store may not use the runtime (nor the runtime the store:
    // FORBIDDEN says so), the runtime not the audit crate, the audit crate not common.
    for (from, to) in [
        ("pinnacle-store", "pinnacle-runtime"),
        ("pinnacle-runtime", "pinnacle-audit"),
        ("pinnacle-audit", "pinnacle-common"),
    ] {
        let edge = vec![(from.to_string(), to.to_string(), "normal".to_string())];
        assert_eq!(violations(&[], &edge).len(), 1, "{from} -> {to}");
    }
    let new_crate = violations(&["pinnacle-vault-new"], &[]);
    assert_eq!(new_crate.len(), 1, "{new_crate:?}");
}
