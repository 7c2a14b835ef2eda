//! The warm pool: worktrees prepared ahead of time so that `create` costs a `git worktree
//! move` and a checkout of what changed, not a copy of the dependency folders and an install.
//!
//! An entry is a worktree under `<envs_dir>/.pool/`, detached at its base's tip, with the
//! layer's `copy` done and its `prepare` steps run. Its row in the store is written before
//! the worktree is made and names the process at work on it (`preparing` by a filler,
//! `claimed` by a create): an entry is handed out only once `ready`, and one whose process
//! died is removed by the next command that changes state, like a half-made env.
//!
//! The row also records the [`fingerprint`] of the config the entry was prepared with: once
//! grove.toml changes what a prepared worktree holds, the entries made before are removed
//! (by the next create of the layer, or the filler), never handed out.
//!
//! One filler runs per workspace at a time, in the background after a create (at the lowest
//! CPU and I/O priority) or in the foreground with `grove pool fill`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Layer;
use crate::ctx::Ctx;
use crate::exec::Cmd;
use crate::git::Repo;
use crate::proc::{ProcId, Role, Tag};
use crate::state::{PoolPhase, PoolRow};
use crate::{failpoint, provision, sweep, ui};

/// The pool's folder in the envs folder. Env names cannot start with a dot: no env can
/// collide with it.
pub const DIR: &str = ".pool";

pub fn dir(ctx: &Ctx) -> PathBuf {
    ctx.ws.config.envs_dir.join(DIR)
}

fn filler_key(ctx: &Ctx) -> String {
    format!("pool-filler:{}", ctx.ws_id)
}

/// The token the workspace's filler process carries, made once per workspace.
pub fn filler_token(ctx: &mut Ctx) -> Result<String> {
    let key = token_key(ctx);
    if let Some(t) = ctx.store.meta(&key)? {
        return Ok(t);
    }
    let t = crate::proc::new_token();
    ctx.store.meta_swap(&key, None, Some(&t))?;
    Ok(ctx.store.meta(&key)?.unwrap_or(t))
}

/// The filler at work for this workspace, if one runs: the one registered, or one started
/// that has not registered yet (found by its tag).
pub fn filler(ctx: &Ctx) -> Result<Option<ProcId>> {
    if let Some(p) = ctx
        .store
        .meta(&filler_key(ctx))?
        .and_then(|v| parse_proc(&v))
        .filter(|p| p.alive())
    {
        return Ok(Some(p));
    }
    let Some(token) = ctx.store.meta(&token_key(ctx))? else {
        return Ok(None);
    };
    let home = crate::proc::home_id();
    let me = std::process::id();
    Ok(
        crate::proc::tagged(|t| t.role == Role::Pool && t.env == token && t.home == home)
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| p.pid != me),
    )
}

fn token_key(ctx: &Ctx) -> String {
    format!("pool-token:{}", ctx.ws_id)
}

fn parse_proc(v: &str) -> Option<ProcId> {
    let (pid, start) = v.split_once('.')?;
    Some(ProcId {
        pid: pid.parse().ok()?,
        start: start.parse().ok()?,
    })
}

fn render_proc(p: ProcId) -> String {
    format!("{}.{}", p.pid, p.start)
}

/// A layer with a pool, and the base its entries are made from.
pub struct Target {
    pub layer: Layer,
    pub repo: Repo,
    pub base: String,
}

/// The layers that keep a pool, each with its base (the layer's `base`, else the repo's
/// default branch).
pub fn targets(ctx: &Ctx) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for layer in ctx.ws.config.layers.values() {
        let (Some(repo), true) = (&layer.repo, layer.pool > 0) else {
            continue;
        };
        let repo = Repo::new(repo.clone());
        let base = match &layer.base {
            Some(b) => b.clone(),
            None => repo.default_branch()?,
        };
        out.push(Target {
            layer: layer.clone(),
            repo,
            base,
        });
    }
    Ok(out)
}

/// What shapes a prepared worktree of `layer`, as one short string: its repo, its `copy`
/// entries and their modes, its `prepare` steps and its `prepare_key` files. (The base is a
/// column of its own; `setup`, ports and the rest are the env's, applied after a claim.)
pub fn fingerprint(layer: &Layer) -> String {
    let copy: Vec<_> = layer.copy.iter().map(|c| (&c.path, c.mode)).collect();
    let shape = serde_json::json!({
        "repo": layer.repo,
        "copy": copy,
        "prepare": layer.prepare,
        "prepare_key": layer.prepare_key,
    });
    format!("{:016x}", crate::paths::fnv1a(shape.to_string().as_bytes()))
}

/// Removes the ready entries of `layer` prepared with another config (and, given `base`,
/// those of another base): a claim would hand out a worktree that lacks what grove.toml now
/// asks for. Claimed first, so that no create takes one meanwhile; removed as `drain` does.
/// Returns how many.
pub fn discard_stale(ctx: &mut Ctx, layer: &Layer, base: Option<&str>) -> Result<usize> {
    let rows =
        ctx.store
            .pool_claim_stale(ctx.ws_id, &layer.name, &fingerprint(layer), base, ctx.me)?;
    if !rows.is_empty() {
        failpoint::hit("pool:after-claim-stale");
    }
    for row in &rows {
        undo(ctx, row);
    }
    Ok(rows.len())
}

/// How many entries the layer lacks: the pool size less those ready or being made with its
/// current config.
fn missing(ctx: &Ctx, t: &Target) -> Result<u32> {
    let config = fingerprint(&t.layer);
    let have = ctx
        .store
        .pool(ctx.ws_id)?
        .iter()
        .filter(|r| {
            r.layer == t.layer.name
                && r.base == t.base
                && r.config == config
                && r.phase != PoolPhase::Claimed
        })
        .count();
    Ok(t.layer
        .pool
        .saturating_sub(u32::try_from(have).unwrap_or(u32::MAX)))
}

/// Whether some layer's pool is short of entries.
pub fn short(ctx: &Ctx) -> Result<bool> {
    for t in targets(ctx)? {
        if missing(ctx, &t)? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Fills every layer's pool to its size, one entry at a time. Returns the entries made;
/// `None` when another filler is at work (then nothing is done).
pub fn fill(ctx: &mut Ctx, progress: bool) -> Result<Option<usize>> {
    let key = filler_key(ctx);
    let me = ctx.me;
    let current = ctx.store.meta(&key)?;
    if current
        .as_deref()
        .and_then(parse_proc)
        .is_some_and(|p| p.alive() && p != me)
    {
        return Ok(None);
    }
    if !ctx
        .store
        .meta_swap(&key, current.as_deref(), Some(&render_proc(me)))?
    {
        return Ok(None);
    }
    let result = fill_all(ctx, progress);
    ctx.store.meta_swap(&key, Some(&render_proc(me)), None)?;
    result.map(Some)
}

fn fill_all(ctx: &mut Ctx, progress: bool) -> Result<usize> {
    let mut made = 0;
    for t in targets(ctx)? {
        let stale = discard_stale(ctx, &t.layer, Some(&t.base))?;
        if stale > 0 && progress {
            ui::info(format!(
                "  {}  removed {stale} worktree(s) prepared with another config or base",
                t.layer.name
            ));
        }
        let commit = t
            .repo
            .resolve_commit(&t.base)?
            .with_context(|| format!("base `{}` of layer `{}` not found", t.base, t.layer.name))?;
        for _ in 0..missing(ctx, &t)? {
            provision::check_interrupt()?;
            let t0 = Instant::now();
            if progress {
                ui::info(format!(
                    "  {}  preparing a worktree from {} ({})",
                    t.layer.name,
                    t.base,
                    &commit[..commit.len().min(10)]
                ));
            }
            make_entry(ctx, &t, &commit)?;
            made += 1;
            if progress {
                ui::info(format!(
                    "  {}  ready in {:.1}s",
                    t.layer.name,
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
    }
    Ok(made)
}

/// Makes one entry, all or nothing: on any failure (or a signal) what was made is removed.
fn make_entry(ctx: &mut Ctx, t: &Target, commit: &str) -> Result<()> {
    let token = crate::proc::new_token();
    let path = dir(ctx).join(format!("{}-{}", t.layer.name, &token[..12]));
    let row = ctx.store.pool_insert(
        ctx.ws_id,
        &t.layer.name,
        &t.repo.dir,
        &t.base,
        commit,
        &path,
        &token,
        &fingerprint(&t.layer),
        ctx.me,
    )?;
    failpoint::hit("pool:after-insert");
    let made = prepare_entry(ctx, t, &row);
    if let Err(e) = made {
        undo(ctx, &row);
        return Err(e);
    }
    Ok(())
}

fn prepare_entry(ctx: &mut Ctx, t: &Target, row: &PoolRow) -> Result<()> {
    provision::ensure_envs_dir_ignored(&ctx.ws.config.envs_dir, &ctx.ws.root)?;
    fs_err::create_dir_all(dir(ctx))?;
    t.repo.worktree_add(&row.path, None, &row.commit)?;
    failpoint::hit("pool:after-worktree");
    let tag = Tag::new(&row.token, Role::Setup)
        .layer(&t.layer.name)
        .owned_by(ctx.me);
    for entry in &t.layer.copy {
        provision::check_interrupt()?;
        crate::copy::materialise(&t.repo.dir, &row.path, entry, &t.layer.name, &tag)?;
    }
    failpoint::hit("pool:after-copy");
    run_prepare(ctx, &t.layer, &row.path, &tag, "pool:during-prepare")?;
    let key = t.repo.blob_ids(&row.commit, &t.layer.prepare_key)?;
    provision::check_interrupt()?;
    ctx.store.pool_ready(row.id, &key)?;
    failpoint::hit("pool:after-ready");
    Ok(())
}

/// Runs the layer's `prepare` steps in `worktree`: they depend on the code, never on an env
/// (no ports, no URLs), so they see the layer and the worktree only.
pub fn run_prepare(
    ctx: &Ctx,
    layer: &Layer,
    worktree: &Path,
    tag: &Tag,
    failpoint: &str,
) -> Result<()> {
    let log = ctx.log_dir(DIR).join(format!("{}.log", layer.name));
    let vars = vec![
        ("GROVE_LAYER".to_string(), layer.name.clone()),
        (
            "GROVE_WORKTREE".to_string(),
            worktree.to_string_lossy().into_owned(),
        ),
    ];
    for step in &layer.prepare {
        provision::check_interrupt()?;
        provision::run_step_at("prepare", step, worktree, &vars, &log, tag, failpoint)
            .with_context(|| format!("preparing a worktree of layer `{}`", layer.name))?;
    }
    Ok(())
}

/// Removes entry `row` and what it made: its processes stopped first, then its worktree
/// (only inside the pool folder), then its row. Idempotent.
pub fn undo(ctx: &mut Ctx, row: &PoolRow) {
    sweep::stop(
        &format!("pool:{}", row.layer),
        &row.token,
        sweep::Scope::All,
        Duration::from_secs(5),
    );
    let pool_dir = dir(ctx);
    if row.path.starts_with(&pool_dir) {
        crate::recover::remove_worktree(&Repo::new(row.repo.clone()), &row.path, &pool_dir);
    }
    let _ = ctx.store.pool_delete(row.id);
}

/// Removes the entries a crash left: one being made or handed out by a process that is
/// gone. A ready entry whose worktree vanished is forgotten. Returns how many.
pub fn recover(ctx: &mut Ctx) -> Result<usize> {
    let mut n = 0;
    for row in ctx.store.pool(ctx.ws_id)? {
        let orphan = match row.phase {
            PoolPhase::Ready => !row.path.is_dir(),
            PoolPhase::Preparing | PoolPhase::Claimed => !row.owner.is_some_and(|o| o.alive()),
        };
        if !orphan || !ctx.store.pool_take_over(row.id, row.owner, ctx.me)? {
            continue;
        }
        if row.phase != PoolPhase::Ready {
            ui::warn(format!(
                "a pool worktree of `{}` was left half-{} by a grove that did not finish; removing it",
                row.layer,
                if row.phase == PoolPhase::Preparing {
                    "prepared"
                } else {
                    "claimed"
                }
            ));
        }
        undo(ctx, &row);
        n += 1;
    }
    Ok(n)
}

/// Stops the filler and removes every entry not being handed out right now. Returns the
/// entries removed.
pub fn drain(ctx: &mut Ctx) -> Result<usize> {
    if let Some(f) = filler(ctx)? {
        ui::info(format!("stopping the pool filler (pid {})", f.pid));
        // SIGTERM: it removes the entry it was making itself; what it cannot is recovered
        // below once it is gone.
        crate::proc::stop_all(&[f], Duration::from_secs(10));
    }
    let mut n = recover(ctx)?;
    for row in ctx.store.pool(ctx.ws_id)? {
        if row.phase == PoolPhase::Ready && ctx.store.pool_take_over(row.id, row.owner, ctx.me)? {
            undo(ctx, &row);
            n += 1;
        }
    }
    let _ = std::fs::remove_dir(dir(ctx));
    Ok(n)
}

/// Starts a filler in the background when some layer's pool is short and none runs: a
/// detached grove at the lowest CPU and I/O priority, its output in the pool's log.
pub fn refill_in_background(ctx: &mut Ctx) -> Result<()> {
    if !short(ctx)? || filler(ctx)?.is_some() {
        return Ok(());
    }
    let token = filler_token(ctx)?;
    let log_path = ctx.log_dir(DIR).join("filler.log");
    let log = provision::open_log(&log_path)?;
    let exe = std::env::current_exe().context("locating the grove binary")?;
    // `nice` and `ionice` (util-linux) rather than setpriority(2) and ioprio_set(2): grove
    // has no unsafe code. Without ionice it still runs, at the lowest CPU priority.
    let mut cmd = Cmd::new("nice").args(["-n", "19"]);
    if which("ionice") {
        cmd = cmd.args(["ionice", "-c", "3"]);
    }
    let tag = Tag::new(&token, Role::Pool);
    cmd.arg(exe)
        .args(["pool", "fill", "--background"])
        .cwd(&ctx.ws.root)
        .env(crate::proc::TOKEN_VAR, tag.render())
        .spawn_logged(&log)?;
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// One entry as `pool status` shows it.
#[derive(Debug, Serialize)]
pub struct EntryReport {
    pub layer: String,
    pub base: String,
    pub commit: String,
    pub phase: PoolPhase,
    pub path: String,
    /// The base moved since the entry was made: a claim checks out what changed.
    pub behind: bool,
    /// Prepared with another config than the layer's now (`copy`, `prepare`,
    /// `prepare_key`): never handed out, removed by the next create or fill.
    pub stale: bool,
    pub created_at: i64,
}

#[derive(Debug, Serialize)]
pub struct PoolReport {
    pub layers: Vec<LayerPool>,
    /// The filler's pid while one runs.
    pub filler: Option<u32>,
    pub entries: Vec<EntryReport>,
}

#[derive(Debug, Serialize)]
pub struct LayerPool {
    pub layer: String,
    pub base: String,
    pub size: u32,
    /// Entries a create would take: ready, prepared with the layer's current config.
    pub ready: usize,
    pub preparing: usize,
}

pub fn report(ctx: &Ctx) -> Result<PoolReport> {
    let rows = ctx.store.pool(ctx.ws_id)?;
    let mut layers = Vec::new();
    let mut tips = std::collections::HashMap::new();
    let configs: std::collections::HashMap<&str, String> = ctx
        .ws
        .config
        .layers
        .values()
        .map(|l| (l.name.as_str(), fingerprint(l)))
        .collect();
    let stale = |r: &PoolRow| configs.get(r.layer.as_str()) != Some(&r.config);
    for t in targets(ctx)? {
        let count = |p: PoolPhase| {
            rows.iter()
                .filter(|r| {
                    r.layer == t.layer.name && r.base == t.base && r.phase == p && !stale(r)
                })
                .count()
        };
        if let Ok(Some(tip)) = t.repo.resolve_commit(&t.base) {
            tips.insert((t.layer.name.clone(), t.base.clone()), tip);
        }
        layers.push(LayerPool {
            layer: t.layer.name.clone(),
            base: t.base.clone(),
            size: t.layer.pool,
            ready: count(PoolPhase::Ready),
            preparing: count(PoolPhase::Preparing),
        });
    }
    let entries = rows
        .into_iter()
        .map(|r| EntryReport {
            stale: stale(&r),
            behind: tips
                .get(&(r.layer.clone(), r.base.clone()))
                .is_some_and(|tip| *tip != r.commit),
            layer: r.layer,
            base: r.base,
            commit: r.commit,
            phase: r.phase,
            path: r.path.to_string_lossy().into_owned(),
            created_at: r.created_at,
        })
        .collect();
    Ok(PoolReport {
        layers,
        filler: filler(ctx)?.map(|p| p.pid),
        entries,
    })
}
