//! Connecting to NATS with explicit credentials and deliberately sized buffers; each
//! connection counts its reconnects in `pinnacle_nats_reconnects_total{service}`.

use async_nats::{Client, ConnectOptions, Event};
use secrecy::ExposeSecret;

use crate::config::NatsSettings;

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
#[error("could not connect to NATS at {url}: {reason}")]
pub struct ConnectError {
    /// The server URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// Connects as `name` (shown in the server's connection list).
///
/// async-nats ignores `user:pass@` in URLs, so credentials go through `ConnectOptions`.
pub async fn connect(settings: &NatsSettings, name: &str) -> Result<Client, ConnectError> {
    let fail = |reason: String| ConnectError {
        url: settings.url.clone(),
        reason,
    };
    let mut options = if let Some(path) = &settings.creds_file {
        ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| fail(e.to_string()))?
    } else {
        ConnectOptions::new()
    };
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.expose_secret().to_string());
    }
    if let Some(prefix) = &settings.inbox_prefix {
        options = options.custom_inbox_prefix(prefix.clone());
    }
    let service = name.to_string();
    // The series exists (at 0) from the start; counted when a lost connection comes back.
    let reconnects = crate::metrics::metrics()
        .nats_reconnects
        .with_label_values(&[name]);
    let disconnected = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    options
        .name(name)
        .subscription_capacity(settings.subscription_capacity)
        .event_callback(move |event| {
            let service = service.clone();
            let reconnects = reconnects.clone();
            let disconnected = disconnected.clone();
            async move {
                use std::sync::atomic::Ordering;
                match event {
                    Event::Connected => {
                        if disconnected.swap(false, Ordering::Relaxed) {
                            reconnects.inc();
                        }
                        tracing::info!(%service, "connected to NATS")
                    }
                    Event::Disconnected => {
                        disconnected.store(true, Ordering::Relaxed);
                        tracing::warn!(%service, "disconnected from NATS")
                    }
                    Event::SlowConsumer(sid) => {
                        tracing::warn!(%service, sid, "slow consumer: messages dropped")
                    }
                    other => tracing::info!(%service, event = %other, "NATS event"),
                }
            }
        })
        .connect(settings.url.as_str())
        .await
        .map_err(|e| fail(e.to_string()))
}
