//! The value stored at a lock's key.

use std::time::Duration;

use etcd_client::KeyValue;
use lock_core::{Error, FencingToken};
use serde::{Deserialize, Serialize};

/// What lock-etcd writes at a lock's key: who holds it, with what TTL. The key itself
/// is attached to the holder's etcd lease, and its `create_revision` is the token.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Marks the value as ours; anything else at the key is not taken over.
    #[serde(rename = "lock-etcd")]
    pub version: u32,
    pub holder: String,
    pub ttl_ms: u64,
}

/// The current record format.
const VERSION: u32 = 1;

impl Record {
    pub fn new(holder: &str, ttl: Duration) -> Self {
        Self {
            version: VERSION,
            holder: holder.to_owned(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads the record at `kv`, or says why it was not written by lock-etcd.
    pub fn read(name: &str, kv: &KeyValue) -> Result<Self, Error> {
        let malformed = |reason: String| Error::Malformed {
            name: name.to_owned(),
            reason,
        };
        let record: Self = serde_json::from_slice(kv.value()).map_err(|error| {
            malformed(format!(
                "the value at the lock's key is not a lock-etcd record ({error})"
            ))
        })?;
        if record.version != VERSION {
            return Err(malformed(format!(
                "unknown lock-etcd record version {}",
                record.version
            )));
        }
        if kv.lease() == 0 {
            return Err(malformed(
                "the lock's key is not attached to an etcd lease".to_owned(),
            ));
        }
        Ok(record)
    }
}

/// The token of the key: the revision that created it.
pub(crate) fn token(kv: &KeyValue) -> FencingToken {
    FencingToken::new(kv.create_revision().unsigned_abs())
}

/// etcd lease TTLs are whole seconds: round up, so that the key outlives the holder's
/// trust in it.
pub(crate) fn whole_seconds(ttl: Duration) -> i64 {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(seconds.max(1)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_ttls_round_up() {
        let record = Record::new("pod-a", Duration::from_millis(2500));
        let parsed: Record = serde_json::from_slice(&record.to_bytes()).expect("parses");
        assert_eq!(parsed, record);
        assert_eq!(whole_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(15)), 15);
    }
}
