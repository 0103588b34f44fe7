//! The subcommands, over any backend.

use std::{
    io::{BufRead, Write},
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use lock_core::{Backend, DEFAULT_TTL, Error, Locks, Release, Timing};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    cli::{Command, Output},
    exit::{Exit, Failure},
    show::State,
};

/// How often `watch` looks again when the backend sends no notification (so that an
/// expiry shows).
const WATCH_POLL: Duration = Duration::from_secs(1);

/// Where a command writes and reads.
pub struct Io<'a> {
    /// Results.
    pub out: &'a mut (dyn Write + Send),
    /// Prompts and progress.
    pub err: &'a mut (dyn Write + Send),
    /// Answers to prompts.
    pub input: &'a mut (dyn BufRead + Send),
}

/// Runs `command` on `backend`, through lock-core's operator API ([`Locks`]): every
/// request is bounded by the request timeout of the default timing (5 s).
pub async fn execute(
    backend: Arc<dyn Backend>,
    command: Command,
    io: Io<'_>,
) -> Result<Exit, Failure> {
    let timing = Timing::new(DEFAULT_TTL).with_poll_interval(WATCH_POLL);
    let locks = Locks::new(backend).with_timing(timing)?;
    match command {
        Command::Status { name, output } => status(&locks, &name, output, io).await,
        Command::List { prefix, output } => list(&locks, &prefix, output, io).await,
        Command::Watch {
            name,
            count,
            output,
        } => watch(&locks, &name, count, output, io).await,
        Command::Acquire {
            name,
            hold,
            until_signal: _,
            wait,
            ttl,
            identity,
        } => {
            let identity = identity.unwrap_or_else(default_identity);
            acquire(&locks, &name, &identity, ttl, hold, wait, io).await
        }
        Command::Release { name, holder } => release(&locks, &name, &holder, io).await,
        Command::Break { name, yes } => break_lock(&locks, &name, yes, io).await,
    }
}

/// `lockctl@HOST-PID`: who lockctl acts as unless told otherwise.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("lockctl@{host}-{}", std::process::id())
}

/// A description as a state; a record not written by this library is shown, not fatal.
fn state(
    name: &str,
    described: lock_core::Result<Option<lock_core::LockInfo>>,
) -> Result<State, Failure> {
    match described {
        Ok(info) => Ok(State::new(name, info.as_ref(), SystemTime::now())),
        Err(Error::Malformed { reason, .. }) => Ok(State::unreadable(name, reason)),
        Err(error) => Err(error.into()),
    }
}

async fn status(locks: &Locks, name: &str, output: Output, io: Io<'_>) -> Result<Exit, Failure> {
    let state = state(name, locks.holder(name).await)?;
    match output {
        Output::Text => writeln!(io.out, "{}", state.block())?,
        Output::Json => writeln!(io.out, "{}", state.json())?,
    }
    Ok(Exit::Ok)
}

async fn list(locks: &Locks, prefix: &str, output: Output, io: Io<'_>) -> Result<Exit, Failure> {
    let listed = locks.list(prefix).await?;
    if output == Output::Text {
        writeln!(io.out, "{}", State::header())?;
    }
    for lock in listed {
        let state = state(&lock.name, lock.holder)?;
        match output {
            Output::Text => writeln!(io.out, "{}", state.row())?,
            Output::Json => writeln!(io.out, "{}", state.json())?,
        }
    }
    Ok(Exit::Ok)
}

async fn watch(
    locks: &Locks,
    name: &str,
    count: Option<usize>,
    output: Output,
    io: Io<'_>,
) -> Result<Exit, Failure> {
    let mut states = locks.observe(name)?;
    let mut last = None;
    let mut printed = 0;
    // Listening from the start, so that no signal falls between two waits.
    let mut interrupt = Interrupt::listen()?;
    loop {
        let item = tokio::select! {
            item = states.next() => item,
            () = interrupt.recv() => return Ok(Exit::Ok),
        };
        let Some(described) = item else {
            return Ok(Exit::Ok);
        };
        let state = match state(name, described) {
            Ok(state) => state,
            Err(failure) => {
                writeln!(io.err, "lockctl: {failure} (still watching)")?;
                continue;
            }
        };
        if last.as_ref() == Some(&state.key()) {
            continue;
        }
        match output {
            Output::Text => writeln!(io.out, "{}", state.line(SystemTime::now()))?,
            Output::Json => writeln!(io.out, "{}", state.json())?,
        }
        io.out.flush()?;
        last = Some(state.key());
        printed += 1;
        if count.is_some_and(|count| printed >= count) {
            return Ok(Exit::Ok);
        }
    }
}

async fn acquire(
    locks: &Locks,
    name: &str,
    identity: &str,
    ttl: Duration,
    hold: Option<Duration>,
    wait: Option<Duration>,
    io: Io<'_>,
) -> Result<Exit, Failure> {
    let lock = locks
        .clone()
        .with_timing(Timing::new(ttl))?
        .lock(name, identity)?;
    // Listening from the start, so that a signal right after acquiring is not lost.
    let mut interrupt = Interrupt::listen()?;
    let acquiring = async {
        match wait {
            Some(wait) => lock.acquire_timeout(wait).await,
            None => lock.acquire().await,
        }
    };
    let guard = tokio::select! {
        guard = acquiring => guard?,
        () = interrupt.recv() => {
            return Err(Failure::new(Exit::NotHeld, format!("interrupted before {name} was acquired")));
        }
    };
    writeln!(
        io.out,
        "acquired {name} token={} holder={identity}",
        guard.token()
    )?;
    io.out.flush()?;
    // Held until the time is up or a signal comes, whichever is first.
    let held = async {
        match hold {
            Some(hold) => tokio::select! {
                () = tokio::time::sleep(hold) => {}
                () = interrupt.recv() => {}
            },
            None => interrupt.recv().await,
        }
    };
    tokio::select! {
        () = held => {}
        reason = guard.lost() => {
            return Err(Failure::new(Exit::Lost, format!("lost {name} while holding it: {reason}")));
        }
    }
    match guard.release().await {
        Ok(()) => writeln!(io.out, "released {name}")?,
        // The lock was held until the release began, and it is not ours any more.
        Err(error @ lock_core::Error::ReleaseUnconfirmed { .. }) => {
            writeln!(io.err, "warning: {error}")?;
            writeln!(io.out, "released {name}")?;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(Exit::Ok)
}

async fn release(locks: &Locks, name: &str, holder: &str, io: Io<'_>) -> Result<Exit, Failure> {
    match locks.release_holder(name, holder).await? {
        Release::Released => {
            writeln!(io.out, "released {name} (held by {holder})")?;
            Ok(Exit::Ok)
        }
        Release::NotHeld => Err(Failure::new(
            Exit::NotHeld,
            format!("{name} is not held by {holder}; nothing was changed"),
        )),
        other => Err(Failure::new(
            Exit::Failed,
            format!("{name}: the backend answered {other:?}, which this lockctl does not know"),
        )),
    }
}

async fn break_lock(locks: &Locks, name: &str, yes: bool, io: Io<'_>) -> Result<Exit, Failure> {
    let Some(current) = locks.holder(name).await? else {
        writeln!(io.out, "{name} is free; nothing to break")?;
        return Ok(Exit::Ok);
    };
    if !yes {
        let token = current
            .token
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        write!(
            io.err,
            "Break {name}, held by {} (token {token})? The holder loses the lock. [y/N] ",
            current.holder
        )?;
        io.err.flush()?;
        let mut answer = String::new();
        io.input.read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(Failure::new(
                Exit::Aborted,
                format!("{name} was not broken"),
            ));
        }
    }
    let broken = locks.break_lock(name, &default_identity()).await?;
    let previous = broken
        .previous
        .map_or_else(|| "nobody".to_owned(), |p| p.holder);
    match (broken.token, broken.taken_by) {
        (Some(token), _) => writeln!(
            io.out,
            "broke {name}: {previous} superseded by token={token}; the lock is free"
        )?,
        (None, Some(next)) => writeln!(
            io.out,
            "broke {name}: {previous} superseded; {} took it at once",
            next.holder
        )?,
        (None, None) => writeln!(io.out, "broke {name}")?,
    }
    Ok(Exit::Ok)
}

/// SIGINT and SIGTERM, caught from the moment this is made (before any await), so that
/// a signal that comes before anyone waits for it is kept rather than ending the process.
struct Interrupt {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupt {
    fn listen() -> Result<Self, Failure> {
        let listen = |kind| {
            signal(kind)
                .map_err(|e| Failure::new(Exit::Failed, format!("cannot listen for signals: {e}")))
        };
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM (or one that came while nobody waited).
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
