//! A server process on loopback, in its own temporary folder, that can be paused,
//! killed with SIGKILL and restarted on the same folder.
//!
//! Every server runs under a small shell "lifeline" that holds the write end of nothing
//! but our pipe: when this test process ends, however it ends (a panic, an abort, a
//! SIGKILL), the pipe closes and the lifeline kills the server and removes its folder.
//! So a server shared by a whole test binary never outlives it, without any unsafe code.
//!
//! Every server of the harness that one such process serves (etcd, Redis, a local
//! kube-apiserver) is [`Served`]: the same controls for each, from its readiness check.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::time::{Instant, sleep};

/// The lifeline: starts the server, prints its pid, and waits for our pipe to close
/// (kill the server and remove its folder) or for the line `keep` (kill it, keep the
/// folder for a restart).
const LIFELINE: &str = r#"
"$@" >>"$LIFELINE_LOG" 2>&1 </dev/null &
pid=$!
echo "$pid"
keep=
if read -r line && [ "$line" = keep ]; then keep=1; fi
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ -z "$keep" ] && rm -rf "$LIFELINE_DIR"
exit 0
"#;

/// Finds an installed program, or fails saying how to install it.
pub fn program(name: &str, install_hint: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: {install_hint} (scripts/provision installs everything)")
    })
}

/// A free TCP port on 127.0.0.1, never handed out twice by this process, so that
/// servers started side by side by parallel tests cannot pick the same one. (The port
/// is free when asked; the server binds it right after, and each server's readiness
/// check also makes sure the server answering is the one started.)
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"));
        if given.insert(port) {
            return port;
        }
    }
}

/// A running (or killed) server process.
#[derive(Debug)]
pub struct Server {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    log: PathBuf,
    running: Option<Lifeline>,
}

#[derive(Debug)]
struct Lifeline {
    wrapper: Child,
    pipe: ChildStdin,
    pid: Pid,
}

impl Server {
    /// A fresh temporary folder for a server called `name`.
    pub fn make_dir(name: &str) -> PathBuf {
        tempfile::Builder::new()
            .prefix(&format!("lock-tests-{name}-"))
            .tempdir()
            .map(tempfile::TempDir::keep)
            .unwrap_or_else(|error| panic!("cannot create a temporary folder for {name}: {error}"))
    }

    /// Starts `program` with `args` for a server called `name` whose files live in `dir`
    /// (removed when the server is dropped).
    pub fn spawn(name: &str, program: PathBuf, args: Vec<OsString>, dir: PathBuf) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut server = Self {
            name: name.to_owned(),
            program,
            args,
            dir,
            log,
            running: None,
        };
        server.start();
        server
    }

    fn start(&mut self) {
        let mut wrapper = Command::new("bash")
            .arg("-c")
            .arg(LIFELINE)
            .arg(&self.name)
            .arg(&self.program)
            .args(&self.args)
            .env("LIFELINE_LOG", &self.log)
            .env("LIFELINE_DIR", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start bash to run {}: {error}", self.name));
        let pipe = wrapper.stdin.take().expect("stdin is piped");
        let mut line = String::new();
        let read = wrapper
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let pid = match (read, line.trim().parse::<i32>()) {
            (Some(Ok(_)), Ok(pid)) => Pid::from_raw(pid),
            _ => panic!(
                "could not start {}: the lifeline printed {line:?}",
                self.name
            ),
        };
        self.running = Some(Lifeline { wrapper, pipe, pid });
    }

    /// The server's folder (data, configuration, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<Pid> {
        self.running.as_ref().map(|l| l.pid)
    }

    /// Whether the process is running (or paused), not exited.
    pub fn is_alive(&self) -> bool {
        self.pid().is_some_and(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit(')')
                        .next()
                        .map(|rest| rest.trim_start().to_owned())
                })
                .is_some_and(|state| !state.starts_with('Z') && !state.starts_with('X'))
        })
    }

    /// Everything the server has printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of the server's log, for failure messages (of a Go server that died, the
    /// lines before the dump of its goroutines).
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        // A Go server that died says why just before the dump of its goroutines.
        let end = lines
            .iter()
            .position(|line| line.starts_with("goroutine "))
            .unwrap_or(lines.len());
        lines[end.saturating_sub(30)..end].join("\n")
    }

    fn signal(&self, signal: Signal) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        kill(pid, signal)
            .unwrap_or_else(|error| panic!("cannot send {signal} to {}: {error}", self.name));
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing.
    /// Returns once every thread of it has stopped (a busy machine can leave threads
    /// running, and answering, for a while after the signal is sent).
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.stopped() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop within 10 s of SIGSTOP",
                self.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether no thread of the server runs: each is stopped or gone.
    fn stopped(&self) -> bool {
        let Some(pid) = self.pid() else { return true };
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return true;
        };
        tasks.flatten().all(|task| {
            fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| stat.rsplit(')').next().map(str::to_owned))
                .and_then(|rest| rest.trim_start().chars().next())
                .is_none_or(|state| matches!(state, 'T' | 't' | 'Z' | 'X'))
        })
    }

    /// Asks the server to shut down gracefully (SIGTERM).
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Kills the server with SIGKILL, keeping its folder for [`restart`](Server::restart).
    pub fn kill(&mut self) {
        if let Some(mut lifeline) = self.running.take() {
            let _ = kill(lifeline.pid, Signal::SIGKILL);
            let _ = writeln!(lifeline.pipe, "keep");
            drop(lifeline.pipe);
            let _ = lifeline.wrapper.wait();
        }
    }

    /// Starts the server again with the same arguments on the same folder.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Starts the server again on the same folder with `args` from now on.
    pub fn restart_with(&mut self, args: Vec<OsString>) {
        self.kill();
        self.args = args;
        self.start();
    }

    /// Waits until `ready` says the server answers, failing with its log if it exits or
    /// takes longer than `limit`.
    pub async fn wait_until_ready<F, Fut>(&self, limit: Duration, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        loop {
            // Alive before and after: an answer from another server on a port ours
            // failed to bind does not count.
            if self.is_alive() && ready().await && self.is_alive() {
                return;
            }
            if !self.is_alive() {
                panic!(
                    "{} exited while starting; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} was not ready within {limit:?}; its log ends:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A server of the harness served by one [`Server`] process, with a check that it
/// answers: its process to pause and resume, SIGKILL, and a restart that returns once it
/// answers again, the same for every such server.
pub trait Served: Send + Sync {
    /// How long it may take to answer after a start or a restart.
    const STARTUP: Duration = Duration::from_secs(30);

    /// One try: whether the server answers, and is the one started (not another server
    /// on a port ours failed to bind).
    fn answers(&self) -> impl Future<Output = bool> + Send;

    /// The server process, for pausing and resuming.
    fn server(&self) -> &Server;

    /// The server process, for killing and restarting.
    fn server_mut(&mut self) -> &mut Server;

    /// Waits until the server [`answers`](Served::answers), failing with its log if it
    /// exits or takes longer than [`STARTUP`](Served::STARTUP).
    fn wait_until_ready(&self) -> impl Future<Output = ()> + Send {
        self.server()
            .wait_until_ready(Self::STARTUP, || self.answers())
    }

    /// Kills the server with SIGKILL; its folder (data, configuration) stays for
    /// [`restart`](Served::restart).
    fn kill(&mut self) {
        self.server_mut().kill();
    }

    /// Starts the server again with the same arguments on the same folder and ports, and
    /// waits until it answers.
    fn restart(&mut self) -> impl Future<Output = ()> + Send {
        async move {
            self.server_mut().restart();
            self.wait_until_ready().await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut lifeline) = self.running.take() {
            // Resume first: a paused server must be able to die and be reaped.
            let _ = kill(lifeline.pid, Signal::SIGCONT);
            drop(lifeline.pipe);
            let _ = lifeline.wrapper.wait();
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
