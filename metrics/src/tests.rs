//! The registry: labels, ownership of families, rendering and scrape-time values.

use super::*;

#[test]
fn unknown_verbs_share_one_label() {
    assert_eq!(verb_label("place"), "place");
    assert_eq!(verb_label("0193-some-user-chosen-text"), "other");
    assert_eq!(outcome_label(ErrorCode::BrokerRejected), "broker_rejected");
}

#[test]
fn renders_every_family_in_text_format() {
    let m = Metrics::new();
    for component in Component::ALL {
        m.enable(component);
    }
    m.order_answered("place", Duration::from_micros(300), "filled");
    m.ticks_published.inc();
    let text = m.render();
    for name in [
        "pinnacle_order_latency_seconds_bucket",
        "pinnacle_orders_total",
        "pinnacle_ticks_published_total",
        "pinnacle_feed_lag_seconds",
        "pinnacle_audit_publish_failures_total",
        "pinnacle_audit_stream_available",
        "pinnacle_audit_checkpoint_failures_total",
        "pinnacle_credential_decrypts_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("le=\"0.0001\""), "{text}");
}

/// The names `/metrics` renders (`_bucket`/`_sum`/`_count` folded into their family).
fn family_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Gives every labelled family one series, so the registry gathers it.
fn touch_all(m: &Metrics) {
    m.order_answered("place", Duration::from_micros(300), "filled");
    m.order_failed("place", "unauthenticated");
    m.nats_reconnects.with_label_values(&["pinnacle-test"]);
    m.nats_rebuilds.with_label_values(&["pinnacle-test"]);
    m.queue_depth.with_label_values(&["pinnacle-test"]);
    m.queue_group_changes
        .with_label_values(&["pinnacle-test", "left"]);
    m.broker_request("paper", "place_order", true);
    m.smartapi_rate_buckets(&["orders"]);
}

#[test]
fn the_ownership_table_names_every_registered_family() {
    let m = Metrics::new();
    touch_all(&m);
    let registered: std::collections::BTreeSet<String> = m
        .registry
        .gather()
        .iter()
        .map(|family| family.name().to_string())
        .collect();
    let listed: std::collections::BTreeSet<String> =
        FAMILIES.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(registered, listed);
    assert!(FAMILIES.iter().all(|(_, owners)| !owners.is_empty()));
}

#[test]
fn a_process_exports_only_its_components_families() {
    let m = Metrics::new();
    touch_all(&m);
    assert!(family_names(&m.render()).is_empty(), "nothing enabled");
    m.enable(Component::OrderWorker);
    // A tick seen in this process (it never happens in a worker) must not leak out.
    m.record_ticks(1, chrono::Utc::now().timestamp_millis());
    let worker = family_names(&m.render());
    for (name, owners) in FAMILIES {
        assert_eq!(
            worker.contains(*name),
            owners.contains(&Component::OrderWorker),
            "{name} in a worker: {worker:?}"
        );
    }
    assert!(!worker.contains("pinnacle_feed_lag_seconds"));
    assert!(!worker.contains("pinnacle_ticks_published_total"));

    let publisher = Metrics::new();
    touch_all(&publisher);
    publisher.enable(Component::Publisher);
    let names = family_names(&publisher.render());
    for family in [
        "pinnacle_feed_lag_seconds",
        "pinnacle_ticks_published_total",
        "pinnacle_nats_reconnects_total",
        "pinnacle_smartapi_rate_refused_total",
    ] {
        assert!(names.contains(family), "{family} in a publisher: {names:?}");
    }
    for family in [
        "pinnacle_orders_total",
        "pinnacle_credential_decrypts_total",
        "pinnacle_audit_publish_failures_total",
        "pinnacle_order_outbox_backlog",
    ] {
        assert!(
            !names.contains(family),
            "{family} in a publisher: {names:?}"
        );
    }

    // `pinnacle dev`: every component, every family.
    for component in Component::ALL {
        m.enable(component);
    }
    assert_eq!(family_names(&m.render()).len(), FAMILIES.len());
}

/// The value of the unlabelled sample `name` in `text`.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn feed_lag_is_computed_at_scrape_time() {
    let m = Metrics::new();
    assert_eq!(m.feed_lag_seconds(), None, "no publisher, no lag");
    m.enable(Component::Publisher);
    let at_start = m.feed_lag_seconds().expect("the clock started");
    assert!((0.0..1.0).contains(&at_start), "{at_start}");
    // The newest tick is 5 s old: the lag says so without another tick.
    let now = chrono::Utc::now().timestamp_millis();
    m.record_ticks(3, now - 5_000);
    let lag = value(&m.render(), "pinnacle_feed_lag_seconds");
    assert!((5.0..6.0).contains(&lag), "{lag}");
    // An older tick (another symbol's) does not move it back.
    m.record_ticks(1, now - 60_000);
    assert!(m.feed_lag_seconds().is_some_and(|lag| lag < 6.0));
    // It grows while nothing is published.
    m.last_tick_ms.store(now - 30_000, Ordering::Relaxed);
    let later = value(&m.render(), "pinnacle_feed_lag_seconds");
    assert!((30.0..31.0).contains(&later), "{later}");
    assert_eq!(value(&m.render(), "pinnacle_ticks_published_total"), 4.0);
}
