//! The Python client (`clients/python`) keeps its own copy of the protocol's error codes
//! and of which of them may be resent as they are (`RETRYABLE`); this checks both copies
//! against `pinnacle_common::error::ErrorCode`, so a code added or made retryable in Rust
//! cannot be missed in Python. No server needed.

use std::collections::BTreeSet;

use pinnacle_common::error::ErrorCode;

fn errors_py() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../clients/python/src/pinnacle_client/errors.py"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The lines after the one starting with `start`, up to the next unindented line.
fn block<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|line| !line.starts_with(start))
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .collect()
}

#[test]
fn python_error_codes_are_the_protocols() {
    let text = errors_py();
    let python: BTreeSet<String> = block(&text, "class ErrorCode")
        .into_iter()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(" = ")?;
            Some((name.to_string(), value.trim_matches('"').to_string()))
        })
        .map(|(name, value)| {
            assert_eq!(
                name, value,
                "ErrorCode.{name} is spelled {value:?} on the wire"
            );
            name
        })
        .collect();
    let rust: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|code| code.as_str().to_string())
        .collect();
    assert_eq!(
        python, rust,
        "clients/python ErrorCode differs from the protocol's"
    );
}

#[test]
fn python_retryable_codes_are_the_protocols() {
    let text = errors_py();
    let python: BTreeSet<String> = block(&text, "RETRYABLE")
        .into_iter()
        .filter_map(|line| line.trim().strip_prefix("ErrorCode."))
        .map(|name| name.trim_end_matches(',').to_string())
        .collect();
    let rust: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .filter(|code| code.is_retryable())
        .map(|code| code.as_str().to_string())
        .collect();
    assert!(!rust.is_empty());
    assert_eq!(
        python, rust,
        "clients/python RETRYABLE differs from ErrorCode::is_retryable"
    );
}
