//! The `sipmeter` binary: one command line over every part of sipmeter.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod capacity;
mod check;
mod csv;
mod html;
mod lint;
mod registrar;
mod run;
mod serve;

/// mimalloc instead of glibc's malloc: SIP messages are many small blocks allocated on one
/// shard thread and mostly freed there; glibc spent ~34 % of the state machines' time in its
/// free-list upkeep (`cargo bench -p registrar --bench fleet`, README's performance table).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run a test described in a TOML file; exit 0 when it passes, 1 when it fails, 2 for a bad file.
    Run(run::RunArgs),
    /// Find a test's capacity: run it at rising load until its pass criteria break, then
    /// narrow the knee down; exit 0 when a knee was found, 1 when the first level failed.
    Capacity(capacity::CapacityArgs),
    /// Run the demo: 10 callers call 10 callees through the built-in registrar on loopback.
    Demo(run::DemoArgs),
    /// Run the built-in SIP registrar and proxy standalone (UDP).
    Registrar(registrar::RegistrarArgs),
    /// Run the web app and JSON API (SQLite in the data dir by default, or PostgreSQL).
    Serve(serve::ServeArgs),
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
        Command::Run(args) => run::run(&args),
        Command::Demo(args) => run::demo(&args),
        Command::Capacity(args) => capacity::run(&args),
        Command::Registrar(args) => registrar::run(&args),
        Command::Serve(args) => serve::run(&args),
    }
}
