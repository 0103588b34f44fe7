//! Redis as users run it for failover: a primary, a replica, and three Sentinels that
//! promote the replica when the primary dies.

use std::{ffi::OsString, path::Path, time::Duration};

use crate::{
    process::{Server, free_port, program},
    proxy::Proxy,
};

/// The name the Sentinels monitor the primary by.
pub const SERVICE: &str = "lock-tests";

/// Sentinel's `failover-timeout` without lag: a failover whose election split is tried
/// again after twice this.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(4);

/// Sentinel's `failover-timeout` with a lagging replica: Redis's default, so that
/// Sentinel leaves the replica's delaying proxy in place for that long.
const LAGGING_FAILOVER_TIMEOUT: Duration = Duration::from_secs(180);

/// A Redis primary and replica (each with an fsynced append-only file) and three
/// Sentinels on 127.0.0.1, stopped on drop. Sentinels declare the primary down after
/// 0.5 s without an answer and promote the replica; [`restart`](RedisSentinel::restart)
/// brings a killed server back as a replica of the current primary, as an operator's
/// start-up script that asks Sentinel first does.
///
/// ```no_run
/// use lock_tests::RedisSentinel;
///
/// # #[tokio::main] async fn main() {
/// let mut redis = RedisSentinel::start().await;
/// let primary = redis.primary().await;
/// redis.kill(primary);
/// let promoted = redis.failed_over_from(primary).await;
/// redis.restart(primary).await;  // a replica of `promoted` now
/// # drop(promoted); }
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    /// With a lagging replica, its replication link; without, the replica replicates
    /// from the primary directly.
    replication: Option<Lag>,
    servers: Vec<Server>,
    ports: Vec<u16>,
    sentinels: Vec<Server>,
    sentinel_ports: Vec<u16>,
}

/// A replica's delayed replication link.
#[derive(Debug)]
struct Lag {
    proxy: Proxy,
    latency: Duration,
    /// The server the link replicates from.
    upstream: usize,
}

impl RedisSentinel {
    /// Starts the primary (server 0), its replica (server 1) and the Sentinels, and
    /// waits until the replica is in sync and every Sentinel knows the others. The
    /// replica replicates from the primary directly, and a failover whose election
    /// splits the Sentinels' votes is tried again after 8 s (`failover-timeout` 4 s).
    pub async fn start() -> Self {
        Self::start_with(None, FAILOVER_TIMEOUT).await
    }

    /// Like [`start`](RedisSentinel::start), with the replica's replication delayed by
    /// `latency` each way (through a proxy), as a replica in another zone or under load
    /// lags: the primary acknowledges writes the replica does not have yet. A server
    /// [restarted](RedisSentinel::restart) as a replica lags as much, and a killed
    /// primary takes what its replica had not received with it.
    ///
    /// Sentinel re-points a replica whose primary's address is not the one it monitors
    /// (the proxy's is not) once its `failover-timeout` has passed since the replica's
    /// last change, which would end the lag; so these Sentinels keep Redis's default
    /// of 3 minutes, and a failover whose election splits is tried again only after
    /// twice that, as in production. [`lags`](RedisSentinel::lags) says whether the
    /// lag is still in place.
    pub async fn start_lagging(latency: Duration) -> Self {
        Self::start_with(Some(latency), LAGGING_FAILOVER_TIMEOUT).await
    }

    async fn start_with(latency: Option<Duration>, failover_timeout: Duration) -> Self {
        let redis_server = program("redis-server", "apt-get install redis-server");
        let ports = vec![free_port(), free_port()];
        let replication = match latency {
            Some(latency) => Some(Lag::to(0, ports[0], latency).await),
            None => None,
        };
        let upstream = replication
            .as_ref()
            .map_or(ports[0], |lag| lag.proxy.port());
        let mut servers = Vec::new();
        for (index, &port) in ports.iter().enumerate() {
            let replica_of = (index > 0).then_some(upstream);
            let dir = Server::make_dir("redis-ha");
            let args = server_args(port, &dir, replica_of);
            servers.push(Server::spawn(
                &format!("redis-{index}"),
                redis_server.clone(),
                args,
                dir,
            ));
        }
        let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut sentinels = Vec::new();
        for (index, &port) in sentinel_ports.iter().enumerate() {
            let dir = Server::make_dir("redis-sentinel");
            let config = dir.join("sentinel.conf");
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 500\n\
                     sentinel failover-timeout {SERVICE} {}\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    dir.display(),
                    ports[0],
                    failover_timeout.as_millis()
                ),
            )
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", config.display()));
            let args = vec![config.into_os_string(), OsString::from("--sentinel")];
            sentinels.push(Server::spawn(
                &format!("redis-sentinel-{index}"),
                redis_server.clone(),
                args,
                dir,
            ));
        }
        let redis = Self {
            replication,
            servers,
            ports,
            sentinels,
            sentinel_ports,
        };
        redis.wait_until_ready().await;
        redis
    }

    async fn wait_until_ready(&self) {
        for (index, server) in self.servers.iter().enumerate() {
            let port = self.ports[index];
            server
                .wait_until_ready(Duration::from_secs(30), || async move {
                    info(port, "replication").await.is_some_and(|replication| {
                        replication.contains("role:master")
                            || replication.contains("master_link_status:up")
                    })
                })
                .await;
        }
        for (index, sentinel) in self.sentinels.iter().enumerate() {
            let port = self.sentinel_ports[index];
            sentinel
                .wait_until_ready(Duration::from_secs(30), || async move {
                    // Knows the replica and the two other Sentinels.
                    let master = command(port, &["SENTINEL", "MASTER", SERVICE]).await;
                    master.is_some_and(|fields| {
                        field(&fields, "num-other-sentinels") == Some("2")
                            && field(&fields, "num-slaves") == Some("1")
                    })
                })
                .await;
        }
    }

    /// The Sentinels' URLs, `redis://127.0.0.1:PORT`.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinel_ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Server `index`'s port.
    pub fn port(&self, index: usize) -> u16 {
        self.ports[index]
    }

    /// The server the Sentinels name as primary now (as the first Sentinel that answers
    /// says).
    pub async fn primary(&self) -> usize {
        for &port in &self.sentinel_ports {
            let named = command(port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]).await;
            if let Some([_, named_port]) = named.as_deref()
                && let Some(index) = self.ports.iter().position(|p| p.to_string() == *named_port)
            {
                return index;
            }
        }
        panic!("no Sentinel names a primary of {SERVICE}");
    }

    /// Waits (up to 30 s) until the Sentinels name another primary than `old`, and
    /// returns it. A failover whose election split the Sentinels' votes is tried again
    /// by Sentinel only after twice `failover-timeout` (6 min with a lagging replica);
    /// after 10 s without one (Sentinel's election timeout), a Sentinel is told to fail
    /// over (`SENTINEL FAILOVER`) every 2 s, as an operator would.
    pub async fn failed_over_from(&self, old: usize) -> usize {
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(30);
        let mut nudge = started + Duration::from_secs(10);
        loop {
            let primary = self.primary().await;
            if primary != old {
                return primary;
            }
            let now = tokio::time::Instant::now();
            assert!(
                now < deadline,
                "Sentinel did not fail over from server {old} within 30 s"
            );
            if now >= nudge {
                for &port in &self.sentinel_ports {
                    let told: Option<redis::Value> =
                        query(port, &["SENTINEL", "FAILOVER", SERVICE]).await;
                    if told.is_some() {
                        break;
                    }
                }
                nudge = now + Duration::from_secs(2);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether every replica replicates through the delaying proxy, its link up (always
    /// true without [lag](RedisSentinel::start_lagging)): false once Sentinel has
    /// re-pointed one to the primary itself, or a replica does not answer within 1 s.
    pub async fn lags(&self) -> bool {
        let Some(lag) = &self.replication else {
            return true;
        };
        let primary = self.primary().await;
        for (index, &port) in self.ports.iter().enumerate() {
            if index == primary || !self.servers[index].is_alive() {
                continue;
            }
            let replication = info(port, "replication").await.unwrap_or_default();
            if !replication.contains(&format!("master_port:{}", lag.proxy.port()))
                || !replication.contains("master_link_status:up")
            {
                return false;
            }
        }
        true
    }

    /// Freezes server `index` (SIGSTOP): Sentinel fails over after 0.5 s, and the frozen
    /// server, thawed, is demoted by Sentinel.
    pub fn pause(&self, index: usize) {
        self.servers[index].pause();
    }

    /// Thaws server `index` (SIGCONT).
    pub fn resume(&self, index: usize) {
        self.servers[index].resume();
    }

    /// Sentinel `index`'s process, to pause or kill it.
    pub fn sentinel(&mut self, index: usize) -> &mut Server {
        &mut self.sentinels[index]
    }

    /// Kills server `index` (SIGKILL), keeping its files. A lagging replica's link from
    /// it is cut at once: what the replica had not received is lost with the primary,
    /// as when its machine fails.
    pub fn kill(&mut self, index: usize) {
        if let Some(lag) = &self.replication
            && lag.upstream == index
        {
            lag.proxy.cut();
        }
        self.servers[index].kill();
    }

    /// Starts server `index` again on its files: as a replica of the primary the
    /// Sentinels name now (lagging as much as the first replica did), or, if the
    /// Sentinels still name it, as the primary. Returns once it serves (a replica: in
    /// sync).
    pub async fn restart(&mut self, index: usize) {
        let primary = self.primary().await;
        let replica_of = if primary == index {
            None
        } else if let Some(lag) = &mut self.replication {
            *lag = Lag::to(primary, self.ports[primary], lag.latency).await;
            Some(lag.proxy.port())
        } else {
            Some(self.ports[primary])
        };
        let server = &mut self.servers[index];
        let args = server_args(self.ports[index], server.dir(), replica_of);
        server.restart_with(args);
        let port = self.ports[index];
        self.servers[index]
            .wait_until_ready(Duration::from_secs(30), || async move {
                info(port, "replication").await.is_some_and(|replication| {
                    replica_of.is_none() || replication.contains("master_link_status:up")
                })
            })
            .await;
    }
}

impl Lag {
    /// A link from server `upstream`, on `port`, delayed by `latency` each way.
    async fn to(upstream: usize, port: u16, latency: Duration) -> Self {
        let proxy = Proxy::to_port(port).await;
        proxy.set_latency(latency);
        Self {
            proxy,
            latency,
            upstream,
        }
    }
}

/// A Redis server's arguments: on `port`, its files in `dir`, every write fsynced, a
/// replica of the server on `replica_of` if given.
fn server_args(port: u16, dir: &Path, replica_of: Option<u16>) -> Vec<OsString> {
    let mut args = vec![
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "--dir".to_owned(),
        dir.display().to_string(),
        "--save".to_owned(),
        String::new(),
        "--appendonly".to_owned(),
        "yes".to_owned(),
        "--appendfsync".to_owned(),
        "always".to_owned(),
        "--protected-mode".to_owned(),
        "no".to_owned(),
    ];
    if let Some(primary) = replica_of {
        args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.to_string(),
        ]);
    }
    args.into_iter().map(OsString::from).collect()
}

/// `INFO section` of the server on `port`, within 1 s.
async fn info(port: u16, section: &str) -> Option<String> {
    query(port, &["INFO", section]).await
}

/// A command's answer as a list of strings, from the server (or Sentinel) on `port`.
async fn command(port: u16, words: &[&str]) -> Option<Vec<String>> {
    query(port, words).await
}

/// A command's answer, from the server (or Sentinel) on `port`, within 1 s.
async fn query<T: redis::FromRedisValue>(port: u16, words: &[&str]) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut connection = client.get_multiplexed_async_connection().await.ok()?;
    let mut command = redis::cmd(words[0]);
    for word in &words[1..] {
        command.arg(*word);
    }
    tokio::time::timeout(Duration::from_secs(1), command.query_async(&mut connection))
        .await
        .ok()?
        .ok()
}

/// The value after `name` in a flat list of field names and values.
fn field<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1))
        .map(String::as_str)
}
