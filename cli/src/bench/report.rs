//! The orders benchmark's report: a Markdown table (or JSON) of every row, the ceilings
//! the run's own CPU figures put on orders per second ([`Ceiling`]), and the check that
//! turns any failed request into a non-zero exit.

use serde::Serialize;

use super::machine::Machine;
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
    /// CPU cores this machine offers the processes (`available_parallelism`).
    pub cores: usize,
    /// What the machine does with an idle CPU.
    pub machine: Machine,
    /// The rows, five per concurrency level.
    pub rows: Vec<Measurement>,
    /// What the rows imply for orders per second, one per concurrency level with an order
    /// row whose CPU was measured in full ([`OrdersReport::with_ceilings`]).
    pub ceilings: Vec<Ceiling>,
}

/// The most orders per second this machine's cores allow, from one concurrency level's
/// CPU figures (this process, nats-server and a PostgreSQL server together): as the stack
/// ran, and for the NATS traffic of an order alone.
///
/// Both are ceilings, not predictions: they assume every core busy and nothing else
/// running. The second prices an order's NATS traffic (one request-reply, and every
/// message it stores in JetStream) at what the raw echo and the raw publish+ack cost in the
/// same run, so it holds whatever the database and the order logic might be made to cost;
/// an order that must store its audit event and its lifecycle events cannot go faster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ceiling {
    /// The concurrency level.
    pub clients: usize,
    /// CPU time of one order, µs: this process, nats-server and, on PostgreSQL, its server.
    pub order_cpu_us: f64,
    /// `cores / order_cpu_us`, per second.
    pub orders_per_second: f64,
    /// JetStream messages one order stored (its audit event, its lifecycle events).
    pub jetstream_messages_per_order: f64,
    /// CPU time of an order's NATS traffic alone at the raw rows' prices, µs: one echo
    /// and `jetstream_messages_per_order` publishes with their acks.
    pub nats_only_cpu_us: f64,
    /// `cores / nats_only_cpu_us`, per second.
    pub nats_only_orders_per_second: f64,
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

/// A row's CPU time per request, this process, nats-server and the database server (where
/// measured) together; `None` unless nats-server's was measured.
fn system_cpu_us(m: &Measurement) -> Option<f64> {
    m.nats_server_cpu_per_request_us
        .map(|server| {
            m.cpu_per_request_us + server + m.database_server_cpu_per_request_us.unwrap_or(0.0)
        })
        .filter(|&cpu| cpu > 0.0)
}

impl OrdersReport {
    /// The report with [`Self::ceilings`] worked out from its rows.
    pub fn with_ceilings(mut self) -> Self {
        self.ceilings = self.ceilings();
        self
    }

    /// The baseline row named `what` at `clients`.
    fn baseline_at(&self, what: &str, clients: usize) -> Option<&Measurement> {
        self.rows
            .iter()
            .find(|r| r.name.contains(what) && r.clients == clients)
    }

    /// The baseline echo row at `clients`, for the ratio column.
    fn echo_at(&self, clients: usize) -> Option<&Measurement> {
        self.baseline_at("NATS echo", clients)
    }

    /// The ceiling of every concurrency level whose order row, echo and raw publish were
    /// all measured with nats-server's CPU.
    fn ceilings(&self) -> Vec<Ceiling> {
        let cores = self.cores.max(1) as f64;
        self.rows
            .iter()
            .filter(|m| !m.is_baseline())
            .filter_map(|order| {
                let order_cpu_us = system_cpu_us(order)?;
                let echo = system_cpu_us(self.echo_at(order.clients)?)?;
                let publish = system_cpu_us(self.baseline_at("JetStream", order.clients)?)?;
                let stored = order.jetstream_messages_per_request?;
                let nats_only_cpu_us = echo + stored * publish;
                Some(Ceiling {
                    clients: order.clients,
                    order_cpu_us,
                    orders_per_second: cores * 1e6 / order_cpu_us,
                    jetstream_messages_per_order: stored,
                    nats_only_cpu_us,
                    nats_only_orders_per_second: cores * 1e6 / nats_only_cpu_us,
                })
            })
            .collect()
    }

    /// The report as Markdown: a header line, the table, what the columns mean, and every
    /// failure.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "Orders benchmark: database {}, payload {} bytes (one MessagePack order, the \
             baselines send the same size), paper cash ₹{} per account; one nats-server on \
             loopback; publisher, order worker and user API run in this process. {}; \
             {}.\n\n\
             | what | clients | users | requests | failed | p50 | p99 | p99.9 | throughput (/s) \
             | CPU per request | nats-server CPU per request | database server CPU per request \
             | peak RSS | p50 vs NATS echo |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.backend,
            self.payload_bytes,
            self.paper_cash / 100,
            match self.cores {
                1 => "1 core".to_string(),
                n => format!("{n} cores"),
            },
            self.machine.describe(),
        );
        for m in &self.rows {
            out.push_str(&self.row(m));
        }
        let reset = self.rows.iter().all(|m| m.peak_reset);
        out.push_str(&format!(
            "\nLatency: request sent to reply received, successful requests only. Throughput: \
             successful requests per second of wall time. CPU per request: user + system CPU \
             time of this whole process (the stack and the benchmark's clients) during the \
             row, divided by its requests; nats-server's and PostgreSQL's server processes' \
             (SQLite runs in this process) beside it, in 10 ms clock ticks. \
             Peak RSS: VmHWM of this process {}. RSS before the stack started: {}.\n",
            if reset {
                "during the row (reset before each row)"
            } else {
                "since it started (this kernel refused the reset)"
            },
            mib(self.rss_start_kib),
        ));
        out.push_str(&self.ceilings_markdown());
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

    /// The ceilings as a paragraph under the table; empty when there are none.
    fn ceilings_markdown(&self) -> String {
        if self.ceilings.is_empty() {
            return String::new();
        }
        let mut out = format!(
            "\nCeilings on these {} cores, from this run's CPU figures (this process, \
             nats-server and a PostgreSQL server; every core busy, nothing else running):\n",
            self.cores
        );
        for c in &self.ceilings {
            out.push_str(&format!(
                "- {} {}: an order cost {} of CPU, so at most {:.0} orders/s as the stack \
                 ran. Its NATS traffic alone (one request-reply and {:.2} JetStream messages \
                 stored, priced at the raw echo and raw publish+ack rows) costs {}: at most \
                 {:.0} orders/s however little the database and the order logic cost.\n",
                c.clients,
                if c.clients == 1 { "client" } else { "clients" },
                duration(c.order_cpu_us),
                c.orders_per_second,
                c.jetstream_messages_per_order,
                duration(c.nats_only_cpu_us),
                c.nats_only_orders_per_second,
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
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
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
            m.nats_server_cpu_per_request_us
                .map(duration)
                .unwrap_or_else(|| "n/a".into()),
            m.database_server_cpu_per_request_us
                .map(duration)
                .unwrap_or_else(|| "n/a".into()),
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
            nats_server_cpu_per_request_us: None,
            database_server_cpu_per_request_us: None,
            jetstream_messages_per_request: None,
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
            cores: 2,
            machine: Machine::default(),
            rows,
            ceilings: Vec::new(),
        }
        .with_ceilings()
    }

    fn costed(name: &str, clients: usize, own: f64, server: f64) -> Measurement {
        Measurement {
            clients,
            cpu_per_request_us: own,
            nats_server_cpu_per_request_us: Some(server),
            ..row(name, 0)
        }
    }

    #[test]
    fn ceilings_price_an_order_and_its_nats_traffic_on_every_core() {
        let mut order = costed("order place (paper)", 64, 500.0, 400.0);
        order.database_server_cpu_per_request_us = Some(100.0);
        order.jetstream_messages_per_request = Some(4.0);
        let r = report(vec![
            costed("raw NATS echo", 64, 6.0, 14.0),
            costed("raw JetStream publish+ack", 64, 10.0, 30.0),
            order,
            // No nats-server figure, no echo at this level: no ceiling.
            row("order place (paper)", 0),
        ]);
        assert_eq!(
            r.ceilings,
            vec![Ceiling {
                clients: 64,
                order_cpu_us: 1_000.0,
                orders_per_second: 2_000.0,
                jetstream_messages_per_order: 4.0,
                nats_only_cpu_us: 180.0,
                nats_only_orders_per_second: 2e6 / 180.0,
            }]
        );
        let text = r.to_markdown();
        assert!(
            text.contains("- 64 clients: an order cost 1.00 ms of CPU, so at most 2000 orders/s"),
            "{text}"
        );
        assert!(
            text.contains("costs 180 µs: at most 11111 orders/s"),
            "{text}"
        );
        assert!(
            text.contains(
                "| 64 | 64 | 200 | 0 | 2.50 ms | 9.00 ms | 12.00 ms | 900 | 500 µs | 400 µs | 100 µs |"
            ),
            "{text}"
        );
        assert!(r
            .to_json()
            .expect("json")
            .contains("\"nats_only_orders_per_second\""));
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
