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

/// The allocator's first arena, handed over before `main`'s first allocation
/// (`agent::heap`: a run writes the part it needs in huge pages before its shards start).
// SAFETY: run by the C runtime before `main`; `reserve` neither allocates nor panics.
#[allow(unsafe_code)] // reason: a constructor in `.init_array`
#[unsafe(link_section = ".init_array")]
#[used]
static RESERVE: extern "C" fn() = agent::heap::reserve;

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

#[cfg(test)]
mod tests {
    /// The constructor gave mimalloc its first arena before any allocation, so the heap's
    /// blocks come from it, and a run can write its first megabytes up front.
    #[test]
    fn the_heap_starts_in_the_reserved_region() {
        if agent::heap::strict_overcommit() {
            assert_eq!(
                agent::heap::region(),
                None,
                "no region under strict overcommit"
            );
            assert_eq!(agent::heap::prefault(4 << 20).unwrap(), 0);
            return;
        }
        let (start, len) = agent::heap::region().expect("the region was reserved before main");
        assert_eq!(start % (2 << 20), 0, "2 MB aligned");
        assert_eq!(len, agent::heap::REGION);
        let blocks: Vec<Box<[u8; 100]>> = (0..1000).map(|_| Box::new([7; 100])).collect();
        for b in &blocks {
            let at = b.as_ptr() as usize;
            assert!(
                (start..start + len).contains(&at),
                "{at:#x} outside the region"
            );
        }
        // 3 MB rounds up to 4 MB (two huge pages), and writing them keeps what is there.
        assert_eq!(agent::heap::prefault(3 << 20).unwrap(), 4 << 20);
        assert!(blocks.iter().all(|b| b.iter().all(|&x| x == 7)));
    }

    /// While any run holds the heap, mimalloc purges nothing; the last hold's end restores
    /// its delay.
    #[test]
    fn runs_hold_the_heap_until_the_last_one_ends() {
        use agent::heap::{Hold, purge_delay};
        let before = purge_delay();
        assert!(before >= 0, "mimalloc purges by default ({before} ms)");
        let first = Hold::new();
        assert_eq!(purge_delay(), -1);
        let second = Hold::new();
        drop(first);
        assert_eq!(purge_delay(), -1, "a run still holds it");
        drop(second);
        assert_eq!(purge_delay(), before);
    }
}
