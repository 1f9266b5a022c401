//! The orders benchmark's report: a Markdown table (or JSON) of every row, and the check
//! that turns any failed request into a non-zero exit.

use serde::Serialize;

use super::measure::Measurement;

/// Everything `pinnacle bench orders` measured.
#[derive(Debug, Clone, Serialize)]
pub struct OrdersReport {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Bytes of one MessagePack order; both baselines send this many.
    pub payload_bytes: usize,
    /// Starting cash of every paper account, paise.
    pub paper_cash: i64,
    /// Resident memory before the stack started, KiB.
    pub rss_start_kib: u64,
    /// The rows, five per concurrency level.
    pub rows: Vec<Measurement>,
}

/// `850 µs` below a millisecond, `12.3 ms` above.
fn duration(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl OrdersReport {
    /// The baseline echo row at `clients`, for the ratio column.
    fn echo_at(&self, clients: usize) -> Option<&Measurement> {
        self.rows
            .iter()
            .find(|r| r.name.contains("NATS echo") && r.clients == clients)
    }

    /// The report as Markdown: a header line, the table, what the columns mean, and every
    /// failure.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "Orders benchmark: database {}, payload {} bytes (one MessagePack order, the \
             baselines send the same size), paper cash ₹{} per account; one nats-server on \
             loopback; publisher, order worker and user API run in this process.\n\n\
             | what | clients | users | requests | failed | p50 | p99 | p99.9 | throughput (/s) \
             | CPU per request | peak RSS | p50 vs NATS echo |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.backend,
            self.payload_bytes,
            self.paper_cash / 100,
        );
        for m in &self.rows {
            out.push_str(&self.row(m));
        }
        let reset = self.rows.iter().all(|m| m.peak_reset);
        out.push_str(&format!(
            "\nLatency: request sent to reply received, successful requests only. Throughput: \
             successful requests per second of wall time. CPU per request: user + system CPU \
             time of this whole process (the stack and the benchmark's clients; not \
             nats-server) during the row, divided by its requests. Peak RSS: VmHWM of this \
             process {}. RSS before the stack started: {}.\n",
            if reset {
                "during the row (reset before each row)"
            } else {
                "since it started (this kernel refused the reset)"
            },
            mib(self.rss_start_kib),
        ));
        for m in self.rows.iter().filter(|m| m.failed > 0) {
            out.push_str(&format!(
                "\nFAILED: {} at {} clients: {} of {} requests failed, e.g. {}\n",
                m.name,
                m.clients,
                m.failed,
                m.requests,
                m.failures.join("; ")
            ));
        }
        out
    }

    /// One row of the table, with its p50 against the NATS echo at the same concurrency.
    fn row(&self, m: &Measurement) -> String {
        let ratio = self
            .echo_at(m.clients)
            .filter(|echo| echo.p50_us > 0.0)
            .map(|echo| format!("{:.1}×", m.p50_us / echo.p50_us))
            .unwrap_or_default();
        let users = if m.is_baseline() {
            "–".to_string()
        } else {
            m.users.to_string()
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |\n",
            m.name,
            m.clients,
            users,
            m.requests,
            m.failed,
            duration(m.p50_us),
            duration(m.p99_us),
            duration(m.p999_us),
            m.throughput,
            duration(m.cpu_per_request_us),
            m.peak_rss_kib.map(mib).unwrap_or_else(|| "n/a".into()),
            ratio,
        )
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Fails when any request in any row failed: a benchmark that quietly measures errors
    /// is a broken benchmark.
    pub fn check(&self) -> anyhow::Result<()> {
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter(|m| m.failed > 0)
            .map(|m| {
                format!(
                    "{} at {} clients: {} of {} failed ({})",
                    m.name,
                    m.clients,
                    m.failed,
                    m.requests,
                    m.failures.join("; ")
                )
            })
            .collect();
        anyhow::ensure!(
            failed.is_empty(),
            "the orders benchmark had failures: {}",
            failed.join(" | ")
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, failed: usize) -> Measurement {
        Measurement {
            name: name.into(),
            clients: 64,
            users: 64,
            requests: 200,
            failed,
            failures: if failed > 0 {
                vec!["INSUFFICIENT_FUNDS: need ₹820.50, have ₹0.00".into()]
            } else {
                vec![]
            },
            p50_us: 2_500.0,
            p99_us: 9_000.0,
            p999_us: 12_000.0,
            throughput: 900.0,
            cpu_per_request_us: 700.0,
            peak_rss_kib: Some(30_000),
            peak_reset: true,
            seconds: 0.2,
        }
    }

    fn report(rows: Vec<Measurement>) -> OrdersReport {
        OrdersReport {
            backend: "sqlite".into(),
            payload_bytes: 120,
            paper_cash: 100_000_000,
            rss_start_kib: 8_000,
            rows,
        }
    }

    #[test]
    fn a_clean_report_passes_and_lists_every_row() {
        let r = report(vec![
            row("raw NATS echo", 0),
            row("raw JetStream publish+ack", 0),
            row("order place (paper)", 0),
        ]);
        r.check().expect("no failures");
        let text = r.to_markdown();
        assert!(text.contains("| raw JetStream publish+ack | 64 | – | 200 | 0 | 2.50 ms"));
        assert!(text.contains("| order place (paper) | 64 | 64 |"));
        assert!(!text.contains("FAILED"));
    }

    #[test]
    fn failures_are_readable_and_fail_the_check() {
        let r = report(vec![row("order place (paper)", 3)]);
        let error = r.check().expect_err("failures fail").to_string();
        assert!(
            error.contains("INSUFFICIENT_FUNDS: need ₹820.50"),
            "{error}"
        );
        assert!(r
            .to_markdown()
            .contains("FAILED: order place (paper) at 64 clients"));
    }
}
