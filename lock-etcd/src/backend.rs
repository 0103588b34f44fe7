//! The lock-core primitives over etcd.
//!
//! A lock is a key under a prefix, attached to an etcd lease of the lock's TTL. Taking is
//! one transaction (create the key only if it does not exist); the fencing token is the
//! revision that created the key. Renewing keeps the etcd lease alive and confirms the key
//! is still ours; releasing deletes the key only if it is still ours, then revokes the
//! lease. etcd expires the key itself when the lease runs out.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, ResponseHeader,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use lock_core::{
    Backend, Changes, Error, FencingToken, Lease, Listed, LockInfo, LockName, Release, Renew,
    Result, Take,
};

use crate::{
    error::lock_error,
    members::Members,
    record::{Record, token, whole_seconds},
};

/// The key prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "locks/";

/// etcd as a lock backend.
///
/// ```no_run
/// use lock_core::Lock;
/// use lock_etcd::EtcdBackend;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
/// let lock = Lock::new(EtcdBackend::new(client), "nightly-report", "worker-1")?;
/// let guard = lock.acquire().await?;
/// # drop(guard); Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdBackend {
    members: Members,
    prefix: String,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdBackend {{ prefix: {:?}, .. }}", self.prefix)
    }
}

impl EtcdBackend {
    /// Locks are keys under [`DEFAULT_PREFIX`], through `client`.
    ///
    /// A client of several endpoints is balanced by etcd-client over all of them, which
    /// keeps sending part of the requests to a member that is down or hangs; for a
    /// cluster, prefer [`connect`](EtcdBackend::connect).
    pub fn new(client: Client) -> Self {
        Self::with_prefix(client, DEFAULT_PREFIX)
    }

    /// Locks are keys under `prefix` (e.g. `"my-app/locks/"`).
    pub fn with_prefix(client: Client, prefix: &str) -> Self {
        Self {
            members: Members::one(client),
            prefix: prefix.to_owned(),
        }
    }

    /// Connects to a cluster: a client of each member, one in use. A request the member
    /// in use cannot answer (it is down, hangs past the lock's request timeout, or has
    /// no leader) goes to the next member, so a lock stays renewed while any member of
    /// the majority answers. Every request etcd serves for a lock is linearizable, so a
    /// member cut off from its peers never confirms a lock from its own state.
    ///
    /// `options` apply to each member, with `require_leader` on: a member without a
    /// leader ends its watches at once instead of keeping them silently. With
    /// authentication, each member must be reachable now (etcd-client authenticates
    /// when it connects). Locks are keys under [`DEFAULT_PREFIX`]; see
    /// [`with_prefix`](EtcdBackend::with_prefix) for another.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let members = ["http://etcd-0:2379", "http://etcd-1:2379", "http://etcd-2:2379"];
    /// let backend = lock_etcd::EtcdBackend::connect(members, None).await?;
    /// let lock = lock_core::Lock::new(backend, "nightly-report", "worker-1")?;
    /// # drop(lock); Ok(()) }
    /// ```
    pub async fn connect<E: AsRef<str>>(
        members: impl IntoIterator<Item = E>,
        options: Option<ConnectOptions>,
    ) -> Result<Self, etcd_client::Error> {
        let options = options.unwrap_or_default().with_require_leader(true);
        let mut clients = Vec::new();
        for member in members {
            clients.push(Client::connect([member.as_ref()], Some(options.clone())).await?);
        }
        if clients.is_empty() {
            return Err(etcd_client::Error::InvalidArgs(
                "no etcd member to connect to".to_owned(),
            ));
        }
        Ok(Self {
            members: Members::each(clients),
            prefix: DEFAULT_PREFIX.to_owned(),
        })
    }

    /// The same backend with locks under `prefix`.
    pub fn prefixed(self, prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            ..self
        }
    }

    /// The key of lock `name`.
    pub fn key(&self, name: &LockName) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The client of the member in use, e.g. for fenced transactions.
    pub fn client(&self) -> &Client {
        self.members.current()
    }

    /// Revokes an etcd lease we granted, best effort: if this fails, it expires by itself.
    async fn revoke(&self, lease_id: i64) {
        let revoked = self
            .members
            .call(|mut client| async move { client.lease_revoke(lease_id).await })
            .await;
        if let Err(error) = revoked {
            tracing::debug!(%error, lease_id, "revoking an etcd lease failed; it expires by itself");
        }
    }

    fn info(
        &self,
        name: &LockName,
        kv: &etcd_client::KeyValue,
        expires_in: Option<Duration>,
    ) -> Result<LockInfo> {
        let record = Record::read(name.as_str(), kv)?;
        Ok(
            LockInfo::new(record.holder, Duration::from_millis(record.ttl_ms))
                .with_token(Some(token(kv)))
                .with_expires_in(expires_in),
        )
    }
}

/// An etcd lease granted for a take: revoked in the background when dropped, unless the
/// take succeeded and kept it.
struct Granted {
    members: Members,
    id: i64,
    ttl: i64,
    kept: bool,
}

impl Granted {
    fn new(members: Members, id: i64, ttl: i64) -> Self {
        Self {
            members,
            id,
            ttl,
            kept: false,
        }
    }

    fn keep(mut self) -> i64 {
        self.kept = true;
        self.id
    }
}

impl Drop for Granted {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let (mut client, id) = (self.members.current().clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = client.lease_revoke(id).await {
                    tracing::debug!(%error, id, "revoking an unused etcd lease failed; it expires by itself");
                }
            });
        }
    }
}

/// The token of a successful take: the revision of its transaction, which every etcd
/// response carries in its header. A response without one is reported, never read as 0.
fn revision(header_revision: Option<i64>, name: &LockName) -> Result<FencingToken> {
    match header_revision {
        Some(revision) if revision > 0 => Ok(FencingToken::new(revision.unsigned_abs())),
        other => Err(Error::Malformed {
            name: name.to_string(),
            reason: format!(
                "etcd acknowledged the take without a revision in its response header ({other:?}): no token can be issued"
            ),
        }),
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    async fn take(&self, name: &LockName, holder: &str, ttl: Duration) -> Result<Take> {
        let key = self.key(name);
        let seconds = whole_seconds(ttl);
        let granted = self
            .members
            .call(|mut client| async move { client.lease_grant(seconds, None).await })
            .await
            .map_err(|e| lock_error(e, "grant an etcd lease"))?;
        // Revoked unless kept, also if this future is dropped before it finishes.
        let granted = Granted::new(self.members.clone(), granted.id(), granted.ttl());
        if granted.ttl != seconds {
            return Err(Error::Unsupported {
                reason: format!(
                    "etcd granted a {} s lease for a {seconds} s TTL: its minimum lease TTL is above the lock's TTL",
                    granted.ttl
                ),
            });
        }
        let record = Record::new(holder, ttl).to_bytes();
        let put = PutOptions::new().with_lease(granted.id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), record, Some(put))])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self
            .members
            .call(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|e| lock_error(e, "take the lock"))?;
        if response.succeeded() {
            // Without the revision there is no token: the key is deleted with the
            // granted lease, which is revoked when `granted` is dropped.
            let token = revision(response.header().map(ResponseHeader::revision), name)?;
            let revision = granted.keep().unsigned_abs();
            return Ok(Take::Acquired(Lease::new(
                name.clone(),
                holder,
                token,
                ttl,
                revision,
            )));
        }
        drop(granted);
        let held = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        match held {
            Some(kv) => Ok(Take::Held(self.info(name, &kv, None)?)),
            // Deleted between the compare and the get: free now, try again soon.
            None => Err(Error::transient(format!(
                "lock {name} changed while it was taken"
            ))),
        }
    }

    /// One keep-alive of the etcd lease, then a (linearizable) check that the key is
    /// still the one our acquisition created. A keep-alive that fails is not trusted to
    /// mean "gone" or "unreachable" by itself: the check decides. A revoked lease has
    /// deleted our key, so the check says `NotHeld` at once; an unreachable server fails
    /// the check too, with the transient error the core retries.
    async fn renew(&self, lease: &Lease) -> Result<Renew> {
        let lease_id = i64::try_from(lease.revision).unwrap_or_default();
        // etcd-client sends the first keep-alive itself and fails if etcd answers with
        // TTL <= 0 (the lease no longer exists).
        let kept = self
            .members
            .call(|mut client| async move { client.lease_keep_alive(lease_id).await })
            .await;
        let key = self.key(&lease.name);
        let token = i64::try_from(lease.token.get()).unwrap_or_default();
        // Our acquisition, still attached to our etcd lease (a foreign put can move
        // the key off it, and then nothing expires it).
        let ours = Txn::new().when([
            Compare::create_revision(key.as_str(), CompareOp::Equal, token),
            Compare::lease(key.as_str(), CompareOp::Equal, lease_id),
        ]);
        let response = self
            .members
            .call(|mut client| {
                let ours = ours.clone();
                async move { client.txn(ours).await }
            })
            .await
            .map_err(|e| lock_error(e, "check the lock"))?;
        if !response.succeeded() {
            self.revoke(lease_id).await;
            return Ok(Renew::NotHeld);
        }
        // The key is still ours, so a failed keep-alive (its stream broken by a member
        // that died, say) is worth another try, whatever its error said.
        kept.map_err(|error| Error::backend("cannot keep the etcd lease alive", true, error))?;
        Ok(Renew::Renewed(lease.clone()))
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        let key = self.key(&lease.name);
        let token = i64::try_from(lease.token.get()).unwrap_or_default();
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                token,
            )])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let response = self
            .members
            .call(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|e| lock_error(e, "release the lock"))?;
        self.revoke(i64::try_from(lease.revision).unwrap_or_default())
            .await;
        Ok(if response.succeeded() {
            Release::Released
        } else {
            Release::NotHeld
        })
    }

    /// Reads the key and, if `holder` holds it, deletes it in a transaction guarded by
    /// the key's `create_revision` (that acquisition), then revokes its etcd lease.
    async fn release_holder(&self, name: &LockName, holder: &str) -> Result<Release> {
        let key = self.key(name);
        let response = self.get(&key, None).await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(Release::NotHeld);
        };
        if Record::read(name.as_str(), kv)?.holder != holder {
            return Ok(Release::NotHeld);
        }
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                kv.create_revision(),
            )])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let deleted = self
            .members
            .call(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
            .map_err(|e| lock_error(e, "release the lock"))?
            .succeeded();
        if !deleted {
            return Ok(Release::NotHeld);
        }
        self.revoke(kv.lease()).await;
        Ok(Release::Released)
    }

    /// One range read of the prefix, and each key's remaining lease time.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let response = self
            .get(
                &format!("{}{prefix}", self.prefix),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut listed = Vec::new();
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let name = key.strip_prefix(&self.prefix).unwrap_or(&key).to_owned();
            let holder = match LockName::new(&name) {
                Ok(lock) => {
                    let remaining = self.time_to_live(kv.lease()).await.ok();
                    let expires_in =
                        remaining.map(|s| Duration::from_secs(s.max(0).unsigned_abs()));
                    self.info(&lock, kv, expires_in).map(Some)
                }
                Err(error) => Err(error),
            };
            listed.push(Listed::new(name, holder));
        }
        Ok(listed)
    }

    async fn describe(&self, name: &LockName) -> Result<Option<LockInfo>> {
        let response = self.get(&self.key(name), None).await?;
        let Some(kv) = response.kvs().first().cloned() else {
            return Ok(None);
        };
        Record::read(name.as_str(), &kv)?;
        let remaining = self.time_to_live(kv.lease()).await?;
        let expires_in = Duration::from_secs(remaining.max(0).unsigned_abs());
        Ok(Some(self.info(name, &kv, Some(expires_in))?))
    }

    /// Watches the key; the stream ends on a watch error (e.g. after compaction) and the
    /// waiter subscribes again.
    async fn changes(&self, name: &LockName) -> Result<Changes> {
        self.watch(self.key(name), None).await
    }

    /// A prefix watch: keep-alives change no key, so renewals do not notify.
    async fn group_changes(&self, prefix: &str) -> Result<Changes> {
        let prefix = format!("{}{prefix}", self.prefix);
        self.watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await
    }
}

impl EtcdBackend {
    /// A (linearizable) read of `key`.
    async fn get(
        &self,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse> {
        self.members
            .call(|mut client| {
                let options = options.clone();
                async move { client.get(key, options).await }
            })
            .await
            .map_err(|e| lock_error(e, "read the lock"))
    }

    /// The seconds etcd lease `id` has left.
    async fn time_to_live(&self, id: i64) -> Result<i64> {
        self.members
            .call(|mut client| async move { client.lease_time_to_live(id, None).await })
            .await
            .map(|ttl| ttl.ttl())
            .map_err(|e| lock_error(e, "read the lock's etcd lease"))
    }

    /// A notification for each put or delete of `key` (or under it, with a prefix).
    async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<WatchOptions>,
    ) -> Result<Changes> {
        let key = key.into();
        let stream = self
            .members
            .call(|mut client| {
                let (key, options) = (key.clone(), options.clone());
                async move { client.watch(key, options).await }
            })
            .await
            .map_err(|e| lock_error(e, "watch the lock"))?;
        let changes = futures::stream::unfold(stream, |mut stream| async move {
            loop {
                match stream.message().await {
                    Ok(Some(response)) if response.canceled() => return None,
                    Ok(Some(response)) => {
                        let relevant = response
                            .events()
                            .iter()
                            .any(|e| matches!(e.event_type(), EventType::Delete | EventType::Put));
                        if relevant {
                            return Some(((), stream));
                        }
                    }
                    Ok(None) | Err(_) => return None,
                }
            }
        });
        Ok(changes.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_answered_without_a_revision_is_an_error_not_token_zero() {
        let name = LockName::new("lock").expect("valid");
        assert!(matches!(
            revision(None, &name),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            revision(Some(0), &name),
            Err(Error::Malformed { .. })
        ));
        assert_eq!(revision(Some(7), &name).ok(), Some(FencingToken::new(7)));
    }
}
