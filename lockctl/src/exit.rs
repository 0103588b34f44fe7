//! Exit codes a script can rely on, and the failures that lead to them.

use std::fmt;

use lock_core::Error;

/// How lockctl ends; the process exit code is the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// The backend failed: unreachable, forbidden, malformed data.
    Failed = 1,
    /// Bad usage: unknown command, invalid name or duration.
    Usage = 2,
    /// The lock is not in the state asked for.
    NotHeld = 3,
    /// The lock was lost while held.
    Lost = 4,
    /// Not confirmed.
    Aborted = 5,
}

/// Why a command ended without doing what it was asked.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What to print on stderr.
    pub message: String,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let exit = match &error {
            Error::InvalidName { .. }
            | Error::InvalidIdentity { .. }
            | Error::InvalidTiming { .. }
            | Error::InvalidOption { .. } => Exit::Usage,
            Error::Held { .. } | Error::Timeout { .. } => Exit::NotHeld,
            Error::Lost { .. } => Exit::Lost,
            _ => Exit::Failed,
        };
        Self::new(exit, error.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Self::new(Exit::Failed, format!("cannot write the output: {error}"))
    }
}
