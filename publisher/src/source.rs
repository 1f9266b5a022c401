//! Choosing the tick source from settings (`PINNACLE_MD_FEED`): the simulator, a replay,
//! or Angel One's live feed; and where candles come from (Angel One whenever the
//! `ANGEL_ONE_*` credentials are set, simulated otherwise).

use std::sync::Arc;
use std::time::Duration;

use pinnacle_common::config::{
    AngelOneMarketDataSettings, FeedKind, MarketDataSettings, SimFeedSettings, SimHours,
};
use pinnacle_common::feed::MarketFeed;

use crate::angel::{self, AngelAuth, AngelFeed, AngelHistory, AuthError, Plan, PlanError};
use crate::calendar::Calendar;
use crate::instruments::Catalog;
use crate::numbering::Numbered;
use crate::replay::ReplayFeed;
use crate::sim::{parse_symbols, synthetic, SimFeed, SymbolSpecError};

/// The settings do not describe a usable feed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `PINNACLE_SIM_SYMBOLS` does not parse.
    #[error(transparent)]
    Symbols(#[from] SymbolSpecError),
    /// The Angel One credentials are incomplete.
    #[error(transparent)]
    Angel(#[from] AuthError),
    /// The Angel One symbol list or mode is unusable.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Anything else, with a message for the operator.
    #[error("{0}")]
    Invalid(String),
}

/// The configured sources.
#[derive(Debug)]
pub struct Sources {
    /// The tick source.
    pub feed: Box<dyn MarketFeed>,
    /// Angel One candles when its credentials are set; `None` means simulated candles.
    pub history: Option<Arc<AngelHistory>>,
}

/// Builds the configured feed, numbered from now ([`Numbered`]), and candle source. Any
/// `ANGEL_ONE_*` variable set means Angel One is in use, so all four credentials must then
/// be; `PINNACLE_MD_FEED=angel_one` needs them too.
pub fn build_sources(
    sim: &SimFeedSettings,
    md: &MarketDataSettings,
    angel: &AngelOneMarketDataSettings,
    catalog: &Catalog,
) -> Result<Sources, SourceError> {
    let auth = if angel.is_empty() && md.feed != FeedKind::AngelOne {
        None
    } else {
        Some(AngelAuth::new(
            angel,
            &md.angel_rest_url,
            Duration::from_millis(md.angel_timeout_ms),
        )?)
    };
    let feed = match (md.feed, &auth) {
        (FeedKind::AngelOne, Some(auth)) => {
            let plan = Plan::new(
                &md.angel_symbols,
                angel::parse_mode(md.angel_mode.as_str())?,
                catalog,
            )?;
            Box::new(AngelFeed::new(
                auth.clone(),
                md.angel_feed_url.clone(),
                plan,
            ))
        }
        _ => build(sim, md, catalog)?,
    };
    Ok(Sources {
        feed: Box::new(Numbered::new(feed)),
        history: auth.map(|auth| Arc::new(AngelHistory::new(auth))),
    })
}

/// Builds the simulator or a replay of a recording (the sources that need no
/// credentials).
pub fn build(
    sim: &SimFeedSettings,
    md: &MarketDataSettings,
    catalog: &Catalog,
) -> Result<Box<dyn MarketFeed>, SourceError> {
    match md.feed {
        FeedKind::Sim => {
            let mut symbols = parse_symbols(&sim.symbols)?;
            symbols.extend(synthetic(sim.synthetic));
            if symbols.is_empty() {
                return Err(SourceError::Invalid("PINNACLE_SIM_SYMBOLS is empty".into()));
            }
            let feed = SimFeed::new(
                symbols,
                catalog,
                sim.seed,
                Duration::from_millis(sim.interval_ms),
                sim.depth,
            );
            Ok(Box::new(match sim.hours {
                SimHours::Always => feed,
                SimHours::Exchange => {
                    let calendar = Calendar::load(md.holidays.as_deref())
                        .map_err(|e| SourceError::Invalid(e.to_string()))?;
                    feed.with_hours(Arc::new(calendar), sim.now.clock())
                }
            }))
        }
        FeedKind::Replay => {
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
        FeedKind::AngelOne => Err(SourceError::Invalid(
            "PINNACLE_MD_FEED=angel_one needs the ANGEL_ONE_* credentials".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_clear_errors() {
        let catalog = Catalog::sample();
        let sim = SimFeedSettings::default();
        let md = |feed: FeedKind, file: Option<&str>| MarketDataSettings {
            feed,
            replay_file: file.map(Into::into),
            ..MarketDataSettings::default()
        };
        assert!(build(&sim, &md(FeedKind::Sim, None), &catalog).is_ok());
        assert!(build(&sim, &md(FeedKind::AngelOne, None), &catalog).is_err());
        assert!(build(&sim, &md(FeedKind::Replay, None), &catalog).is_err());
        assert!(build(&sim, &md(FeedKind::Replay, Some("/nonexistent")), &catalog).is_err());
        let empty = SimFeedSettings {
            symbols: " ".into(),
            ..SimFeedSettings::default()
        };
        assert!(build(&empty, &md(FeedKind::Sim, None), &catalog).is_err());
    }

    #[test]
    fn angel_one_needs_every_credential_and_known_symbols() {
        use secrecy::SecretString;
        let catalog = Catalog::sample();
        let sim = SimFeedSettings::default();
        let angel_md = MarketDataSettings {
            feed: FeedKind::AngelOne,
            ..MarketDataSettings::default()
        };
        let none = AngelOneMarketDataSettings::default();
        let error = build_sources(&sim, &angel_md, &none, &catalog).expect_err("no credentials");
        assert!(
            error.to_string().contains("ANGEL_ONE_TOTP_SECRET"),
            "{error}"
        );
        let full = AngelOneMarketDataSettings {
            api_key: Some(SecretString::from("key-secret-1")),
            client_id: Some("P0001".into()),
            pin: Some(SecretString::from("pin-secret-2")),
            totp_secret: Some(SecretString::from("GEZDGNBVGY3TQOJQ")),
        };
        let sources = build_sources(&sim, &angel_md, &full, &catalog).expect("builds");
        assert_eq!(sources.feed.name(), "angel_one");
        assert!(sources.history.is_some());
        let bad_symbols = MarketDataSettings {
            angel_symbols: "NSE:NOPE-EQ".into(),
            ..angel_md.clone()
        };
        assert!(build_sources(&sim, &bad_symbols, &full, &catalog).is_err());
        let partial = AngelOneMarketDataSettings {
            pin: None,
            ..full.clone()
        };
        let plain = MarketDataSettings::default();
        let error = build_sources(&sim, &plain, &partial, &catalog).expect_err("partial");
        assert!(error.to_string().contains("ANGEL_ONE_PIN"), "{error}");
        assert!(
            !format!("{error} {error:?}").contains("secret"),
            "{error:?}"
        );
        let simulated = build_sources(&sim, &plain, &none, &catalog).expect("sim");
        assert_eq!(simulated.feed.name(), "sim");
        assert!(simulated.history.is_none());
        // Candles come from Angel One whenever its credentials are set.
        assert!(build_sources(&sim, &plain, &full, &catalog)
            .expect("sim + candles")
            .history
            .is_some());
    }
}
