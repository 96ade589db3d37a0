use std::process::ExitCode;

use clap::Parser;
use token_authority::cli::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-authority: {e:#}");
            ExitCode::FAILURE
        }
    }
}
