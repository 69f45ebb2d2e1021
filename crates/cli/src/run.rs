//! `sipmeter run TEST.toml` and `sipmeter demo`: run a test, show progress, print the summary,
//! write reports, and exit 0 (passed), 1 (ran but failed) or 2 (bad file or setup).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use agent::engine::{EndpointReport, Outcome, RunEvent, RunSummary, StopHandle};
use agent::runner::execute;
use agent::testfile::{Prepared, prepare_with, verdict};

/// Arguments of `sipmeter run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The test file (TOML).
    file: PathBuf,
    /// DNS server for the registrar's domain, ADDRESS:PORT (overrides the file's `dns_server`).
    #[arg(long, value_name = "ADDRESS:PORT")]
    dns_server: Option<std::net::SocketAddr>,
    #[command(flatten)]
    out: OutputArgs,
}

/// Arguments of `sipmeter demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    out: OutputArgs,
}

/// Where results go.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Write the full report (summary, endpoints, traces of failures) as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write a JUnit XML file (one test case per endpoint) for CI.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write one CSV row per endpoint: outcome, codes, timings, MOS, jitter, loss, RTT.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the per-second media samples as CSV: one row per second of each call, one
    /// column per metric (keeps the samples whatever the test's size, as --samples).
    #[arg(long, value_name = "FILE")]
    samples_csv: Option<PathBuf>,
    /// Write the report as one self-contained HTML page: verdict, overview, outcomes,
    /// groups, per-second media charts, the endpoints' table, and a SIP ladder diagram of
    /// each endpoint whose trace is kept (failed ones, or all with --all-traces).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the SIP messages of each endpoint whose trace is kept (failed ones, or all with
    /// --all-traces) as DIR/<id>-<user>.pcap, and all of them merged as DIR/all.pcap.
    #[arg(long, value_name = "DIR")]
    pcap: Option<PathBuf>,
    /// Keep the SIP trace of every endpoint in the report, not only of failed ones.
    #[arg(long)]
    all_traces: bool,
    /// Keep every per-second media sample in the report (default: when the test has at most
    /// 100 endpoints).
    #[arg(long)]
    samples: bool,
    /// Event loops (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

const DEMO: &str = include_str!("../../../examples/demo.toml");

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn secret() -> Vec<u8> {
    // A per-run secret for ephemeral credentials: time and process id are enough here, as
    // the credentials only live on loopback for the length of the run.
    format!("sipmeter-{}-{}", std::process::id(), now_unix()).into_bytes()
}

/// `sipmeter run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sipmeter: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    execute_file(&name, &text, &args.out, args.dns_server)
}

/// `sipmeter demo`.
pub fn demo(args: &DemoArgs) -> ExitCode {
    execute_file("demo.toml (embedded)", DEMO, &args.out, None)
}

fn execute_file(
    name: &str,
    text: &str,
    out: &OutputArgs,
    dns_server: Option<std::net::SocketAddr>,
) -> ExitCode {
    // No huge pages from the start (the engine turns them off too, but by then this thread
    // has faulted in the plan's memory as 2 MB pages): 6,000 calls at 2,000/s peaked at
    // 32 MB RSS with the engine's call alone, 21–24 MB with this one.
    let _ = agent::callmedia::disable_huge_pages();
    let mut prepared: Prepared = match prepare_with(name, text, &secret(), now_unix(), dns_server) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sipmeter: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(w) = out.workers {
        prepared.plan.shards = w.max(1);
    }
    prepared.plan.keep_all_traces = out.all_traces;
    let endpoints: usize = prepared.plan.groups.iter().map(|g| g.endpoints.len()).sum();
    prepared.plan.keep_samples = out.samples || out.samples_csv.is_some() || endpoints <= 100;
    println!(
        "running \"{}\": {endpoints} endpoints on {} shard(s)",
        prepared.plan.name, prepared.plan.shards
    );
    let pass = std::mem::take(&mut prepared.pass);
    let name = prepared.plan.name.clone();
    let stop = StopHandle::default();
    watch_ctrl_c(stop.clone());
    let (tx, rx) = mpsc::channel();
    let quiet = out.quiet;
    let printer = std::thread::spawn(move || {
        // Not on the media clock: it does not preempt a shard (agent::callmedia).
        let _background =
            agent::callmedia::background_thread("printer", agent::callmedia::BACKGROUND_NICE);
        show_progress(&rx, quiet);
    });
    let result = execute(prepared, tx, stop);
    // The printer polls (see `polled`): the run is over, it need not wait for its next look.
    printer.thread().unpark();
    let _ = printer.join();
    let (summary, reports) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipmeter: the run could not start: {e}");
            return ExitCode::from(2);
        }
    };
    print_summary(&summary, &reports);
    if let Some(path) = &out.report
        && let Err(e) = write_report(path, &summary, &reports)
    {
        eprintln!("sipmeter: cannot write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    if let Some(dir) = &out.pcap {
        match agent::pcap::write_run_pcaps(dir, &reports) {
            Ok(p) => {
                println!(
                    "pcap             {} endpoint file(s) and {} ({} packets)",
                    p.endpoint_files.len(),
                    p.all.display(),
                    p.packets
                );
                if p.endpoint_files.is_empty() && !out.all_traces {
                    println!(
                        "                 (traces are kept for failed endpoints only: add --all-traces)"
                    );
                }
            }
            Err(e) => {
                eprintln!("sipmeter: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &out.junit
        && let Err(e) = std::fs::write(path, junit(&summary, &reports))
    {
        eprintln!("sipmeter: cannot write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    for (path, write) in [
        (&out.csv, crate::csv::endpoints as CsvWriter),
        (&out.samples_csv, crate::csv::samples),
    ] {
        if let Some(path) = path
            && let Err(e) = write_csv(path, &reports, write)
        {
            eprintln!("sipmeter: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let verdict = verdict(&summary, &pass);
    if let Some(path) = &out.html
        && let Err(e) = std::fs::write(path, crate::html::page(&name, &summary, &reports, &verdict))
    {
        eprintln!("sipmeter: cannot write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    match verdict {
        Ok(()) => {
            println!("PASSED");
            ExitCode::SUCCESS
        }
        Err(why) => {
            for w in why {
                println!("FAILED: {w}");
            }
            ExitCode::from(1)
        }
    }
}

/// A CSV table of the endpoints' reports ([`crate::csv`]).
type CsvWriter =
    fn(&mut std::io::BufWriter<std::fs::File>, &[EndpointReport]) -> std::io::Result<()>;

fn write_csv(path: &PathBuf, reports: &[EndpointReport], write: CsvWriter) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    write(&mut f, reports)?;
    f.flush()
}

/// The per-group table of a run of several groups.
fn print_groups(s: &RunSummary) {
    let f = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    println!(
        "{:<16} {:>9} {:>8} {:>8} {:>9} {:>9} {:>6} {:>8} {:>8} {:>7} {:>10}",
        "group",
        "endpoints",
        "success",
        "other",
        "attempted",
        "answered",
        "ASR %",
        "MOS avg",
        "MOS min",
        "loss %",
        "setup P95"
    );
    for g in &s.groups {
        let success = g.outcomes.get("SUCCESS").copied().unwrap_or(0);
        println!(
            "{:<16} {:>9} {:>8} {:>8} {:>9} {:>9} {:>6} {:>8} {:>8} {:>7} {:>10}",
            g.name,
            g.endpoints,
            success,
            g.endpoints - success,
            g.calls_attempted,
            g.calls_answered,
            f(g.asr, 1),
            f(g.mos_avg, 2),
            f(g.mos_min, 2),
            f(g.loss_avg_percent, 2),
            fmt_ms(g.setup_p95_ms)
        );
    }
}

pub(crate) fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"))
}

/// The live view: one line updated in place on a terminal (indicatif), one line per second
/// otherwise (CI logs). "MOS now" is the mean received MOS of the samples of the last second.
fn show_progress(rx: &mpsc::Receiver<RunEvent>, quiet: bool) {
    use std::io::IsTerminal;
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    });
    let mut mos = (0.0, 0u32);
    for ev in polled(rx) {
        match ev {
            RunEvent::Sample(s) => {
                if let Some(&(_, v)) = s.metrics.iter().find(|(k, _)| *k == "rx_mos") {
                    mos = (mos.0 + v, mos.1 + 1);
                }
            }
            RunEvent::Progress(p) if !quiet => {
                let now = if mos.1 > 0 {
                    format!("  MOS now {:.2}", mos.0 / f64::from(mos.1))
                } else {
                    String::new()
                };
                mos = (0.0, 0);
                let line = format!(
                    "registered {:>5}  calling {:>5}  in call {:>5}  done {:>5}  failed {:>5}{now}",
                    p.registered, p.calling, p.in_call, p.done, p.failed
                );
                match &bar {
                    Some(b) => b.set_message(line),
                    None => eprintln!("  {line}"),
                }
            }
            _ => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// How long the live view sleeps when no event waits. It shows a line a second, so a
/// tenth of that is prompt enough.
const PROGRESS_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The events of `rx` until the run's sender is gone, taken by polling: what waits is
/// drained, then the thread parks for [`PROGRESS_POLL`] (or until unparked: the run ended). A receiver blocked in `recv` is woken
/// by the sender for each event that finds it parked (a futex wake and two context
/// switches, in the engine's collecting thread): at 3,000 calls/s that was 0.2–0.5 futex
/// calls per call, all of the process's.
fn polled(rx: &mpsc::Receiver<RunEvent>) -> impl Iterator<Item = RunEvent> + '_ {
    std::iter::from_fn(move || {
        loop {
            match rx.try_recv() {
                Ok(ev) => return Some(ev),
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) => std::thread::park_timeout(PROGRESS_POLL),
            }
        }
    })
}

/// First Ctrl-C: stop the run gracefully (calls hang up, endpoints un-register, the report
/// is written). Second Ctrl-C: quit at once.
pub(crate) fn watch_ctrl_c(stop: StopHandle) {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            // The handler is installed before the run goes on (`ready`): a Ctrl-C right at
            // the start stops the run rather than killing the process.
            #[cfg(unix)]
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let interrupt = signal(SignalKind::interrupt());
                let _ = ready_tx.send(());
                let Ok(mut interrupt) = interrupt else {
                    return;
                };
                if interrupt.recv().await.is_none() {
                    return;
                }
                eprintln!("stopping: hanging up, un-registering (Ctrl-C again to quit at once)");
                stop.stop();
                if interrupt.recv().await.is_some() {
                    std::process::exit(130);
                }
            });
            #[cfg(not(unix))]
            rt.block_on(async {
                let _ = ready_tx.send(());
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                eprintln!("stopping: hanging up, un-registering (Ctrl-C again to quit at once)");
                stop.stop();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
    match spawned {
        Ok(_) => {
            let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(1));
        }
        Err(e) => eprintln!("sipmeter: Ctrl-C will not stop the run gracefully: {e}"),
    }
}

fn print_summary(s: &RunSummary, reports: &[EndpointReport]) {
    println!();
    if s.stopped {
        println!("stopped on request after {:.1} s", s.duration_ms / 1000.0);
    }
    for (i, note) in s.discovery.iter().enumerate() {
        println!(
            "{}{note}",
            if i == 0 {
                "server (DNS)     "
            } else {
                "                 "
            }
        );
    }
    println!("endpoints        {}", s.endpoints);
    let mut outcomes: Vec<_> = s.outcomes.iter().collect();
    outcomes.sort();
    for (o, n) in outcomes {
        println!("  {o:<22} {n}");
    }
    println!(
        "calls            {} attempted, {} answered",
        s.calls_attempted, s.calls_answered
    );
    let t = &s.transfers;
    if t.sent > 0 {
        println!(
            "transfers        {} sent, {} accepted, {} succeeded, {} failed, {} unknown (REFER)",
            t.sent, t.accepted, t.succeeded, t.failed, t.unknown
        );
    }
    if t.attended > 0 {
        println!(
            "attended         {} begun, {} consultation calls answered (hold, consult, REFER \
             with Replaces)",
            t.attended, t.consult_answered
        );
    }
    if t.replaced > 0 {
        println!(
            "replaced         {} calls by an INVITE with Replaces (RFC 3891)",
            t.replaced
        );
    }
    println!(
        "ASR / NER        {} / {}",
        s.asr.map_or("-".into(), |v| format!("{v:.1} %")),
        s.ner.map_or("-".into(), |v| format!("{v:.1} %"))
    );
    println!(
        "call setup       P50 {}  P95 {}  P99 {}",
        fmt_ms(s.setup_p50_ms),
        fmt_ms(s.setup_p95_ms),
        fmt_ms(s.setup_p99_ms)
    );
    println!(
        "post-dial delay  P50 {}  P95 {}  P99 {}",
        fmt_ms(s.pdd_p50_ms),
        fmt_ms(s.pdd_p95_ms),
        fmt_ms(s.pdd_p99_ms)
    );
    match s.mos_avg {
        Some(mos) => {
            let f = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.2}{unit}"));
            let silent = match (s.media_calls_without_audio, s.media_calls_with_gaps) {
                (0, 0) => String::new(),
                (n, 0) => format!(", {n} without audio, not rated"),
                (0, g) => format!(", {g} with audio gaps, not rated"),
                (n, g) => format!(", {n} without audio and {g} with audio gaps, not rated"),
            };
            println!(
                "MOS              avg {mos:.2}  min {}   ({} calls measured{silent}, ITU-T G.107/G.107.1)",
                f(s.mos_min, ""),
                s.media_calls
            );
            println!(
                "jitter / loss    avg {}  max {}  /  avg {}",
                f(s.jitter_avg_ms, " ms"),
                f(s.jitter_max_ms, " ms"),
                f(s.loss_avg_percent, " %")
            );
            println!("RTT (RTCP)       avg {}", f(s.rtt_avg_ms, " ms"));
            if s.xr_endpoints > 0 {
                println!(
                    "far end (XR)     MOS-CQ avg {}  min {}   ({} endpoints' far ends reported RTCP XR, RFC 3611)",
                    f(s.xr_mos_cq_avg, ""),
                    f(s.xr_mos_cq_min, ""),
                    s.xr_endpoints
                );
            }
        }
        None if s.media_calls_with_gaps > 0 => println!(
            "media            none of {} calls rated: {} without audio, {} with audio gaps (the longest {:.1} s)",
            s.media_calls,
            s.media_calls_without_audio,
            s.media_calls_with_gaps,
            s.media_gap_longest_s.unwrap_or_default()
        ),
        None if s.media_calls > 0 => println!(
            "media            no RTP received in any of {} calls: no MOS (no or one-way audio)",
            s.media_calls
        ),
        None => println!("media            none measured"),
    }
    if s.groups.len() > 1 {
        print_groups(s);
    }
    println!("run time         {:.1} s", s.duration_ms / 1000.0);
    if let (Some(p99), Some(max)) = (s.send_jitter_p99_ms, s.send_jitter_max_ms) {
        println!("RTP send timing  p99 {p99:.2} ms late  max {max:.1} ms (generator's own pacing)");
    }
    if s.generator_overloaded() {
        println!(
            "GENERATOR OVERLOADED: {} of {} timers fired >10 ms late (worst {:.1} ms), {} send errors, {} sends dropped (connection queue full), {} media send errors, RTP send-timing p99 {}: results may reflect sipmeter, not the server",
            s.late_timers,
            s.timers_fired,
            s.max_timer_lateness_ms,
            s.send_errors,
            s.dropped_sends,
            s.media_send_errors,
            s.send_jitter_p99_ms
                .map_or("-".into(), |v| format!("{v:.2} ms"))
        );
    } else if s.late_timers > 0 {
        println!(
            "timers           {} of {} fired >10 ms late (worst {:.1} ms)",
            s.late_timers, s.timers_fired, s.max_timer_lateness_ms
        );
    }
    if s.connections_opened > 0 {
        println!(
            "connections      {} opened (TCP/TLS/WS/WSS, reconnects included)",
            s.connections_opened
        );
    }
    if s.reconnects > 0 {
        println!(
            "reconnects       {} (connections lost and re-established)",
            s.reconnects
        );
    }
    if s.failovers > 0 {
        println!(
            "failovers        {} (requests moved to the next server, RFC 3263)",
            s.failovers
        );
    }
    if let Some(o) = &s.outbound {
        println!(
            "outbound         {} in use, {} not granted (RFC 5626); keep-alives {} sent, {} answered; flow failures {}, recoveries {}",
            o.endpoints_in_use,
            o.endpoints_not_granted,
            o.keepalives_sent,
            o.pongs,
            o.flow_failures,
            o.recoveries
        );
    }
    if !s.peer_reasons.is_empty() {
        let shown: Vec<String> = s
            .peer_reasons
            .iter()
            .take(5)
            .map(|r| format!("{} ×{}", r.label(), r.count))
            .collect();
        let more = s.peer_reasons.len().saturating_sub(shown.len());
        println!(
            "far end Reason   {}{} (RFC 3326, on BYE, CANCEL and INVITE failures)",
            shown.join(", "),
            if more > 0 {
                format!(", {more} more")
            } else {
                String::new()
            }
        );
    }
    for r in reports
        .iter()
        .filter(|r| r.outcome != Outcome::Success)
        .take(10)
    {
        println!(
            "  endpoint {} ({}/{}): {}: {}",
            r.id,
            r.group,
            r.user,
            r.outcome.name(),
            r.error.as_deref().unwrap_or("")
        );
    }
}

fn write_report(path: &PathBuf, s: &RunSummary, reports: &[EndpointReport]) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        summary: Summary<'a>,
        endpoints: &'a [EndpointReport],
    }
    /// The summary and the verdict on the generator itself, so a reader of the JSON never
    /// has to re-derive the overload rule.
    #[derive(serde::Serialize)]
    struct Summary<'a> {
        #[serde(flatten)]
        summary: &'a RunSummary,
        generator_overloaded: bool,
    }
    // Buffered: serde_json writes token by token, and an unbuffered file made that a
    // write(2) per token (a fifth of a short run's CPU for a 4 MB report).
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(
        &mut f,
        &Report {
            summary: Summary {
                summary: s,
                generator_overloaded: s.generator_overloaded(),
            },
            endpoints: reports,
        },
    )?;
    f.write_all(b"\n")?;
    f.flush()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per endpoint; failures carry the error and hint.
fn junit(s: &RunSummary, reports: &[EndpointReport]) -> String {
    let failures = reports
        .iter()
        .filter(|r| r.outcome.severity() >= 10)
        .count();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"sipmeter\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">\n",
        reports.len(),
        s.duration_ms / 1000.0
    );
    for r in reports {
        x.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"endpoint {} ({})\">",
            xml_escape(&r.group),
            r.id,
            xml_escape(&r.user)
        ));
        if r.outcome.severity() >= 10 {
            x.push_str(&format!(
                "<failure message=\"{}\">{}</failure>",
                r.outcome.name(),
                xml_escape(r.error.as_deref().unwrap_or(""))
            ));
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n");
    x
}
