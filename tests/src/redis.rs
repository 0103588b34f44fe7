//! Redis from Debian's `redis-server`, on loopback.

use std::ffi::OsString;

use crate::process::{Served, Server, free_port, program};

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
}

/// Killed, Redis keeps its files; restarted, it has the same options, folder and port
/// (and, with [`Persistence::AppendOnly`], every acknowledged write).
impl Served for Redis {
    async fn answers(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        // Ready, and ours: it works in our folder.
        let dir = self.server.dir().display().to_string();
        let mut config_get = redis::cmd("CONFIG");
        config_get.arg("GET").arg("dir");
        let config = config_get.query_async::<Vec<String>>(&mut connection).await;
        config.is_ok_and(|pair| pair.get(1) == Some(&dir))
    }

    fn server(&self) -> &Server {
        &self.server
    }

    fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}
