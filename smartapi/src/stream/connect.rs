//! Opening the feed's WebSocket: the handshake headers (secrets marked sensitive), the
//! size limits, the connect timeout, and telling a refused login from other failures.

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio::time;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::config::StreamConfig;

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Handshake header names (SPEC §8.1 a).
mod header {
    pub const AUTHORIZATION: &str = "authorization";
    pub const API_KEY: &str = "x-api-key";
    pub const CLIENT_CODE: &str = "x-client-code";
    pub const FEED_TOKEN: &str = "x-feed-token";
    /// On a 401, the server's reason.
    pub const ERROR_MESSAGE: &str = "x-error-message";
}

/// Why a connection attempt failed.
pub(super) enum ConnectError {
    /// 401/403: retrying with the same credentials cannot help.
    Auth { status: u16, message: String },
    /// Anything else; retried with backoff. Never contains a secret.
    Other(String),
}

/// Opens the WebSocket with the handshake headers.
pub(super) async fn connect(config: &StreamConfig) -> Result<Ws, ConnectError> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Other(format!("bad feed URL: {e}")))?;
    let headers = request.headers_mut();
    let plain = HeaderValue::from_str(&config.client_code)
        .map_err(|_| ConnectError::Other("client code is not a valid header value".to_owned()))?;
    headers.insert(HeaderName::from_static(header::CLIENT_CODE), plain);
    let secrets = [
        (header::FEED_TOKEN, Some(&config.feed_token)),
        (header::AUTHORIZATION, config.jwt.as_ref()),
        (header::API_KEY, config.api_key.as_ref()),
    ];
    for (name, value) in secrets {
        if let Some(value) = value {
            headers.insert(HeaderName::from_static(name), secret_header(name, value)?);
        }
    }
    let handshake = tokio_tungstenite::connect_async_with_config(
        request,
        Some(crate::bounds::ws_config()),
        false,
    );
    match time::timeout(config.connect_timeout, handshake).await {
        Err(_) => Err(ConnectError::Other(format!(
            "no handshake within {:?}",
            config.connect_timeout
        ))),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(tungstenite::Error::Http(response)))
            if matches!(response.status().as_u16(), 401 | 403) =>
        {
            let message = response
                .headers()
                .get(header::ERROR_MESSAGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no x-error-message header")
                .to_owned();
            Err(ConnectError::Auth {
                status: response.status().as_u16(),
                message,
            })
        }
        Ok(Err(tungstenite::Error::Http(response))) => Err(ConnectError::Other(format!(
            "handshake refused with HTTP {}",
            response.status()
        ))),
        Ok(Err(e)) => Err(ConnectError::Other(e.to_string())),
    }
}

/// A header value for a secret, marked sensitive; the error names the header, not the value.
fn secret_header(name: &str, value: &SecretString) -> Result<HeaderValue, ConnectError> {
    let mut v = HeaderValue::from_str(value.expose_secret())
        .map_err(|_| ConnectError::Other(format!("{name} is not a valid header value")))?;
    v.set_sensitive(true);
    Ok(v)
}
