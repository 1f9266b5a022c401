//! The Markdown report of `pinnacle bench ticks`: one section per measurement, printed as
//! each one ends, and the checks that fail a run that moved nothing.

use std::time::Duration;

use super::load::Sent;
use super::runs::{Side, EXCHANGES};
use crate::bench::measure::percentile;
use crate::bench::process::peak_rss_kib;

/// The system load averages, as printed by `uptime`.
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// `a / b` to two places, or `–`.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

/// What a side's subscribers received of what they should have, `got/want`.
pub(super) fn delivered(side: &Side) -> String {
    let want: u64 = side.received.iter().map(|(_, want)| want).sum();
    format!("{}/{}", side.delivered(), want)
}

/// The report's title and what the run measures.
pub(super) fn header(
    symbols: usize,
    seconds: Duration,
    rate: u64,
    payload_len: usize,
    load_before: &str,
) {
    println!("## Market data benchmark\n");
    println!(
        "{} symbols over {}; {} s per run; latency at {} ticks/s; payload {} bytes (one \
         MessagePack SNAP_QUOTE tick; raw NATS sends the same size); load average {} at the \
         start.\n",
        symbols,
        EXCHANGES.join(", "),
        seconds.as_secs(),
        rate,
        payload_len,
        load_before,
    );
}

/// Throughput with one subscriber on `md.tick.>`: the publisher beside raw NATS on the same
/// subjects and on one subject.
pub(super) fn throughput(one: &Side, raw_same: &Side, raw_one: &Side) {
    println!(
        "### Throughput: one subscriber on `md.tick.>`\n\n\
         | measure | publisher | raw NATS, same subjects | ratio | raw NATS, one subject | ratio |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let rate_row = |name: &str, f: &dyn Fn(&Side) -> f64| {
        let (p, s, o) = (f(one), f(raw_same), f(raw_one));
        println!(
            "| {name} | {p:.0} | {s:.0} | {} | {o:.0} | {} |",
            ratio(p, s),
            ratio(p, o)
        );
    };
    rate_row("published ticks/s", &|side| side.sent.rate());
    rate_row("received ticks/s", &|side| {
        side.delivered() as f64 / side.sent.elapsed.as_secs_f64().max(1e-9)
    });
    println!(
        "| delivered | {} | {} | | {} | |",
        delivered(one),
        delivered(raw_same),
        delivered(raw_one)
    );
    println!(
        "| lost | {} | {} | | {} | |",
        one.lost(),
        raw_same.lost(),
        raw_one.lost()
    );
    println!(
        "| publishing thread CPU per tick (µs) | {:.2} | {:.2} | {} | {:.2} | {} |",
        one.sent.cpu_per_message_us(),
        raw_same.sent.cpu_per_message_us(),
        ratio(
            one.sent.cpu_per_message_us(),
            raw_same.sent.cpu_per_message_us()
        ),
        raw_one.sent.cpu_per_message_us(),
        ratio(
            one.sent.cpu_per_message_us(),
            raw_one.sent.cpu_per_message_us()
        ),
    );
}

/// Fan-out: what each subscriber on `filters` received, then the totals.
pub(super) fn fan_out(filters: &[String], fan: &Side, raw_fan: &Side) {
    println!(
        "\n### Fan-out: {} subscribers, each on its own connection\n\n\
         | subscriber | publisher: received/expected | raw NATS: received/expected |\n\
         |---|---:|---:|",
        filters.len()
    );
    for (filter, (p, r)) in filters
        .iter()
        .zip(fan.received.iter().zip(&raw_fan.received))
    {
        println!("| `{filter}` | {}/{} | {}/{} |", p.0, p.1, r.0, r.1);
    }
    println!(
        "\n| measure | publisher | raw NATS | ratio |\n|---|---:|---:|---:|\n\
         | published ticks/s | {:.0} | {:.0} | {} |",
        fan.sent.rate(),
        raw_fan.sent.rate(),
        ratio(fan.sent.rate(), raw_fan.sent.rate())
    );
    let deliveries =
        |side: &Side| side.delivered() as f64 / side.sent.elapsed.as_secs_f64().max(1e-9);
    println!(
        "| deliveries/s, all subscribers | {:.0} | {:.0} | {} |",
        deliveries(fan),
        deliveries(raw_fan),
        ratio(deliveries(fan), deliveries(raw_fan))
    );
    println!("| lost | {} | {} | |", fan.lost(), raw_fan.lost());
    println!(
        "| publishing thread CPU per tick (µs) | {:.2} | {:.2} | {} |",
        fan.sent.cpu_per_message_us(),
        raw_fan.sent.cpu_per_message_us(),
        ratio(
            fan.sent.cpu_per_message_us(),
            raw_fan.sent.cpu_per_message_us()
        )
    );
}

/// Latency at `rate` ticks/s: percentiles of the sorted samples of each side.
pub(super) fn latency(
    rate: u64,
    symbols: usize,
    (latencies, lat_sent): (&[Duration], &Sent),
    (raw_latencies, raw_lat_sent): (&[Duration], &Sent),
) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "\n### Latency at {rate} ticks/s over {} symbols (µs, tick made → subscriber has it)\n\n\
         | measure | publisher | raw NATS |\n|---|---:|---:|",
        symbols
    );
    for (name, p) in [("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)] {
        println!(
            "| {name} | {:.0} | {:.0} |",
            us(percentile(latencies, p)),
            us(percentile(raw_latencies, p))
        );
    }
    println!(
        "| samples/sent | {}/{} | {}/{} |",
        latencies.len(),
        lat_sent.messages,
        raw_latencies.len(),
        raw_lat_sent.messages
    );
    println!(
        "| publishing thread CPU per tick (µs) | {:.2} | {:.2} |",
        lat_sent.cpu_per_message_us(),
        raw_lat_sent.cpu_per_message_us()
    );
}

/// Memory: resident set size before the simulator and with every symbol cached.
pub(super) fn memory(symbols: usize, rss_before: u64, rss_after: u64, cached: usize) {
    println!("\n### Memory\n\n| measure | KiB |\n|---|---:|");
    println!("| RSS before the simulator | {rss_before} |");
    println!(
        "| RSS with {} symbols simulated, published and cached | {rss_after} |",
        symbols
    );
    println!("| difference | {} |", rss_after.saturating_sub(rss_before));
    if let Some(peak) = peak_rss_kib() {
        println!("| peak RSS of the whole run | {peak} |");
    }
    println!("| cached symbols | {} |", cached);
    println!("\nLoad average at the end: {}.", load_average());
}

/// Fails a run that moved nothing, or lost a tick a subscriber was keeping up with: a
/// broken benchmark or a broken publisher (timing is measured, never asserted).
pub(super) fn check(
    one: &Side,
    raw_same: &Side,
    raw_one: &Side,
    latencies: &[Duration],
    raw_latencies: &[Duration],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        one.sent.messages > 0 && one.delivered() > 0,
        "the publisher delivered no ticks ({})",
        delivered(one)
    );
    anyhow::ensure!(
        raw_same.delivered() > 0 && raw_one.delivered() > 0,
        "raw NATS delivered nothing"
    );
    anyhow::ensure!(
        one.lost() == 0,
        "the subscriber on md.tick.> lost {} ticks of the publisher's",
        one.lost()
    );
    anyhow::ensure!(
        !latencies.is_empty() && !raw_latencies.is_empty(),
        "no latency samples (publisher {}, raw {})",
        latencies.len(),
        raw_latencies.len()
    );
    Ok(())
}
