//! `lockctl`: see and operate the locks of lock-core's backends from a shell.
//!
//! ```text
//! $ lockctl -b kube://default status my-controller
//! name:      my-controller
//! state:     held
//! holder:    my-controller-7f9c-x2b4q
//! token:     -
//! acquired:  3m 12s ago
//! renewed:   2s ago
//! duration:  15s
//! expires:   in 13s
//! ```
//!
//! Backends are chosen with `--backend` (or `LOCKCTL_BACKEND`): `kube://NAMESPACE`,
//! `etcd://HOST:PORT/PREFIX`, `redis://...`. Exit codes are listed in `lockctl --help`
//! and in [`Exit`].

pub mod cli;
pub mod commands;
pub mod connect;
pub mod exit;
pub mod show;

use std::io::{BufReader, Write};

pub use cli::Cli;
pub use exit::{Exit, Failure};

/// Runs the command line: connects, runs the command on stdin/stdout/stderr, and
/// prints any failure on stderr.
pub async fn run(cli: Cli) -> Exit {
    let mut err = std::io::stderr();
    let result = async {
        let url = cli.backend.as_deref().ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                "no backend: pass --backend (or set LOCKCTL_BACKEND), e.g. kube://default",
            )
        })?;
        let target =
            connect::Target::parse(url).map_err(|reason| Failure::new(Exit::Usage, reason))?;
        let backend = connect::connect(&target, &cli.connection).await?;
        let (mut out, mut err, mut input) = (
            std::io::stdout(),
            std::io::stderr(),
            BufReader::new(std::io::stdin()),
        );
        let io = commands::Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
        };
        commands::execute(backend, cli.command, io).await
    }
    .await;
    match result {
        Ok(exit) => exit,
        Err(failure) => {
            let _ = writeln!(err, "lockctl: {failure}");
            failure.exit
        }
    }
}
