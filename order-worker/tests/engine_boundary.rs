//! The engine stays transport-free: no file under `src/engine/` names the NATS client or
//! the NATS shell (`handler`, `service`, `worker`, `events`, `matcher`), outside comments.

use std::path::{Path, PathBuf};

/// Names the engine must not use.
const FORBIDDEN: &[&str] = &[
    "async_nats",
    "crate::handler",
    "crate::service",
    "crate::worker",
    "crate::events",
    "crate::matcher",
    "crate::angel",
    "crate::paper",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("engine directory is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_engine_imports_no_transport_and_no_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 5, "found the engine's files");
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for name in FORBIDDEN {
                if code.contains(name) {
                    offences.push(format!("{}:{}: {name}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "the engine names the transport: {offences:#?}"
    );
}
