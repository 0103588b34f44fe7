//! Elected shards: N shard locks shared fairly among the live members of a group.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{Notify, watch},
    time::{Instant, sleep},
};
use tokio_util::sync::CancellationToken;

use crate::{
    Backend, Error, FencingToken, Guard, Listed, Lock, LockName, Locks, Result, Timing, Validity,
    lock::wait_for_change,
};

/// The default number of member slots: how many members a group can have.
pub const DEFAULT_MAX_MEMBERS: u32 = 16;

/// The shard of `key` among `shards`: a stable hash (FNV-1a), independent of how many
/// members there are, so a key stays on its shard as members come and go.
///
/// ```
/// use lock_core::shard_of;
/// assert_eq!(shard_of("default/my-object", 12), shard_of("default/my-object", 12));
/// assert!(shard_of("anything", 12) < 12);
/// ```
pub fn shard_of(key: &str, shards: u32) -> u32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    u32::try_from(hash % u64::from(shards.max(1))).unwrap_or(0)
}

/// One member of a group that splits `shards` shard locks among its live members.
///
/// A member announces itself by holding one of the group's member slots (a lock each),
/// and takes a fair share of the shards: `shards / members`, plus one for the members of
/// the lowest ranks when it does not divide evenly, so once stable no two members differ
/// by more than one shard. When a member joins or leaves gracefully, the others give up
/// or take over shards at once (members learn of each other from the group's change
/// notifications, [`Backend::group_changes`]; a backend without them is polled); when
/// one crashes, its member slot and shards expire after their TTL and are taken over
/// then. A shard given up is first removed from [`owned`](ElectedShards::owned), then
/// released once its work in flight ([`work_on`](ElectedShards::work_on)) has ended, at
/// most the [drain](ElectedShardsBuilder::drain) timeout later. Each shard is a lock of
/// its own, with its own token.
///
/// Once settled, a group costs the server its renewals, one change watch per member,
/// and one list of the group per member each time the first of the others' records
/// could have expired unrenewed (that is how a crashed member is noticed): on
/// Kubernetes one request (etcd's and Redis's lists also read each lock's TTL). The
/// backend must implement [`Backend::list`].
///
/// ```
/// use std::time::Duration;
/// use lock_core::{ElectedShards, MemoryBackend, Timing};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> lock_core::Result<()> {
/// let shards = ElectedShards::builder(MemoryBackend::new(), "my-controller", "pod-a", 12)
///     .timing(Timing::new(Duration::from_secs(15)))
///     .build()?;
/// let member = shards.clone();
/// let running = tokio::spawn(async move { member.run().await });
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// assert_eq!(shards.owned().borrow().len(), 12); // alone, it owns every shard
/// assert!(shards.owns("default/some-object"));
/// shards.shutdown();
/// running.await.expect("ran")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ElectedShards {
    inner: Arc<Inner>,
}

struct Inner {
    options: Options,
    rebalance_every: Duration,
    held: Mutex<BTreeMap<u32, Guard>>,
    owned: watch::Sender<BTreeSet<u32>>,
    /// How many [`ShardWork`]s of each shard are in flight.
    work: watch::Sender<BTreeMap<u32, usize>>,
    /// Wakes the rebalance loop when a held shard is lost.
    lost_shard: Notify,
    shutdown: CancellationToken,
}

/// What a member is built with.
struct Options {
    backend: Arc<dyn Backend>,
    group: String,
    identity: String,
    shards: u32,
    max_members: u32,
    timing: Timing,
    drain: Duration,
}

impl std::fmt::Debug for ElectedShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectedShards")
            .field("group", &self.inner.options.group)
            .field("identity", &self.inner.options.identity)
            .field("shards", &self.inner.options.shards)
            .field("owned", &*self.inner.owned.borrow())
            .finish_non_exhaustive()
    }
}

/// Builds [`ElectedShards`]; see [`ElectedShards::builder`].
#[must_use]
pub struct ElectedShardsBuilder {
    options: Options,
    rebalance_every: Option<Duration>,
}

impl ElectedShardsBuilder {
    /// The timing of every member and shard lock (default: [`Timing::default`]).
    pub fn timing(mut self, timing: Timing) -> Self {
        self.options.timing = timing;
        self
    }

    /// How many members the group can have (default: [`DEFAULT_MAX_MEMBERS`]).
    pub fn max_members(mut self, max_members: u32) -> Self {
        self.options.max_members = max_members;
        self
    }

    /// How often a member looks at the group and rebalances when the backend sends no
    /// change notifications (or they stopped), and how soon it tries again after a
    /// failed look (default: a tenth of the renew interval, at most one second).
    pub fn rebalance_every(mut self, interval: Duration) -> Self {
        self.rebalance_every = Some(interval);
        self
    }

    /// How long a shard given up may stay held, after it left
    /// [`owned`](ElectedShards::owned), waiting for its [`ShardWork`] in flight to end:
    /// it is released as soon as none is left, or when this has passed (default: none,
    /// released at once).
    pub fn drain(mut self, drain: Duration) -> Self {
        self.options.drain = drain;
        self
    }

    /// Validates the options; the error says what is wrong.
    pub fn build(self) -> Result<ElectedShards> {
        let invalid = |reason: &str| Error::InvalidOption {
            reason: reason.to_owned(),
        };
        if self.options.shards == 0 || self.options.max_members == 0 {
            return Err(invalid(
                "elected shards need at least one shard and one member slot",
            ));
        }
        // The names of the last shard and member slot must be valid lock names.
        LockName::new(shard_name(&self.options.group, self.options.shards - 1))?;
        LockName::new(member_name(
            &self.options.group,
            self.options.max_members - 1,
        ))?;
        self.options.timing.validate()?;
        let rebalance_every = self.rebalance_every.unwrap_or_else(|| {
            (self.options.timing.renew_interval() / 10).min(Duration::from_secs(1))
        });
        if rebalance_every.is_zero() {
            return Err(Error::InvalidTiming {
                reason: "the rebalance interval must be greater than zero".to_owned(),
            });
        }
        Ok(ElectedShards {
            inner: Arc::new(Inner {
                options: self.options,
                rebalance_every,
                held: Mutex::default(),
                owned: watch::Sender::new(BTreeSet::new()),
                work: watch::Sender::new(BTreeMap::new()),
                lost_shard: Notify::new(),
                shutdown: CancellationToken::new(),
            }),
        })
    }
}

fn shard_name(group: &str, shard: u32) -> String {
    format!("{group}.shard-{shard}")
}

fn member_name(group: &str, slot: u32) -> String {
    format!("{group}.member-{slot}")
}

/// This member's share: `shards / members`, one more for the `shards % members` lowest
/// ranks.
fn fair_share(shards: u32, members: u32, rank: u32) -> u32 {
    let members = members.max(1);
    shards / members + u32::from(rank < shards % members)
}

/// Where a member of `rank` starts looking for free shards: spread out by rank, so
/// that members seldom race for the same shard.
fn first_shard(rank: u32, shards: u32, members: u32) -> u32 {
    let start = u64::from(rank) * u64::from(shards) / u64::from(members.max(1));
    u32::try_from(start).unwrap_or(0)
}

/// A lock of the group.
enum Kind {
    Member,
    Shard,
}

/// The group as one list of its locks shows it.
#[derive(Default)]
struct Roster {
    /// The member slots held and not expired.
    members: BTreeSet<u32>,
    /// The shards held, not expired, and not by this member.
    others_shards: BTreeSet<u32>,
    /// How long until the first of the records this member does not hold expires if
    /// not renewed: a crashed member's locks are seen free then (no notification says so).
    next_expiry: Option<Duration>,
}

/// The group's change notifications ([`Backend::group_changes`]), subscribed again at
/// the next look once they end; while there are none, the group is polled every
/// `rebalance_every`.
#[derive(Default)]
struct GroupChanges {
    stream: Option<crate::backend::Changes>,
    /// The backend cannot notify: poll, and do not ask again.
    unsupported: bool,
}

impl GroupChanges {
    /// Subscribes if there is no stream and it may (bounded by the request timeout).
    /// Called before each look at the group, so that no change after it is missed.
    async fn subscribe(&mut self, shards: &ElectedShards) {
        if self.stream.is_some() || self.unsupported {
            return;
        }
        let prefix = format!("{}.", shards.inner.options.group);
        match shards.locks().group_changes(&prefix).await {
            Ok(stream) => self.stream = stream,
            Err(Error::Unsupported { .. }) => self.unsupported = true,
            Err(error) => tracing::debug!(%error, "cannot watch the group; polling it"),
        }
    }

    /// Waits for the next notification or `next_look`, whichever comes first
    /// ([`wait_for_change`]: a stream that ends is dropped, and the wait goes on).
    /// Cancel safe.
    async fn wait(&mut self, next_look: Duration) {
        wait_for_change(&mut self.stream, Instant::now() + next_look).await;
    }

    /// When to look at the group again without a notification: when the first of the
    /// others' records would expire (at most a TTL away), or every `rebalance_every`
    /// while nothing notifies.
    fn next_look(&self, next_expiry: Option<Duration>, inner: &Inner) -> Duration {
        if self.stream.is_none() {
            return inner.rebalance_every;
        }
        let ttl = inner.options.timing.ttl();
        next_expiry.map_or(ttl, |expiry| expiry.min(ttl)) + EXPIRY_MARGIN
    }
}

/// Looked at this long after a record's expiry, so that it is seen expired.
const EXPIRY_MARGIN: Duration = Duration::from_millis(10);

impl ElectedShards {
    /// A member `identity` of `group` (a lock-name prefix), splitting `shards` shards.
    pub fn builder(
        backend: impl Backend,
        group: impl Into<String>,
        identity: impl Into<String>,
        shards: u32,
    ) -> ElectedShardsBuilder {
        ElectedShardsBuilder {
            options: Options {
                backend: Arc::new(backend),
                group: group.into(),
                identity: identity.into(),
                shards,
                max_members: DEFAULT_MAX_MEMBERS,
                timing: Timing::default(),
                drain: Duration::ZERO,
            },
            rebalance_every: None,
        }
    }

    /// The shards this member owns, observable as they change. Do not keep a `borrow()`
    /// of it while calling this member's other methods: they update it.
    pub fn owned(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.inner.owned.subscribe()
    }

    /// The shards this member owns, as a stream: the current set first, then every
    /// change, until the member has left. Use it to start and stop per-shard work.
    pub fn owned_changes(&self) -> futures::stream::BoxStream<'static, BTreeSet<u32>> {
        let mut owned = self.inner.owned.subscribe();
        owned.mark_changed();
        Box::pin(futures::stream::unfold(owned, |mut owned| async move {
            owned.changed().await.ok()?;
            let current = owned.borrow_and_update().clone();
            Some((current, owned))
        }))
    }

    /// Whether this member owns `shard` now: its guard is valid.
    pub fn owns_shard(&self, shard: u32) -> bool {
        let held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.owned.borrow().contains(&shard) && held.get(&shard).is_some_and(Guard::is_valid)
    }

    /// Whether this member owns the shard of `key` now, i.e. should process it.
    ///
    /// Filtering a watch of every object with it scales the reconciles only: each member
    /// still lists, watches and caches every object. On Kubernetes,
    /// `lock_kube::shard_watch` restricts the watch itself to the member's shards.
    pub fn owns(&self, key: &str) -> bool {
        self.owns_shard(self.shard_of(key))
    }

    /// How many shards the group splits.
    pub fn shards(&self) -> u32 {
        self.inner.options.shards
    }

    /// The shard of `key` in this group.
    pub fn shard_of(&self, key: &str) -> u32 {
        shard_of(key, self.inner.options.shards)
    }

    /// The fencing token of `shard`, while this member owns it.
    pub fn token(&self, shard: u32) -> Option<FencingToken> {
        let held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.get(&shard)
            .filter(|guard| guard.is_valid())
            .map(Guard::token)
    }

    /// Starts work on the shard of `key` if this member owns it now, or `None`. While the
    /// [`ShardWork`] lives, a shard given up stays held (up to the
    /// [drain](ElectedShardsBuilder::drain) timeout), so that the next owner starts only
    /// after this work ended; fence the work's writes with its [`token`](ShardWork::token).
    ///
    /// ```
    /// # use lock_core::ElectedShards;
    /// # async fn reconcile(shards: &ElectedShards, key: &str) {
    /// let Some(work) = shards.work_on(key) else {
    ///     return; // another member's object
    /// };
    /// // ... reconcile `key`, writing with `work.token()` ...
    /// drop(work); // done: a shard given up meanwhile may be released now
    /// # }
    /// ```
    pub fn work_on(&self, key: &str) -> Option<ShardWork> {
        self.work_on_shard(self.shard_of(key))
    }

    /// Starts work on `shard` if this member owns it now; see [`work_on`](Self::work_on).
    pub fn work_on_shard(&self, shard: u32) -> Option<ShardWork> {
        // Under `held`, as giving a shard up: no work starts on a shard once it is no
        // longer owned.
        let held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let validity = held
            .get(&shard)
            .filter(|guard| guard.is_valid() && self.inner.owned.borrow().contains(&shard))
            .map(Guard::validity)?;
        self.inner
            .work
            .send_modify(|work| *work.entry(shard).or_default() += 1);
        Some(ShardWork {
            shard,
            validity,
            inner: self.inner.clone(),
        })
    }

    /// Leaves the group gracefully: no shard is owned any more, the shards drain and are
    /// released, then the member slot.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Joins the group and keeps this member's fair share until [`shutdown`](Self::shutdown).
    ///
    /// A member cut off from the server for longer than the TTL loses its member slot
    /// and its shards (each leaves [`owned`](Self::owned) the moment its guard is no
    /// longer valid); it then joins again by itself once it can reach the server, as an
    /// elector campaigns again. So `run` returns only after `shutdown` (`Ok`) or an error
    /// that retrying cannot fix.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the group without a drain: nothing is owned any more,
    /// and the shards and member slot are released in the background.
    pub async fn run(&self) -> Result<()> {
        let inner = &self.inner;
        let _left = LeaveOnDrop(self);
        let mut changes = GroupChanges::default();
        loop {
            let Some((slot, membership)) = self.join(&mut changes).await? else {
                return Ok(());
            };
            tracing::info!(group = %inner.options.group, identity = %inner.options.identity, slot, "joined");
            while !inner.shutdown.is_cancelled() && membership.is_valid() {
                changes.subscribe(self).await;
                let next_look = match self.rebalance(slot).await {
                    Ok(roster) => changes.next_look(roster.next_expiry, inner),
                    Err(error) if error.is_transient() => {
                        tracing::debug!(%error, "rebalance failed; trying again");
                        inner.rebalance_every
                    }
                    Err(error) => {
                        self.leave(None).await;
                        return Err(error);
                    }
                };
                tokio::select! {
                    () = inner.shutdown.cancelled() => {}
                    _ = membership.lost() => {}
                    () = inner.lost_shard.notified() => {}
                    () = changes.wait(next_look) => {}
                }
            }
            if inner.shutdown.is_cancelled() {
                self.leave(Some(membership)).await;
                return Ok(());
            }
            tracing::warn!(
                group = %inner.options.group, identity = %inner.options.identity, slot,
                reason = %membership.validity().loss().map(|r| r.to_string()).unwrap_or_default(),
                "lost the member slot; giving up the shards and joining again"
            );
            self.leave(None).await;
            tokio::select! {
                () = inner.shutdown.cancelled() => return Ok(()),
                () = sleep(inner.rebalance_every) => {}
            }
        }
    }

    /// Takes the first free member slot, waiting for one if the group is full.
    async fn join(&self, changes: &mut GroupChanges) -> Result<Option<(u32, Guard)>> {
        let inner = &self.inner;
        loop {
            changes.subscribe(self).await;
            let next_look = match self.look(None).await {
                Ok(roster) => {
                    let mut next_look = changes.next_look(roster.next_expiry, inner);
                    let free = (0..inner.options.max_members)
                        .filter(|slot| !roster.members.contains(slot));
                    for slot in free {
                        match self
                            .lock(&member_name(&inner.options.group, slot))?
                            .try_acquire()
                            .await
                        {
                            Ok(guard) => return Ok(Some((slot, guard))),
                            Err(Error::Held(_)) => {}
                            Err(error) if error.is_transient() => {
                                next_look = inner.rebalance_every;
                                break;
                            }
                            Err(error) => return Err(error),
                        }
                    }
                    next_look
                }
                Err(error) if error.is_transient() => inner.rebalance_every,
                Err(error) => return Err(error),
            };
            tokio::select! {
                () = inner.shutdown.cancelled() => return Ok(None),
                () = changes.wait(next_look) => {}
            }
        }
    }

    /// The group as one list of its locks shows it; `own_slot` is this member's slot, if
    /// it has one.
    async fn look(&self, own_slot: Option<u32>) -> Result<Roster> {
        let inner = &self.inner;
        let prefix = format!("{}.", inner.options.group);
        let listed = self.locks().list(&prefix).await?;
        let held = self.held_shards();
        let mut roster = Roster::default();
        for Listed { name, holder } in listed {
            let Some(lock) = name.strip_prefix(&prefix) else {
                continue;
            };
            let number = |kind: &str| lock.strip_prefix(kind).and_then(|n| n.parse::<u32>().ok());
            let (kind, number) = match (number("member-"), number("shard-")) {
                (Some(slot), _) if slot < inner.options.max_members => (Kind::Member, slot),
                (_, Some(shard)) if shard < inner.options.shards && !held.contains(&shard) => {
                    (Kind::Shard, shard)
                }
                _ => continue,
            };
            let renewed_here = matches!(kind, Kind::Member) && Some(number) == own_slot;
            let expires_in = match holder {
                Ok(None) => continue,
                Ok(Some(info)) if info.expires_in == Some(Duration::ZERO) => continue,
                // This member renews its own slot (and its shards, not listed here).
                Ok(Some(_)) if renewed_here => None,
                Ok(Some(info)) => info.expires_in,
                // A record that cannot be read is not taken: as if held.
                Err(_) => None,
            };
            match kind {
                Kind::Member => roster.members.insert(number),
                Kind::Shard => roster.others_shards.insert(number),
            };
            if let Some(expires_in) = expires_in {
                roster.next_expiry =
                    Some(roster.next_expiry.map_or(expires_in, |e| e.min(expires_in)));
            }
        }
        Ok(roster)
    }

    fn locks(&self) -> Locks {
        Locks::over(
            self.inner.options.backend.clone(),
            self.inner.options.timing,
        )
    }

    fn lock(&self, name: &str) -> Result<Lock> {
        Lock::builder(
            self.inner.options.backend.clone(),
            name,
            self.inner.options.identity.clone(),
        )
        .timing(self.inner.options.timing)
        .build()
    }

    /// One look at the group: forget lost shards, then take or give up shards until
    /// this member holds its fair share. Returns the roster it acted on.
    async fn rebalance(&self, slot: u32) -> Result<Roster> {
        let inner = &self.inner;
        self.forget_lost();
        let mut roster = self.look(Some(slot)).await?;
        roster.members.insert(slot);
        let live: Vec<u32> = roster.members.iter().copied().collect();
        let rank = u32::try_from(live.iter().position(|s| *s == slot).unwrap_or(0)).unwrap_or(0);
        let members = u32::try_from(live.len()).unwrap_or(u32::MAX);
        let target = fair_share(inner.options.shards, members, rank);

        self.forget_lost();
        let mut owned = self.held_shards();
        let taken_by_others = &roster.others_shards;
        let start = first_shard(rank, inner.options.shards, members);
        for offset in 0..inner.options.shards {
            if owned.len() >= target as usize {
                break;
            }
            let shard = (start + offset) % inner.options.shards;
            if owned.contains(&shard) || taken_by_others.contains(&shard) {
                continue;
            }
            match self
                .lock(&shard_name(&inner.options.group, shard))?
                .try_acquire()
                .await
            {
                Ok(guard) => {
                    self.hold(shard, guard);
                    owned.insert(shard);
                }
                Err(Error::Held(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let surplus: Vec<u32> = owned
            .iter()
            .rev()
            .take(owned.len().saturating_sub(target as usize))
            .copied()
            .collect();
        self.publish();
        if !surplus.is_empty() {
            self.give_up(&surplus).await;
        }
        Ok(roster)
    }

    fn held_shards(&self) -> BTreeSet<u32> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    fn forget_lost(&self) {
        let mut held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.retain(|_, guard| guard.is_valid());
    }

    /// Publishes the shards held and valid as owned. The set is sent while `held` is
    /// locked, so a loss removing a shard cannot fall between reading and sending.
    fn publish(&self) {
        let held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let owned: BTreeSet<u32> = held
            .iter()
            .filter(|(_, guard)| guard.is_valid())
            .map(|(shard, _)| *shard)
            .collect();
        crate::metrics::shards_owned(
            &self.inner.options.group,
            &self.inner.options.identity,
            owned.len(),
        );
        self.inner.owned.send_if_modified(|current| {
            let changed = *current != owned;
            *current = owned;
            changed
        });
    }

    /// Stops owning `shards`, waits for their work in flight (up to the drain timeout),
    /// and releases them.
    async fn give_up(&self, shards: &[u32]) {
        {
            let _held = self
                .inner
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.inner.owned.send_modify(|owned| {
                for shard in shards {
                    owned.remove(shard);
                }
                crate::metrics::shards_owned(
                    &self.inner.options.group,
                    &self.inner.options.identity,
                    owned.len(),
                );
            });
        }
        // Each shard is released as soon as its own work has ended.
        futures::future::join_all(shards.iter().map(|&shard| async move {
            let mut work = self.inner.work.subscribe();
            let drained = work.wait_for(|work| !work.contains_key(&shard));
            let _ = tokio::time::timeout(self.inner.options.drain, drained).await;
            let guard = self
                .inner
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&shard);
            if let Some(guard) = guard {
                let _ = guard.release().await;
            }
        }))
        .await;
    }

    /// Takes `shard` as owned with `guard`, and takes it out of the owned set the moment
    /// the guard is no longer valid, whatever the rebalance loop is doing.
    fn hold(&self, shard: u32, guard: Guard) {
        let validity = guard.validity();
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(shard, guard);
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            validity.lost().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let lost = {
                let mut held = inner.held.lock().unwrap_or_else(PoisonError::into_inner);
                if held
                    .get(&shard)
                    .is_some_and(|guard| guard.token() != validity.token())
                {
                    return; // taken again since, with a new guard
                }
                // Under the `held` lock, like `publish`.
                inner.owned.send_if_modified(|owned| {
                    let removed = owned.remove(&shard);
                    if removed {
                        crate::metrics::shards_owned(
                            &inner.options.group,
                            &inner.options.identity,
                            owned.len(),
                        );
                    }
                    removed
                });
                held.remove(&shard)
            };
            // Not for a shard given up (no longer held): only a loss wakes the loop.
            if lost.is_some() {
                inner.lost_shard.notify_one();
            }
            drop(lost);
        });
    }

    async fn leave(&self, membership: Option<Guard>) {
        let all: Vec<u32> = self.held_shards().into_iter().collect();
        self.give_up(&all).await;
        if let Some(membership) = membership {
            let _ = membership.release().await;
        }
        tracing::info!(group = %self.inner.options.group, identity = %self.inner.options.identity, "left");
    }
}

/// Work on one shard, from [`ElectedShards::work_on`]: while it lives, the shard is not
/// released (up to the drain timeout). Dropping it ends the work.
#[must_use = "the work ends when this is dropped"]
pub struct ShardWork {
    shard: u32,
    validity: Validity,
    inner: Arc<Inner>,
}

impl ShardWork {
    /// The shard worked on.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The shard's fencing token: pass it into the work's writes.
    pub fn token(&self) -> FencingToken {
        self.validity.token()
    }

    /// The validity of this member's hold on the shard. Check it before sending a write
    /// that fencing cannot protect, with a margin for the request's own time: a request
    /// already sent may still reach the server after `valid_until`, which cancelling its
    /// future does not prevent (fenced writes make that harmless).
    pub fn validity(&self) -> &Validity {
        &self.validity
    }
}

impl std::fmt::Debug for ShardWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWork")
            .field("shard", &self.shard)
            .field("token", &self.token())
            .finish()
    }
}

impl Drop for ShardWork {
    fn drop(&mut self) {
        self.inner.work.send_modify(|work| {
            if let Some(count) = work.get_mut(&self.shard) {
                *count -= 1;
                if *count == 0 {
                    work.remove(&self.shard);
                }
            }
        });
    }
}

/// Leaves the group without a drain when `run` ends or its future is dropped: nothing
/// is owned any more, and what is still held is released in the background.
struct LeaveOnDrop<'a>(&'a ElectedShards);

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        let inner = &self.0.inner;
        inner.owned.send_if_modified(|owned| {
            let changed = !owned.is_empty();
            owned.clear();
            changed
        });
        crate::metrics::shards_owned(&inner.options.group, &inner.options.identity, 0);
        let held = std::mem::take(&mut *inner.held.lock().unwrap_or_else(PoisonError::into_inner));
        drop(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_shares_add_up_and_differ_by_at_most_one() {
        for shards in 1..40 {
            for members in 1..10 {
                let shares: Vec<u32> = (0..members)
                    .map(|rank| fair_share(shards, members, rank))
                    .collect();
                assert_eq!(shares.iter().sum::<u32>(), shards);
                assert!(shares.iter().max().unwrap_or(&0) - shares.iter().min().unwrap_or(&0) <= 1);
            }
        }
    }

    #[test]
    fn zero_shards_or_members_are_typed_errors_and_large_groups_do_not_overflow() {
        let build = |shards, members| {
            ElectedShards::builder(crate::MemoryBackend::new(), "group", "member", shards)
                .max_members(members)
                .build()
        };
        assert!(matches!(build(0, 4), Err(Error::InvalidOption { .. })));
        assert!(matches!(build(4, 0), Err(Error::InvalidOption { .. })));
        assert_eq!(fair_share(u32::MAX, u32::MAX, u32::MAX - 1), 1);
        assert_eq!(first_shard(u32::MAX - 1, u32::MAX, u32::MAX), u32::MAX - 1);
        assert_eq!(first_shard(2, 12, 3), 8);
    }

    #[test]
    fn keys_map_to_shards_stably() {
        let spread: BTreeSet<u32> = (0..1000)
            .map(|i| shard_of(&format!("ns/object-{i}"), 12))
            .collect();
        assert_eq!(spread.len(), 12, "every shard gets keys");
        assert_eq!(shard_of("ns/a", 12), shard_of("ns/a", 12));
    }
}
