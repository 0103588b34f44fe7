//! An in-memory fenced register: the reference for what a fenced resource does.

use std::sync::{Mutex, PoisonError};

use crate::{Error, FencingToken};

/// A value that accepts a write only if its fencing token is not below the highest
/// token seen so far, and raises that mark in the same atomic step.
///
/// Use it in tests, or to guard your own in-process stores. A write from a former
/// holder, paused past its TTL while a newer holder wrote, fails with
/// [`Error::StaleToken`].
///
/// ```
/// use lock_core::{Error, FencedRegister, FencingToken};
///
/// let register = FencedRegister::new(0);
/// register.write(FencingToken::new(7), 1)?;
/// register.update(FencingToken::new(8), |v| *v += 1)?;
/// assert_eq!(register.read(), 2);
///
/// // The holder of token 7 wakes up late: its write is rejected.
/// let stale = register.write(FencingToken::new(7), 100);
/// assert!(matches!(stale, Err(Error::StaleToken { .. })));
/// assert_eq!(register.read(), 2);
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Default)]
pub struct FencedRegister<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug, Default)]
struct State<T> {
    highest: Option<FencingToken>,
    value: T,
}

impl<T> FencedRegister<T> {
    /// A register holding `value`, with no token seen yet.
    pub fn new(value: T) -> Self {
        Self {
            state: Mutex::new(State {
                highest: None,
                value,
            }),
        }
    }

    /// Replaces the value if `token` is not below the highest token seen.
    pub fn write(&self, token: FencingToken, value: T) -> Result<(), Error> {
        self.update(token, |current| *current = value)
    }

    /// Runs `f` on the value if `token` is not below the highest token seen: a fenced
    /// read-modify-write, atomic with the check.
    pub fn update<R>(&self, token: FencingToken, f: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = state.highest.filter(|current| token < *current) {
            return Err(Error::StaleToken {
                presented: token,
                current,
            });
        }
        state.highest = Some(token);
        Ok(f(&mut state.value))
    }

    /// The highest token accepted so far.
    pub fn highest_token(&self) -> Option<FencingToken> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .highest
    }

    /// A copy of the current value.
    pub fn read(&self) -> T
    where
        T: Clone,
    {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .value
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_token_is_accepted_first_and_the_same_token_again() {
        let register = FencedRegister::new(0);
        assert_eq!(register.highest_token(), None);
        register
            .write(FencingToken::new(5), 1)
            .expect("first write");
        register
            .write(FencingToken::new(5), 2)
            .expect("the holder writes again");
        assert_eq!(register.read(), 2);
    }

    #[test]
    fn a_lower_token_is_rejected_naming_both_tokens_and_changes_nothing() {
        let register = FencedRegister::new("new");
        register
            .write(FencingToken::new(9), "newest")
            .expect("write");
        match register.update(FencingToken::new(8), |v| *v = "stale") {
            Err(Error::StaleToken { presented, current }) => {
                assert_eq!((presented.get(), current.get()), (8, 9));
            }
            other => panic!("expected StaleToken, got {other:?}"),
        }
        assert_eq!(
            (register.read(), register.highest_token()),
            ("newest", Some(FencingToken::new(9)))
        );
    }

    #[test]
    fn concurrent_writers_never_lower_the_mark() {
        let register = std::sync::Arc::new(FencedRegister::new(0u64));
        let writers: Vec<_> = (1..=8u64)
            .map(|writer| {
                let register = register.clone();
                std::thread::spawn(move || {
                    for round in 0..1000u64 {
                        let token = FencingToken::new(round * 8 + writer);
                        if register.write(token, token.get()).is_ok() {
                            assert!(register.highest_token() >= Some(token));
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer");
        }
        assert_eq!(
            register.highest_token(),
            Some(FencingToken::new(999 * 8 + 8))
        );
        assert_eq!(register.read(), 999 * 8 + 8);
    }
}
