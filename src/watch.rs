//! The review watcher: a small process per workspace that watches every env worktree with
//! inotify (less the folders git ignores whole, see [`ignored_dirs`]), so that `grove review`
//! runs `git status` only in the worktrees where something happened since it last looked.
//!
//! Without it, only a look at every tracked file can tell that none was edited in place (git
//! has no file-system monitor daemon on Linux): at 50 envs × 2 layers × 20,000 files that is
//! 2 M `lstat`s per review. With it, a worktree whose counter did not move since the review
//! that ran its `git status` keeps that answer.
//!
//! Correctness rests on one order: a review asks the watcher for the counters *before* it runs
//! `git status`, and the watcher answers only after reading every event the kernel queued
//! before the question (inotify queues an event when the change is made). So an edit that
//! happened before a `git status` ran either is in what that status saw, or moved the counter
//! it is stored with. A folder made while unwatched moved its parent's counter; the watcher
//! adds watches to it before it answers. Lost events (a queue overflow), a watch that could not
//! be added (the `max_user_watches` limit): the worktree is reported unwatched, and reviewed
//! with `git status` as without a watcher.
//!
//! `grove review` starts it (detached, in a session of its own, at the lowest priority) when a
//! workspace has enough worktrees for `git status` to cost ([`MIN_WORKTREES`], or as
//! `GROVE_REVIEW_WATCH` says); it answers on a Unix socket in `$GROVE_HOME/run`, and exits
//! after [`IDLE`] without a question, or when its workspace is gone.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::exec::Cmd;
use crate::workspace::Workspace;

/// The watcher's log folder, among the envs' (`grove doctor` knows it).
pub const LOG_DIR: &str = ".watch";
/// Worktrees from which `grove review` starts a watcher by itself.
pub const MIN_WORKTREES: usize = 16;
/// A watcher nobody asked anything for this long exits.
const IDLE: Duration = Duration::from_secs(600);
/// How long a review waits for the watcher's answer before reviewing without it.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// What the watcher answers: its identity (its pid and start time: a new watcher's counters
/// mean nothing to an old cache) and the counter of each worktree it watches fully.
#[derive(Debug, Serialize, Deserialize)]
pub struct Counters {
    pub id: String,
    pub worktrees: HashMap<PathBuf, u64>,
}

impl Counters {
    /// The key `git status` of `worktree` is remembered under, if it is watched.
    pub fn key(&self, worktree: &Path) -> Option<String> {
        self.worktrees
            .get(worktree)
            .map(|n| format!("{}:{n}", self.id))
    }
}

fn socket_path(home: &Path, ws_key: &str) -> PathBuf {
    home.join("run").join(format!("watch-{ws_key}.sock"))
}

/// Whether `grove review` should use (and start) a watcher for `worktrees` worktrees.
pub fn wanted(worktrees: usize) -> bool {
    match std::env::var("GROVE_REVIEW_WATCH").as_deref() {
        Ok("never") => false,
        Ok("always") => worktrees > 0,
        _ => worktrees >= MIN_WORKTREES,
    }
}

/// The watcher's counters, after it has read every event queued before this question; `None`
/// when no watcher answers (then one is started, for the next review).
pub fn counters(ctx: &Ctx) -> Option<Counters> {
    let path = socket_path(&ctx.home, &ctx.ws.key());
    let ask = || -> Result<Counters> {
        let mut s = UnixStream::connect(&path)?;
        s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        s.write_all(b"counters\n")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    };
    match ask() {
        Ok(c) => Some(c),
        Err(_) => {
            let _ = start(ctx);
            None
        }
    }
}

/// Starts the workspace's watcher, detached and at the lowest CPU priority.
fn start(ctx: &Ctx) -> Result<()> {
    let log = crate::provision::open_log(&ctx.log_dir(LOG_DIR).join("watch.log"))?;
    let exe = std::env::current_exe().context("locating the grove binary")?;
    // It lives on after this review: it must not keep the caller's variables (an agent's API
    // keys); the caller's descriptors it closes itself as it starts (`close_inherited_fds`).
    let mut cmd = Cmd::new("nice")
        .args(["-n", "19"])
        .arg(exe)
        .arg("__watch")
        .arg(&ctx.ws.root)
        .cwd(&ctx.ws.root)
        .env_clear();
    for var in [
        "PATH",
        "HOME",
        "GROVE_HOME",
        "XDG_STATE_HOME",
        "XDG_CONFIG_HOME",
        "LANG",
        "LC_ALL",
    ] {
        if let Some(v) = std::env::var_os(var) {
            cmd = cmd.env(var, v);
        }
    }
    cmd.spawn_logged(&log)?;
    Ok(())
}

struct Watched {
    counter: u64,
    /// Every folder has its watch (those git ignores whole aside), and no event was lost.
    complete: bool,
    /// A walk that could not watch everything (the watch limit) is not tried again before.
    retry_after: Option<Instant>,
    /// The ignore rules outside the worktree ([`crate::git::excludes_hash`]) at the walk:
    /// when they change, folders skipped as ignored may not be any more.
    rules: u64,
}

/// How long a worktree that could not be fully watched waits before another walk.
const RETRY: Duration = Duration::from_secs(60);

struct Watcher {
    inotify: Inotify,
    worktrees: HashMap<PathBuf, Watched>,
    /// Each watch: its worktree and the folder it watches.
    watches: HashMap<WatchDescriptor, (PathBuf, PathBuf)>,
}

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_DONT_FOLLOW
        | AddWatchFlags::IN_ONLYDIR
}

impl Watcher {
    /// Watches `dir` and every folder under it (not a `.git`, nor through a link, nor one of
    /// `ignored`); false when a watch could not be added.
    fn add_tree(&mut self, worktree: &Path, dir: &Path, ignored: &HashSet<PathBuf>) -> bool {
        let mut ok = true;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            if ignored.contains(&d) {
                continue;
            }
            match self.inotify.add_watch(&d, mask()) {
                Ok(wd) => {
                    self.watches.insert(wd, (worktree.to_path_buf(), d.clone()));
                }
                // The worktree itself missing: nothing is watched.
                Err(_) if d == worktree => return false,
                // Gone already: its parent's event moved the counter.
                Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => continue,
                Err(_) => {
                    ok = false;
                    continue;
                }
            }
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name() == ".git" {
                    continue;
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        ok
    }

    /// Watches the worktrees in `now` not watched yet (or not fully), forgets the others.
    fn refresh(&mut self, now: &[PathBuf]) {
        self.worktrees.retain(|w, _| now.contains(w));
        let gone: Vec<WatchDescriptor> = self
            .watches
            .iter()
            .filter(|(_, (w, _))| !now.contains(w))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            let _ = self.inotify.rm_watch(wd);
            self.watches.remove(&wd);
        }
        for w in now {
            let rules = rules_of(w);
            if self.worktrees.get(w).is_some_and(|x| {
                x.rules == rules
                    && (x.complete || x.retry_after.is_some_and(|t| Instant::now() < t))
            }) {
                continue;
            }
            // Watches first, then the counter moves: whatever `git status` runs after this
            // answer sees, and later changes move the counter.
            let complete = !on_network_fs(w) && {
                let ignored = ignored_dirs(w, std::slice::from_ref(w));
                self.add_tree(w, w, &ignored)
            };
            let entry = self.worktrees.entry(w.clone()).or_insert(Watched {
                counter: 0,
                complete,
                retry_after: None,
                rules,
            });
            entry.counter += 1;
            entry.complete = complete;
            entry.retry_after = (!complete).then(|| Instant::now() + RETRY);
            entry.rules = rules;
        }
    }

    /// Reads every queued event, moving the counter of the worktree each one is in.
    fn drain(&mut self) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) if !e.is_empty() => e,
                _ => return,
            };
            // The folders made since, by worktree: walked once the batch is read, with one
            // question to git per worktree about which of them it ignores.
            let mut made: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: nothing can be vouched for until watched again.
                    for w in self.worktrees.values_mut() {
                        w.counter += 1;
                        w.complete = false;
                    }
                    continue;
                }
                let Some((worktree, dir)) = self.watches.get(&ev.wd).cloned() else {
                    continue;
                };
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    self.watches.remove(&ev.wd);
                }
                if let Some(w) = self.worktrees.get_mut(&worktree) {
                    w.counter += 1;
                    // The worktree's own folder went (destroyed, moved): whatever is made at
                    // its path later is watched by nobody until walked again.
                    let root_gone = dir == worktree
                        && ev.mask.intersects(
                            AddWatchFlags::IN_DELETE_SELF
                                | AddWatchFlags::IN_MOVE_SELF
                                | AddWatchFlags::IN_IGNORED,
                        );
                    if root_gone {
                        w.complete = false;
                        w.retry_after = None;
                    }
                }
                // A `.gitignore` changed: folders skipped as ignored may not be any more, and
                // the next question walks the worktree again.
                if ev.name.as_deref().is_some_and(|n| n == ".gitignore")
                    && let Some(w) = self.worktrees.get_mut(&worktree)
                {
                    w.complete = false;
                    w.retry_after = None;
                }
                let new_dir = ev.mask.contains(AddWatchFlags::IN_ISDIR)
                    && ev
                        .mask
                        .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
                if new_dir && let Some(name) = ev.name.filter(|n| n != ".git") {
                    made.entry(worktree).or_default().push(dir.join(name));
                }
            }
            for (worktree, dirs) in made {
                let ignored = ignored_dirs(&worktree, &dirs);
                let mut ok = true;
                for d in &dirs {
                    ok &= self.add_tree(&worktree, d, &ignored);
                }
                if !ok && let Some(w) = self.worktrees.get_mut(&worktree) {
                    w.complete = false;
                }
            }
        }
    }

    fn counters(&self, id: &str) -> Counters {
        Counters {
            id: id.to_string(),
            worktrees: self
                .worktrees
                .iter()
                .filter(|(_, w)| w.complete)
                .map(|(p, w)| (p.clone(), w.counter))
                .collect(),
        }
    }
}

/// Of the folders `under` (all in `worktree`), and the folders below them, those git ignores
/// whole: a rule matches the folder itself, and it holds no tracked file. Nothing made in one
/// can change what `git status` shows (git does not look inside, and a file under an ignored
/// folder cannot be re-included), so it gets no watch: a `node_modules` can hold tens of
/// thousands of folders, a watch each. Rules changing bring a new walk (a `.gitignore` event,
/// or [`rules_of`]); a file force-added inside one later and then edited in place is seen when
/// the index or the 10-minute epoch of the review's key moves. Empty when git cannot tell:
/// everything is watched.
fn ignored_dirs(worktree: &Path, under: &[PathBuf]) -> HashSet<PathBuf> {
    // A `core.excludesFile` of the user's is read by git and not by [`rules_of`]: its changes
    // would go unseen, so nothing is skipped.
    let excludes_file = crate::git::git(worktree)
        .args(["config", "--get", "core.excludesFile"])
        .check();
    if !matches!(excludes_file, Ok(false)) {
        return HashSet::new();
    }
    let mut ls = crate::git::git(worktree)
        .env("GIT_LITERAL_PATHSPECS", "1")
        .args([
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--directory",
            "--",
        ]);
    for d in under {
        match d.strip_prefix(worktree) {
            Ok(rel) if rel.as_os_str().is_empty() => ls = ls.arg("."),
            Ok(rel) => ls = ls.arg(rel),
            Err(_) => {}
        }
    }
    let Ok(out) = ls.run() else {
        return HashSet::new();
    };
    // Untracked folders holding only ignored files come too (`src/` holding only `src/gen/`):
    // only those a rule matches are ignored whole.
    let candidates: Vec<&str> = out
        .stdout
        .split('\0')
        .filter(|p| p.ends_with('/'))
        .collect();
    if candidates.is_empty() {
        return HashSet::new();
    }
    let mut input = candidates.join("\0");
    input.push('\0');
    let Ok(checked) = crate::git::git(worktree)
        .args(["check-ignore", "-z", "--stdin"])
        .stdin_bytes(input)
        .output()
    else {
        return HashSet::new();
    };
    checked
        .stdout
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(|p| worktree.join(p.trim_end_matches('/')))
        .collect()
}

/// The ignore rules of `worktree` that live outside it.
fn rules_of(worktree: &Path) -> u64 {
    crate::git::git_dir_fs(worktree).map_or(0, |g| {
        crate::git::excludes_hash(&crate::git::common_dir_fs(&g))
    })
}

/// Whether `dir` is on a file system whose changes may come from elsewhere, which inotify does
/// not see (NFS, SMB/CIFS, FUSE and virtiofs, 9p).
fn on_network_fs(dir: &Path) -> bool {
    use nix::sys::statfs::{FUSE_SUPER_MAGIC, NFS_SUPER_MAGIC, SMB_SUPER_MAGIC};
    const CIFS: i64 = 0xFF53_4D42;
    const SMB2: i64 = 0xFE53_4D42;
    const V9FS: i64 = 0x0102_1997;
    const VIRTIOFS: i64 = 0x6a65_6a63;
    let Ok(st) = nix::sys::statfs::statfs(dir) else {
        return true;
    };
    let t = st.filesystem_type();
    #[allow(
        clippy::useless_conversion,
        reason = "the field's type differs between targets"
    )]
    let raw = i64::from(t.0);
    t == NFS_SUPER_MAGIC
        || t == SMB_SUPER_MAGIC
        || t == FUSE_SUPER_MAGIC
        || [CIFS, SMB2, V9FS, VIRTIOFS].contains(&raw)
}

/// The env worktrees of the workspace, from the store.
fn worktrees(ctx: &Ctx) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for env in ctx.store.envs(ctx.ws_id)? {
        for i in ctx.store.instances(env.key)? {
            out.push(i.worktree);
        }
    }
    Ok(out)
}

/// Entry point of `grove __watch ROOT`.
pub fn main(root: &Path) -> Result<()> {
    let _ = nix::unistd::setsid();
    let ws = Workspace::discover(Some(root), root)?;
    let ctx = Ctx::open(ws)?;
    let path = socket_path(&ctx.home, &ctx.ws.key());
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(_) if UnixStream::connect(&path).is_ok() => return Ok(()),
        Err(_) => {
            // A socket a dead watcher left.
            let _ = std::fs::remove_file(&path);
            UnixListener::bind(&path)?
        }
    };
    use std::os::unix::fs::MetadataExt as _;
    let ours = std::fs::metadata(&path).map(|m| m.ino()).ok();
    // A new watcher's counters start again: its id tells them apart from an earlier one's.
    let id = crate::proc::new_token();
    let result = serve(&ctx, &listener, &id);
    // Only our own socket: another watcher may have replaced a file it took for stale.
    if std::fs::metadata(&path).map(|m| m.ino()).ok() == ours {
        let _ = std::fs::remove_file(&path);
    }
    result
}

fn serve(ctx: &Ctx, listener: &UnixListener, id: &str) -> Result<()> {
    listener.set_nonblocking(true)?;
    let mut w = Watcher {
        inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
        worktrees: HashMap::new(),
        watches: HashMap::new(),
    };
    w.refresh(&worktrees(ctx)?);
    let mut asked = Instant::now();
    loop {
        if asked.elapsed() > IDLE || !ctx.ws.config.path.exists() {
            return Ok(());
        }
        let mut fds = [
            PollFd::new(w.inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        ];
        let _ = nix::poll::poll(&mut fds, PollTimeout::from(1000u16));
        w.drain();
        while let Ok((stream, _)) = listener.accept() {
            asked = Instant::now();
            let _ = answer(ctx, &mut w, stream, id);
        }
    }
}

fn answer(ctx: &Ctx, w: &mut Watcher, stream: UnixStream, id: &str) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    // Everything queued before the question is read before the answer.
    w.drain();
    w.refresh(&worktrees(ctx)?);
    w.drain();
    let mut out = serde_json::to_string(&w.counters(id))?;
    out.push('\n');
    (&stream).write_all(out.as_bytes())?;
    Ok(())
}
