//! Filling a new worktree: `copy` (ignored files from the main checkout), the `dotenv` block,
//! and the `setup` commands.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::Fail;
use crate::exec::Cmd;
use crate::git::Repo;
use crate::interrupt;
use crate::logfile::{LineRelay, LogWriter};
use crate::proc::{ProcId, Tag};

/// Raised when a signal stops an operation; the caller rolls back and exits 128+N.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by signal {0}")]
pub struct Interrupted(pub i32);

pub fn check_interrupt() -> Result<()> {
    match interrupt::received() {
        Some(sig) => Err(Interrupted(sig).into()),
        None => Ok(()),
    }
}

/// `root/rel` for writing, with the folders on the way made when missing, none of them
/// leading out of `root`. A branch can track `conf -> /some/where`: a component that is a
/// symbolic link is followed only when it stays inside `root`, and a path that would leave it
/// is refused. The last component is not looked at: callers decide what an existing one means.
pub fn path_inside(root: &Path, rel: &str, what: &str) -> Result<PathBuf> {
    let real_root = fs_err::canonicalize(root)?;
    let parts: Vec<&std::ffi::OsStr> = Path::new(rel)
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    let mut cur = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        if i + 1 == parts.len() {
            break;
        }
        let shown = || cur.strip_prefix(root).unwrap_or(&cur).display().to_string();
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::canonicalize(&cur).ok();
                if !target
                    .as_ref()
                    .is_some_and(|t| t.starts_with(&real_root) && t.is_dir())
                {
                    let to = std::fs::read_link(&cur)
                        .map_or_else(|_| "?".to_string(), |t| t.display().to_string());
                    return Err(Fail::new(format!(
                        "{what} `{rel}`: `{}` is a symbolic link to {to}, outside {}",
                        shown(),
                        root.display()
                    ))
                    .hint("grove writes only inside the worktree: name a path whose folders are real folders of the repo")
                    .into());
                }
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Fail::new(format!(
                    "{what} `{rel}`: `{}` is a file, not a folder",
                    shown()
                ))
                .into());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // `create_dir` does not follow a link in the name it makes.
                fs_err::create_dir(&cur)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(cur)
}

/// Where the dotenv file `rel` of `worktree` really is: its path, and its path relative to the
/// worktree as git sees it (through any link inside the worktree). Refused when the path would
/// leave the worktree, when it is itself a symbolic link, or when git tracks the file there.
/// Checked before anything is written, `info/exclude` included.
pub fn dotenv_target(worktree: &Path, rel: &str, layer: &str) -> Result<(PathBuf, String)> {
    let what = format!("`dotenv` of layer `{layer}`");
    let path = path_inside(worktree, rel, &what)?;
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(
            Fail::new(format!("{what} `{rel}` is a symbolic link in the worktree"))
                .hint("grove writes the dotenv file only as a plain file inside the worktree")
                .into(),
        );
    }
    let real_root = fs_err::canonicalize(worktree)?;
    let real_parent = fs_err::canonicalize(path.parent().context("no parent")?)?;
    let real = real_parent.join(path.file_name().context("no file name")?);
    let real_rel = real
        .strip_prefix(&real_root)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|_| Fail::new(format!("{what} `{rel}` leads out of the worktree")))?;
    let tracked = crate::git::git(worktree)
        .args(["ls-files", "-z", "--", &real_rel])
        .run()?;
    if !tracked.stdout.is_empty() {
        return Err(Fail::new(format!(
            "{what} `{rel}` is `{real_rel}`, a file git tracks"
        ))
        .hint("grove rewrites that file in every env; name a file the repo does not track, such as `.env.grove`")
        .into());
    }
    Ok((path, real_rel))
}

pub const BLOCK_START: &str = "# >>> grove: managed block, rewritten by grove; edit outside it >>>";
pub const BLOCK_END: &str = "# <<< grove <<<";

/// Writes `lines` into `path` between grove's marker lines, replacing any earlier block and
/// keeping the user's own lines. Written to a temp file and renamed: a crash never leaves a
/// half-written file.
pub fn write_dotenv(path: &Path, lines: &[String]) -> Result<()> {
    let old = match fs_err::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut kept = Vec::new();
    let mut inside = false;
    for line in old.lines() {
        if line == BLOCK_START {
            inside = true;
        } else if line == BLOCK_END {
            inside = false;
        } else if !inside {
            kept.push(line);
        }
    }
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(BLOCK_START);
    text.push('\n');
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(BLOCK_END);
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("file has no parent folder")?;
    fs_err::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.grove-tmp-{}",
        path.file_name().map_or("f".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    fs_err::write(&tmp, bytes)?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

/// Makes sure git never shows `rel` (the dotenv file) as a change in `worktree`: when it is not
/// ignored already, it is added to the repository's `info/exclude`, which is local to this
/// machine and never committed.
pub fn keep_out_of_diff(repo: &Repo, worktree: &Path, rel: &str) -> Result<()> {
    if Repo::ignores(worktree, rel)? {
        return Ok(());
    }
    let exclude = repo.common_dir()?.join("info").join("exclude");
    let pattern = format!("/{rel}");
    let current = fs_err::read_to_string(&exclude).unwrap_or_default();
    if current.lines().any(|l| l == pattern) {
        return Ok(());
    }
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "# written by grove: the env's generated variables\n{pattern}\n"
    ));
    write_atomic(&exclude, text.as_bytes())
}

/// Runs one command of a layer's (`what` it is: `setup`, `prepare`, `check`, an `isolate`
/// recipe) in `cwd` with `vars`, output appended to `log`, carrying `tag`. The
/// command runs in its own process group so an interrupt can stop all of it (an `npm ci` and
/// its children); when it ends, whatever it left running (`cmd &`, a daemon that left the
/// group) is stopped too, found by its tag. The caller journals before calling: if grove dies
/// meanwhile, recovery finds the step's processes by the env's token.
pub fn run_step(
    what: &str,
    script: &str,
    cwd: &Path,
    vars: &[(String, String)],
    log: &Path,
    tag: &Tag,
) -> Result<()> {
    run_step_at(what, script, cwd, vars, log, tag, "create:during-setup")
}

/// [`run_step`], with `failpoint` hit while the step runs.
pub fn run_step_at(
    what: &str,
    script: &str,
    cwd: &Path,
    vars: &[(String, String)],
    log: &Path,
    tag: &Tag,
    failpoint: &str,
) -> Result<()> {
    let status =
        run_logged(script, cwd, vars, log, tag, failpoint, None)?.expect("no timeout was given");
    if status.success() {
        return Ok(());
    }
    let how = crate::exec::describe_status(status);
    LogWriter::open(log)?.line(&format!("[grove] {what} command failed ({how})"));
    Err(
        Fail::new(format!("{what} command `{script}` failed ({how})"))
            .hint(format!("its output is in {}", log.display()))
            .into(),
    )
}

/// Runs `script` with `vars` and `tag`, in a process group of its own, its output appended
/// to `log`, until it ends (its status), `timeout` passes (`None`: it was stopped), or an
/// interrupt (an error). Whatever it left running in the background is stopped with it.
pub fn run_logged(
    script: &str,
    cwd: &Path,
    vars: &[(String, String)],
    log: &Path,
    tag: &Tag,
    failpoint: &str,
    timeout: Option<Duration>,
) -> Result<Option<std::process::ExitStatus>> {
    let mut writer = LogWriter::open(log)?;
    writer.line(&format!("[grove] $ {script}    ({})", cwd.display()));
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut relay = LineRelay::new(r)?;
    let tag_value = tag.render();
    let mut child = Cmd::shell(script)
        .cwd(cwd)
        .without_git_env()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env(crate::proc::TOKEN_VAR, &tag_value)
        .own_process_group()
        .spawn_to(w)?;
    crate::failpoint::hit(failpoint);
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let leader = ProcId::of(child.id());
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let leftovers = || {
        if let Some(leader) = leader {
            stop_orphan_group(leader, Duration::from_secs(2));
        }
        let left: Vec<ProcId> = crate::proc::tagged(|t| t.render() == tag_value)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        crate::proc::stop_all(&left, Duration::from_secs(2));
    };
    loop {
        relay.pump(|l| writer.line(l));
        if let Some(status) = child.try_wait()? {
            relay.pump(|l| writer.line(l));
            // A step is over when its command is: what it left running in the background
            // would outlive the env otherwise.
            leftovers();
            return Ok(Some(status));
        }
        if let Some(sig) = interrupt::received() {
            stop_group(pgid, &mut child, Duration::from_secs(5));
            leftovers();
            writer.line("[grove] interrupted");
            return Err(Interrupted(sig).into());
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            stop_group(pgid, &mut child, Duration::from_secs(5));
            leftovers();
            writer.line("[grove] timed out: stopped");
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stop_orphan_group(leader: ProcId, grace: Duration) {
    let signal_all = |sig| {
        for p in crate::proc::group_members(leader) {
            let _ = nix::sys::signal::kill(Pid::from_raw(p.pid.cast_signed()), sig);
        }
    };
    if crate::proc::group_members(leader).is_empty() {
        return;
    }
    signal_all(Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !crate::proc::group_members(leader).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_all(Signal::SIGKILL);
}

/// SIGTERM to the group, then SIGKILL after `grace`.
fn stop_group(pgid: Pid, child: &mut std::process::Child, grace: Duration) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
}

pub fn open_log(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))
}

/// Makes git ignore the envs folder in every repo that could contain it: a `.gitignore`
/// holding `*` at its top (and at the top of `.grove/` for the default location).
pub fn ensure_envs_dir_ignored(envs_dir: &std::path::Path, root: &std::path::Path) -> Result<()> {
    fs_err::create_dir_all(envs_dir)?;
    let mut dirs = vec![envs_dir.to_path_buf()];
    let grove_dir = root.join(".grove");
    if envs_dir.starts_with(&grove_dir) {
        dirs.push(grove_dir);
    }
    for dir in dirs {
        let gi = dir.join(".gitignore");
        if !gi.exists() {
            write_atomic(&gi, b"# grove's envs: never part of any repo\n*\n")?;
        }
    }
    Ok(())
}
