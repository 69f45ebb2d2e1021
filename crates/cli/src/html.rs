//! `--html FILE`: the run's report as one self-contained HTML page (no script or style from
//! elsewhere, so it can be mailed or attached to a CI job): the verdict, the overview cards,
//! the outcome distribution, the groups, per-second charts of the calls' media in both
//! directions, the endpoints' table, and for each endpoint whose trace was kept a SIP ladder
//! diagram, its own charts and every message in full.
//!
//! Everything is computed from the report itself ([`RunSummary`], [`EndpointReport`]); the
//! page holds no figure the JSON report does not. Charts are inline SVG; the one script
//! filters the endpoints' table.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;

use agent::engine::{EndpointReport, Outcome, RunSummary, SampleRecord};
use agent::hints::hint_for;
use agent::trace::{Direction, TraceEntry};

/// Endpoints listed in the table; more are counted and left to the JSON report.
const TABLE_ROWS: usize = 5_000;
/// Endpoints whose trace, ladder and charts are drawn (failed ones first).
const DETAILED: usize = 200;
/// Messages and notes drawn in one ladder.
const LADDER_ROWS: usize = 400;

/// A per-second chart: title, unit, the received direction's metric, the sent direction's
/// (as the far end reported it in RTCP), and the factor to the unit.
type Chart = (&'static str, &'static str, &'static str, &'static str, f64);

/// The per-second metrics charted.
const CHARTS: [Chart; 4] = [
    ("MOS", "", "rx_mos", "tx_mos", 1.0),
    ("Jitter", "ms", "rx_jitter_ms", "tx_jitter_ms", 1.0),
    (
        "Loss",
        "% of the interval's packets",
        "rx_fraction_lost",
        "tx_fraction_lost",
        100.0,
    ),
    (
        "Packet rate",
        "packets/s",
        "rx_packet_rate",
        "tx_packet_rate",
        1.0,
    ),
];

/// Samples of an interval shorter than this (the part-second at a call's end) are left out
/// of the charts: a rate over a few milliseconds says little. The JSON keeps them.
const MIN_INTERVAL_S: f64 = 0.5;

/// The samples charted: each call's, without its short last part-second.
fn charted<'a>(samples: impl Iterator<Item = &'a SampleRecord>) -> Vec<&'a SampleRecord> {
    let mut all: Vec<&SampleRecord> = samples.collect();
    all.sort_by(|a, b| {
        (a.endpoint, a.call)
            .cmp(&(b.endpoint, b.call))
            .then(a.t.total_cmp(&b.t))
    });
    let mut out = Vec::with_capacity(all.len());
    let mut prev: Option<&SampleRecord> = None;
    for s in all {
        let since = match prev {
            Some(p) if (p.endpoint, p.call) == (s.endpoint, s.call) => s.t - p.t,
            _ => s.t,
        };
        if since >= MIN_INTERVAL_S {
            out.push(s);
        }
        prev = Some(s);
    }
    out
}

/// The page of test `name`. `verdict` is the run's pass/fail as the exit code says it.
pub(crate) fn page(
    name: &str,
    s: &RunSummary,
    reports: &[EndpointReport],
    verdict: &Result<(), Vec<String>>,
) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(h, "<title>sipmeter: {}</title>", esc(name));
    h.push_str(STYLE);
    h.push_str("</head><body>\n");
    header(&mut h, name, s, verdict);
    cards(&mut h, s);
    outcomes(&mut h, s);
    reasons(&mut h, s);
    groups(&mut h, s);
    let samples = charted(reports.iter().flat_map(|r| r.samples.iter()));
    if !samples.is_empty() {
        h.push_str("<section><h2>Media, second by second</h2>");
        h.push_str(
            "<p class=\"muted\">Each second of a call (from its media's start), averaged over \
             every call that lasted that long (a call's last part-second left out); the band is the \
             lowest and highest call. \
             <b>Received</b>: what we measured of the far end's stream (RFC 3550, G.107). \
             <b>Sent</b>: our stream as the far end reported it in RTCP.</p><div class=\"charts\">",
        );
        for chart in CHARTS {
            h.push_str(&chart_svg(chart, &samples));
        }
        h.push_str("</div></section>\n");
    }
    endpoints(&mut h, reports);
    details(&mut h, reports);
    h.push_str(SCRIPT);
    h.push_str("</body></html>\n");
    h
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A figure with its unit, or a dash.
fn fig(v: Option<f64>, decimals: usize, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}{unit}"),
        _ => "–".to_owned(),
    }
}

/// The CSS class of an outcome's colour.
fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "ok",
        Outcome::CompletedWithWarnings => "warn",
        _ => "bad",
    }
}

fn header(h: &mut String, name: &str, s: &RunSummary, verdict: &Result<(), Vec<String>>) {
    let _ = write!(h, "<header><h1>{}</h1>", esc(name));
    match verdict {
        Ok(()) => h.push_str("<p class=\"verdict ok\" id=\"verdict\">PASSED</p>"),
        Err(why) => {
            h.push_str("<div class=\"verdict bad\" id=\"verdict\">FAILED<ul>");
            for w in why {
                let _ = write!(h, "<li>{}</li>", esc(w));
            }
            h.push_str("</ul></div>");
        }
    }
    let _ = write!(
        h,
        "<p class=\"muted\">{} endpoints, {:.1} s{}</p>",
        s.endpoints,
        s.duration_ms / 1000.0,
        if s.stopped {
            ", stopped before its end"
        } else {
            ""
        }
    );
    if s.generator_overloaded() {
        let _ = write!(
            h,
            "<p class=\"verdict warn\">The generator itself was overloaded ({} of {} timers \
             late, worst {:.0} ms; {} dropped sends; RTP send p99 {}): figures may reflect \
             this machine, not the server under test.</p>",
            s.late_timers,
            s.timers_fired,
            s.max_timer_lateness_ms,
            s.dropped_sends,
            fig(s.send_jitter_p99_ms, 2, " ms"),
        );
    }
    for d in &s.discovery {
        let _ = write!(h, "<p class=\"muted\">{}</p>", esc(d));
    }
    h.push_str("</header>\n");
}

fn cards(h: &mut String, s: &RunSummary) {
    let pct = |v: Option<f64>| fig(v, 1, " %");
    let ms = |v: Option<f64>| fig(v, 0, " ms");
    let cards: [(&str, String, String); 8] = [
        (
            "Calls",
            format!("{} / {}", s.calls_answered, s.calls_attempted),
            "answered / attempted".into(),
        ),
        ("ASR", pct(s.asr), format!("NER {}", pct(s.ner))),
        (
            "Call setup P50",
            ms(s.setup_p50_ms),
            format!("P95 {} · P99 {}", ms(s.setup_p95_ms), ms(s.setup_p99_ms)),
        ),
        (
            "Post-dial delay P50",
            ms(s.pdd_p50_ms),
            format!("P95 {} · P99 {}", ms(s.pdd_p95_ms), ms(s.pdd_p99_ms)),
        ),
        (
            "MOS",
            fig(s.mos_avg, 2, ""),
            format!("worst {}", fig(s.mos_min, 2, "")),
        ),
        (
            "Jitter",
            fig(s.jitter_avg_ms, 2, " ms"),
            format!("worst {}", fig(s.jitter_max_ms, 2, " ms")),
        ),
        (
            "Loss",
            fig(s.loss_avg_percent, 2, " %"),
            format!(
                "{} calls with media · {} without audio · {} with gaps",
                s.media_calls, s.media_calls_without_audio, s.media_calls_with_gaps
            ),
        ),
        (
            "RTT",
            fig(s.rtt_avg_ms, 1, " ms"),
            "round trip from RTCP (RFC 3550)".to_owned(),
        ),
    ];
    h.push_str("<section class=\"cards\">");
    for (title, value, sub) in cards {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"muted\">{title}</div><div class=\"big\">{}</div>\
             <div class=\"muted\">{}</div></div>",
            esc(&value),
            esc(&sub)
        );
    }
    h.push_str("</section>\n");
}

/// The outcomes in the product's order.
const OUTCOMES: [Outcome; 8] = [
    Outcome::Success,
    Outcome::CompletedWithWarnings,
    Outcome::RegistrationFailed,
    Outcome::CallFailed,
    Outcome::NegotiationFailed,
    Outcome::Timeout,
    Outcome::Oserror,
    Outcome::TeardownError,
];

fn outcomes(h: &mut String, s: &RunSummary) {
    let total = s.outcomes.values().sum::<u32>().max(1);
    h.push_str("<section><h2>Outcomes</h2><div class=\"bar\">");
    for o in OUTCOMES {
        let n = s.outcomes.get(o.name()).copied().unwrap_or(0);
        if n > 0 {
            let _ = write!(
                h,
                "<div class=\"{}\" style=\"flex:{n}\" title=\"{}: {n}\"></div>",
                outcome_class(o),
                o.name()
            );
        }
    }
    h.push_str("</div><ul class=\"legend\" id=\"outcomes\">");
    for o in OUTCOMES {
        let n = s.outcomes.get(o.name()).copied().unwrap_or(0);
        if n > 0 {
            let _ = write!(
                h,
                "<li><span class=\"dot {}\"></span>{} <b data-outcome=\"{}\">{n}</b> ({:.1} %)</li>",
                outcome_class(o),
                o.name(),
                o.name(),
                f64::from(n) * 100.0 / f64::from(total)
            );
        }
    }
    h.push_str("</ul></section>\n");
}

/// The far end's `Reason` headers over the run (RFC 3326), when it sent any.
fn reasons(h: &mut String, s: &RunSummary) {
    if s.peer_reasons.is_empty() {
        return;
    }
    h.push_str(
        "<section><h2>Why the far end ended or refused calls</h2><p class=\"muted\">The \
         <code>Reason</code> headers (RFC 3326) of its BYEs, CANCELs and error responses to \
         our INVITEs; Q.850 causes named after ITU-T Q.850.</p><table id=\"reasons\"><tr>\
         <th>reason</th><th>times</th><th>endpoints</th></tr>",
    );
    for r in &s.peer_reasons {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.label()),
            r.count,
            r.endpoints
        );
    }
    h.push_str("</table></section>\n");
}

fn groups(h: &mut String, s: &RunSummary) {
    if s.groups.is_empty() {
        return;
    }
    h.push_str(
        "<section><h2>Groups</h2><table><tr><th>group</th><th>endpoints</th><th>outcomes</th>\
         <th>calls</th><th>ASR</th><th>setup P50 / P95</th><th>MOS avg / min</th>\
         <th>jitter</th><th>loss</th><th>RTT</th></tr>",
    );
    for g in &s.groups {
        let mut outcomes = String::new();
        for o in OUTCOMES {
            if let Some(n) = g.outcomes.get(o.name()).filter(|n| **n > 0) {
                let _ = write!(
                    outcomes,
                    "<span class=\"{}\">{} {n}</span> ",
                    outcome_class(o),
                    o.name()
                );
            }
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{outcomes}</td><td>{} / {}</td><td>{}</td>\
             <td>{} / {}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.name),
            g.endpoints,
            g.calls_answered,
            g.calls_attempted,
            fig(g.asr, 1, " %"),
            fig(g.setup_p50_ms, 0, " ms"),
            fig(g.setup_p95_ms, 0, " ms"),
            fig(g.mos_avg, 2, ""),
            fig(g.mos_min, 2, ""),
            fig(g.jitter_avg_ms, 1, " ms"),
            fig(g.loss_avg_percent, 2, " %"),
            fig(g.rtt_avg_ms, 1, " ms"),
        );
    }
    h.push_str("</table></section>\n");
}

/// Per second of call (rounded `t`): (sum, count, min, max) of one metric.
type Series = BTreeMap<u32, (f64, u32, f64, f64)>;

fn series(samples: &[&SampleRecord], metric: &str, factor: f64) -> Series {
    let mut out = Series::new();
    for s in samples {
        let Some(&(_, v)) = s.metrics.iter().find(|(n, _)| *n == metric) else {
            continue;
        };
        if !v.is_finite() {
            continue;
        }
        let v = v * factor;
        let e = out.entry(s.t.round().max(0.0) as u32).or_insert((
            0.0,
            0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ));
        e.0 += v;
        e.1 += 1;
        e.2 = e.2.min(v);
        e.3 = e.3.max(v);
    }
    out
}

/// One chart: the received and the sent direction's mean per second, with min–max bands.
fn chart_svg((title, unit, rx, tx, factor): Chart, samples: &[&SampleRecord]) -> String {
    const W: f64 = 420.0;
    const H: f64 = 180.0;
    const L: f64 = 44.0; // left margin (y labels)
    const B: f64 = 22.0; // bottom margin (x labels)
    const T: f64 = 10.0;
    let lines = [(rx, "rx", "received"), (tx, "tx", "sent")].map(|(m, c, n)| {
        let s = series(samples, m, factor);
        (s, c, n)
    });
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure class=\"chart\" data-metric=\"{rx}\"><figcaption>{title}{}{}</figcaption>",
        if unit.is_empty() { "" } else { " (" },
        if unit.is_empty() {
            String::new()
        } else {
            format!("{unit})")
        }
    );
    if lines.iter().all(|(s, _, _)| s.is_empty()) {
        svg.push_str("<p class=\"muted\">no samples</p></figure>");
        return svg;
    }
    let x_max = lines
        .iter()
        .filter_map(|(s, _, _)| s.keys().next_back())
        .max()
        .copied()
        .unwrap_or(1)
        .max(1) as f64;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (s, _, _) in &lines {
        for &(_, _, mn, mx) in s.values() {
            lo = lo.min(mn);
            hi = hi.max(mx);
        }
    }
    if title == "MOS" {
        (lo, hi) = (1.0, 4.5);
    } else {
        lo = lo.min(0.0);
        if hi <= lo {
            hi = lo + 1.0;
        }
        hi *= 1.1;
    }
    let x = |t: u32| L + (f64::from(t) / x_max) * (W - L - 6.0);
    let y = |v: f64| T + (1.0 - (v.clamp(lo, hi) - lo) / (hi - lo)) * (H - T - B);
    let _ = write!(
        svg,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">"
    );
    // Axes and labels.
    for v in [lo, (lo + hi) / 2.0, hi] {
        let _ = write!(
            svg,
            "<line x1=\"{L}\" x2=\"{}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"ylabel\">{}</text>",
            W - 6.0,
            L - 4.0,
            y(v) + 4.0,
            short(v, hi - lo),
            yv = y(v),
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{L}\" y=\"{}\" class=\"xlabel\">0 s</text>\
         <text x=\"{}\" y=\"{}\" class=\"xlabel end\">{x_max:.0} s</text>",
        H - 6.0,
        W - 6.0,
        H - 6.0
    );
    for (s, class, _) in &lines {
        if s.is_empty() {
            continue;
        }
        // The band: the highs left to right, then the lows back.
        let mut band = String::new();
        for (&t, &(_, _, _, mx)) in s {
            let _ = write!(band, "{:.1},{:.1} ", x(t), y(mx));
        }
        for (&t, &(_, _, mn, _)) in s.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", x(t), y(mn));
        }
        let mut mean = String::new();
        for (&t, &(sum, n, _, _)) in s {
            let _ = write!(mean, "{:.1},{:.1} ", x(t), y(sum / f64::from(n)));
        }
        let _ = write!(
            svg,
            "<polygon points=\"{band}\" class=\"band {class}\"/>\
             <polyline points=\"{mean}\" class=\"line {class}\" data-points=\"{}\"/>",
            s.len()
        );
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (s, class, name) in &lines {
        if !s.is_empty() {
            let _ = write!(svg, "<span class=\"key {class}\"></span>{name} ");
        }
    }
    svg.push_str("</div></figure>");
    svg
}

/// A short axis label on a scale `span` wide.
fn short(v: f64, span: f64) -> String {
    if v == v.trunc() || span >= 20.0 {
        format!("{v:.0}")
    } else if span >= 2.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Failed endpoints first (worst outcome), then by id.
fn ordered(reports: &[EndpointReport]) -> Vec<&EndpointReport> {
    let mut v: Vec<&EndpointReport> = reports.iter().collect();
    v.sort_by_key(|r| (std::cmp::Reverse(r.outcome.severity()), r.id));
    v
}

fn endpoints(h: &mut String, reports: &[EndpointReport]) {
    h.push_str(
        "<section><h2>Endpoints</h2><p><input id=\"filter\" type=\"search\" \
         placeholder=\"filter: outcome, group, user, code, error…\" size=\"40\"> \
         <span id=\"shown\" class=\"muted\"></span></p>\
         <table id=\"endpoints\"><tr><th>id</th><th>group</th><th>user</th><th>outcome</th>\
         <th>REGISTER</th><th>call</th><th>result</th><th>setup</th><th>PDD</th>\
         <th>duration</th><th>MOS</th><th>jitter</th><th>loss</th><th>error</th></tr>",
    );
    let all = ordered(reports);
    for r in all.iter().take(TABLE_ROWS) {
        let id = if r.trace.is_empty() {
            r.id.to_string()
        } else {
            format!("<a href=\"#ep-{0}\">{0}</a>", r.id)
        };
        let code = |c: Option<u16>| c.map_or("–".to_owned(), |c| c.to_string());
        let m = r.media.as_ref();
        let _ = write!(
            h,
            "<tr class=\"{}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            outcome_class(r.outcome),
            esc(&r.group),
            esc(&r.user),
            r.outcome.name(),
            code(r.registration_code),
            code(r.call_code),
            r.call_result
                .map_or("–".to_owned(), |c| format!("{c:?}").to_lowercase()),
            fig(r.timings.call_setup_ms, 0, " ms"),
            fig(r.timings.post_dial_delay_ms, 0, " ms"),
            fig(r.timings.call_duration_ms.map(|d| d / 1000.0), 1, " s"),
            fig(m.and_then(|m| m.mos), 2, ""),
            fig(m.map(|m| m.jitter_ms), 1, " ms"),
            fig(m.map(|m| m.loss_percent), 2, " %"),
            esc(r.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>");
    if all.len() > TABLE_ROWS {
        let _ = write!(
            h,
            "<p class=\"muted\">{} more endpoints are in the JSON report (--report).</p>",
            all.len() - TABLE_ROWS
        );
    }
    h.push_str("</section>\n");
}

fn details(h: &mut String, reports: &[EndpointReport]) {
    let traced: Vec<&EndpointReport> = ordered(reports)
        .into_iter()
        .filter(|r| !r.trace.is_empty())
        .collect();
    if traced.is_empty() {
        h.push_str(
            "<section><h2>SIP traces</h2><p class=\"muted\">Traces are kept for failed \
             endpoints only; none failed. Run with --all-traces to see every endpoint's \
             ladder.</p></section>\n",
        );
        return;
    }
    h.push_str("<section><h2>SIP traces</h2>");
    for r in traced.iter().take(DETAILED) {
        let _ = write!(
            h,
            "<details id=\"ep-{}\" class=\"endpoint\"{}><summary><span class=\"{}\">{}</span> \
             endpoint {} · {} · {}</summary>",
            r.id,
            if r.outcome.severity() > 0 && r.id == traced[0].id {
                " open"
            } else {
                ""
            },
            outcome_class(r.outcome),
            r.outcome.name(),
            r.id,
            esc(&r.group),
            esc(&r.user),
        );
        if let Some(e) = &r.error {
            let _ = write!(h, "<p class=\"error\">{}</p>", esc(e));
        }
        for code in [r.registration_code, r.call_code].into_iter().flatten() {
            if code >= 300 {
                let _ = write!(h, "<p class=\"muted\">{code}: {}</p>", esc(hint_for(code)));
            }
        }
        h.push_str(&ladder(&r.trace));
        let samples = charted(r.samples.iter());
        if !samples.is_empty() {
            h.push_str("<div class=\"charts\">");
            for chart in CHARTS {
                h.push_str(&chart_svg(chart, &samples));
            }
            h.push_str("</div>");
        }
        h.push_str("<details><summary>messages</summary>");
        for e in &r.trace {
            let dir = match e.direction {
                Direction::Sent => "sent",
                Direction::Received => "received",
                Direction::Note => "note",
            };
            let _ = write!(
                h,
                "<pre class=\"{dir}\">{:.1} ms {dir}{}{}\n{}</pre>",
                e.at_ms,
                e.remote.map_or(String::new(), |a| format!(
                    " {} {a}",
                    if e.direction == Direction::Sent {
                        "to"
                    } else {
                        "from"
                    }
                )),
                if e.retransmission {
                    " (retransmission)"
                } else {
                    ""
                },
                esc(&e.text)
            );
        }
        h.push_str("</details></details>");
    }
    if traced.len() > DETAILED {
        let _ = write!(
            h,
            "<p class=\"muted\">{} more traces are in the JSON report (--report).</p>",
            traced.len() - DETAILED
        );
    }
    h.push_str("</section>\n");
}

/// The trace as a ladder diagram: a column per address (ours first), an arrow per message
/// (dashed for a retransmission) labelled with its first line, a row per note.
fn ladder(trace: &[TraceEntry]) -> String {
    const COL: f64 = 340.0;
    const ROW: f64 = 24.0;
    const TOP: f64 = 34.0;
    let mut cols: Vec<SocketAddr> = Vec::new();
    let mut ours = 0;
    for e in trace.iter().take(LADDER_ROWS) {
        if let Some(l) = e.local
            && !cols.contains(&l)
        {
            cols.insert(ours, l);
            ours += 1;
        }
    }
    for e in trace.iter().take(LADDER_ROWS) {
        if let Some(r) = e.remote
            && !cols.contains(&r)
        {
            cols.push(r);
        }
    }
    let rows = trace.len().min(LADDER_ROWS);
    let width = (cols.len().max(2) as f64) * COL;
    let height = TOP + rows as f64 * ROW + 10.0;
    let x = |a: Option<SocketAddr>| {
        let i = a
            .and_then(|a| cols.iter().position(|c| *c == a))
            .unwrap_or(0);
        COL / 2.0 + i as f64 * COL
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"ladder\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" \
         height=\"{height}\" role=\"img\">"
    );
    for (i, c) in cols.iter().enumerate() {
        let cx = COL / 2.0 + i as f64 * COL;
        let _ = write!(
            svg,
            "<text x=\"{cx}\" y=\"14\" class=\"who\">{}{}</text>\
             <line x1=\"{cx}\" x2=\"{cx}\" y1=\"22\" y2=\"{height}\" class=\"life\"/>",
            if i < ours { "us " } else { "" },
            c
        );
    }
    for (i, e) in trace.iter().take(LADDER_ROWS).enumerate() {
        let y = TOP + i as f64 * ROW + ROW / 2.0;
        let label = esc(&format!("{:.0} ms  {}", e.at_ms, e.first_line()));
        match e.direction {
            Direction::Note => {
                let _ = write!(
                    svg,
                    "<text x=\"6\" y=\"{y:.1}\" class=\"note\">{}</text>",
                    esc(&format!("{:.0} ms  {}", e.at_ms, e.text))
                );
            }
            d => {
                let (from, to) = if d == Direction::Sent {
                    (x(e.local), x(e.remote))
                } else {
                    (x(e.remote), x(e.local))
                };
                let mid = (from + to) / 2.0;
                let _ = write!(
                    svg,
                    "<line x1=\"{from}\" x2=\"{to}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"msg{}\" \
                     marker-end=\"url(#arrow)\"/><text x=\"{mid}\" y=\"{:.1}\" \
                     class=\"label\">{label}</text>",
                    if e.retransmission { " re" } else { "" },
                    y - 4.0
                );
            }
        }
    }
    svg.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M 0 0 L 10 5 L 0 10 z\"/></marker></defs></svg>",
    );
    if trace.len() > LADDER_ROWS {
        let _ = write!(
            svg,
            "<p class=\"muted\">The ladder shows the first {LADDER_ROWS} of {} entries; every \
             message is listed below.</p>",
            trace.len()
        );
    }
    format!("<div class=\"ladderbox\">{svg}</div>")
}

const STYLE: &str = "<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:16px;color:#1d2330}
h1{margin:0 0 4px}h2{margin:28px 0 8px;font-size:18px}
.muted{color:#667}.verdict{font-weight:700;padding:6px 10px;border-radius:6px;display:inline-block}
.verdict.ok{background:#e3f6e8;color:#1a7f37}.verdict.bad{background:#fde8e8;color:#b42318}
.verdict.warn{background:#fff4d6;color:#8a5a00}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px;margin-top:14px}
.card{border:1px solid #dde;border-radius:8px;padding:10px}.big{font-size:24px;font-weight:700}
.bar{display:flex;height:18px;border-radius:4px;overflow:hidden}
.bar .ok,.dot.ok,.key.rx{background:#2da44e}.bar .warn,.dot.warn{background:#d4a72c}
.bar .bad,.dot.bad{background:#cf222e}.legend{list-style:none;padding:0;display:flex;gap:16px;flex-wrap:wrap}
.dot,.key{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:5px}
.key.tx{background:#0969da}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #eef;padding:3px 6px;text-align:left}
tr.bad td:nth-child(4),span.bad,.error{color:#b42318}tr.warn td:nth-child(4),span.warn{color:#8a5a00}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{margin:0}figcaption{font-weight:600}
.grid{stroke:#eee}.ylabel{font-size:10px;text-anchor:end;fill:#667}.xlabel{font-size:10px;fill:#667}.end{text-anchor:end}
.line{fill:none;stroke-width:2}.line.rx{stroke:#2da44e}.line.tx{stroke:#0969da}
.band{stroke:none;opacity:.15}.band.rx{fill:#2da44e}.band.tx{fill:#0969da}
details.endpoint{border:1px solid #dde;border-radius:8px;padding:6px 10px;margin:8px 0}
.ladderbox{overflow-x:auto}.ladder .who{font-size:12px;text-anchor:middle;font-weight:600}
.life{stroke:#bbc}.msg{stroke:#1d2330}.msg.re{stroke-dasharray:4 3}
.ladder .label{font-size:11px;text-anchor:middle}.note{font-size:11px;fill:#8a5a00}
pre{background:#f6f8fa;padding:6px;overflow-x:auto;font-size:12px}pre.sent{border-left:3px solid #0969da}
pre.received{border-left:3px solid #2da44e}pre.note{border-left:3px solid #d4a72c}
</style>";

/// Filters the endpoints' table by the words typed; marks the page ready (for tests).
const SCRIPT: &str = "<script>
(function(){
  var input=document.getElementById('filter'),rows=document.querySelectorAll('#endpoints tr:not(:first-child)'),
      shown=document.getElementById('shown');
  function apply(){
    var words=input.value.toLowerCase().split(/\\s+/).filter(Boolean),n=0;
    rows.forEach(function(r){
      var t=r.textContent.toLowerCase(),ok=words.every(function(w){return t.indexOf(w)>=0;});
      r.style.display=ok?'':'none';if(ok)n++;
    });
    shown.textContent=n+' of '+rows.length+' shown';
  }
  input.addEventListener('input',apply);apply();
  document.documentElement.setAttribute('data-ready','1');
})();
</script>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<sip:a@b>;tag=\"x\" & 'y'"),
            "&lt;sip:a@b&gt;;tag=&quot;x&quot; &amp; &#39;y&#39;"
        );
    }

    fn sample(t: f64, mos: f64) -> SampleRecord {
        SampleRecord {
            endpoint: 1,
            call: 1,
            t,
            metrics: vec![("rx_mos", mos)],
        }
    }

    #[test]
    fn a_series_averages_each_second_over_the_calls() {
        let a = [sample(1.0, 4.0), sample(2.0, 4.4), sample(1.02, 3.0)];
        let refs: Vec<&SampleRecord> = a.iter().collect();
        let s = series(&refs, "rx_mos", 1.0);
        assert_eq!(s.len(), 2);
        let (sum, n, lo, hi) = s[&1];
        assert_eq!((n, lo, hi), (2, 3.0, 4.0));
        assert!((sum / f64::from(n) - 3.5).abs() < 1e-9);
        assert!(series(&refs, "tx_mos", 1.0).is_empty());
    }

    /// The far end's reasons get a table (escaped), and none, no section.
    #[test]
    fn the_far_ends_reasons_are_a_table_when_there_are_any() {
        let mut s = RunSummary::default();
        let mut h = String::new();
        reasons(&mut h, &s);
        assert!(h.is_empty());
        s.peer_reasons = vec![agent::reason::ReasonCount {
            protocol: "Q.850".into(),
            cause: Some(17),
            name: agent::reason::q850_name(17),
            count: 3,
            endpoints: 2,
        }];
        reasons(&mut h, &s);
        assert!(
            h.contains("<tr><td>Q.850 17 (user busy)</td><td>3</td><td>2</td></tr>"),
            "{h}"
        );
    }

    #[test]
    fn a_calls_last_part_second_is_not_charted() {
        let a = [
            sample(1.0, 4.0),
            sample(2.0, 4.4),
            sample(2.01, 1.0),
            sample(0.2, 4.0),
        ];
        let kept: Vec<f64> = charted(a.iter()).iter().map(|s| s.t).collect();
        assert_eq!(kept, [1.0, 2.0]);
    }

    #[test]
    fn the_ladder_has_a_column_per_address_and_an_arrow_per_message() {
        let us: SocketAddr = "127.0.0.1:5062".parse().unwrap();
        let them: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let msg = |direction, text: &str, re| TraceEntry {
            direction,
            at_ms: 1.0,
            wall_ms: 0,
            transport: None,
            local: Some(us),
            remote: Some(them),
            retransmission: re,
            text: text.to_owned(),
            bytes: Default::default(),
        };
        let trace = [
            msg(Direction::Sent, "REGISTER sip:x SIP/2.0\r\n\r\n", false),
            msg(Direction::Sent, "REGISTER sip:x SIP/2.0\r\n\r\n", true),
            msg(
                Direction::Received,
                "SIP/2.0 401 Unauthorized\r\n\r\n",
                false,
            ),
            TraceEntry {
                local: None,
                remote: None,
                ..msg(Direction::Note, "realm <x>", false)
            },
        ];
        let svg = ladder(&trace);
        assert_eq!(svg.matches("class=\"life\"").count(), 2);
        assert_eq!(svg.matches("class=\"msg").count(), 3);
        assert_eq!(svg.matches("class=\"msg re\"").count(), 1);
        assert!(svg.contains("us 127.0.0.1:5062"));
        assert!(svg.contains("SIP/2.0 401 Unauthorized"));
        // Our column is the first: the request goes right, the response comes back left.
        assert!(svg.contains("x1=\"170\" x2=\"510\""));
        assert!(svg.contains("x1=\"510\" x2=\"170\""));
        assert!(svg.contains("realm &lt;x&gt;"));
    }
}
