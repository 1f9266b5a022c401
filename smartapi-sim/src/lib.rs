//! A local simulator of Angel One SmartAPI, faithful to `shared/smartapi/SPEC.md`.
