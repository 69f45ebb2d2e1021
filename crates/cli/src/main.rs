//! The `sipmeter` binary: one command line over every part of sipmeter.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod lint;

/// Test and monitor SIP/VoIP infrastructure.
#[derive(Debug, Parser)]
#[command(name = "sipmeter", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tools for SIP messages.
    #[command(subcommand)]
    Sip(SipCommand),
    /// Check that an account registers with a registrar: DNS, transport, REGISTER, auth.
    Check(check::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum SipCommand {
    /// Parse one SIP message (a file or standard input), print a summary, and report the
    /// precise error when it is malformed.
    Lint(lint::LintArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sip(SipCommand::Lint(args)) => lint::run(&args),
        Command::Check(args) => check::run(&args),
    }
}
