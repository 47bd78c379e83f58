//! The `baseplate-hotkeys` binary: `baseplate-hotkeys top --url redis://127.0.0.1:7000 [--limit 10]
//! [--json] [--metrics-url http://host:6060/metrics ...]` (`rediss://` with `--ssl-ca-certs` and the
//! other TLS options of the cluster client).

use std::process::ExitCode;

use baseplate_hotkeys_cli::{Cli, run};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("baseplate-hotkeys: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("baseplate-hotkeys: {message}");
            ExitCode::FAILURE
        }
    }
}
