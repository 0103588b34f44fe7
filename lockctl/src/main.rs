//! The `lockctl` binary; see `lockctl --help`.

use std::process::ExitCode;

use clap::Parser;
use lockctl::{Cli, Exit, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let exit = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!("lockctl: cannot start the runtime: {error}");
            Exit::Failed
        }
    };
    ExitCode::from(exit as u8)
}
