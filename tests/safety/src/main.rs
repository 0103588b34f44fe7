//! Prints the safety table: `cargo run --release -p lock-safety -- [--long] [BACKEND ...]`.

use std::process::ExitCode;

use lock_safety::{BACKENDS, Plan, run_backend, table};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("usage: lock-safety [--long] [{}] ...", BACKENDS.join("|"));
        return ExitCode::SUCCESS;
    }
    let plan = if args.iter().any(|arg| arg == "--long") {
        Plan::long()
    } else {
        Plan::short()
    };
    let mut backends: Vec<&str> = args
        .iter()
        .filter(|arg| !arg.starts_with("--"))
        .map(String::as_str)
        .collect();
    if backends.is_empty() {
        backends = BACKENDS.to_vec();
    }
    println!("{}", table::header());
    let mut failed = 0;
    for backend in backends {
        let rows = run_backend(backend, &plan, |row| println!("{}", table::line(row))).await;
        failed += rows.iter().filter(|row| !row.passed()).count();
    }
    if failed > 0 {
        eprintln!("{failed} scenario(s) FAILED");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
