//! Fenced writes in etcd: transactions that only apply for the current lock holder.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};
use lock_core::{Error, FencingToken, LockName};

use crate::{EtcdBackend, error::lock_error};

/// The suffix of the key that holds a [`fenced_put`] key's high-water mark.
pub const MARK_SUFFIX: &str = ".fencing-token";

/// Runs `operations` in one transaction only if lock `name` is still held under
/// `token` (its key's `create_revision` is the token): atomic with ownership, the safe
/// way to write under an etcd lock. A former holder gets [`Error::StaleToken`] whose
/// `current` is the lock's token now (0 if nobody holds it).
///
/// ```no_run
/// use etcd_client::TxnOp;
/// use lock_etcd::{EtcdBackend, fenced_txn};
///
/// # async fn run(backend: EtcdBackend, guard: lock_core::Guard) -> lock_core::Result<()> {
/// fenced_txn(&backend, guard.name(), guard.token(), vec![TxnOp::put("report", "done", None)]).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_txn(
    backend: &EtcdBackend,
    name: &LockName,
    token: FencingToken,
    operations: Vec<TxnOp>,
) -> Result<TxnResponse, Error> {
    let key = backend.key(name);
    let revision = i64::try_from(token.get()).unwrap_or(i64::MAX);
    let txn = Txn::new()
        .when([Compare::create_revision(
            key.as_str(),
            CompareOp::Equal,
            revision,
        )])
        .and_then(operations)
        .or_else([TxnOp::get(key.as_str(), None)]);
    let response = backend
        .client()
        .clone()
        .txn(txn)
        .await
        .map_err(|e| lock_error(e, "run a fenced transaction"))?;
    if response.succeeded() {
        return Ok(response);
    }
    let current = first_get(&response).map_or(0, |kv| kv.create_revision().unsigned_abs());
    Err(Error::StaleToken {
        presented: token,
        current: FencingToken::new(current),
    })
}

/// Puts `value` at `key` only if `token` is not below the highest token a fenced write
/// to `key` has presented, raising that mark (kept at `key` + [`MARK_SUFFIX`]) in the
/// same transaction: for stores written outside the lock's lifetime. A former holder
/// gets [`Error::StaleToken`] and changes nothing.
///
/// ```no_run
/// use lock_etcd::fenced_put;
///
/// # async fn run(client: etcd_client::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// fenced_put(&client, "reports/nightly", "done", guard.token()).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_put(
    client: &Client,
    key: &str,
    value: impl Into<Vec<u8>>,
    token: FencingToken,
) -> Result<(), Error> {
    fenced(
        client,
        key,
        TxnOp::put(key, value, None),
        token,
        "run a fenced put",
    )
    .await
}

/// Deletes `key` only if `token` is not below the highest token a fenced write to `key`
/// has presented, raising that mark in the same transaction. The mark outlives the key,
/// so a former holder can neither delete a newer holder's value nor create the key
/// again with [`fenced_put`] after a newer holder deleted it: both are
/// [`Error::StaleToken`].
///
/// ```no_run
/// use lock_etcd::fenced_delete;
///
/// # async fn run(client: etcd_client::Client, guard: lock_core::Guard) -> lock_core::Result<()> {
/// fenced_delete(&client, "reports/nightly", guard.token()).await?;
/// # Ok(()) }
/// ```
pub async fn fenced_delete(client: &Client, key: &str, token: FencingToken) -> Result<(), Error> {
    fenced(
        client,
        key,
        TxnOp::delete(key, None),
        token,
        "run a fenced delete",
    )
    .await
}

/// Runs `write` on `key` and raises its mark to `token`, in one transaction, unless the
/// mark is above `token`: the one fenced write on a mark.
async fn fenced(
    client: &Client,
    key: &str,
    write: TxnOp,
    token: FencingToken,
    what: &str,
) -> Result<(), Error> {
    let mark_key = format!("{key}{MARK_SUFFIX}");
    let mark = encode(token);
    // A compare on a missing key's value is false, so the first write always applies.
    let txn = Txn::new()
        .when([Compare::value(
            mark_key.as_str(),
            CompareOp::Greater,
            mark.as_str(),
        )])
        .and_then([TxnOp::get(mark_key.as_str(), None)])
        .or_else([write, TxnOp::put(mark_key.as_str(), mark.as_str(), None)]);
    let response = client
        .clone()
        .txn(txn)
        .await
        .map_err(|e| lock_error(e, what))?;
    if !response.succeeded() {
        return Ok(());
    }
    let current = first_get(&response)
        .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse::<u64>().ok())
        .ok_or_else(|| Error::Malformed {
            name: mark_key.clone(),
            reason: "the fencing mark is not a token".to_owned(),
        })?;
    Err(Error::StaleToken {
        presented: token,
        current: FencingToken::new(current),
    })
}

/// Tokens as 20 zero-padded digits, so that etcd's byte-wise comparison is numeric.
fn encode(token: FencingToken) -> String {
    format!("{:020}", token.get())
}

fn first_get(response: &TxnResponse) -> Option<etcd_client::KeyValue> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_tokens_compare_like_numbers() {
        let (small, large) = (encode(FencingToken::new(9)), encode(FencingToken::new(10)));
        assert!(small < large);
        assert_eq!(encode(FencingToken::new(u64::MAX)).len(), 20);
    }
}
