//! Redis from Debian's `redis-server`, on loopback.

use std::{ffi::OsString, time::Duration};

use crate::process::{Server, free_port, program};

/// A connection to a Redis server (or a proxy in front of one) on `127.0.0.1:port`,
/// without a response timeout of the client's own: each test bounds the requests it
/// checks itself.
pub async fn connect_redis(port: u16) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|error| panic!("bad Redis URL {url}: {error}"));
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to Redis at {url}: {error}"))
}

/// How a test Redis keeps its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing is written to disk: a restart loses every key.
    #[default]
    None,
    /// An append-only file synced on every write (`appendfsync always`): a restart,
    /// even after SIGKILL, keeps every acknowledged write.
    AppendOnly,
}

/// A Redis server on 127.0.0.1, stopped on drop.
#[derive(Debug)]
pub struct Redis {
    server: Server,
    port: u16,
}

impl Redis {
    /// One Redis for the whole test binary, started by the first test that asks.
    pub async fn shared() -> &'static Redis {
        static SHARED: tokio::sync::OnceCell<Redis> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(Self::start).await
    }

    /// Starts Redis without persistence and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(Persistence::None).await
    }

    /// Starts Redis with the given persistence and waits until it answers.
    pub async fn start_with(persistence: Persistence) -> Self {
        let redis_server = program("redis-server", "apt-get install redis-server");
        let dir = Server::make_dir("redis");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--save".into(),
            String::new(),
            "--daemonize".into(),
            "no".into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        match persistence {
            Persistence::None => args.extend(["--appendonly".into(), "no".into()]),
            Persistence::AppendOnly => args.extend([
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
            ]),
        }
        let args = args.into_iter().map(OsString::from).collect();
        let redis = Self {
            server: Server::spawn("redis", redis_server, args, dir),
            port,
        };
        redis.wait_until_ready().await;
        redis
    }

    async fn wait_until_ready(&self) {
        let url = self.url();
        let dir = self.server.dir().display().to_string();
        self.server
            .wait_until_ready(Duration::from_secs(30), || async {
                let Ok(client) = redis::Client::open(url.as_str()) else {
                    return false;
                };
                let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                // Ready, and ours: it works in our folder.
                let mut config_get = redis::cmd("CONFIG");
                config_get.arg("GET").arg("dir");
                let config = config_get.query_async::<Vec<String>>(&mut connection).await;
                config.is_ok_and(|pair| pair.get(1) == Some(&dir))
            })
            .await;
    }

    /// The URL, `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url())
            .unwrap_or_else(|error| panic!("bad Redis URL {}: {error}", self.url()))
    }

    /// A connection to this server (see [`connect_redis`]).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        connect_redis(self.port).await
    }

    /// The server process, for pausing and resuming.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Kills Redis with SIGKILL; its files stay for [`restart`](Redis::restart).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts Redis again with the same options on the same folder and port.
    pub async fn restart(&mut self) {
        self.server.restart();
        self.wait_until_ready().await;
    }
}
