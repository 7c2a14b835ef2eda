//! `grove agent`, `grove attach`, `grove agent-status`, `grove hooks install`.

use std::io::Read;
use std::path::Path;

use anyhow::Result;

use crate::agent::{self, hooks};
use crate::cli::{AgentArgs, AgentStatusArgs, AttachArgs, HooksCommand};
use crate::ctx::Ctx;
use crate::error::{Exit, Fail};
use crate::git::Repo;
use crate::state::{AgentState, EnvRow};
use crate::{interrupt, ui};

pub fn agent(ctx: &mut Ctx, args: &AgentArgs) -> Result<()> {
    let env = ctx.require_env(&args.name)?;
    interrupt::guard();
    agent::launch(ctx, &env, args.ticket.as_deref(), args.command.as_deref())
}

pub fn attach(ctx: &Ctx, args: &AttachArgs) -> Result<()> {
    let env = ctx.require_env(&args.name)?;
    let logs = |follow| crate::cli::LogsArgs {
        name: Some(env.name.clone()),
        layer: Some("agent".into()),
        follow,
        lines: 50,
    };
    match agent::attach(ctx, &env, ui::interactive())? {
        agent::Attach::Follow => {
            // Until the agent ends and its supervisor has logged the end (or is gone too):
            // then its log has all it will ever have.
            let ended = || {
                ctx.store.agent(env.key).ok().flatten().is_none_or(|row| {
                    !agent::running(&row)
                        && (row.process.is_none()
                            || crate::supervisor::alive(ctx, &env).ok().flatten().is_none())
                })
            };
            super::logs::follow_until(ctx, &logs(true), &ended)?;
            if ended() {
                ended_note(ctx, &env)?;
            }
            Ok(())
        }
        agent::Attach::Show => {
            super::logs::run(ctx, &logs(false))?;
            ended_note(ctx, &env)
        }
        agent::Attach::Tmux(0) => Ok(()),
        agent::Attach::Tmux(code) => Err(Exit(code).into()),
    }
}

/// Says that the headless agent whose log was shown is not running, and how it ended.
fn ended_note(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    let Some(row) = ctx.store.agent(env.key)? else {
        ui::info(format!("the agent of `{}` was stopped", env.name));
        return Ok(());
    };
    let (state, _) = agent::state(&row);
    let how = row.exit.as_deref().unwrap_or("gone");
    ui::info(format!(
        "the agent of `{}` is not running ({state}; {how})",
        env.name
    ));
    ui::hint(format!(
        "`grove agent {}` starts a new one; `grove review {}` shows its work",
        crate::shq(&env.name),
        crate::shq(&env.name)
    ));
    Ok(())
}

/// The env a hook or an agent speaks for: `--env`, else `$GROVE_ENV`, else the env whose
/// folder holds `dir`.
fn env_for(ctx: &Ctx, explicit: Option<&str>, dir: &Path) -> Result<Option<EnvRow>> {
    if let Some(name) = explicit {
        return ctx.require_env(name).map(Some);
    }
    if let Ok(name) = std::env::var("GROVE_ENV")
        && let Some(env) = ctx.store.env(ctx.ws_id, &name)?
    {
        return Ok(Some(env));
    }
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    for env in ctx.store.envs(ctx.ws_id)? {
        if dir.starts_with(ctx.ws.env_dir(&env.name)) {
            return Ok(Some(env));
        }
    }
    Ok(None)
}

pub fn agent_status(ctx: &mut Ctx, args: &AgentStatusArgs, cwd: &Path) -> Result<()> {
    // The gate's reviewer is an agent too, with hooks of its own, running in the env: what it
    // reports is not the env's agent's (it would ask for another gate at each of its stops).
    if std::env::var(crate::proc::TOKEN_VAR)
        .ok()
        .and_then(|t| crate::proc::Tag::parse(&t))
        .is_some_and(|t| t.role == crate::proc::Role::Gate)
    {
        return Ok(());
    }
    let (state, detail, dir, input) = if let Some(text) = &args.notify {
        let json: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let dir = json["cwd"]
            .as_str()
            .map_or_else(|| cwd.to_path_buf(), Into::into);
        (
            hooks::state_of_notify(&json),
            None,
            dir,
            serde_json::Value::Null,
        )
    } else if args.hook {
        let mut input = String::new();
        let _ = std::io::stdin().read_to_string(&mut input);
        let json: serde_json::Value = serde_json::from_str(&input).unwrap_or_default();
        let dir = json["cwd"]
            .as_str()
            .map_or_else(|| cwd.to_path_buf(), Into::into);
        (
            hooks::state_of_event(&json),
            hooks::detail_of_event(&json),
            dir,
            json,
        )
    } else {
        (args.state, None, cwd.to_path_buf(), serde_json::Value::Null)
    };
    let Some(state) = state else { return Ok(()) };
    let found = env_for(ctx, args.env.as_deref(), &dir);
    let quiet = args.hook || args.notify.is_some();
    let env = match (found, quiet) {
        (Ok(Some(env)), _) => env,
        // A hook must never disturb the agent it reports for (Claude Code treats some exit
        // codes as "block"): outside a grove env, or on any error, it says nothing and exits 0.
        (_, true) => return Ok(()),
        (Ok(None), false) => {
            return Err(
                Fail::new(format!("{} is in no env of this workspace", dir.display()))
                    .hint("pass `--env NAME`")
                    .into(),
            );
        }
        (Err(e), false) => return Err(e),
    };
    let result = record_state(ctx, &env, state, detail, &input);
    match (result, quiet) {
        (Ok(true), _) | (_, true) => Ok(()),
        (Ok(false), false) => Err(Fail::new(format!("env `{}` has no agent", env.name))
            .hint(format!(
                "start one with `grove agent {}`",
                crate::shq(&env.name)
            ))
            .into()),
        (Err(e), false) => Err(e),
    }
}

/// Records what the agent reported, then acts on it: a Claude Code Stop hook answers with the
/// messages queued for the agent (it goes on with them); an agent that stopped or waits at
/// its prompt gets the queued messages; one that stopped with nothing left to hear gets its
/// gate run. Returns whether the env has an agent.
fn record_state(
    ctx: &mut Ctx,
    env: &EnvRow,
    state: AgentState,
    detail: Option<&str>,
    input: &serde_json::Value,
) -> Result<bool> {
    let now = agent::now_ms();
    let Some(row) = ctx.store.agent(env.key)? else {
        return Ok(false);
    };
    if hooks::is_stop(input)
        && let Some(reason) = crate::feedback::stop_hook_answer(ctx, env, input)?
    {
        ctx.store
            .set_agent_state(env.key, AgentState::Working, None, now)?;
        ui::out(serde_json::json!({ "decision": "block", "reason": reason }).to_string());
        return Ok(true);
    }
    // Idle at its prompt after it finished is still finished: the gate and the queue read
    // `done`, and the human sees the agent has nothing more to do.
    let idle_after_done = state == AgentState::Waiting
        && detail == Some("input")
        && row.state == Some(AgentState::Done)
        && input["notification_type"] == "idle_prompt";
    // Ending the session after its work is done (Claude Code's SessionEnd follows its Stop
    // within a second when run with `-p`) leaves the work done: the queue and the gate read
    // `done`, never `exited`.
    let ended_after_done = state == AgentState::Exited && row.state == Some(AgentState::Done);
    if ended_after_done {
        return Ok(true);
    }
    if !idle_after_done {
        ctx.store.set_agent_state(env.key, state, detail, now)?;
    }
    if !matches!(state, AgentState::Done | AgentState::Waiting) {
        return Ok(true);
    }
    let delivered = crate::feedback::deliver(ctx, env)?;
    if state == AgentState::Done
        && delivered.is_none()
        && !idle_after_done
        && crate::gate::configured(ctx, &ctx.store.instances(env.key)?)
    {
        crate::gate::request_in_background(ctx, env)?;
    }
    Ok(true)
}

pub fn hooks(ctx: &Ctx, cmd: &HooksCommand, cwd: &Path) -> Result<()> {
    let HooksCommand::Install { agent: kind, name } = cmd;
    let kind = hooks::Kind::parse(kind).expect("clap checked the agent");
    let (repo, dir) = match name {
        Some(name) => {
            let env = ctx.require_env(name)?;
            let instances = ctx.store.instances(env.key)?;
            // Where the env's agent works: a layer's worktree, or the env folder.
            match ctx
                .ws
                .config
                .agent
                .as_ref()
                .and_then(|a| a.cwd.clone())
                .as_deref()
            {
                Some("env") => (None, ctx.ws.env_dir(&env.name)),
                layer => {
                    let inst = match layer {
                        Some(l) => instances.iter().find(|i| i.layer == l),
                        None => agent::primary(ctx, &instances),
                    }
                    .ok_or_else(|| {
                        Fail::new(format!("env `{}` has no worktree for its agent", env.name))
                    })?;
                    (Some(Repo::new(&inst.repo)), inst.worktree.clone())
                }
            }
        }
        None => {
            let top = crate::git::git(cwd)
                .args(["rev-parse", "--show-toplevel"])
                .run()
                .map_err(|_| {
                    Fail::new(format!("{} is not in a git worktree", cwd.display())).hint(
                        "run it in a worktree, or name the env: `grove hooks install AGENT NAME`",
                    )
                })?;
            let top = std::path::PathBuf::from(top.stdout.trim());
            (Some(Repo::new(&top)), top)
        }
    };
    let path = hooks::install(kind, repo.as_ref(), &dir, &agent::grove_program())?;
    ui::info(format!("installed grove's hooks in {}", path.display()));
    if kind == hooks::Kind::Codex {
        ui::info(
            "  Codex runs a project's hooks once you trust them (it asks at start), or with `--dangerously-bypass-hook-trust`",
        );
    }
    Ok(())
}
