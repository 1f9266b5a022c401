//! Choosing the tick source from settings: the simulator or a replay (Angel One's live
//! feed joins here in its own issue).

use std::time::Duration;

use pinnacle_common::config::{MarketDataSettings, SimFeedSettings};
use pinnacle_common::feed::MarketFeed;

use crate::instruments::Catalog;
use crate::replay::ReplayFeed;
use crate::sim::{parse_symbols, synthetic, SimFeed, SymbolSpecError};

/// The settings do not describe a usable feed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `PINNACLE_SIM_SYMBOLS` does not parse.
    #[error(transparent)]
    Symbols(#[from] SymbolSpecError),
    /// Anything else, with a message for the operator.
    #[error("{0}")]
    Invalid(String),
}

/// Builds the configured feed: the simulator, or a replay of a recording.
pub fn build(
    sim: &SimFeedSettings,
    md: &MarketDataSettings,
    catalog: &Catalog,
) -> Result<Box<dyn MarketFeed>, SourceError> {
    match md.feed.as_str() {
        "sim" => {
            let mut symbols = parse_symbols(&sim.symbols)?;
            symbols.extend(synthetic(sim.synthetic));
            if symbols.is_empty() {
                return Err(SourceError::Invalid("PINNACLE_SIM_SYMBOLS is empty".into()));
            }
            Ok(Box::new(SimFeed::new(
                symbols,
                catalog,
                sim.seed,
                Duration::from_millis(sim.interval_ms),
                sim.depth,
            )))
        }
        "replay" => {
            let path = md.replay_file.as_deref().ok_or_else(|| {
                SourceError::Invalid("PINNACLE_MD_FEED=replay needs PINNACLE_MD_REPLAY_FILE".into())
            })?;
            if !std::path::Path::new(path).is_file() {
                return Err(SourceError::Invalid(format!(
                    "PINNACLE_MD_REPLAY_FILE {path} is not a readable file"
                )));
            }
            Ok(Box::new(ReplayFeed::new(
                path,
                md.replay_speed,
                md.replay_loop,
            )))
        }
        other => Err(SourceError::Invalid(format!(
            "PINNACLE_MD_FEED must be sim or replay, not {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_clear_errors() {
        let catalog = Catalog::sample();
        let sim = SimFeedSettings::default();
        let md = |feed: &str, file: Option<&str>| MarketDataSettings {
            feed: feed.into(),
            replay_file: file.map(Into::into),
            ..MarketDataSettings::default()
        };
        assert!(build(&sim, &md("sim", None), &catalog).is_ok());
        assert!(build(&sim, &md("kafka", None), &catalog).is_err());
        assert!(build(&sim, &md("replay", None), &catalog).is_err());
        assert!(build(&sim, &md("replay", Some("/nonexistent")), &catalog).is_err());
        let empty = SimFeedSettings {
            symbols: " ".into(),
            ..SimFeedSettings::default()
        };
        assert!(build(&empty, &md("sim", None), &catalog).is_err());
    }
}
