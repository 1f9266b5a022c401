//! Symbol tokens for SmartAPI orders, asked of the market-data publisher over NATS
//! (`md.req.symbols.lookup`, backed by the instrument master) and kept for the day.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pinnacle_common::codec::Encoding;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::model::{Instrument, Reply, SymbolLookup};
use pinnacle_common::subjects::md;

use pinnacle_common::broker::BrokerError;

/// Looks symbols up and remembers the answers.
#[derive(Debug)]
pub struct SymbolResolver {
    client: async_nats::Client,
    timeout: Duration,
    cache: Mutex<HashMap<(String, String), Instrument>>,
}

impl SymbolResolver {
    /// A resolver asking over `client`.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The instrument `exchange:symbol`, or [`BrokerError::UnknownSymbol`].
    pub async fn resolve(&self, exchange: &str, symbol: &str) -> Result<Instrument, BrokerError> {
        let key = (exchange.to_ascii_uppercase(), symbol.to_string());
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let request = SymbolLookup {
            exchange: key.0.clone(),
            token: None,
            symbol: Some(symbol.to_string()),
        };
        let payload = Encoding::Json
            .encode(&request)
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            pinnacle_common::subjects::headers::CONTENT_TYPE,
            Encoding::Json.content_type(),
        );
        let reply = tokio::time::timeout(
            self.timeout,
            self.client
                .request_with_headers(md::SYMBOLS_LOOKUP, headers, payload),
        )
        .await
        .map_err(|_| BrokerError::Unavailable("the symbol lookup timed out".into()))?
        .map_err(|e| BrokerError::Unavailable(format!("the symbol lookup failed: {e}")))?;
        let reply: Reply<Instrument> = Encoding::Json
            .decode(&reply.payload)
            .map_err(|e| BrokerError::Unavailable(format!("bad symbol lookup reply: {e}")))?;
        match (reply.result, reply.error) {
            (Some(instrument), _) if reply.ok => {
                self.lock().insert(key, instrument.clone());
                Ok(instrument)
            }
            // Only the publisher's verdict makes a symbol unknown; any other refusal
            // (an internal error, a malformed answer) is an outage, retried by the caller.
            (_, Some(error)) if error.code != ErrorCode::UnknownSymbol => Err(
                BrokerError::Unavailable(format!("the symbol lookup was refused: {}", error.code)),
            ),
            _ => Err(BrokerError::UnknownSymbol {
                exchange: key.0,
                symbol: key.1,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instrument>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
