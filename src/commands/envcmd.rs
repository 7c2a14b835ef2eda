//! `grove path`, `grove env`, `grove exec`: an env's worktrees and variables, for scripts,
//! shells and agents.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::{EnvArgs, ExecArgs, PathArgs};
use crate::ctx::Ctx;
use crate::error::{Exit, Fail};
use crate::exec::Cmd;
use crate::proc::{Role, Tag};
use crate::state::{EnvRow, Instance};
use crate::{ui, vars};

/// The instance of `layer`, or of the env's first dedicated layer.
fn pick<'a>(env: &EnvRow, instances: &'a [Instance], layer: Option<&str>) -> Result<&'a Instance> {
    let names = || {
        instances
            .iter()
            .map(|i| i.layer.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match layer {
        Some(l) => instances.iter().find(|i| i.layer == l).ok_or_else(|| {
            Fail::new(format!(
                "env `{}` has no worktree for layer `{l}`",
                env.name
            ))
            .hint(format!("its dedicated layers: {}", names()))
            .into()
        }),
        None => instances
            .first()
            .ok_or_else(|| Fail::new(format!("env `{}` has no dedicated layer", env.name)).into()),
    }
}

/// The worktree `grove path` and `grove cd` mean by NAME and LAYER (see
/// [`Ctx::require_target_layer`]).
pub fn worktree(
    ctx: &Ctx,
    name: Option<&str>,
    layer: Option<&str>,
    command: &str,
) -> Result<PathBuf> {
    let (env, layer) = ctx.require_target_layer(name, layer, |w| is_layer(ctx, w), command)?;
    let instances = ctx.store.instances(env.key)?;
    let layer = layer.or_else(|| layer_here(&instances, &cwd()));
    Ok(pick(&env, &instances, layer.as_deref())?.worktree.clone())
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_default()
}

/// The layer whose worktree holds `dir`: inside one of the env's worktrees, that layer is
/// meant.
fn layer_here(instances: &[Instance], dir: &Path) -> Option<String> {
    let here = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    instances
        .iter()
        .find(|i| here.starts_with(&i.worktree))
        .map(|i| i.layer.clone())
}

fn is_layer(ctx: &Ctx, word: &str) -> bool {
    ctx.ws.config.layers.contains_key(word)
}

pub fn path(ctx: &Ctx, args: &PathArgs) -> Result<()> {
    let dir = worktree(ctx, args.name.as_deref(), args.layer.as_deref(), "path")?;
    ui::out(dir.to_string_lossy());
    Ok(())
}

pub fn env(ctx: &Ctx, args: &EnvArgs) -> Result<()> {
    let (env, layer) = ctx.require_target_layer(
        args.name.as_deref(),
        args.layer.as_deref(),
        |w| is_layer(ctx, w),
        "env",
    )?;
    let instances = ctx.store.instances(env.key)?;
    let layer = layer.or_else(|| layer_here(&instances, &cwd()));
    let inst = pick(&env, &instances, layer.as_deref())?;
    let view = ctx.view(&env, &instances);
    let vars = view.vars(&ctx.ws.config.layers[&inst.layer])?;
    for line in vars::dotenv_lines(&vars) {
        ui::out(line);
    }
    Ok(())
}

pub fn exec(ctx: &Ctx, args: &ExecArgs, cwd: &Path) -> Result<()> {
    let env = ctx.require_target(args.name.as_deref(), "exec")?;
    let instances = ctx.store.instances(env.key)?;
    let here = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    let layer = args.layer.clone().or_else(|| layer_here(&instances, &here));
    let inst = pick(&env, &instances, layer.as_deref())?;
    if !inst.worktree.is_dir() {
        return Err(Fail::new(format!(
            "the {} worktree of `{}` is missing",
            inst.layer, env.name
        ))
        .hint(format!(
            "run `grove destroy {}` and create it again",
            crate::shq(&env.name)
        ))
        .into());
    }
    if !args.host
        && args.layer.is_some()
        && let crate::config::Runner::Compose(spec) = &ctx.ws.config.layers[&inst.layer].runner
    {
        return exec_in_container(ctx, &env, &inst.layer, &spec.service, &args.cmd);
    }
    let dir = if here.starts_with(&inst.worktree) {
        here
    } else {
        inst.worktree.clone()
    };
    let view = ctx.view(&env, &instances);
    let vars = view.vars(&ctx.ws.config.layers[&inst.layer])?;
    let (program, rest) = args.cmd.split_first().expect("clap requires a command");
    // Tagged with this grove's process: what the command leaves running in the background
    // once it returns is a leftover that `down` and `destroy` stop.
    let tag = Tag::new(&env.token, Role::Exec).owned_by(ctx.me);
    let status = Cmd::new(program)
        .args(rest)
        .cwd(&dir)
        .without_git_env()
        .envs(vars)
        .env(crate::proc::TOKEN_VAR, tag.render())
        .status_inherit()
        .map_err(|e| {
            // The shell's codes: 127 not found, 126 found but not runnable.
            let code = match &e {
                crate::exec::CmdError::Spawn { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    127
                }
                _ => 126,
            };
            Fail {
                code,
                ..Fail::new(e.to_string()).hint("check the command name and your PATH")
            }
        })?;
    exit_with(status)
}

fn exit_with(status: std::process::ExitStatus) -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if code == 0 {
        Ok(())
    } else {
        Err(Exit(code).into())
    }
}

/// `exec --layer L` of a compose layer: the command runs in the service's running container
/// (found by the env's label, never by name), which has the env's variables already.
fn exec_in_container(
    ctx: &Ctx,
    env: &crate::state::EnvRow,
    layer: &str,
    service: &str,
    cmd: &[std::ffi::OsString],
) -> Result<()> {
    let engine = ctx.engine(env);
    let id = crate::compose::running_container(&engine, &env.token, layer, service)?
        .ok_or_else(|| {
            Fail::new(format!(
                "the `{service}` container of `{layer}` in `{}` is not running",
                env.name
            ))
            .hint(format!(
                "start it with `grove up {n}`, or run on this machine with `grove exec {n} --layer {layer} --host -- …`",
                n = crate::shq(&env.name)
            ))
        })?;
    use std::io::IsTerminal;
    // The env's token in the command's environment: the container's processes are this
    // machine's too, so what the command leaves running there is found by `down`'s sweep.
    let tag = Tag::new(&env.token, Role::Exec).owned_by(ctx.me);
    let mut c = crate::compose::docker(&engine)
        .args(["exec", "--interactive", "--env"])
        .arg(format!("{}={}", crate::proc::TOKEN_VAR, tag.render()));
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        c = c.arg("--tty");
    }
    let status = c
        .arg(&id)
        .args(cmd)
        .status_inherit()
        .map_err(|e| Fail::new(e.to_string()).hint("is docker on your PATH?"))?;
    exit_with(status)
}
