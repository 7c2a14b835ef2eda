//! Parsers for git's machine formats (`-z`, porcelain). Pure functions, unit-tested on
//! captured output, so a git upgrade that changes a format fails here and not in a user's env.

use std::path::PathBuf;

/// One entry of `git worktree list --porcelain -z`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorktreeEntry {
    pub path: PathBuf,
    pub head: Option<String>,
    /// Short branch name (`refs/heads/` stripped), `None` when detached or bare.
    pub branch: Option<String>,
    pub bare: bool,
    pub prunable: bool,
}

/// Records are separated by an empty field; fields are `key value` or a bare `key`.
pub fn worktree_list(out: &str) -> Vec<WorktreeEntry> {
    let mut entries = Vec::new();
    let mut cur: Option<WorktreeEntry> = None;
    for field in out.split('\0') {
        if field.is_empty() {
            if let Some(e) = cur.take() {
                entries.push(e);
            }
            continue;
        }
        let (key, value) = field.split_once(' ').unwrap_or((field, ""));
        match key {
            "worktree" => {
                if let Some(e) = cur.take() {
                    entries.push(e);
                }
                cur = Some(WorktreeEntry {
                    path: PathBuf::from(value),
                    ..Default::default()
                });
            }
            _ => {
                let Some(e) = cur.as_mut() else { continue };
                match key {
                    "HEAD" => e.head = Some(value.to_string()),
                    "branch" => {
                        e.branch = Some(value.strip_prefix("refs/heads/").unwrap_or(value).into());
                    }
                    "bare" => e.bare = true,
                    "prunable" => e.prunable = true,
                    _ => {}
                }
            }
        }
    }
    if let Some(e) = cur.take() {
        entries.push(e);
    }
    entries
}

/// Paths named by `git status --porcelain=v2 -z`: changed, unmerged and untracked entries
/// (ignored files are not asked for). A rename record is followed by its origin path, which
/// is skipped.
pub fn status_paths(out: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut fields = out.split('\0');
    while let Some(rec) = fields.next() {
        if rec.is_empty() {
            continue;
        }
        let kind = rec.as_bytes()[0];
        // Fields before the path: `1` has 8, `2` has 9 (then the origin as its own record),
        // `u` has 10, `?`/`!` have 1.
        let skip = match kind {
            b'1' => 8,
            b'2' => 9,
            b'u' => 10,
            b'?' => 1,
            _ => continue,
        };
        if let Some(path) = rec.splitn(skip + 1, ' ').nth(skip) {
            paths.push(path.to_string());
        }
        if kind == b'2' {
            fields.next();
        }
    }
    paths
}

/// `(major, minor)` from `git --version` output (`git version 2.47.3`, or with a vendor
/// suffix such as `2.39.3 (Apple Git-146)`).
pub fn version(out: &str) -> Option<(u32, u32)> {
    let v = out.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_versions() {
        assert_eq!(version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(version("git version 2.39.3 (Apple Git-146)"), Some((2, 39)));
        assert_eq!(version("git version 2.45.windows.1"), Some((2, 45)));
        assert_eq!(version("nonsense"), None);
    }

    #[test]
    fn worktree_list_main_linked_detached_and_prunable() {
        let out = "worktree /r/front\0HEAD 1111\0branch refs/heads/main\0\0\
                   worktree /r/.grove/envs/a/front\0HEAD 2222\0branch refs/heads/feat/x\0\0\
                   worktree /tmp/d\0HEAD 3333\0detached\0\0\
                   worktree /tmp/gone\0HEAD 4444\0branch refs/heads/old\0prunable gitdir file points to non-existent location\0\0";
        let list = worktree_list(out);
        assert_eq!(list.len(), 4);
        assert_eq!(list[0].branch.as_deref(), Some("main"));
        assert_eq!(list[1].path, PathBuf::from("/r/.grove/envs/a/front"));
        assert_eq!(list[1].branch.as_deref(), Some("feat/x"));
        assert_eq!(list[2].branch, None);
        assert!(list[3].prunable);
        assert!(!list[0].prunable);
    }

    #[test]
    fn worktree_list_bare() {
        let list = worktree_list("worktree /r/bare.git\0bare\0\0");
        assert!(list[0].bare);
        assert_eq!(list[0].head, None);
    }

    #[test]
    fn status_paths_all_kinds() {
        let out = "1 .M N... 100644 100644 100644 aaa bbb src/a b.rs\0\
                   2 R. N... 100644 100644 100644 aaa bbb R100 new name.rs\0old name.rs\0\
                   u UU N... 100644 100644 100644 100644 a b c conflict.rs\0\
                   ? untracked file\0";
        assert_eq!(
            status_paths(out),
            vec!["src/a b.rs", "new name.rs", "conflict.rs", "untracked file"]
        );
    }

    #[test]
    fn status_paths_clean() {
        assert!(status_paths("").is_empty());
    }
}
