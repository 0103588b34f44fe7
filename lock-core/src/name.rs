//! Lock names and holder identities, validated once for every backend.

use std::{fmt, sync::Arc};

use crate::Error;

/// The longest lock name: the limit of a Kubernetes object name.
pub const MAX_NAME_LEN: usize = 253;

/// The longest holder identity accepted.
pub const MAX_IDENTITY_LEN: usize = 1024;

/// A validated lock name.
///
/// One rule for every backend, so that a name that works on one works on all: a
/// Kubernetes object name (a DNS-1123 subdomain), that is at most 253 characters of
/// lowercase letters, digits, `-` and `.`, where every `.`-separated part starts and ends
/// with a letter or digit.
///
/// ```
/// use lock_core::{Error, LockName};
///
/// let name = LockName::new("shard-7.my-controller")?;
/// assert_eq!(name.as_str(), "shard-7.my-controller");
///
/// assert!(matches!(LockName::new("My_Lock"), Err(Error::InvalidName { .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockName(Arc<str>);

impl LockName {
    /// Validates `name`; the error says what is wrong with it.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        let invalid = |reason: &str| Error::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "must be at most {MAX_NAME_LEN} characters, is {}",
                name.len()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
        {
            return Err(invalid(&format!(
                "must consist of lowercase letters, digits, '-' and '.', found {c:?}"
            )));
        }
        for part in name.split('.') {
            let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
            if !alnum(part.chars().next()) || !alnum(part.chars().last()) {
                return Err(invalid(
                    "every '.'-separated part must start and end with a letter or digit",
                ));
            }
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for LockName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for LockName {
    type Error = Error;
    fn try_from(name: &str) -> Result<Self, Error> {
        Self::new(name)
    }
}

/// Checks a holder identity (who holds the lock, e.g. a pod name): not empty, at most
/// [`MAX_IDENTITY_LEN`] bytes, no control characters.
pub(crate) fn validate_identity(identity: &str) -> Result<(), Error> {
    let reason = if identity.is_empty() {
        "must not be empty".to_owned()
    } else if identity.len() > MAX_IDENTITY_LEN {
        format!("must be at most {MAX_IDENTITY_LEN} bytes")
    } else if identity.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidIdentity {
        identity: identity.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_object_names_are_accepted() {
        for name in [
            "a",
            "lock",
            "my-controller",
            "shard-0.ctl",
            "0abc",
            &"a".repeat(253),
        ] {
            assert!(LockName::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_that_kubernetes_rejects_are_rejected() {
        for name in [
            "",
            "Upper",
            "under_score",
            "-lead",
            "trail-",
            "a..b",
            ".a",
            "a.",
            "sp ace",
            "ü",
            &"a".repeat(254),
        ] {
            assert!(
                matches!(LockName::new(name), Err(Error::InvalidName { .. })),
                "{name:?} should be rejected"
            );
        }
    }

    #[test]
    fn identities_must_be_printable_and_bounded() {
        assert!(validate_identity("pod-a_1 (node 3)").is_ok());
        for bad in ["", "a\nb", &"x".repeat(MAX_IDENTITY_LEN + 1)] {
            assert!(matches!(
                validate_identity(bad),
                Err(Error::InvalidIdentity { .. })
            ));
        }
    }
}
