//! git, through its CLI. Machine formats only (`-z`, porcelain, `--verify`), decisions on exit
//! codes, never on message text (which is translated). Every call names the repository with
//! `-C`, so the caller's cwd and git's discovery variables never pick the wrong one.

pub mod integrate;
pub mod parse;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exec::{Cmd, CmdError};
pub use parse::WorktreeEntry;

/// A repository, named by any of its worktrees (the main checkout for a layer's `repo`).
#[derive(Debug, Clone)]
pub struct Repo {
    pub dir: PathBuf,
}

/// A `git` command for `dir`, with the environment pinned: no prompts, untranslated messages,
/// no discovery variables from a surrounding hook, no automatic gc in the middle of a create.
pub fn git(dir: &Path) -> Cmd {
    Cmd::new("git")
        .without_git_env()
        // No opportunistic index refresh: `git status` in an agent's worktree would take
        // `index.lock` for it, and the agent's own `git add` or `git commit` at that moment
        // would fail. The locks a change needs are taken all the same.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_MESSAGES", "C")
        .env_remove("LC_ALL")
        .arg("-C")
        .arg(dir)
        .args(["-c", "gc.auto=0", "-c", "core.quotePath=false"])
}

/// Whether `dir` is the top of a git checkout. A filesystem check rather than a git call, so
/// that loading the config (which `ps` does) spawns no process.
pub fn is_checkout(dir: &Path) -> bool {
    dir.join(".git").exists()
}

/// Whether branch `branch` exists in the repository of `worktree`, read from files (loose
/// ref, then `packed-refs`) so that `ps` spawns no git. `None` when it cannot tell (not a
/// linked worktree, or a reftable repository).
pub fn branch_exists_fs(worktree: &Path, branch: &str) -> Option<bool> {
    let dotgit = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let gitdir = PathBuf::from(dotgit.strip_prefix("gitdir:")?.trim());
    let common = std::fs::read_to_string(gitdir.join("commondir")).ok()?;
    let common = gitdir.join(common.trim());
    if common.join("reftable").exists() {
        return None;
    }
    let refname = format!("refs/heads/{branch}");
    if common.join(&refname).is_file() {
        return Some(true);
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).unwrap_or_default();
    Some(
        packed
            .lines()
            .any(|l| l.split_once(' ').is_some_and(|(_, r)| r == refname)),
    )
}

/// Whether this git predicts merge conflicts (`merge-tree --write-tree`, git 2.38).
pub fn has_merge_tree() -> bool {
    predicts_merges(version_text().as_deref())
}

/// [`has_merge_tree`] for the output of `git --version`.
pub fn predicts_merges(version_text: Option<&str>) -> bool {
    version_text
        .and_then(parse::version)
        .is_some_and(|v| v >= (2, 38))
}

/// What `git --version` prints, or `None` when git does not run.
pub fn version_text() -> Option<String> {
    Cmd::new("git")
        .arg("--version")
        .run()
        .ok()
        .map(|o| o.stdout)
}

/// The git dir of the checkout at `dir` (its `.git` folder, or where its `.git` file points),
/// read from files: no process.
pub fn git_dir_fs(dir: &Path) -> Option<PathBuf> {
    let dotgit = dir.join(".git");
    if dotgit.is_dir() {
        return Some(dotgit);
    }
    let text = std::fs::read_to_string(&dotgit).ok()?;
    Some(dir.join(text.strip_prefix("gitdir:")?.trim()))
}

/// The common dir shared by every worktree of the repository whose git dir is `git_dir`.
pub fn common_dir_fs(git_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.to_path_buf(),
    }
}

/// A hash of the ignore rules `git status` reads outside a worktree: the repository's
/// `info/exclude` (under `common`, its common dir) and the user's excludes file.
pub fn excludes_hash(common: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(common.join("info/exclude")).ok().hash(&mut h);
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .and_then(|d| std::fs::read(d.join("git/ignore")).ok())
        .hash(&mut h);
    h.finish()
}

/// The trailing checksum of the index of the checkout at `dir` (git's hash of all of its
/// content), with its length, as hex: two indexes with the same key hold the same entries and
/// flags. `None` when there is no index or it was written without a hash (`index.skipHash`).
/// Reads only the end of the file.
pub fn index_checksum(dir: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(git_dir_fs(dir)?.join("index")).ok()?;
    let len = file.metadata().ok()?.len();
    let tail = len.min(INDEX_TAIL as u64);
    file.seek(SeekFrom::Start(len - tail)).ok()?;
    let mut buf = Vec::new();
    file.take(tail).read_to_end(&mut buf).ok()?;
    index_key(len, &buf)
}

/// The whole index of the checkout at `dir`, with its key (see [`index_checksum`]), read at
/// once: the key is that of these bytes, whatever git writes meanwhile (it replaces the file,
/// never changes it in place).
pub fn index_bytes(dir: &Path) -> Option<(Vec<u8>, String)> {
    let bytes = std::fs::read(git_dir_fs(dir)?.join("index")).ok()?;
    let len = u64::try_from(bytes.len()).ok()?;
    let tail = bytes.len() - bytes.len().min(INDEX_TAIL);
    let key = index_key(len, bytes.get(tail..)?)?;
    Some((bytes, key))
}

/// The last bytes of an index: a SHA-256 or, after 12 bytes of content, a SHA-1.
const INDEX_TAIL: usize = 32;

fn index_key(len: u64, tail: &[u8]) -> Option<String> {
    if tail.len() < 20 || tail[tail.len() - 20..].iter().all(|b| *b == 0) {
        return None;
    }
    let hex: String = tail.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{len}:{hex}"))
}

/// The oldest git grove works with: `worktree list -z` arrived in 2.36.
pub const MIN_VERSION: (u32, u32) = (2, 36);

/// Fails with a clear message when git is missing or older than [`MIN_VERSION`].
pub fn require_version() -> Result<()> {
    let out = Cmd::new("git").arg("--version").run().map_err(|e| {
        crate::error::Fail::new(format!("git is not usable: {e}"))
            .hint("install git 2.36 or newer and make sure it is on PATH")
    })?;
    let version = parse::version(&out.stdout);
    if version.is_none_or(|v| v < MIN_VERSION) {
        return Err(crate::error::Fail::new(format!(
            "grove needs git {}.{} or newer; found `{}`",
            MIN_VERSION.0,
            MIN_VERSION.1,
            out.stdout.trim()
        ))
        .hint("upgrade git")
        .into());
    }
    Ok(())
}

/// `git check-ref-format --branch NAME`: git's own rules for a branch name.
pub fn is_valid_branch_name(name: &str) -> Result<bool> {
    let tmp = std::env::temp_dir();
    Ok(git(&tmp)
        .args(["check-ref-format", "--branch", name])
        .check()?)
}

impl Repo {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn cmd(&self) -> Cmd {
        git(&self.dir)
    }

    pub(crate) fn stdout(&self, args: &[&str]) -> Result<String, CmdError> {
        Ok(self.cmd().args(args).run()?.stdout)
    }

    /// The commit `rev` names, or `None`. Accepts what git accepts (branch, tag, remote-tracking
    /// branch, commit) and, failing that, a branch that exists only on one remote (`feat/ui` for
    /// `origin/feat/ui`), as `git switch` would guess.
    pub fn resolve_commit(&self, rev: &str) -> Result<Option<String>> {
        if rev.starts_with('-') || rev.is_empty() {
            return Ok(None);
        }
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .cmd()
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &spec,
            ])
            .output()?;
        if out.status.success() {
            return Ok(Some(out.stdout.trim().to_string()));
        }
        let remotes = self.stdout(&[
            "for-each-ref",
            "--format=%(refname)%00%(objectname)",
            "refs/remotes/",
        ])?;
        let suffix = format!("/{rev}");
        let hits: Vec<&str> = remotes
            .lines()
            .filter_map(|l| l.split_once('\0'))
            .filter(|(name, _)| {
                name.strip_prefix("refs/remotes/")
                    .and_then(|r| r.split_once('/'))
                    .is_some_and(|(_, branch)| format!("/{branch}") == suffix)
            })
            .map(|(_, sha)| sha)
            .collect();
        Ok(match hits.as_slice() {
            [one] => Some((*one).to_string()),
            _ => None,
        })
    }

    /// The full ref `rev` names (`refs/heads/main`, `refs/remotes/origin/x`, `refs/tags/v1`),
    /// or `None` for a commit id; guessed remote branches as in [`Repo::resolve_commit`].
    pub fn full_ref(&self, rev: &str) -> Result<Option<String>> {
        let out = self
            .cmd()
            .args(["rev-parse", "--symbolic-full-name", "--end-of-options", rev])
            .output()?;
        // rev-parse echoes `--end-of-options` on a line of its own before the name.
        if let Some(name) = out
            .stdout
            .lines()
            .find(|l| l.starts_with("refs/"))
            .filter(|_| out.status.success())
        {
            return Ok(Some(name.to_string()));
        }
        let remotes = self.stdout(&["for-each-ref", "--format=%(refname)", "refs/remotes/"])?;
        let hits: Vec<&str> = remotes
            .lines()
            .filter(|r| {
                r.strip_prefix("refs/remotes/")
                    .and_then(|x| x.split_once('/'))
                    .is_some_and(|(_, b)| b == rev)
            })
            .collect();
        Ok(match hits.as_slice() {
            [one] => Some((*one).to_string()),
            _ => None,
        })
    }

    /// Tip of local branch `name`, or `None` when there is no such branch.
    pub fn branch_tip(&self, name: &str) -> Result<Option<String>> {
        let refname = format!("refs/heads/{name}");
        let out = self
            .cmd()
            .args(["rev-parse", "--verify", "--quiet", &refname])
            .output()?;
        Ok(out.status.success().then(|| out.stdout.trim().to_string()))
    }

    /// The branch new envs start from when no base is configured: `origin/HEAD`'s branch, else
    /// the branch checked out in the main checkout, else `main`.
    pub fn default_branch(&self) -> Result<String> {
        for args in [
            [
                "symbolic-ref",
                "--quiet",
                "--short",
                "refs/remotes/origin/HEAD",
            ],
            ["symbolic-ref", "--quiet", "--short", "HEAD"],
        ] {
            let out = self.cmd().args(args).output()?;
            if out.status.success() {
                let name = out.stdout.trim();
                return Ok(name.strip_prefix("origin/").unwrap_or(name).to_string());
            }
        }
        Ok("main".into())
    }

    /// Serializes worktree additions and removals in this repository across grove processes.
    /// git picks a worktree's admin folder name (`.git/worktrees/<name>`) by scanning for a
    /// free one, and two `git worktree add` running at once can pick the same name and fail
    /// ("failed to read .git/worktrees/front1/commondir"); `prune` can also drop an admin
    /// folder that a parallel `add` is still writing.
    fn worktree_lock(&self) -> Result<std::fs::File> {
        self.hold_worktree_lock(false)
    }

    /// [`Repo::worktree_lock`], shared when `shared` (readers of the worktree list). Says so
    /// after a second of waiting for another grove (a checkout of a large tree takes a while),
    /// and stops waiting on Ctrl-C.
    fn hold_worktree_lock(&self, shared: bool) -> Result<std::fs::File> {
        let file = self.worktree_lock_file()?;
        let quiet_until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut said = false;
        loop {
            let now = if shared {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match now {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(anyhow::Error::new(e).context("locking the repository's worktrees"));
                }
            }
            if !said && std::time::Instant::now() >= quiet_until {
                crate::ui::info(format!(
                    "waiting for another grove using the worktrees of {}",
                    self.dir.display()
                ));
                said = true;
            }
            if let Some(sig) = crate::interrupt::received() {
                return Err(
                    anyhow::Error::new(crate::provision::Interrupted(sig)).context(format!(
                        "stopped waiting for another grove using the worktrees of {}",
                        self.dir.display()
                    )),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn worktree_lock_file(&self) -> Result<std::fs::File> {
        let home = crate::paths::grove_home()?;
        let dir = home.join("locks");
        fs_err::create_dir_all(&dir)?;
        let key = crate::paths::fnv1a(self.dir.as_os_str().as_encoded_bytes());
        let file = fs_err::File::create(dir.join(format!("worktrees-{key:016x}.lock")))?;
        Ok(file.into_parts().0)
    }

    /// The repository's worktrees, read under a shared hold of [`Repo::worktree_lock`]: git
    /// dies ("failed to read .git/worktrees/NAME/commondir") on the admin folder of a worktree
    /// another grove is adding at that moment.
    pub fn worktrees(&self) -> Result<Vec<WorktreeEntry>> {
        let lock = self.hold_worktree_lock(true)?;
        let out = self.stdout(&["worktree", "list", "--porcelain", "-z"])?;
        drop(lock);
        Ok(parse::worktree_list(&out))
    }

    /// Creates branch `name` at `sha` unless it exists (compare-and-create on the ref), with
    /// `marker` as its first reflog message: returns whether this call created it.
    pub fn create_branch(&self, name: &str, sha: &str, marker: &str) -> Result<bool> {
        let refname = format!("refs/heads/{name}");
        // The empty old value means "must not exist yet". The reflog is created even where
        // `core.logAllRefUpdates` is off: it is how grove later knows the branch is its own.
        Ok(self
            .cmd()
            .args(["update-ref", "--create-reflog", "--no-deref", "-m", marker])
            .args([&refname, sha, ""])
            .check()?)
    }

    /// The message of the oldest entry of branch `name`'s reflog: what made it. `None` when
    /// the branch or its reflog does not exist.
    pub fn branch_origin(&self, name: &str) -> Result<Option<String>> {
        Ok(self.branch_log(name)?.and_then(|l| l.last().cloned()))
    }

    /// Whether a commit was ever made on branch `name`, by its reflog: an entry of `git
    /// commit` (amend and merge resolutions included), `cherry-pick`, `revert` or `am`. Moves
    /// that only bring others' commits (a fast-forward `merge` or `pull`, a `reset`, a
    /// `rebase` of nothing, grove's own entries) do not count. `None` without a reflog.
    pub fn branch_made_commits(&self, name: &str) -> Result<Option<bool>> {
        // Read from the reflog file where there is one (no git process: prune asks this of
        // every merged branch); `git reflog` for the other ref stores.
        let file = git_dir_fs(&self.dir)
            .map(|g| common_dir_fs(&g).join("logs/refs/heads").join(name))
            .and_then(|f| std::fs::read_to_string(f).ok());
        let log = match file {
            // `OLD NEW NAME <EMAIL> TIME TZ\tMESSAGE`, oldest first.
            Some(text) => Some(
                text.lines()
                    .filter_map(|l| l.split_once('\t').map(|(_, m)| m.to_string()))
                    .collect::<Vec<_>>(),
            )
            .filter(|l| !l.is_empty()),
            None => self.branch_log(name)?,
        };
        Ok(log.map(|log| {
            log.iter().any(|m| {
                ["commit", "cherry-pick", "revert", "am:"]
                    .iter()
                    .any(|p| m.starts_with(p))
            })
        }))
    }

    /// The messages of branch `name`'s reflog, newest first; `None` when the branch or its
    /// reflog does not exist.
    fn branch_log(&self, name: &str) -> Result<Option<Vec<String>>> {
        let refname = format!("refs/heads/{name}");
        let out = self
            .cmd()
            .args([
                "reflog",
                "show",
                "--format=%gs",
                "--end-of-options",
                &refname,
                "--",
            ])
            .output()?;
        if !out.status.success() || out.stdout.is_empty() {
            return Ok(None);
        }
        Ok(Some(out.stdout.lines().map(str::to_string).collect()))
    }

    /// Commits reachable from `tips` that no ref of the repository holds once `dropped` (full
    /// ref names) are gone, newest first as `%h %s`; at most `max`. The main checkout's HEAD
    /// counts as a holder, other worktrees' HEADs do not: a commit only a worktree's HEAD holds
    /// is lost when that worktree goes.
    pub fn unreferenced(
        &self,
        tips: &[&str],
        dropped: &[String],
        max: usize,
    ) -> Result<Vec<String>> {
        if tips.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = self
            .cmd()
            .args(["log", "--format=%h %s", &format!("--max-count={max}")])
            .args(tips)
            .arg("--not");
        for d in dropped {
            cmd = cmd.arg(format!("--exclude={d}"));
        }
        let out = cmd.args(["--single-worktree", "--all", "--"]).run()?;
        Ok(out.stdout.lines().map(str::to_string).collect())
    }

    /// Adds a worktree at `path`: on a new branch `new_branch` starting at `start`, or on the
    /// existing branch `start` when `new_branch` is `None`.
    ///
    /// The new index carries git's untracked cache (unless the repository's config turns it
    /// off): grove's `git status` reads it but never writes an index (`GIT_OPTIONAL_LOCKS`),
    /// so it is made here, before anyone works in the worktree, and kept up to date by the
    /// git commands run there (the agent's own `git status` among them).
    pub fn worktree_add(&self, path: &Path, new_branch: Option<&str>, start: &str) -> Result<()> {
        let lock = self.worktree_lock()?;
        let mut cmd = self.cmd().args(["worktree", "add", "--quiet"]);
        if let Some(branch) = new_branch {
            cmd = cmd.args(["--no-track", "-b", branch]);
        }
        cmd.arg("--end-of-options")
            .arg(path)
            .arg(start)
            .run()
            .with_context(|| {
                format!(
                    "cannot add worktree {} in {}",
                    path.display(),
                    self.dir.display()
                )
            })?;
        drop(lock);
        self.refresh_index(path);
        Ok(())
    }

    /// One `git status` that may write the index of `worktree`, for a worktree nobody works
    /// in yet (grove's other git commands never write an index for their own sake): a
    /// checkout writes its index in the same moment as the files, which leaves them "racily
    /// clean" (each re-read by every status until an index is written later); this adds the
    /// untracked cache too, or makes it again for the worktree's new place after a move (git
    /// ties it to the path, and warns on every `git status` until then). Best effort.
    pub fn refresh_index(&self, worktree: &Path) {
        let mut status = git(worktree).env("GIT_OPTIONAL_LOCKS", "1");
        if self.untracked_cache_allowed() {
            status = status.args(["-c", "core.untrackedCache=true"]);
        }
        let _ = status.args(["status", "--porcelain", "-z"]).run();
    }

    /// Whether the repository's config leaves `core.untrackedCache` unset or true (as
    /// `review` decides it).
    fn untracked_cache_allowed(&self) -> bool {
        match self
            .cmd()
            .args(["config", "--get", "core.untrackedCache"])
            .run()
        {
            Ok(out) => ["true", "yes", "on", "1", ""]
                .contains(&out.stdout.trim().to_ascii_lowercase().as_str()),
            // Exit 1: not set.
            Err(_) => true,
        }
    }

    /// Moves the worktree at `from` to `to` (a path that does not exist yet).
    pub fn worktree_move(&self, from: &Path, to: &Path) -> Result<()> {
        let _lock = self.worktree_lock()?;
        self.cmd()
            .args(["worktree", "move", "--end-of-options"])
            .arg(from)
            .arg(to)
            .run()
            .with_context(|| {
                format!(
                    "cannot move worktree {} to {}",
                    from.display(),
                    to.display()
                )
            })?;
        Ok(())
    }

    /// Checks out branch `name` in `worktree`, throwing away what differs from it there:
    /// only for a worktree nobody has worked in (a pool entry grove prepared). Files that
    /// are the same in both commits are not rewritten.
    pub fn switch_fresh(&self, worktree: &Path, name: &str) -> Result<()> {
        // `switch` looks at every worktree's HEAD (is `name` checked out elsewhere?), and dies
        // on one being added: see [`Repo::worktrees`].
        let _lock = self.hold_worktree_lock(true)?;
        git(worktree)
            .args([
                "switch",
                "--quiet",
                "--discard-changes",
                "--end-of-options",
                name,
            ])
            .run()
            .with_context(|| format!("cannot switch {} to `{name}`", worktree.display()))?;
        Ok(())
    }

    /// Blob ids of `paths` at `commit` (sorted `mode blob path` lines, empty for none): a
    /// fingerprint of the files that decide whether `prepare` must run again.
    pub fn blob_ids(&self, commit: &str, paths: &[String]) -> Result<String> {
        if paths.is_empty() {
            return Ok(String::new());
        }
        let out = self
            .cmd()
            .args(["ls-tree", "--full-tree", "--end-of-options", commit, "--"])
            .args(paths)
            .run()?;
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort_unstable();
        Ok(lines.join("\n"))
    }

    /// Removes the worktree at `path`. `force` also discards its changes (and unlocks it).
    pub fn worktree_remove(&self, path: &Path, force: bool) -> Result<()> {
        let _lock = self.worktree_lock()?;
        let mut cmd = self.cmd().args(["worktree", "remove"]);
        if force {
            cmd = cmd.args(["--force", "--force"]);
        }
        cmd.arg("--end-of-options").arg(path).run()?;
        Ok(())
    }

    pub fn worktree_prune(&self) -> Result<()> {
        let _lock = self.worktree_lock()?;
        self.stdout(&["worktree", "prune"])?;
        Ok(())
    }

    /// Files with uncommitted changes, plus untracked files git does not ignore, plus files
    /// whose edits git was told not to see (`update-index --skip-worktree` or
    /// `--assume-unchanged`): those are work too, and `worktree remove` would drop them.
    pub fn dirty_paths(worktree: &Path) -> Result<Vec<String>> {
        let out = git(worktree)
            .args(["status", "--porcelain=v2", "-z", "--untracked-files=all"])
            .run()?;
        let mut paths = parse::status_paths(&out.stdout);
        for p in Self::hidden_edits(worktree, &Self::flagged_files(worktree)?)? {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        Ok(paths)
    }

    /// [`Repo::dirty_paths`] as `review` asks it, of every worktree each time. Untracked
    /// files are looked for with git's untracked cache (an index extension: the folders whose
    /// listing and ignore files did not change since are not read again), forced on with
    /// `untracked_cache` unless the user turned it off. It serves git's default mode, the one
    /// agents' own `git status` runs in, where an untracked folder comes back as `dir/`: those
    /// are then listed file by file (`ls-files --others`, same ignore rules), so the answer is
    /// the one `--untracked-files=all` gives, in the same order.
    pub fn dirty_paths_cached(
        worktree: &Path,
        untracked_cache: bool,
        flagged: impl FnOnce(&Path) -> Result<Vec<(String, String)>>,
    ) -> Result<Vec<String>> {
        let mut status = git(worktree);
        if untracked_cache {
            status = status.args(["-c", "core.untrackedCache=true"]);
        }
        let out = status
            .args(["status", "--porcelain=v2", "-z", "--untracked-files=normal"])
            .run()?;
        let mut paths = parse::status_paths(&out.stdout);
        let folders: Vec<&String> = paths.iter().filter(|p| p.ends_with('/')).collect();
        if !folders.is_empty() {
            let listed = git(worktree)
                .env("GIT_LITERAL_PATHSPECS", "1")
                .args(["ls-files", "-z", "--others", "--exclude-standard", "--"])
                .args(&folders)
                .run()?;
            let mut inside: Vec<&str> = listed
                .stdout
                .split('\0')
                .filter(|p| !p.is_empty())
                .collect();
            inside.sort_unstable();
            paths = paths
                .iter()
                .flat_map(|p| match p.strip_suffix('/') {
                    None => vec![p.clone()],
                    Some(_) => inside
                        .iter()
                        .filter(|f| f.starts_with(p.as_str()))
                        .map(|f| (*f).to_string())
                        .collect(),
                })
                .collect();
        }
        for p in Self::hidden_edits(worktree, &flagged(worktree)?)? {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        Ok(paths)
    }

    /// `(blob, path)` of the files of `worktree`'s index flagged skip-worktree or
    /// assume-unchanged: a function of the index alone.
    pub fn flagged_files(worktree: &Path) -> Result<Vec<(String, String)>> {
        let out = git(worktree).args(["ls-files", "-v", "-s", "-z"]).run()?;
        Ok(parse::flagged_files(&out.stdout))
    }

    /// Of the `flagged` files, those whose content on disk differs from the index. A flagged
    /// file that is absent is not work (sparse checkouts leave them out).
    fn hidden_edits(worktree: &Path, flagged: &[(String, String)]) -> Result<Vec<String>> {
        let present: Vec<&(String, String)> = flagged
            .iter()
            .filter(|(_, path)| {
                worktree
                    .join(path)
                    .symlink_metadata()
                    .is_ok_and(|m| !m.is_dir())
            })
            .collect();
        if present.is_empty() {
            return Ok(Vec::new());
        }
        let paths: String = present.iter().map(|(_, p)| format!("{p}\n")).collect();
        // Hashed as git would store them (clean filters, line endings by their attributes).
        let hashes = git(worktree)
            .args(["hash-object", "--stdin-paths"])
            .stdin_bytes(paths)
            .run()?;
        Ok(present
            .iter()
            .zip(hashes.stdout.lines())
            .filter(|((blob, _), now)| blob != now)
            .map(|((_, path), _)| path.clone())
            .collect())
    }

    /// The commit checked out in `worktree` (its HEAD), or `None` (unborn, or not a worktree).
    pub fn head_of(worktree: &Path) -> Result<Option<String>> {
        let out = git(worktree)
            .args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
            .output()?;
        Ok(out.status.success().then(|| out.stdout.trim().to_string()))
    }

    /// The branch checked out in `worktree` (`None`: detached).
    pub fn branch_of(worktree: &Path) -> Result<Option<String>> {
        let out = git(worktree)
            .args(["symbolic-ref", "--quiet", "--short", "HEAD"])
            .output()?;
        Ok(out.status.success().then(|| out.stdout.trim().to_string()))
    }

    /// Whether `ancestor` is reachable from `descendant`.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        let out = self
            .cmd()
            .args(["merge-base", "--is-ancestor", ancestor, descendant])
            .output()?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(anyhow::anyhow!(
                "git merge-base --is-ancestor {ancestor} {descendant} failed: {}",
                out.stderr.trim()
            )),
        }
    }

    /// `git log --oneline` of the commits in `to` that are not in `from`.
    pub fn log_range(&self, from: &str, to: &str) -> Result<Vec<String>> {
        let range = format!("{from}..{to}");
        let out = self.stdout(&["log", "--format=%h %s", &range, "--"])?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// The commit the upstream of local branch `name` points at, if it has one.
    pub fn upstream_tip(&self, name: &str) -> Result<Option<String>> {
        let refname = format!("refs/heads/{name}");
        let out = self.stdout(&[
            "for-each-ref",
            "--format=%(refname)%00%(upstream)",
            &refname,
        ])?;
        let upstream = out
            .lines()
            .filter_map(|l| l.split_once('\0'))
            .find(|(r, _)| *r == refname)
            .map(|(_, u)| u.to_string())
            .filter(|u| !u.is_empty());
        match upstream {
            Some(u) => self.resolve_commit(&u),
            None => Ok(None),
        }
    }

    /// Deletes branch `name` only while it still points at `expected`: a branch that moved
    /// since we looked (someone committed) is left alone. Returns whether it was deleted.
    pub fn delete_branch_at(&self, name: &str, expected: &str) -> Result<bool> {
        let refname = format!("refs/heads/{name}");
        Ok(self
            .cmd()
            .args(["update-ref", "-d", &refname, expected])
            .check()?)
    }

    /// Whether `path` exists in commit `rev`: a tracked file.
    pub fn tracks(&self, rev: &str, path: &str) -> Result<bool> {
        Ok(self
            .cmd()
            .args(["cat-file", "-e", &format!("{rev}:{path}")])
            .check()?)
    }

    /// Whether git ignores `path` (relative to the worktree `dir`).
    pub fn ignores(worktree: &Path, path: &str) -> Result<bool> {
        Ok(git(worktree)
            .args(["check-ignore", "-q", "--no-index", "--", path])
            .check()?)
    }

    /// Commits only in `right` and only in `left`: `(behind, ahead)` of `right` against `left`.
    pub fn behind_ahead(&self, left: &str, right: &str) -> Result<(u32, u32)> {
        let range = format!("{left}...{right}");
        let out = self.stdout(&["rev-list", "--left-right", "--count", &range, "--"])?;
        let mut it = out.split_whitespace().map(|n| n.parse().unwrap_or(0));
        Ok((it.next().unwrap_or(0), it.next().unwrap_or(0)))
    }

    /// What `to` changed since its merge base with `from` (`git diff from...to`), per file.
    pub fn numstat(&self, from: &str, to: &str) -> Result<Vec<parse::FileStat>> {
        let range = format!("{from}...{to}");
        let out = self.stdout(&["diff", "--numstat", "-z", "--no-renames", &range, "--"])?;
        Ok(parse::numstat(&out))
    }

    /// Files that merging `a` and `b` would leave in conflict, predicted without touching any
    /// worktree (`git merge-tree --write-tree`, git ≥ 2.38). Empty when they merge cleanly.
    pub fn merge_conflicts(&self, a: &str, b: &str) -> Result<Vec<String>> {
        let out = self
            .cmd()
            .args([
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                "-z",
                a,
                b,
            ])
            .output()?;
        match out.status.code() {
            Some(0) => Ok(Vec::new()),
            Some(1) => Ok(parse::merge_tree_conflicts(&out.stdout)),
            _ => Err(anyhow::anyhow!(
                "git merge-tree {a} {b} failed: {}",
                out.stderr.trim()
            )),
        }
    }

    /// Tip, commit time and subject of every local branch, in one call.
    pub fn branch_tips(&self) -> Result<std::collections::HashMap<String, parse::Tip>> {
        let out = self.stdout(&[
            "for-each-ref",
            "--format=%(refname:strip=2)%00%(objectname)%00%(committerdate:unix)%00%(contents:subject)",
            "refs/heads/",
        ])?;
        Ok(parse::branch_tips(&out))
    }

    /// The repository's common git dir (shared by all its worktrees), absolute.
    pub fn common_dir(&self) -> Result<PathBuf> {
        let out = self.stdout(&["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
        Ok(PathBuf::from(out.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository in a temp folder with files of many name lengths (every padding of the
    /// index's entries), added with `config` (`-c` pairs) in force.
    fn repo(init: &[&str], config: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path())
            .arg("init")
            .arg("--quiet")
            .args(init)
            .run()
            .unwrap();
        for i in 0..40 {
            let sub = dir.path().join(format!("d{}", "x".repeat(i % 9)));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("{}{i}.txt", "f".repeat(i))), "x").unwrap();
        }
        // Long names: an index v4 then drops 128 bytes or more of a path, a varint of two
        // bytes (the second one NUL for exactly 128).
        for name in [
            "l".repeat(200),
            "m".repeat(250),
            "q".repeat(128),
            "r".into(),
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let mut add = git(dir.path());
        for c in config {
            add = add.args(["-c", c]);
        }
        add.args(["add", "--all"]).run().unwrap();
        dir
    }

    fn update_index(dir: &Path, args: &[&str]) {
        git(dir).arg("update-index").args(args).run().unwrap();
    }

    /// What the parser says, checked against `git ls-files` whenever it says anything.
    fn flags(dir: &Path) -> Option<bool> {
        let (bytes, _) = index_bytes(dir).unwrap();
        let said = parse::index_has_flags(&bytes);
        if let Some(said) = said {
            let listed = !Repo::flagged_files(dir).unwrap().is_empty();
            assert_eq!(
                said,
                listed,
                "parser and ls-files disagree in {}",
                dir.display()
            );
        }
        said
    }

    #[test]
    fn index_flags_read_like_git_lists_them() {
        for (init, config) in [
            (&[][..], &[][..]),
            (&[], &["index.version=4"]),
            (&[], &["index.version=3"]),
            (&["--object-format=sha256"][..], &[]),
            (&["--object-format=sha256"], &["index.version=4"]),
        ] {
            let r = repo(init, config);
            let dir = r.path();
            assert_eq!(flags(dir), Some(false), "{init:?} {config:?}");
            update_index(dir, &["--assume-unchanged", "d/0.txt"]);
            assert_eq!(flags(dir), Some(true), "{init:?} {config:?}");
            update_index(dir, &["--no-assume-unchanged", "d/0.txt"]);
            assert_eq!(flags(dir), Some(false), "{init:?} {config:?}");
            update_index(dir, &["--skip-worktree", "dxxxxxxxx/ffffffff8.txt"]);
            assert_eq!(flags(dir), Some(true), "{init:?} {config:?}");
            update_index(dir, &["--no-skip-worktree", "dxxxxxxxx/ffffffff8.txt"]);
            // Intent-to-add is an extended flag too, but not one that hides edits.
            std::fs::write(dir.join("new.txt"), "n").unwrap();
            git(dir)
                .args(["add", "--intent-to-add", "new.txt"])
                .run()
                .unwrap();
            assert_eq!(flags(dir), Some(false), "{init:?} {config:?}");
        }
    }

    #[test]
    fn an_index_it_cannot_read_alone_is_not_guessed() {
        let r = repo(&[], &[]);
        let dir = r.path();
        update_index(dir, &["--split-index"]);
        assert_eq!(flags(dir), None);
        let (bytes, _) = {
            update_index(dir, &["--no-split-index"]);
            index_bytes(dir).unwrap()
        };
        assert_eq!(parse::index_has_flags(&bytes), Some(false));
        for cut in [0, 11, 12, 100, bytes.len() - 21, bytes.len() - 1] {
            assert_eq!(parse::index_has_flags(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[4..8].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(parse::index_has_flags(&bad), None);
        // One entry more than there is.
        let mut bad = bytes;
        let n = u32::from_be_bytes(bad[8..12].try_into().unwrap());
        bad[8..12].copy_from_slice(&(n + 1).to_be_bytes());
        assert_eq!(parse::index_has_flags(&bad), None);
    }

    #[test]
    fn a_sparse_index_is_not_guessed() {
        let r = repo(&[], &[]);
        let dir = r.path();
        git(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "x",
            ])
            .run()
            .unwrap();
        git(dir)
            .args(["sparse-checkout", "set", "--cone", "--sparse-index", "d"])
            .run()
            .unwrap();
        let (bytes, _) = index_bytes(dir).unwrap();
        assert_eq!(parse::index_has_flags(&bytes), None);
    }

    #[test]
    fn the_index_key_changes_with_the_index() {
        let r = repo(&[], &[]);
        let dir = r.path();
        let before = index_checksum(dir).unwrap();
        assert_eq!(index_bytes(dir).unwrap().1, before);
        update_index(dir, &["--assume-unchanged", "d/0.txt"]);
        assert_ne!(index_checksum(dir).unwrap(), before);
        // Written without its hash: no key.
        std::fs::write(dir.join("more.txt"), "m").unwrap();
        git(dir)
            .args(["-c", "index.skipHash=true", "add", "more.txt"])
            .run()
            .unwrap();
        assert_eq!(index_checksum(dir), None);
        assert!(index_bytes(dir).is_none());
    }
}
