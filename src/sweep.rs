//! Stopping what grove started for an env and that is still running, found by the env's
//! token in each process's environment (see [`crate::proc::Tag`]): a server's daemon that
//! left its session, what a setup step or `grove exec` left in the background, the processes of
//! a create that died. Never by name, never this process or its ancestors (an agent that runs
//! `grove down` on its own env stays to see it done).

use std::time::Duration;

use crate::proc::{self, ProcId, Role, Tag};
use crate::ui;

/// Which of an env's processes a sweep stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Servers and their probes (`restart`, `up` after a dead supervisor).
    Servers,
    /// Everything left behind: all but a `grove exec` that is still running (`down`).
    Leftovers,
    /// Everything (`destroy`, the undo of a half-made env).
    All,
}

impl Scope {
    fn wants(self, tag: &Tag) -> bool {
        match self {
            // Called when no registered supervisor runs: any other of the env's is a stray
            // (one whose store was lost), still restarting servers nobody sees.
            Scope::Servers => matches!(tag.role, Role::Server | Role::Probe | Role::Supervisor),
            Scope::Leftovers => !(tag.role == Role::Exec && tag.owner.is_some_and(|o| o.alive())),
            Scope::All => true,
        }
    }
}

/// The env's processes in `scope`, but this one and its ancestors.
pub fn find(token: &str, scope: Scope) -> Vec<(ProcId, Tag)> {
    let mine = proc::ancestors();
    proc::tagged(|t| t.env == token && scope.wants(t))
        .into_iter()
        .filter(|(p, _)| !mine.contains(&p.pid))
        .collect()
}

/// Stops the env's processes in `scope` (SIGTERM, SIGKILL after `grace`) and says which.
pub fn stop(env_name: &str, token: &str, scope: Scope, grace: Duration) -> usize {
    let found = find(token, scope);
    if found.is_empty() {
        return 0;
    }
    let procs: Vec<ProcId> = found.iter().map(|(p, _)| *p).collect();
    let stopped = proc::stop_all(&procs, grace);
    let list: Vec<String> = stopped
        .iter()
        .zip(&found)
        .map(|((p, name), (_, tag))| format!("{} ({name}, {})", p.pid, tag.describe()))
        .collect();
    if !list.is_empty() {
        ui::info(format!(
            "  stopped {} process(es) of `{env_name}` left running: {}",
            list.len(),
            list.join(", ")
        ));
    }
    stopped.len()
}

/// Waits up to `timeout` for the env's processes of `role` to end on their own: what they do
/// (a `CREATE DATABASE`) is better finished and undone than cut in the middle.
pub fn wait_for(token: &str, role: Role, timeout: Duration) {
    let procs: Vec<ProcId> = find(token, Scope::All)
        .into_iter()
        .filter(|(_, t)| t.role == role)
        .map(|(p, _)| p)
        .collect();
    if !procs.is_empty() {
        proc::wait_gone(&procs, timeout);
    }
}
