//! The Prometheus side of a test, without Prometheus: scrapes of several targets parsed
//! from the text exposition format, and a small evaluator for the PromQL subset the
//! Grafana dashboard uses, so a test can check that every panel's query returns data.
//!
//! # Supported
//! - selectors `name{label="v", label!="v", label=~"re", label!~"re"}`, instant or with a
//!   range (`[5m]`, `[$__rate_interval]`, `[$__range]`: every range means "all scrapes");
//! - `rate(…)` and `increase(…)` (last minus first sample, counter resets taken as a
//!   restart from zero; no extrapolation);
//! - `sum`, `max`, `min`, `avg` and `count`, with `by (…)` before or after the argument;
//! - `histogram_quantile(φ, …)` (Prometheus's linear interpolation within a bucket).
//!
//! Each scrape gets the `job` and `instance` labels Prometheus would add, and an `up`
//! sample (1, or 0 for a target that did not answer). Anything outside the subset is a
//! parse error, so a new dashboard query that the evaluator cannot read fails the test
//! instead of passing unchecked.

use std::collections::BTreeMap;

/// A label set.
pub type Labels = BTreeMap<String, String>;

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (`pinnacle_orders_total`, `…_bucket`).
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// Parses the text exposition format (Pinnacle's label values hold no escaped quotes).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Every scrape of every target, in time order.
#[derive(Debug, Default, Clone)]
pub struct Tsdb {
    /// (seconds since the first scrape, samples with `job`/`instance` added).
    scrapes: Vec<(f64, Vec<Sample>)>,
}

impl Tsdb {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one round of scrapes taken at `at` seconds: per target its job, instance and
    /// exposition text (`None` when it did not answer: `up` 0 and nothing else).
    pub fn add_round(&mut self, at: f64, targets: &[(&str, &str, Option<&str>)]) {
        let mut samples = Vec::new();
        for (job, instance, text) in targets {
            let mut up = Labels::new();
            up.insert("job".into(), job.to_string());
            up.insert("instance".into(), instance.to_string());
            samples.push(Sample {
                name: "up".into(),
                labels: up.clone(),
                value: if text.is_some() { 1.0 } else { 0.0 },
            });
            for mut sample in text.map(parse_exposition).unwrap_or_default() {
                sample.labels.extend(up.clone());
                samples.push(sample);
            }
        }
        self.scrapes.push((at, samples));
    }

    /// Evaluates `query` at the last round; the result's series and values.
    pub fn query(&self, query: &str) -> Result<Vec<(Labels, f64)>, String> {
        let expr = Parser::new(query)?.parse()?;
        self.eval(&expr)
    }

    fn eval(&self, expr: &Expr) -> Result<Vec<(Labels, f64)>, String> {
        match expr {
            Expr::Number(_) => Err("a bare number is not a vector".into()),
            Expr::Selector { range: true, .. } => {
                Err("a range selector outside rate/increase".into())
            }
            Expr::Selector { name, matchers, .. } => {
                let Some((_, last)) = self.scrapes.last() else {
                    return Ok(Vec::new());
                };
                Ok(last
                    .iter()
                    .filter(|s| selects(s, name, matchers))
                    .map(|s| (s.labels.clone(), s.value))
                    .collect())
            }
            Expr::Call { function, args } => self.call(function, args),
            Expr::Aggregate { op, by, arg } => {
                let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
                for (labels, value) in self.eval(arg)? {
                    let key = labels.into_iter().filter(|(k, _)| by.contains(k)).collect();
                    groups.entry(key).or_default().push(value);
                }
                Ok(groups
                    .into_iter()
                    .map(|(labels, values)| (labels, op.apply(&values)))
                    .collect())
            }
        }
    }

    fn call(&self, function: &str, args: &[Expr]) -> Result<Vec<(Labels, f64)>, String> {
        match (function, args) {
            (
                "rate" | "increase",
                [Expr::Selector {
                    name,
                    matchers,
                    range: true,
                }],
            ) => {
                let Some((t1, last)) = self.scrapes.last() else {
                    return Ok(Vec::new());
                };
                let mut out = Vec::new();
                for sample in last.iter().filter(|s| selects(s, name, matchers)) {
                    // The series' first point in the window and its last.
                    let first = self.scrapes.iter().find_map(|(at, samples)| {
                        samples
                            .iter()
                            .find(|s| s.name == sample.name && s.labels == sample.labels)
                            .map(|s| (*at, s.value))
                    });
                    let Some((at, value)) = first.filter(|(at, _)| at < t1) else {
                        continue; // one point: no rate, as in Prometheus
                    };
                    let delta = if sample.value >= value {
                        sample.value - value
                    } else {
                        sample.value
                    };
                    let result = if function == "rate" {
                        delta / (t1 - at)
                    } else {
                        delta
                    };
                    out.push((sample.labels.clone(), result));
                }
                Ok(out)
            }
            ("histogram_quantile", [Expr::Number(q), vector]) => {
                let mut histograms: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
                for (mut labels, value) in self.eval(vector)? {
                    let le = labels
                        .remove("le")
                        .ok_or("histogram_quantile over series without `le`")?;
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().map_err(|_| format!("bad le {le}"))?
                    };
                    histograms.entry(labels).or_default().push((bound, value));
                }
                Ok(histograms
                    .into_iter()
                    .map(|(labels, buckets)| (labels, quantile(*q, buckets)))
                    .collect())
            }
            _ => Err(format!("unsupported call {function}({args:?})")),
        }
    }
}

/// Prometheus's `histogram_quantile` over cumulative (upper bound, count) buckets.
fn quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total == 0.0 || !buckets.last().is_some_and(|b| b.0.is_infinite()) {
        return f64::NAN;
    }
    let rank = q * total;
    let index = buckets
        .iter()
        .position(|(_, count)| *count >= rank)
        .unwrap_or(buckets.len() - 1);
    if index == buckets.len() - 1 {
        return buckets
            .get(buckets.len().saturating_sub(2))
            .map_or(f64::NAN, |b| b.0);
    }
    let (upper, count) = buckets[index];
    let (lower, below) = if index == 0 {
        (0.0, 0.0)
    } else {
        buckets[index - 1]
    };
    if count == below {
        return upper;
    }
    lower + (upper - lower) * (rank - below) / (count - below)
}

fn selects(sample: &Sample, name: &str, matchers: &[Matcher]) -> bool {
    sample.name == name && matchers.iter().all(|m| m.matches(&sample.labels))
}

/// A label matcher.
#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: MatchOp,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Matcher {
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.label).map_or("", String::as_str);
        match self.op {
            MatchOp::Eq => value == self.value,
            MatchOp::Ne => value != self.value,
            MatchOp::Re | MatchOp::NotRe => {
                let matched = regex::Regex::new(&format!("^(?:{})$", self.value))
                    .is_ok_and(|re| re.is_match(value));
                matched == (self.op == MatchOp::Re)
            }
        }
    }
}

/// An aggregation operator.
#[derive(Debug, Clone, Copy)]
enum AggOp {
    Sum,
    Max,
    Min,
    Avg,
    Count,
}

impl AggOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "sum" => Self::Sum,
            "max" => Self::Max,
            "min" => Self::Min,
            "avg" => Self::Avg,
            "count" => Self::Count,
            _ => return None,
        })
    }

    fn apply(self, values: &[f64]) -> f64 {
        let sum: f64 = values.iter().sum();
        match self {
            Self::Sum => sum,
            Self::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Self::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Self::Avg => sum / values.len() as f64,
            Self::Count => values.len() as f64,
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone)]
enum Expr {
    Number(f64),
    Selector {
        name: String,
        matchers: Vec<Matcher>,
        range: bool,
    },
    Call {
        function: String,
        args: Vec<Expr>,
    },
    Aggregate {
        op: AggOp,
        by: Vec<String>,
        arg: Box<Expr>,
    },
}

/// A recursive-descent parser over the query's characters.
struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn new(query: &str) -> Result<Self, String> {
        if query.trim().is_empty() {
            return Err("empty query".into());
        }
        Ok(Self {
            chars: query.chars().collect(),
            at: 0,
        })
    }

    fn parse(mut self) -> Result<Expr, String> {
        let expr = self.expr()?;
        self.skip_space();
        if self.at != self.chars.len() {
            return Err(format!(
                "unsupported syntax at {}: {}",
                self.at,
                self.rest()
            ));
        }
        Ok(expr)
    }

    fn rest(&self) -> String {
        self.chars[self.at..].iter().collect()
    }

    fn skip_space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.get(self.at).copied()
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {c:?} at {}: {}", self.at, self.rest()))
        }
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let start = self.at;
        while self
            .chars
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn expr(&mut self) -> Result<Expr, String> {
        if self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
            let start = self.at;
            while self
                .chars
                .get(self.at)
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                self.at += 1;
            }
            let text: String = self.chars[start..self.at].iter().collect();
            return text
                .parse()
                .map(Expr::Number)
                .map_err(|_| format!("bad number {text}"));
        }
        let word = self.word();
        if word.is_empty() {
            return Err(format!("expected a name at {}: {}", self.at, self.rest()));
        }
        if let Some(op) = AggOp::parse(&word) {
            let mut by = self.by()?;
            self.expect('(')?;
            let arg = self.expr()?;
            self.expect(')')?;
            if by.is_empty() {
                by = self.by()?;
            }
            return Ok(Expr::Aggregate {
                op,
                by,
                arg: Box::new(arg),
            });
        }
        if self.peek() == Some('(') {
            self.at += 1;
            let mut args = vec![self.expr()?];
            while self.peek() == Some(',') {
                self.at += 1;
                args.push(self.expr()?);
            }
            self.expect(')')?;
            return Ok(Expr::Call {
                function: word,
                args,
            });
        }
        let mut matchers = Vec::new();
        if self.peek() == Some('{') {
            self.at += 1;
            while self.peek() != Some('}') {
                matchers.push(self.matcher()?);
                if self.peek() == Some(',') {
                    self.at += 1;
                }
            }
            self.expect('}')?;
        }
        let mut range = false;
        if self.peek() == Some('[') {
            while self.chars.get(self.at).is_some_and(|c| *c != ']') {
                self.at += 1;
            }
            self.expect(']')?;
            range = true;
        }
        Ok(Expr::Selector {
            name: word,
            matchers,
            range,
        })
    }

    /// `by (a, b)`, or nothing.
    fn by(&mut self) -> Result<Vec<String>, String> {
        let mark = self.at;
        if self.word() != "by" {
            self.at = mark;
            return Ok(Vec::new());
        }
        self.expect('(')?;
        let mut labels = Vec::new();
        while self.peek() != Some(')') {
            labels.push(self.word());
            if self.peek() == Some(',') {
                self.at += 1;
            }
            if labels.last().is_some_and(String::is_empty) {
                return Err(format!("bad by clause at {}", self.at));
            }
        }
        self.expect(')')?;
        Ok(labels)
    }

    fn matcher(&mut self) -> Result<Matcher, String> {
        let label = self.word();
        self.skip_space();
        let two: String = self.chars[self.at..].iter().take(2).collect();
        let (op, len) = match two.as_str() {
            "=~" => (MatchOp::Re, 2),
            "!~" => (MatchOp::NotRe, 2),
            "!=" => (MatchOp::Ne, 2),
            _ if two.starts_with('=') => (MatchOp::Eq, 1),
            _ => return Err(format!("bad matcher at {}: {}", self.at, self.rest())),
        };
        self.at += len;
        self.expect('"')?;
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|c| *c != '"') {
            self.at += 1;
        }
        let value = self.chars[start..self.at].iter().collect();
        self.expect('"')?;
        Ok(Matcher { label, op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "# TYPE x counter\n\
        req_total{verb=\"place\",outcome=\"filled\"} 1\n\
        req_total{verb=\"place\",outcome=\"rejected\"} 2\n\
        lat_bucket{le=\"0.1\"} 0\nlat_bucket{le=\"1\"} 0\nlat_bucket{le=\"+Inf\"} 0\n\
        gauge 3\n";
    const SECOND: &str = "req_total{verb=\"place\",outcome=\"filled\"} 11\n\
        req_total{verb=\"place\",outcome=\"rejected\"} 2\n\
        req_total{verb=\"get\",outcome=\"ok\"} 5\n\
        lat_bucket{le=\"0.1\"} 5\nlat_bucket{le=\"1\"} 10\nlat_bucket{le=\"+Inf\"} 10\n\
        gauge 7\n";

    fn db() -> Tsdb {
        let mut db = Tsdb::new();
        db.add_round(
            0.0,
            &[("w", "a:1", Some(FIRST)), ("p", "b:2", Some("gauge 1\n"))],
        );
        db.add_round(10.0, &[("w", "a:1", Some(SECOND)), ("p", "b:2", None)]);
        db
    }

    fn one(db: &Tsdb, query: &str) -> f64 {
        let result = db.query(query).expect(query);
        assert_eq!(result.len(), 1, "{query}: {result:?}");
        result[0].1
    }

    #[test]
    fn evaluates_the_dashboards_subset() {
        let db = db();
        assert_eq!(one(&db, "sum(rate(req_total[$__rate_interval]))"), 1.0);
        assert_eq!(
            one(
                &db,
                r#"sum by (outcome) (increase(req_total{outcome!~"ok|filled"}[5m]))"#
            ),
            0.0
        );
        // A series with one point has no rate.
        assert_eq!(
            db.query("rate(req_total{verb=\"get\"}[1m])")
                .expect("query"),
            vec![]
        );
        assert_eq!(one(&db, "max(gauge)"), 7.0, "the last round only");
        assert_eq!(one(&db, "up{job=\"p\"}"), 0.0);
        assert_eq!(db.query("sum by (job) (up)").expect("query").len(), 2);
        // 5 of 10 in (0, 0.1], 5 in (0.1, 1]: the median is at 0.1, p90 interpolated.
        let q = "histogram_quantile(0.5, sum by (le) (rate(lat_bucket[1m])))";
        assert!((one(&db, q) - 0.1).abs() < 1e-9);
        let q = "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[1m])))";
        assert!((one(&db, q) - 0.82).abs() < 1e-9, "{}", one(&db, q));
        assert_eq!(db.query("max(absent_metric)").expect("query"), vec![]);
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        let db = db();
        for query in [
            "gauge > 1",
            "topk(1, gauge)",
            "sum(gauge) / 2",
            "",
            "rate(gauge)",
        ] {
            assert!(db.query(query).is_err(), "{query}");
        }
    }
}
