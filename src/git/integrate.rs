//! Bringing a branch into its base without a worktree (`merge-tree --write-tree` +
//! `commit-tree`), and telling whether a branch's work is in its base already, however it
//! got there: merged, fast-forwarded, squashed or rebased by a forge.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};

use super::{Repo, parse};

/// How a branch's work is in its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrated {
    /// Its tip is an ancestor of the base (merged, or fast-forwarded).
    Merged,
    /// The base has exactly the branch's tree.
    SameTree,
    /// Merging it into the base would change nothing (squash-merged, or cherry-picked).
    NothingToMerge,
    /// Each of its commits has an equivalent in the base (rebased and merged).
    Rebased,
    /// Its whole diff is one commit of the base (squash-merged, the base moved on since).
    Squashed,
}

impl Integrated {
    pub fn as_str(self) -> &'static str {
        match self {
            Integrated::Merged => "merged",
            Integrated::SameTree => "same tree as the base",
            Integrated::NothingToMerge => "squash-merged (merging it would change nothing)",
            Integrated::Rebased => "rebased and merged (every commit is in the base)",
            Integrated::Squashed => "squash-merged (its diff is a commit of the base)",
        }
    }
}

/// What a would-be merge of two commits gives.
pub enum MergeTree {
    Clean(String),
    Conflicts(Vec<String>),
}

/// Base commits whose patch ids are compared with a branch's diff: enough for weeks of work
/// on a busy base, and a bound on the cost.
const PATCH_ID_DEPTH: &str = "500";

impl Repo {
    /// Merges `theirs` into `ours` in memory (`git merge-tree --write-tree`, git ≥ 2.38),
    /// with `base` as the merge base when given (a replayed commit's parent).
    pub fn merge_tree(&self, ours: &str, theirs: &str, base: Option<&str>) -> Result<MergeTree> {
        let mut cmd = self.cmd().args([
            "merge-tree",
            "--write-tree",
            "--name-only",
            "--no-messages",
            "-z",
        ]);
        if let Some(b) = base {
            cmd = cmd.arg(format!("--merge-base={b}"));
        }
        let out = cmd.args([ours, theirs]).output()?;
        match out.status.code() {
            Some(0) => Ok(MergeTree::Clean(
                out.stdout
                    .split('\0')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            )),
            Some(1) => Ok(MergeTree::Conflicts(parse::merge_tree_conflicts(
                &out.stdout,
            ))),
            _ => Err(anyhow!(
                "git merge-tree {ours} {theirs} failed: {}",
                out.stderr.trim()
            )),
        }
    }

    /// Writes a commit of `tree` with `parents` and `message`; `author` (name, email, raw
    /// date) keeps a replayed commit's authorship.
    pub fn commit_tree(
        &self,
        tree: &str,
        parents: &[&str],
        message: &str,
        author: Option<&(String, String, String)>,
    ) -> Result<String> {
        let mut cmd = self.cmd().args(["commit-tree", tree]);
        for p in parents {
            cmd = cmd.args(["-p", p]);
        }
        if let Some((name, email, date)) = author {
            cmd = cmd
                .env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_EMAIL", email)
                .env("GIT_AUTHOR_DATE", date);
        }
        let out = cmd
            .stdin_bytes(message.as_bytes().to_vec())
            .run()
            .context("writing the landed commit (is git's user.name and user.email set?)")?;
        Ok(out.stdout.trim().to_string())
    }

    /// The tree of commit `rev`.
    pub fn tree_of(&self, rev: &str) -> Result<String> {
        Ok(self
            .stdout(&["rev-parse", "--verify", &format!("{rev}^{{tree}}")])?
            .trim()
            .to_string())
    }

    /// Author (name, email, raw date) and full message of `commit`.
    pub fn commit_meta(&self, commit: &str) -> Result<((String, String, String), String)> {
        let out = self.stdout(&[
            "show",
            "-s",
            "--format=%an%x00%ae%x00%ad%x00%B",
            "--date=raw",
            commit,
        ])?;
        let mut it = out.splitn(4, '\0');
        let mut next = || it.next().unwrap_or("").to_string();
        let author = (next(), next(), next());
        Ok((author, next().trim_end().to_string() + "\n"))
    }

    /// The commits of `tip` not in `base`, oldest first, and whether any is a merge.
    pub fn commits_between(&self, base: &str, tip: &str) -> Result<(Vec<String>, bool)> {
        let range = format!("{base}..{tip}");
        let all = self.stdout(&["rev-list", "--reverse", "--topo-order", &range, "--"])?;
        let merges = self.stdout(&["rev-list", "--merges", "-n1", &range, "--"])?;
        Ok((
            all.lines().map(str::to_string).collect(),
            !merges.trim().is_empty(),
        ))
    }

    /// Whether the branch at `tip` is in `base` already, and how (both commit ids). `None`: it
    /// has work the base lacks, or it could not tell (unrelated histories, a shallow clone),
    /// which counts the same: nothing is deleted on a guess.
    ///
    /// A patch id only finds a candidate: it ignores whitespace and where in a file a hunk
    /// sits, so two different changes can share one. Every verdict is confirmed on content: the
    /// branch merged into the base, or into the base commit the patch id points at, changes
    /// nothing.
    pub fn integrated(&self, base: &str, tip: &str) -> Result<Option<Integrated>> {
        // Commits never change, so an answer holds for the life of the process: `prune` asks
        // it of every layer, then its destroys ask again.
        type Memo = HashMap<(PathBuf, String, String), Option<Integrated>>;
        static MEMO: Mutex<Option<Memo>> = Mutex::new(None);
        let key = (self.dir.clone(), base.to_string(), tip.to_string());
        if let Some(known) = MEMO
            .lock()
            .ok()
            .and_then(|m| m.as_ref()?.get(&key).copied())
        {
            return Ok(known);
        }
        let answer = self.integrated_uncached(base, tip)?;
        if let Ok(mut m) = MEMO.lock() {
            m.get_or_insert_with(HashMap::new).insert(key, answer);
        }
        Ok(answer)
    }

    fn integrated_uncached(&self, base: &str, tip: &str) -> Result<Option<Integrated>> {
        if tip == base || self.is_ancestor(tip, base)? {
            return Ok(Some(Integrated::Merged));
        }
        let mb = match self.cmd().args(["merge-base", base, tip]).output()? {
            out if out.status.success() => out.stdout.trim().to_string(),
            _ => return Ok(None),
        };
        // Commits that cancel out (a file added, then removed) delivered nothing: no content
        // test can say they were merged, and their history is all there is of them.
        let net = self
            .cmd()
            .args(["diff", "--quiet", "--no-ext-diff", &mb, tip, "--"])
            .output()?;
        if net.status.success() {
            return Ok(None);
        }
        if self.tree_of(tip)? == self.tree_of(base)? {
            return Ok(Some(Integrated::SameTree));
        }
        if self.merges_to_nothing(base, tip)? {
            return Ok(Some(Integrated::NothingToMerge));
        }
        // The base's commits since the fork, newest first, by patch id.
        let log = self
            .cmd()
            .args(["log", "-p", "--no-color", "--no-ext-diff", "--no-merges"])
            .args(["-n", PATCH_ID_DEPTH, &format!("{mb}..{base}"), "--"])
            .run()?;
        let in_base = self.patch_ids(log.stdout.into_bytes())?;
        let find = |id: &str| {
            in_base
                .iter()
                .find(|(p, _)| p == id)
                .map(|(_, c)| c.clone())
        };
        // Rebased: each commit of the branch has an equal in the base; the newest of those
        // must hold the branch's content.
        let own = self
            .cmd()
            .args(["log", "-p", "--no-color", "--no-ext-diff", "--no-merges"])
            .arg(format!("{mb}..{tip}"))
            .arg("--")
            .run()?;
        let own = self.patch_ids(own.stdout.into_bytes())?;
        if !own.is_empty() {
            let matches: Option<Vec<String>> = own.iter().map(|(id, _)| find(id)).collect();
            if let Some(matches) = matches
                && let Some(newest) = in_base.iter().map(|(_, c)| c).find(|c| matches.contains(c))
                && self.merges_to_nothing(newest, tip)?
            {
                return Ok(Some(Integrated::Rebased));
            }
        }
        // Squashed: the branch's whole diff is one commit of the base.
        let diff = self
            .cmd()
            .args(["diff", "--no-color", "--no-ext-diff", &mb, tip])
            .run()?;
        if let Some((id, _)) = self.patch_ids(diff.stdout.into_bytes())?.first()
            && let Some(squash) = find(id)
            && self.merges_to_nothing(&squash, tip)?
        {
            return Ok(Some(Integrated::Squashed));
        }
        Ok(None)
    }

    /// Whether merging `tip` into `into` would leave `into`'s tree as it is. Histories git
    /// cannot merge (unrelated) count as "no".
    fn merges_to_nothing(&self, into: &str, tip: &str) -> Result<bool> {
        Ok(match self.merge_tree(into, tip, None) {
            Ok(MergeTree::Clean(tree)) => tree == self.tree_of(into)?,
            Ok(MergeTree::Conflicts(_)) | Err(_) => false,
        })
    }

    /// `(patch id, commit)` of each patch in `patch` (a `git log -p` or a `git diff`), in
    /// order.
    fn patch_ids(&self, patch: Vec<u8>) -> Result<Vec<(String, String)>> {
        let out = self
            .cmd()
            .args(["patch-id", "--stable"])
            .stdin_bytes(patch)
            .run()?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect())
    }

    /// Whether local branch `name` tracks an upstream that no longer exists (its pull request
    /// was merged and the remote branch deleted, then fetched with `--prune`).
    pub fn upstream_gone(&self, name: &str) -> Result<bool> {
        let refname = format!("refs/heads/{name}");
        let out = self.stdout(&[
            "for-each-ref",
            "--format=%(refname)%00%(upstream)%00%(upstream:track)",
            &refname,
        ])?;
        Ok(out.lines().any(|l| {
            let mut f = l.split('\0');
            f.next() == Some(refname.as_str())
                && f.next().is_some_and(|u| !u.is_empty())
                && f.next() == Some("[gone]")
        }))
    }

    /// The remote and the remote's ref that local branch `name` pushes to (its upstream).
    pub fn push_target(&self, name: &str) -> Result<Option<(String, String)>> {
        let get = |key: String| -> Result<Option<String>> {
            let out = self.cmd().args(["config", "--get", &key]).output()?;
            Ok(out
                .status
                .success()
                .then(|| out.stdout.trim().to_string())
                .filter(|s| !s.is_empty()))
        };
        let remote = get(format!("branch.{name}.remote"))?;
        let merge = get(format!("branch.{name}.merge"))?;
        Ok(remote.zip(merge).filter(|(r, _)| r != "."))
    }

    /// Moves `refname` from `old` to `new` only while it is at `old` (compare and swap).
    pub fn swap_ref(&self, refname: &str, new: &str, old: &str, why: &str) -> Result<Swap> {
        let out = self
            .cmd()
            .args(["update-ref", "-m", why, refname, new, old])
            .output()?;
        if out.status.success() {
            return Ok(Swap::Moved);
        }
        // git says why only in prose: where the ref is now tells a race from a refusal.
        let now = self.resolve_commit(refname)?;
        Ok(if now.as_deref() == Some(old) {
            Swap::Refused(out.stderr.trim().to_string())
        } else {
            Swap::Raced(now)
        })
    }
}

/// How a compare-and-swap of a ref ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Swap {
    Moved,
    /// The ref was not at `old` any more (someone moved or deleted it): where it is now.
    Raced(Option<String>),
    /// The ref is still at `old` and git would not move it (a hook, a lock): git's message.
    Refused(String),
}
