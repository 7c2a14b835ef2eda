//! Bringing a branch into its base without a worktree (`merge-tree --write-tree` +
//! `commit-tree`), and telling whether a branch's work is in its base already, however it
//! got there: merged, fast-forwarded, squashed or rebased by a forge.

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

    /// Whether the branch at `tip` is in `base` already, and how. `None`: it has work the base
    /// lacks (or it could not tell, which counts the same: nothing is deleted on a guess).
    pub fn integrated(&self, base: &str, tip: &str) -> Result<Option<Integrated>> {
        if tip == base || self.is_ancestor(tip, base)? {
            return Ok(Some(Integrated::Merged));
        }
        if self.tree_of(tip)? == self.tree_of(base)? {
            return Ok(Some(Integrated::SameTree));
        }
        if let MergeTree::Clean(tree) = self.merge_tree(base, tip, None)?
            && tree == self.tree_of(base)?
        {
            return Ok(Some(Integrated::NothingToMerge));
        }
        // `git cherry`: `-` marks a commit with an equivalent (same patch id) in the base.
        let cherry = self.stdout(&["cherry", base, tip])?;
        if !cherry.trim().is_empty() && cherry.lines().all(|l| l.starts_with('-')) {
            return Ok(Some(Integrated::Rebased));
        }
        if self.squashed_into(base, tip)? {
            return Ok(Some(Integrated::Squashed));
        }
        Ok(None)
    }

    /// Whether the branch's whole diff (from its merge base) has the patch id of one of the
    /// base's recent commits.
    fn squashed_into(&self, base: &str, tip: &str) -> Result<bool> {
        let mb = self.stdout(&["merge-base", base, tip])?;
        let mb = mb.trim();
        if mb.is_empty() {
            return Ok(false);
        }
        let diff = self
            .cmd()
            .args(["diff", "--no-color", "--no-ext-diff", mb, tip])
            .run()?;
        let Some(id) = self.patch_ids(diff.stdout.into_bytes())?.into_iter().next() else {
            return Ok(false);
        };
        let log = self
            .cmd()
            .args(["log", "-p", "--no-color", "--no-ext-diff", "--no-merges"])
            .args(["-n", PATCH_ID_DEPTH, &format!("{mb}..{base}"), "--"])
            .run()?;
        Ok(self.patch_ids(log.stdout.into_bytes())?.contains(&id))
    }

    fn patch_ids(&self, patch: Vec<u8>) -> Result<Vec<String>> {
        let out = self
            .cmd()
            .args(["patch-id", "--stable"])
            .stdin_bytes(patch)
            .run()?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
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

    /// Moves `refname` from `old` to `new` only while it is at `old` (compare and swap):
    /// returns whether it moved.
    pub fn swap_ref(&self, refname: &str, new: &str, old: &str, why: &str) -> Result<bool> {
        Ok(self
            .cmd()
            .args(["update-ref", "-m", why, refname, new, old])
            .check()?)
    }
}
