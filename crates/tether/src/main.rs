//! The `tether` binary: `serve` runs the gateway; `pub`, `sub` and `agent` are
//! small clients for trying it out and for scripts; `bench` is the load
//! generator.

mod bench;
mod cli;
mod client;
mod serve;
mod token;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};

/// mimalloc, not the system allocator: glibc's heap fragments between each
/// connection's short-lived HTTP upgrade buffers (8 KiB from hyper) and its
/// long-lived state, which held 19,000 idle connections at 7.9 KiB each where
/// 3.4 KiB were in use; mimalloc's size-segregated pages hold them at ~3.5 KiB
/// (docs/benchmarks.md, "Memory per idle connection"), and its faster small
/// allocations raised durable publishes/s too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            eprintln!("{}", cli::clap_one_line(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => match args.resolve() {
            Ok(serve) => runtime.block_on(serve::serve(serve)),
            Err(cli::UsageError(msg)) => {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
        },
        Command::Pub(args) => runtime.block_on(client::publish(args)),
        Command::Sub(args) => runtime.block_on(client::subscribe(args)),
        Command::Agent(args) => runtime.block_on(client::agent(args)),
        Command::Token(args) => token::print(args),
        Command::Bench(args) => match bench::Plan::from_args(args) {
            Ok(plan) => runtime.block_on(bench::run(plan)),
            Err(cli::UsageError(msg)) => {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
