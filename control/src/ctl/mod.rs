//! `rushesctl`: the fleet from the command line, as `celery inspect` / `celery control`
//! are for Celery. It talks to the control plane's API with a token (`RUSHES_TOKEN`, or
//! `token` in the config file) and prints tables, or the API's JSON with `--json`.
//!
//! Exit codes: 0 done; 2 a usage error; 3 the API could not be reached; 4 not found;
//! 5 refused (not signed in, not allowed); 6 the request was invalid (the API's message
//! says why); 7 the control plane failed.

mod api;
mod commands;
mod table;

use std::process::ExitCode;

use clap::Parser;

use self::api::{Client, Failure};
use self::commands::Command;

/// Operate a Rushes fleet: jobs, queues, workers, dead letters, schedules, productions, users.
#[derive(Debug, Parser)]
#[command(name = "rushesctl", version, about)]
struct Cli {
    /// The control plane's address.
    #[arg(long, env = "RUSHES_URL", global = true)]
    url: Option<String>,
    /// An API token (an admin's for fleet commands). Prefer the variable or the config
    /// file: a flag shows in the process list.
    #[arg(long, env = "RUSHES_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// A TOML file with `url` and `token` (default: ~/.config/rushes/rushesctl.toml).
    #[arg(long, env = "RUSHESCTL_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The whole command: parses the arguments, runs, reports; the process's exit code.
pub fn main_entry() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rushesctl: cannot start: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(Cli::parse()))
}

async fn run(cli: Cli) -> ExitCode {
    let client = match Client::new(cli.url, cli.token, cli.config.as_deref()) {
        Ok(client) => client,
        Err(failure) => return report(&failure),
    };
    match commands::run(&client, cli.command, cli.json).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(&failure),
    }
}

fn report(failure: &Failure) -> ExitCode {
    eprintln!("rushesctl: {failure}");
    ExitCode::from(failure.exit_code())
}
