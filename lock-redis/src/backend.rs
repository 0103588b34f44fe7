//! The lock-core primitives over Redis: one Lua script each.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::StreamExt;
use lock_core::{
    Backend, Changes, Error, FencingToken, Lease, Listed, LockInfo, LockName, Release, Renew,
    Result, Take,
};
use redis::{AsyncCommands, AsyncIter, Client, aio::ConnectionManager};

use crate::primary::Primary;
use tokio::sync::broadcast;

use crate::{
    error::lock_error,
    scripts,
    subscriber::{Subscriber, Topic},
};

/// What the release script publishes on the lock's channel (a take publishes `taken`).
const RELEASED: &str = "released";

/// The key prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "locks:";

/// Redis as a lock backend, over a connection manager that reconnects.
///
/// ```no_run
/// use lock_core::Lock;
/// use lock_redis::RedisBackend;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379/0").await?;
/// let lock = Lock::new(backend, "nightly-report", "worker-1")?;
/// let guard = lock.acquire().await?;
/// # drop(guard); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    primary: Primary,
    subscriber: Arc<Subscriber>,
    prefix: String,
    /// Replicas that must have a take or a renewal before it counts, and how long to
    /// wait for them.
    replica_acks: Option<(usize, Duration)>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisBackend {{ prefix: {:?}, .. }}", self.prefix)
    }
}

/// The keys of one lock: they share the hash tag `{name}`, so one Redis Cluster node
/// holds them all.
pub(crate) struct Keys {
    pub lock: String,
    pub counter: String,
    pub channel: String,
}

impl RedisBackend {
    /// Connects to `url` (`redis://` or `rediss://` for TLS; user, password and database
    /// index in the URL, e.g. `redis://user:password@host:6379/2`), with keys under
    /// [`DEFAULT_PREFIX`].
    pub async fn connect(url: &str) -> Result<Self> {
        let client = Client::open(url).map_err(|e| lock_error(e, url, "parse the Redis URL"))?;
        Self::from_client(client, DEFAULT_PREFIX).await
    }

    /// Connects to a `rediss://` URL with these TLS certificates: the root (CA)
    /// certificate to trust instead of the platform's, and a client certificate and key
    /// for servers that ask for one (`tls-auth-clients yes`), all PEM. Keys under
    /// [`DEFAULT_PREFIX`].
    ///
    /// ```no_run
    /// use redis::TlsCertificates;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let certificates = TlsCertificates {
    ///     client_tls: None,
    ///     root_cert: Some(std::fs::read("ca.crt")?),
    /// };
    /// let backend =
    ///     lock_redis::RedisBackend::connect_with_tls("rediss://cache:6380", certificates).await?;
    /// # drop(backend); Ok(()) }
    /// ```
    #[cfg(feature = "tls-rustls")]
    pub async fn connect_with_tls(url: &str, certificates: redis::TlsCertificates) -> Result<Self> {
        let client = Client::build_with_tls(url, certificates)
            .map_err(|e| lock_error(e, url, "set up TLS to Redis"))?;
        Self::from_client(client, DEFAULT_PREFIX).await
    }

    /// Uses `client`, with keys under `prefix`.
    pub async fn from_client(client: Client, prefix: &str) -> Result<Self> {
        install_crypto_provider();
        let primary = Primary::fixed(client)
            .await
            .map_err(|e| lock_error(e, "", "connect to Redis"))?;
        Ok(Self::over(primary, prefix))
    }

    /// Locks on the primary that Redis Sentinel names: `sentinels` are the Sentinels'
    /// URLs (`redis://host:26379`), `service` the name they monitor the primary by. After
    /// a command fails in a way that says the server may no longer be the primary
    /// (unreachable, `READONLY`), the backend asks the Sentinels again and follows the
    /// failover; lock-core's retry then reaches the new primary.
    ///
    /// Redis replicates asynchronously: a failover can lose the last takes and renewals,
    /// and then two holders can overlap. [`with_replica_acks`](Self::with_replica_acks)
    /// closes most of that window; SAFETY.md has the measurements.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let sentinels = ["redis://sentinel-0:26379", "redis://sentinel-1:26379", "redis://sentinel-2:26379"];
    /// let backend = lock_redis::RedisBackend::connect_sentinel(&sentinels, "locks").await?
    ///     .with_replica_acks(1, std::time::Duration::from_millis(500));
    /// let lock = lock_core::Lock::new(backend, "nightly-report", "worker-1")?;
    /// # drop(lock); Ok(()) }
    /// ```
    pub async fn connect_sentinel(sentinels: &[&str], service: &str) -> Result<Self> {
        install_crypto_provider();
        let sentinel = Primary::sentinel(sentinels, service)
            .map_err(|e| lock_error(e, "", "parse the Sentinel URLs"))?;
        let primary = Primary::named_by(sentinel)
            .await
            .map_err(|e| lock_error(e, "", "connect to the primary Sentinel names"))?;
        Ok(Self::over(primary, DEFAULT_PREFIX))
    }

    fn over(primary: Primary, prefix: &str) -> Self {
        Self {
            primary,
            subscriber: Arc::default(),
            prefix: prefix.to_owned(),
            replica_acks: None,
        }
    }

    /// Counts a take or a renewal only once `replicas` replicas have it (Redis' `WAIT`,
    /// in the same pipeline as the script, so it covers that write), waiting up to
    /// `timeout` for them; keep `timeout` below the lock's request timeout (by default a
    /// third of the TTL). Each such write has a connection to itself while it waits
    /// (`WAIT` holds up its connection), so writes of several locks never wait for each
    /// other's replicas. A take that fewer replicas acknowledged is released and
    /// reported as a transient error; such a renewal is a transient error, so the guard's
    /// validity is not extended by a write a failover could lose.
    ///
    /// With as many replicas as Sentinel may promote, an acknowledged take survives a
    /// failover; writes of your own (`fenced_set`) are not covered.
    pub fn with_replica_acks(self, replicas: usize, timeout: Duration) -> Self {
        Self {
            replica_acks: Some((replicas, timeout)),
            ..self
        }
    }

    /// The keys of lock `name`.
    pub(crate) fn keys(&self, name: &LockName) -> Keys {
        let lock = format!("{}{{{name}}}", self.prefix);
        Keys {
            counter: format!("{lock}:token"),
            channel: format!("{lock}:changes"),
            lock,
        }
    }

    /// The key that holds lock `name`.
    pub fn lock_key(&self, name: &LockName) -> String {
        self.keys(name).lock
    }

    /// A connection to the server locks are on (with Sentinel: the primary now), e.g.
    /// for fenced writes.
    pub fn connection(&self) -> ConnectionManager {
        self.primary.connection()
    }

    /// Runs one script invocation on the primary; with replica acknowledgements, in a
    /// pipeline with `WAIT`, and says how many replicas have the write.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &'static redis::Script,
        invocation: redis::ScriptInvocation<'static>,
        acknowledged: bool,
    ) -> std::result::Result<(T, Option<usize>), redis::RedisError> {
        match self.replica_acks.filter(|_| acknowledged) {
            None => self
                .primary
                .call(
                    |mut connection| async move { invocation.invoke_async(&mut connection).await },
                )
                .await
                .map(|answer| (answer, None)),
            Some((replicas, timeout)) => {
                self.primary
                    .call_waiting(timeout, |mut connection| async move {
                        let (_, answer, acknowledged): (String, T, usize) = redis::pipe()
                            .load_script(script)
                            .invoke_script(&invocation)
                            .cmd("WAIT")
                            .arg(replicas)
                            .arg(millis(timeout))
                            .query_async(&mut connection)
                            .await?;
                        Ok((answer, Some(acknowledged)))
                    })
                    .await
            }
        }
    }

    /// An error for a write fewer replicas acknowledged than required. The server may
    /// have been cut off from its replicas, or demoted: Sentinel is asked again.
    async fn unacknowledged(&self, name: &LockName, what: &str, acknowledged: usize) -> Error {
        self.primary.follow().await;
        let required = self.replica_acks.map_or(0, |(replicas, _)| replicas);
        Error::transient(format!(
            "cannot {what} of lock {name}: {acknowledged} of the {required} replicas required acknowledged it"
        ))
    }

    /// Releases `name` if its value matches `matching` by `by` (`token` or `holder`):
    /// the one release script.
    async fn release_matching(&self, name: &LockName, by: &str, matching: &str) -> Result<Release> {
        let keys = self.keys(name);
        let mut invocation = scripts::RELEASE.prepare_invoke();
        invocation
            .key(&keys.lock)
            .key(&keys.channel)
            .arg(by)
            .arg(matching);
        let (released, _): (i64, _) = self
            .run(&scripts::RELEASE, invocation, false)
            .await
            .map_err(|e| lock_error(e, name.as_str(), "release the lock"))?;
        Ok(if released == 1 {
            Release::Released
        } else {
            Release::NotHeld
        })
    }
}

/// rustls cannot pick a provider by itself when a binary has both: ours is ring, set as
/// rustls' process-wide default unless the binary installed one first.
fn install_crypto_provider() {
    #[cfg(feature = "tls-rustls")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The prefix of the value written by the acquisition that got `token`.
fn acquisition(token: FencingToken) -> String {
    format!("v1:{token}:")
}

/// A TTL in whole milliseconds, rounded up: the key must never expire on the server
/// sooner than the guard trusts it.
fn millis(duration: Duration) -> u64 {
    let rounded_up = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(rounded_up).unwrap_or(u64::MAX).max(1)
}

/// `text` with Redis' glob characters escaped, to match it literally.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A value from the server as text; bytes that are not UTF-8 were not written by us.
fn text(name: &LockName, value: Vec<u8>) -> Result<String> {
    String::from_utf8(value).map_err(|error| Error::Malformed {
        name: name.to_string(),
        reason: format!(
            "the value at the lock's key was not written by lock-redis: {:?}",
            String::from_utf8_lossy(error.as_bytes())
        ),
    })
}

/// Reads a lock value, `v1:<token>:<ttl_ms>:<holder>`.
fn info(name: &LockName, value: &str, pttl: i64) -> Result<LockInfo> {
    let malformed = || Error::Malformed {
        name: name.to_string(),
        reason: format!("the value at the lock's key was not written by lock-redis: {value:?}"),
    };
    let mut parts = value.splitn(4, ':');
    let (Some("v1"), Some(token), Some(ttl), Some(holder)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let token = token.parse::<u64>().map_err(|_| malformed())?;
    let ttl = ttl.parse::<u64>().map_err(|_| malformed())?;
    Ok(LockInfo::new(holder, Duration::from_millis(ttl))
        .with_token(Some(FencingToken::new(token)))
        // PTTL is -1 for a key without expiry: someone else's key, but say "held".
        .with_expires_in(u64::try_from(pttl).ok().map(Duration::from_millis)))
}

#[async_trait]
impl Backend for RedisBackend {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        let keys = self.keys(name);
        let mut invocation = scripts::ACQUIRE.prepare_invoke();
        invocation
            .key(&keys.lock)
            .key(&keys.counter)
            .key(&keys.channel)
            .arg(millis(ttl))
            .arg(holder);
        let ((taken, value, pttl), acknowledged): ((i64, Vec<u8>, i64), _) = self
            .run(&scripts::ACQUIRE, invocation, true)
            .await
            .map_err(|e| lock_error(e, name.as_str(), "take the lock"))?;
        if taken == 0 {
            return Ok(Take::Held(info(name, &text(name, value)?, pttl)?));
        }
        let value = text(name, value)?;
        let token = value.parse::<u64>().map_err(|_| Error::Malformed {
            name: name.to_string(),
            reason: format!("the token counter gave {value:?}"),
        })?;
        if let Some(acknowledged) = acknowledged
            && acknowledged < self.replica_acks.map_or(0, |(replicas, _)| replicas)
        {
            // Not taken as far as a failover is concerned: undone, best effort (it
            // expires by itself otherwise).
            let token = FencingToken::new(token);
            if let Err(error) = self
                .release_matching(name, "token", &acquisition(token))
                .await
            {
                tracing::debug!(%error, "releasing a take too few replicas acknowledged failed; it expires by itself");
            }
            return Err(self.unacknowledged(name, "take", acknowledged).await);
        }
        Ok(Take::Acquired(Lease::new(
            name.clone(),
            holder,
            FencingToken::new(token),
            ttl,
            token,
        )))
    }

    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        let mut invocation = scripts::RENEW.prepare_invoke();
        invocation
            .key(self.keys(&lease.name).lock)
            .arg(acquisition(lease.token))
            .arg(millis(lease.ttl));
        let (renewed, acknowledged): (i64, _) =
            self.run(&scripts::RENEW, invocation, true)
                .await
                .map_err(|e| lock_error(e, lease.name.as_str(), "renew the lock"))?;
        if renewed == 1
            && let Some(acknowledged) = acknowledged
            && acknowledged < self.replica_acks.map_or(0, |(replicas, _)| replicas)
        {
            return Err(self
                .unacknowledged(&lease.name, "renew", acknowledged)
                .await);
        }
        Ok(if renewed == 1 {
            Renew::Renewed(lease.clone())
        } else {
            Renew::NotHeld
        })
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        self.release_matching(&lease.name, "token", &acquisition(lease.token))
            .await
    }

    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        self.release_matching(name, "holder", holder).await
    }

    /// SCANs for the lock keys under the prefix (never KEYS, which blocks the server),
    /// then describes each.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let pattern = format!("{}{{{}*}}", glob_escape(&self.prefix), glob_escape(prefix));
        let mut connection = self.primary.connection();
        let mut keys: Vec<String> = Vec::new();
        {
            let mut scan: AsyncIter<'_, String> = connection
                .scan_match(&pattern)
                .await
                .map_err(|e| lock_error(e, prefix, "list the locks"))?;
            while let Some(key) = scan.next_item().await {
                keys.push(key.map_err(|e| lock_error(e, prefix, "list the locks"))?);
            }
        }
        let mut names: Vec<String> = keys
            .iter()
            .filter_map(|key| {
                key.strip_prefix(self.prefix.as_str())?
                    .strip_prefix('{')?
                    .strip_suffix('}')
            })
            .filter(|name| name.starts_with(prefix))
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        let mut listed = Vec::new();
        for name in names {
            let holder = match LockName::new(&name) {
                Ok(lock) => self.describe(&lock).await,
                Err(error) => Err(error),
            };
            listed.push(Listed::new(name, holder));
        }
        Ok(listed)
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        let mut invocation = scripts::DESCRIBE.prepare_invoke();
        invocation.key(self.keys(name).lock);
        let ((held, value, pttl), _): ((i64, Vec<u8>, i64), _) = self
            .run(&scripts::DESCRIBE, invocation, false)
            .await
            .map_err(|e| lock_error(e, name.as_str(), "read the lock"))?;
        if held == 0 {
            return Ok(None);
        }
        info(name, &text(name, value)?, pttl).map(Some)
    }

    /// Listens on the lock's channel, where releases are published, over the backend's
    /// one shared subscriber connection. Expiry needs no message: a waiter wakes when
    /// the holder's remaining TTL runs out.
    async fn changes(&self, name: &LockName) -> Result<Changes> {
        let topic = Topic::Channel(self.keys(name).channel);
        self.notifications(topic, name.as_str(), |message| message == RELEASED)
            .await
    }

    /// Listens on every lock channel of the group (a pattern), where takes and releases
    /// are published; renewals publish nothing.
    async fn group_changes(&self, prefix: &str) -> Result<Changes> {
        let pattern = format!(
            "{}{{{}*}}:changes",
            glob_escape(&self.prefix),
            glob_escape(prefix)
        );
        self.notifications(Topic::Pattern(pattern), prefix, |_| true)
            .await
    }
}

impl RedisBackend {
    /// An item for each message on `topic` that `wakes`, over the backend's one
    /// subscriber connection; the stream ends when that connection does.
    async fn notifications(
        &self,
        topic: Topic,
        name: &str,
        wakes: fn(&str) -> bool,
    ) -> Result<Changes> {
        let receiver = self
            .subscriber
            .subscribe(&self.primary.client(), topic, name)
            .await?;
        let messages = futures::stream::unfold(receiver, move |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(message) if wakes(&message) => return Some(((), receiver)),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(((), receiver)),
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(messages.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_rounded_up_to_whole_milliseconds() {
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_millis(3000)), 3000);
        assert_eq!(millis(Duration::from_nanos(3_000_000_001)), 3001);
    }

    #[test]
    fn lock_values_are_read_and_foreign_values_rejected() {
        let name = LockName::new("l").expect("valid");
        let held = info(&name, "v1:42:3000:pod:a", 1500).expect("ours");
        assert_eq!(held.holder, "pod:a");
        assert_eq!(held.token, Some(FencingToken::new(42)));
        assert_eq!(held.ttl, Duration::from_secs(3));
        assert_eq!(held.expires_in, Some(Duration::from_millis(1500)));
        for foreign in ["", "hello", "v1:x:3000:a", "v1:1:x:a", "v2:1:1:a", "v1:1:1"] {
            assert!(
                matches!(info(&name, foreign, 10), Err(Error::Malformed { .. })),
                "{foreign:?}"
            );
        }
    }
}
