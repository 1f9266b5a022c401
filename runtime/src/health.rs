//! What `/healthz` and `/readyz` report: the state of every NATS connection a process's
//! services hold, read from the connections themselves.
//!
//! Each supervised service registers one [`Link`] in the process's [`Health`]. A link is
//! *alive* while its async-nats connection handler runs (a panic inside async-nats ends it
//! for good; see [`crate::supervise`]) and *connected* while that handler is connected to a
//! server. The two probes:
//!
//! - `/healthz` (liveness) is `200` while every link is alive, `503` while any link's
//!   handler is dead and not yet replaced. A NATS outage alone does not fail it: async-nats
//!   reconnects by itself, and restarting the process would not help.
//! - `/readyz` (readiness) is `200` only while every link is alive *and* connected, and
//!   no service of the process is still starting ([`Health::starting`]): the probe is
//!   served from the process's first moments, before a service has bound its listener or
//!   connected, and must not say "ready" then.
//!
//! Both answer `{"status": "ok" | "unavailable", "nats": {"<service>": {"state": …,
//! "handler": "alive" | "dead", "rebuilds": n, "connections": {"main": {"state": …,
//! "reconnects": n}, "intake": {…}}}}}`, and `"starting": true` while a service is still
//! starting. A service's `state` is its least ready connection's; `reconnects` counts the
//! times async-nats reconnected that connection by itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::connection::State;
use async_nats::Client;
use axum::http::StatusCode;
use serde::Serialize;

/// One connection's entry.
#[derive(Debug)]
struct LinkState {
    /// The service name, e.g. `pinnacle-order-worker`.
    name: String,
    /// The current connections by role (`main`, `intake`), to read their state; `None`
    /// before the first connect.
    connections: Mutex<Option<Vec<(&'static str, Client)>>>,
    /// False once the client's connection handler is gone, until a new client is attached.
    alive: AtomicBool,
    /// How many times the connection was rebuilt after its handler died.
    rebuilds: AtomicU64,
}

/// A handle on one connection's entry, held by its supervisor.
#[derive(Debug, Clone)]
pub struct Link(Arc<LinkState>);

impl Link {
    /// Records new connections by role (the first, or rebuilt ones) as alive.
    pub fn attach(&self, connections: impl IntoIterator<Item = (&'static str, Client)>) {
        if let Ok(mut slot) = self.0.connections.lock() {
            if slot.is_some() {
                self.0.rebuilds.fetch_add(1, Ordering::Relaxed);
            }
            *slot = Some(connections.into_iter().collect());
        }
        self.0.alive.store(true, Ordering::Release);
    }

    /// Forgets the client once its service has stopped, so the link does not keep the
    /// connection open (the probes then show it as `pending`).
    pub fn detach(&self) {
        if let Ok(mut slot) = self.0.connections.lock() {
            slot.take();
        }
    }

    /// Records that the current client's connection handler is gone.
    pub fn mark_dead(&self) {
        self.0.alive.store(false, Ordering::Release);
    }

    /// Whether the current client's handler runs.
    pub fn is_alive(&self) -> bool {
        self.0.alive.load(Ordering::Acquire)
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn report(&self) -> LinkReport {
        let clients = self
            .0
            .connections
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
            .unwrap_or_default();
        // Each state read once, so the service's state is one of its connections'.
        let states: Vec<(&'static str, State, &Client)> = clients
            .iter()
            .map(|(role, client)| (*role, client.connection_state(), client))
            .collect();
        let alive = self.is_alive();
        // The least ready connection's state: pending before the first connect.
        let least = states
            .iter()
            .map(|(_, state, _)| state)
            .max_by_key(|state| unreadiness(state))
            .map_or("pending", state_name);
        LinkReport {
            state: if alive { least } else { "dead" },
            handler: if alive { "alive" } else { "dead" },
            rebuilds: self.0.rebuilds.load(Ordering::Relaxed),
            connections: states
                .iter()
                .map(|(role, state, client)| (*role, ConnectionReport::of(state, client)))
                .collect(),
        }
    }
}

/// How far a connection is from ready: connected, then reconnecting, then never connected.
fn unreadiness(state: &State) -> u8 {
    match state {
        State::Connected => 0,
        State::Disconnected => 1,
        State::Pending => 2,
    }
}

/// A connection state as the probes name it.
fn state_name(state: &State) -> &'static str {
    match state {
        State::Connected => "connected",
        State::Disconnected => "disconnected",
        State::Pending => "pending",
    }
}

/// One connection of a service as the probes show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionReport {
    /// `connected`, `disconnected` (async-nats is reconnecting) or `pending`.
    pub state: &'static str,
    /// How many times async-nats reconnected it by itself.
    pub reconnects: u64,
}

impl ConnectionReport {
    /// `client`, last seen in `state`.
    fn of(state: &State, client: &Client) -> Self {
        let connects = client.statistics().connects.load(Ordering::Relaxed);
        Self {
            state: state_name(state),
            reconnects: connects.saturating_sub(1),
        }
    }
}

/// One service as the probes show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LinkReport {
    /// `connected` (every connection is), `disconnected` (async-nats is reconnecting one),
    /// `pending` or `dead`.
    pub state: &'static str,
    /// `alive` or `dead`: whether the connection handlers run.
    pub handler: &'static str,
    /// Rebuilds after a dead handler since the process started.
    pub rebuilds: u64,
    /// Each connection by role (`main`, `intake`).
    pub connections: BTreeMap<&'static str, ConnectionReport>,
}

/// Every NATS connection of the services in one process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    links: Arc<Mutex<Vec<Link>>>,
    /// Services that have not finished starting ([`Starting`] guards alive).
    starting: Arc<AtomicUsize>,
}

/// A service that is still starting: the process is not ready until every one is dropped
/// (once the service listens and has registered its connections).
#[derive(Debug)]
#[must_use = "the process is not ready while this is held"]
pub struct Starting(Arc<AtomicUsize>);

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Health {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a service as starting until the returned guard is dropped: `/readyz` is 503
    /// meanwhile.
    pub fn starting(&self) -> Starting {
        self.starting.fetch_add(1, Ordering::AcqRel);
        Starting(self.starting.clone())
    }

    /// Registers a connection named `name` (not yet connected, alive).
    pub fn link(&self, name: &str) -> Link {
        let link = Link(Arc::new(LinkState {
            name: name.to_string(),
            connections: Mutex::new(None),
            alive: AtomicBool::new(true),
            rebuilds: AtomicU64::new(0),
        }));
        if let Ok(mut links) = self.links.lock() {
            links.push(link.clone());
        }
        link
    }

    fn reports(&self) -> Vec<(String, LinkReport)> {
        self.links
            .lock()
            .map(|links| {
                links
                    .iter()
                    .map(|l| (l.name().to_string(), l.report()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Liveness: `200` unless a connection handler is dead.
    pub fn liveness(&self) -> (StatusCode, serde_json::Value) {
        Self::answer(self.reports(), false, |r| r.handler == "alive")
    }

    /// Readiness: `200` only while no service is starting and every connection is alive
    /// and connected.
    pub fn readiness(&self) -> (StatusCode, serde_json::Value) {
        let starting = self.starting.load(Ordering::Acquire) > 0;
        Self::answer(self.reports(), starting, |r| r.state == "connected")
    }

    fn answer(
        reports: Vec<(String, LinkReport)>,
        starting: bool,
        good: impl Fn(&LinkReport) -> bool,
    ) -> (StatusCode, serde_json::Value) {
        let ok = !starting && reports.iter().all(|(_, r)| good(r));
        let mut nats = serde_json::Map::new();
        for (name, report) in reports {
            nats.insert(name, serde_json::to_value(report).unwrap_or_default());
        }
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "nats": nats,
        });
        if starting {
            body["starting"] = serde_json::Value::Bool(true);
        }
        (status, body)
    }

    /// `GET /healthz` and `GET /readyz` as an axum router, for any listener.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let live = self.clone();
        let ready = self.clone();
        axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(move || {
                    let (status, body) = live.liveness();
                    async move { (status, axum::Json(body)) }
                }),
            )
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let (status, body) = ready.readiness();
                    async move { (status, axum::Json(body)) }
                }),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_handler_fails_both_probes_until_replaced() {
        let health = Health::new();
        let link = health.link("svc");
        // Registered, no client yet: alive but not ready.
        assert_eq!(health.liveness().0, StatusCode::OK);
        assert_eq!(health.readiness().0, StatusCode::SERVICE_UNAVAILABLE);
        link.mark_dead();
        let (status, body) = health.liveness();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["nats"]["svc"]["handler"], "dead");
        assert_eq!(body["nats"]["svc"]["state"], "dead");
        assert_eq!(body["status"], "unavailable");
        assert_eq!(health.readiness().0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn no_connections_is_healthy_and_ready() {
        let health = Health::new();
        assert_eq!(health.liveness().0, StatusCode::OK);
        assert_eq!(health.readiness().1["status"], "ok");
    }

    #[test]
    fn a_starting_service_is_alive_but_not_ready() {
        let health = Health::new();
        let first = health.starting();
        let second = health.starting();
        assert_eq!(health.liveness().0, StatusCode::OK);
        let (status, body) = health.readiness();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["starting"], true);
        drop(first);
        assert_eq!(health.readiness().0, StatusCode::SERVICE_UNAVAILABLE);
        drop(second);
        let (status, body) = health.readiness();
        assert_eq!(status, StatusCode::OK);
        assert!(body.get("starting").is_none(), "{body}");
    }
}
