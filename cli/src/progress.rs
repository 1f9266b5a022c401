//! Progress of a long operation on standard error: silent for the first second (a quick run
//! prints nothing), then one line at most every second (`PINNACLE_PROGRESS_MS`), and a last line when it ends. On a
//! terminal the line is redrawn in place; in a log it is a new line each time, with no
//! control codes.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// How often a line is printed: `PINNACLE_PROGRESS_MS`, default one second (`0`: after
/// every step, which the tests use).
fn every() -> Duration {
    let ms = std::env::var("PINNACLE_PROGRESS_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

/// One operation's progress.
#[derive(Debug)]
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    total: u64,
    started: Instant,
    last: Option<Instant>,
    every: Duration,
    terminal: bool,
}

impl Progress {
    /// Starts counting `total` `unit`s of `what` (e.g. "key rotation", "accounts").
    pub fn new(what: &'static str, unit: &'static str, total: u64) -> Self {
        Self {
            what,
            unit,
            total,
            started: Instant::now(),
            last: None,
            every: every(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// `done` of the total are finished; prints when a second has passed since the last line
    /// (and since the start).
    pub fn update(&mut self, done: u64) {
        let now = Instant::now();
        let due = match self.last {
            None => now.duration_since(self.started) >= self.every,
            Some(last) => now.duration_since(last) >= self.every,
        };
        if due {
            self.last = Some(now);
            self.print(done, false);
        }
    }

    /// The operation ended with `done` finished; prints a last line if any was printed.
    pub fn finish(&mut self, done: u64) {
        if self.last.is_some() {
            self.print(done, true);
        }
    }

    fn print(&self, done: u64, last: bool) {
        let line = line(
            self.what,
            self.unit,
            done,
            self.total,
            self.started.elapsed(),
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r\x1b[2K{line}{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

fn line(what: &str, unit: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
    format!(
        "{what}: {done}/{total} {unit} ({percent}%), {:.0} s",
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_how_far_and_how_long() {
        assert_eq!(
            line(
                "audit verify",
                "events",
                250,
                1000,
                Duration::from_millis(2400)
            ),
            "audit verify: 250/1000 events (25%), 2 s"
        );
        assert_eq!(
            line("key rotation", "accounts", 0, 0, Duration::ZERO),
            "key rotation: 0/0 accounts (100%), 0 s"
        );
    }
}
