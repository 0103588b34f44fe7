//! Fencing tokens.

use std::fmt;

/// A fencing token: a number that strictly increases with every acquisition of one
/// lock name, by anyone.
///
/// Present it with every write the lock protects. A resource that remembers the highest
/// token it has accepted and refuses lower ones (see [`FencedRegister`](crate::FencedRegister))
/// rejects the writes of a former holder that was paused or partitioned and does not yet
/// know it lost the lock.
///
/// Tokens of different lock names are unrelated and must not be compared.
///
/// ```
/// use lock_core::FencingToken;
///
/// let older = FencingToken::new(41);
/// let newer = FencingToken::new(42);
/// assert!(older < newer);
/// assert_eq!(newer.to_string(), "42");
/// assert_eq!(newer.get(), 42);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token value, as issued by a backend.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The raw value, e.g. to store it next to the data it protects.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<FencingToken> for u64 {
    fn from(token: FencingToken) -> Self {
        token.0
    }
}
