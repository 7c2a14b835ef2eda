//! Supervision, as the CLI sees it: start an env's supervisor, wait for its servers, stop it.
//!
//! Why servers die with their supervisor instead of being adopted by the next `grove up`: an
//! unsupervised server is one nobody restarts, probes or logs, and that holds its port with no
//! owner `ps` can name. So each server runs under a guard (`grove __exec`, see [`guard`]) that
//! stops it, and everything it forked, when the supervisor dies, even by `kill -9`. As a last
//! line of defence, every command that starts or stops an env first sweeps what a dead
//! supervisor may have left (processes in its servers' sessions, known by pid and start time).

pub mod guard;
mod policy;
pub mod probe;
mod run;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::ctx::Ctx;
use crate::error::Fail;
use crate::exec::Cmd;
use crate::logfile;
use crate::proc::{self, ProcId};
use crate::provision::Interrupted;
use crate::state::{EnvRow, ServerRow, ServerState};
use crate::sweep::{self, Scope};
use crate::{failpoint, interrupt, ui};

pub use policy::PortHolder;
pub use run::main;

/// How long `up` waits for the supervisor to register before calling it dead.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// The live supervisor of `env`, if any.
pub fn alive(ctx: &Ctx, env: &EnvRow) -> Result<Option<ProcId>> {
    Ok(ctx.store.supervisor(env.key)?.filter(ProcId::alive))
}

/// Starts `env`'s servers: warns about shared layers that do not answer, clears what a dead
/// supervisor left, starts a supervisor, and waits until every server is ready. With a
/// supervisor already there, the servers it gave up on are started again.
pub fn up(ctx: &mut Ctx, env: &EnvRow) -> Result<()> {
    // The env's isolated infra containers (stopped by a `down`) run before its servers.
    if ctx
        .store
        .isolated(env.key)?
        .iter()
        .any(|r| r.kind == crate::state::IsolateKind::Compose)
    {
        crate::compose::start_isolated(&ctx.engine(env), &env.token)?;
    }
    if !has_servers(ctx, env)? {
        return Ok(());
    }
    if let Some(sup) = alive(ctx, env)? {
        let failed: Vec<String> = ctx
            .store
            .servers(env.key)?
            .into_iter()
            .filter(|r| r.state == ServerState::Failed)
            .map(|r| r.layer)
            .collect();
        if failed.is_empty() {
            // Already up: only changes from here on are news.
            return wait_for(ctx, env, false);
        }
        ui::info(format!("  restarting what failed: {}", failed.join(", ")));
        for layer in &failed {
            ctx.store.request_restart(env.key, layer)?;
        }
        notify(sup);
        wait_restarted(ctx, env, &failed)?;
        return wait_for(ctx, env, false);
    }
    warn_unreachable_shared(ctx, env)?;
    // Clears the rows of an earlier run: they must not pass for the new servers' readiness.
    ensure_running(ctx, env)?;
    wait_ready(ctx, env)
}

/// Starts the env's supervisor unless it runs (it starts the servers; nothing waits for them).
pub fn ensure_running(ctx: &mut Ctx, env: &EnvRow) -> Result<ProcId> {
    if let Some(sup) = alive(ctx, env)? {
        return Ok(sup);
    }
    // An env made before the workspace had compose layers gets its engine now, before any
    // container of it exists.
    if env.engine.is_none() && ctx.ws.config.has_compose() {
        let engine = ctx.ws.config.docker.engine.pinned();
        let host = crate::config::engine_host_name(&engine.endpoint());
        ctx.store.set_engine(env.key, &engine.stored(), &host)?;
        // The manifest too: an env taken back from its folder keeps its engine.
        if let Some(env) = ctx.store.env_by_key(env.key)? {
            crate::manifest::write(ctx, &env)?;
        }
    }
    sweep_leftovers(ctx, env, false)?;
    failpoint::hit("up:after-sweep");
    ctx.store.clear_servers(env.key)?;
    let sup = spawn(ctx, env)?;
    failpoint::hit("up:after-spawn");
    Ok(sup)
}

/// Waits until each of `layers` has left `failed` (or failed anew), after a restart request.
fn wait_restarted(ctx: &Ctx, env: &EnvRow, layers: &[String]) -> Result<()> {
    let before: HashMap<String, ServerRow> = ctx
        .store
        .servers(env.key)?
        .into_iter()
        .map(|r| (r.layer.clone(), r))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let rows = ctx.store.servers(env.key)?;
        let moved = layers.iter().all(|l| {
            rows.iter().find(|r| &r.layer == l).is_none_or(|r| {
                let b = before.get(l);
                r.state != ServerState::Failed
                    || b.is_none_or(|b| b.message != r.message || b.leader != r.leader)
            })
        });
        if moved {
            return Ok(());
        }
        if let Some(sig) = interrupt::received() {
            return Err(Interrupted(sig).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Tells the supervisor to look at its requests (restarts, a headless agent to start).
pub fn notify(sup: ProcId) {
    let _ = kill(Pid::from_raw(sup.pid.cast_signed()), Signal::SIGUSR1);
}

/// Stops everything of the env that runs: its agent, its servers, and whatever else carries
/// its token and was left running (a setup step's or `grove exec`'s background process); a
/// `grove exec` still running is left alone unless `scope` is [`Scope::All`].
pub fn stop_env(ctx: &mut Ctx, env: &EnvRow, scope: Scope) -> Result<bool> {
    let agent = crate::agent::stop(ctx, env)?;
    failpoint::hit("down:after-agent");
    let servers = down(ctx, env)?;
    let grace = Duration::from_secs(max_grace(ctx));
    let rest = sweep::stop(&env.name, &env.token, scope, grace);
    failpoint::hit("down:after-sweep");
    Ok(servers | agent | (rest > 0))
}

fn max_grace(ctx: &Ctx) -> u64 {
    ctx.ws
        .config
        .layers
        .values()
        .map(|l| match l.runner {
            // Compose gives its containers their own time to stop, after grove's.
            crate::config::Runner::Compose(_) => l.stop_timeout_secs + crate::compose::STOP_SECS,
            crate::config::Runner::Process => l.stop_timeout_secs,
        })
        .max()
        .unwrap_or(crate::config::DEFAULT_STOP_TIMEOUT_SECS)
}

/// Whether any dedicated layer of the env has a server to run.
pub fn has_servers(ctx: &Ctx, env: &EnvRow) -> Result<bool> {
    Ok(ctx.store.instances(env.key)?.iter().any(|i| {
        ctx.ws
            .config
            .layers
            .get(&i.layer)
            .is_some_and(crate::config::Layer::runs_server)
    }))
}

/// Spawns the supervisor, detached, and waits until it has registered in the store.
fn spawn(ctx: &Ctx, env: &EnvRow) -> Result<ProcId> {
    require_whole(ctx, env)?;
    let log_path = ctx.log_dir(&env.name).join("supervisor.log");
    let log = crate::provision::open_log(&log_path)?;
    let exe = std::env::current_exe().context("locating the grove binary")?;
    // Tagged like what it starts: a supervisor whose store was lost (state.db deleted while
    // it ran) is still found by sweeps and `doctor`, never left restarting servers unseen.
    let tag = crate::proc::Tag::new(&env.token, crate::proc::Role::Supervisor);
    let mut child = Cmd::new(exe)
        .args(["__supervise", "--workspace"])
        .arg(&ctx.ws.root)
        .arg(&env.name)
        .env(crate::proc::TOKEN_VAR, tag.render())
        .spawn_logged(&log)?;
    let deadline = Instant::now() + REGISTER_TIMEOUT;
    loop {
        if let Some(sup) = ctx.store.supervisor(env.key)?
            && sup.pid == child.id()
            && sup.alive()
        {
            return Ok(sup);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = logfile::tail(&log_path, 10).join("\n");
            return Err(Fail::new(format!(
                "the supervisor of `{}` exited at once ({}):\n{tail}",
                env.name,
                crate::exec::describe_status(status)
            ))
            .hint(format!("its log is {}", log_path.display()))
            .into());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(
                Fail::new(format!("the supervisor of `{}` did not start", env.name))
                    .hint(format!("its log is {}", log_path.display()))
                    .into(),
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Refuses to start an env whose worktree is gone: its server would run nowhere.
pub fn require_whole(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    for i in ctx.store.instances(env.key)? {
        if !i.worktree.join(".git").exists() {
            return Err(Fail::new(format!(
                "env `{}` is broken: the worktree of `{}` is missing ({})",
                env.name,
                i.layer,
                i.worktree.display()
            ))
            .hint(format!(
                "`grove destroy {n}` cleans it up (`grove doctor` lists what else is amiss)",
                n = crate::shq(&env.name)
            ))
            .into());
        }
    }
    Ok(())
}

/// Stops `env`'s servers: asks the supervisor (SIGTERM: it stops them gracefully and exits),
/// and whether or not it did, makes sure no process of the env's servers remains.
/// Returns whether anything was running.
pub fn down(ctx: &mut Ctx, env: &EnvRow) -> Result<bool> {
    let grace = max_grace(ctx);
    let mut was_running = false;
    if let Some(sup) = alive(ctx, env)? {
        was_running = true;
        let _ = kill(Pid::from_raw(sup.pid.cast_signed()), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(grace + 5);
        while sup.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if sup.alive() {
            ui::warn(format!(
                "the supervisor of `{}` did not stop in time; killing it",
                env.name
            ));
            let _ = kill(Pid::from_raw(sup.pid.cast_signed()), Signal::SIGKILL);
        }
    }
    failpoint::hit("down:after-supervisor");
    was_running |= sweep_leftovers(ctx, env, true)?;
    // Forget the supervisor we stopped (or a dead one), never one a parallel `up` just started.
    match ctx.store.supervisor(env.key)? {
        Some(sup) if sup.alive() => {}
        Some(sup) => {
            ctx.store.unregister_supervisor(env.key, sup)?;
            ctx.store.clear_servers(env.key)?;
        }
        None => ctx.store.clear_servers(env.key)?,
    }
    Ok(was_running)
}

/// Stops whatever remains of the env's servers after a supervisor that is gone (killed, or
/// stopped with servers ignoring it): each recorded session, SIGTERM then SIGKILL; then any
/// process tagged as one of its servers, a daemon that left its session included.
fn sweep_leftovers(ctx: &mut Ctx, env: &EnvRow, isolated_too: bool) -> Result<bool> {
    let mut found = false;
    let grace = Duration::from_secs(max_grace(ctx));
    for row in ctx.store.servers(env.key)? {
        let Some(leader) = row.leader else { continue };
        if proc::session_members(leader).is_empty() {
            continue;
        }
        found = true;
        stop_session(leader, grace);
    }
    let tagged = sweep::stop(&env.name, &env.token, Scope::Servers, grace);
    // A container whose `compose up` was killed with everything around it keeps running:
    // the engine knows it by the env's label.
    // Isolated infra containers are no servers: `up` leaves them running, `down` stops them.
    let mut containers = 0;
    if ctx.uses_docker(env)? {
        // An engine that does not answer cannot be made to: said, and the rest goes on (its
        // containers are found by label when it answers again).
        containers = match crate::compose::stop_running(&ctx.engine(env), &env.token, isolated_too)
        {
            Ok(n) => n,
            Err(e) => {
                ui::warn(format!(
                    "cannot stop the containers of `{}`: {e:#}",
                    env.name
                ));
                0
            }
        };
        if containers > 0 {
            ui::info(format!(
                "  stopped {containers} container(s) of `{}` left running",
                env.name
            ));
        }
    }
    Ok(found || tagged > 0 || containers > 0)
}

/// SIGTERM to the session's group, wait up to `grace` for the session to empty, then SIGKILL
/// everything left in it.
fn stop_session(leader: ProcId, grace: Duration) {
    if leader.alive() {
        let _ = killpg(Pid::from_raw(leader.pid.cast_signed()), Signal::SIGTERM);
    } else {
        run::sweep(leader, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while !proc::session_members(leader).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    run::sweep(leader, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !proc::session_members(leader).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the supervisor to restart `layer` and waits for it to be ready again.
pub fn restart_layer(ctx: &mut Ctx, env: &EnvRow, layer: &str) -> Result<()> {
    let Some(sup) = alive(ctx, env)? else {
        return Err(Fail::new(format!("env `{}` is not running", env.name))
            .hint(format!(
                "start it with `grove up {}`",
                crate::shq(&env.name)
            ))
            .into());
    };
    let before = ctx
        .store
        .servers(env.key)?
        .into_iter()
        .find(|r| r.layer == layer);
    // A layer that ran nothing when the env started may have a `run` in grove.toml now: the
    // supervisor takes it on at this request.
    let runs = ctx
        .ws
        .config
        .layers
        .get(layer)
        .is_some_and(crate::config::Layer::runs_server);
    if before.is_none() && !runs {
        return Err(
            Fail::new(format!("layer `{layer}` of `{}` runs no server", env.name))
                .hint(format!(
                    "give it `run = \"…\"` in [layers.{layer}] of {}, then restart it",
                    ctx.ws.config.path.display()
                ))
                .into(),
        );
    }
    if before.is_some() && !runs {
        // Restarting it would stop the server and then fail to start it, leaving it failed
        // with nothing to bring it back but a `down`: say so before touching anything.
        return Err(Fail::new(format!(
            "layer `{layer}` has no `run` in {} any more; its server was left running",
            ctx.ws.config.path.display()
        ))
        .hint(format!(
            "`grove restart {}` restarts the whole env as grove.toml is now (without that server)",
            crate::shq(&env.name)
        ))
        .into());
    }
    if before.is_some() {
        ctx.store.request_restart(env.key, layer)?;
    } else {
        ctx.store.request_start(env.key, layer)?;
    }
    notify(sup);
    // Wait for the new process, so the readiness we then wait for is the new one's.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let now = ctx
            .store
            .servers(env.key)?
            .into_iter()
            .find(|r| r.layer == layer);
        // A new process, or a new failure (the request can fail before any process starts).
        let moved = match (&before, &now) {
            (Some(_), None) => true,
            (None, None) => {
                // The supervisor dropped the row it was asked to fill: it has no `run` for it.
                let log = ctx.log_dir(&env.name).join("supervisor.log");
                return Err(Fail::new(format!(
                    "the supervisor of `{}` did not start `{layer}`",
                    env.name
                ))
                .hint(format!("its log is {}", log.display()))
                .into());
            }
            (None, Some(r)) => r.leader.is_some() || r.state == ServerState::Failed,
            (Some(b), Some(r)) => {
                (r.leader.is_some() && r.leader != b.leader)
                    || (r.state == ServerState::Failed
                        && (b.state != ServerState::Failed || r.message != b.message))
            }
        };
        if moved {
            break;
        }
        if !sup.alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ui::info(format!("  {layer}  restarted"));
    wait_for(ctx, env, false)
}

/// Waits until every server of `env` is ready, printing each change; a failure prints the
/// server's last log lines and is an error (the env stays, to be fixed and restarted).
pub fn wait_ready(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    wait_for(ctx, env, true)
}

/// [`wait_ready`]; `announce` says whether the states found at first are printed too.
fn wait_for(ctx: &Ctx, env: &EnvRow, announce: bool) -> Result<()> {
    let started = Instant::now();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    // A server's message stays on its row across its next states: said once.
    let mut said: HashMap<String, String> = HashMap::new();
    if !announce {
        for row in ctx.store.servers(env.key)? {
            seen.insert(row.layer.clone(), (row.state, row.leader, row.restarts));
        }
    }
    let width = ctx
        .ws
        .config
        .layers
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0);
    loop {
        let rows = ctx.store.servers(env.key)?;
        let sup = ctx.store.supervisor(env.key)?.filter(ProcId::alive);
        for row in &rows {
            let key = (row.state, row.leader, row.restarts);
            if seen.get(&row.layer) != Some(&key) {
                report_change(row, seen.get(&row.layer), started, width, &mut said);
                seen.insert(row.layer.clone(), key);
            }
        }
        // A stopped server under a live supervisor exited on purpose and will not come back.
        if let Some(row) = rows
            .iter()
            .find(|r| matches!(r.state, ServerState::Failed | ServerState::Stopped))
        {
            return Err(failure(ctx, env, row));
        }
        if sup.is_some() && !rows.is_empty() && rows.iter().all(|r| r.state.is_up()) {
            return Ok(());
        }
        if sup.is_none() {
            // No servers to run (no layer has `run`), or a supervisor that exited cleanly. No
            // rows alone is not enough: a supervisor that died before it started anything left
            // none either.
            let done = if rows.is_empty() {
                !has_servers(ctx, env)?
            } else {
                rows.iter().all(|r| r.state == ServerState::Ready)
            };
            if done {
                return Ok(());
            }
            let log = ctx.log_dir(&env.name).join("supervisor.log");
            return Err(Fail::new(format!("the supervisor of `{}` died", env.name))
                .hint(format!("see {}", log.display()))
                .into());
        }
        if let Some(sig) = interrupt::received() {
            return Err(anyhow::Error::new(Interrupted(sig)).context(format!(
                "stopped waiting; env `{}` keeps starting in the background (`grove ps`)",
                env.name
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// What `wait_for` last saw of a server: its state, its process, its restarts.
type Seen = (ServerState, Option<ProcId>, u32);

fn report_change(
    row: &ServerRow,
    before: Option<&Seen>,
    t0: Instant,
    w: usize,
    said: &mut HashMap<String, String>,
) {
    let layer = &row.layer;
    let line = match row.state {
        ServerState::Starting if before.is_some_and(|b| b.0 == ServerState::Backoff) => {
            format!("restarted (pid {})", pid(row))
        }
        ServerState::Starting => match row.leader {
            Some(l) => format!("starting (pid {})", l.pid),
            None => "waiting".into(),
        },
        ServerState::Ready => format!("ready in {:.1}s", t0.elapsed().as_secs_f64()),
        ServerState::Unhealthy => "ready, but failing its health check".into(),
        ServerState::Backoff => format!(
            "exited ({}); restarting",
            row.last_exit.as_deref().unwrap_or("?")
        ),
        ServerState::Failed => "failed".into(),
        ServerState::Stopped => "stopped".into(),
    };
    ui::info(format!("  {layer:w$}  {line}"));
    if let Some(msg) = &row.message
        && msg.starts_with("port ")
        && before.is_none_or(|b| b.0 != row.state || b.1 != row.leader)
        && said.get(layer) != Some(msg)
    {
        ui::info(format!("  {layer:w$}  {msg}"));
        said.insert(layer.clone(), msg.clone());
    }
}

fn pid(row: &ServerRow) -> String {
    row.leader.map_or("-".into(), |l| l.pid.to_string())
}

fn failure(ctx: &Ctx, env: &EnvRow, row: &ServerRow) -> anyhow::Error {
    let log = ctx.log_dir(&env.name).join(format!("{}.log", row.layer));
    let tail: Vec<String> = logfile::tail(&log, 20)
        .iter()
        .map(|l| format!("  | {}", logfile::split(l).1))
        .collect();
    let why = row
        .message
        .clone()
        .or_else(|| row.last_exit.clone())
        .unwrap_or_default();
    Fail::new(format!(
        "layer `{}` of `{}` failed: {why}\nlast lines of {}:\n{}",
        row.layer,
        env.name,
        log.display(),
        tail.join("\n")
    ))
    .hint(format!(
        "fix it, then `grove restart {} {}`; the env is kept",
        crate::shq(&env.name),
        row.layer
    ))
    .into()
}

/// Warns when a shared layer that a dedicated layer's `env` reads does not accept connections:
/// the main stack is down, and the env will not reach it until it is up.
fn warn_unreachable_shared(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    let instances = ctx.store.instances(env.key)?;
    let dedicated: Vec<&str> = instances.iter().map(|i| i.layer.as_str()).collect();
    let mut checked = Vec::new();
    for inst in &instances {
        let Some(layer) = ctx.ws.config.layers.get(&inst.layer) else {
            continue;
        };
        for dep in layer.references() {
            if dedicated.contains(&dep.as_str()) || checked.contains(&dep) {
                continue;
            }
            checked.push(dep.clone());
            let Some(url) = ctx
                .ws
                .config
                .layers
                .get(&dep)
                .and_then(|l| l.shared_url.clone())
            else {
                continue;
            };
            if let Some((host, port)) = host_port(&url)
                && !reachable(&host, port)
            {
                ui::warn(format!(
                    "shared `{dep}` at {url} does not answer: `{}` of `{}` will not reach it until the main stack is up",
                    inst.layer, env.name
                ));
            }
        }
    }
    Ok(())
}

fn reachable(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// Host and port of a URL such as `postgres://user:pw@db:5432/app`, with the scheme's default
/// port when none is written.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (
            h.to_string(),
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        )
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()),
            None => (hostport.to_string(), None),
        }
    };
    let default = match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "postgres" | "postgresql" => 5432,
        "redis" => 6379,
        "mysql" => 3306,
        "amqp" => 5672,
        "kafka" => 9092,
        "mongodb" => 27017,
        _ => return port.map(|p| (host, p)),
    };
    Some((host, port.unwrap_or(default)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_urls() {
        assert_eq!(
            host_port("http://localhost:3000/x"),
            Some(("localhost".into(), 3000))
        );
        assert_eq!(
            host_port("postgres://u:p@db/app"),
            Some(("db".into(), 5432))
        );
        assert_eq!(
            host_port("redis://[::1]:6380/0"),
            Some(("::1".into(), 6380))
        );
        assert_eq!(
            host_port("https://example.test"),
            Some(("example.test".into(), 443))
        );
        assert_eq!(host_port("weird://host"), None);
        assert_eq!(host_port("not a url"), None);
    }
}
