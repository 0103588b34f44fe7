//! Every subcommand of the real `lockctl` binary against real servers: Kubernetes
//! (kube-apiserver), etcd and Redis. Another process holds the locks through the
//! library, as a controller would.

use std::{ffi::OsString, process::Stdio, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::PostParams};
use lock_core::{Backend, Error, FencingToken, Lock, Timing, conformance::unique_name};
use lock_tests::{Etcd, Kube, Redis};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
    time::timeout,
};

const TTL: Duration = Duration::from_secs(3);
const LIMIT: Duration = Duration::from_secs(20);

/// How to point lockctl at one server, and how to write to a store fenced on it.
struct Setup {
    url: String,
    /// Flags besides `--backend`, e.g. TLS files.
    flags: Vec<String>,
    env: Vec<(String, OsString)>,
    backend: Arc<dyn Backend>,
    /// A fenced write of `value` with `token` to a store of this backend.
    fenced:
        Box<dyn Fn(FencingToken, u64) -> BoxFuture<'static, lock_core::Result<()>> + Send + Sync>,
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lockctl"));
        command
            .arg("--backend")
            .arg(&self.url)
            .args(&self.flags)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Ran {
        ran(self.command(args)).await
    }

    async fn spawn(&self, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("lockctl starts");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        (child, lines)
    }

    fn lock(&self, name: &str, identity: &str) -> Lock {
        Lock::builder(self.backend.clone(), name, identity)
            .timing(Timing::new(TTL))
            .build()
            .expect("a valid lock")
    }
}

/// Runs a lockctl command to its end.
async fn ran(mut command: Command) -> Ran {
    let output = timeout(LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("lockctl did not finish within {LIMIT:?}: {command:?}"))
        .expect("lockctl runs");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    timeout(LIMIT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("readable")
        .expect("a line, not the end")
}

async fn exit_code(child: &mut Child) -> i32 {
    timeout(LIMIT, child.wait())
        .await
        .expect("exits in time")
        .expect("waitable")
        .code()
        .unwrap_or(-1)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every subcommand, in the order an operator would use them.
async fn every_subcommand(setup: Setup) {
    let name = unique_name("ctl");

    // status of a free lock
    let free = setup.run(&["status", &name]).await;
    assert_eq!(free.code, 0, "{}", free.stderr);
    assert!(free.stdout.contains("state:     free"), "{}", free.stdout);

    // status, list and JSON of a held one
    let holder = setup.lock(&name, "pod-a").acquire().await.expect("acquire");
    let status = setup.run(&["status", &name, "--output", "json"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status = json(&status.stdout);
    assert_eq!(
        (&status["state"], &status["holder"]),
        (&"held".into(), &"pod-a".into())
    );
    if !status["token"].is_null() {
        assert_eq!(status["token"], holder.token().get());
    }
    assert_eq!(status["lease_duration_seconds"], 3.0);
    assert_eq!(status["expired"], false);
    let text = setup.run(&["status", &name]).await.stdout;
    assert!(
        text.contains("holder:    pod-a") && text.contains("expires:   in"),
        "{text}"
    );

    let listed = setup.run(&["list", &name]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.starts_with("NAME"), "{}", listed.stdout);
    assert!(
        listed.stdout.contains(&name) && listed.stdout.contains("pod-a"),
        "{}",
        listed.stdout
    );
    let listed = setup.run(&["list", &name, "-o", "json"]).await.stdout;
    let rows: Vec<Value> = listed.lines().map(json).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["name"], name.as_str());

    // watch: the current holder, then the release
    let (mut watch, mut lines) = setup.spawn(&["watch", &name, "--count", "2"]).await;
    let first = next_line(&mut lines).await;
    assert!(first.contains(" held holder=pod-a"), "{first}");
    holder.release().await.expect("release");
    let second = next_line(&mut lines).await;
    assert!(second.ends_with(&format!("{name} free")), "{second}");
    assert_eq!(exit_code(&mut watch).await, 0);

    // acquire --hold: holds, prints the token, releases
    let (mut held, mut lines) = setup
        .spawn(&[
            "acquire",
            &name,
            "--hold",
            "2s",
            "--ttl",
            "3s",
            "--identity",
            "ctl-holder",
        ])
        .await;
    let acquired = next_line(&mut lines).await;
    assert!(
        acquired.starts_with(&format!("acquired {name} token=")),
        "{acquired}"
    );
    let described = setup.lock(&name, "x").holder().await.expect("describe");
    assert_eq!(
        described.map(|info| info.holder).as_deref(),
        Some("ctl-holder")
    );
    assert_eq!(next_line(&mut lines).await, format!("released {name}"));
    assert_eq!(exit_code(&mut held).await, 0);
    assert_eq!(
        setup.lock(&name, "x").holder().await.expect("describe"),
        None
    );

    // acquire --until-signal: SIGTERM releases
    let (mut held, mut lines) = setup
        .spawn(&["acquire", &name, "--until-signal", "--ttl", "3s"])
        .await;
    next_line(&mut lines).await;
    let pid = nix::unistd::Pid::from_raw(held.id().expect("running").try_into().expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    assert_eq!(next_line(&mut lines).await, format!("released {name}"));
    assert_eq!(exit_code(&mut held).await, 0);

    // acquire --hold: SIGTERM releases before the time is up
    let (mut held, mut lines) = setup.spawn(&["acquire", &name, "--hold", "1h"]).await;
    next_line(&mut lines).await;
    let pid = nix::unistd::Pid::from_raw(held.id().expect("running").try_into().expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    assert_eq!(next_line(&mut lines).await, format!("released {name}"));
    assert_eq!(exit_code(&mut held).await, 0);

    // acquire --wait on a held lock: exit 3
    let other = setup.lock(&name, "pod-b").acquire().await.expect("acquire");
    let waited = setup
        .run(&["acquire", &name, "--hold", "1s", "--wait", "500ms"])
        .await;
    assert_eq!(waited.code, 3, "{}", waited.stderr);
    other.release().await.expect("release");

    // release --holder: a compare-and-set on the holder
    let stuck = setup.lock(&name, "pod-c").acquire().await.expect("acquire");
    let wrong = setup.run(&["release", &name, "--holder", "pod-z"]).await;
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("not held by pod-z"),
        "{}",
        wrong.stderr
    );
    assert!(stuck.is_valid());
    let right = setup.run(&["release", &name, "--holder", "pod-c"]).await;
    assert_eq!(right.code, 0, "{}", right.stderr);
    timeout(TTL * 2, stuck.lost())
        .await
        .expect("the holder learns it");

    // break: asks first; with --yes, supersedes the holder, whose fenced writes then fail
    let stuck = setup.lock(&name, "pod-d").acquire().await.expect("acquire");
    (setup.fenced)(stuck.token(), 1)
        .await
        .expect("the holder writes");
    let unconfirmed = setup.run(&["break", &name]).await;
    assert_eq!(unconfirmed.code, 5, "{}", unconfirmed.stderr);
    assert!(
        unconfirmed.stderr.contains("[y/N]"),
        "{}",
        unconfirmed.stderr
    );
    assert!(stuck.is_valid(), "nothing broken without a yes");
    let broke = setup.run(&["break", &name, "--yes"]).await;
    assert_eq!(broke.code, 0, "{}", broke.stderr);
    assert!(
        broke.stdout.contains("pod-d superseded by token="),
        "{}",
        broke.stdout
    );
    timeout(TTL * 2, stuck.lost())
        .await
        .expect("the broken holder learns it");
    let next = setup
        .lock(&name, "pod-e")
        .try_acquire()
        .await
        .expect("free after the break");
    (setup.fenced)(next.token(), 2)
        .await
        .expect("the next holder writes");
    assert!(matches!(
        (setup.fenced)(stuck.token(), 3).await,
        Err(Error::StaleToken { .. })
    ));
    next.release().await.expect("release");

    // bad usage: exit 2
    let bad = setup.run(&["status", "Not_A_Name"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_on_kubernetes() {
    let kube = Kube::shared().await;
    let client = kube.admin().await;
    let store = unique_name("ctl-store");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), kube.namespace());
    let map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(store.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    maps.create(&PostParams::default(), &map)
        .await
        .expect("a ConfigMap");
    every_subcommand(Setup {
        url: format!("kube://{}", kube.namespace()),
        flags: Vec::new(),
        env: vec![(
            "KUBECONFIG".into(),
            kube.kubeconfig().expect("a kubeconfig").into_os_string(),
        )],
        backend: Arc::new(lock_kube::KubeBackend::new(client, kube.namespace())),
        fenced: Box::new(move |token, value| {
            let (maps, store) = (maps.clone(), store.clone());
            Box::pin(async move {
                lock_kube::fenced_update(&maps, &store, token, |map| {
                    let data = map.data.get_or_insert_with(Default::default);
                    data.insert("value".into(), value.to_string());
                })
                .await
                .map(drop)
            })
        }),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_on_etcd() {
    let etcd = Etcd::shared().await;
    let url = format!("etcd://127.0.0.1:{}", etcd.port());
    every_subcommand(on_etcd(etcd, url, Vec::new(), Vec::new()).await).await;
}

/// lockctl on `etcd` with `flags` and `env`; the library holds locks beside it, and a
/// store is written with `fenced_put`.
async fn on_etcd(
    etcd: &Etcd,
    url: String,
    flags: Vec<String>,
    env: Vec<(String, OsString)>,
) -> Setup {
    let client = etcd.client().await;
    let store = unique_name("ctl-store");
    Setup {
        url,
        flags,
        env,
        backend: Arc::new(lock_etcd::EtcdBackend::new(client.clone())),
        fenced: Box::new(move |token, value| {
            let (client, store) = (client.clone(), store.clone());
            Box::pin(async move {
                lock_etcd::fenced_put(&client, &store, value.to_string(), token).await
            })
        }),
    }
}

/// The TLS and authentication flags reach etcd: every subcommand over mutual TLS as a
/// user with a password; a wrong password, or no TLS, is refused with exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_on_etcd_over_tls_with_a_client_certificate_and_a_password() {
    let etcd = Etcd::start_secure().await;
    let secure = etcd.secure().expect("secured").clone();
    let file = |name: &str| secure.certificates.file(name).display().to_string();
    let url = format!("etcd://127.0.0.1:{}", etcd.port());
    let tls = [
        "--ca".to_owned(),
        file("ca.crt"),
        "--cert".to_owned(),
        file("client.crt"),
        "--key".to_owned(),
        file("client.key"),
    ];
    let lockctl = |flags: &[String], password: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lockctl"));
        command
            .args(["--backend", &url])
            .args(flags)
            .args(["--user", secure.user, "status", "anything"])
            .env("LOCKCTL_PASSWORD", password)
            .stdin(Stdio::null());
        command
    };

    let wrong_password = ran(lockctl(&tls, "not-the-password")).await;
    assert_eq!(wrong_password.code, 1, "{}", wrong_password.stdout);
    assert!(
        wrong_password.stderr.contains("authentication failed"),
        "{}",
        wrong_password.stderr
    );
    let without_tls = ran(lockctl(&[], secure.password)).await;
    assert_eq!(without_tls.code, 1, "{}", without_tls.stdout);
    assert!(
        without_tls.stderr.contains("cannot connect to etcd"),
        "{}",
        without_tls.stderr
    );
    let mut without_password = lockctl(&tls, "");
    without_password.env_remove("LOCKCTL_PASSWORD");
    let without_password = ran(without_password).await;
    assert_eq!(without_password.code, 2, "{}", without_password.stderr);
    assert!(
        without_password.stderr.contains("go together"),
        "{}",
        without_password.stderr
    );

    let mut flags = tls.to_vec();
    flags.extend(["--user".to_owned(), secure.user.to_owned()]);
    let env = vec![("LOCKCTL_PASSWORD".to_owned(), secure.password.into())];
    every_subcommand(on_etcd(&etcd, url, flags, env).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_on_redis() {
    let redis = Redis::shared().await;
    let backend = lock_redis::RedisBackend::connect(&redis.url())
        .await
        .expect("connect");
    every_subcommand(on_redis(redis.url(), Vec::new(), backend)).await;
}

/// lockctl on a Redis at `url` with `flags`; the fenced store is a key of it.
fn on_redis(url: String, flags: Vec<String>, backend: lock_redis::RedisBackend) -> Setup {
    let connection = backend.connection();
    let store = unique_name("ctl-store");
    Setup {
        url,
        flags,
        env: Vec::new(),
        backend: Arc::new(backend),
        fenced: Box::new(move |token, value| {
            let (mut connection, store) = (connection.clone(), store.clone());
            Box::pin(
                async move { lock_redis::fenced_set(&mut connection, &store, value, token).await },
            )
        }),
    }
}

/// `rediss://` with `--ca`: every subcommand over Redis's TLS with a private CA; a TLS
/// flag on a plain URL is a usage error (exit 2). (That the server's certificate is
/// refused without the CA is lock-redis's test: here it would cost the seconds redis'
/// connection manager spends trying again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_on_redis_over_tls() {
    let redis = Redis::start_tls().await;
    let ca = redis.ca().expect("a TLS Redis").display().to_string();
    let lockctl = |url: &str, flags: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lockctl"));
        command
            .args(["--backend", url])
            .args(flags)
            .args(["status", "anything"])
            .stdin(Stdio::null());
        command
    };
    let plain_url = redis.url().replacen("rediss://", "redis://", 1);
    let plain_with_ca = ran(lockctl(&plain_url, &["--ca", &ca])).await;
    assert_eq!(plain_with_ca.code, 2, "{}", plain_with_ca.stderr);
    assert!(
        plain_with_ca.stderr.contains("rediss://"),
        "{}",
        plain_with_ca.stderr
    );

    let certificates = redis.tls_certificates().expect("a TLS Redis");
    let backend = lock_redis::RedisBackend::connect_with_tls(&redis.url(), certificates)
        .await
        .expect("connect over TLS");
    every_subcommand(on_redis(redis.url(), vec!["--ca".to_owned(), ca], backend)).await;
}

/// On etcd, `fenced_txn` is guarded by the lock's own record: the broken holder's write
/// fails at once, before anyone else has written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_break_an_etcd_fenced_transaction_of_the_former_holder_fails_at_once() {
    let etcd = Etcd::shared().await;
    let backend = lock_etcd::EtcdBackend::new(etcd.client().await);
    let name = unique_name("ctl-txn");
    let stuck = Lock::builder(backend.clone(), name.as_str(), "pod-a")
        .timing(Timing::new(TTL))
        .build()
        .expect("a valid lock")
        .acquire()
        .await
        .expect("acquire");
    let put = || vec![etcd_client::TxnOp::put("ctl-report", "done", None)];
    lock_etcd::fenced_txn(&backend, stuck.name(), stuck.token(), put())
        .await
        .expect("the holder writes");
    let output = Command::new(env!("CARGO_BIN_EXE_lockctl"))
        .args(["--backend", &format!("etcd://127.0.0.1:{}", etcd.port())])
        .args(["break", &name, "--yes"])
        .output()
        .await
        .expect("lockctl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(matches!(
        lock_etcd::fenced_txn(&backend, stuck.name(), stuck.token(), put()).await,
        Err(Error::StaleToken { .. })
    ));
}
