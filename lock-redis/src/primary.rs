//! The Redis server commands go to: one server, or the primary that Redis Sentinel names,
//! followed through failovers.

use std::{
    future::Future,
    sync::{Arc, PoisonError, RwLock},
};

use redis::{
    Client, RedisError,
    aio::ConnectionManager,
    sentinel::{SentinelClient, SentinelServerType},
};

/// Where commands go; clones share it.
#[derive(Clone)]
pub(crate) struct Primary {
    current: Arc<RwLock<Server>>,
    /// The Sentinel that names the primary, if there is one.
    sentinel: Option<Arc<tokio::sync::Mutex<SentinelClient>>>,
}

/// One server and a connection to it.
#[derive(Clone)]
struct Server {
    client: Client,
    connection: ConnectionManager,
}

impl Primary {
    /// Always the server of `client`.
    pub(crate) async fn fixed(client: Client) -> Result<Self, RedisError> {
        Ok(Self {
            current: Arc::new(RwLock::new(Server::connect(client).await?)),
            sentinel: None,
        })
    }

    /// The primary that the Sentinels of `sentinel` name for its service.
    pub(crate) async fn named_by(mut sentinel: SentinelClient) -> Result<Self, RedisError> {
        let client = sentinel.async_get_client().await?;
        Ok(Self {
            current: Arc::new(RwLock::new(Server::connect(client).await?)),
            sentinel: Some(Arc::new(tokio::sync::Mutex::new(sentinel))),
        })
    }

    /// A Sentinel client of `sentinels` (URLs) for the primary of service `name`.
    pub(crate) fn sentinel(sentinels: &[&str], name: &str) -> Result<SentinelClient, RedisError> {
        SentinelClient::build(sentinels.to_vec(), name, None, SentinelServerType::Master)
    }

    /// A connection to the current primary.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.server().connection
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
        let result = command(self.connection()).await;
        if let Err(error) = &result
            && self.sentinel.is_some()
            && moved(error)
        {
            self.follow().await;
        }
        result
    }

    /// Connects to the server Sentinel names now, if it is another one.
    async fn follow(&self) {
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
        match Server::connect(named).await {
            Ok(server) => {
                tracing::debug!(primary = %server.client.get_connection_info().addr(), "following the new Redis primary");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = server;
            }
            Err(error) => tracing::debug!(%error, "cannot connect to the new Redis primary"),
        }
    }
}

impl Server {
    async fn connect(client: Client) -> Result<Self, RedisError> {
        let connection = client.get_connection_manager().await?;
        Ok(Self { client, connection })
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
