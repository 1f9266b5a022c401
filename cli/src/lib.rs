//! The `pinnacle` command's library: what `main.rs` dispatches to, and what the
//! end-to-end tests reuse so they exercise the exact code `pinnacle dev` runs.
//!
//! # Layout
//! - [`command`]: the command line (verbs, flags, help) and `run`, which `main.rs` calls.
//! - [`nats_server`]: finding and running a local `nats-server` (2.10+) on a free port.
//! - [`stack`]: wiring the publisher, order worker and user API to NATS and a database.
//! - [`dev`]: `pinnacle dev`, the embedded default on one machine.
//! - [`dev_sim`]: `pinnacle dev --smartapi-sim`: the in-process SmartAPI simulator and the
//!   settings and demo account that point the stack at it.
//! - [`client`]: `ticks`, and the env-file settings every client verb reads.
//! - [`output`]: standard output that ends quietly when the reader goes away.
//! - [`table`]: results as tables for people (trader and operator verbs).
//! - [`progress`]: progress lines for long operations (key rotation, audit verify).
//! - [`trader`]: the trader's verbs: `order …`, `portfolio …`, `md …`, tables or `--json`.
//! - [`bench`](mod@bench): `pinnacle bench orders` and `pinnacle bench ticks`, each measured beside
//!   raw NATS baselines in the same run (the end-to-end tests run both at a small size).
//! - [`keys`]: master-key management: `keys add`, `status`, `rotate`, `retire`.
//! - [`audit`]: `audit tail` (live, per user) and `audit verify` (chains, checkpoints,
//!   orders without audit events).
//! - [`nats_admin`]: `nats passwd`, `nats add-trader`, `nats streams apply`: operating the
//!   cluster without the `nats` CLI.
//! - [`api`]: the operator verbs' user-API client (URL, token, one-line errors).
//! - [`admin`]: `users …`, `tokens …`, `accounts …` over the user API.
//! - [`risk`]: `risk show|set|clear` and `kill-switch on|off`, over the user API (audited).
//! - [`smartapi`]: offline SmartAPI tools: `smartapi decode HEX` (one feed tick to JSON).

pub mod admin;
pub mod api;
pub mod audit;
pub mod bench;
pub mod client;
pub mod command;
pub mod dev;
pub mod dev_sim;
pub mod keys;
pub mod nats_admin;
pub mod nats_server;
pub mod output;
pub mod progress;
pub mod risk;
pub mod smartapi;
pub mod stack;
pub mod table;
pub mod trader;
