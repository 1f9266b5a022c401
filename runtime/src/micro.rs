//! Discovery through the NATS micro services protocol (`$SRV.PING`, `$SRV.INFO`,
//! `$SRV.STATS`), so `nats micro ls` and any micro-aware tool can find and watch a service.
//!
//! Pinnacle's services keep their own subscriptions (they need custom reply headers), and
//! use this module to answer the discovery subjects and keep per-endpoint statistics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use crate::shutdown::Shutdown;

/// One endpoint as the protocol describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// Endpoint name, e.g. `place`.
    pub name: String,
    /// Subject (may contain wildcards), e.g. `orders.*.place`.
    pub subject: String,
    /// Queue group its subscription uses.
    pub queue_group: String,
}

#[derive(Debug, Default, Clone, Serialize)]
struct EndpointStats {
    num_requests: u64,
    num_errors: u64,
    last_error: String,
    /// Nanoseconds.
    processing_time: u64,
    /// Nanoseconds.
    average_processing_time: u64,
}

/// A service's identity, endpoints and statistics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {
    /// Name, e.g. `pinnacle-orders`.
    name: String,
    /// Unique per instance.
    id: String,
    /// Semantic version.
    version: String,
    /// For people.
    description: String,
    /// RFC 3339 start time.
    started: String,
    /// Endpoints, in order.
    endpoints: Arc<Vec<Endpoint>>,
    /// Statistics, parallel to `endpoints`.
    stats: Arc<Mutex<Vec<EndpointStats>>>,
}

impl Service {
    /// A service with `endpoints`.
    pub fn new(name: &str, version: &str, description: &str, endpoints: Vec<Endpoint>) -> Self {
        let count = endpoints.len();
        Self {
            name: name.into(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            version: version.into(),
            description: description.into(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            endpoints: Arc::new(endpoints),
            stats: Arc::new(Mutex::new(vec![EndpointStats::default(); count])),
        }
    }

    /// Records one request to endpoint `name`: its duration and, if it failed, the error.
    pub fn record(&self, name: &str, elapsed: Duration, error: Option<&str>) {
        let Some(index) = self.endpoints.iter().position(|e| e.name == name) else {
            return;
        };
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        let s = &mut stats[index];
        s.num_requests += 1;
        s.processing_time = s.processing_time.saturating_add(elapsed.as_nanos() as u64);
        s.average_processing_time = s.processing_time / s.num_requests;
        if let Some(error) = error {
            s.num_errors += 1;
            s.last_error = error.to_string();
        }
    }

    fn identity(&self, kind: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert(
            "type".into(),
            format!("io.nats.micro.v1.{kind}_response").into(),
        );
        m.insert("name".into(), self.name.clone().into());
        m.insert("id".into(), self.id.clone().into());
        m.insert("version".into(), self.version.clone().into());
        m.insert("metadata".into(), serde_json::json!({}));
        m
    }

    fn response(&self, verb: &str) -> serde_json::Value {
        let m = match verb {
            "PING" => self.identity("ping"),
            "INFO" => {
                let mut m = self.identity("info");
                m.insert("description".into(), self.description.clone().into());
                let endpoints: Vec<_> = self
                    .endpoints
                    .iter()
                    .map(|e| serde_json::json!({"name": e.name, "subject": e.subject, "queue_group": e.queue_group, "metadata": {}}))
                    .collect();
                m.insert("endpoints".into(), endpoints.into());
                m
            }
            _ => {
                let mut m = self.identity("stats");
                m.insert("started".into(), self.started.clone().into());
                let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
                let endpoints: Vec<_> = self
                    .endpoints
                    .iter()
                    .zip(stats)
                    .map(|(e, s)| {
                        let mut v = serde_json::to_value(&s).unwrap_or_default();
                        v["name"] = e.name.clone().into();
                        v["subject"] = e.subject.clone().into();
                        v["queue_group"] = e.queue_group.clone().into();
                        v
                    })
                    .collect();
                m.insert("endpoints".into(), endpoints.into());
                m
            }
        };
        serde_json::Value::Object(m)
    }

    /// Answers `$SRV.{PING,INFO,STATS}`, `$SRV.<verb>.<name>` and `$SRV.<verb>.<name>.<id>`
    /// until `shutdown` fires.
    pub async fn serve(
        &self,
        client: async_nats::Client,
        shutdown: Shutdown,
    ) -> Result<tokio::task::JoinHandle<()>, async_nats::SubscribeError> {
        let mut subscriptions = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in [
                format!("$SRV.{verb}"),
                format!("$SRV.{verb}.{}", self.name),
                format!("$SRV.{verb}.{}.{}", self.name, self.id),
            ] {
                subscriptions.push(client.subscribe(subject).await?);
            }
        }
        let mut all = futures::stream::select_all(subscriptions);
        let service = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = all.next() => message,
                };
                let Some(message) = message else { break };
                let verb = message.subject.split('.').nth(1).unwrap_or("PING");
                let body = service.response(verb);
                if let (Some(reply), Ok(payload)) = (message.reply, serde_json::to_vec(&body)) {
                    let _ = client.publish(reply, payload.into()).await;
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_accumulate_per_endpoint() {
        let service = Service::new(
            "svc",
            "1.0.0",
            "test",
            vec![Endpoint {
                name: "place".into(),
                subject: "orders.*.place".into(),
                queue_group: "q".into(),
            }],
        );
        service.record("place", Duration::from_micros(100), None);
        service.record("place", Duration::from_micros(300), Some("BAD_PAYLOAD"));
        service.record("nope", Duration::from_micros(1), None);
        let stats = service.response("STATS");
        assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
        assert_eq!(stats["endpoints"][0]["num_requests"], 2);
        assert_eq!(stats["endpoints"][0]["num_errors"], 1);
        assert_eq!(stats["endpoints"][0]["average_processing_time"], 200_000);
        assert_eq!(
            service.response("INFO")["endpoints"][0]["subject"],
            "orders.*.place"
        );
        assert_eq!(service.response("PING")["name"], "svc");
    }
}
