//! `sipmeter sip lint`: parse one SIP message, summarise it, or say precisely what is wrong.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use sip_msg::typed::{Contact, ContentType, Via};
use sip_msg::{Message, ParseError};

/// Arguments of `sipmeter sip lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// The file holding one SIP message; `-` or nothing reads standard input.
    file: Option<PathBuf>,
    /// Print the summary (or the error) as JSON.
    #[arg(long)]
    json: bool,
}

/// What `lint` reports about a message.
#[derive(Debug, Serialize)]
struct Summary {
    kind: &'static str,
    method: Option<String>,
    request_uri: Option<String>,
    status: Option<u16>,
    reason: Option<String>,
    call_id: Option<String>,
    cseq: Option<String>,
    from: Option<String>,
    from_tag: Option<String>,
    to: Option<String>,
    to_tag: Option<String>,
    via: Vec<String>,
    contact: Vec<String>,
    content_type: Option<String>,
    body_length: usize,
    headers: usize,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct LintError {
    error: String,
    kind: String,
    line: usize,
    header: Option<String>,
}

fn summarise(msg: &Message, warnings: &[sip_msg::Warning]) -> Summary {
    let from = msg.from();
    let to = msg.to();
    Summary {
        kind: if msg.is_request() {
            "request"
        } else {
            "response"
        },
        method: msg.method().map(|m| m.to_string()),
        request_uri: msg.request_uri().map(|u| u.to_string()),
        status: msg.status(),
        reason: msg.reason().map(str::to_owned),
        call_id: msg.call_id(),
        cseq: msg.cseq().map(|c| c.to_string()),
        from: from.as_ref().map(|f| f.uri.to_string()),
        from_tag: from.and_then(|f| f.tag()),
        to: to.as_ref().map(|t| t.uri.to_string()),
        to_tag: to.and_then(|t| t.tag()),
        via: msg
            .headers
            .typed_all::<Via>()
            .into_iter()
            .flatten()
            .map(|v| v.to_string())
            .collect(),
        contact: msg
            .headers
            .typed_all::<Contact>()
            .into_iter()
            .flatten()
            .map(|c| c.to_string())
            .collect(),
        content_type: msg
            .headers
            .typed::<ContentType>()
            .and_then(Result::ok)
            .map(|c| c.media_type),
        body_length: msg.body().len(),
        headers: msg.headers.len(),
        warnings: warnings.iter().map(ToString::to_string).collect(),
    }
}

fn read_input(file: Option<&PathBuf>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match file {
        Some(p) if p.as_os_str() != "-" => buf = std::fs::read(p)?,
        _ => {
            std::io::stdin().read_to_end(&mut buf)?;
        }
    }
    Ok(buf)
}

/// Runs the command: exit 0 for a well-formed message, 1 for a malformed one, 2 when the
/// input cannot be read.
pub fn run(args: &LintArgs) -> ExitCode {
    let input = match read_input(args.file.as_ref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sipmeter: cannot read input: {e}");
            return ExitCode::from(2);
        }
    };
    // Messages copied from a terminal or a text trace often lost their CRs: restore CRLF.
    let input = normalise_line_ends(&input);
    let parsed = Message::parse(&input).and_then(|mut m| m.validate().map(|w| (m, w)));
    match parsed {
        Ok((msg, warnings)) => {
            let s = summarise(&msg, &warnings);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            } else {
                print_text(&s);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            report_error(&e, args.json);
            ExitCode::from(1)
        }
    }
}

fn report_error(e: &ParseError, json: bool) {
    if json {
        let out = LintError {
            error: e.to_string(),
            kind: format!("{:?}", e.kind()),
            line: e.line(),
            header: e.header().map(|h| h.as_str().to_owned()),
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        eprintln!("malformed SIP message: {e}");
    }
}

fn print_text(s: &Summary) {
    match (&s.method, &s.request_uri, s.status) {
        (Some(m), Some(uri), _) => println!("request   {m} {uri}"),
        (m, _, Some(code)) => println!(
            "response  {code} {} ({})",
            s.reason.as_deref().unwrap_or(""),
            m.as_deref().unwrap_or("?")
        ),
        _ => {}
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("call-id   {}", opt(&s.call_id));
    println!("cseq      {}", opt(&s.cseq));
    println!("from      {} tag={}", opt(&s.from), opt(&s.from_tag));
    println!("to        {} tag={}", opt(&s.to), opt(&s.to_tag));
    for (i, v) in s.via.iter().enumerate() {
        println!("via[{i}]    {v}");
    }
    for c in &s.contact {
        println!("contact   {c}");
    }
    println!(
        "body      {} bytes {}",
        s.body_length,
        s.content_type.as_deref().unwrap_or("")
    );
    println!("headers   {}", s.headers);
    for w in &s.warnings {
        println!("warning   {w}");
    }
}

/// Turns bare LF line ends into CRLF, leaving existing CRLFs alone.
fn normalise_line_ends(input: &[u8]) -> Vec<u8> {
    if !input.contains(&b'\n') || input.windows(2).any(|w| w == b"\r\n") {
        return input.to_vec();
    }
    let mut out = Vec::with_capacity(input.len() + 64);
    for &b in input {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
