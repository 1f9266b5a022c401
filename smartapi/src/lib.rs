//! A client for Angel One's SmartAPI, written to `shared/smartapi/SPEC.md`.
//!
//! # Layout
//! (Modules are listed here as they land.)
