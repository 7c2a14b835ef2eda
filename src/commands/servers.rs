//! `grove up`, `grove down`, `grove restart`: an env's servers, through its supervisor.

use anyhow::Result;

use crate::cli::{DownArgs, RestartArgs, UpArgs};
use crate::commands::create::print_urls;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::state::{EnvRow, Phase};
use crate::{report, supervisor, ui};

/// The env `name`, once crashed operations are cleaned up, when no other grove is at work on
/// it and it is neither half-made nor half-destroyed.
fn ready_env(ctx: &mut Ctx, name: &str) -> Result<EnvRow> {
    crate::recover::unfinished(ctx)?;
    let env = ctx.require_env(name)?;
    ctx.require_idle(&env)?;
    match env.phase {
        Phase::Ready => Ok(env),
        Phase::Destroying => Err(Fail::new(format!("env `{}` is half-destroyed", env.name))
            .hint(format!(
                "run `grove destroy {}` to finish it",
                crate::shq(&env.name)
            ))
            .into()),
        Phase::Creating => Err(Fail::new(format!("env `{}` is being created", env.name))
            .hint("wait for that to finish (`grove ps`)")
            .into()),
    }
}

fn show(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    let instances = ctx.store.instances(env.key)?;
    print_urls(&report::env_report(ctx, env, &instances)?);
    Ok(())
}

pub fn up(ctx: &mut Ctx, args: &UpArgs) -> Result<()> {
    let env = ready_env(ctx, &args.name)?;
    supervisor::require_whole(ctx, &env)?;
    let alive = supervisor::alive(ctx, &env)?.is_some();
    // A supervisor started now measures the env's disk use itself, off this command's path;
    // when none starts (no servers, or already up), it is measured here, so that what was
    // installed or built in the env since shows in `ps`. As at create: one walk of the env's
    // untracked files, a tenth of a second for a 30k-file `node_modules`.
    // A measure that fails (a busy store) must not keep the servers from starting.
    if (alive || !supervisor::has_servers(ctx, &env)?)
        && let Err(e) = crate::disk::refresh(ctx, &env)
    {
        ui::warn(format!(
            "could not measure the disk use of `{}`: {e:#}",
            env.name
        ));
    }
    if alive {
        let failed = ctx
            .store
            .servers(env.key)?
            .iter()
            .any(|r| r.state == crate::state::ServerState::Failed);
        if !failed {
            ui::info(format!("env `{}` is already up", env.name));
        }
    } else {
        ui::info(format!("starting env `{}`", env.name));
    }
    supervisor::up(ctx, &env)?;
    show(ctx, &env)
}

pub fn down(ctx: &mut Ctx, args: &DownArgs) -> Result<()> {
    let env = ready_env(ctx, &args.name)?;
    if supervisor::stop_env(ctx, &env, crate::sweep::Scope::Leftovers)? {
        ui::info(format!("stopped env `{}`", env.name));
    } else {
        ui::info(format!("env `{}` was not running", env.name));
    }
    Ok(())
}

pub fn restart(ctx: &mut Ctx, args: &RestartArgs) -> Result<()> {
    let env = ready_env(ctx, &args.name)?;
    supervisor::require_whole(ctx, &env)?;
    match &args.layer {
        Some(layer) => {
            if !ctx
                .store
                .instances(env.key)?
                .iter()
                .any(|i| &i.layer == layer)
            {
                return Err(Fail::new(format!(
                    "env `{}` has no layer `{layer}` of its own",
                    env.name
                ))
                .hint("`grove ps` shows which layers each env has")
                .into());
            }
            ui::info(format!("restarting `{layer}` of env `{}`", env.name));
            supervisor::restart_layer(ctx, &env, layer)?;
        }
        None => {
            ui::info(format!("restarting env `{}`", env.name));
            supervisor::down(ctx, &env)?;
            supervisor::up(ctx, &env)?;
        }
    }
    show(ctx, &env)
}
