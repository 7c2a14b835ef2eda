//! The supervisor process (`grove __supervise`): one per running env, single-threaded.
//!
//! Invariants:
//! - every server runs `sh -c RUN` under a guard (`grove __exec`) that leads the server's own
//!   session (its pid is also the process group and session id, recorded as the server's
//!   leader) and stops the server when this supervisor dies;
//! - the supervisor is a child subreaper: a server's orphaned grandchildren become its children,
//!   are reaped here, and are swept (by session) when the server stops;
//! - it sleeps in `poll` until output, a signal (SIGCHLD wakes it on any exit) or the next timer:
//!   no busy loop;
//! - every state change is written to the store at once; `ps` reads it and checks it against
//!   the processes themselves.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};

use super::policy::{self, AfterCrash, Crashes, Health, PortHolder, Readiness};
use super::probe::{self, LogMatcher};
use crate::config::{Layer, Probe};
use crate::ctx::Ctx;
use crate::exec::Cmd;
use crate::logfile::{LineRelay, LogWriter};
use crate::proc::{self, ProcId, Role, Tag};
use crate::state::{AgentMode, EnvRow, ServerRow, ServerState};
use crate::workspace::Workspace;

/// How often a starting server is probed.
const PROBE_EVERY: Duration = Duration::from_millis(100);
const EXEC_PROBE_EVERY: Duration = Duration::from_millis(500);
/// An `exec` probe running longer than this is stopped and started again.
const EXEC_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two probes triggered by output.
const OUTPUT_PROBE_GAP: Duration = Duration::from_millis(20);
/// When a ready server is next checked (tcp/http probes): its layer's `health_every` (10 s by
/// default) from `now`; `None` when it is turned off. Debug builds (the tests') read
/// `GROVE_HEALTH_EVERY_MS`, so that "unhealthy after three misses" takes a test less than 30 s.
fn next_health_check(cfg: &Layer, now: Instant) -> Option<Instant> {
    let secs = cfg.health_every_secs?;
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("GROVE_HEALTH_EVERY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(now + Duration::from_millis(ms));
    }
    Some(now + Duration::from_secs(secs))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Stop,
    Restart,
    Fail,
}

#[derive(Debug)]
enum State {
    /// Waiting for the layers its `env` reads to be ready.
    Waiting,
    Starting {
        deadline: Instant,
        next_probe: Instant,
    },
    Ready {
        /// `None`: the layer's health checks are turned off.
        next_check: Option<Instant>,
        health: Health,
    },
    Backoff {
        until: Instant,
    },
    Stopping {
        deadline: Instant,
        then: Then,
        killed: bool,
    },
    Failed,
    Stopped,
}

impl State {
    /// What the CLI sees of this state.
    fn recorded(&self) -> ServerState {
        match self {
            State::Waiting | State::Starting { .. } => ServerState::Starting,
            State::Ready { health, .. } if health.unhealthy() => ServerState::Unhealthy,
            State::Ready { .. } => ServerState::Ready,
            State::Backoff { .. } => ServerState::Backoff,
            State::Stopping {
                then: Then::Restart,
                ..
            } => ServerState::Starting,
            // Given up on: failed already, while its process is being stopped.
            State::Stopping {
                then: Then::Fail, ..
            } => ServerState::Failed,
            State::Stopping { .. } | State::Stopped => ServerState::Stopped,
            State::Failed => ServerState::Failed,
        }
    }
}

struct Server {
    cfg: Layer,
    deps: Vec<String>,
    port: Option<u16>,
    state: State,
    leader: Option<ProcId>,
    out: Option<LineRelay>,
    log: LogWriter,
    matcher: Option<LogMatcher>,
    log_seen: bool,
    /// Output arrived since the last readiness probe.
    fresh_output: bool,
    last_probe: Instant,
    /// A running `exec` readiness probe: the leader of its own process group.
    exec_probe: Option<(ProcId, Instant)>,
    exec_ok: bool,
    /// A compose layer's container is running (its engine said so since the last start).
    container_up: bool,
    started_at: Instant,
    restarts: u32,
    crashes: Crashes,
    last_exit: Option<String>,
    message: Option<String>,
    ready_since: Option<i64>,
    /// The port was moved once already because another program took it.
    relocated: bool,
}

struct Flags {
    chld: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
}

struct Supervisor {
    ctx: Ctx,
    env: EnvRow,
    me: ProcId,
    servers: Vec<Server>,
    wake: OwnedFd,
    flags: Flags,
    stopping: bool,
    log: LogWriter,
    /// The env's headless agent, while it runs.
    agent: Option<Agent>,
}

/// A headless agent: started once, never restarted, stopped with the env.
struct Agent {
    leader: ProcId,
    out: Option<LineRelay>,
    log: LogWriter,
    /// Set when a stop began: SIGKILL after this.
    kill_at: Option<Instant>,
}

/// How long a headless agent gets between SIGTERM and SIGKILL.
const AGENT_GRACE: Duration = Duration::from_secs(10);

/// Entry point of `grove __supervise --workspace ROOT ENV`.
pub fn main(root: &Path, env_name: &str) -> Result<()> {
    // Our own session: the terminal's Ctrl-C and hang-up no longer reach us.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let ws = Workspace::discover(Some(root), root)?;
    let mut ctx = Ctx::open(ws)?;
    let env = ctx.require_env(env_name)?;
    let me = ProcId::current();
    let log = LogWriter::open(&ctx.log_dir(&env.name).join("supervisor.log"))?;
    let (wake, flags) = signals()?;
    if !ctx.store.register_supervisor(env.key, me)? {
        return Ok(());
    }
    crate::failpoint::hit("supervise:after-register");
    let mut sup = Supervisor {
        ctx,
        env,
        me,
        servers: Vec::new(),
        wake,
        flags,
        stopping: false,
        log,
        agent: None,
    };
    sup.log.line(&format!("supervisor {} started", me.pid));
    if let Ok(instances) = sup.ctx.store.instances(sup.env.key) {
        crate::disk::refresh_in_background(
            sup.ctx.home.clone(),
            sup.env.key,
            sup.ctx.ws.env_dir(&sup.env.name),
            &instances
                .into_iter()
                .map(|i| i.worktree)
                .collect::<Vec<_>>(),
        );
    }
    let result = sup.load().and_then(|()| {
        sup.start_agent();
        sup.run()
    });
    if let Err(e) = &result {
        sup.log.line(&format!("supervisor failed: {e:#}"));
        sup.stop_all_now();
    }
    let _ = sup.ctx.store.unregister_supervisor(sup.env.key, me);
    sup.log.line("supervisor exited");
    result
}

/// A pipe that becomes readable on any of our signals, and a flag per signal we act on.
fn signals() -> Result<(OwnedFd, Flags)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let flags = Flags {
        chld: Arc::new(AtomicBool::new(false)),
        term: Arc::new(AtomicBool::new(false)),
        usr1: Arc::new(AtomicBool::new(false)),
    };
    let w = std::fs::File::from(w);
    for (sig, flag) in [
        (SIGCHLD, &flags.chld),
        (SIGTERM, &flags.term),
        (SIGINT, &flags.term),
        (SIGHUP, &flags.term),
        (SIGUSR1, &flags.usr1),
    ] {
        signal_hook::flag::register(sig, Arc::clone(flag))?;
        signal_hook::low_level::pipe::register(sig, w.try_clone()?)?;
    }
    Ok((r, flags))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Supervisor {
    /// Reads the env's dedicated layers that have a `run`, and their dependencies.
    fn load(&mut self) -> Result<()> {
        let instances = self.ctx.store.instances(self.env.key)?;
        let dedicated: Vec<String> = instances.iter().map(|i| i.layer.clone()).collect();
        self.ctx.store.clear_servers(self.env.key)?;
        for inst in &instances {
            if let Some(server) = self.server_of(inst, &dedicated)? {
                self.servers.push(server);
            }
        }
        for i in 0..self.servers.len() {
            // Every port settled before anything starts: layers that start at once read each
            // other's URLs, which a later move would make stale.
            self.relocate(i);
            self.save(i);
        }
        Ok(())
    }

    /// The server of a dedicated layer, when grove.toml gives it a `run`.
    fn server_of(
        &self,
        inst: &crate::state::Instance,
        dedicated: &[String],
    ) -> Result<Option<Server>> {
        let Some(cfg) = self.ctx.ws.config.layers.get(&inst.layer).cloned() else {
            return Ok(None);
        };
        if !cfg.runs_server() {
            return Ok(None);
        }
        let deps = cfg
            .start_deps(self.ctx.ws.config.start)
            .into_iter()
            .filter(|d| d != &cfg.name && dedicated.contains(d))
            .collect();
        let log = LogWriter::open(
            &self
                .ctx
                .log_dir(&self.env.name)
                .join(format!("{}.log", cfg.name)),
        )?;
        let matcher = match &cfg.ready.probe {
            Probe::Log(text) => Some(LogMatcher::new(text)),
            _ => None,
        };
        Ok(Some(Server {
            cfg,
            deps,
            port: inst.port,
            state: State::Waiting,
            leader: None,
            out: None,
            log,
            matcher,
            log_seen: false,
            fresh_output: false,
            last_probe: Instant::now(),
            exec_probe: None,
            exec_ok: false,
            container_up: false,
            started_at: Instant::now(),
            restarts: 0,
            crashes: Crashes::default(),
            last_exit: None,
            message: None,
            ready_since: None,
            relocated: false,
        }))
    }

    /// Adds the servers of requested layers that had no `run` when the supervisor started and
    /// have one in grove.toml now: a restart is how a new `run` reaches a running env.
    fn add_new_servers(&mut self, layers: &[String]) -> Result<()> {
        let instances = self.ctx.store.instances(self.env.key)?;
        let dedicated: Vec<String> = instances.iter().map(|i| i.layer.clone()).collect();
        for inst in instances.iter().filter(|i| layers.contains(&i.layer)) {
            if self.servers.iter().any(|s| s.cfg.name == inst.layer) {
                continue;
            }
            if let Some(server) = self.server_of(inst, &dedicated)? {
                self.log
                    .line(&format!("{} has a `run` now: supervised", inst.layer));
                self.servers.push(server);
                let i = self.servers.len() - 1;
                self.relocate(i);
                self.save(i);
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        loop {
            if self.flags.chld.swap(false, Ordering::SeqCst) {
                self.reap();
            }
            if self.flags.term.swap(false, Ordering::SeqCst) && !self.stopping {
                self.log.line("stop requested");
                self.stopping = true;
                for i in 0..self.servers.len() {
                    self.stop(i, Then::Stop);
                }
                self.stop_agent();
            }
            if self.flags.usr1.swap(false, Ordering::SeqCst) {
                self.start_agent();
                let layers = self.ctx.store.take_restart_requests(self.env.key)?;
                // A restart is how a fixed grove.toml reaches a running env.
                self.reload_config(&layers);
                if let Err(e) = self.add_new_servers(&layers) {
                    self.log.line(&format!("cannot add new servers: {e:#}"));
                }
                for layer in layers {
                    if let Some(i) = self.servers.iter().position(|s| s.cfg.name == layer) {
                        self.restart(i);
                    } else {
                        // Asked to start what has no `run` here (grove.toml changed again, or
                        // would not load): no row may wait for a server that never comes.
                        let _ = self.ctx.store.delete_server(self.env.key, &layer);
                    }
                }
            }
            self.tick();
            if let Some(a) = &self.agent
                && a.kill_at.is_some_and(|t| Instant::now() >= t)
            {
                let _ = killpg(Pid::from_raw(a.leader.pid.cast_signed()), Signal::SIGKILL);
            }
            if self.stopping
                && self.agent.is_none()
                && self
                    .servers
                    .iter()
                    .all(|s| matches!(s.state, State::Stopped | State::Failed))
            {
                return Ok(());
            }
            self.wait()?;
        }
    }

    /// Starts the headless agent the CLI asked for (a row with a spec and no process yet).
    fn start_agent(&mut self) {
        if self.agent.is_some() || self.stopping {
            return;
        }
        let Ok(Some(row)) = self.ctx.store.agent(self.env.key) else {
            return;
        };
        if row.mode != AgentMode::Headless || row.process.is_some() || row.exit.is_some() {
            return;
        }
        let Some(spec) = row
            .spec
            .as_deref()
            .and_then(|s| serde_json::from_str::<crate::agent::Spec>(s).ok())
        else {
            return;
        };
        let started = self.spawn_agent(&spec);
        // What it was started with is no business of the store's once it runs.
        let _ = self.ctx.store.clear_agent_spec(self.env.key);
        match started {
            Ok(agent) => {
                let _ = self
                    .ctx
                    .store
                    .set_agent_process(self.env.key, Some(agent.leader), None);
                self.agent = Some(agent);
            }
            Err(e) => {
                self.log.line(&format!("cannot start the agent: {e:#}"));
                let _ = self.ctx.store.set_agent_process(
                    self.env.key,
                    None,
                    Some(&format!("cannot start: {e:#}")),
                );
            }
        }
    }

    fn spawn_agent(&mut self, spec: &crate::agent::Spec) -> Result<Agent> {
        let mut log = LogWriter::open(&self.ctx.log_dir(&self.env.name).join("agent.log"))?;
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let relay = LineRelay::new(r)?;
        let exe = std::env::current_exe().context("locating the grove binary")?;
        let child = Cmd::new(exe)
            .args(["__exec", "--parent", &self.me.pid.to_string()])
            .args(["--grace", &AGENT_GRACE.as_secs().to_string(), "--"])
            .args(&spec.argv)
            .cwd(&spec.cwd)
            .env_clear()
            .envs(spec.take_environment())
            .spawn_to(w)?;
        let leader = ProcId::of(child.id()).context("the agent vanished at once")?;
        log.line(&format!("[grove] agent started (pid {})", leader.pid));
        Ok(Agent {
            leader,
            out: Some(relay),
            log,
            kill_at: None,
        })
    }

    fn stop_agent(&mut self) {
        if let Some(a) = &mut self.agent {
            let _ = killpg(Pid::from_raw(a.leader.pid.cast_signed()), Signal::SIGTERM);
            a.kill_at = Some(Instant::now() + AGENT_GRACE);
        }
    }

    /// Re-reads grove.toml for the layers about to restart; a broken file keeps the old one.
    fn reload_config(&mut self, layers: &[String]) {
        let root = self.ctx.ws.root.clone();
        match Workspace::discover(Some(&root), &root) {
            Ok(ws) => {
                for s in &mut self.servers {
                    if layers.contains(&s.cfg.name)
                        && let Some(cfg) = ws.config.layers.get(&s.cfg.name)
                    {
                        s.cfg = cfg.clone();
                        s.matcher = match &cfg.ready.probe {
                            Probe::Log(text) => Some(LogMatcher::new(text)),
                            _ => None,
                        };
                    }
                }
                self.ctx.ws = ws;
            }
            Err(e) => self
                .log
                .line(&format!("grove.toml not reloaded: {}", e.msg)),
        }
    }

    /// Sleeps until output, a signal, or the next timer.
    fn wait(&mut self) -> Result<()> {
        let now = Instant::now();
        let next = self.servers.iter().filter_map(|s| match s.state {
            State::Starting {
                next_probe,
                deadline,
            } if s.fresh_output => Some(
                next_probe
                    .min(deadline)
                    .min(s.last_probe + OUTPUT_PROBE_GAP),
            ),
            State::Starting {
                next_probe,
                deadline,
            } => Some(next_probe.min(deadline)),
            State::Ready { next_check, .. } => next_check,
            State::Backoff { until } => Some(until),
            State::Stopping { deadline, .. } => Some(deadline),
            _ => None,
        });
        // A layer whose dependencies just became ready (or failed) must not wait for a timer.
        let due_now = !self.stopping
            && (0..self.servers.len()).any(|i| {
                matches!(self.servers[i].state, State::Waiting)
                    && (self.deps_ready(i) || self.failed_dep(i).is_some())
            });
        let next = next
            .chain(due_now.then_some(now))
            .chain(self.agent.as_ref().and_then(|a| a.kill_at));
        let timeout = match next.min() {
            Some(t) => {
                let ms = t.saturating_duration_since(now).as_millis();
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        let mut owners = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            if let Some(relay) = &s.out {
                fds.push(PollFd::new(relay.fd(), PollFlags::POLLIN));
                owners.push(i);
            }
        }
        let agent_fd = self.agent.as_ref().and_then(|a| a.out.as_ref()).map(|r| {
            fds.push(PollFd::new(r.fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            let mut buf = [0u8; 64];
            while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        }
        for (k, i) in owners.into_iter().enumerate() {
            if ready[k + 1] {
                self.drain(i);
            }
        }
        if agent_fd.is_some_and(|k| ready[k]) {
            self.drain_agent();
        }
        Ok(())
    }

    fn drain_agent(&mut self) {
        let Some(a) = &mut self.agent else { return };
        let Some(relay) = &mut a.out else { return };
        let log = &mut a.log;
        relay.pump(|l| log.line(l));
        if relay.eof {
            a.out = None;
        }
    }

    /// Reads what server `i` wrote, line by line into its log.
    fn drain(&mut self, i: usize) {
        let Some(mut relay) = self.servers[i].out.take() else {
            return;
        };
        let mut lines = Vec::new();
        relay.pump(|l| lines.push(l.to_string()));
        for l in lines {
            self.line(i, &l);
        }
        if !relay.eof {
            self.servers[i].out = Some(relay);
        }
    }

    fn line(&mut self, i: usize, text: &str) {
        let s = &mut self.servers[i];
        s.log.line(text);
        s.fresh_output = true;
        if let Some(m) = &s.matcher
            && matches!(s.state, State::Starting { .. })
            && m.matches(text)
        {
            s.log_seen = true;
        }
    }

    /// Collects every exited child: servers, exec probes, and orphans we adopted.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.exited(pid, format!("exit {code}"), code == 0)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exited(pid, format!("killed by {}", sig.as_str()), false);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, pid: Pid, how: String, success: bool) {
        let pid = pid.as_raw().unsigned_abs();
        if self.agent.as_ref().is_some_and(|a| a.leader.pid == pid) {
            self.drain_agent();
            if let Some(mut a) = self.agent.take() {
                sweep(a.leader, Signal::SIGKILL);
                a.log.line(&format!("[grove] agent exited ({how})"));
                let _ = self.ctx.store.agent_exited(self.env.key, a.leader, &how);
            }
            if !self.stopping {
                // A relaunch asked for while it was ending waits in the store: start it now.
                self.start_agent();
            }
            // Messages that waited for the agent to end relaunch it (`[agent] continue`).
            if !self.stopping && self.agent.is_none() {
                match crate::feedback::deliver(&mut self.ctx, &self.env) {
                    Ok(Some(d)) => self.log.line(&format!("feedback: {}", d.describe())),
                    Ok(None) => {}
                    Err(e) => self.log.line(&format!("feedback not delivered: {e:#}")),
                }
            }
            return;
        }
        if let Some(s) = self
            .servers
            .iter_mut()
            .find(|s| s.exec_probe.is_some_and(|(p, _)| p.pid == pid))
        {
            s.exec_probe = None;
            s.exec_ok = success;
            return;
        }
        let Some(i) = self
            .servers
            .iter()
            .position(|s| s.leader.is_some_and(|l| l.pid == pid))
        else {
            return;
        };
        let leader = self.servers[i].leader.take();
        if let Some(leader) = leader {
            // Whatever it left behind goes with it: in its session, and what left the session
            // (a daemon it forked) but carries its tag, else every restart would add one. When
            // the whole env stops, the daemons are left to `down`'s sweep, which stops them
            // gracefully and says so.
            sweep(leader, Signal::SIGKILL);
            if !self.stopping {
                self.kill_daemons(i);
            }
        }
        self.drain(i);
        self.servers[i].out = None;
        let s = &mut self.servers[i];
        s.last_exit = Some(how.clone());
        s.log
            .line(&format!("[grove] {} exited ({how})", s.cfg.name));
        match s.state {
            State::Stopping {
                then: Then::Restart,
                ..
            } if !self.stopping => {
                // Started again by the next tick, once the layers it reads are ready.
                s.state = State::Waiting;
                self.save(i);
            }
            State::Stopping {
                then: Then::Fail, ..
            } => {
                s.state = State::Failed;
                self.save(i);
            }
            State::Stopping {
                then: Then::Stop, ..
            } => {
                s.state = State::Stopped;
                self.save(i);
            }
            _ if self.stopping => {
                s.state = State::Stopped;
                self.save(i);
            }
            _ => self.crashed(i, success, leader),
        }
    }

    /// Kills what server `i` started outside its session (found by its tag), and logs it.
    fn kill_daemons(&mut self, i: usize) {
        let name = self.servers[i].cfg.name.clone();
        let left = proc::tagged(|t| {
            t.env == self.env.token && t.role == Role::Server && t.layer.as_deref() == Some(&name)
        });
        for (p, _) in &left {
            let what = proc::name(p.pid).unwrap_or_default();
            let _ = nix::sys::signal::kill(Pid::from_raw(p.pid.cast_signed()), Signal::SIGKILL);
            self.servers[i].log.line(&format!(
                "[grove] killed pid {} ({what}), which {name} left running outside its session",
                p.pid
            ));
        }
    }

    /// A server exited on its own: move its port if another program took it, else restart it
    /// by its policy, with backoff, until it crashes too often.
    fn crashed(&mut self, i: usize, success: bool, leader: Option<ProcId>) {
        let was_starting = matches!(self.servers[i].state, State::Starting { .. });
        // Its session was just killed: let it let go of the port before asking who holds it.
        if let Some(l) = leader {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !proc::session_members(l).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if was_starting && self.relocate(i) {
            self.servers[i].state = State::Waiting;
            self.start(i);
            return;
        }
        let s = &mut self.servers[i];
        if !policy::restarts(s.cfg.restart, success) {
            // Exiting on purpose after being ready is a stop; before, it never came up.
            s.state = if success && !was_starting {
                State::Stopped
            } else {
                State::Failed
            };
            let when = if was_starting {
                " before it was ready"
            } else {
                ""
            };
            s.message = Some(format!(
                "exited ({}){when}",
                s.last_exit.clone().unwrap_or_default()
            ));
            self.save(i);
            return;
        }
        let now = Instant::now();
        match s.crashes.record(now) {
            AfterCrash::GiveUp(n) => {
                s.state = State::Failed;
                s.message = Some(format!(
                    "crashed {n} times within {} s ({}); not restarting",
                    policy::RESTART_WINDOW.as_secs(),
                    s.last_exit.clone().unwrap_or_default()
                ));
                s.log.line(&format!(
                    "[grove] {}",
                    s.message.clone().unwrap_or_default()
                ));
            }
            AfterCrash::Restart(delay) => {
                s.restarts += 1;
                s.state = State::Backoff { until: now + delay };
                s.log.line(&format!(
                    "[grove] restarting in {:.1} s",
                    delay.as_secs_f64()
                ));
            }
        }
        self.save(i);
    }

    /// Who listens on server `i`'s port: nobody, the server (a process of its session, or one
    /// that left it but carries its tag), or another program.
    fn port_holder(&self, i: usize) -> PortHolder {
        let s = &self.servers[i];
        let Some(port) = s.port else {
            return PortHolder::Nobody;
        };
        if let crate::config::Runner::Compose(_) = &s.cfg.runner {
            // The engine publishes a container's port (docker-proxy, or a NAT rule with no
            // listener here): ask it whether the env's container is the one on the port.
            return crate::compose::port_holder(
                &self.ctx.engine(&self.env),
                self.env.engine_host.as_deref().unwrap_or("localhost"),
                &self.env.token,
                &s.cfg.name,
                port,
            );
        }
        let mut ours: Vec<u32> = s
            .leader
            .map(|l| proc::session_members(l).iter().map(|m| m.pid).collect())
            .unwrap_or_default();
        ours.push(self.me.pid);
        match proc::listener_held_by(port, &ours) {
            None => return PortHolder::Nobody,
            Some(true) => return PortHolder::Ours,
            Some(false) => {}
        }
        let tagged: Vec<u32> = proc::tagged(|t| {
            t.env == self.env.token
                && t.role == Role::Server
                && t.layer.as_deref() == Some(&s.cfg.name)
        })
        .into_iter()
        .map(|(p, _)| p.pid)
        .collect();
        if proc::listener_held_by(port, &tagged) == Some(true) {
            PortHolder::Ours
        } else {
            PortHolder::Foreign
        }
    }

    /// When another program holds server `i`'s leased port, leases the next free one (once
    /// per start) and says so. Layers that read this one's URL are restarted with the new one.
    fn relocate(&mut self, i: usize) -> bool {
        let (Some(port), Some(range)) = (self.servers[i].port, self.servers[i].cfg.ports) else {
            return false;
        };
        if !policy::moves_port(self.port_holder(i), self.servers[i].relocated) {
            return false;
        }
        // A port on another machine's engine: free there when nothing answers, and its
        // holder is no process of this machine.
        let host = self.probe_host(i).to_string();
        let local = crate::compose::is_local(&host);
        let holder = if local { proc::port_holder(port) } else { None };
        let layer = self.servers[i].cfg.name.clone();
        let moved =
            self.ctx
                .store
                .relocate_port(self.env.key, &layer, (range.start, range.end), |p| {
                    if local {
                        crate::ports::is_free(p)
                    } else {
                        !probe::tcp(&host, p)
                    }
                });
        let Ok(Some(new_port)) = moved else {
            return false;
        };
        let who = holder.map_or("another program".into(), |(pid, name)| {
            format!("pid {pid} ({name})")
        });
        let msg = format!("port {port} was taken by {who}; moved `{layer}` to port {new_port}");
        let s = &mut self.servers[i];
        s.relocated = true;
        s.port = Some(new_port);
        s.message = Some(msg.clone());
        s.log.line(&format!("[grove] {msg}"));
        self.log.line(&msg);
        for j in 0..self.servers.len() {
            // Those that wait for it, and those started at once with its old URL.
            let reads = self.servers[j].deps.contains(&layer)
                || self.servers[j].cfg.references().contains(&layer);
            if reads && self.servers[j].leader.is_some() {
                self.stop(j, Then::Restart);
            }
        }
        true
    }

    /// Timers: starts, probes, deadlines.
    fn tick(&mut self) {
        let now = Instant::now();
        for i in 0..self.servers.len() {
            match self.servers[i].state {
                State::Waiting if !self.stopping => {
                    if let Some(dep) = self.failed_dep(i) {
                        self.servers[i].state = State::Failed;
                        self.servers[i].message = Some(format!("not started: `{dep}` failed"));
                        self.save(i);
                    } else if self.deps_ready(i) {
                        self.start(i);
                    }
                }
                State::Backoff { until } if now >= until && !self.stopping => {
                    self.servers[i].state = State::Waiting;
                    self.start(i);
                }
                State::Starting {
                    deadline,
                    next_probe,
                } => {
                    // Probed on its timer, and soon after it prints something (a server often
                    // says it listens): quick to notice, yet bounded for a chatty build.
                    let s = &self.servers[i];
                    let due = now >= next_probe
                        || (s.fresh_output && now >= s.last_probe + OUTPUT_PROBE_GAP);
                    if !due && now < deadline {
                        continue;
                    }
                    self.servers[i].fresh_output = false;
                    self.servers[i].last_probe = now;
                    let readiness = if due {
                        self.probe_starting(i)
                    } else {
                        Readiness::NotYet
                    };
                    if readiness == Readiness::Ready {
                        let s = &mut self.servers[i];
                        let took = s.started_at.elapsed().as_secs_f64();
                        s.state = State::Ready {
                            next_check: next_health_check(&s.cfg, now),
                            health: Health::default(),
                        };
                        s.ready_since = Some(now_ms());
                        s.message = s.message.take().filter(|m| m.starts_with("port "));
                        s.log
                            .line(&format!("[grove] {} ready in {took:.2} s", s.cfg.name));
                        self.save(i);
                    } else if readiness == Readiness::Foreign || now >= deadline {
                        if self.relocate(i) {
                            self.stop(i, Then::Restart);
                        } else if now >= deadline {
                            let s = &mut self.servers[i];
                            let msg = format!(
                                "not ready after {} s ({})",
                                s.cfg.ready.timeout_secs,
                                describe_probe(&s.cfg.ready.probe)
                            );
                            s.log.line(&format!("[grove] {msg}"));
                            s.message = Some(msg);
                            self.stop(i, Then::Fail);
                        } else {
                            self.next_probe(i, now, deadline);
                        }
                    } else {
                        self.next_probe(i, now, deadline);
                    }
                }
                State::Ready {
                    next_check,
                    mut health,
                } if next_check.is_some_and(|t| now >= t) => {
                    let was = health.unhealthy();
                    let unhealthy = health.observe(self.health(i));
                    self.servers[i].state = State::Ready {
                        next_check: next_health_check(&self.servers[i].cfg, now),
                        health,
                    };
                    if unhealthy != was {
                        let s = &mut self.servers[i];
                        s.log.line(&if unhealthy {
                            format!(
                                "[grove] {} failed {} health checks in a row",
                                s.cfg.name, health.misses
                            )
                        } else {
                            format!("[grove] {} is healthy again", s.cfg.name)
                        });
                        self.save(i);
                    }
                }
                State::Stopping {
                    deadline,
                    then,
                    killed: false,
                } if now >= deadline => {
                    if let Some(leader) = self.servers[i].leader {
                        let _ = killpg(Pid::from_raw(leader.pid.cast_signed()), Signal::SIGKILL);
                        sweep(leader, Signal::SIGKILL);
                        self.servers[i]
                            .log
                            .line("[grove] did not stop in time: killed");
                    }
                    self.servers[i].state = State::Stopping {
                        deadline: now + Duration::from_secs(5),
                        then,
                        killed: true,
                    };
                }
                _ => {}
            }
        }
    }

    /// A dependency of server `i` that failed: `i` will never start.
    fn failed_dep(&self, i: usize) -> Option<String> {
        self.servers[i]
            .deps
            .iter()
            .find(|d| {
                self.servers
                    .iter()
                    .any(|s| &s.cfg.name == *d && matches!(s.state, State::Failed))
            })
            .cloned()
    }

    fn deps_ready(&self, i: usize) -> bool {
        self.servers[i].deps.iter().all(|d| {
            self.servers
                .iter()
                .find(|s| &s.cfg.name == d)
                .is_none_or(|s| matches!(s.state, State::Ready { .. }))
        })
    }

    fn next_probe(&mut self, i: usize, now: Instant, deadline: Instant) {
        let every = if matches!(self.servers[i].cfg.ready.probe, Probe::Exec(_)) {
            EXEC_PROBE_EVERY
        } else {
            PROBE_EVERY
        };
        self.servers[i].state = State::Starting {
            deadline,
            next_probe: now + every,
        };
    }

    /// One readiness check of a starting server. A tcp or http answer counts only when the
    /// listening socket is the server's own: another program answering on the port (started
    /// on it while the env was down) would otherwise pass for the server.
    fn probe_starting(&mut self, i: usize) -> Readiness {
        let s = &self.servers[i];
        if s.leader.is_none() {
            return Readiness::NotYet;
        }
        let (probe, port) = (s.cfg.ready.probe.clone(), s.port);
        if let crate::config::Runner::Compose(spec) = &s.cfg.runner
            && matches!(probe, Probe::Tcp | Probe::Http { .. })
            && !s.container_up
        {
            // The engine publishes the port before the container's network is up: a
            // connection then is accepted by the engine's proxy and stalls about a second
            // (measured: ready at 1.2 s instead of 0.45 s). Probed once the engine says the
            // container runs.
            let up = crate::compose::running_container(
                &self.ctx.engine(&self.env),
                &self.env.token,
                &s.cfg.name,
                &spec.service,
            )
            .is_ok_and(|c| c.is_some());
            if !up {
                return Readiness::NotYet;
            }
            self.servers[i].container_up = true;
        }
        let answered = match (&probe, port) {
            (Probe::Tcp, Some(port)) if self.is_compose(i) => {
                probe::tcp_held(self.probe_host(i), port)
            }
            (Probe::Tcp, Some(port)) => probe::tcp(self.probe_host(i), port),
            (Probe::Http { path, status }, Some(port)) => {
                probe::http(self.probe_host(i), port, path, *status).is_ok()
            }
            (probe, port) => {
                let ok = self.probe_other(i, probe.clone(), port);
                return if ok {
                    Readiness::Ready
                } else {
                    Readiness::NotYet
                };
            }
        };
        if !answered {
            return Readiness::NotYet;
        }
        policy::readiness(answered, self.port_holder(i))
    }

    /// The probes that say nothing of who listens: a log line, a command, or none.
    fn probe_other(&mut self, i: usize, probe: Probe, port: Option<u16>) -> bool {
        let s = &mut self.servers[i];
        match (&probe, port) {
            (Probe::Log(_), _) => s.log_seen,
            // Nothing to probe: a server without a port is ready once started.
            (Probe::Tcp, None) => true,
            (Probe::Http { .. }, None) => false,
            (Probe::Tcp | Probe::Http { .. }, Some(_)) => false,
            (Probe::Exec(cmd), _) => {
                if s.exec_ok {
                    return true;
                }
                match s.exec_probe {
                    None => {
                        let cmd = cmd.clone();
                        self.spawn_exec_probe(i, &cmd);
                    }
                    // A probe that hangs is no answer: stopped, and tried again.
                    Some((_, since)) if since.elapsed() > EXEC_PROBE_TIMEOUT => {
                        self.kill_exec_probe(i)
                    }
                    Some(_) => {}
                }
                false
            }
        }
    }

    fn spawn_exec_probe(&mut self, i: usize, cmd: &str) {
        let Ok(vars) = self.vars(i) else { return };
        let s = &mut self.servers[i];
        let Some(wt) = self.ctx.store.instances(self.env.key).ok().and_then(|is| {
            is.into_iter()
                .find(|x| x.layer == s.cfg.name)
                .map(|x| x.worktree)
        }) else {
            return;
        };
        let devnull = std::fs::File::options().write(true).open("/dev/null");
        let Ok(devnull) = devnull else { return };
        let tag = Tag::new(&self.env.token, Role::Probe).layer(&s.cfg.name);
        if let Ok(child) = Cmd::shell(cmd)
            .cwd(wt)
            .without_git_env()
            .envs(vars)
            .env(proc::TOKEN_VAR, tag.render())
            .own_process_group()
            .spawn_logged(&devnull)
            && let Some(p) = ProcId::of(child.id())
        {
            s.exec_probe = Some((p, Instant::now()));
        }
    }

    /// Stops the server's running `exec` probe, all of it; its late answer is then ignored.
    fn kill_exec_probe(&mut self, i: usize) {
        if let Some((p, _)) = self.servers[i].exec_probe.take() {
            for m in proc::group_members(p) {
                let _ = nix::sys::signal::kill(Pid::from_raw(m.pid.cast_signed()), Signal::SIGKILL);
            }
        }
        self.servers[i].exec_ok = false;
    }

    fn is_compose(&self, i: usize) -> bool {
        matches!(
            self.servers[i].cfg.runner,
            crate::config::Runner::Compose(_)
        )
    }

    /// Where server `i`'s port is: the engine's host for a compose layer.
    fn probe_host(&self, i: usize) -> &str {
        match self.servers[i].cfg.runner {
            crate::config::Runner::Compose(_) => {
                self.env.engine_host.as_deref().unwrap_or("localhost")
            }
            crate::config::Runner::Process => "localhost",
        }
    }

    /// Post-ready check (tcp and http probes only; a log line or a command says nothing later).
    /// A server frozen by a signal (SIGSTOP) still accepts connections, the kernel queues them:
    /// it fails the check too.
    fn health(&self, i: usize) -> bool {
        let s = &self.servers[i];
        if s.leader.and_then(proc::stopped_in_tree).is_some() {
            return false;
        }
        match (&s.cfg.ready.probe, s.port) {
            (Probe::Tcp, Some(port)) if self.is_compose(i) => {
                probe::tcp_held(self.probe_host(i), port)
            }
            (Probe::Tcp, Some(port)) => probe::tcp(self.probe_host(i), port),
            (Probe::Http { path, status }, Some(port)) => {
                probe::http(self.probe_host(i), port, path, *status).is_ok()
            }
            _ => true,
        }
    }

    /// The variables of layer `i`, rendered now (ports may have moved).
    fn vars(&self, i: usize) -> Result<Vec<(String, String)>> {
        let instances = self.ctx.store.instances(self.env.key)?;
        self.ctx
            .view(&self.env, &instances)
            .vars(&self.servers[i].cfg)
    }

    fn start(&mut self, i: usize) {
        if let Err(e) = self.try_start(i) {
            let s = &mut self.servers[i];
            s.state = State::Failed;
            s.message = Some(format!("cannot start: {e:#}"));
            s.log.line(&format!("[grove] cannot start: {e:#}"));
            self.save(i);
        }
    }

    fn try_start(&mut self, i: usize) -> Result<()> {
        self.kill_exec_probe(i);
        // Another program on the leased port (started there while the env was down): move now
        // rather than start a server that cannot bind.
        self.relocate(i);
        let vars = self.vars(i)?;
        let instances = self.ctx.store.instances(self.env.key)?;
        let s = &mut self.servers[i];
        let inst = instances
            .iter()
            .find(|x| x.layer == s.cfg.name)
            .context("instance vanished")?;
        s.port = inst.port;
        // What runs under the guard: `sh -c RUN`, or a compose service's `compose up` in the
        // foreground (its output is the containers' logs, its exit theirs; SIGTERM stops
        // them), given the time Compose takes to stop them on top of the layer's own.
        let (argv, run, grace, vars): (Vec<String>, String, u64, Vec<(String, String)>) = match &s
            .cfg
            .runner
        {
            crate::config::Runner::Compose(spec) => {
                let env_dir = self.ctx.ws.env_dir(&self.env.name);
                let labels = crate::compose::labels(
                    &self.env.token,
                    &self.ctx.ws.key(),
                    &self.env.name,
                    &s.cfg.name,
                );
                // `host:port` of each isolated compose service, as containers reach it.
                let host = self.env.engine_host.as_deref().unwrap_or("localhost");
                let rewrites: Vec<(String, String)> = self
                    .ctx
                    .store
                    .isolated(self.env.key)?
                    .into_iter()
                    .filter(|r| r.kind == crate::state::IsolateKind::Compose)
                    .filter_map(|r| {
                        let layer = self.ctx.ws.config.layers.get(&r.layer)?;
                        let Some(crate::config::Isolate::Compose { port, .. }) = &layer.isolate
                        else {
                            return None;
                        };
                        let (_, hp) = crate::supervisor::host_port(&r.url)?;
                        // On the env's network it answers to its layer's name.
                        Some((format!("{host}:{hp}"), format!("{}:{port}", r.layer)))
                    })
                    .collect();
                let project = crate::compose::Project::write(
                    &self.ctx.engine(&self.env),
                    self.ctx.ws.config.docker.network.as_deref(),
                    self.env.engine_host.as_deref().unwrap_or("localhost"),
                    &crate::compose::project_name(&self.ctx.ws.key(), &self.env.ident, &s.cfg.name),
                    crate::compose::env_network(
                        &self.ctx.ws.config,
                        &self.ctx.ws.key(),
                        &self.env.ident,
                    )
                    .as_deref(),
                    &inst.worktree,
                    &env_dir,
                    &s.cfg.name,
                    spec,
                    s.port.context("a compose layer needs a leased port")?,
                    &vars,
                    &labels,
                    &rewrites,
                )?;
                let argv = project.up_argv(spec);
                let shown = argv.join(" ");
                // Compose interpolates the file with these, as it was read.
                (
                    argv,
                    shown,
                    s.cfg.stop_timeout_secs + crate::compose::STOP_SECS,
                    project.env,
                )
            }
            crate::config::Runner::Process => {
                let run = s.cfg.run.clone().context("layer has no `run`")?;
                (
                    vec!["sh".into(), "-c".into(), run.clone()],
                    run,
                    s.cfg.stop_timeout_secs,
                    vars,
                )
            }
        };
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let relay = LineRelay::new(r)?;
        let exe = std::env::current_exe().context("locating the grove binary")?;
        let child = Cmd::new(exe)
            .args(["__exec", "--parent", &self.me.pid.to_string()])
            .args(["--grace", &grace.to_string(), "--"])
            .args(&argv)
            .cwd(&inst.worktree)
            .without_git_env()
            .envs(vars)
            .env(
                proc::TOKEN_VAR,
                Tag::new(&self.env.token, Role::Server)
                    .layer(&s.cfg.name)
                    .render(),
            )
            .spawn_to(w)?;
        let leader = ProcId::of(child.id()).context("the server vanished at once")?;
        s.log.line(&format!(
            "[grove] starting {}: $ {run}   (pid {}, port {})",
            s.cfg.name,
            leader.pid,
            s.port.map_or("-".into(), |p| p.to_string())
        ));
        s.leader = Some(leader);
        s.out = Some(relay);
        s.log_seen = false;
        s.exec_ok = false;
        s.container_up = false;
        s.started_at = Instant::now();
        let now = Instant::now();
        s.state = State::Starting {
            deadline: now + Duration::from_secs(s.cfg.ready.timeout_secs),
            next_probe: now + Duration::from_millis(20),
        };
        self.save(i);
        crate::failpoint::hit("supervise:after-start");
        Ok(())
    }

    /// Begins a graceful stop of server `i`: SIGTERM to its group, SIGKILL after its
    /// `stop_timeout`; `then` says what follows once it is gone.
    fn stop(&mut self, i: usize, then: Then) {
        self.kill_exec_probe(i);
        let s = &mut self.servers[i];
        match s.leader {
            Some(leader) => {
                let _ = killpg(Pid::from_raw(leader.pid.cast_signed()), Signal::SIGTERM);
                s.state = State::Stopping {
                    deadline: Instant::now() + Duration::from_secs(s.cfg.stop_timeout_secs),
                    then,
                    killed: false,
                };
            }
            None => {
                s.state = match then {
                    Then::Stop => State::Stopped,
                    Then::Fail => State::Failed,
                    Then::Restart => State::Waiting,
                };
            }
        }
        self.save(i);
    }

    fn restart(&mut self, i: usize) {
        // A restart asked for while the env stops would start what is being stopped.
        if self.stopping {
            return;
        }
        let s = &mut self.servers[i];
        s.crashes.clear();
        s.relocated = false;
        s.message = None;
        if s.leader.is_some() {
            self.stop(i, Then::Restart);
        } else {
            s.state = State::Waiting;
            self.save(i);
        }
    }

    /// Last resort when the supervisor itself fails: nothing it started may outlive it.
    fn stop_all_now(&mut self) {
        for i in 0..self.servers.len() {
            self.kill_exec_probe(i);
        }
        if let Some(a) = self.agent.take() {
            let _ = killpg(Pid::from_raw(a.leader.pid.cast_signed()), Signal::SIGKILL);
            sweep(a.leader, Signal::SIGKILL);
        }
        for s in &mut self.servers {
            if let Some(leader) = s.leader.take() {
                let _ = killpg(Pid::from_raw(leader.pid.cast_signed()), Signal::SIGKILL);
                sweep(leader, Signal::SIGKILL);
            }
        }
        let _ = self.ctx.store.clear_servers(self.env.key);
    }

    fn save(&mut self, i: usize) {
        let s = &self.servers[i];
        let row = ServerRow {
            layer: s.cfg.name.clone(),
            state: s.state.recorded(),
            leader: s.leader,
            restarts: s.restarts,
            last_exit: s.last_exit.clone(),
            ready_since: if matches!(s.state, State::Ready { .. }) {
                s.ready_since
            } else {
                None
            },
            message: s.message.clone(),
        };
        if let Err(e) = self.ctx.store.put_server(self.env.key, &row) {
            self.log
                .line(&format!("cannot record the state of {}: {e:#}", row.layer));
        }
    }
}

/// Signals every process left in `leader`'s session (see [`proc::session_members`]).
pub(super) fn sweep(leader: ProcId, sig: Signal) {
    for p in proc::session_members(leader) {
        let _ = nix::sys::signal::kill(Pid::from_raw(p.pid.cast_signed()), sig);
    }
}

fn describe_probe(p: &Probe) -> String {
    match p {
        Probe::Tcp => "nothing accepted connections on its port".into(),
        Probe::Http {
            path,
            status: Some(s),
        } => format!("GET {path} never answered {s}"),
        Probe::Http { path, status: None } => format!("GET {path} never answered below 500"),
        Probe::Log(text) => format!("no output line matched `{text}`"),
        Probe::Exec(cmd) => format!("`{cmd}` never exited 0"),
    }
}
