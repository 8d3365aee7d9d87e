//! `sanyu`: the operator's command line.
use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    sanyu_platform::install_crypto_provider();
    // clap exits 2 on a usage error, which `sanyu import` uses for "some rows
    // rejected": bad arguments exit 1 on every command instead.
    let cli = match sanyu_cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match sanyu_cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
