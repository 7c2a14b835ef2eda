//! Errors that reach the user, and the exit code each one maps to.
//!
//! Commands return `anyhow::Result`. A [`Fail`] anywhere in the chain carries the message the
//! user sees, an optional `hint:` and the exit code (1 for a user or domain error, 2 for usage).
//! [`Exit`] ends the program with a code and no message (a child's own exit code, an interrupt).

use std::fmt;

/// A user-facing failure: what went wrong, what to do about it, and the exit code.
#[derive(Debug, Clone)]
pub struct Fail {
    pub msg: String,
    pub hint: Option<String>,
    pub code: i32,
}

impl Fail {
    pub fn new(msg: impl Into<String>) -> Self {
        Self {
            msg: msg.into(),
            hint: None,
            code: 1,
        }
    }

    /// A usage error (exit 2): the command line itself is wrong.
    pub fn usage(msg: impl Into<String>) -> Self {
        Self {
            msg: msg.into(),
            hint: None,
            code: 2,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Fail {}

/// Ends the program with `code` and prints nothing more: the child's own exit code for
/// `grove exec`, 128+signal after an interrupt that was already reported.
#[derive(Debug)]
pub struct Exit(pub i32);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}
