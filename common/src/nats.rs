//! Connecting to NATS with explicit credentials and deliberately sized buffers.

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
    let service = name.to_string();
    options
        .name(name)
        .subscription_capacity(settings.subscription_capacity)
        .event_callback(move |event| {
            let service = service.clone();
            async move {
                match event {
                    Event::Connected => tracing::info!(%service, "connected to NATS"),
                    Event::Disconnected => tracing::warn!(%service, "disconnected from NATS"),
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
