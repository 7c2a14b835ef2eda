//! The human's words (and the gate's findings) carried back into the env's agent.
//!
//! A message is queued in the store first (the journal of the intent), appended to the env's
//! `grove-feedback.md` beside its context file, then delivered as soon as the agent can take
//! it, each message exactly once (taking them from the queue is one transaction):
//! - an agent with Claude Code's hooks gets it from its Stop hook, which answers
//!   `{"decision": "block", "reason": …}` so the agent goes on with it (never when Claude Code
//!   says `stop_hook_active`: a block answered by a block could loop);
//! - in tmux, it is pasted into the agent's pane once the agent is done or waits at its prompt
//!   (never into a permission dialog, which typed text would answer);
//! - headless, the agent is relaunched with `[agent] continue` once its process has ended;
//! - without an agent, the next `grove agent` puts it in the new agent's context.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::{Context as _, Result};

use crate::agent::{self, tmux};
use crate::ctx::Ctx;
use crate::state::{AgentMode, AgentRow, AgentState, EnvRow, FeedbackRow};
use crate::{failpoint, supervisor};

/// Every message to the agent, beside its context file.
pub const FEEDBACK_FILE: &str = "grove-feedback.md";

/// What became of a message.
#[derive(Debug)]
pub enum Delivery {
    /// Reached the agent, through this channel.
    Delivered(&'static str),
    /// Waits in the queue, for this reason.
    Queued(String),
}

impl Delivery {
    pub fn describe(&self) -> String {
        match self {
            Delivery::Delivered("tmux") => "pasted into the agent's tmux pane".into(),
            Delivery::Delivered("relaunch") => {
                "the agent was relaunched with it (`[agent] continue`)".into()
            }
            Delivery::Delivered(via) => format!("delivered ({via})"),
            Delivery::Queued(why) => format!("queued: {why}"),
        }
    }

    pub fn via(&self) -> Option<&'static str> {
        match self {
            Delivery::Delivered(v) => Some(v),
            Delivery::Queued(_) => None,
        }
    }
}

/// Queues `text` for the env's agent and delivers it if the agent can take it now.
pub fn send(ctx: &mut Ctx, env: &EnvRow, source: &str, text: &str) -> Result<Delivery> {
    ctx.store.push_feedback(env.key, source, text)?;
    failpoint::hit("feedback:after-queue");
    // Queued from here on: a failure to deliver now is not a failure to send (sending again
    // would deliver it twice).
    if let Err(e) = append_to_file(ctx, env, source, text) {
        crate::ui::warn(format!("could not append to {FEEDBACK_FILE}: {e:#}"));
    }
    Ok(match deliver(ctx, env) {
        Ok(Some(d)) => d,
        Ok(None) => Delivery::Queued("nothing to deliver".into()),
        Err(e) => Delivery::Queued(format!("not delivered now ({e:#}); it stays queued")),
    })
}

fn append_to_file(ctx: &Ctx, env: &EnvRow, source: &str, text: &str) -> Result<()> {
    let path = ctx.ws.env_dir(&env.name).join(FEEDBACK_FILE);
    let who = match source {
        "gate" => "grove's review gate",
        "comment" => "the human, on a line of the diff",
        _ => "the human",
    };
    // Never through a link: the env folder is grove's, a link in it points elsewhere.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let stamp = crate::logfile::stamp(std::time::SystemTime::now());
    write!(f, "## {stamp} · from {who}\n\n{}\n\n", text.trim_end())?;
    Ok(())
}

/// The queued messages as one text.
fn join(msgs: &[FeedbackRow]) -> String {
    let mut s = String::new();
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            s.push_str("\n\n---\n\n");
        }
        s.push_str(m.text.trim_end());
    }
    s
}

/// Delivers the env's queued messages if its agent can take them now; `None` when none wait.
pub fn deliver(ctx: &mut Ctx, env: &EnvRow) -> Result<Option<Delivery>> {
    if ctx.store.feedback(env.key, true)?.is_empty() {
        return Ok(None);
    }
    let n = crate::shq(&env.name);
    let Some(row) = ctx.store.agent(env.key)? else {
        return Ok(Some(Delivery::Queued(format!(
            "`{}` has no agent; `grove agent {n}` starts one with it in its context",
            env.name
        ))));
    };
    let (state, _) = agent::state(&row);
    match row.mode {
        AgentMode::Tmux => deliver_tmux(ctx, env, &row, &state),
        AgentMode::Headless => deliver_headless(ctx, env, &row),
    }
}

fn deliver_tmux(
    ctx: &mut Ctx,
    env: &EnvRow,
    row: &AgentRow,
    state: &str,
) -> Result<Option<Delivery>> {
    let n = crate::shq(&env.name);
    let (Some(socket), Some(id)) = (&row.tmux_socket, &row.tmux_window) else {
        return Ok(Some(Delivery::Queued(
            "the agent's window is not open yet".into(),
        )));
    };
    if !agent::running(row) || !tmux::exists(socket, id) {
        return Ok(Some(Delivery::Queued(format!(
            "the agent has exited; `grove agent {n}` starts a new one with it in its context"
        ))));
    }
    let at_prompt =
        state == "done" || (state == "waiting" && row.detail.as_deref() != Some("permission"));
    if !at_prompt {
        let when = match (state, row.detail.as_deref()) {
            ("waiting", _) => "once its permission dialog is answered and it stops",
            _ if uses_stop_hook(ctx) => "when it stops (through its Stop hook)",
            _ => "when its hooks say it stopped or waits for input",
        };
        return Ok(Some(Delivery::Queued(format!(
            "the agent is {state}; it gets it {when}"
        ))));
    }
    let Some(pid) = row.process.map(|p| p.pid) else {
        return Ok(Some(Delivery::Queued(
            "the agent's pane is not known yet".into(),
        )));
    };
    let msgs = ctx.store.take_feedback(env.key, "tmux")?;
    if msgs.is_empty() {
        return Ok(None);
    }
    if let Err(e) = tmux::paste(socket, id, pid, &join(&msgs)) {
        ctx.store
            .untake_feedback(&msgs.iter().map(|m| m.id).collect::<Vec<_>>())?;
        return Err(e);
    }
    ctx.store
        .set_agent_state(env.key, AgentState::Working, None, agent::now_ms())?;
    Ok(Some(Delivery::Delivered("tmux")))
}

fn deliver_headless(ctx: &mut Ctx, env: &EnvRow, row: &AgentRow) -> Result<Option<Delivery>> {
    let n = crate::shq(&env.name);
    if row.process.is_some_and(|p| p.alive()) || (row.spec.is_some() && agent::running(row)) {
        let how = if uses_stop_hook(ctx) {
            "when it stops (through its Stop hook), or is relaunched with it once it exits"
        } else {
            "once it exits: it is relaunched with it (`[agent] continue`)"
        };
        return Ok(Some(Delivery::Queued(format!(
            "the agent is running; it gets it {how}"
        ))));
    }
    if agent::config(ctx, None)?.resume.is_none() {
        return Ok(Some(Delivery::Queued(format!(
            "the headless agent has exited and `[agent]` has no `continue` to relaunch it with; \
             add one (e.g. `continue = \"claude --continue -p\"`), or `grove agent {n}` starts a new agent with it"
        ))));
    }
    let Some(sup) = supervisor::alive(ctx, env)? else {
        return Ok(Some(Delivery::Queued(format!(
            "`{}` is down; `grove agent {n}` starts an agent with it",
            env.name
        ))));
    };
    let msgs = ctx.store.take_feedback(env.key, "relaunch")?;
    if msgs.is_empty() {
        return Ok(None);
    }
    let ids: Vec<i64> = msgs.iter().map(|m| m.id).collect();
    let relaunched = (|| -> Result<bool> {
        // A file per relaunch: two racing must not read each other's messages.
        let dir = crate::gate::private_dir(ctx, env)?;
        let path = dir.join(format!("message-{}.md", ids[0]));
        crate::provision::write_atomic(&path, join(&msgs).as_bytes())?;
        let mut spec = agent::resume_spec(ctx, env, &path)?;
        spec.launcher_env = Some(agent::stash_launcher_env(ctx, env, &spec.env)?);
        let mut new = AgentRow::new(AgentMode::Headless, agent::now_ms());
        new.spec = Some(serde_json::to_string(&spec)?);
        if !ctx.store.swap_agent(env.key, row, &new)? {
            return Ok(false);
        }
        supervisor::notify(sup);
        Ok(true)
    })();
    match relaunched {
        Ok(true) => Ok(Some(Delivery::Delivered("relaunch"))),
        Ok(false) => {
            // Another relaunch got there first: these wait for the agent it started.
            ctx.store.untake_feedback(&ids)?;
            Ok(Some(Delivery::Queued(
                "the agent is being relaunched; it gets it when it stops".into(),
            )))
        }
        Err(e) => {
            ctx.store.untake_feedback(&ids)?;
            Err(e)
        }
    }
}

/// Whether the env's agent is Claude Code, whose Stop hook takes messages while it works.
fn uses_stop_hook(ctx: &Ctx) -> bool {
    ctx.ws
        .config
        .agent
        .as_ref()
        .is_some_and(|a| agent::is_claude(&a.command))
}

/// What a Stop hook answers (Claude Code's JSON on stdin): the queued messages as the reason
/// to go on, unless the agent is already going on because of a Stop hook.
pub fn stop_hook_answer(
    ctx: &mut Ctx,
    env: &EnvRow,
    input: &serde_json::Value,
) -> Result<Option<String>> {
    if input["stop_hook_active"].as_bool() == Some(true) {
        return Ok(None);
    }
    let msgs = ctx.store.take_feedback(env.key, "stop-hook")?;
    if msgs.is_empty() {
        return Ok(None);
    }
    let mut reason = String::new();
    let _ = write!(
        reason,
        "{}\n\n(Sent to you through grove; it is also in {}.)",
        join(&msgs),
        ctx.ws.env_dir(&env.name).join(FEEDBACK_FILE).display()
    );
    Ok(Some(reason))
}
