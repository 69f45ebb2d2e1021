//! `sipmeter capacity TEST.toml`: the capacity search of `agent::capacity`, with a line per
//! level, the knee, whose limit it is, and a JSON report.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agent::capacity::{
    CapacityReport, Limit, Overrides, SearchOptions, Step, Vary, range_of, search,
};
use agent::engine::StopHandle;
use agent::testfile::parse;

use crate::run::{fmt_ms, now_unix, secret, watch_ctrl_c};

/// Arguments of `sipmeter capacity`.
#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// The test file (TOML); its `[capacity]` section, if any, sets the range.
    file: PathBuf,
    /// What to step up: `calls` (concurrent calls; every group scales) or `cps` (the
    /// calls-per-second cap).
    #[arg(long, value_parser = ["calls", "cps"])]
    vary: Option<String>,
    /// The first level (default: the file's own).
    #[arg(long)]
    start: Option<f64>,
    /// The highest level (default: 16 × start).
    #[arg(long)]
    max: Option<f64>,
    /// Add this much per step while climbing (default: double).
    #[arg(long)]
    step: Option<f64>,
    /// DNS server for the registrar's domain, ADDRESS:PORT.
    #[arg(long, value_name = "ADDRESS:PORT")]
    dns_server: Option<std::net::SocketAddr>,
    /// Event loops (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Write every level's summary, the knee and the limit as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn line(step: &Step) -> String {
    let s = &step.summary;
    let f2 = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    format!(
        "{:>9}  {:>9}  {:>6}  {:>8}  {:>7}  {:>10}  {:>5}  {}",
        step.level,
        step.endpoints,
        s.calls_attempted,
        s.calls_answered,
        s.asr.map_or("-".into(), |v| format!("{v:.1}%")),
        fmt_ms(s.setup_p95_ms),
        f2(s.mos_avg),
        if step.passed {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", step.failures.join("; "))
        } + if step.overloaded {
            " (generator overloaded)"
        } else {
            ""
        }
    )
}

/// `sipmeter capacity`.
pub fn run(args: &CapacityArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sipmeter: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let over = Overrides {
        vary: args
            .vary
            .as_deref()
            .map(|v| if v == "cps" { Vary::Cps } else { Vary::Calls }),
        start: args.start,
        max: args.max,
        step: args.step,
    };
    let (tf, range) = match parse(&name, &text).and_then(|tf| {
        let r = range_of(&name, &text, &tf, &over)?;
        Ok((tf, r))
    }) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sipmeter: {e}");
            return ExitCode::from(2);
        }
    };
    let vary = range.vary;
    println!(
        "capacity of \"{}\": {} from {} to {}, {}",
        tf.name,
        vary.unit(),
        range.start,
        range.max,
        range
            .step
            .map_or("doubling".into(), |s| format!("+{s} per step")),
    );
    println!(
        "{:>9}  {:>9}  {:>6}  {:>8}  {:>7}  {:>10}  {:>5}  verdict",
        "level", "endpoints", "calls", "answered", "ASR", "setup P95", "MOS"
    );
    let stop = StopHandle::default();
    watch_ctrl_c(stop.clone());
    let opts = SearchOptions {
        secret: secret(),
        now_unix: now_unix(),
        dns_server: args.dns_server,
        shards: args.workers,
    };
    let report = search(&name, &text, &tf, range, &opts, &stop, |step| {
        println!("{}", line(step));
        let _ = std::io::stdout().flush();
    });
    print_conclusion(&report);
    if let Some(path) = &args.report {
        let written = std::fs::File::create(path).and_then(|f| {
            let mut f = std::io::BufWriter::new(f);
            serde_json::to_writer_pretty(&mut f, &report)?;
            f.write_all(b"\n")?;
            f.flush()
        });
        if let Err(e) = written {
            eprintln!("sipmeter: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    match (&report.limit, report.knee) {
        (Limit::Setup(_), _) => ExitCode::from(2),
        (_, Some(_)) => ExitCode::SUCCESS,
        (_, None) => ExitCode::from(1),
    }
}

fn print_conclusion(r: &CapacityReport) {
    let unit = r.vary.unit();
    println!();
    match (&r.limit, r.knee, r.first_failure) {
        (Limit::Server, Some(k), Some(f)) => println!(
            "knee: {k} {unit} pass, {f} fail: the server's (or the path's) limit, with sipmeter keeping up"
        ),
        (Limit::Generator, k, _) => println!(
            "knee: at least {} {unit}: sipmeter itself fell behind (late timers or failed sends) when the criteria broke, so the server's limit may be higher; run with more workers or machines",
            k.map_or("-".into(), |k| k.to_string())
        ),
        (Limit::NotReached, Some(k), _) => {
            println!("no knee up to {k} {unit}: every level passed; raise max")
        }
        (Limit::FirstLevel, _, Some(f)) => {
            println!("the first level ({f} {unit}) already failed: start lower")
        }
        (Limit::Offer(why), k, _) => println!(
            "stopped: {why}{}",
            k.map_or(String::new(), |k| format!(" (last pass: {k} {unit})"))
        ),
        (Limit::Setup(why), _, _) => println!("stopped: {why}"),
        (Limit::Stopped, k, _) => println!(
            "stopped on request{}",
            k.map_or(String::new(), |k| format!(" (last pass: {k} {unit})"))
        ),
        _ => println!("no conclusion"),
    }
}
