//! tmux, through its CLI: one session per workspace (`grove-<workspace>`), one window per env.
//!
//! The server is the one grove runs inside (`$TMUX`), else the default one; its socket path is
//! recorded with the window id, so later commands reach the same window from anywhere.

use std::path::Path;

use anyhow::Result;

use crate::error::Fail;
use crate::exec::Cmd;

pub struct Window {
    pub socket: String,
    /// tmux's window id (`@3`): stable while the window lives, unlike its name or index.
    pub id: String,
    pub pane_pid: u32,
}

fn tmux(socket: Option<&str>) -> Cmd {
    let cmd = Cmd::new("tmux");
    match socket {
        Some(s) => cmd.arg("-S").arg(s),
        None => cmd,
    }
}

/// The socket of the server we are running inside, if any (`$TMUX` is `socket,pid,session`).
fn current_socket() -> Option<String> {
    let var = std::env::var("TMUX").ok()?;
    var.split(',')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Fails with what to do when tmux is not installed.
pub fn require() -> Result<()> {
    match Cmd::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err(Fail::new("tmux is not installed (the agent's `mode` is `tmux`)")
            .hint("install tmux (`apt install tmux`, `brew install tmux`), or set `mode = \"headless\"` in [agent]")
            .into()),
    }
}

/// Opens a window named `name` in `session` (created when absent) running `argv` in `cwd`
/// with `env`. The window stays after the agent exits, so its last output can be read.
pub fn open(
    session: &str,
    name: &str,
    cwd: &Path,
    env: &[(String, String)],
    argv: &[String],
) -> Result<Window> {
    let socket = current_socket();
    // tmux prints control characters as `_`: a plain separator no socket path holds.
    let format = "#{socket_path} ::: #{window_id} ::: #{pane_pid}";
    let exists = tmux(socket.as_deref())
        .args(["has-session", "-t", &format!("={session}")])
        .check()?;
    let mut out = None;
    for attempt in 0..2 {
        let mut cmd = tmux(socket.as_deref());
        cmd = if !exists && attempt == 0 {
            cmd.args(["new-session", "-d", "-s", session, "-x", "200", "-y", "50"])
        } else {
            // Also when a parallel grove created the session a moment ago.
            cmd.args(["new-window", "-d", "-t", &format!("={session}:")])
        };
        cmd = cmd
            .args(["-n", name, "-P", "-F", format])
            .arg("-c")
            .arg(cwd);
        for (k, v) in env {
            cmd = cmd.arg("-e").arg(format!("{k}={v}"));
        }
        let res = cmd.arg("--").args(argv).output()?;
        if res.status.success() {
            out = Some(res.stdout);
            break;
        }
        if attempt == 1 || exists {
            return Err(Fail::new(format!(
                "tmux could not open a window: {}",
                res.stderr.trim()
            ))
            .into());
        }
    }
    let out = out.unwrap_or_default();
    let mut fields = out.trim().split(" ::: ");
    let (Some(socket), Some(id), Some(pid)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(Fail::new(format!("tmux answered `{}`", out.trim())).into());
    };
    let window = Window {
        socket: socket.to_string(),
        id: id.to_string(),
        pane_pid: pid.parse().unwrap_or(0),
    };
    tmux(Some(&window.socket))
        .args(["set-option", "-w", "-t", &window.id, "remain-on-exit", "on"])
        .run()?;
    Ok(window)
}

/// Whether the window still exists.
pub fn exists(socket: &str, id: &str) -> bool {
    tmux(Some(socket))
        .args(["display-message", "-p", "-t", id, "#{window_id}"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim() == id)
}

pub fn kill_window(socket: &str, id: &str) {
    let _ = tmux(Some(socket)).args(["kill-window", "-t", id]).output();
}

/// Puts the user in front of the window: switches the client when already inside tmux,
/// attaches otherwise. Returns tmux's exit code.
pub fn attach(socket: &str, id: &str) -> Result<i32> {
    let inside = current_socket().is_some();
    let cmd = if inside {
        tmux(Some(socket)).args(["switch-client", "-t", id])
    } else {
        tmux(Some(socket)).args(["attach-session", "-t", id])
    };
    let status = cmd.status_inherit()?;
    Ok(status.code().unwrap_or(1))
}

/// The command a user runs to see the window.
pub fn attach_hint(socket: &str, id: &str) -> String {
    format!("tmux -S {} attach-session -t {id}", crate::shq(socket))
}
