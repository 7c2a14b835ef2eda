//! An env as `ps`, `create` and `--json` show it: state from the store, checked against the
//! disk and the processes. Version 1 of the JSON schema is documented in the README; add fields
//! freely, never rename or remove one without bumping `version`.

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::proc::{self, ProcId};
use crate::state::{EnvRow, Instance, Phase, ServerRow, ServerState};
use crate::{logfile, ports};

pub const JSON_VERSION: u32 = 1;
/// Log lines shown with a failed server.
const FAILED_TAIL: usize = 20;

#[derive(Debug, Serialize)]
pub struct EnvReport {
    pub name: String,
    pub env_id: String,
    /// `running`, `starting`, `partial`, `failed`, `stopped`, `creating`, `destroying`, `broken`.
    pub status: &'static str,
    pub created_at: i64,
    /// The supervisor's pid while it runs.
    pub supervisor: Option<u32>,
    pub layers: Vec<LayerReport>,
    pub agent: Option<AgentReport>,
    /// What is wrong with the env, each with what to do about it.
    pub problems: Vec<String>,
    /// Disk use beyond the checkout, as last measured (at create or up); `null` until then.
    pub disk: Option<crate::disk::Disk>,
}

#[derive(Debug, Serialize)]
pub struct AgentReport {
    /// `tmux` or `headless`.
    pub mode: String,
    /// What its hooks last reported (`working`, `waiting`, `done`, `exited`), `running` when
    /// alive and silent, `exited` when its process is gone.
    pub state: String,
    /// Unix milliseconds since it has been in that state.
    pub since: Option<i64>,
    pub pid: Option<u32>,
    /// `session:window` of a tmux agent.
    pub window: Option<String>,
    pub last_exit: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LayerReport {
    pub name: String,
    /// `dedicated` or `shared`.
    pub mode: &'static str,
    pub url: Option<String>,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub base: Option<String>,
    pub worktree: Option<String>,
    /// Whether grove created the branch (and so may delete it on destroy).
    pub branch_created: Option<bool>,
    /// An isolated infra layer's database (name or Redis index) or recipe resource.
    pub resource: Option<String>,
    /// The server's state: `starting`, `ready`, `unhealthy`, `backoff`, `failed`, `stopped`;
    /// `null` for a layer that runs no server here.
    pub state: Option<String>,
    pub pid: Option<u32>,
    pub restarts: Option<u32>,
    /// Unix milliseconds since which it has been ready.
    pub ready_since: Option<i64>,
    pub last_exit: Option<String>,
    pub message: Option<String>,
    /// The last log lines of a failed server.
    pub log_tail: Option<Vec<String>>,
    /// A compose layer's containers as its engine reports them (`ps` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<crate::compose::Container>>,
}

/// Builds the report of `env`, checking worktrees, the supervisor and the servers' processes.
pub fn env_report(ctx: &Ctx, env: &EnvRow, instances: &[Instance]) -> Result<EnvReport> {
    let view = ctx.view(env, instances);
    let isolated = ctx.store.isolated(env.key)?;
    let sup_row = ctx.store.supervisor(env.key)?;
    let sup = sup_row.filter(ProcId::alive);
    let rows = ctx.store.servers(env.key)?;
    let mut layers = Vec::new();
    let mut problems = Vec::new();
    let mut states: Vec<String> = Vec::new();
    let mut broken = false;
    let n = crate::shq(&env.name);
    for layer in ctx.ws.config.layers.values() {
        let inst = instances.iter().find(|i| i.layer == layer.name);
        let url = view.url(layer).ok().flatten();
        if !layer.is_code() {
            // Infra: listed when the env has its own; shared otherwise, like every env.
            if let Some(iso) = isolated.iter().find(|i| i.layer == layer.name) {
                layers.push(LayerReport {
                    mode: "isolated",
                    resource: Some(iso.resource.clone()),
                    ..LayerReport::shared(&layer.name, Some(iso.url.clone()))
                });
            }
            continue;
        }
        let Some(i) = inst else {
            layers.push(LayerReport::shared(&layer.name, url));
            continue;
        };
        if env.phase == Phase::Ready {
            if !i.worktree.join(".git").exists() {
                broken = true;
                problems.push(format!(
                    "worktree of `{}` is missing ({}); run `grove destroy {n}` to clean up",
                    i.layer,
                    i.worktree.display(),
                ));
            } else if crate::git::branch_exists_fs(&i.worktree, &i.branch) == Some(false) {
                broken = true;
                problems.push(format!(
                    "branch `{}` of `{}` is gone (deleted by hand?); its worktree has no commit checked out: recreate it (`git -C {} branch {} COMMIT`) or `grove destroy {n}`",
                    i.branch,
                    i.layer,
                    crate::shq(&i.repo.to_string_lossy()),
                    crate::shq(&i.branch),
                ));
            }
        }
        let mut rep = LayerReport::dedicated(i, url);
        if layer.runs_server() {
            let row = rows.iter().find(|r| r.layer == i.layer);
            server_state(ctx, env, &mut rep, row, sup.is_some(), &mut problems);
            states.push(rep.state.clone().unwrap_or_default());
            if rep.state.as_deref() != Some("ready")
                && rep.state.as_deref() != Some("orphaned")
                && let Some(p) = i.port.filter(|p| !ports::is_free(*p))
                && let Some((pid, name)) = foreign_holder(p, row)
            {
                problems.push(format!(
                    "port {p} of `{}` is held by pid {pid} ({name}), not by this env's server",
                    i.layer
                ));
            }
        }
        layers.push(rep);
    }
    let orphaned = states.iter().any(|s| s == "orphaned");
    if let (Some(dead), None) = (sup_row, sup) {
        problems.push(if orphaned {
            format!(
                "its supervisor (pid {}) died, but its servers still run, unsupervised: `grove up {n}` replaces them with supervised ones, `grove down {n}` stops them",
                dead.pid
            )
        } else {
            format!(
                "its supervisor (pid {}) died, and its servers with it; run `grove up {n}`",
                dead.pid
            )
        });
    }
    let owner_dead = env.owner.is_some_and(|o| !o.alive());
    match env.phase {
        Phase::Creating if owner_dead => problems.push(
            "a create died half-way: the next grove command that changes state (or `grove doctor --fix`) cleans it up".into(),
        ),
        Phase::Destroying if owner_dead || env.owner.is_none() => {
            problems.push(format!("a destroy did not finish; run `grove destroy {n}` to finish it"));
        }
        _ => {}
    }
    let status = match env.phase {
        Phase::Creating => "creating",
        Phase::Destroying => "destroying",
        Phase::Ready if broken => "broken",
        Phase::Ready if orphaned => "orphaned",
        Phase::Ready => servers_status(&states, sup.is_some(), sup_row.is_some()),
    };
    let agent = ctx.store.agent(env.key)?.map(|row| {
        let (state, since) = crate::agent::state(&row);
        AgentReport {
            window: row
                .tmux_window
                .as_ref()
                .map(|id| format!("grove-{}:{id}", ctx.ws.key())),
            pid: row.process.filter(ProcId::alive).map(|p| p.pid),
            mode: row.mode.to_string(),
            state,
            since,
            last_exit: row.exit,
        }
    });
    Ok(EnvReport {
        name: env.name.clone(),
        env_id: env.ident.clone(),
        status,
        created_at: env.created_at,
        supervisor: sup.map(|s| s.pid),
        layers,
        agent,
        problems,
        disk: ctx.store.disk(env.key)?,
    })
}

fn servers_status(states: &[String], sup_alive: bool, sup_recorded: bool) -> &'static str {
    let count = |s: &str| states.iter().filter(|x| *x == s).count();
    let up = count("ready") + count("unhealthy");
    if states.is_empty() || (!sup_alive && !sup_recorded) {
        "stopped"
    } else if !sup_alive {
        "failed"
    } else if up == states.len() {
        "running"
    } else if count("failed") > 0 || count("stopped") > 0 {
        if up > 0 { "partial" } else { "failed" }
    } else {
        "starting"
    }
}

/// Fills in the server columns of a dedicated layer from its row, trusting the row only
/// while the supervisor lives and the recorded process is the one running; and says what is
/// wrong with it, with what to do.
fn server_state(
    ctx: &Ctx,
    env: &EnvRow,
    rep: &mut LayerReport,
    row: Option<&ServerRow>,
    sup_alive: bool,
    problems: &mut Vec<String>,
) {
    let n = crate::shq(&env.name);
    let layer = rep.name.clone();
    let Some(row) = row.filter(|_| sup_alive) else {
        // No supervisor: anything of the server's session still running is unsupervised.
        let left = row
            .and_then(|r| r.leader)
            .map(proc::session_members)
            .unwrap_or_default();
        rep.restarts = row.map(|r| r.restarts);
        rep.last_exit = row.and_then(|r| r.last_exit.clone());
        if let Some(first) = left.first() {
            rep.state = Some("orphaned".into());
            rep.pid = row
                .and_then(|r| r.leader)
                .filter(ProcId::alive)
                .map(|l| l.pid)
                .or(Some(first.pid));
            let port = rep
                .port
                .filter(|p| !ports::is_free(*p))
                .map_or(String::new(), |p| format!(", holding port {p}"));
            problems.push(format!(
                "`{layer}` still runs without a supervisor ({} process(es), pid {}{port})",
                left.len(),
                first.pid
            ));
        } else {
            rep.state = Some("stopped".into());
        }
        return;
    };
    let live = row.leader.filter(ProcId::alive);
    rep.state = Some(row.state.to_string());
    rep.pid = live.map(|l| l.pid);
    rep.restarts = Some(row.restarts);
    rep.ready_since = row.ready_since;
    rep.last_exit = row.last_exit.clone();
    rep.message = row.message.clone();
    match row.state {
        ServerState::Failed => {
            let log = ctx.log_dir(&env.name).join(format!("{}.log", row.layer));
            rep.log_tail = Some(
                logfile::tail(&log, FAILED_TAIL)
                    .iter()
                    .map(|l| logfile::split(l).1.to_string())
                    .collect(),
            );
            let why = row
                .message
                .clone()
                .or_else(|| row.last_exit.clone())
                .unwrap_or_else(|| "failed".into());
            problems.push(format!(
                "`{layer}` failed: {why}; see `grove logs {n} {layer}`, fix it, then `grove restart {n} {layer}`"
            ));
        }
        ServerState::Unhealthy => problems.push(format!(
            "`{layer}` is up but fails its health check; see `grove logs {n} {layer}`, then `grove restart {n} {layer}`"
        )),
        _ => {}
    }
    if let Some(stopped) = live.and_then(proc::stopped_in_tree) {
        problems.push(format!(
            "`{layer}` is frozen: pid {} ({}) is stopped by a signal, so it accepts connections and never answers; `kill -CONT {}` resumes it, `grove restart {n} {layer}` replaces it",
            stopped.pid,
            proc::name(stopped.pid).unwrap_or_default(),
            stopped.pid
        ));
    }
}

/// Who holds `port` when it is not this env's server.
fn foreign_holder(port: u16, row: Option<&ServerRow>) -> Option<(u32, String)> {
    let (pid, name) = proc::port_holder(port)?;
    let ours = row
        .and_then(|r| r.leader)
        .is_some_and(|l| proc::session_members(l).iter().any(|m| m.pid == pid));
    (!ours).then_some((pid, name))
}

impl LayerReport {
    fn shared(name: &str, url: Option<String>) -> Self {
        Self {
            name: name.to_string(),
            mode: "shared",
            url,
            port: None,
            branch: None,
            base: None,
            worktree: None,
            branch_created: None,
            resource: None,
            state: None,
            pid: None,
            restarts: None,
            ready_since: None,
            last_exit: None,
            message: None,
            log_tail: None,
            containers: None,
        }
    }

    fn dedicated(i: &Instance, url: Option<String>) -> Self {
        Self {
            mode: "dedicated",
            port: i.port,
            branch: Some(i.branch.clone()),
            base: Some(i.base.clone()),
            worktree: Some(i.worktree.to_string_lossy().into_owned()),
            branch_created: Some(i.branch_created),
            ..Self::shared(&i.layer, url)
        }
    }

    /// The ps cell: `URL [base]` for a dedicated layer, `shared` otherwise; a compose layer's
    /// containers' states after it.
    pub fn cell(&self) -> String {
        let cell = match (self.mode, &self.url, &self.base) {
            ("dedicated", Some(url), Some(base)) => format!("{url} [{base}]"),
            ("dedicated", None, Some(base)) => format!("[{base}]"),
            ("isolated", Some(url), _) => url.clone(),
            _ => "shared".into(),
        };
        match self.containers.as_deref() {
            Some([]) => format!("{cell} (no container)"),
            Some(cs) => {
                let states: Vec<String> = cs
                    .iter()
                    .map(|c| {
                        let mut s = c.state.clone();
                        if let Some(code) = c.exit_code {
                            s = format!("{s} {code}");
                        }
                        if let Some(h) = &c.health {
                            s = format!("{s}, {h}");
                        }
                        if cs.len() > 1 {
                            s = format!("{} {s}", c.service);
                        }
                        s
                    })
                    .collect();
                format!("{cell} ({})", states.join("; "))
            }
            None => cell,
        }
    }
}
