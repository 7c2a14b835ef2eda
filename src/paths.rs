//! Where grove keeps things, and a stable hash for names: a leaf module (it uses nothing of
//! grove's but its error type), so that `config`, `git` and `workspace` can all use it without
//! depending on each other in a cycle.

use std::path::PathBuf;

use crate::error::Fail;

/// Where grove keeps its state: `$GROVE_HOME`, else `$XDG_STATE_HOME/grove`, else
/// `~/.local/state/grove`.
pub fn grove_home() -> Result<PathBuf, Fail> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(home) = var("GROVE_HOME") {
        return Ok(home);
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return Ok(state.join("grove"));
    }
    match var("HOME") {
        Some(home) => Ok(home.join(".local/state/grove")),
        None => Err(
            Fail::new("cannot tell where to keep grove's state: HOME is not set")
                .hint("set GROVE_HOME to a writable folder"),
        ),
    }
}

/// 64-bit FNV-1a: a stable hash for names (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
