//! What an env costs on disk beyond its checkout: the files of its folder that git does not
//! track (copied dependency folders, build output, the dotenv), counted once per inode.
//!
//! Measured off the `ps` path (a walk of a 30k-file `node_modules` takes a tenth of a second)
//! and cached in the store: by the supervisor once it has started the servers, or by `create`
//! and `up` when they start no supervisor (an env without servers, `--no-start`, or one
//! already up). `ps` only reads the cached row.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An env's disk use beyond its checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// The size of its untracked files, each inode once.
    pub apparent_bytes: u64,
    /// The blocks that only this env holds: what destroying it frees. A file hard-linked to
    /// one outside the env (a `hardlink` copy of the main checkout's) costs nothing here; a
    /// reflinked one is counted in full (the filesystem does not say what it shares).
    pub on_disk_bytes: u64,
    /// The size of files hard-linked to ones outside the env: shared, not new.
    pub shared_bytes: u64,
    pub files: u64,
    /// Unix seconds.
    pub measured_at: i64,
}

struct Inode {
    size: u64,
    blocks: u64,
    links: u64,
    seen: u64,
}

/// Measures the env folder `env_dir`, whose worktrees are `worktrees` (their tracked files
/// are the checkout, not counted). Never fails: what cannot be read is not counted.
pub fn measure(env_dir: &Path, worktrees: &[PathBuf]) -> Disk {
    walk(env_dir, &tracked(worktrees))
}

/// The tracked files of `worktrees`, as absolute paths.
fn tracked(worktrees: &[PathBuf]) -> HashSet<PathBuf> {
    let mut tracked: HashSet<PathBuf> = HashSet::new();
    for wt in worktrees {
        if let Ok(out) = crate::git::git(wt).args(["ls-files", "-z"]).run() {
            tracked.extend(
                out.stdout
                    .split('\0')
                    .filter(|p| !p.is_empty())
                    .map(|p| wt.join(p)),
            );
        }
    }
    tracked
}

/// Walks `env_dir`, counting what is not in `tracked`. Runs no process.
fn walk(env_dir: &Path, tracked: &HashSet<PathBuf>) -> Disk {
    let mut inodes: HashMap<(u64, u64), Inode> = HashMap::new();
    let mut dir_blocks = 0u64;
    let mut stack = vec![env_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let path = e.path();
            if t.is_dir() {
                // A worktree's `.git` is a file; the main repo's objects are not the env's.
                if let Ok(m) = e.metadata() {
                    dir_blocks += m.blocks() * 512;
                }
                stack.push(path);
            } else if t.is_file() && !tracked.contains(&path) {
                let Ok(m) = e.metadata() else { continue };
                let i = inodes.entry((m.dev(), m.ino())).or_insert(Inode {
                    size: m.len(),
                    blocks: m.blocks() * 512,
                    links: m.nlink(),
                    seen: 0,
                });
                i.seen += 1;
            }
        }
    }
    let mut d = Disk {
        on_disk_bytes: dir_blocks,
        measured_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX)),
        ..Disk::default()
    };
    for i in inodes.values() {
        d.files += 1;
        d.apparent_bytes += i.size;
        if i.seen >= i.links {
            d.on_disk_bytes += i.blocks;
        } else {
            d.shared_bytes += i.size;
        }
    }
    d
}

/// Measures env `key` (folder `env_dir`, worktrees `worktrees`) and records it in the store
/// at `home`; the walk on a thread of its own: for the supervisor, whose loop must not wait
/// on it. The thread starts no process (the supervisor reaps every child it has), so the
/// tracked files are listed before it starts.
pub fn refresh_in_background(home: PathBuf, key: i64, env_dir: PathBuf, worktrees: &[PathBuf]) {
    let tracked = tracked(worktrees);
    std::thread::spawn(move || {
        let disk = walk(&env_dir, &tracked);
        if let Ok(mut store) = crate::state::Store::open(&home) {
            let _ = store.put_disk(key, &disk);
        }
    });
}

/// Measures `env` now and records it.
pub fn refresh(ctx: &mut crate::ctx::Ctx, env: &crate::state::EnvRow) -> anyhow::Result<()> {
    let worktrees: Vec<PathBuf> = ctx
        .store
        .instances(env.key)?
        .into_iter()
        .map(|i| i.worktree)
        .collect();
    let disk = measure(&ctx.ws.env_dir(&env.name), &worktrees);
    ctx.store.put_disk(env.key, &disk)
}
