//! Redis from Debian's `redis-server`, on loopback.

use std::{ffi::OsString, path::PathBuf};

use crate::{
    certificates::Certificates,
    process::{Served, Server, free_port, program},
};

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
    /// TLS only (`rediss://`), with a CA of its own.
    tls: Option<Certificates>,
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
        Self::start_serving(persistence, false).await
    }

    /// Starts Redis serving TLS only (`rediss://`, Redis 7's built-in TLS), with a
    /// serving certificate for 127.0.0.1 from a CA of its own ([`ca`](Redis::ca));
    /// clients need no certificate of their own.
    pub async fn start_tls() -> Self {
        Self::start_serving(Persistence::None, true).await
    }

    async fn start_serving(persistence: Persistence, tls: bool) -> Self {
        let redis_server = program("redis-server", "apt-get install redis-server");
        let dir = Server::make_dir("redis");
        let port = free_port();
        let certificates = tls.then(|| Certificates::make(&dir, "client"));
        let listen: Vec<String> = match &certificates {
            None => vec!["--port".into(), port.to_string()],
            Some(certificates) => {
                let file = |name: &str| certificates.file(name).display().to_string();
                vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    file("server.crt"),
                    "--tls-key-file".into(),
                    file("server.key"),
                    "--tls-ca-cert-file".into(),
                    file("ca.crt"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            }
        };
        let mut args: Vec<String> = vec!["--bind".into(), "127.0.0.1".into()];
        args.extend(listen);
        args.extend([
            "--dir".into(),
            dir.display().to_string(),
            "--save".into(),
            String::new(),
            "--daemonize".into(),
            "no".into(),
            "--protected-mode".into(),
            "no".into(),
        ]);
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
            tls: certificates,
        };
        redis.wait_until_ready().await;
        redis
    }

    /// The URL, `redis://127.0.0.1:PORT` (`rediss://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate (PEM) a TLS Redis's serving certificate is signed by.
    pub fn ca(&self) -> Option<PathBuf> {
        self.tls
            .as_ref()
            .map(|certificates| certificates.file("ca.crt"))
    }

    /// The TLS certificates a client of a TLS Redis needs (its CA), for
    /// `redis::Client::build_with_tls`.
    pub fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        self.tls
            .as_ref()
            .map(|certificates| redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(certificates.read("ca.crt")),
            })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client for this server (trusting its CA when it serves TLS).
    pub fn client(&self) -> redis::Client {
        let client = match self.tls_certificates() {
            None => redis::Client::open(self.url()),
            Some(certificates) => redis::Client::build_with_tls(self.url(), certificates),
        };
        client.unwrap_or_else(|error| panic!("bad Redis URL {}: {error}", self.url()))
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
        let Ok(mut connection) = self.client().get_multiplexed_async_connection().await else {
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
