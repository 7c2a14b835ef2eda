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
    /// `git worktree lock`ed, with its reason (empty when none was given).
    pub locked: Option<String>,
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
                    "locked" => e.locked = Some(value.to_string()),
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
    // A path can come twice: `git rm --cached F` is a deletion in the index and F untracked.
    let mut seen = std::collections::HashSet::new();
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
        if let Some(path) = rec.splitn(skip + 1, ' ').nth(skip)
            && seen.insert(path)
        {
            paths.push(path.to_string());
        }
        if kind == b'2' {
            fields.next();
        }
    }
    paths
}

/// Files of `git ls-files -v -s -z` whose edits git was told to ignore: tag `S`
/// (skip-worktree) or a lowercase tag (assume-unchanged). Returns `(blob, path)` of regular
/// files (links and submodules aside). A record is `TAG MODE BLOB STAGE\tPATH`.
pub fn flagged_files(out: &str) -> Vec<(String, String)> {
    out.split('\0')
        .filter_map(|rec| {
            let (meta, path) = rec.split_once('\t')?;
            let mut f = meta.split(' ');
            let tag = f.next()?.chars().next()?;
            let mode = f.next()?;
            let blob = f.next()?;
            let flagged = tag == 'S' || tag.is_ascii_lowercase();
            (flagged && mode.starts_with("100")).then(|| (blob.to_string(), path.to_string()))
        })
        .collect()
}

/// One file of `git diff --numstat -z`: lines added and deleted (`None` for a binary file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    pub path: String,
    pub insertions: Option<u32>,
    pub deletions: Option<u32>,
}

/// `git diff --numstat -z --no-renames`: `ADDED\tDELETED\tPATH\0` per file (`-` for binary).
pub fn numstat(out: &str) -> Vec<FileStat> {
    out.split('\0')
        .filter(|r| !r.is_empty())
        .filter_map(|r| {
            let mut f = r.splitn(3, '\t');
            let (a, d, path) = (f.next()?, f.next()?, f.next()?);
            Some(FileStat {
                path: path.trim_start_matches('\n').to_string(),
                insertions: a.trim().parse().ok(),
                deletions: d.trim().parse().ok(),
            })
        })
        .collect()
}

/// `git merge-tree --write-tree --name-only --no-messages -z` with conflicts: the tree id, then
/// each conflicted path, NUL-terminated.
pub fn merge_tree_conflicts(out: &str) -> Vec<String> {
    let mut paths: Vec<String> = out
        .split('\0')
        .skip(1)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    paths.dedup();
    paths
}

/// A branch tip from `for-each-ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub commit: String,
    pub time: i64,
    pub subject: String,
}

pub fn branch_tips(out: &str) -> std::collections::HashMap<String, Tip> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, '\0');
            let name = f.next()?.to_string();
            let commit = f.next()?.to_string();
            let time = f.next()?.parse().unwrap_or(0);
            let subject = f.next().unwrap_or("").to_string();
            Some((
                name,
                Tip {
                    commit,
                    time,
                    subject,
                },
            ))
        })
        .collect()
}

/// Whether an index file (`bytes`, all of it) flags any entry skip-worktree or
/// assume-unchanged, read without git: `Some(false)` only when the whole file parses as an index
/// of versions 2 to 4 that stands alone, each entry and extension fitting exactly up to the
/// trailing hash. `None` when it cannot tell: a split index (its entries are in another file),
/// a sparse one, an unknown version, or anything that does not add up.
pub fn index_has_flags(bytes: &[u8]) -> Option<bool> {
    let header = bytes.get(..12)?;
    if &header[..4] != b"DIRC" {
        return None;
    }
    let version = u32::from_be_bytes(header[4..8].try_into().ok()?);
    let count = u32::from_be_bytes(header[8..12].try_into().ok()?);
    if !(2..=4).contains(&version) {
        return None;
    }
    // SHA-1 or SHA-256: the repository's format is not in the file, but a walk with the wrong
    // length does not end on the trailer. Both ending there is not trusted.
    let walks: Vec<bool> = [20, 32]
        .into_iter()
        .filter_map(|hash| index_walk(bytes, version, count, hash))
        .collect();
    match walks.as_slice() {
        [flagged] => Some(*flagged),
        _ => None,
    }
}

/// Walks `count` entries and the extensions with `hash`-byte object ids: whether an entry is
/// flagged, or `None` when the walk does not end exactly at the trailing hash.
fn index_walk(bytes: &[u8], version: u32, count: u32, hash: usize) -> Option<bool> {
    const ASSUME_VALID: u16 = 0x8000;
    const EXTENDED: u16 = 0x4000;
    const SKIP_WORKTREE: u16 = 0x4000;
    let end = bytes.len().checked_sub(hash)?;
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let mut flagged = false;
    let mut pos = 12;
    for _ in 0..count {
        let flags_at = pos + 40 + hash;
        let flags = u16_at(flags_at)?;
        let mut name_at = flags_at + 2;
        if flags & EXTENDED != 0 {
            if version < 3 {
                return None;
            }
            flagged |= u16_at(name_at)? & SKIP_WORKTREE != 0;
            name_at += 2;
        }
        flagged |= flags & ASSUME_VALID != 0;
        let rest = bytes.get(name_at..end)?;
        pos = if version == 4 {
            // A varint (bytes to drop from the previous path), then the rest of the path.
            let varint = rest.iter().position(|b| b & 0x80 == 0)? + 1;
            let nul = rest.get(varint..)?.iter().position(|b| *b == 0)?;
            name_at + varint + nul + 1
        } else {
            let nul = rest.iter().position(|b| *b == 0)?;
            let len = usize::from(flags & 0x0fff);
            if len != 0x0fff && len != nul {
                return None;
            }
            // NUL-padded to a multiple of 8 from the entry's start, at least one NUL.
            let size = (name_at - pos + nul + 8) & !7;
            pos + size
        };
    }
    while pos < end {
        let sig = bytes.get(pos..pos + 4)?;
        let size = u32::from_be_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?);
        if sig == b"link" || sig == b"sdir" {
            return None;
        }
        pos = pos
            .checked_add(8)?
            .checked_add(usize::try_from(size).ok()?)?;
    }
    (pos == end).then_some(flagged)
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
    fn numstat_text_and_binary_and_odd_names() {
        let out = "3\t1\tsrc/a.rs\0-\t-\timg.png\x0010\t0\tdir/with\ttab.txt\0";
        let stats = numstat(out);
        assert_eq!(stats.len(), 3);
        assert_eq!(
            stats[0],
            FileStat {
                path: "src/a.rs".into(),
                insertions: Some(3),
                deletions: Some(1)
            }
        );
        assert_eq!(stats[1].insertions, None);
        assert_eq!(stats[2].path, "dir/with\ttab.txt");
    }

    #[test]
    fn merge_tree_conflicted_paths() {
        assert_eq!(
            merge_tree_conflicts("abc123\0src/x.rs\0src/y.rs\0"),
            vec!["src/x.rs", "src/y.rs"]
        );
        assert!(merge_tree_conflicts("abc123\0").is_empty());
    }

    #[test]
    fn branch_tips_parse() {
        let tips =
            branch_tips("main\0aaa\x001700000000\0Initial\nfeat/x\0bbb\x001700000100\0Add: a, b\n");
        assert_eq!(
            tips["feat/x"],
            Tip {
                commit: "bbb".into(),
                time: 1_700_000_100,
                subject: "Add: a, b".into()
            }
        );
    }

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
    fn flagged_files_are_skip_worktree_and_assume_unchanged() {
        let out = "S 100644 aaa 0\ta\0h 100644 bbb 0\tb\0H 100644 ccc 0\tc\0\
                   s 100755 ddd 0\tdir/d e\0S 160000 eee 0\tsub\0h 120000 fff 0\tlink\0";
        assert_eq!(
            flagged_files(out),
            vec![
                ("aaa".to_string(), "a".to_string()),
                ("bbb".to_string(), "b".to_string()),
                ("ddd".to_string(), "dir/d e".to_string()),
            ]
        );
    }

    #[test]
    fn status_paths_lists_a_file_both_deleted_and_untracked_once() {
        let out = "1 D. N... 100644 000000 000000 aaa 000 README.md\0? README.md\0? other\0";
        assert_eq!(status_paths(out), vec!["README.md", "other"]);
    }

    #[test]
    fn status_paths_clean() {
        assert!(status_paths("").is_empty());
    }
}
