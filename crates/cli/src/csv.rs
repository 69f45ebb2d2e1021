//! `--csv` and `--samples-csv`: a run's results as CSV (RFC 4180) for spreadsheets and
//! scripts. One row per endpoint; one row per second of each call with every metric in a
//! column. The JSON report (`--report`) stays the complete record; these hold its figures
//! under the same names.

use std::io::{self, Write};

use agent::engine::{EndpointReport, MediaReport};

/// The columns of `--csv`, in order: each is a name and how to read it from an endpoint.
type Column = (&'static str, fn(&EndpointReport) -> Cell);

/// One value of a row.
enum Cell {
    Text(String),
    Number(f64),
    Empty,
}

impl From<Option<f64>> for Cell {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Cell::Empty, Cell::Number)
    }
}

impl From<Option<u16>> for Cell {
    fn from(v: Option<u16>) -> Self {
        v.map_or(Cell::Empty, |v| Cell::Number(f64::from(v)))
    }
}

impl From<u32> for Cell {
    fn from(v: u32) -> Self {
        Cell::Number(f64::from(v))
    }
}

/// An enum as the JSON report spells it (`SUCCESS`, `CLOSED`, `answered`).
fn name_of(v: &impl serde::Serialize) -> Cell {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Cell::Text(s),
        _ => Cell::Empty,
    }
}

/// A media figure, empty for an endpoint without media.
fn media(r: &EndpointReport, f: fn(&MediaReport) -> Option<f64>) -> Cell {
    r.media.as_ref().and_then(f).into()
}

const COLUMNS: &[Column] = &[
    ("id", |r| r.id.into()),
    ("group", |r| Cell::Text(r.group.clone())),
    ("user", |r| Cell::Text(r.user.clone())),
    ("phase", |r| name_of(&r.phase)),
    ("outcome", |r| name_of(&r.outcome)),
    ("registration_code", |r| r.registration_code.into()),
    ("call_code", |r| r.call_code.into()),
    ("call_result", |r| {
        r.call_result.as_ref().map_or(Cell::Empty, name_of)
    }),
    ("calls_attempted", |r| r.calls_attempted.into()),
    ("calls_answered", |r| r.calls_answered.into()),
    ("calls_received", |r| r.calls_received.into()),
    ("calls_refused", |r| r.calls_refused.into()),
    ("registration_ms", |r| r.timings.registration_ms.into()),
    ("time_to_100_ms", |r| r.timings.time_to_100_ms.into()),
    ("time_to_180_ms", |r| r.timings.time_to_180_ms.into()),
    ("post_dial_delay_ms", |r| {
        r.timings.post_dial_delay_ms.into()
    }),
    ("call_setup_ms", |r| r.timings.call_setup_ms.into()),
    ("call_duration_ms", |r| r.timings.call_duration_ms.into()),
    ("codec", |r| {
        r.media
            .as_ref()
            .and_then(|m| m.codec)
            .map_or(Cell::Empty, |c| Cell::Text(c.into()))
    }),
    ("srtp", |r| {
        r.media
            .as_ref()
            .and_then(|m| m.srtp)
            .map_or(Cell::Empty, |c| Cell::Text(c.into()))
    }),
    ("mos", |r| media(r, |m| m.mos)),
    ("mos_min", |r| media(r, |m| m.mos_min)),
    ("r_factor", |r| media(r, |m| m.r_factor)),
    ("jitter_ms", |r| media(r, |m| Some(m.jitter_ms))),
    ("jitter_max_ms", |r| media(r, |m| Some(m.jitter_max_ms))),
    ("loss_percent", |r| media(r, |m| Some(m.loss_percent))),
    ("rtt_ms", |r| media(r, |m| m.rtt_ms)),
    ("tx_packets", |r| media(r, |m| Some(m.tx_packets as f64))),
    ("rx_packets", |r| media(r, |m| Some(m.rx_packets as f64))),
    ("rx_lost", |r| media(r, |m| Some(m.rx_lost as f64))),
    ("rx_jb_late", |r| media(r, |m| Some(m.rx_jb_late as f64))),
    ("peer_mos_cq", |r| {
        media(r, |m| m.peer_xr.and_then(|x| x.mos_cq))
    }),
    ("dtmf_sent", |r| Cell::Text(r.dtmf_sent.clone())),
    ("dtmf_received", |r| Cell::Text(r.dtmf_received.clone())),
    ("peer_reasons", |r| {
        let each: Vec<String> = r
            .peer_reasons
            .iter()
            .map(|p| format!("{} on {} ×{}", p.label(), p.on, p.count))
            .collect();
        Cell::Text(each.join("; "))
    }),
    ("error", |r| r.error.clone().map_or(Cell::Empty, Cell::Text)),
];

/// A field quoted when it holds a comma, a quote or a line break (RFC 4180 §2.6–2.7).
fn field(out: &mut dyn Write, text: &str) -> io::Result<()> {
    if text.contains([',', '"', '\r', '\n']) {
        write!(out, "\"{}\"", text.replace('"', "\"\""))
    } else {
        out.write_all(text.as_bytes())
    }
}

fn cell(out: &mut dyn Write, c: &Cell) -> io::Result<()> {
    match c {
        Cell::Text(s) => field(out, s),
        Cell::Number(v) => write!(out, "{v}"),
        Cell::Empty => Ok(()),
    }
}

/// Writes `names` as a header line, then one line per row.
fn table<R>(
    out: &mut dyn Write,
    names: &[&str],
    rows: impl Iterator<Item = R>,
    mut row: impl FnMut(&mut dyn Write, R) -> io::Result<()>,
) -> io::Result<()> {
    out.write_all(names.join(",").as_bytes())?;
    out.write_all(b"\r\n")?;
    for r in rows {
        row(out, r)?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

/// One row per endpoint (`--csv`).
pub fn endpoints(out: &mut impl Write, reports: &[EndpointReport]) -> io::Result<()> {
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    table(out, &names, reports.iter(), |out, r| {
        for (i, (_, get)) in COLUMNS.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            cell(&mut *out, &get(r))?;
        }
        Ok(())
    })
}

/// One row per second of each call (`--samples-csv`): the endpoint, its group and user, the
/// call (1 = first), the second (`t`, since the call's media started), then every metric
/// name that occurs in the run, in the order first seen (empty where a second has none).
pub fn samples(out: &mut impl Write, reports: &[EndpointReport]) -> io::Result<()> {
    let mut metrics: Vec<&str> = Vec::new();
    for s in reports.iter().flat_map(|r| &r.samples) {
        for (name, _) in &s.metrics {
            if !metrics.contains(name) {
                metrics.push(name);
            }
        }
    }
    let mut names = vec!["endpoint", "group", "user", "call", "t"];
    names.extend(&metrics);
    let rows = reports
        .iter()
        .flat_map(|r| r.samples.iter().map(move |s| (r, s)));
    table(out, &names, rows, |out, (r, s)| {
        write!(out, "{},", r.id)?;
        field(&mut *out, &r.group)?;
        out.write_all(b",")?;
        field(&mut *out, &r.user)?;
        write!(out, ",{},{}", s.call, s.t)?;
        for m in &metrics {
            out.write_all(b",")?;
            if let Some((_, v)) = s.metrics.iter().find(|(n, _)| n == m) {
                write!(out, "{v}")?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_quotes_or_line_breaks_are_quoted() {
        let mut out = Vec::new();
        for t in ["plain", "a,b", "say \"hi\"", "two\nlines"] {
            field(&mut out, t).unwrap();
            out.push(b'|');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|"
        );
    }
}
