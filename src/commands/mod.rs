//! One file per command: `run(ctx, args)`. Commands hold the workflow; the mechanisms (git,
//! the store, templates, provisioning) live in the modules they call.

mod agents;
mod create;
mod demo;
mod destroy;
mod doctor;
mod envcmd;
mod fanout;
mod gate;
mod init;
mod land;
mod logs;
mod pool;
mod ps;
mod review;
mod servers;
mod shell;

use std::path::Path;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::workspace::Workspace;

pub use shell::{COMPLETE_VAR, complete};

/// `grove destroy`, for `doctor --fix` finishing a half-done one.
pub fn destroy_env(ctx: &mut Ctx, args: &crate::cli::DestroyArgs) -> Result<()> {
    destroy::run(ctx, args)
}

pub fn dispatch(cli: Cli, ws: Result<Workspace, Fail>, cwd: &Path) -> Result<()> {
    let ctx = || -> Result<Ctx> { Ctx::open(ws.clone()?) };
    match cli.command {
        Command::Create(args) => create::run(&mut ctx()?, &args),
        Command::Ps(args) => ps::run(&mut ctx()?, &args),
        Command::Agent(args) => agents::agent(&mut ctx()?, &args),
        Command::Attach(args) => agents::attach(&ctx()?, &args),
        Command::AgentStatus(args) => agents::agent_status(&mut ctx()?, &args, cwd),
        Command::Hooks(cmd) => agents::hooks(&ctx()?, &cmd, cwd),
        Command::Pool(cmd) => pool::run(&mut ctx()?, &cmd),
        Command::Review(args) => review::review(&mut ctx()?, &args),
        Command::Diff(args) => review::diff(&ctx()?, &args),
        Command::Check(args) => review::check(&mut ctx()?, &args),
        Command::Gate(args) => {
            if args.background {
                // First of all: the hook that started it waits for this (see
                // `gate::request_in_background`).
                let _ = nix::unistd::setsid();
                crate::proc::close_inherited_fds();
            }
            gate::gate(&mut ctx()?, &args)
        }
        Command::Feedback(args) => gate::feedback(&mut ctx()?, &args),
        Command::Up(args) => servers::up(&mut ctx()?, &args),
        Command::Down(args) => servers::down(&mut ctx()?, &args),
        Command::Restart(args) => servers::restart(&mut ctx()?, &args),
        Command::Logs(args) => logs::run(&ctx()?, &args),
        Command::Land(args) => land::land(&mut ctx()?, &args),
        Command::Prune(args) => land::prune(&mut ctx()?, &args),
        Command::Destroy(args) => destroy::run(&mut ctx()?, &args),
        Command::Doctor(args) => doctor::run(ws, &args),
        Command::Path(args) => envcmd::path(&ctx()?, &args),
        Command::Cd(args) => shell::cd(ws, &args),
        Command::ShellInit(args) => shell::shell_init(&args),
        Command::Completions(args) => shell::completions(&args),
        Command::Env(args) => envcmd::env(&ctx()?, &args),
        Command::Exec(args) => envcmd::exec(&ctx()?, &args, cwd),
        Command::Init(args) => init::run(&args, cwd),
        Command::Demo(args) => demo::run(&args, cwd),
    }
}
