//! Env names: the branch name a user gives, the env name derived from it, and the safe
//! identifier (`GROVE_ENV_ID`) that recipes paste into database names.

use anyhow::Result;

use crate::error::Fail;
use crate::git;
use crate::paths::fnv1a;

pub const MAX_NAME_LEN: usize = 64;
pub const MAX_ID_LEN: usize = 40;

/// Checks `name` as a branch name, before anything is changed, and returns the env name
/// (`/` replaced by `-`).
pub fn env_name(name: &str) -> Result<String> {
    let bad = |why: &str| -> anyhow::Error {
        Fail::new(format!("bad env name `{}`: {why}", name.escape_debug()))
            .hint("use a git branch name such as `feat-01` or `feat/login`")
            .into()
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.starts_with('-') {
        return Err(bad("it starts with `-`"));
    }
    if name.contains("..") {
        return Err(bad("it contains `..`"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace or control characters"));
    }
    if let Some(c) = name.chars().find(|c| invisible(*c)) {
        return Err(bad(&format!(
            "it contains the invisible character U+{:04X}, which would make it look like another name",
            u32::from(c)
        )));
    }
    // git accepts these as branch names, but they read as something else: `@` is HEAD to
    // git, `refs/…` and `…/HEAD` look like other refs.
    if name == "@" {
        return Err(bad("`@` means HEAD to git"));
    }
    if name.starts_with("refs/") || name.split('/').any(|c| c == "HEAD") {
        return Err(bad("it reads as a ref (`refs/…` or `HEAD`), not a branch"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(bad(&format!("it is longer than {MAX_NAME_LEN} characters")));
    }
    if !git::is_valid_branch_name(name)? {
        return Err(bad(
            "git does not accept it as a branch name (`git check-ref-format --branch`)",
        ));
    }
    let env = name.replace('/', "-");
    if env.starts_with('.') || env.ends_with(".lock") {
        return Err(bad("it cannot be used as a folder name"));
    }
    Ok(env)
}

/// Characters that show as nothing (or reorder what follows): zero-width spaces and joiners,
/// bidirectional controls, the soft hyphen, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF
    )
}

/// The identifier form of an env name: lowercase `[a-z0-9_]`, starting with a letter, at most
/// [`MAX_ID_LEN`] characters. Not unique by itself (`feat.1` and `feat-1` both give `feat_1`):
/// the store adds a suffix when the plain form is taken (see [`with_suffix`]).
pub fn env_id(env: &str) -> String {
    let mut id = String::new();
    for c in env.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('_') {
            id.push('_');
        }
    }
    let id = id.trim_matches('_');
    let mut id = if id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id.to_string()
    } else {
        format!("e_{id}")
    };
    if id.len() > MAX_ID_LEN {
        // Keep it unique across long names that share a prefix.
        let hash = format!("_{:08x}", fnv1a(env.as_bytes()) & 0xffff_ffff);
        id.truncate(MAX_ID_LEN - hash.len());
        id.push_str(&hash);
    }
    id
}

/// `base` with a suffix made from the env name, for when `base` is taken by another env.
pub fn with_suffix(base: &str, env: &str, attempt: u32) -> String {
    let suffix = format!(
        "_{:06x}",
        (fnv1a(env.as_bytes()) + u64::from(attempt)) & 0xff_ffff
    );
    let keep = MAX_ID_LEN - suffix.len();
    let mut id: String = base.chars().take(keep).collect();
    id.push_str(&suffix);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_id_is_a_safe_identifier() {
        assert_eq!(env_id("feat-01"), "feat_01");
        assert_eq!(env_id("Feat.1"), "feat_1");
        assert_eq!(env_id("feat--x__y"), "feat_x_y");
        assert_eq!(env_id("01-fix"), "e_01_fix");
        assert_eq!(env_id("x$(touch pwned)"), "x_touch_pwned");
        let long = env_id(&"a".repeat(64));
        assert_eq!(long.len(), MAX_ID_LEN);
        assert_ne!(long, env_id(&format!("{}b", "a".repeat(63))));
    }

    #[test]
    fn suffix_keeps_length_and_differs() {
        let a = with_suffix("feat_1", "feat.1", 0);
        assert!(a.starts_with("feat_1_") && a.len() <= MAX_ID_LEN);
        assert_ne!(a, with_suffix("feat_1", "feat.1", 1));
        assert!(with_suffix(&"x".repeat(40), "n", 0).len() <= MAX_ID_LEN);
    }

    #[test]
    fn rejects_bad_names_before_asking_git() {
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "a\tb",
            "a\u{7}b",
            &"x".repeat(65),
            "@",
            "refs/heads/x",
            "x/HEAD",
            "HEAD",
            "a\u{200B}b",
            "a\u{202E}b",
        ] {
            assert!(env_name(bad).is_err(), "{bad:?}");
        }
    }
}
