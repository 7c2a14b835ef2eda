//! `grove up`, `grove down`, `grove restart`: an env's servers, through its supervisor.

use anyhow::Result;

use crate::cli::{DownArgs, RestartArgs, UpArgs};
use crate::commands::create::print_urls;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::state::{EnvRow, Phase};
use crate::{interrupt, report, supervisor, ui};

fn ready_env(ctx: &Ctx, name: &str) -> Result<EnvRow> {
    let env = ctx.require_env(name)?;
    if env.phase != Phase::Ready {
        return Err(
            Fail::new(format!("env `{}` is being created or destroyed", env.name))
                .hint("wait for that to finish (`grove ps`)")
                .into(),
        );
    }
    Ok(env)
}

fn show(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    let instances = ctx.store.instances(env.key)?;
    print_urls(&report::env_report(ctx, env, &instances)?);
    Ok(())
}

pub fn up(ctx: &mut Ctx, args: &UpArgs) -> Result<()> {
    let env = ready_env(ctx, &args.name)?;
    interrupt::guard();
    if supervisor::alive(ctx, &env)?.is_some() {
        ui::info(format!("env `{}` is already up", env.name));
    } else {
        ui::info(format!("starting env `{}`", env.name));
    }
    supervisor::up(ctx, &env)?;
    show(ctx, &env)
}

pub fn down(ctx: &mut Ctx, args: &DownArgs) -> Result<()> {
    let env = ready_env(ctx, &args.name)?;
    interrupt::guard();
    if supervisor::stop_env(ctx, &env)? {
        ui::info(format!("stopped env `{}`", env.name));
    } else {
        ui::info(format!("env `{}` was not running", env.name));
    }
    Ok(())
}

pub fn restart(ctx: &mut Ctx, args: &RestartArgs) -> Result<()> {
    let env = ready_env(ctx, &args.name)?;
    interrupt::guard();
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
