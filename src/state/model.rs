//! What the store holds, as types. States cross a process boundary (the CLI and the supervisor
//! talk through the store), so each is one enum, written and read as a fixed word: an unknown
//! word is an error, never a default (a misread `failed` must not pass for `ready`).

use std::path::PathBuf;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

use crate::proc::ProcId;

pub type EnvKey = i64;

/// An enum stored as one of a fixed set of words.
macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// The variant written as `s`; `None` for any other word.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($word => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    let words: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    serde::de::Error::custom(format!(
                        "unknown value `{s}`: one of {}", words.join(", ")
                    ))
                })
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = v.as_str()?;
                $name::parse(s).ok_or_else(|| {
                    FromSqlError::Other(format!(
                        "unknown {} `{s}` in the store (written by a newer grove?)",
                        stringify!($name)
                    ).into())
                })
            }
        }
    };
}

word_enum! {
    /// Where an env is in its life: `creating` and `destroying` are operations in progress,
    /// owned by a process; `ready` is a finished env.
    Phase { Creating => "creating", Ready => "ready", Destroying => "destroying" }
}

word_enum! {
    /// A supervised server, as the supervisor records it.
    ServerState {
        /// Waiting for the layers it reads, or started and not ready yet.
        Starting => "starting",
        Ready => "ready",
        /// Was ready; its health check has failed several times in a row.
        Unhealthy => "unhealthy",
        /// Exited; restarted after a delay.
        Backoff => "backoff",
        /// Given up on: not ready in time, crashed too often, or a dependency failed.
        Failed => "failed",
        Stopped => "stopped",
    }
}

impl ServerState {
    /// Up and serving, healthy or not.
    pub fn is_up(self) -> bool {
        matches!(self, ServerState::Ready | ServerState::Unhealthy)
    }
}

word_enum! {
    /// Where a pool entry is: being made, ready to hand out, or being handed out to a create.
    PoolPhase { Preparing => "preparing", Ready => "ready", Claimed => "claimed" }
}

/// A prepared worktree of the warm pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolRow {
    pub id: i64,
    pub layer: String,
    pub repo: PathBuf,
    /// The base as the layer names it, and the commit the worktree is detached at.
    pub base: String,
    pub commit: String,
    /// The blob ids of the layer's `prepare_key` files at `commit`: `prepare` runs again in a
    /// claimed worktree when they differ at the new base.
    pub prep_key: String,
    /// The fingerprint of the layer's config the entry was prepared with
    /// (`pool::fingerprint`); empty for an entry made before grove recorded it.
    pub config: String,
    pub path: PathBuf,
    pub token: String,
    pub phase: PoolPhase,
    #[serde(skip)]
    pub owner: Option<ProcId>,
    pub created_at: i64,
}

word_enum! {
    /// What an agent's hooks report.
    AgentState {
        Working => "working",
        Waiting => "waiting",
        Done => "done",
        Exited => "exited",
    }
}

word_enum! {
    /// Where an agent runs.
    AgentMode { Tmux => "tmux", Headless => "headless" }
}

word_enum! {
    /// The kind of an isolated infra resource.
    IsolateKind { Postgres => "postgres", Redis => "redis", Recipe => "recipe", Compose => "compose" }
}

#[derive(Debug, Clone)]
pub struct EnvRow {
    pub key: EnvKey,
    pub name: String,
    pub ident: String,
    /// The env's token: every process grove starts for the env carries it in its environment
    /// (see [`crate::proc::Tag`]), so a sweep finds them all, whatever they became.
    pub token: String,
    pub phase: Phase,
    pub owner: Option<ProcId>,
    pub created_at: i64,
    /// The Docker engine of its compose layers ([`crate::config::Engine::stored`]).
    pub engine: Option<String>,
    /// The host name that engine publishes ports on.
    pub engine_host: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub layer: String,
    pub repo: PathBuf,
    pub worktree: PathBuf,
    pub branch: String,
    pub base: String,
    pub base_commit: String,
    /// The full ref the base named at create; `None` for a commit.
    pub base_ref: Option<String>,
    pub branch_created: bool,
    /// The leased port (in a manifest: the one it had, tried first when taken back).
    #[serde(default)]
    pub port: Option<u16>,
}

impl Instance {
    /// The base's commit now: its ref's tip, else the commit it was at create. A ref that is
    /// the env's own branch never counts (the base must not be the branch itself).
    pub fn current_base(&self, repo: &crate::git::Repo) -> String {
        self.base_ref
            .as_deref()
            .filter(|r| *r != format!("refs/heads/{}", self.branch))
            .and_then(|r| repo.resolve_commit(r).ok().flatten())
            .unwrap_or_else(|| self.base_commit.clone())
    }
}

/// One undoable step of an operation, recorded *before* it is carried out: a crash at any
/// moment leaves a journal that says what may exist, and every undo checks what does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The env's folder is created by this operation.
    EnvDir { path: PathBuf },
    /// A worktree is added at `path` in `repo`.
    Worktree { repo: PathBuf, path: PathBuf },
    /// Branch `name` is created in `repo` at commit `sha`, with grove's reflog message (so
    /// that an undo deletes it only if grove made it, and only while it is still there).
    Branch {
        repo: PathBuf,
        name: String,
        sha: String,
    },
    /// An infra layer is being isolated: `resource` (a database, a Redis index, an env id) is
    /// made for `layer`, marked as the env's.
    Isolated { layer: String, resource: String },
    /// A setup leader of an older grove, journaled once started.
    Process { leader: ProcId },
    /// Processes carrying the env's token are being started (setup steps, recipes): an undo
    /// waits for them or stops them before it undoes what they may have made.
    Processes,
    /// `grove land` moves `refname` of `repo` from `old` to `new` (compare and swap), and
    /// updates `checkouts`, the clean worktrees that have the base checked out.
    BaseMove {
        repo: PathBuf,
        refname: String,
        old: String,
        new: String,
        checkouts: Vec<PathBuf>,
    },
    /// Every base of a land moved: from here on the land is done, never undone.
    Landed,
}

/// A server as the supervisor last recorded it.
#[derive(Debug, Clone)]
pub struct ServerRow {
    pub layer: String,
    pub state: ServerState,
    /// The session leader: its pid is the server's process group and session id.
    pub leader: Option<ProcId>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    /// Unix milliseconds.
    pub ready_since: Option<i64>,
    pub message: Option<String>,
}

/// An env's agent.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub mode: AgentMode,
    /// Headless, not started yet: how to start it (JSON), for the supervisor. Only what grove
    /// needs is stored; the launcher's own environment travels in a private file (see
    /// [`crate::agent::Spec`]). Cleared once the agent started.
    pub spec: Option<String>,
    /// The agent's process: the tmux pane's, or the headless guard's.
    pub process: Option<ProcId>,
    /// The tmux server socket (absent: the default server) and the window id (`@3`).
    pub tmux_socket: Option<String>,
    pub tmux_window: Option<String>,
    /// The last state the agent's hooks reported, and since when (Unix ms).
    pub state: Option<AgentState>,
    pub state_since: Option<i64>,
    /// What a `waiting` agent waits for: `permission` (a dialog typed text would answer) or
    /// `input` (its prompt); `None` when unknown.
    pub detail: Option<String>,
    pub started_at: i64,
    /// How its process ended, when it did (headless).
    pub exit: Option<String>,
}

impl AgentRow {
    pub fn new(mode: AgentMode, started_at: i64) -> Self {
        Self {
            mode,
            spec: None,
            process: None,
            tmux_socket: None,
            tmux_window: None,
            state: None,
            state_since: None,
            detail: None,
            started_at,
            exit: None,
        }
    }
}

/// An infra layer an env has of its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolatedRow {
    pub layer: String,
    pub kind: IsolateKind,
    /// The database name, the Redis database index, or what the recipe made.
    pub resource: String,
    pub url: String,
    pub created_at: i64,
}

/// The last `grove check` of a layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    pub passed: bool,
    /// The commit checked (the branch tip when the check ran).
    pub commit: String,
    pub duration_ms: i64,
    pub log: String,
    pub finished_at: i64,
}

/// A port leased by some env: for "range exhausted" errors.
#[derive(Debug, Clone)]
pub struct Lease {
    pub env: String,
    pub layer: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_are_refused() {
        for s in ServerState::ALL {
            assert_eq!(ServerState::parse(s.as_str()), Some(*s));
        }
        for s in AgentState::ALL {
            assert_eq!(AgentState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(ServerState::parse("Ready"), None);
        assert_eq!(ServerState::parse("running"), None);
        assert_eq!(Phase::parse("half"), None);
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let bad: rusqlite::Result<ServerState> =
            conn.query_row("SELECT 'exploded'", [], |r| r.get(0));
        let err = bad.unwrap_err().to_string();
        assert!(err.contains("unknown ServerState `exploded`"), "{err}");
        let good: ServerState = conn
            .query_row("SELECT 'backoff'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(good, ServerState::Backoff);
    }
}
