//! The Redis server commands go to: one server, or the primary that Redis Sentinel names,
//! followed through failovers.

use std::{
    future::Future,
    sync::{Arc, PoisonError, RwLock},
};

use redis::{
    AsyncConnectionConfig, Client, RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    sentinel::{SentinelClient, SentinelServerType},
};

/// How much longer than a `WAIT`'s own timeout its answer may take to arrive.
const RESPONSE_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// How long connecting for a waiting write may take.
const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Where commands go; clones share it.
#[derive(Clone)]
pub(crate) struct Primary {
    current: Arc<RwLock<Server>>,
    /// The Sentinel that names the primary, if there is one.
    sentinel: Option<Arc<tokio::sync::Mutex<SentinelClient>>>,
}

/// One server, a connection to it, and connections for writes that wait for replicas.
#[derive(Clone)]
struct Server {
    client: Client,
    connection: ConnectionManager,
    waiting: Arc<Waiting>,
}

/// Connections for writes that wait for replicas, one per write at a time. `WAIT` holds
/// its connection until the replicas answer, and Redis answers a connection's commands
/// one after another: writes sharing a connection would each wait for the replicas
/// of those before them, and with a lagging replica a renewal would time out behind
/// another lock's take. A connection is reused once its write has been answered; one
/// whose write was dropped on the way is closed, and a write that failed on the network
/// closes the idle ones too.
#[derive(Default)]
struct Waiting {
    /// Each with the wait its response timeout was made for (clones of a backend share
    /// the server but may wait for replicas differently long).
    idle: std::sync::Mutex<Vec<(std::time::Duration, MultiplexedConnection)>>,
}

/// How many answered connections for waiting writes a server keeps for reuse.
const IDLE_WAITING: usize = 8;

impl Primary {
    /// Always the server of `client`.
    pub(crate) async fn fixed(client: Client) -> Result<Self, RedisError> {
        Ok(Self {
            current: Arc::new(RwLock::new(Server::connect(client, false).await?)),
            sentinel: None,
        })
    }

    /// The primary that the Sentinels of `sentinel` name for its service.
    pub(crate) async fn named_by(mut sentinel: SentinelClient) -> Result<Self, RedisError> {
        let client = sentinel.async_get_client().await?;
        Ok(Self {
            current: Arc::new(RwLock::new(Server::connect(client, true).await?)),
            sentinel: Some(Arc::new(tokio::sync::Mutex::new(sentinel))),
        })
    }

    /// A Sentinel client of `sentinels` (URLs) for the primary of service `name`.
    // The redis crate's `SentinelClient::build` takes the name as `String` without TLS
    // features and generically with them.
    #[allow(clippy::unnecessary_to_owned)]
    pub(crate) fn sentinel(sentinels: &[&str], name: &str) -> Result<SentinelClient, RedisError> {
        SentinelClient::build(
            sentinels.to_vec(),
            name.to_owned(),
            None,
            SentinelServerType::Master,
        )
    }

    /// A connection to the current primary.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.server().connection
    }

    /// Runs `command` like [`call`](Primary::call), on the current primary's connection
    /// for writes that wait for replicas, whose answers may take up to `wait`.
    pub(crate) async fn call_waiting<T, F, Fut>(
        &self,
        wait: std::time::Duration,
        command: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let server = self.server();
        let pending = Pending {
            primary: self,
            ended: false,
        };
        let result = match server.waiting_connection(wait).await {
            Ok(connection) => {
                let result = command(connection.clone()).await;
                match &result {
                    // The server may be gone or restarted: so are the idle connections.
                    Err(error) if moved(error) || error.is_unrecoverable_error() => {
                        server.waiting.clear();
                    }
                    _ => server.waiting.reuse(wait, connection),
                }
                result
            }
            Err(error) => Err(error),
        };
        pending.end();
        if let Err(error) = &result
            && moved(error)
        {
            self.follow().await;
        }
        result
    }

    /// The current primary's client (for pub/sub connections).
    pub(crate) fn client(&self) -> Client {
        self.server().client
    }

    fn server(&self) -> Server {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `command` on the current primary. After an error that says the server may no
    /// longer be the primary (unreachable, read-only, no primary link), asks Sentinel which
    /// server is, and connects there for the next command; the error is returned (the
    /// caller's retry goes to the new primary).
    pub(crate) async fn call<T, F, Fut>(&self, command: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let pending = Pending {
            primary: self,
            ended: false,
        };
        let result = command(self.connection()).await;
        pending.end();
        if let Err(error) = &result
            && self.sentinel.is_some()
            && moved(error)
        {
            self.follow().await;
        }
        result
    }

    /// Connects to the server Sentinel names now, if it is another one (nothing without
    /// Sentinel).
    pub(crate) async fn follow(&self) {
        let Some(sentinel) = &self.sentinel else {
            return;
        };
        let named = match sentinel.lock().await.async_get_client().await {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, "Sentinel did not name a primary");
                return;
            }
        };
        let current = self.server().client;
        if named.get_connection_info().addr() == current.get_connection_info().addr() {
            return;
        }
        match Server::connect(named, true).await {
            Ok(server) => {
                tracing::debug!(primary = %server.client.get_connection_info().addr(), "following the new Redis primary");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = server;
            }
            Err(error) => tracing::debug!(%error, "cannot connect to the new Redis primary"),
        }
    }
}

/// A command on the primary: dropped before it ended (the caller's timeout over a
/// server that does not answer, as a dead primary's reconnecting connection does not),
/// it asks Sentinel in the background, so the next command may go to a new primary.
struct Pending<'a> {
    primary: &'a Primary,
    ended: bool,
}

impl Pending<'_> {
    fn end(mut self) {
        self.ended = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.ended || self.primary.sentinel.is_none() {
            return;
        }
        let primary = self.primary.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { primary.follow().await });
        }
    }
}

impl Server {
    /// Connects to `client`'s server; a server Sentinel named is not reconnected to for
    /// long (one retry, 250 ms to connect), so that commands fail fast when it is gone
    /// and the next goes to the primary Sentinel names then.
    async fn connect(client: Client, named: bool) -> Result<Self, RedisError> {
        let connection = if named {
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_connection_timeout(Some(std::time::Duration::from_millis(250)));
            client.get_connection_manager_with_config(config).await?
        } else {
            client.get_connection_manager().await?
        };
        Ok(Self {
            client,
            connection,
            waiting: Arc::default(),
        })
    }

    /// A connection to this server for a write that waits for replicas (whose answer
    /// may take up to `wait`): an idle one, or a new one.
    async fn waiting_connection(
        &self,
        wait: std::time::Duration,
    ) -> Result<MultiplexedConnection, RedisError> {
        if let Some(connection) = self.waiting.take(wait) {
            return Ok(connection);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(wait + RESPONSE_MARGIN));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

impl Waiting {
    /// An idle connection made for writes that wait `wait`.
    fn take(&self, wait: std::time::Duration) -> Option<MultiplexedConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let index = idle.iter().position(|(made_for, _)| *made_for == wait)?;
        Some(idle.swap_remove(index).1)
    }

    /// Closes every idle connection.
    fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Keeps `connection`, whose write was answered, for the next write that waits
    /// `wait`.
    fn reuse(&self, wait: std::time::Duration, connection: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_WAITING {
            idle.push((wait, connection));
        }
    }
}

/// Whether `error` says the server may have stopped being the primary.
fn moved(error: &RedisError) -> bool {
    matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
}
