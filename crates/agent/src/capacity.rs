//! Capacity search (`sipmeter capacity`): runs a test at rising load until its pass criteria
//! break, narrows the knee down by bisection, and says whose limit it found: the server's
//! (the criteria broke), the generator's (sipmeter itself fell behind when they broke), or
//! none (the highest level still passed).
//!
//! The load is either the number of concurrent calls (every group of the file is scaled in
//! proportion, so answering groups grow with the callers) or the calls-per-second cap. Each
//! level is a complete run of the file: register, call, hang up, un-register.

use std::net::SocketAddr;
use std::sync::mpsc;

use serde::Serialize;
use toml::Spanned;

use crate::engine::{RunSummary, StopHandle};
use crate::runner::execute;
use crate::testfile::{Ctx, FileError, TestFile, prepare_parsed, verdict};

/// What a capacity search varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vary {
    /// Concurrent calls: the endpoints of the calling groups (others scale along).
    Calls,
    /// The calls-per-second cap (`cps`).
    Cps,
}

impl Vary {
    /// How a level of this kind reads.
    pub fn unit(self) -> &'static str {
        match self {
            Vary::Calls => "concurrent calls",
            Vary::Cps => "calls/s",
        }
    }

    fn round(self, level: f64) -> f64 {
        match self {
            Vary::Calls => level.round().max(1.0),
            Vary::Cps => ((level * 10.0).round() / 10.0).max(0.1),
        }
    }
}

/// The levels a search may try.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// What is varied.
    pub vary: Vary,
    /// The first level.
    pub start: f64,
    /// The highest level.
    pub max: f64,
    /// Added per step while climbing; `None` doubles.
    pub step: Option<f64>,
    /// The knee is known once the last pass and the first failure are this close; `None`:
    /// 5 % of the last pass, at least one call (or 0.5 calls/s).
    pub precision: Option<f64>,
}

/// Command-line values that replace the file's `[capacity]` ones.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--vary`.
    pub vary: Option<Vary>,
    /// `--start`.
    pub start: Option<f64>,
    /// `--max`.
    pub max: Option<f64>,
    /// `--step`.
    pub step: Option<f64>,
}

fn calling_endpoints(tf: &TestFile) -> usize {
    tf.groups
        .iter()
        .filter(|g| g.call.is_some())
        .map(|g| *g.endpoints.get_ref())
        .sum()
}

/// Reads the search range from the file's `[capacity]` and the overrides. Defaults: vary
/// `calls`, start at the file's own level, max 16 × start, doubling.
pub fn range_of(
    file: &str,
    text: &str,
    tf: &TestFile,
    over: &Overrides,
) -> Result<Range, FileError> {
    let cx = Ctx { file, text };
    let entry = tf
        .capacity
        .clone()
        .unwrap_or(crate::testfile::CapacityEntry {
            vary: None,
            start: None,
            max: None,
            step: None,
            precision: None,
        });
    let vary = match (over.vary, &entry.vary) {
        (Some(v), _) => v,
        (None, None) => Vary::Calls,
        (None, Some(v)) => match v.get_ref().trim() {
            "calls" => Vary::Calls,
            "cps" => Vary::Cps,
            other => {
                return cx.err(
                    v.span(),
                    "capacity.vary",
                    format!(
                        "`{other}`: expected calls (concurrent calls) or cps (calls per second)"
                    ),
                );
            }
        },
    };
    let callers = calling_endpoints(tf);
    if callers == 0 {
        return cx.err(
            entry.vary.as_ref().map_or(0..0, Spanned::span),
            "capacity",
            "no group places calls (`call = …`): there is no load to step up",
        );
    }
    let own_level = match vary {
        Vary::Calls => callers as f64,
        Vary::Cps => tf
            .cps
            .as_ref()
            .and_then(|c| {
                c.get_ref()
                    .trim()
                    .trim_end_matches("/s")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(10.0),
    };
    let value = |o: Option<f64>, v: &Option<Spanned<f64>>, name: &str, default: f64| {
        let (n, span) = match (o, v) {
            (Some(n), _) => (n, 0..0),
            (None, Some(v)) => (*v.get_ref(), v.span()),
            (None, None) => (default, 0..0),
        };
        if n.is_finite() && n > 0.0 {
            Ok(n)
        } else {
            cx.err(
                span,
                format!("capacity.{name}"),
                format!("{n}: must be a positive number"),
            )
        }
    };
    let start = vary.round(value(over.start, &entry.start, "start", own_level)?);
    let max = vary.round(value(over.max, &entry.max, "max", start * 16.0)?);
    if max < start {
        return cx.err(
            entry.max.as_ref().map_or(0..0, Spanned::span),
            "capacity.max",
            format!("{max} is below start {start}"),
        );
    }
    let step = match (over.step, &entry.step) {
        (None, None) => None,
        _ => Some(value(over.step, &entry.step, "step", 1.0)?),
    };
    let precision = match &entry.precision {
        None => None,
        Some(_) => Some(value(None, &entry.precision, "precision", 1.0)?),
    };
    Ok(Range {
        vary,
        start,
        max,
        step,
        precision,
    })
}

/// The file with its load set to `level`.
pub fn at_level(tf: &TestFile, vary: Vary, level: f64) -> TestFile {
    let mut out = tf.clone();
    match vary {
        Vary::Cps => {
            let span = tf.cps.as_ref().map_or(0..0, Spanned::span);
            out.cps = Some(Spanned::new(span, format!("{level}/s")));
        }
        Vary::Calls => {
            let callers = calling_endpoints(tf) as f64;
            let factor = level / callers;
            // Calling groups share `level` exactly (largest remainder); the others scale
            // in proportion, at least one endpoint each.
            let mut shares: Vec<(usize, f64)> = Vec::new();
            for (i, g) in tf.groups.iter().enumerate() {
                let n = *g.endpoints.get_ref() as f64 * factor;
                if g.call.is_some() {
                    shares.push((i, n));
                } else {
                    let span = g.endpoints.span();
                    out.groups[i].endpoints = Spanned::new(span, (n.round() as usize).max(1));
                }
            }
            let mut given: usize = shares.iter().map(|&(_, n)| n.floor() as usize).sum();
            shares.sort_by(|a, b| (b.1 - b.1.floor()).total_cmp(&(a.1 - a.1.floor())));
            let target = level as usize;
            for &(i, n) in &shares {
                let mut k = n.floor() as usize;
                if given < target {
                    k += 1;
                    given += 1;
                }
                let span = tf.groups[i].endpoints.span();
                out.groups[i].endpoints = Spanned::new(span, k);
            }
        }
    }
    out
}

/// Chooses the levels: climb (add `step` or double) until a level fails or `max` passes,
/// then bisect between the last pass and the first failure.
#[derive(Debug, Clone)]
pub struct Planner {
    range: Range,
    passed: Option<f64>,
    failed: Option<f64>,
    started: bool,
}

impl Planner {
    /// A planner over `range`.
    pub fn new(range: Range) -> Self {
        Planner {
            range,
            passed: None,
            failed: None,
            started: false,
        }
    }

    /// The next level to run, or `None` when the search is over.
    pub fn next_level(&self) -> Option<f64> {
        let r = &self.range;
        if !self.started {
            return Some(r.start);
        }
        let lo = self.passed?;
        match self.failed {
            None => {
                if lo >= r.max {
                    return None;
                }
                let next = r.step.map_or(lo * 2.0, |s| lo + s);
                let next = r.vary.round(next.min(r.max));
                (next > lo).then_some(next)
            }
            Some(hi) => {
                let floor = match r.vary {
                    Vary::Calls => 1.0,
                    Vary::Cps => 0.5,
                };
                let precision = r.precision.unwrap_or((lo * 0.05).max(floor));
                if hi - lo <= precision {
                    return None;
                }
                let mid = r.vary.round((lo + hi) / 2.0);
                (mid > lo && mid < hi).then_some(mid)
            }
        }
    }

    /// Records the verdict of `level`.
    pub fn record(&mut self, level: f64, passed: bool) {
        self.started = true;
        if passed {
            self.passed = Some(self.passed.map_or(level, |p| p.max(level)));
        } else {
            self.failed = Some(self.failed.map_or(level, |f| f.min(level)));
        }
    }

    /// The highest level that passed.
    pub fn knee(&self) -> Option<f64> {
        self.passed
    }

    /// The lowest level that failed.
    pub fn first_failure(&self) -> Option<f64> {
        self.failed
    }
}

/// One level of a search.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The level run.
    pub level: f64,
    /// Endpoints in the run.
    pub endpoints: u32,
    /// The run's figures.
    pub summary: RunSummary,
    /// The pass criteria held.
    pub passed: bool,
    /// The criteria that broke.
    pub failures: Vec<String>,
    /// The generator fell behind (timers late, sends failed): a failure here is not the
    /// server's, unless the server refused every failed call with a final response.
    pub overloaded: bool,
}

/// Whose limit a search found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Limit {
    /// The pass criteria broke while sipmeter kept up: the server's (or the path's) limit.
    Server,
    /// The criteria broke while sipmeter itself was overloaded (and not only by the server's
    /// refusals): the knee is at least the last pass; run on more workers or machines to
    /// find the server's.
    Generator,
    /// Every level up to `max` passed.
    NotReached,
    /// The first level already failed: start lower.
    FirstLevel,
    /// The test could not offer the rate (too few callers or calls for the cps level).
    Offer(String),
    /// A level could not be set up (too few accounts, …).
    Setup(String),
    /// Stopped on request.
    Stopped,
}

/// The outcome of a search.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// What was varied.
    pub vary: Vary,
    /// Every level run, in order.
    pub steps: Vec<Step>,
    /// The highest level that passed.
    pub knee: Option<f64>,
    /// The lowest level that failed.
    pub first_failure: Option<f64>,
    /// Whose limit.
    pub limit: Limit,
}

/// What a search needs besides the file.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Keys ephemeral credentials (built-in registrar).
    pub secret: Vec<u8>,
    /// Unix time for credentials.
    pub now_unix: u64,
    /// `--dns-server`.
    pub dns_server: Option<SocketAddr>,
    /// `--workers`.
    pub shards: Option<usize>,
}

/// Runs the search; `on_step` sees each level as it ends. Errors are the file's (a bad
/// `[capacity]`); a level that cannot be set up ends the search with [`Limit::Setup`].
pub fn search(
    file: &str,
    text: &str,
    tf: &TestFile,
    range: Range,
    opts: &SearchOptions,
    stop: &StopHandle,
    mut on_step: impl FnMut(&Step),
) -> CapacityReport {
    let vary = range.vary;
    let mut planner = Planner::new(range);
    let mut steps = Vec::new();
    let mut limit = None;
    let base_seed = tf.seed.unwrap_or(opts.now_unix);
    while let Some(level) = planner.next_level() {
        let mut scaled = at_level(tf, vary, level);
        // Every level gets its own seed: with the same one, its Call-IDs, tags and branches
        // would repeat the previous level's, and a server still holding those transactions
        // would take the new requests for retransmissions (RFC 3261 §8.1.1.7: branches are
        // unique across time).
        scaled.seed =
            Some(base_seed ^ (steps.len() as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut prepared = match prepare_parsed(
            file,
            text,
            scaled,
            &opts.secret,
            opts.now_unix,
            opts.dns_server,
        ) {
            Ok(p) => p,
            Err(e) => {
                limit = Some(Limit::Setup(format!("at {level} {}: {e}", vary.unit())));
                break;
            }
        };
        if let Some(s) = opts.shards {
            prepared.plan.shards = s.max(1);
        }
        let endpoints = prepared
            .plan
            .groups
            .iter()
            .map(|g| g.endpoints.len() as u32)
            .sum();
        let pass = std::mem::take(&mut prepared.pass);
        // Progress of a level is not shown: the receiver goes away at once.
        let (tx, _) = mpsc::channel();
        let (summary, reports) = match execute(prepared, tx, stop.clone()) {
            Ok(r) => r,
            Err(e) => {
                limit = Some(Limit::Setup(format!(
                    "at {level} {}: the run could not start: {e}",
                    vary.unit()
                )));
                break;
            }
        };
        let failures = verdict(&summary, &pass).err().unwrap_or_default();
        let overloaded = summary.generator_overloaded();
        // A late generator can cause timeouts and poor media, not a refusal: when every
        // failed endpoint was refused by the server with a final response (a 4xx–6xx code
        // other than 408), the failure is the server's even on a busy machine.
        let refused_by_server = reports
            .iter()
            .filter(|r| r.outcome.severity() >= 10)
            .all(|r| {
                [r.call_code, r.registration_code]
                    .into_iter()
                    .flatten()
                    .any(|c| c >= 400 && c != 408)
            });
        let step = Step {
            level,
            endpoints,
            passed: failures.is_empty() && !summary.stopped,
            failures,
            overloaded,
            summary,
        };
        on_step(&step);
        let offered = step.summary.offered_cps;
        let stopped = step.summary.stopped;
        let (passed, failed_overloaded) = (
            step.passed,
            !step.passed && step.overloaded && !refused_by_server,
        );
        steps.push(step);
        if stopped {
            limit = Some(Limit::Stopped);
            break;
        }
        if failed_overloaded {
            limit = Some(Limit::Generator);
            break;
        }
        if vary == Vary::Cps && offered.is_none_or(|o| o < 0.9 * level) {
            limit = Some(Limit::Offer(format!(
                "at {level} calls/s the test offered {}: add callers or calls per caller (`calls`)",
                offered.map_or("fewer than two calls".into(), |o| format!("{o:.1} calls/s"))
            )));
            break;
        }
        planner.record(level, passed);
    }
    let limit = limit.unwrap_or(match (planner.knee(), planner.first_failure()) {
        (None, _) => Limit::FirstLevel,
        (Some(_), None) => Limit::NotReached,
        (Some(_), Some(_)) => Limit::Server,
    });
    CapacityReport {
        vary,
        steps,
        knee: planner.knee(),
        first_failure: planner.first_failure(),
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: f64, max: f64, step: Option<f64>) -> Range {
        Range {
            vary: Vary::Calls,
            start,
            max,
            step,
            precision: None,
        }
    }

    /// Drives the planner against a server whose limit is `limit` calls.
    fn levels(r: Range, limit: f64) -> (Vec<f64>, Option<f64>, Option<f64>) {
        let mut p = Planner::new(r);
        let mut seen = Vec::new();
        while let Some(l) = p.next_level() {
            assert!(seen.len() < 50, "the planner does not end: {seen:?}");
            seen.push(l);
            p.record(l, l <= limit);
        }
        (seen, p.knee(), p.first_failure())
    }

    #[test]
    fn doubles_then_bisects_to_the_exact_limit() {
        let (seen, knee, fail) = levels(range(2.0, 64.0, None), 8.0);
        assert_eq!(seen, [2.0, 4.0, 8.0, 16.0, 12.0, 10.0, 9.0]);
        assert_eq!((knee, fail), (Some(8.0), Some(9.0)));
    }

    #[test]
    fn additive_steps_and_max() {
        let (seen, knee, fail) = levels(range(10.0, 35.0, Some(10.0)), 1000.0);
        assert_eq!(seen, [10.0, 20.0, 30.0, 35.0]);
        assert_eq!((knee, fail), (Some(35.0), None));
    }

    #[test]
    fn first_level_failing_ends_the_search() {
        let (seen, knee, fail) = levels(range(10.0, 100.0, None), 5.0);
        assert_eq!(seen, [10.0]);
        assert_eq!((knee, fail), (None, Some(10.0)));
    }

    #[test]
    fn precision_stops_refining_early() {
        let r = Range {
            precision: Some(10.0),
            ..range(100.0, 1000.0, None)
        };
        // 100, 200 pass, 400 fails; bisect: 300 passes, 350, 325 and 313 fail, 307 passes:
        // 313 − 307 is within 10.
        let (seen, knee, fail) = levels(r, 310.0);
        assert_eq!(
            seen,
            [100.0, 200.0, 400.0, 300.0, 350.0, 325.0, 313.0, 307.0]
        );
        assert_eq!((knee, fail), (Some(307.0), Some(313.0)));
    }

    #[test]
    fn cps_levels_keep_a_decimal() {
        let r = Range {
            vary: Vary::Cps,
            ..range(1.5, 5.0, None)
        };
        let (seen, knee, fail) = levels(r, 4.0);
        assert_eq!(seen, [1.5, 3.0, 5.0, 4.0, 4.5]);
        assert_eq!((knee, fail), (Some(4.0), Some(4.5)));
    }

    const FILE: &str = r#"
name = "t"
duration = "1s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "callee"
endpoints = 10
registrar = "builtin"
role = "answer"

[[group]]
name = "a"
endpoints = 6
registrar = "builtin"
call = "group:callee"

[[group]]
name = "b"
endpoints = 4
registrar = "builtin"
call = "group:callee"

[capacity]
vary = "calls"
start = 5
max = 40
"#;

    #[test]
    fn scaling_keeps_the_proportions_and_the_exact_call_count() {
        let tf = crate::testfile::parse("t.toml", FILE).unwrap();
        let r = range_of("t.toml", FILE, &tf, &Overrides::default()).unwrap();
        assert_eq!(
            (r.vary, r.start, r.max, r.step),
            (Vary::Calls, 5.0, 40.0, None)
        );
        for level in [1.0, 5.0, 7.0, 13.0, 40.0] {
            let s = at_level(&tf, Vary::Calls, level);
            let n: Vec<usize> = s.groups.iter().map(|g| *g.endpoints.get_ref()).collect();
            assert_eq!(n[1] + n[2], level as usize, "{level}: {n:?}");
            assert_eq!(n[0], ((10.0 * level / 10.0).round() as usize).max(1));
        }
        let s = at_level(&tf, Vary::Cps, 12.5);
        assert_eq!(s.cps.as_ref().map(|c| c.get_ref().as_str()), Some("12.5/s"));
    }

    #[test]
    fn bad_capacity_fields_name_the_line() {
        let text = FILE.replace("vary = \"calls\"", "vary = \"users\"");
        let tf = crate::testfile::parse("t.toml", &text).unwrap();
        let e = range_of("t.toml", &text, &tf, &Overrides::default()).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("capacity.vary", 28), "{e}");
        let text = FILE.replace("max = 40", "max = 2");
        let tf = crate::testfile::parse("t.toml", &text).unwrap();
        let e = range_of("t.toml", &text, &tf, &Overrides::default()).unwrap_err();
        assert_eq!(e.field, "capacity.max", "{e}");
        let text = FILE.replace("start = 5", "start = -1");
        let tf = crate::testfile::parse("t.toml", &text).unwrap();
        let e = range_of("t.toml", &text, &tf, &Overrides::default()).unwrap_err();
        assert_eq!(e.field, "capacity.start", "{e}");
    }
}
