//! One coding agent per env: launched in the env with its ticket and the env's context, in a
//! tmux window or headless under the env's supervisor; its state comes from its own hooks,
//! with the liveness of its process as the fallback.
//!
//! The context and prompt files live in the env folder, next to the worktrees and inside none
//! of them, so no repo's `git status` ever shows them.

pub mod hooks;
pub mod tmux;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{AgentConfig, AgentMode, PromptVia};
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::git::Repo;
use crate::proc::{ProcId, Role, Tag};
use crate::state::{AgentRow, AgentState, EnvRow};
use crate::{provision, supervisor, template, ui};

pub const CONTEXT_FILE: &str = "grove-context.md";
pub const PROMPT_FILE: &str = "grove-prompt.md";

/// How the supervisor starts a headless agent, as stored (until it starts) in the store: the
/// env's own variables only. The launcher's environment (their PATH, their API keys) is not
/// stored: it waits in `launcher_env`, a file only the user can read, which the supervisor
/// reads and deletes when it starts the agent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Spec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub launcher_env: Option<PathBuf>,
}

impl Spec {
    /// The agent's whole environment: the launcher's, then the env's variables over it. The
    /// launcher's file is consumed.
    pub fn take_environment(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .launcher_env
            .as_ref()
            .and_then(|p| {
                let text = std::fs::read_to_string(p).ok();
                let _ = std::fs::remove_file(p);
                serde_json::from_str(&text?).ok()
            })
            .unwrap_or_default();
        vars.retain(|(k, _)| !self.env.iter().any(|(v, _)| v == k));
        vars.extend(self.env.iter().cloned());
        vars
    }
}

/// Where a headless agent's launcher environment waits for the supervisor.
pub fn launcher_env_path(home: &Path, env: &EnvRow) -> PathBuf {
    home.join("run").join(format!("agent-{}.env", env.token))
}

/// Writes `vars` to `path`, readable by the user only (in a folder only they can enter).
fn write_private(path: &Path, vars: &[(String, String)]) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().context("no folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, serde_json::to_string(vars)?.as_bytes())?;
    Ok(())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The agent configuration: grove.toml's `[agent]`, with `--command` overriding its command.
pub fn config(ctx: &Ctx, command: Option<&str>) -> Result<AgentConfig> {
    match (&ctx.ws.config.agent, command) {
        (Some(a), Some(c)) => Ok(AgentConfig {
            command: c.to_string(),
            ..a.clone()
        }),
        (Some(a), None) => Ok(a.clone()),
        (None, Some(c)) => Ok(AgentConfig {
            command: c.to_string(),
            prompt: crate::config::DEFAULT_PROMPT.to_string(),
            prompt_via: PromptVia::Arg,
            mode: AgentMode::Tmux,
            cwd: None,
            solution: None,
            wait_ready: true,
            resume: None,
        }),
        (None, None) => Err(Fail::new(format!(
            "{} has no `[agent]`",
            ctx.ws.config.path.display()
        ))
        .hint("add `[agent]` with `command = \"claude\"` (or your agent), or pass `--command CMD`")
        .into()),
    }
}

/// Whether the env's agent runs (or was just recorded and is starting): its process lives.
pub fn running(row: &AgentRow) -> bool {
    let alive = row.process.is_some_and(|p| p.alive());
    // Recorded, not started yet: the row is written first, so that an agent reporting at once
    // finds it.
    // (Briefly: a row that never got its process is a launch that died half-way.)
    let pending = row.process.is_none() && row.exit.is_none() && now_ms() - row.started_at < 10_000;
    alive || pending
}

/// What `ps` shows of the env's agent: the state its hooks reported while its process lives,
/// `running` when it lives but never reported, `exited` when its process is gone, except
/// after `done` and a clean end: an agent ends its run once its work is done (a headless
/// `claude -p`, a tmux window's program that returns), and the queue must still read that
/// work as done. One killed or crashed after `done` (its Stop hook fires after every turn,
/// idle ones too) is `exited`: it did not end, it died.
pub fn state(row: &AgentRow) -> (String, Option<i64>) {
    let clean_end = row.exit.as_deref().is_none_or(|how| how == "exit 0");
    match (row.state, running(row)) {
        (Some(s), true) => (s.to_string(), row.state_since),
        (None, true) => ("running".into(), Some(row.started_at)),
        (Some(AgentState::Done), false) if clean_end => ("done".into(), row.state_since),
        (_, false) => ("exited".into(), row.state_since),
    }
}

/// Launches the configured agent in `env`, with `ticket` as its task.
pub fn launch(
    ctx: &mut Ctx,
    env: &EnvRow,
    ticket: Option<&Path>,
    command: Option<&str>,
) -> Result<()> {
    let mut taken = Vec::new();
    let launched = launch_taking(ctx, env, ticket, command, &mut taken);
    if launched.is_err() && !taken.is_empty() {
        // Messages put in a context no agent will read go back to the queue.
        ctx.store.untake_feedback(&taken)?;
    }
    launched
}

fn launch_taking(
    ctx: &mut Ctx,
    env: &EnvRow,
    ticket: Option<&Path>,
    command: Option<&str>,
    taken: &mut Vec<i64>,
) -> Result<()> {
    let cfg = config(ctx, command)?;
    if cfg.mode == AgentMode::Tmux {
        tmux::require()?;
    }
    let ticket = match ticket {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Fail::new(format!("cannot read the ticket {}: {e}", p.display())).hint(
                    "`--ticket` is the path of a text file (Markdown), relative to the current folder",
                )
            })?;
            Some((std::path::absolute(p)?, text))
        }
        None => None,
    };
    if let Some(old) = ctx.store.agent(env.key)? {
        if running(&old) {
            return Err(
                Fail::new(format!("env `{}` already has a running agent", env.name))
                    .hint(format!(
                        "see it with `grove attach {n}`; `grove down {n}` stops it",
                        n = crate::shq(&env.name)
                    ))
                    .into(),
            );
        }
        stop(ctx, env)?;
    }
    if cfg.wait_ready {
        supervisor::up(ctx, env)?;
    }
    let env_dir = ctx.ws.env_dir(&env.name);
    let context_path = env_dir.join(CONTEXT_FILE);
    // The ticket's title and criteria, kept for the gate and the review; a new ticket starts
    // the gate's auto-fix rounds again.
    if let Some((path, text)) = &ticket {
        let stem = path
            .file_stem()
            .map_or_else(|| env.name.clone(), |s| s.to_string_lossy().into_owned());
        let t = crate::criteria::parse(text, &stem);
        ctx.store.put_ticket(
            env.key,
            Some(&path.to_string_lossy()),
            &t.title,
            &serde_json::to_string(&t.criteria)?,
        )?;
    }
    // What the human said while no agent ran goes into the new agent's context.
    let waiting = ctx.store.take_feedback(env.key, "launch")?;
    taken.extend(waiting.iter().map(|m| m.id));
    let written = (|| -> Result<()> {
        let mut text = context(ctx, env, ticket.as_ref(), &cfg)?;
        if !waiting.is_empty() {
            text.push_str("\n## Feedback from the human, not yet acted on\n\n");
            for m in &waiting {
                text.push_str(m.text.trim_end());
                text.push_str("\n\n");
            }
        }
        provision::write_atomic(&context_path, text.as_bytes())?;
        let prompt = render_prompt(ctx, env, &cfg, ticket.as_ref(), &context_path)?;
        provision::write_atomic(&env_dir.join(PROMPT_FILE), prompt.as_bytes())?;
        Ok(())
    })();
    written?;
    let (cwd, vars) = agent_env(ctx, env, &cfg)?;
    let instances = ctx.store.instances(env.key)?;
    let launcher = launcher_vars(&vars);
    // The command is the user's shell text; the prompt is data, read from its file (a long
    // ticket would not fit in a tmux command, nor belongs on a command line).
    let argv = script_argv(&cfg.command, cfg.prompt_via, "GROVE_PROMPT_FILE");

    if is_claude(&cfg.command) {
        let repo = instances
            .iter()
            .find(|i| cwd.starts_with(&i.worktree))
            .map(|i| Repo::new(&i.repo));
        // In a worktree the settings file is kept out of the repo's sight; in the env folder
        // (`cwd = "env"`) no repo sees it anyway.
        hooks::install_claude(repo.as_ref(), &cwd, &grove_program())?;
    }
    let mut row = AgentRow::new(cfg.mode, now_ms());
    match cfg.mode {
        AgentMode::Tmux => {
            let session = format!("grove-{}", ctx.ws.key());
            ctx.store.put_agent(env.key, &row)?;
            let mut full = launcher;
            full.extend(vars);
            let w = match tmux::open(&session, &env.name, &cwd, &full, &argv) {
                Ok(w) => w,
                Err(e) => {
                    ctx.store.delete_agent(env.key)?;
                    return Err(e);
                }
            };
            ctx.store
                .set_agent_window(env.key, ProcId::of(w.pane_pid), &w.socket, &w.id)?;
            ui::info(format!(
                "agent of `{}` started in tmux window {session}:{} ({})",
                env.name, env.name, w.id
            ));
            ui::info(format!("  see it: grove attach {}", crate::shq(&env.name)));
        }
        AgentMode::Headless => {
            let private = launcher_env_path(&ctx.home, env);
            write_private(&private, &launcher)?;
            row.spec = Some(serde_json::to_string(&Spec {
                argv,
                cwd,
                env: vars,
                launcher_env: Some(private.clone()),
            })?);
            ctx.store.put_agent(env.key, &row)?;
            let started = supervisor::ensure_running(ctx, env).and_then(|sup| {
                supervisor::notify(sup);
                wait_headless_start(ctx, env)
            });
            if let Err(e) = started {
                let _ = std::fs::remove_file(&private);
                ctx.store.delete_agent(env.key)?;
                return Err(e);
            }
            ui::info(format!("agent of `{}` started headless", env.name));
            ui::info(format!(
                "  its output: grove logs {} agent -f",
                crate::shq(&env.name)
            ));
        }
    }
    Ok(())
}

fn wait_headless_start(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let row = ctx.store.agent(env.key)?;
        if row
            .as_ref()
            .is_some_and(|r| r.process.is_some() || r.exit.is_some())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Fail::new(format!(
        "the supervisor of `{}` did not start the agent",
        env.name
    ))
    .hint("see `grove logs NAME supervisor`")
    .into())
}

/// Stops the env's agent: its tmux window (and the processes in it), or, headless, through
/// the supervisor. Returns whether one was running.
pub fn stop(ctx: &mut Ctx, env: &EnvRow) -> Result<bool> {
    let Some(row) = ctx.store.agent(env.key)? else {
        return Ok(false);
    };
    let alive = row.process.is_some_and(|p| p.alive());
    if let (Some(socket), Some(id)) = (&row.tmux_socket, &row.tmux_window) {
        if let Some(p) = row.process.filter(ProcId::alive) {
            // The pane's process leads its own group: the agent and what it runs stop together.
            let pgid = nix::unistd::Pid::from_raw(p.pid.cast_signed());
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while p.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
        tmux::kill_window(socket, id);
    }
    // A headless agent is stopped with its supervisor (`supervisor::down`).
    ctx.store.delete_agent(env.key)?;
    Ok(alive)
}

/// What `grove attach` does once it has looked at the agent.
pub enum Attach {
    /// It was in front of the tmux window; the code tmux exited with.
    Tmux(i32),
    /// Headless and running: follow its log while it runs.
    Follow,
    /// Headless and no longer running: its log, printed once (following it would wait for
    /// lines that never come).
    Show,
}

/// `grove attach`: in front of the agent (tmux), or following its log (headless).
pub fn attach(ctx: &Ctx, env: &EnvRow, interactive: bool) -> Result<Attach> {
    let Some(row) = ctx.store.agent(env.key)? else {
        return Err(Fail::new(format!("env `{}` has no agent", env.name))
            .hint(format!(
                "start one with `grove agent {} --ticket FILE`",
                crate::shq(&env.name)
            ))
            .into());
    };
    match (&row.tmux_socket, &row.tmux_window) {
        (Some(socket), Some(id)) => {
            if !tmux::exists(socket, id) {
                return Err(Fail::new(format!(
                    "the tmux window of `{}`'s agent is gone",
                    env.name
                ))
                .into());
            }
            if !interactive {
                return Err(Fail::new("no terminal to attach to")
                    .hint(format!(
                        "run `{}` from a terminal",
                        tmux::attach_hint(socket, id)
                    ))
                    .into());
            }
            tmux::attach(socket, id).map(Attach::Tmux)
        }
        _ if !running(&row) => Ok(Attach::Show),
        _ => {
            let follow = format!("grove logs {} agent -f", crate::shq(&env.name));
            if !interactive {
                return Err(Fail::new("no terminal to follow the agent's log on")
                    .hint(format!("run `{follow}`"))
                    .into());
            }
            Ok(Attach::Follow)
        }
    }
}

/// Where the env's agent works, and its variables: the env's (of the layer it works in), the
/// paths of its context, prompt and ticket, and the env's tag.
pub fn agent_env(
    ctx: &Ctx,
    env: &EnvRow,
    cfg: &AgentConfig,
) -> Result<(PathBuf, Vec<(String, String)>)> {
    let instances = ctx.store.instances(env.key)?;
    let primary = primary(ctx, &instances).context("the env has no dedicated layer")?;
    let (cwd, vars_layer) = match cfg.cwd.as_deref() {
        None => (primary.worktree.clone(), primary.layer.clone()),
        Some("env") => (ctx.ws.env_dir(&env.name), primary.layer.clone()),
        Some(layer) => match instances.iter().find(|i| i.layer == layer) {
            Some(i) => (i.worktree.clone(), i.layer.clone()),
            None => {
                return Err(Fail::new(format!(
                    "the agent's `cwd` is layer `{layer}`, which env `{}` does not have",
                    env.name
                ))
                .hint(format!("create the env with `--from-{layer}=BASE`"))
                .into());
            }
        },
    };
    let env_dir = ctx.ws.env_dir(&env.name);
    let view = ctx.view(env, &instances);
    let mut vars = view.vars(&ctx.ws.config.layers[&vars_layer])?;
    for (k, file) in [
        ("GROVE_CONTEXT", CONTEXT_FILE),
        ("GROVE_PROMPT_FILE", PROMPT_FILE),
        ("GROVE_FEEDBACK", crate::feedback::FEEDBACK_FILE),
    ] {
        vars.push((k.into(), env_dir.join(file).to_string_lossy().into_owned()));
    }
    if let Some(path) = ctx.store.ticket(env.key)?.and_then(|t| t.0) {
        vars.push(("GROVE_TICKET".into(), path));
    }
    // The agent and all it starts carry the env's tag: `down` and `destroy` find what it left.
    vars.push((
        crate::proc::TOKEN_VAR.into(),
        Tag::new(&env.token, Role::Agent).render(),
    ));
    Ok((cwd, vars))
}

/// The environment of whoever launches the agent (their PATH, their API keys), which it runs
/// with wherever it actually starts (a tmux server or a supervisor started earlier), but the
/// variables `vars` sets and a terminal's own.
pub fn launcher_vars(vars: &[(String, String)]) -> Vec<(String, String)> {
    const TERMINAL_VARS: &[&str] = &[
        "TERM",
        "TMUX",
        "TMUX_PANE",
        "COLUMNS",
        "LINES",
        "SHLVL",
        "PWD",
        "OLDPWD",
        "_",
    ];
    std::env::vars()
        .filter(|(k, _)| {
            !TERMINAL_VARS.contains(&k.as_str())
                && !crate::exec::GIT_DISCOVERY_VARS.contains(&k.as_str())
                && !is_agent_session_var(k)
                && !vars.iter().any(|(v, _)| v == k)
        })
        .collect()
}

/// Variables an agent sets for what it runs (its hooks, its tools): they describe that agent's
/// session, and an agent started with them takes itself for a nested one (Claude Code refuses
/// to start under `CLAUDECODE`). Nothing grove starts from a hook (the gate, the reviewer, a
/// relaunched agent) may inherit them.
pub fn is_agent_session_var(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "CLAUDECODE",
        "CLAUDE_PROJECT_DIR",
        "GEMINI_CLI",
        "GEMINI_PROJECT_DIR",
        "GEMINI_SESSION_ID",
        "GEMINI_CWD",
        "CODEX_SANDBOX",
        "CODEX_SANDBOX_NETWORK_DISABLED",
        "CODEX_THREAD_ID",
    ];
    EXACT.contains(&name) || name.starts_with("CLAUDE_CODE_")
}

/// `sh -c` running `command` with the text of the file in variable `file_var`, as `via` says.
pub fn script_argv(command: &str, via: PromptVia, file_var: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        prompt_script(command, via, file_var),
    ]
}

/// The shell text running `command` (the user's) with the text of the file in variable
/// `file_var` (data, never pasted into the text), as `via` says.
pub fn prompt_script(command: &str, via: PromptVia, file_var: &str) -> String {
    match via {
        PromptVia::Arg => format!("{command} \"$(cat \"${file_var}\")\""),
        PromptVia::Stdin => format!("{command} < \"${file_var}\""),
        PromptVia::File => format!("{command} \"${file_var}\""),
    }
}

/// The spec of a headless agent relaunched with `[agent] continue` to act on `message_file`.
pub fn resume_spec(ctx: &Ctx, env: &EnvRow, message_file: &Path) -> Result<Spec> {
    let cfg = config(ctx, None)?;
    let Some(resume) = cfg.resume.clone() else {
        return Err(
            Fail::new("`[agent]` has no `continue` command to relaunch the agent with")
                .hint("add e.g. `continue = \"claude --continue -p\"` to [agent]")
                .into(),
        );
    };
    let (cwd, mut vars) = agent_env(ctx, env, &cfg)?;
    vars.push((
        "GROVE_MESSAGE_FILE".into(),
        message_file.to_string_lossy().into_owned(),
    ));
    Ok(Spec {
        argv: script_argv(&resume, cfg.prompt_via, "GROVE_MESSAGE_FILE"),
        cwd,
        env: vars,
        launcher_env: None,
    })
}

/// Writes a headless agent's launcher environment where only the user can read it.
pub fn stash_launcher_env(ctx: &Ctx, env: &EnvRow, vars: &[(String, String)]) -> Result<PathBuf> {
    let private = launcher_env_path(&ctx.home, env);
    write_private(&private, &launcher_vars(vars))?;
    Ok(private)
}

/// The layer an agent works in by default: the first default layer the env has (in
/// `default_layers` order), else its first dedicated layer.
pub fn primary<'a>(
    ctx: &Ctx,
    instances: &'a [crate::state::Instance],
) -> Option<&'a crate::state::Instance> {
    ctx.ws
        .config
        .default_layers
        .iter()
        .find_map(|l| instances.iter().find(|i| &i.layer == l))
        .or_else(|| instances.first())
}

pub fn is_claude(command: &str) -> bool {
    command
        .split_whitespace()
        .next()
        .is_some_and(|p| Path::new(p).file_name().is_some_and(|n| n == "claude"))
}

/// How hooks and people call this grove: `grove` when PATH finds this binary, else its full
/// path (the demo is often run with `cargo run` before grove is installed).
pub fn grove_program() -> String {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("grove"))
            .find(|p| p.is_file())
    });
    match (me, found.and_then(|p| p.canonicalize().ok())) {
        (Some(me), Some(f)) if me == f => "grove".into(),
        (Some(me), _) => crate::shq(&me.to_string_lossy()),
        (None, _) => "grove".into(),
    }
}

fn render_prompt(
    ctx: &Ctx,
    env: &EnvRow,
    cfg: &AgentConfig,
    ticket: Option<&(PathBuf, String)>,
    context_path: &Path,
) -> Result<String> {
    let instances = ctx.store.instances(env.key)?;
    let view = ctx.view(env, &instances);
    let mut layers = std::collections::BTreeMap::new();
    for layer in ctx.ws.config.layers.values() {
        let wt = instances
            .iter()
            .find(|i| i.layer == layer.name)
            .map(|i| i.worktree.to_string_lossy().into_owned());
        layers.insert(
            layer.name.clone(),
            minijinja::context! { url => view.url(layer).ok().flatten(), worktree => wt },
        );
    }
    let c = minijinja::context! {
        ticket => ticket.map(|t| t.0.to_string_lossy().into_owned()),
        ticket_text => ticket.map_or(String::new(), |t| t.1.clone()),
        solution => cfg.solution.as_ref().map(|p| p.to_string_lossy().into_owned()),
        context => context_path.to_string_lossy(),
        criteria => crate::criteria::render(&criteria_of(ctx, env)?),
        env => &env.name,
        layers => layers,
    };
    template::render_in(template::Place::Prompt, &cfg.prompt, &c)
        .map_err(|e| Fail::new(format!("cannot render the agent's `prompt`: {e}")).into())
}

/// The acceptance criteria of the env's ticket, as recorded when its agent was launched.
pub fn criteria_of(ctx: &Ctx, env: &EnvRow) -> Result<Vec<crate::criteria::Criterion>> {
    Ok(ctx
        .store
        .ticket(env.key)?
        .and_then(|t| serde_json::from_str(&t.2).ok())
        .unwrap_or_default())
}

/// The env's context file: what an agent needs to know to work in it.
fn context(
    ctx: &Ctx,
    env: &EnvRow,
    ticket: Option<&(PathBuf, String)>,
    cfg: &AgentConfig,
) -> Result<String> {
    let instances = ctx.store.instances(env.key)?;
    let view = ctx.view(env, &instances);
    let n = crate::shq(&env.name);
    let mut s = String::new();
    let _ = writeln!(s, "# grove environment `{}`\n", env.name);
    let _ = writeln!(s, "Workspace: {}", ctx.ws.root.display());
    if let Some(i) = instances.first() {
        let _ = writeln!(s, "Branch: {}", i.branch);
    }
    let _ = writeln!(s, "\n## Layers\n");
    for layer in ctx.ws.config.layers.values() {
        let url = view.url(layer)?.unwrap_or_else(|| "(no URL)".into());
        match instances.iter().find(|i| i.layer == layer.name) {
            Some(i) => {
                let _ = writeln!(
                    s,
                    "- `{}`: dedicated to this env, {url}\n  worktree {} (branch `{}` from `{}`)",
                    layer.name,
                    i.worktree.display(),
                    i.branch,
                    i.base
                );
            }
            None => {
                let _ = writeln!(s, "- `{}`: shared with the main stack, {url}", layer.name);
            }
        }
    }
    let _ = writeln!(s, "\n## Ticket\n");
    match ticket {
        Some((path, text)) => {
            let _ = writeln!(s, "{}\n\n{}", path.display(), text.trim_end());
        }
        None => s.push_str("(none given)\n"),
    }
    let crit = criteria_of(ctx, env)?;
    if !crit.is_empty() {
        let _ = writeln!(
            s,
            "\n## Acceptance criteria\n\nThe work is done when all of these hold:\n\n{}",
            crate::criteria::render(&crit).trim_end()
        );
    }
    if let Some(sol) = &cfg.solution {
        let _ = writeln!(s, "\n## Technical solution\n\n{}", sol.display());
    }
    let _ = writeln!(
        s,
        "\n## Working with grove\n\n\
         - state of every env: `grove ps`\n\
         - server logs: `grove logs {n} [LAYER]` (`-f` to follow)\n\
         - restart a server after changing its config or dependencies: `grove restart {n} LAYER`\n\
         - run a command with this env's variables: `grove exec {n} -- CMD`\n\
         - these variables: `grove env {n} [LAYER]`\n\
         - when you stop, grove's review gate runs the checks (and a reviewer, if configured); \
         what it or the human sends back is also kept in {}",
        ctx.ws
            .env_dir(&env.name)
            .join(crate::feedback::FEEDBACK_FILE)
            .display()
    );
    Ok(s)
}
