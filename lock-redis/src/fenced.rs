//! Fenced writes in Redis: a Lua script that compares and raises a high-water mark.

use lock_core::{Error, FencingToken};
use redis::{ToRedisArgs, aio::ConnectionLike};

use crate::{error::lock_error, scripts};

/// The suffix of the key holding a fenced key's high-water mark: the mark of `key` is
/// `{key}` + this, so both hash to the same Redis Cluster slot.
pub const MARK_SUFFIX: &str = ":fencing-token";

/// Sets `key` to `value` only if `token` is not below the highest token a fenced set of
/// `key` has presented, raising that mark in the same step. A former holder gets
/// [`Error::StaleToken`] and changes nothing.
///
/// ```no_run
/// use lock_redis::{RedisBackend, fenced_set};
///
/// # async fn run(backend: RedisBackend, guard: lock_core::Guard) -> lock_core::Result<()> {
/// fenced_set(&mut backend.connection(), "report", "done", guard.token()).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_set<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    value: impl ToRedisArgs + Send + Sync,
    token: FencingToken,
) -> Result<(), Error> {
    let (written, mark): (i64, String) = scripts::FENCED_SET
        .key(key)
        .key(format!("{{{key}}}{MARK_SUFFIX}"))
        .arg(value)
        .arg(format!("{:020}", token.get()))
        .invoke_async(connection)
        .await
        .map_err(|e| lock_error(e, key, "run a fenced set"))?;
    if written == 1 {
        return Ok(());
    }
    let current = mark.parse::<u64>().map_err(|_| Error::Malformed {
        name: key.to_owned(),
        reason: format!("the fencing mark is not a token: {mark:?}"),
    })?;
    Err(Error::StaleToken {
        presented: token,
        current: FencingToken::new(current),
    })
}
