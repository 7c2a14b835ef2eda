//! What every workspace command starts from: the workspace, its config and the store. Opening
//! it changes nothing: recovery from crashed operations is the business of the commands that
//! change state (see [`crate::recover`]), never of a read-only command or an agent hook.

use std::path::PathBuf;

use anyhow::Result;
use indexmap::IndexMap;

use crate::error::Fail;
use crate::proc::ProcId;
use crate::state::{EnvRow, Instance, Store};
use crate::vars::{Dedicated, EnvView};
use crate::workspace::Workspace;

pub struct Ctx {
    pub ws: Workspace,
    pub store: Store,
    /// The workspace's id in the store.
    pub ws_id: i64,
    pub home: PathBuf,
    pub me: ProcId,
}

impl Ctx {
    /// Opens the store for `ws`.
    pub fn open(ws: Workspace) -> Result<Self> {
        let home = crate::paths::grove_home()?;
        let mut store = Store::open(&home)?;
        let ws_id = store.workspace(&ws.root, &ws.config.name)?;
        Ok(Self {
            ws,
            store,
            ws_id,
            home,
            me: ProcId::current(),
        })
    }

    /// Refuses while another live grove owns `env` (creating, starting or destroying it).
    pub fn require_idle(&self, env: &EnvRow) -> Result<()> {
        let Some(owner) = env.owner.filter(ProcId::alive) else {
            return Ok(());
        };
        let what = match env.phase {
            crate::state::Phase::Creating => "created by another grove",
            crate::state::Phase::Ready if !self.store.journal(env.key)?.is_empty() => {
                "landed by another grove"
            }
            crate::state::Phase::Ready => "started by the grove that created it",
            crate::state::Phase::Destroying => "destroyed by another grove",
        };
        Err(Fail::new(format!(
            "env `{}` is being {what} (pid {})",
            env.name, owner.pid
        ))
        .hint("wait for it to finish, then try again")
        .into())
    }

    /// The env called `name` (a branch name with `/` is accepted for its env name).
    pub fn require_env(&self, name: &str) -> Result<EnvRow> {
        let env_name = name.replace('/', "-");
        if let Some(env) = self.store.env(self.ws_id, &env_name)? {
            return Ok(env);
        }
        let known: Vec<String> = self
            .store
            .envs(self.ws_id)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let hint = if known.is_empty() {
            "this workspace has no envs; create one with `grove create NAME`".to_string()
        } else {
            format!("envs of this workspace: {}", known.join(", "))
        };
        Err(Fail::new(format!(
            "no env `{env_name}` in workspace {}",
            self.ws.root.display()
        ))
        .hint(hint)
        .into())
    }

    /// The templates' view of an existing env.
    /// Whether `env` has anything on a Docker engine: a dedicated compose layer (or one no
    /// longer in grove.toml, which may have been), or an isolated compose service. An env
    /// of a mixed workspace that dedicates only host processes needs no docker.
    pub fn uses_docker(&self, env: &EnvRow) -> Result<bool> {
        let compose_layer = self.store.instances(env.key)?.iter().any(|i| {
            self.ws
                .config
                .layers
                .get(&i.layer)
                .is_none_or(|l| matches!(l.runner, crate::config::Runner::Compose(_)))
        });
        Ok(compose_layer
            || self
                .store
                .isolated(env.key)?
                .iter()
                .any(|r| r.kind == crate::state::IsolateKind::Compose))
    }

    /// The Docker engine of `env`'s compose layers: the one it was made on.
    pub fn engine(&self, env: &EnvRow) -> crate::config::Engine {
        env.engine.as_deref().map_or_else(
            || self.ws.config.docker.engine.clone(),
            crate::config::Engine::from_stored,
        )
    }

    pub fn view<'a>(&'a self, env: &'a EnvRow, instances: &[Instance]) -> EnvView<'a> {
        let dedicated: IndexMap<String, Dedicated> = instances
            .iter()
            .map(|i| {
                let d = Dedicated {
                    port: i.port,
                    branch: i.branch.clone(),
                    worktree: i.worktree.clone(),
                };
                (i.layer.clone(), d)
            })
            .collect();
        let isolated = self
            .store
            .isolated(env.key)
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.layer, i.url))
            .collect();
        EnvView {
            config: &self.ws.config,
            root: &self.ws.root,
            name: &env.name,
            ident: &env.ident,
            dedicated,
            isolated,
            engine_host: env.engine_host.as_deref().unwrap_or("localhost"),
        }
    }

    /// `$GROVE_HOME/logs/<workspace>/<env>`: setup output and, later, server logs.
    pub fn log_dir(&self, env: &str) -> PathBuf {
        self.home.join("logs").join(self.ws.key()).join(env)
    }
}
