//! `sipmeter sip lint`: parse one SIP message and summarise it.

use std::process::ExitCode;

/// Arguments of `sipmeter sip lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// The file holding one SIP message; `-` or nothing reads standard input.
    file: Option<std::path::PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(_args: &LintArgs) -> ExitCode {
    ExitCode::SUCCESS
}
