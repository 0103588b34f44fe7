//! Fenced writes in Redis: a Lua script that compares and raises a high-water mark.

use lock_core::{Error, FencingToken};
use redis::{ToRedisArgs, aio::ConnectionLike};

use crate::{error::lock_error, scripts};

/// The suffix of the key holding a fenced key's high-water mark. The mark of a key with
/// a hash tag (`user:{42}:profile`) is the key + this, keeping the tag; of a key without
/// one it is `{key}` + this. Either way both hash to the same Redis Cluster slot.
pub const MARK_SUFFIX: &str = ":fencing-token";

/// What Redis Cluster hashes for `key`: its hash tag (the text between the first `{`
/// and the first `}` after it, if not empty), or the whole key.
fn hashed_part(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(length) = key[open + 1..].find('}')
        && length > 0
    {
        return &key[open + 1..open + 1 + length];
    }
    key
}

/// The key of `key`'s high-water mark, in the same cluster slot as `key`: `key` +
/// [`MARK_SUFFIX`] if `key` has a hash tag, else `{key}` + [`MARK_SUFFIX`]. A key with a
/// `}` but no hash tag (`a}b`, `{}x`) hashes whole, and no tag can equal it:
/// [`Error::InvalidOption`].
///
/// ```
/// assert_eq!(lock_redis::mark_key("user:{42}:profile").unwrap(), "user:{42}:profile:fencing-token");
/// assert_eq!(lock_redis::mark_key("report").unwrap(), "{report}:fencing-token");
/// ```
pub fn mark_key(key: &str) -> Result<String, Error> {
    if hashed_part(key) != key {
        return Ok(format!("{key}{MARK_SUFFIX}"));
    }
    if key.contains('}') {
        // Its slot hashes the whole key, and no tag can hold a '}'.
        return Err(Error::InvalidOption {
            reason: format!(
                "the fenced key {key:?} has a '}}' but no hash tag: no mark key can share its Redis Cluster slot; give it a hash tag, e.g. {{{}}}",
                key.replace(['{', '}'], "")
            ),
        });
    }
    Ok(format!("{{{key}}}{MARK_SUFFIX}"))
}

/// Sets `key` to `value` only if `token` is not below the highest token a fenced set of
/// `key` has presented, raising that mark in the same step. A former holder gets
/// [`Error::StaleToken`] and changes nothing. The mark lives at [`mark_key`], in the
/// same Redis Cluster slot as `key`; a key whose slot no mark can share is
/// [`Error::InvalidOption`].
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
    fenced(connection, key, token, Some(value), "run a fenced set").await
}

/// Deletes `key` only if `token` is not below the highest token a fenced write of `key`
/// has presented, raising that mark in the same step. The mark outlives the key, so a
/// former holder can neither delete a newer holder's value nor set the key again after
/// a newer holder deleted it: both are [`Error::StaleToken`].
///
/// ```no_run
/// use lock_redis::{RedisBackend, fenced_delete};
///
/// # async fn run(backend: RedisBackend, guard: lock_core::Guard) -> lock_core::Result<()> {
/// fenced_delete(&mut backend.connection(), "report", guard.token()).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_delete<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    token: FencingToken,
) -> Result<(), Error> {
    fenced(connection, key, token, None::<&str>, "run a fenced delete").await
}

/// Sets `key` to `value` (or deletes it, without one) for `token`: the one fenced write
/// on a mark.
async fn fenced<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    token: FencingToken,
    value: Option<impl ToRedisArgs + Send + Sync>,
    what: &str,
) -> Result<(), Error> {
    let mut script = scripts::FENCED_WRITE.prepare_invoke();
    script
        .key(key)
        .key(mark_key(key)?)
        .arg(format!("{:020}", token.get()));
    match &value {
        Some(value) => script.arg("set").arg(value),
        None => script.arg("del"),
    };
    let (written, mark): (i64, String) = script
        .invoke_async(connection)
        .await
        .map_err(|e| lock_error(e, key, what))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_its_mark_hash_to_the_same_cluster_slot() {
        for key in ["report", "user:{42}:profile", "{tag}", "a{b}c{d}", "{"] {
            let mark = mark_key(key).expect("a mark key");
            assert_eq!(hashed_part(&mark), hashed_part(key), "{key:?} and {mark:?}");
        }
        assert_eq!(hashed_part("user:{42}:profile"), "42");
        assert_eq!(
            hashed_part("x{}y{z}"),
            "x{}y{z}",
            "an empty tag hashes the whole key"
        );
        for key in ["a}b", "{}x", "x{}", "x{}y{z}"] {
            assert!(
                matches!(mark_key(key), Err(Error::InvalidOption { .. })),
                "{key:?}"
            );
        }
    }
}
