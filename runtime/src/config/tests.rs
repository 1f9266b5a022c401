//! The settings groups: parsing, defaults, and redaction in `Debug`.

use secrecy::{ExposeSecret, SecretString};

use super::*;

#[test]
fn nats_url_takes_a_list_of_seed_servers_and_refuses_credentials_in_it() {
    let list = NatsSettings::for_url(" nats://127.0.0.1:4222, 127.0.0.1:4223,tls://n3:4224 ");
    let servers = list.servers().expect("three servers");
    let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
    assert_eq!(ports, [4222, 4223, 4224]);
    assert!(servers[2].tls_required());

    for (url, want) in [
        ("nats://a:1,,nats://b:2", "server 2 is empty"),
        ("nats://a:1,nats://b:99999", "server 2"),
        ("http://a:1", "server 1"),
        (
            "nats://a:1,nats://admin:hunter2@b:2",
            "server 2 has credentials",
        ),
    ] {
        let error = NatsSettings::for_url(url)
            .servers()
            .expect_err(url)
            .to_string();
        assert!(error.contains(want), "{url}: {error}");
        assert!(!error.contains("hunter2"), "{url}: {error}");
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let settings = NatsSettings {
        password: Some(SecretString::from("hunter2-nats")),
        ..NatsSettings::for_url("nats://127.0.0.1:4222")
    };
    let shown = format!("{settings:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let vault = VaultSettings {
        master_keys: Some(SecretString::from("2:c2VjcmV0LW1hc3Rlci1rZXk=")),
        ..VaultSettings::single(SecretString::from("c2VjcmV0LW1hc3Rlci1rZXk="), 1)
    };
    assert!(!format!("{vault:?}").contains("c2VjcmV0"));
    assert_eq!(
        vault
            .master_key
            .as_ref()
            .map(|k| k.expose_secret().to_string()),
        Some("c2VjcmV0LW1hc3Rlci1rZXk=".to_string())
    );
}

#[test]
fn enum_settings_parse_with_an_error_naming_the_variable() {
    for feed in FeedKind::ALL {
        assert_eq!(feed.as_str().parse::<FeedKind>().ok(), Some(feed));
    }
    for mode in AngelMode::ALL {
        assert_eq!(mode.as_str().parse::<AngelMode>().ok(), Some(mode));
    }
    assert_eq!(
        " snap_quote ".parse::<AngelMode>().ok(),
        Some(AngelMode::SnapQuote)
    );
    assert_eq!("FULL".parse::<AngelMode>().ok(), Some(AngelMode::SnapQuote));
    assert_eq!("ltp".parse::<AngelMode>().ok(), Some(AngelMode::Ltp));
    let at = |t: &str| t.parse::<SquareOffAt>().map(SquareOffAt::time);
    assert_eq!(at("").ok(), Some(None));
    assert_eq!(at("  ").ok(), Some(None));
    assert_eq!(
        at("09:05").ok(),
        chrono::NaiveTime::from_hms_opt(9, 5, 0).map(Some)
    );
    assert_eq!(
        SquareOffAt::default().time(),
        chrono::NaiveTime::from_hms_opt(15, 15, 0)
    );
    for (error, variable) in [
        ("kafka".parse::<FeedKind>().err(), "PINNACLE_MD_FEED"),
        ("Sim".parse::<FeedKind>().err(), "PINNACLE_MD_FEED"),
        ("FAST".parse::<AngelMode>().err(), "PINNACLE_MD_ANGEL_MODE"),
        (
            "25:00".parse::<SquareOffAt>().err(),
            "PINNACLE_WORKER_SQUARE_OFF_AT",
        ),
        (
            "3pm".parse::<SquareOffAt>().err(),
            "PINNACLE_WORKER_SQUARE_OFF_AT",
        ),
        (
            "15:15:00".parse::<SquareOffAt>().err(),
            "PINNACLE_WORKER_SQUARE_OFF_AT",
        ),
        ("tonight".parse::<SimNow>().err(), "PINNACLE_WORKER_SIM_NOW"),
        (
            "2026-12-02 09:15".parse::<SimNow>().err(),
            "PINNACLE_SIM_NOW",
        ),
    ] {
        let error = error.expect(variable).to_string();
        assert!(error.contains(variable), "{error}");
    }
}

#[test]
fn a_malformed_setting_fails_loading_with_its_name() {
    let vars = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let worker: Result<WorkerSettings, _> = envy::prefixed("PINNACLE_WORKER_")
        .from_iter(vars(&[("PINNACLE_WORKER_SQUARE_OFF_AT", "15.15")]));
    let error = worker.expect_err("refused").to_string();
    assert!(error.contains("PINNACLE_WORKER_SQUARE_OFF_AT"), "{error}");
    let worker: WorkerSettings = envy::prefixed("PINNACLE_WORKER_")
        .from_iter(vars(&[("PINNACLE_WORKER_SQUARE_OFF_AT", "")]))
        .expect("empty is off");
    assert_eq!(worker.square_off_at, SquareOffAt::OFF);
    let worker: Result<WorkerSettings, _> = envy::prefixed("PINNACLE_WORKER_")
        .from_iter(vars(&[("PINNACLE_WORKER_SIM_NOW", "yesterday")]));
    let error = worker.expect_err("refused").to_string();
    assert!(error.contains("PINNACLE_WORKER_SIM_NOW"), "{error}");
    let worker: WorkerSettings = envy::prefixed("PINNACLE_WORKER_")
        .from_iter(vars(&[(
            "PINNACLE_WORKER_SIM_NOW",
            " 2026-12-02T23:59:50+05:30 ",
        )]))
        .expect("an RFC 3339 time");
    let start = worker.sim_now.start().expect("a simulated start");
    assert_eq!(start.to_rfc3339(), "2026-12-02T18:29:50+00:00");
    let drift = (worker.sim_now.clock().now() - start).num_seconds().abs();
    assert!(drift < 5, "the clock starts at the setting: {drift} s off");
    assert!(SimNow::default().clock().is_real());
    let md: Result<MarketDataSettings, _> =
        envy::prefixed("PINNACLE_MD_").from_iter(vars(&[("PINNACLE_MD_FEED", "kafka")]));
    let error = md.expect_err("refused").to_string();
    assert!(error.contains("PINNACLE_MD_FEED"), "{error}");
    let md: MarketDataSettings = envy::prefixed("PINNACLE_MD_")
        .from_iter(vars(&[("PINNACLE_MD_ANGEL_MODE", "depth")]))
        .expect("loads");
    assert_eq!((md.feed, md.angel_mode), (FeedKind::Sim, AngelMode::Depth));
}

#[test]
fn defaults_are_sane() {
    let sim = SimFeedSettings::default();
    assert!(sim.symbols.contains("NSE:SBIN-EQ"));
    assert!(WorkerSettings::default().max_quantity > 0);
}

#[test]
fn paper_hours_follow_the_feeds_hours_setting() {
    let vars = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let hours = PaperHours::from_vars(vars(&[
        ("PINNACLE_SIM_HOURS", "exchange"),
        ("PINNACLE_SIM_SEED", "7"),
        ("PINNACLE_MD_HOLIDAYS", "/etc/pinnacle/holidays.json"),
        ("PINNACLE_MD_FEED", "sim"),
    ]))
    .expect("loads");
    assert_eq!(
        hours,
        PaperHours {
            hours: SimHours::Exchange,
            holidays: Some("/etc/pinnacle/holidays.json".into()),
        }
    );
    let hours = PaperHours::from_vars(vars(&[])).expect("loads");
    assert_eq!(hours, PaperHours::default());
    assert_eq!(hours.hours, SimHours::Always, "always open unless asked");
    let error = PaperHours::from_vars(vars(&[("PINNACLE_SIM_HOURS", "weekdays")]))
        .expect_err("an unknown hours setting is refused")
        .to_string();
    assert!(error.contains("PINNACLE_SIM_"), "{error}");
    assert_eq!(WorkerSettings::default().paper_hours, PaperHours::default());
}
