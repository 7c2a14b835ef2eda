//! `grove doctor`: the store checked against git, the disk and the process table, for the
//! current workspace and the whole machine. Each problem says what is wrong and what fixes it;
//! `--fix` applies the fixes that can lose nothing of anyone's (the rules of `destroy`): it
//! rolls back half-made envs, takes back envs the store lost from their folders, stops
//! processes left behind, frees leases and drops databases whose env is gone, removes stale
//! logs. What needs a person's judgement (a worktree deleted by hand, a folder holding work)
//! is reported with what to do, and never touched.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::git::Repo;
use crate::proc::{self, ProcId, Role, Tag};
use crate::state::{EnvRow, Phase, Store};
use crate::{isolate, manifest};

/// One thing wrong, and what to do about it.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// What kind of problem (stable words, for scripts).
    pub kind: &'static str,
    /// What it is about: an env, a path, a pid.
    pub subject: String,
    pub problem: String,
    /// What `--fix` does, or what to do by hand.
    pub fix: String,
    /// Whether `--fix` applies it.
    pub fixable: bool,
    /// After `--fix`: whether it worked, and why not.
    pub fixed: Option<bool>,
    pub error: Option<String>,
    #[serde(skip)]
    action: Option<Fix>,
}

impl Problem {
    /// `state.db` that SQLite cannot read.
    /// Its fix is the caller's: it must happen before any other check can run.
    pub fn corrupt_store(c: &crate::state::Corrupt) -> Self {
        Self {
            fixable: true,
            fix: "set it aside and start a new store; envs are then taken back from their folders"
                .into(),
            ..Problem::new("store-corrupt", c.path.display().to_string(), c.why.clone())
        }
    }

    fn new(kind: &'static str, subject: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            kind,
            subject: subject.into(),
            problem: problem.into(),
            fix: String::new(),
            fixable: false,
            fixed: None,
            error: None,
            action: None,
        }
    }

    /// What `--fix` will do.
    fn fix(mut self, what: impl Into<String>, action: Fix) -> Self {
        self.fix = what.into();
        self.fixable = true;
        self.action = Some(action);
        self
    }

    /// What a person should do: `--fix` leaves it.
    fn advice(mut self, what: impl Into<String>) -> Self {
        self.fix = what.into();
        self
    }
}

#[derive(Debug)]
enum Fix {
    Rollback(String),
    FinishDestroy(String),
    Adopt(PathBuf),
    RemoveEnvFolder(PathBuf, Vec<(PathBuf, PathBuf)>),
    Prune(PathBuf),
    DeleteBranch(PathBuf, String, String),
    FreeLease(u16),
    FreeRedisLease(String, u32),
    DropDatabase(String, String),
    FlushRedis(String, u32),
    Stop(Vec<ProcId>),
    DockerSweep(crate::config::Engine, String),
    Remove(PathBuf),
    ForgetWorkspace(i64, Vec<String>),
    CloseGates,
    FinishLandings,
}

/// What doctor works on: the current workspace (when there is one) and the store.
pub struct Doctor {
    pub ctx: Option<Ctx>,
    pub store: Option<Store>,
    pub home: PathBuf,
}

impl Doctor {
    fn store(&self) -> &Store {
        match (&self.ctx, &self.store) {
            (Some(c), _) => &c.store,
            (None, Some(s)) => s,
            (None, None) => unreachable!("doctor always has a store"),
        }
    }

    fn store_mut(&mut self) -> &mut Store {
        match (&mut self.ctx, &mut self.store) {
            (Some(c), _) => &mut c.store,
            (None, Some(s)) => s,
            (None, None) => unreachable!("doctor always has a store"),
        }
    }

    /// Envs by token: the store's, and those of env folders whose manifest the store does not
    /// know yet (a lost store): their branches and processes are not strays of a gone env.
    fn known_envs(&self) -> Result<HashMap<String, String>> {
        let mut known: HashMap<String, String> = self
            .store()
            .all_envs()?
            .into_iter()
            .map(|(e, _)| (e.token, e.name))
            .collect();
        if let Some(ctx) = &self.ctx
            && let Ok(entries) = fs_err::read_dir(&ctx.ws.config.envs_dir)
        {
            for e in entries.flatten() {
                if let Ok(Some(m)) = manifest::read(&e.path()) {
                    known.entry(m.token).or_insert(m.name);
                }
            }
        }
        Ok(known)
    }

    /// Every problem found, workspace first, then the machine. The order is the order of the
    /// fixes: what runs is stopped before envs are rolled back or taken back (whose ports it
    /// may hold), and those before the rest.
    pub fn examine(&self) -> Result<Vec<Problem>> {
        let mut out = Vec::new();
        self.processes(&mut out)?;
        if let Some(ctx) = &self.ctx {
            self.unfinished(ctx, &mut out)?;
            self.envs(ctx, &mut out)?;
            self.env_folders(ctx, &mut out)?;
            self.repos(ctx, &mut out)?;
            self.isolated(ctx, &mut out);
            self.docker(ctx, &mut out);
        }
        self.leases(&mut out)?;
        self.logs(&mut out)?;
        self.run_files(&mut out)?;
        self.workspaces(&mut out)?;
        Ok(out)
    }

    fn unfinished(&self, ctx: &Ctx, out: &mut Vec<Problem>) -> Result<()> {
        for (key, g) in ctx.store.open_gates(ctx.ws_id)? {
            let Some(env) = ctx.store.env_by_key(key)? else {
                continue;
            };
            let dead = match g.owner {
                Some(o) => !o.alive(),
                None => crate::agent::now_ms() - g.requested_at > 60_000,
            };
            if dead {
                out.push(
                    Problem::new(
                        "gate-interrupted",
                        &env.name,
                        "the review gate did not finish (its process is gone)".to_string(),
                    )
                    .fix(
                        "record it as interrupted, stop what it left running",
                        Fix::CloseGates,
                    ),
                );
            }
        }
        for env in ctx.store.landings(ctx.ws_id)? {
            if env.owner.is_some_and(|o| o.alive()) {
                continue;
            }
            out.push(
                Problem::new(
                    "half-landed",
                    &env.name,
                    "a land did not finish (its process is gone)".to_string(),
                )
                .fix(
                    "put back the bases it moved (or, past its point of no return, keep them)",
                    Fix::FinishLandings,
                ),
            );
        }
        for env in crate::recover::abandoned(ctx)? {
            let who = env
                .owner
                .map_or(String::new(), |o| format!(" (pid {})", o.pid));
            out.push(match env.phase {
                Phase::Creating => Problem::new(
                    "half-made",
                    &env.name,
                    format!("a create died half-way{who}"),
                )
                .fix(
                    "roll it back: remove what it made",
                    Fix::Rollback(env.name.clone()),
                ),
                _ => Problem::new(
                    "half-destroyed",
                    &env.name,
                    format!("a destroy did not finish{who}"),
                )
                .fix(
                    "finish the destroy (it refuses if work appeared meanwhile)",
                    Fix::FinishDestroy(env.name.clone()),
                ),
            });
        }
        Ok(())
    }

    /// Envs whose worktree or branch is gone.
    fn envs(&self, ctx: &Ctx, out: &mut Vec<Problem>) -> Result<()> {
        for env in ctx.store.envs(ctx.ws_id)? {
            if env.phase != Phase::Ready {
                continue;
            }
            let n = crate::shq(&env.name);
            for i in ctx.store.instances(env.key)? {
                if !i.worktree.join(".git").exists() {
                    out.push(
                        Problem::new(
                            "missing-worktree",
                            &env.name,
                            format!(
                                "the worktree of `{}` is gone ({})",
                                i.layer,
                                i.worktree.display()
                            ),
                        )
                        .advice(format!("`grove destroy {n}` cleans up the rest of the env")),
                    );
                } else if Repo::new(&i.repo).branch_tip(&i.branch)?.is_none() {
                    out.push(
                        Problem::new(
                            "missing-branch",
                            &env.name,
                            format!("branch `{}` of `{}` is gone", i.branch, i.layer),
                        )
                        .advice(format!(
                            "recreate it (`git -C {} branch {} COMMIT`), or `grove destroy {n}`",
                            crate::shq(&i.repo.to_string_lossy()),
                            crate::shq(&i.branch)
                        )),
                    );
                }
            }
        }
        Ok(())
    }

    /// Folders of the envs folder that no env of the store owns.
    fn env_folders(&self, ctx: &Ctx, out: &mut Vec<Problem>) -> Result<()> {
        let Ok(entries) = fs_err::read_dir(&ctx.ws.config.envs_dir) else {
            return Ok(());
        };
        let known: HashSet<String> = ctx
            .store
            .envs(ctx.ws_id)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let tokens: HashSet<String> = ctx
            .store
            .all_envs()?
            .into_iter()
            .map(|(e, _)| e.token)
            .collect();
        for e in entries.flatten() {
            let dir = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // The warm pool's folder is the pool's: `pool` recovery and `pool drain` own it.
            if !dir.is_dir() || known.contains(&name) || name == crate::pool::DIR {
                continue;
            }
            match manifest::read(&dir) {
                Ok(Some(m)) if m.workspace == ctx.ws.root && !tokens.contains(&m.token) => {
                    out.push(
                        Problem::new(
                            "unknown-env",
                            &name,
                            format!(
                                "env folder {} holds env `{}`, which the store does not know (was state.db lost?)",
                                dir.display(),
                                m.name
                            ),
                        )
                        .fix("take the env back into the store from its folder", Fix::Adopt(dir)),
                    );
                }
                _ => out.push(self.unknown_folder(ctx, &dir, &name)?),
            }
        }
        Ok(())
    }

    /// A folder in the envs folder with no env: removable only when nothing in it is work.
    fn unknown_folder(&self, ctx: &Ctx, dir: &Path, name: &str) -> Result<Problem> {
        let repos: Vec<Repo> = ctx
            .ws
            .config
            .layers
            .values()
            .filter_map(|l| l.repo.clone())
            .map(Repo::new)
            .collect();
        let mut worktrees = Vec::new();
        let mut work = Vec::new();
        for e in fs_err::read_dir(dir)?.flatten() {
            let path = e.path();
            let file = e.file_name().to_string_lossy().into_owned();
            let grove_file = manifest::is_grove_entry(&file);
            if grove_file {
                continue;
            }
            let owner = path.join(".git").is_file().then(|| {
                repos.iter().find(|r| {
                    r.worktrees()
                        .is_ok_and(|ws| ws.iter().any(|w| w.path == path))
                })
            });
            match owner.flatten() {
                Some(repo) => {
                    let dirty = Repo::dirty_paths(&path).unwrap_or_else(|_| vec!["?".into()]);
                    let lost = match Repo::head_of(&path)? {
                        Some(h) => repo.unreferenced(&[h.as_str()], &[], 10)?,
                        None => Vec::new(),
                    };
                    if !dirty.is_empty() {
                        work.push(format!("{file}: uncommitted: {}", dirty.join(", ")));
                    }
                    if !lost.is_empty() {
                        work.push(format!(
                            "{file}: commits no branch holds: {}",
                            lost.join(", ")
                        ));
                    }
                    worktrees.push((repo.dir.clone(), path));
                }
                None => work.push(format!("{file}: not grove's")),
            }
        }
        let p = Problem::new(
            "unknown-folder",
            name,
            format!("{} is in the envs folder but is no env's", dir.display()),
        );
        Ok(if work.is_empty() {
            p.fix(
                "remove it (its worktrees are clean and hold no commit of their own)",
                Fix::RemoveEnvFolder(dir.to_path_buf(), worktrees),
            )
        } else {
            p.advice(format!(
                "it holds work, left alone: {}; move what you want to keep, then delete it",
                work.join("; ")
            ))
        })
    }

    /// Per layer repo: worktree entries git keeps for folders that are gone, and branches
    /// grove made for envs that no longer exist.
    fn repos(&self, ctx: &Ctx, out: &mut Vec<Problem>) -> Result<()> {
        let tokens = self.known_envs()?;
        let mut seen = HashSet::new();
        for repo_dir in ctx.ws.config.layers.values().filter_map(|l| l.repo.clone()) {
            if !seen.insert(repo_dir.clone()) {
                continue;
            }
            let repo = Repo::new(&repo_dir);
            let worktrees = repo.worktrees()?;
            if worktrees
                .iter()
                .any(|w| w.prunable && w.path.starts_with(&ctx.ws.config.envs_dir))
            {
                out.push(
                    Problem::new(
                        "stale-worktree",
                        repo_dir.display().to_string(),
                        "git still lists worktrees of the envs folder that are gone",
                    )
                    .fix("`git worktree prune`", Fix::Prune(repo_dir.clone())),
                );
            }
            for (branch, token, first) in grove_branches(&repo)? {
                if tokens.contains_key(&token) {
                    continue;
                }
                let Some(tip) = repo.branch_tip(&branch)? else {
                    continue;
                };
                let checked_out = worktrees
                    .iter()
                    .any(|w| w.branch.as_deref() == Some(branch.as_str()));
                // Only a leftover: never moved since grove made it, checked out nowhere, and
                // holding no commit another ref does not. A branch with work on it (one that
                // destroy kept, say) is the user's, and no problem.
                if tip != first
                    || checked_out
                    || !repo
                        .unreferenced(&[tip.as_str()], &[format!("refs/heads/{branch}")], 1)?
                        .is_empty()
                {
                    continue;
                }
                out.push(
                    Problem::new(
                        "stray-branch",
                        format!("{} {branch}", repo_dir.display()),
                        format!(
                            "branch `{branch}` was left by grove for an env that no longer exists, with nothing of its own"
                        ),
                    )
                    .fix("delete it", Fix::DeleteBranch(repo_dir.clone(), branch, tip)),
                );
            }
        }
        Ok(())
    }

    /// Databases and Redis databases grove marked for envs that no longer exist.
    /// Containers, networks and volumes on the workspace's Docker engines carrying the token
    /// of no env: what a destroy that could not reach the engine, or a store lost, left.
    fn docker(&self, ctx: &Ctx, out: &mut Vec<Problem>) {
        let Ok(tokens) = self.known_envs() else {
            return;
        };
        let mut engines = Vec::new();
        if ctx.ws.config.has_compose() {
            engines.push(ctx.ws.config.docker.engine.pinned());
        }
        for e in ctx.store.engines(ctx.ws_id).unwrap_or_default() {
            let e = crate::config::Engine::from_stored(&e);
            if !engines.contains(&e) {
                engines.push(e);
            }
        }
        // An engine that does not answer is a problem while something needs it: the
        // workspace's compose layers, or an env on it. One only used long ago is not.
        let envs = ctx.store.envs(ctx.ws_id).unwrap_or_default();
        let needed = |e: &crate::config::Engine| {
            (ctx.ws.config.has_compose() && *e == ctx.ws.config.docker.engine.pinned())
                || envs.iter().any(|env| ctx.engine(env) == *e)
        };
        for engine in engines {
            let found = match crate::compose::on_engine(&engine, &ctx.ws.key()) {
                Ok(f) => f,
                Err(_) if !needed(&engine) => continue,
                Err(e) => {
                    out.push(
                        Problem::new(
                            "docker-unreachable",
                            engine.stored(),
                            format!("the Docker engine does not answer ({e}): its containers were not checked"),
                        )
                        .advice("start it (or fix `docker_context` / `docker_host`), then run `grove doctor` again"),
                    );
                    continue;
                }
            };
            for (token, objects) in found {
                if tokens.contains_key(&token) {
                    continue;
                }
                out.push(
                    Problem::new(
                        "docker-leftover",
                        objects.join(", "),
                        format!(
                            "on the Docker engine, of an env of this workspace that no longer exists ({} object(s))",
                            objects.len()
                        ),
                    )
                    .fix("remove them (found by the env's label)", Fix::DockerSweep(engine.clone(), token)),
                );
            }
        }
    }

    fn isolated(&self, ctx: &Ctx, out: &mut Vec<Problem>) {
        let Ok(tokens) = self.known_envs() else {
            return;
        };
        let mut seen = HashSet::new();
        for layer in ctx.ws.config.layers.values() {
            let (Some(iso), Some(shared)) = (&layer.isolate, &layer.shared_url) else {
                continue;
            };
            match iso {
                crate::config::Isolate::Postgres { .. } => {
                    let Some(server) = crate::supervisor::host_port(shared) else {
                        continue;
                    };
                    if !seen.insert(format!("pg {server:?}")) {
                        continue;
                    }
                    let Ok(marked) = isolate::postgres_marked(shared) else {
                        continue;
                    };
                    for (db, mark) in marked {
                        let Some(token) = isolate::marker_token(&mark) else {
                            continue;
                        };
                        if tokens.contains_key(token) {
                            continue;
                        }
                        out.push(
                            Problem::new(
                                "stray-database",
                                &db,
                                format!(
                                    "database `{db}` was made by grove for env `{}`, which no longer exists",
                                    mark.split_whitespace().nth(1).unwrap_or("?")
                                ),
                            )
                            .fix("drop it", Fix::DropDatabase(shared.clone(), db.clone())),
                        );
                    }
                }
                crate::config::Isolate::Redis => {
                    let Some(server) = isolate::redis_server_key(shared) else {
                        continue;
                    };
                    if !seen.insert(format!("redis {server}")) {
                        continue;
                    }
                    let shared_db = isolate::redis_db_of(shared);
                    for db in (1..=15).filter(|d| *d != shared_db) {
                        let Ok(mark) =
                            isolate::redis(shared, db, &[&["GET", isolate::REDIS_MARK_KEY]])
                        else {
                            break;
                        };
                        let Some(token) = mark.first().and_then(|m| isolate::marker_token(m))
                        else {
                            continue;
                        };
                        if tokens.contains_key(token)
                            || self.store().redis_leased(&server, db).unwrap_or(true)
                        {
                            continue;
                        }
                        out.push(
                            Problem::new(
                                "stray-redis",
                                format!("{server}/{db}"),
                                format!("Redis database {db} of {server} was made by grove for an env that no longer exists"),
                            )
                            .fix("flush it", Fix::FlushRedis(shared.clone(), db)),
                        );
                    }
                }
                crate::config::Isolate::Recipe { .. } | crate::config::Isolate::Compose { .. } => {}
            }
        }
    }

    fn leases(&self, out: &mut Vec<Problem>) -> Result<()> {
        for (port, env, layer) in self.store().stray_leases()? {
            out.push(
                Problem::new(
                    "stray-lease",
                    port.to_string(),
                    format!(
                        "port {port} is leased to `{layer}` of env `{env}`, which has no such layer"
                    ),
                )
                .fix("free the lease", Fix::FreeLease(port)),
            );
        }
        for (server, db, env) in self.store().stray_redis_leases()? {
            out.push(
                Problem::new(
                    "stray-lease",
                    format!("{server}/{db}"),
                    format!("Redis database {db} of {server} is leased to env `{env}`, which does not isolate it"),
                )
                .fix("free the lease", Fix::FreeRedisLease(server, db)),
            );
        }
        Ok(())
    }

    /// Processes carrying an env's token that should not be running: the env is gone, or the
    /// part of it that started them is (a dead supervisor's servers, a finished `grove exec`'s
    /// background job, a dead create's setup step).
    fn processes(&self, out: &mut Vec<Problem>) -> Result<()> {
        let envs: HashMap<String, EnvRow> = self
            .store()
            .all_envs()?
            .into_iter()
            .map(|(e, _)| (e.token.clone(), e))
            .collect();
        let known = self.known_envs()?;
        let mine = proc::ancestors();
        let home = proc::home_id();
        let mut strays: Vec<(ProcId, Tag, String)> = Vec::new();
        // Only this grove home's: another home's envs are another store's business.
        // The warm pool's processes (its filler, an entry's `prepare`) are the pool's: its
        // own recovery removes those of a filler that died.
        let pool = self.store().pool_tokens()?;
        for (p, tag) in proc::tagged(|t| t.home == home) {
            if mine.contains(&p.pid) || tag.role == Role::Pool || pool.contains(&tag.env) {
                continue;
            }
            let why = match envs.get(&tag.env) {
                Some(env) => self.stray_reason(env, &tag, p)?,
                None if known.contains_key(&tag.env) => Some(
                    "the store has lost its env (taken back from its folder by `--fix`)"
                        .to_string(),
                ),
                None => Some("its env no longer exists".to_string()),
            };
            if let Some(why) = why {
                strays.push((p, tag, why));
            }
        }
        for (p, tag, why) in &strays {
            let env = known.get(&tag.env).map_or("?", String::as_str);
            out.push(
                Problem::new(
                    "stray-process",
                    p.pid.to_string(),
                    format!(
                        "pid {} ({}) was started by grove for env `{env}` ({}), but {why}",
                        p.pid,
                        proc::name(p.pid).unwrap_or_default(),
                        tag.describe()
                    ),
                )
                .fix("stop it", Fix::Stop(vec![*p])),
            );
        }
        Ok(())
    }

    fn stray_reason(&self, env: &EnvRow, tag: &Tag, p: ProcId) -> Result<Option<String>> {
        let store = self.store();
        let owner_alive = env.owner.is_some_and(|o| o.alive());
        Ok(match tag.role {
            Role::Supervisor => (store.supervisor(env.key)? != Some(p))
                .then(|| "the store does not know it (was state.db lost?)".to_string()),
            Role::Server | Role::Probe => store
                .supervisor(env.key)?
                .filter(ProcId::alive)
                .is_none()
                .then(|| "the env's supervisor is not running".to_string()),
            Role::Setup | Role::Isolate => {
                (!owner_alive).then(|| "the command that ran it is over".to_string())
            }
            Role::Exec => tag
                .owner
                .is_some_and(|o| !o.alive())
                .then(|| "the `grove exec` that started it is over".to_string()),
            Role::Agent => {
                let running = store
                    .agent(env.key)?
                    .is_some_and(|a| crate::agent::running(&a));
                (!running).then(|| "the env's agent has exited".to_string())
            }
            Role::Pool => None,
            Role::Gate => {
                let running = store
                    .gate(env.key)?
                    .is_some_and(|g| g.phase != "finished" && g.owner.is_some_and(|o| o.alive()));
                (!running).then(|| "the env's gate is over".to_string())
            }
        })
    }

    /// The log folder of the workspace at `root` (named `<name>-<hash of root>`), if any.
    fn logs_of(&self, root: &Path) -> Option<PathBuf> {
        let suffix = ws_hash(root);
        std::fs::read_dir(self.home.join("logs"))
            .ok()?
            .flatten()
            .find(|d| d.file_name().to_string_lossy().rsplit('-').next() == Some(suffix.as_str()))
            .map(|d| d.path())
    }

    /// Log folders of envs (or workspaces) the store does not know.
    fn logs(&self, out: &mut Vec<Problem>) -> Result<()> {
        let Ok(dirs) = fs_err::read_dir(self.home.join("logs")) else {
            return Ok(());
        };
        let workspaces = self.store().workspaces()?;
        let all = self.store().all_envs()?;
        let adoptable: Vec<String> = match &self.ctx {
            Some(ctx) => fs_err::read_dir(&ctx.ws.config.envs_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| manifest::read(&e.path()).ok().flatten())
                .filter(|m| m.workspace == ctx.ws.root)
                .map(|m| m.name)
                .collect(),
            None => Vec::new(),
        };
        for d in dirs.flatten() {
            let path = d.path();
            let key = d.file_name().to_string_lossy().into_owned();
            let ws = workspaces
                .iter()
                .find(|(_, root, _)| key.rsplit('-').next() == Some(ws_hash(root).as_str()));
            let Some((_, root, _)) = ws else {
                out.push(
                    Problem::new(
                        "stale-logs",
                        path.display().to_string(),
                        "logs of a workspace grove no longer knows",
                    )
                    .fix("remove them", Fix::Remove(path)),
                );
                continue;
            };
            let mut names: HashSet<&str> = all
                .iter()
                .filter(|(_, r)| r == root)
                .map(|(e, _)| e.name.as_str())
                .collect();
            // An env the store lost but its folder still holds is taken back by the same run
            // (`unknown-env`): its logs are its own, not a gone env's.
            if let Some(ctx) = &self.ctx
                && ctx.ws.root == *root
            {
                names.extend(adoptable.iter().map(String::as_str));
            }
            for e in fs_err::read_dir(&path)?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !names.contains(name.as_str())
                    && name != crate::pool::DIR
                    && name != crate::watch::LOG_DIR
                {
                    out.push(
                        Problem::new(
                            "stale-logs",
                            e.path().display().to_string(),
                            format!("logs of env `{name}`, which no longer exists"),
                        )
                        .fix("remove them", Fix::Remove(e.path())),
                    );
                }
            }
        }
        Ok(())
    }

    /// Launcher environments of headless agents that will never start.
    fn run_files(&self, out: &mut Vec<Problem>) -> Result<()> {
        let Ok(files) = fs_err::read_dir(self.home.join("run")) else {
            return Ok(());
        };
        let all = self.store().all_envs()?;
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            // A review watcher's socket, while it answers.
            if name.starts_with("watch-")
                && std::os::unix::net::UnixStream::connect(f.path()).is_ok()
            {
                continue;
            }
            let token = name
                .strip_prefix("agent-")
                .and_then(|n| n.strip_suffix(".env"))
                .unwrap_or("");
            let pending = all
                .iter()
                .find(|(e, _)| e.token == token)
                .is_some_and(|(e, _)| {
                    self.store()
                        .agent(e.key)
                        .ok()
                        .flatten()
                        .is_some_and(|a| a.spec.is_some())
                });
            if !pending {
                out.push(
                    Problem::new(
                        "stale-file",
                        f.path().display().to_string(),
                        "the saved environment of an agent that will never start",
                    )
                    .fix("remove it", Fix::Remove(f.path())),
                );
            }
        }
        Ok(())
    }

    fn workspaces(&self, out: &mut Vec<Problem>) -> Result<()> {
        let all = self.store().all_envs()?;
        for (id, root, name) in self.store().workspaces()? {
            if root.join(crate::config::FILE_NAME).is_file() {
                continue;
            }
            let tokens: Vec<String> = all
                .iter()
                .filter(|(_, r)| *r == root)
                .map(|(e, _)| e.token.clone())
                .collect();
            out.push(
                Problem::new(
                    "workspace-gone",
                    root.display().to_string(),
                    format!(
                        "workspace `{name}` ({} env(s)) is gone: no grove.toml at {}",
                        tokens.len(),
                        root.display()
                    ),
                )
                .fix(
                    "stop what runs for its envs and forget it (its ports are freed)",
                    Fix::ForgetWorkspace(id, tokens),
                ),
            );
        }
        Ok(())
    }

    /// Applies `p`'s fix, recording the outcome in it.
    pub fn apply(&mut self, p: &mut Problem) {
        let Some(action) = p.action.take() else {
            return;
        };
        let res = self.apply_fix(action);
        p.fixed = Some(res.is_ok());
        p.error = res.err().map(|e| format!("{e:#}"));
    }

    fn apply_fix(&mut self, action: Fix) -> Result<()> {
        match action {
            Fix::CloseGates => {
                let ctx = self.ctx.as_mut().expect("workspace fixes have a workspace");
                crate::gate::recover(ctx).map(drop)
            }
            Fix::FinishLandings => {
                let ctx = self.ctx.as_mut().expect("workspace fixes have a workspace");
                crate::land::recover(ctx)
            }
            Fix::Rollback(name) => {
                let ctx = self.ctx.as_mut().expect("workspace fixes have a workspace");
                let Some(env) = ctx.store.env(ctx.ws_id, &name)? else {
                    return Ok(());
                };
                if !ctx.store.claim(env.key, env.owner, ctx.me)? {
                    anyhow::bail!("another grove is cleaning it up");
                }
                crate::recover::rollback(ctx, env.key)
            }
            Fix::FinishDestroy(name) => {
                let ctx = self.ctx.as_mut().expect("workspace fixes have a workspace");
                let args = crate::cli::DestroyArgs {
                    name,
                    force: false,
                    yes: true,
                    keep_data: false,
                };
                crate::commands::destroy_env(ctx, &args)
            }
            Fix::Adopt(dir) => {
                let ctx = self.ctx.as_mut().expect("workspace fixes have a workspace");
                adopt(ctx, &dir)
            }
            Fix::RemoveEnvFolder(dir, worktrees) => {
                for (repo, path) in worktrees {
                    Repo::new(repo).worktree_remove(&path, false)?;
                }
                manifest::remove_grove_entries(&dir);
                fs_err::remove_dir(&dir)?;
                Ok(())
            }
            Fix::Prune(repo) => Repo::new(repo).worktree_prune(),
            Fix::DeleteBranch(repo, name, tip) => {
                if Repo::new(repo).delete_branch_at(&name, &tip)? {
                    Ok(())
                } else {
                    anyhow::bail!("it moved meanwhile; kept")
                }
            }
            Fix::FreeLease(port) => self.store_mut().delete_lease(port),
            Fix::FreeRedisLease(server, db) => self.store_mut().delete_redis_lease(&server, db),
            Fix::DropDatabase(shared, db) => isolate::postgres_drop(&shared, &db),
            Fix::FlushRedis(shared, db) => isolate::redis(&shared, db, &[&["FLUSHDB"]]).map(|_| ()),
            Fix::Stop(procs) => {
                proc::stop_all(&procs, Duration::from_secs(5));
                Ok(())
            }
            Fix::DockerSweep(engine, token) => crate::compose::sweep(&engine, &token).map(|_| ()),
            Fix::Remove(path) => {
                if path.is_dir() {
                    fs_err::remove_dir_all(&path)?;
                } else {
                    fs_err::remove_file(&path)?;
                }
                Ok(())
            }
            Fix::ForgetWorkspace(id, tokens) => {
                let mine = proc::ancestors();
                let procs: Vec<ProcId> = proc::tagged(|t| tokens.contains(&t.env))
                    .into_iter()
                    .map(|(p, _)| p)
                    .filter(|p| !mine.contains(&p.pid))
                    .collect();
                proc::stop_all(&procs, Duration::from_secs(5));
                let root = self
                    .store()
                    .workspaces()?
                    .into_iter()
                    .find(|(i, _, _)| *i == id)
                    .map(|(_, r, _)| r);
                self.store_mut().forget_workspace_id(id)?;
                if let Some(logs) = root.and_then(|r| self.logs_of(&r)) {
                    let _ = fs_err::remove_dir_all(logs);
                }
                Ok(())
            }
        }
    }
}

/// The hash a workspace's log folder name ends with (see [`crate::workspace::Workspace::key`]).
fn ws_hash(root: &Path) -> String {
    format!(
        "{:06x}",
        crate::paths::fnv1a(root.as_os_str().as_encoded_bytes()) & 0xff_ffff
    )
}

/// Branches of `repo` whose reflog says grove made them: `(branch, env token, first commit)`.
/// Read from the reflog files (one read per branch, no git process per branch); a reftable
/// repository has none and yields nothing.
fn grove_branches(repo: &Repo) -> Result<Vec<(String, String, String)>> {
    let logs = repo.common_dir()?.join("logs/refs/heads");
    let mut out = Vec::new();
    let mut todo = vec![logs.clone()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Some(first) = text.lines().next() else {
                continue;
            };
            // `OLD NEW NAME <EMAIL> TIME TZ\tMESSAGE`
            let Some((head, msg)) = first.split_once('\t') else {
                continue;
            };
            let Some(token) = crate::recover::marker_token(msg) else {
                continue;
            };
            let Some(new) = head.split(' ').nth(1) else {
                continue;
            };
            let Ok(rel) = path.strip_prefix(&logs) else {
                continue;
            };
            out.push((
                rel.to_string_lossy().into_owned(),
                token.to_string(),
                new.to_string(),
            ));
        }
    }
    Ok(out)
}

/// Takes the env of folder `dir` back into the store from its manifest: its worktrees that
/// still exist, their branches (deleted on destroy only if grove's reflog mark says grove made
/// them for this very env), new port leases, and its isolated resources.
fn adopt(ctx: &mut Ctx, dir: &Path) -> Result<()> {
    let m = manifest::read(dir)?.ok_or_else(|| anyhow::anyhow!("its manifest is gone"))?;
    let Some(env) = ctx
        .store
        .adopt_env(ctx.ws_id, &m.name, &m.ident, &m.token, m.created_at)?
    else {
        anyhow::bail!("an env named `{}` exists already", m.name);
    };
    if let (Some(engine), Some(host)) = (&m.engine, &m.engine_host) {
        ctx.store.set_engine(env.key, engine, host)?;
    }
    for mut inst in m.layers {
        if !inst.worktree.join(".git").exists() {
            continue;
        }
        let repo = Repo::new(&inst.repo);
        inst.branch_created = inst.branch_created
            && repo
                .branch_origin(&inst.branch)?
                .is_some_and(|o| crate::recover::marker_token(&o) == Some(m.token.as_str()));
        if let Some(range) = ctx.ws.config.layers.get(&inst.layer).and_then(|l| l.ports) {
            crate::ports::lease(
                &mut ctx.store,
                env.key,
                &inst.layer,
                range,
                inst.port,
                // The port it had, on the host its engine publishes on (or this machine).
                m.engine_host
                    .as_deref()
                    .filter(|_| {
                        ctx.ws
                            .config
                            .layers
                            .get(&inst.layer)
                            .is_some_and(|l| matches!(l.runner, crate::config::Runner::Compose(_)))
                    })
                    .unwrap_or("localhost"),
            )?;
        }
        ctx.store.insert_instance(env.key, &inst)?;
    }
    for iso in m.isolated {
        if iso.kind == crate::state::IsolateKind::Redis
            && let Some(shared) = ctx
                .ws
                .config
                .layers
                .get(&iso.layer)
                .and_then(|l| l.shared_url.clone())
            && let Some(server) = isolate::redis_server_key(&shared)
            && let Ok(db) = iso.resource.parse()
        {
            ctx.store
                .lease_redis_exact(&server, db, env.key, &iso.layer)?;
        }
        ctx.store.put_isolated(env.key, &iso)?;
    }
    Ok(())
}
