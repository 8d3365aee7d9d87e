//! `sanyu`: the operator's command line.
use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    sanyu_platform::install_crypto_provider();
    let cli = sanyu_cli::Cli::parse();
    match sanyu_cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
