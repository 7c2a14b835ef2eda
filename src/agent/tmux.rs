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
///
/// tmux expands `#{…}` and `#(…)` (a shell command!) in a window's name and start folder, and
/// both come from the env's name, a branch name: so the name is escaped and the folder is not
/// given to tmux at all, the pane's shell changes to it (`cwd` reaches it as an argument).
pub fn open(
    session: &str,
    name: &str,
    cwd: &Path,
    env: &[(String, String)],
    argv: &[String],
) -> Result<Window> {
    let socket = current_socket();
    // tmux prints control characters as `_`: a plain separator no socket path holds.
    let format = "#{socket_path} ::: #{window_id}";
    let exists = tmux(socket.as_deref())
        .args(["has-session", "-t", &format!("={session}")])
        .check()?;
    let safe_name = name.replace('#', "##");
    // First a window that waits, so that `remain-on-exit` is set before the agent runs: one
    // that exits at once still leaves its last words on screen.
    let placeholder = ["sleep", "2147483647"];
    let mut first_error = None;
    let mut out = None;
    for attempt in 0..2 {
        let cmd = tmux(socket.as_deref());
        let cmd = if !exists && attempt == 0 {
            cmd.args(["new-session", "-d", "-s", session, "-x", "200", "-y", "50"])
        } else {
            // Also when a parallel grove created the session a moment ago.
            cmd.args(["new-window", "-d", "-t", &format!("={session}:")])
        };
        let res = cmd
            .args(["-n", &safe_name, "-P", "-F", format, "--"])
            .args(placeholder)
            .output()?;
        if res.status.success() {
            out = Some(res.stdout);
            break;
        }
        first_error.get_or_insert(res.stderr.trim().to_string());
        if exists {
            break;
        }
    }
    let Some(out) = out else {
        return Err(Fail::new(format!(
            "tmux could not open a window: {}",
            first_error.unwrap_or_default()
        ))
        .into());
    };
    let mut fields = out.trim().split(" ::: ");
    let (Some(socket), Some(id)) = (fields.next(), fields.next()) else {
        return Err(Fail::new(format!("tmux answered `{}`", out.trim())).into());
    };
    let (socket, id) = (socket.to_string(), id.to_string());
    let t = || tmux(Some(&socket));
    let run = |cmd: Cmd| -> Result<()> {
        let res = cmd.output()?;
        if res.status.success() {
            return Ok(());
        }
        kill_window(&socket, &id);
        Err(Fail::new(format!(
            "tmux could not start the agent: {}",
            res.stderr.trim()
        ))
        .into())
    };
    run(t().args(["set-option", "-w", "-t", &id, "remain-on-exit", "on"]))?;
    let mut respawn = t().args(["respawn-pane", "-k", "-t", &id]);
    for (k, v) in env {
        respawn = respawn.arg("-e").arg(format!("{k}={v}"));
    }
    let script = "cd \"$1\" || exit 1; shift; exec \"$@\"";
    respawn = respawn
        .args(["--", "sh", "-c", script, "grove-agent"])
        .arg(cwd)
        .args(argv);
    run(respawn)?;
    let pid = t()
        .args(["display-message", "-p", "-t", &id, "#{pane_pid}"])
        .run()?;
    Ok(Window {
        socket,
        id,
        pane_pid: pid.stdout.trim().parse().unwrap_or(0),
    })
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

/// The pane of window `id` whose process is `pid` (the agent), while it lives: never another
/// pane the human opened in that window (a shell, which would run the text).
fn agent_pane(socket: &str, id: &str, pid: u32) -> Option<String> {
    let out = tmux(Some(socket))
        .args([
            "list-panes",
            "-t",
            id,
            "-F",
            "#{pane_id} #{pane_pid} #{pane_dead}",
        ])
        .run()
        .ok()?;
    out.stdout.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (pane, p, dead) = (f.next()?, f.next()?, f.next()?);
        (p == pid.to_string() && dead == "0").then(|| pane.to_string())
    })
}

/// What of `text` may be typed into a pane: no escape or other control character (one could
/// end the bracketed paste early and turn the rest into keys: Ctrl-C, Enter), but newlines
/// and tabs.
pub fn typeable(text: &str) -> String {
    text.trim_end()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// Types `text` into the agent's pane (the one running process `pid` in window `id`) as one
/// paste, then presses Enter.
///
/// The text goes through a tmux buffer loaded from stdin: tmux never reads it as keys, key
/// names or commands, nor expands `#{…}` or `#(…)` in it (those apply to command arguments
/// and formats, not to buffer contents). `paste-buffer -p` wraps it in bracketed-paste
/// markers when the program in the pane asked for them (agents' prompts do), so its newlines
/// are part of the message rather than Enter presses.
pub fn paste(socket: &str, id: &str, pid: u32, text: &str) -> Result<()> {
    let Some(pane) = agent_pane(socket, id, pid) else {
        return Err(Fail::new("the agent's tmux pane is gone").into());
    };
    let buffer = format!("grove-{}", crate::proc::new_token());
    let t = || tmux(Some(socket));
    let fail = |what: &str, e: &crate::exec::CmdError| -> anyhow::Error {
        Fail::new(format!("tmux could not {what}: {}", e.stderr().trim())).into()
    };
    t().args(["load-buffer", "-b", &buffer, "-"])
        .stdin_bytes(typeable(text).into_bytes())
        .run()
        .map_err(|e| fail("load the message", &e))?;
    t().args(["paste-buffer", "-p", "-d", "-b", &buffer, "-t", &pane])
        .run()
        .map_err(|e| {
            let _ = t().args(["delete-buffer", "-b", &buffer]).output();
            fail("paste the message", &e)
        })?;
    // A program reading the paste must see it end before Enter arrives, or it may take the
    // Enter as part of the paste (some agent prompts do).
    std::thread::sleep(std::time::Duration::from_millis(150));
    t().args(["send-keys", "-t", &pane, "Enter"])
        .run()
        .map_err(|e| fail("press Enter", &e))?;
    Ok(())
}
