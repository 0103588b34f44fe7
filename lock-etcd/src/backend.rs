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
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, ResponseHeader, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use lock_core::{
    Backend, Changes, Error, FencingToken, Lease, Listed, LockInfo, LockName, Release, Renew,
    Result, Take,
};

use crate::{
    error::lock_error,
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
    client: Client,
    prefix: String,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdBackend {{ prefix: {:?}, .. }}", self.prefix)
    }
}

impl EtcdBackend {
    /// Locks are keys under [`DEFAULT_PREFIX`].
    pub fn new(client: Client) -> Self {
        Self::with_prefix(client, DEFAULT_PREFIX)
    }

    /// Locks are keys under `prefix` (e.g. `"my-app/locks/"`).
    pub fn with_prefix(client: Client, prefix: &str) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
        }
    }

    /// The key of lock `name`.
    pub fn key(&self, name: &LockName) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The client, e.g. for fenced transactions.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Revokes an etcd lease we granted, best effort: if this fails, it expires by itself.
    async fn revoke(&self, lease_id: i64) {
        if let Err(error) = self.client.clone().lease_revoke(lease_id).await {
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
    client: Client,
    id: i64,
    ttl: i64,
    kept: bool,
}

impl Granted {
    fn new(client: Client, id: i64, ttl: i64) -> Self {
        Self {
            client,
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
        let (mut client, id) = (self.client.clone(), self.id);
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
        let mut client = self.client.clone();
        let key = self.key(name);
        let seconds = whole_seconds(ttl);
        let granted = client
            .lease_grant(seconds, None)
            .await
            .map_err(|e| lock_error(e, "grant an etcd lease"))?;
        // Revoked unless kept, also if this future is dropped before it finishes.
        let granted = Granted::new(client.clone(), granted.id(), granted.ttl());
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
        let response = client
            .txn(txn)
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
        let mut client = self.client.clone();
        let lease_id = i64::try_from(lease.revision).unwrap_or_default();
        // etcd-client sends the first keep-alive itself and fails if etcd answers with
        // TTL <= 0 (the lease no longer exists).
        let kept = client
            .lease_keep_alive(lease_id)
            .await
            .map_err(|e| lock_error(e, "keep the etcd lease alive"));
        let key = self.key(&lease.name);
        let token = i64::try_from(lease.token.get()).unwrap_or_default();
        // Our acquisition, still attached to our etcd lease (a foreign put can move
        // the key off it, and then nothing expires it).
        let ours = Txn::new().when([
            Compare::create_revision(key.as_str(), CompareOp::Equal, token),
            Compare::lease(key.as_str(), CompareOp::Equal, lease_id),
        ]);
        let response = client
            .txn(ours)
            .await
            .map_err(|e| lock_error(e, "check the lock"))?;
        if !response.succeeded() {
            self.revoke(lease_id).await;
            return Ok(Renew::NotHeld);
        }
        kept?;
        Ok(Renew::Renewed(lease.clone()))
    }

    async fn release(&self, lease: &Lease) -> Result<Release> {
        let mut client = self.client.clone();
        let key = self.key(&lease.name);
        let token = i64::try_from(lease.token.get()).unwrap_or_default();
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                token,
            )])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let response = client
            .txn(txn)
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
        let mut client = self.client.clone();
        let key = self.key(name);
        let response = client
            .get(key.as_str(), None::<GetOptions>)
            .await
            .map_err(|e| lock_error(e, "read the lock"))?;
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
        let deleted = client
            .txn(txn)
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
        let mut client = self.client.clone();
        let response = client
            .get(
                format!("{}{prefix}", self.prefix),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .map_err(|e| lock_error(e, "list the locks"))?;
        let mut listed = Vec::new();
        for kv in response.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let name = key.strip_prefix(&self.prefix).unwrap_or(&key).to_owned();
            let holder = match LockName::new(&name) {
                Ok(lock) => {
                    let remaining = client
                        .lease_time_to_live(kv.lease(), None)
                        .await
                        .map_or(None, |ttl| Some(ttl.ttl()));
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
        let mut client = self.client.clone();
        let response = client
            .get(self.key(name), None::<GetOptions>)
            .await
            .map_err(|e| lock_error(e, "read the lock"))?;
        let Some(kv) = response.kvs().first().cloned() else {
            return Ok(None);
        };
        Record::read(name.as_str(), &kv)?;
        let remaining = client
            .lease_time_to_live(kv.lease(), None)
            .await
            .map_err(|e| lock_error(e, "read the lock's etcd lease"))?
            .ttl();
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
    /// A notification for each put or delete of `key` (or under it, with a prefix).
    async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: Option<WatchOptions>,
    ) -> Result<Changes> {
        let mut client = self.client.clone();
        let stream = client
            .watch(key, options)
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
