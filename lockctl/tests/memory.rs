//! The subcommands' logic on the in-memory backend, in-process (the binary cannot reach
//! another process's memory): output, exit codes and the confirmation prompt.

use std::{sync::Arc, time::Duration};

use lock_core::{Backend, Faulty, Lock, MemoryBackend};
use lockctl::{
    Exit,
    cli::{Command, Output},
    commands::{Io, execute},
};

struct Ran {
    result: Result<Exit, lockctl::Failure>,
    out: String,
    err: String,
}

async fn run(backend: &Arc<dyn Backend>, command: Command, input: &str) -> Ran {
    let (mut out, mut err, mut input) = (Vec::new(), Vec::new(), input.as_bytes());
    let io = Io {
        out: &mut out,
        err: &mut err,
        input: &mut input,
    };
    let result = execute(backend.clone(), command, io).await;
    Ran {
        result,
        out: String::from_utf8(out).expect("text"),
        err: String::from_utf8(err).expect("text"),
    }
}

fn exit(ran: &Ran) -> Exit {
    match &ran.result {
        Ok(exit) => *exit,
        Err(failure) => failure.exit,
    }
}

#[tokio::test(start_paused = true)]
async fn status_shows_the_holder_and_its_token_and_list_finds_it() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let guard = Lock::new(backend.clone(), "reports", "pod-a")
        .expect("valid")
        .acquire()
        .await
        .expect("acquire");
    let status = run(
        &backend,
        Command::Status {
            name: "reports".into(),
            output: Output::Text,
        },
        "",
    )
    .await;
    assert_eq!(exit(&status), Exit::Ok);
    assert!(status.out.contains("holder:    pod-a"), "{}", status.out);
    assert!(
        status
            .out
            .contains(&format!("token:     {}", guard.token())),
        "{}",
        status.out
    );

    let list = run(
        &backend,
        Command::List {
            prefix: "rep".into(),
            output: Output::Text,
        },
        "",
    )
    .await;
    assert_eq!(list.out.lines().count(), 2, "{}", list.out);
    assert!(
        list.out
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("reports")),
        "{}",
        list.out
    );
    let none = run(
        &backend,
        Command::List {
            prefix: "other".into(),
            output: Output::Json,
        },
        "",
    )
    .await;
    assert_eq!(none.out, "");
}

#[tokio::test(start_paused = true)]
async fn release_needs_the_right_holder() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let guard = Lock::new(backend.clone(), "reports", "pod-a")
        .expect("valid")
        .acquire()
        .await
        .expect("acquire");
    let release = |holder: &str| Command::Release {
        name: "reports".into(),
        holder: holder.into(),
    };
    let wrong = run(&backend, release("pod-b"), "").await;
    assert_eq!(exit(&wrong), Exit::NotHeld);
    assert!(guard.is_valid());
    let right = run(&backend, release("pod-a"), "").await;
    assert_eq!(exit(&right), Exit::Ok);
    assert_eq!(right.out, "released reports (held by pod-a)\n");
    tokio::time::timeout(Duration::from_secs(30), guard.lost())
        .await
        .expect("lost");
}

#[tokio::test(start_paused = true)]
async fn break_asks_first_and_only_a_yes_breaks() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let guard = Lock::new(backend.clone(), "reports", "pod-a")
        .expect("valid")
        .acquire()
        .await
        .expect("acquire");
    let broken = |yes| Command::Break {
        name: "reports".into(),
        yes,
    };
    for answer in ["", "n\n", "no\n", "whatever\n"] {
        let declined = run(&backend, broken(false), answer).await;
        assert_eq!(exit(&declined), Exit::Aborted, "{answer:?}");
        assert!(declined.err.contains("held by pod-a"), "{}", declined.err);
        assert!(guard.is_valid());
    }
    let confirmed = run(&backend, broken(false), "y\n").await;
    assert_eq!(exit(&confirmed), Exit::Ok, "{:?}", confirmed.result);
    assert!(
        confirmed
            .out
            .starts_with("broke reports: pod-a superseded by token="),
        "{}",
        confirmed.out
    );
    tokio::time::timeout(Duration::from_secs(30), guard.lost())
        .await
        .expect("lost");
    let free = run(&backend, broken(true), "").await;
    assert_eq!(free.out, "reports is free; nothing to break\n");
}

#[tokio::test(start_paused = true)]
async fn watch_prints_a_line_per_change_and_stops_after_count() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let holder = Lock::new(backend.clone(), "reports", "pod-a").expect("valid");
    let changes = tokio::spawn(async move {
        // Paused time: the watch reads its first state before virtual time moves, so
        // these sleeps script the order of events; they wait for nothing real.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let guard = holder.acquire().await.expect("acquire");
        tokio::time::sleep(Duration::from_secs(2)).await;
        guard.release().await.expect("release");
    });
    let watch = Command::Watch {
        name: "reports".into(),
        count: Some(3),
        output: Output::Text,
    };
    let watched = run(&backend, watch, "").await;
    changes.await.expect("holder");
    let lines: Vec<&str> = watched.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", watched.out);
    assert!(
        lines[0].ends_with("reports free") || lines[0].contains("holder=pod-a"),
        "{}",
        watched.out
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains(" held holder=pod-a token=")),
        "{}",
        watched.out
    );
    assert!(lines[2].ends_with("reports free"), "{}", watched.out);
}

#[tokio::test(start_paused = true)]
async fn invalid_names_are_usage_errors() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let status = run(
        &backend,
        Command::Status {
            name: "Bad Name".into(),
            output: Output::Text,
        },
        "",
    )
    .await;
    assert_eq!(exit(&status), Exit::Usage);
}

/// Every request lockctl makes goes through lock-core's operator API and is bounded like
/// a lock's own: on a backend that never answers, `list`, `status` and `release` fail
/// after the request timeout (5 s) with a transient timeout, instead of hanging.
#[tokio::test(start_paused = true)]
async fn list_status_and_release_time_out_on_a_frozen_backend() {
    let faulty = Faulty::new(MemoryBackend::new());
    let backend: Arc<dyn Backend> = Arc::new(faulty.clone());
    let _held = Lock::new(backend.clone(), "reports", "pod-a")
        .expect("valid")
        .acquire()
        .await
        .expect("acquire");
    faulty.freeze(true);
    let commands = [
        Command::List {
            prefix: String::new(),
            output: Output::Text,
        },
        Command::Status {
            name: "reports".into(),
            output: Output::Json,
        },
        Command::Release {
            name: "reports".into(),
            holder: "pod-a".into(),
        },
    ];
    for command in commands {
        let described = format!("{command:?}");
        let started = tokio::time::Instant::now();
        let ran = run(&backend, command, "").await;
        assert_eq!(exit(&ran), Exit::Failed, "{described}");
        let message = ran.result.expect_err("timed out").message;
        assert!(message.contains("timed out"), "{described}: {message}");
        assert_eq!(started.elapsed(), Duration::from_secs(5), "{described}");
    }
}
