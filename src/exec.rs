//! `Cmd`: the only way grove starts a process.
//!
//! One builder means one place for the rules every child gets: stdin closed unless given,
//! stdout and stderr drained together (a chatty child cannot fill a pipe and deadlock),
//! `GROVE_LOG=debug` tracing of every command with its cwd and duration, and a [`CmdError`]
//! that keeps the child's stderr so the user sees why git refused.
#![allow(clippy::disallowed_methods)]

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// Variables that make git look at another repository than the one we point it at. They leak
/// in when grove runs from a git hook; user commands in a worktree must not inherit them.
pub const GIT_DISCOVERY_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
    "GIT_NAMESPACE",
];

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmdline}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        cmdline: String,
        status: String,
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

impl CmdError {
    /// The child's trimmed stderr, when it ran and failed.
    pub fn stderr(&self) -> &str {
        match self {
            CmdError::Failed { stderr, .. } => stderr.trim(),
            CmdError::Spawn { .. } => "",
        }
    }
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    envs: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    own_group: bool,
    clear_env: bool,
    /// A failpoint hit once the child runs (see [`Cmd::failpoint`]).
    failpoint: Option<&'static str>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            envs: Vec::new(),
            stdin: None,
            own_group: false,
            clear_env: false,
            failpoint: None,
        }
    }

    /// `sh -c SCRIPT`: the way every user-written command (`run`, `setup`) is started. Values
    /// reach the script as environment variables, never pasted into it.
    pub fn shell(script: &str) -> Self {
        Self::new("sh").arg("-c").arg(script)
    }

    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    #[must_use]
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), Some(val.as_ref().to_owned())));
        self
    }

    #[must_use]
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    #[must_use]
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child with only the variables given with [`Cmd::env`], not this process's.
    #[must_use]
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Removes the git discovery variables (see [`GIT_DISCOVERY_VARS`]).
    #[must_use]
    pub fn without_git_env(mut self) -> Self {
        for var in GIT_DISCOVERY_VARS {
            self = self.env_remove(var);
        }
        self
    }

    #[must_use]
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Starts the child in a process group of its own, so that it and everything it forks can
    /// be signalled together (an `npm ci` that spawns node that spawns a compiler).
    #[must_use]
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// Makes [`Cmd::output`] hit `name` while the child runs: the crash suite's window for a
    /// grove killed with a step still at work (a `CREATE DATABASE` that finishes after).
    #[must_use]
    pub fn failpoint(mut self, name: &'static str) -> Self {
        self.failpoint = Some(name);
        self
    }

    pub fn cmdline(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if self.clear_env {
            cmd.env_clear();
        }
        // A tag is given, never inherited: grove run from inside an env (by its agent, by
        // `grove exec`) must not pass that env's tag to a supervisor, a tmux server or git,
        // which a sweep of that env would then stop.
        if !self.envs.iter().any(|(k, _)| k == crate::proc::TOKEN_VAR) {
            cmd.env_remove(crate::proc::TOKEN_VAR);
        }
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if self.own_group {
            cmd.process_group(0);
        }
        cmd
    }

    fn spawn_error(&self, source: std::io::Error) -> CmdError {
        CmdError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        }
    }

    /// Runs to completion with output captured; a non-zero exit is an error carrying stderr.
    pub fn run(&self) -> Result<Output, CmdError> {
        let out = self.output()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(CmdError::Failed {
                cmdline: self.cmdline(),
                status: describe_status(out.status),
                stderr: out.stderr,
            })
        }
    }

    /// Runs to completion with output captured, whatever the exit status.
    pub fn output(&self) -> Result<Output, CmdError> {
        let started = Instant::now();
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = match &self.stdin {
            None if self.failpoint.is_some() => {
                let child = cmd
                    .stdin(Stdio::null())
                    .spawn()
                    .map_err(|e| self.spawn_error(e))?;
                crate::failpoint::hit(self.failpoint.unwrap_or_default());
                child.wait_with_output()
            }
            None => cmd.stdin(Stdio::null()).output(),
            Some(bytes) => {
                cmd.stdin(Stdio::piped());
                let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
                let mut stdin = child.stdin.take().expect("stdin was piped");
                let bytes = bytes.clone();
                // Written from a thread: a child that prints before reading would otherwise
                // block on a full stdout pipe while we block on its full stdin pipe.
                let writer = std::thread::spawn(move || {
                    let _ = stdin.write_all(&bytes);
                });
                let out = child.wait_with_output();
                let _ = writer.join();
                out
            }
        }
        .map_err(|e| self.spawn_error(e))?;
        self.trace(started, out.status);
        Ok(Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// For exit-code queries (`merge-base --is-ancestor`): true on exit 0, false otherwise.
    pub fn check(&self) -> Result<bool, CmdError> {
        Ok(self.output()?.status.success())
    }

    /// Runs with the terminal's stdin, stdout and stderr; returns the exit status.
    pub fn status_inherit(&self) -> Result<ExitStatus, CmdError> {
        let started = Instant::now();
        let status = self.command().status().map_err(|e| self.spawn_error(e))?;
        self.trace(started, status);
        Ok(status)
    }

    /// Starts the child with stdin closed and stdout + stderr appended to `log`.
    pub fn spawn_logged(&self, log: &File) -> Result<Child, CmdError> {
        let out = log.try_clone().map_err(|e| self.spawn_error(e))?;
        self.spawn_to(out.into())
    }

    /// Starts the child with stdin closed and stdout + stderr both writing into `out` (the
    /// write end of a pipe the caller reads).
    pub fn spawn_to(&self, out: std::os::fd::OwnedFd) -> Result<Child, CmdError> {
        let err = out.try_clone().map_err(|e| self.spawn_error(e))?;
        self.spawn_split(File::from(out), File::from(err))
    }

    /// Starts the child with stdin closed, stdout into `out` and stderr into `err`.
    pub fn spawn_split(&self, out: File, err: File) -> Result<Child, CmdError> {
        trace_line(&format!("$ {} &", self.describe()));
        self.command()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| self.spawn_error(e))
    }

    /// Starts the child with stdin closed and this process's stdout and stderr.
    pub fn spawn_inherit(&self) -> Result<Child, CmdError> {
        trace_line(&format!("$ {} &", self.describe()));
        self.command()
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| self.spawn_error(e))
    }

    fn describe(&self) -> String {
        match &self.cwd {
            Some(dir) => format!("{} [{}]", self.cmdline(), dir.display()),
            None => self.cmdline(),
        }
    }

    fn trace(&self, started: Instant, status: ExitStatus) {
        if tracing_enabled() {
            trace_line(&format!(
                "$ {} ({}, {:.1} ms)",
                self.describe(),
                describe_status(status),
                started.elapsed().as_secs_f64() * 1000.0
            ));
        }
    }
}

/// `exit 3`, or `killed by signal 9`.
pub fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

fn tracing_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("GROVE_LOG").is_ok_and(|v| v.contains("debug")))
}

fn trace_line(line: &str) {
    if tracing_enabled() {
        crate::ui::info(format!("[grove] {line}"));
    }
}
