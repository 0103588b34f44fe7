//! How a lock's state is printed: a text block, a table row, a watch line, or JSON.

use std::time::{Duration, SystemTime};

use lock_core::LockInfo;
use serde_json::{Value, json};

/// A lock's state as lockctl shows it, computed once so that every format agrees.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// The lock's name.
    pub name: String,
    /// The holder, if any.
    pub holder: Option<String>,
    /// The holder's token, if the backend can tell it (Kubernetes cannot).
    pub token: Option<u64>,
    /// How long ago the holder acquired it, if recorded.
    pub acquired_ago: Option<Duration>,
    /// How long ago the holder last renewed it, if recorded.
    pub renewed_ago: Option<Duration>,
    /// The lease duration.
    pub duration: Option<Duration>,
    /// How long until it expires unless renewed (zero: expired).
    pub expires_in: Option<Duration>,
    /// Why the record could not be read, if it could not.
    pub error: Option<String>,
}

impl State {
    /// The state of lock `name` from what the backend described.
    pub fn new(name: &str, info: Option<&LockInfo>, now: SystemTime) -> Self {
        let ago = |at: Option<SystemTime>| at.map(|at| now.duration_since(at).unwrap_or_default());
        let Some(info) = info else {
            return Self::free(name);
        };
        // A renewal time on the record (Kubernetes) says when it lapses by the holder's
        // clock; without one, the backend's own countdown (etcd, Redis) does.
        let expires_in = match info.renewed_at {
            Some(renewed) => Some((renewed + info.ttl).duration_since(now).unwrap_or_default()),
            None => info.expires_in,
        };
        Self {
            name: name.to_owned(),
            holder: Some(info.holder.clone()),
            token: info.token.map(|token| token.get()),
            acquired_ago: ago(info.acquired_at),
            renewed_ago: ago(info.renewed_at),
            duration: Some(info.ttl),
            expires_in,
            error: None,
        }
    }

    /// A free lock.
    pub fn free(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            holder: None,
            token: None,
            acquired_ago: None,
            renewed_ago: None,
            duration: None,
            expires_in: None,
            error: None,
        }
    }

    /// A lock whose record could not be read.
    pub fn unreadable(name: &str, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::free(name)
        }
    }

    /// Whether it is held and past its expiry.
    pub fn expired(&self) -> bool {
        self.holder.is_some() && self.expires_in.is_some_and(|left| left.is_zero())
    }

    /// One word for the state: free, held, expired or malformed.
    pub fn word(&self) -> &'static str {
        match (&self.error, &self.holder) {
            (Some(_), _) => "malformed",
            (None, None) => "free",
            (None, Some(_)) if self.expired() => "expired",
            (None, Some(_)) => "held",
        }
    }

    /// What a watch compares to decide whether to print a line.
    pub fn key(&self) -> (Option<String>, Option<u64>, &'static str) {
        (self.holder.clone(), self.token, self.word())
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        json!({
            "name": self.name,
            "state": self.word(),
            "holder": self.holder,
            "token": self.token,
            "acquired_seconds_ago": seconds(self.acquired_ago),
            "renewed_seconds_ago": seconds(self.renewed_ago),
            "lease_duration_seconds": seconds(self.duration),
            "expires_in_seconds": seconds(self.expires_in),
            "expired": self.expired(),
            "error": self.error,
        })
    }

    /// The text block of `status`.
    pub fn block(&self) -> String {
        let mut lines = vec![
            format!("name:      {}", self.name),
            format!("state:     {}", self.word()),
        ];
        if let Some(error) = &self.error {
            lines.push(format!("error:     {error}"));
        }
        if let Some(holder) = &self.holder {
            lines.extend([
                format!("holder:    {holder}"),
                format!("token:     {}", text(self.token.map(|t| t.to_string()))),
                format!("acquired:  {}", ago(self.acquired_ago)),
                format!("renewed:   {}", ago(self.renewed_ago)),
                format!("duration:  {}", text(self.duration.map(human))),
                format!("expires:   {}", self.expiry()),
            ]);
        }
        lines.join("\n")
    }

    /// The header of `list`'s table.
    pub fn header() -> String {
        format!(
            "{:<32} {:<9} {:<24} {:>20} {:>10} {:>10} {:>9} {}",
            "NAME", "STATE", "HOLDER", "TOKEN", "ACQUIRED", "RENEWED", "DURATION", "EXPIRES"
        )
    }

    /// A row of `list`'s table.
    pub fn row(&self) -> String {
        format!(
            "{:<32} {:<9} {:<24} {:>20} {:>10} {:>10} {:>9} {}",
            self.name,
            self.word(),
            text(self.holder.clone()),
            text(self.token.map(|t| t.to_string())),
            ago(self.acquired_ago),
            ago(self.renewed_ago),
            text(self.duration.map(human)),
            if self.holder.is_some() {
                self.expiry()
            } else {
                "-".to_owned()
            },
        )
    }

    /// A line of `watch`, stamped with the time it was seen.
    pub fn line(&self, at: SystemTime) -> String {
        let at = humantime::format_rfc3339_seconds(at);
        match &self.holder {
            None if self.error.is_some() => {
                format!("{at} {} malformed: {}", self.name, text(self.error.clone()))
            }
            None => format!("{at} {} free", self.name),
            Some(holder) => format!(
                "{at} {} {} holder={holder} token={} expires={}",
                self.name,
                self.word(),
                text(self.token.map(|t| t.to_string())),
                self.expiry()
            ),
        }
    }

    fn expiry(&self) -> String {
        match self.expires_in {
            Some(left) if left.is_zero() => "expired".to_owned(),
            Some(left) => format!("in {}", human(left)),
            None => "-".to_owned(),
        }
    }
}

fn text(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

fn ago(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_owned(), |d| format!("{} ago", human(d)))
}

/// A duration to the second (to the millisecond below one second), e.g. `2m 5s`.
fn human(duration: Duration) -> String {
    let rounded = if duration < Duration::from_secs(1) {
        Duration::from_millis(duration.as_millis().try_into().unwrap_or(u64::MAX))
    } else {
        Duration::from_secs(duration.as_secs())
    };
    humantime::format_duration(rounded).to_string()
}

#[cfg(test)]
mod tests {
    use lock_core::FencingToken;

    use super::*;

    fn info(renewed_ago: Option<u64>, expires_in: Option<u64>) -> LockInfo {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        LockInfo::new("pod-a", Duration::from_secs(15))
            .with_token(Some(FencingToken::new(42)))
            .with_acquired_at(Some(now - Duration::from_secs(125)))
            .with_renewed_at(renewed_ago.map(|s| now - Duration::from_secs(s)))
            .with_expires_in(expires_in.map(Duration::from_secs))
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)
    }

    #[test]
    fn a_renewal_time_on_the_record_decides_the_expiry() {
        let fresh = State::new("lock", Some(&info(Some(5), Some(15))), now());
        assert_eq!(fresh.expires_in, Some(Duration::from_secs(10)));
        assert_eq!(fresh.word(), "held");
        let stale = State::new("lock", Some(&info(Some(20), Some(15))), now());
        assert_eq!((stale.word(), stale.expired()), ("expired", true));
    }

    #[test]
    fn without_a_renewal_time_the_backends_countdown_decides() {
        let state = State::new("lock", Some(&info(None, Some(7))), now());
        assert_eq!(state.expires_in, Some(Duration::from_secs(7)));
        assert!(state.block().contains("renewed:   -"));
    }

    #[test]
    fn the_text_block_shows_ages_and_the_token() {
        let block = State::new("lock", Some(&info(Some(5), None)), now()).block();
        for expected in [
            "holder:    pod-a",
            "token:     42",
            "acquired:  2m 5s ago",
            "renewed:   5s ago",
            "duration:  15s",
            "expires:   in 10s",
        ] {
            assert!(block.contains(expected), "{expected:?} in\n{block}");
        }
        assert_eq!(
            State::free("lock").block(),
            "name:      lock\nstate:     free"
        );
    }

    #[test]
    fn json_has_a_field_per_column() {
        let json = State::new("lock", Some(&info(Some(5), None)), now()).json();
        assert_eq!(json["holder"], "pod-a");
        assert_eq!(json["token"], 42);
        assert_eq!(json["renewed_seconds_ago"], 5.0);
        assert_eq!(json["expired"], false);
        assert_eq!(State::free("lock").json()["state"], "free");
    }
}
