//! Materialising a `copy` entry (an ignored folder of the main checkout, such as
//! `node_modules`) in a worktree: reflinked, hard-linked, symbolically linked or copied.
//!
//! The cost of an env is dominated by this step on a real stack (a 300 MB `node_modules` is a
//! 10-second `cp -a` on ext4), so the modes that share data are the point: a hard-link tree
//! makes new folders and new names for the same files, in parallel, with no new data blocks.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::{CopyEntry, CopyMode};
use crate::error::Fail;
use crate::exec::Cmd;
use crate::proc::Tag;

/// What was done for one entry, for the create report.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    pub path: String,
    /// The mode asked for in grove.toml.
    pub mode: CopyMode,
    /// What happened: `reflinked`, `hardlinked`, `symlinked`, `copied`, or `skipped` (missing
    /// in the main checkout, or tracked by git in the worktree).
    pub done: &'static str,
    pub files: u64,
    pub bytes: u64,
    pub ms: u64,
}

/// Materialises `entry` from the main checkout `from` into the worktree `to`. Sources stay
/// inside `from` and destinations inside `to`: no symbolic link of either tree is followed
/// out of it. Child processes (`cp`) carry `tag`, so a crash's recovery finds them.
pub fn materialise(
    from: &Path,
    to: &Path,
    entry: &CopyEntry,
    layer: &str,
    tag: &Tag,
) -> Result<Copied> {
    let t0 = Instant::now();
    let rel = &entry.path;
    let mut out = Copied {
        path: rel.clone(),
        mode: entry.mode,
        done: "skipped",
        files: 0,
        bytes: 0,
        ms: 0,
    };
    let src = from.join(rel);
    if std::fs::symlink_metadata(&src).is_err() {
        crate::ui::warn(format!(
            "{layer}: `{rel}` not found in {}; not copied",
            from.display()
        ));
        return Ok(out);
    }
    // The source's folders must be the main checkout's own: `conf -> /etc` and
    // `copy = ["conf/passwd"]` would read outside it. The last component may be a link: it
    // is copied as a link.
    let real_from = fs_err::canonicalize(from)?;
    let src_parent = src.parent().map(std::fs::canonicalize);
    if !matches!(src_parent, Some(Ok(ref p)) if p.starts_with(&real_from)) {
        return Err(Fail::new(format!(
            "`copy` entry `{rel}` of layer `{layer}` leads out of {} through a symbolic link",
            from.display()
        ))
        .hint("`copy` names ignored files of the main checkout itself")
        .into());
    }
    let dst = crate::provision::path_inside(to, rel, &format!("`copy` entry of layer `{layer}`"))?;
    if std::fs::symlink_metadata(&dst).is_ok() {
        crate::ui::warn(format!(
            "{layer}: `{rel}` is tracked by git; kept the checked-out version"
        ));
        return Ok(out);
    }
    let reflink = |always: bool| -> Result<()> {
        cp(&src, &dst, if always { "always" } else { "never" }, tag)
            .with_context(|| format!("copying `{rel}` into the {layer} worktree"))
    };
    out.done = match entry.mode {
        CopyMode::Copy => {
            reflink(false)?;
            "copied"
        }
        CopyMode::Auto if reflinks(&src, &dst) => {
            reflink(true)?;
            "reflinked"
        }
        CopyMode::Auto => {
            reflink(false)?;
            "copied"
        }
        CopyMode::Reflink => {
            if !reflinks(&src, &dst) {
                return Err(Fail::new(format!(
                    "`copy` entry `{rel}` of layer `{layer}` cannot be reflinked: {} and {} are not on one filesystem that shares blocks ({})",
                    src.display(),
                    to.display(),
                    fs_type(to)
                ))
                .hint("reflinks need btrfs, XFS (reflink=1), bcachefs or APFS; use `mode = \"hardlink\"` to share files on any filesystem, or `auto`")
                .into());
            }
            reflink(true)?;
            "reflinked"
        }
        CopyMode::Symlink => {
            std::os::unix::fs::symlink(&src, &dst)
                .with_context(|| format!("linking `{rel}` into the {layer} worktree"))?;
            "symlinked"
        }
        CopyMode::Hardlink => {
            let (files, bytes) = link_tree(&src, &dst).map_err(|(at, e)| {
                let hint = if e.raw_os_error() == Some(nix::libc::EXDEV) {
                    "hard links need the envs folder on the filesystem of the repo: move `envs_dir`, or use `mode = \"copy\"`"
                } else {
                    "use `mode = \"copy\"` for this entry"
                };
                Fail::new(format!(
                    "hard-linking `{rel}` into the {layer} worktree failed at {}: {e}",
                    at.display()
                ))
                .hint(hint)
            })?;
            out.files = files;
            out.bytes = bytes;
            "hardlinked"
        }
    };
    if matches!(out.done, "copied" | "reflinked") {
        (out.files, out.bytes) = count(&dst);
    }
    out.ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(out)
}

/// GNU cp does reflink-or-copy, folders, symlinks and modes in one well-tested step. Paths
/// are arguments, never shell text; `-a` copies links as links.
fn cp(src: &Path, dst: &Path, reflink: &str, tag: &Tag) -> Result<()> {
    let cmd = if cfg!(target_os = "macos") {
        // clonefile where it can (`-c`); macOS's cp has no way to refuse a plain copy.
        Cmd::new("cp").args(["-c", "-R", "-p"])
    } else {
        Cmd::new("cp").args(["-a".to_string(), format!("--reflink={reflink}")])
    };
    cmd.env(crate::proc::TOKEN_VAR, tag.render())
        .arg("--")
        .arg(src)
        .arg(dst)
        .run()?;
    Ok(())
}

/// Whether a file of `src` can be reflinked next to `dst`: tried once per pair of
/// filesystems with `cp --reflink=always` (FICLONE) on a probe, then remembered.
fn reflinks(src: &Path, dst: &Path) -> bool {
    static SEEN: Mutex<Option<HashMap<(u64, u64), bool>>> = Mutex::new(None);
    let Some(dst_dir) = dst.parent() else {
        return false;
    };
    let (Ok(a), Ok(b)) = (std::fs::metadata(src), std::fs::metadata(dst_dir)) else {
        return false;
    };
    let key = (a.dev(), b.dev());
    if let Some(known) = SEEN
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&key).copied()))
    {
        return known;
    }
    let Some(file) = first_file(src) else {
        // Nothing to share blocks of: a plain copy costs nothing more.
        return false;
    };
    let probe = dst_dir.join(format!(".grove-reflink-probe-{}", std::process::id()));
    let ok = !cfg!(target_os = "macos")
        && Cmd::new("cp")
            .args(["--reflink=always", "--"])
            .arg(&file)
            .arg(&probe)
            .run()
            .is_ok();
    let _ = std::fs::remove_file(&probe);
    if let Ok(mut m) = SEEN.lock() {
        m.get_or_insert_with(HashMap::new).insert(key, ok);
    }
    ok
}

/// A regular file in `path` (itself, or the first found walking it), for the reflink probe.
fn first_file(path: &Path) -> Option<PathBuf> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.is_file() {
        return Some(path.to_path_buf());
    }
    let mut stack = vec![path.to_path_buf()];
    let mut looked = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            looked += 1;
            if looked > 10_000 {
                return None;
            }
            match e.file_type() {
                Ok(t) if t.is_file() => return Some(e.path()),
                Ok(t) if t.is_dir() => stack.push(e.path()),
                _ => {}
            }
        }
    }
    None
}

fn fs_type(path: &Path) -> String {
    Cmd::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .run()
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Files and bytes under `path`, each inode once.
fn count(path: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
            files += 1;
            bytes += m.len();
        }
    }
    (files, bytes)
}

/// Workers for a link tree: the work is metadata syscalls that wait on the disk as much as
/// on a core, so a few more threads than cores keep both busy.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 16)
}

/// Builds at `dst` a tree of hard links to the files of `src`: folders made (with their
/// modes), regular files linked, symbolic links recreated as they are (never followed), other
/// special files skipped. Folders are walked by several threads at once. Returns the files
/// linked and their bytes.
pub fn link_tree(src: &Path, dst: &Path) -> Result<(u64, u64), (PathBuf, std::io::Error)> {
    let at = |e| (src.to_path_buf(), e);
    let meta = std::fs::symlink_metadata(src).map_err(at)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(at)?;
        std::os::unix::fs::symlink(target, dst).map_err(at)?;
        return Ok((0, 0));
    }
    if !meta.is_dir() {
        std::fs::hard_link(src, dst).map_err(at)?;
        return Ok((1, meta.len()));
    }
    std::fs::create_dir(dst).map_err(at)?;
    struct Queue {
        dirs: Vec<(PathBuf, PathBuf)>,
        busy: usize,
    }
    let queue = Mutex::new(Queue {
        dirs: vec![(src.to_path_buf(), dst.to_path_buf())],
        busy: 0,
    });
    let wake = Condvar::new();
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<(PathBuf, std::io::Error)>> = Mutex::new(None);
    let files = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    // Folders get their mode once everything is in them: a read-only folder would refuse
    // its own children.
    let modes: Mutex<Vec<(PathBuf, u32)>> = Mutex::new(vec![(dst.to_path_buf(), meta.mode())]);

    let one_dir = |from: &Path, to: &Path, found: &mut Vec<(PathBuf, PathBuf)>| {
        let (mut n, mut b) = (0u64, 0u64);
        let mut dir_modes = Vec::new();
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let (s, d) = (e.path(), to.join(e.file_name()));
            let t = e.file_type()?;
            if t.is_dir() {
                std::fs::create_dir(&d)?;
                dir_modes.push((d.clone(), e.metadata()?.mode()));
                found.push((s, d));
            } else if t.is_file() {
                std::fs::hard_link(&s, &d)?;
                n += 1;
                b += e.metadata()?.len();
            } else if t.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
            }
        }
        files.fetch_add(n, Ordering::Relaxed);
        bytes.fetch_add(b, Ordering::Relaxed);
        if let Ok(mut m) = modes.lock() {
            m.extend(dir_modes);
        }
        std::io::Result::Ok(())
    };

    std::thread::scope(|s| {
        for _ in 0..workers() {
            s.spawn(|| {
                loop {
                    let job = {
                        let Ok(mut q) = queue.lock() else { return };
                        loop {
                            if failed.load(Ordering::Relaxed)
                                || crate::interrupt::received().is_some()
                            {
                                failed.store(true, Ordering::Relaxed);
                                wake.notify_all();
                                return;
                            }
                            if let Some(job) = q.dirs.pop() {
                                q.busy += 1;
                                break job;
                            }
                            if q.busy == 0 {
                                wake.notify_all();
                                return;
                            }
                            q = match wake.wait(q) {
                                Ok(q) => q,
                                Err(_) => return,
                            };
                        }
                    };
                    let mut found = Vec::new();
                    let result = one_dir(&job.0, &job.1, &mut found);
                    let Ok(mut q) = queue.lock() else { return };
                    q.busy -= 1;
                    match result {
                        Ok(()) => q.dirs.extend(found),
                        Err(e) => {
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert((job.0.clone(), e));
                            }
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                    wake.notify_all();
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if failed.load(Ordering::Relaxed) {
        return Err(at(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "interrupted",
        )));
    }
    for (dir, mode) in modes.into_inner().unwrap_or_default() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| (dir.clone(), e))?;
    }
    Ok((files.into_inner(), bytes.into_inner()))
}
