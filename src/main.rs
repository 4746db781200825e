//! `lmcache-e2e`: parse the command line, run it, map the outcome to an exit
//! code. Everything else lives in the modules.

// Errors carry engine log tails for the user; they are cold paths, so their
// size matters less than keeping the tail next to the failure.
#![allow(clippy::result_large_err)]
// No function over 80 lines (clippy.toml): a function does one thing.
#![warn(clippy::too_many_lines)]

mod child;
mod ci_env;
mod cli;
mod client;
mod commands;
mod config;
mod console;
mod engine;
mod error;
mod gate;
mod report;
mod results;
mod run;
mod setup;
mod sim;
mod workload;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lmcache-e2e: failed to start the async runtime: {e}");
            std::process::exit(101);
        }
    };
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(()) => error::exit::PASSED,
        Err(e) => {
            eprintln!("lmcache-e2e: {}", error::chain(&e));
            e.exit_code()
        }
    };
    // Dropping the runtime could wait on a request still in flight.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
