//! `grove create`: plan everything and check it before touching anything, then make the env
//! step by step under a journal, and undo it all on the first failure or interrupt.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use indexmap::IndexMap;

use crate::cli::CreateArgs;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::git::Repo;
use crate::proc::{Role, Tag};
use crate::provision::{self, check_interrupt};
use crate::report::{self, EnvReport};
use crate::state::{Action, EnvRow, Instance, Phase};
use crate::vars::{Dedicated, EnvView};
use crate::{failpoint, interrupt, names, ports, recover, ui};

/// What to create; the part of `grove create`'s arguments that other commands reuse.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub name: String,
    /// `(layer, base)` pairs from `--from-<layer>` and `--from LAYER=BASE`.
    pub from: Vec<(String, String)>,
    pub base: Option<String>,
    pub start: bool,
    /// Infra layers to isolate (`--isolate-<layer>`, `--isolate LAYER`), besides the
    /// workspace's `default_isolated`.
    pub isolate: Vec<String>,
}

/// One dedicated layer, checked and ready to make.
struct LayerPlan {
    layer: String,
    repo: Repo,
    /// The base as the user named it (shown in `ps`), and the commit it resolved to.
    base: String,
    base_commit: String,
    /// The full ref the base named (`None`: a commit id).
    base_ref: Option<String>,
    /// True when branch NAME does not exist yet and grove creates it.
    new_branch: bool,
    worktree: PathBuf,
}

pub fn run(ctx: &mut Ctx, args: &CreateArgs) -> Result<()> {
    let mut from = args.from_layer.clone();
    for spec in &args.from {
        let Some((layer, base)) = spec.split_once('=') else {
            return Err(Fail::usage(format!("`--from {spec}` is not LAYER=BASE"))
                .hint("write `--from api=main`, or `--from-api=main`")
                .into());
        };
        from.push((layer.to_string(), base.to_string()));
    }
    for (flag, v) in [
        ("--docker-context", &args.docker_context),
        ("--docker-host", &args.docker_host),
    ] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err(Fail::new(format!("`{flag}` is empty"))
                .hint("name a context (`docker context ls`) or an address (`ssh://me@build-2`)")
                .into());
        }
        if v.is_some() && !ctx.ws.config.has_compose() {
            ui::warn(format!(
                "`{flag}` does nothing here: no layer of this workspace runs as a compose service"
            ));
        }
    }
    if let Some(c) = &args.docker_context {
        ctx.ws.config.docker.engine = crate::config::Engine::Context(c.clone());
    } else if let Some(h) = &args.docker_host {
        ctx.ws.config.docker.engine = crate::config::Engine::Host(h.clone());
    }
    if !args.tickets.is_empty() {
        let isolate: Vec<String> = args
            .isolate_layer
            .iter()
            .chain(&args.isolate)
            .cloned()
            .collect();
        return super::fanout::run(ctx, args, &from, &isolate);
    }
    // A compose layer needs docker, Compose v2 and a daemon that answers: said before
    // anything is made. (Checked for the whole workspace: which layers the env dedicates
    // is known only later, and one compose layer in grove.toml is reason enough to check.)
    if ctx.ws.config.has_compose() {
        crate::compose::require(
            &ctx.ws.config.docker.engine,
            ctx.ws.config.docker.network.as_deref(),
        )?;
    }
    let mut isolate = args.isolate_layer.clone();
    isolate.extend(args.isolate.iter().cloned());
    let opts = CreateOpts {
        name: args.name.clone().unwrap_or_default(),
        from,
        base: args.base.clone(),
        start: !args.no_start,
        isolate,
    };
    let (env, made) = create(ctx, &opts)?;
    let instances = ctx.store.instances(env.key)?;
    let report = report::env_report(ctx, &env, &instances)?;
    if args.json {
        // The env as `ps --json` shows it, with what making it took.
        let mut value = serde_json::to_value(&report)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("made".into(), serde_json::to_value(&made)?);
        }
        ui::out(serde_json::to_string_pretty(&value)?);
    } else {
        print_urls(&report);
    }
    if args.agent {
        // The env is whole and stays if its agent cannot start.
        crate::agent::launch(ctx, &env, args.ticket.as_deref(), None)?;
    }
    Ok(())
}

/// On an engine of another machine, a bind mount of the worktree mounts a path of *that*
/// machine: the container would not see the env's code. Said at create, with the way out.
fn warn_bind_mounts(ctx: &Ctx, env: &EnvRow) {
    let host = env.engine_host.as_deref().unwrap_or("localhost");
    // An address, even 127.0.0.1, may be a tunnel to another machine's engine: only the
    // engine of this machine's socket surely sees its files.
    if host == "localhost" {
        return;
    }
    let Ok(instances) = ctx.store.instances(env.key) else {
        return;
    };
    let view = ctx.view(env, &instances);
    for inst in &instances {
        let Some(layer) = ctx.ws.config.layers.get(&inst.layer) else {
            continue;
        };
        let crate::config::Runner::Compose(spec) = &layer.runner else {
            continue;
        };
        let Ok(vars) = view.vars(layer) else {
            continue;
        };
        let vars = crate::compose::compose_env(&vars, spec);
        let engine = ctx.engine(env);
        let Ok(file) = crate::compose::file_in(&inst.worktree, spec) else {
            continue;
        };
        let project = crate::compose::project_name(&ctx.ws.key(), &env.ident, &inst.layer);
        let Ok(model) =
            crate::compose::model(&engine, &inst.worktree, &file, spec, &project, &vars)
        else {
            continue;
        };
        let mounts = crate::compose::bind_mounts(&model, spec);
        if !mounts.is_empty() {
            ui::warn(ui::listed(
                format!(
                    "`{}` bind-mounts paths of this machine, which the Docker engine at {host} may not see (another machine, or one behind a tunnel):",
                    inst.layer
                ),
                &mounts,
            ));
            ui::hint(
                "build the image from the worktree (`build:`) and sync changes with `develop.watch`; grove runs `compose up --watch` for such a service",
            );
        }
    }
}

/// The DESIGN.md summary: one line per layer, dedicated with its URL and base, or shared.
pub fn print_urls(report: &EnvReport) {
    let width = report
        .layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(0);
    for l in &report.layers {
        let rest = match l.mode {
            "dedicated" => format!(
                "{}  [{} from {}]",
                l.url
                    .as_deref()
                    .map_or_else(|| "(no url)".into(), |u| ui::paint(ui::Tone::Link, u)),
                l.branch.as_deref().unwrap_or("?"),
                l.base.as_deref().unwrap_or("?")
            ),
            "isolated" => format!(
                "isolated  {}",
                ui::paint(ui::Tone::Link, l.url.as_deref().unwrap_or("?"))
            ),
            _ => format!(
                "{}  {}",
                ui::paint(ui::Tone::Dim, "shared"),
                l.url.as_deref().unwrap_or("(no shared_url)")
            ),
        };
        ui::out(format!("  {:width$}  {rest}", l.name));
    }
}

/// What making an env took, for `create --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Made {
    /// From the command's start to every server ready (or to the env made, with `--no-start`).
    pub total_ms: u64,
    pub start_ms: Option<u64>,
    pub layers: Vec<LayerTiming>,
}

/// Makes the env `opts.name`, all or nothing.
pub fn create(ctx: &mut Ctx, opts: &CreateOpts) -> Result<(EnvRow, Made)> {
    let t0 = Instant::now();
    crate::git::require_version()?;
    let env_name = names::env_name(&opts.name)?;
    // A create of the same name that died half-way is undone first: retrying it just works.
    recover::unfinished(ctx)?;
    if ctx.store.env(ctx.ws_id, &env_name)?.is_some() {
        return Err(Fail::new(format!("env `{env_name}` already exists"))
            .hint(format!(
                "pick another name, or `grove destroy {}` first",
                crate::shq(&env_name)
            ))
            .into());
    }
    let plans = plan(ctx, opts, &env_name)?;
    let isolated = isolated_layers(ctx, opts)?;
    preflight_templates(ctx, &env_name, &opts.name, &plans, &isolated)?;

    check_envs_dir(ctx)?;

    interrupt::guard();
    let ident = names::env_id(&env_name);
    let Some(env) = ctx.store.insert_env(
        ctx.ws_id,
        &env_name,
        &ident,
        |n| names::with_suffix(&ident, &env_name, n),
        ctx.me,
    )?
    else {
        return Err(Fail::new(format!("env `{env_name}` already exists"))
            .hint("another grove created it a moment ago")
            .into());
    };
    failpoint::hit("create:after-insert");
    // The engine is the env's for its life: a later change of the workspace's must not lose
    // its containers.
    let env = if ctx.ws.config.has_compose() {
        let engine = &ctx.ws.config.docker.engine.pinned();
        let host = crate::config::engine_host_name(&engine.endpoint());
        ctx.store.set_engine(env.key, &engine.stored(), &host)?;
        ctx.store.env(ctx.ws_id, &env_name)?.unwrap_or(env)
    } else {
        env
    };
    // The name is ours now: logs of an earlier env of that name are not this one's.
    let _ = fs_err::remove_dir_all(ctx.log_dir(&env_name));
    ui::info(format!(
        "creating env `{env_name}` in {}",
        crate::tilde(&ctx.ws.root)
    ));
    let mut pool_touched = false;
    match make(ctx, &env, &plans, &isolated, opts, &mut pool_touched) {
        Ok(layers) => {
            let done = finish(ctx, env, opts, layers, t0);
            // Claimed entries are replaced (and a new pool is filled) once the servers are
            // up or have failed, so that the filler never competes with this create; and
            // whatever became of them: the env is made, the entry it took is gone either way.
            refill(ctx);
            done
        }
        Err(err) => {
            ui::info(format!("undoing the partial create of `{env_name}`…"));
            if let Err(undo) = recover::rollback(ctx, env.key) {
                ui::warn(format!(
                    "rollback failed: {undo:#}; `grove doctor --fix` will retry it"
                ));
            }
            // An entry taken (or a stale one removed) is not given back by the rollback: the
            // entry moved into the env went with it. The pool is refilled so that this failed
            // create leaves it as full as it found it, and a retry is as fast as the first
            // try. A create undone before it touched the pool starts nothing: a failed
            // command leaves no new process behind it, and the pool is as it was. Nor does
            // one stopped by Ctrl-C: whoever pressed it wants grove to stop.
            if pool_touched && crate::interrupt::received().is_none() {
                refill(ctx);
            }
            Err(err)
        }
    }
}

/// Starts the pool's filler in the background if the pool is short; a failure to start it
/// is a warning, never the create's failure.
fn refill(ctx: &mut Ctx) {
    if let Err(e) = crate::pool::refill_in_background(ctx) {
        ui::warn(format!("could not start refilling the pool: {e:#}"));
    }
}

/// The env is made: marks it whole, starts its servers and reports them.
fn finish(
    ctx: &mut Ctx,
    env: EnvRow,
    opts: &CreateOpts,
    layers: Vec<LayerTiming>,
    t0: Instant,
) -> Result<(EnvRow, Made)> {
    let env_name = env.name.clone();
    // The env is whole; this grove still owns it until its servers are up, so that a
    // destroy (or down) in between is refused rather than racing the start.
    ctx.store.finish_create(env.key, ctx.me)?;
    failpoint::hit("create:after-finish");
    let env = ctx.store.env(ctx.ws_id, &env_name)?.unwrap_or(env);
    warn_bind_mounts(ctx, &env);
    // From here a server that does not come up is reported, and the env stays for the
    // user to fix and `grove restart` (nothing to roll back).
    let t_start = Instant::now();
    let started = if opts.start {
        crate::supervisor::up(ctx, &env)
    } else {
        Ok(())
    };
    let start_ms = opts.start.then(|| ms_since(t_start));
    failpoint::hit("create:after-supervisor");
    ctx.store.set_phase(env.key, Phase::Ready, None)?;
    // With servers, their supervisor measures the env's disk use; without, it is
    // measured here (read by `ps`, never measured by it).
    if !opts.start || !crate::supervisor::has_servers(ctx, &env)? {
        crate::disk::refresh(ctx, &env)?;
    }
    started?;
    ui::info(format!(
        "created env `{env_name}` in {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    let made = Made {
        total_ms: ms_since(t0),
        start_ms,
        layers,
    };
    Ok((env, made))
}

/// When the envs folder lies inside a repo, it must be somewhere git does not track: grove
/// writes a `.gitignore` there and puts worktrees in it. Checked before anything is made; the
/// error points at `envs_dir` in grove.toml.
fn check_envs_dir(ctx: &Ctx) -> Result<()> {
    let config = &ctx.ws.config;
    for layer in config.layers.values() {
        let Some(repo) = &layer.repo else { continue };
        let Ok(rel) = config.envs_dir.strip_prefix(repo) else {
            continue;
        };
        let Some(first) = rel.components().next() else {
            continue;
        };
        let first = first.as_os_str().to_string_lossy();
        let tracked = crate::git::git(repo)
            .args(["ls-files", "-z", "--", &first])
            .run()
            .is_ok_and(|o| !o.stdout.is_empty());
        if tracked {
            return Err(config.error_at(
                "envs_dir",
                format!(
                    "`envs_dir` {} is inside the tracked tree of repo `{}` (`{first}` is tracked)",
                    config.envs_dir.display(),
                    repo.display()
                ),
                "grove puts worktrees and a `.gitignore` in the envs folder: choose a folder no repo tracks, such as `.grove/envs`",
            ).into());
        }
    }
    Ok(())
}

/// Resolves dedicated layers, bases and branches, and checks all of it, changing nothing.
fn plan(ctx: &Ctx, opts: &CreateOpts, env_name: &str) -> Result<Vec<LayerPlan>> {
    let config = &ctx.ws.config;
    let mut from: IndexMap<String, String> = IndexMap::new();
    for (layer, base) in &opts.from {
        match config.layers.get(layer) {
            Some(l) if l.is_code() => {}
            Some(_) => {
                return Err(Fail::usage(format!(
                    "layer `{layer}` has no repo: it cannot be branched"
                ))
                .hint("`--from-<layer>` applies to code layers (those with `repo`)")
                .into());
            }
            None => {
                let known = config.code_layers();
                return Err(Fail::usage(format!("unknown layer `{layer}`"))
                    .hint(format!("code layers: {}", known.join(", ")))
                    .into());
            }
        }
        if from.insert(layer.clone(), base.clone()).is_some() {
            return Err(Fail::usage(format!("layer `{layer}` is given two bases")).into());
        }
    }
    let env_dir = ctx.ws.env_dir(env_name);
    if env_dir.exists() {
        return Err(Fail::new(format!(
            "{} already exists, but no env `{env_name}` does",
            env_dir.display()
        ))
        .hint("it is not grove's: move it away or delete it, then try again")
        .into());
    }
    let dedicated: Vec<&str> = config
        .layers
        .values()
        .filter(|l| config.default_layers.contains(&l.name) || from.contains_key(&l.name))
        .map(|l| l.name.as_str())
        .collect();
    if dedicated.is_empty() {
        return Err(
            Fail::new("nothing to create: no default layers and no `--from-<layer>`")
                .hint("set `default_layers` in [workspace], or pass `--from-<layer>=BASE`")
                .into(),
        );
    }
    let mut plans = Vec::new();
    for name in dedicated {
        let layer = &config.layers[name];
        let repo = Repo::new(
            layer
                .repo
                .clone()
                .expect("dedicated layers are code layers"),
        );
        let base = match from
            .get(name)
            .or(opts.base.as_ref())
            .or(layer.base.as_ref())
        {
            Some(b) => b.clone(),
            None => repo.default_branch()?,
        };
        let Some(base_commit) = repo.resolve_commit(&base)? else {
            return Err(Fail::new(format!(
                "base `{base}` of layer `{name}` not found in {}",
                repo.dir.display()
            ))
            .hint(format!(
                "use a branch, tag or commit of that repo (`git -C {} branch -a`), or fetch it first",
                repo.dir.display()
            ))
            .into());
        };
        let base_ref = repo.full_ref(&base)?;
        if base_ref.as_deref() == Some(format!("refs/heads/{}", opts.name).as_str()) {
            return Err(Fail::new(format!(
                "base `{base}` of layer `{name}` is the env's own branch `{}`",
                opts.name
            ))
            .hint("an env's branch starts from another branch: pass its base with `--base` or `--from-<layer>`")
            .into());
        }
        let new_branch = match repo.branch_tip(&opts.name)? {
            None => true,
            Some(_) => {
                let holder = repo
                    .worktrees()?
                    .into_iter()
                    .find(|w| w.branch.as_deref() == Some(opts.name.as_str()));
                if let Some(w) = holder {
                    return Err(Fail::new(format!(
                        "branch `{}` of layer `{name}` is checked out at {}",
                        opts.name,
                        w.path.display()
                    ))
                    .hint("a branch can be checked out in one worktree at a time: switch that one to another branch, or pick another env name")
                    .into());
                }
                false
            }
        };
        if let Some(dotenv) = &layer.dotenv {
            let start = if new_branch {
                base_commit.clone()
            } else {
                opts.name.clone()
            };
            if repo.tracks(&start, dotenv)? {
                return Err(Fail::new(format!(
                    "`dotenv = \"{dotenv}\"` of layer `{name}` is a file git tracks"
                ))
                .hint("grove rewrites that file in every env; name a file the repo does not track, such as `.env.grove`")
                .into());
            }
        }
        plans.push(LayerPlan {
            layer: name.to_string(),
            repo,
            base,
            base_commit,
            base_ref,
            new_branch,
            worktree: env_dir.join(name),
        });
    }
    Ok(plans)
}

/// Renders every template the env will need, with placeholder ports, so that a template
/// that cannot render (a shared URL that does not exist) fails before anything is made.
/// The infra layers the env isolates: the workspace's defaults and those asked for.
fn isolated_layers(ctx: &Ctx, opts: &CreateOpts) -> Result<Vec<String>> {
    let config = &ctx.ws.config;
    let mut out: Vec<String> = config.default_isolated.clone();
    for layer in &opts.isolate {
        match config.layers.get(layer) {
            Some(l) if l.isolate.is_some() => {}
            Some(l) => {
                return Err(crate::isolate::no_recipe(l, &format!("--isolate {layer}")).into());
            }
            None => {
                let known: Vec<&str> = config
                    .layers
                    .values()
                    .filter(|l| l.isolate.is_some())
                    .map(|l| l.name.as_str())
                    .collect();
                return Err(Fail::usage(format!("unknown layer `{layer}`"))
                    .hint(format!(
                        "layers that can be isolated: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                    .into());
            }
        }
        if !out.contains(layer) {
            out.push(layer.clone());
        }
    }
    Ok(out)
}

fn preflight_templates(
    ctx: &Ctx,
    env_name: &str,
    branch: &str,
    plans: &[LayerPlan],
    isolated: &[String],
) -> Result<()> {
    let ident = names::env_id(env_name);
    let dedicated = plans
        .iter()
        .map(|p| {
            let port = ctx.ws.config.layers[&p.layer].ports.map(|r| r.start);
            let d = Dedicated {
                port,
                branch: branch.to_string(),
                worktree: p.worktree.clone(),
            };
            (p.layer.clone(), d)
        })
        .collect();
    let view = EnvView {
        engine_host: "localhost",
        config: &ctx.ws.config,
        root: &ctx.ws.root,
        name: env_name,
        ident: &ident,
        dedicated,
        // The real URLs exist once made; any value tells the templates the layer is there.
        isolated: isolated
            .iter()
            .map(|l| (l.clone(), "isolated://".to_string()))
            .collect(),
    };
    for p in plans {
        view.vars(&ctx.ws.config.layers[&p.layer])?;
    }
    Ok(())
}

/// The steps, each journaled before it is taken.
/// `pool_touched` is set once an entry of the pool is claimed or removed.
fn make(
    ctx: &mut Ctx,
    env: &EnvRow,
    plans: &[LayerPlan],
    isolated: &[String],
    opts: &CreateOpts,
    pool_touched: &mut bool,
) -> Result<Vec<LayerTiming>> {
    let config = ctx.ws.config.clone();
    provision::ensure_envs_dir_ignored(&config.envs_dir, &ctx.ws.root)?;
    let env_dir = ctx.ws.env_dir(&env.name);
    ctx.store.journal_push(
        env.key,
        &Action::EnvDir {
            path: env_dir.clone(),
        },
    )?;
    fs_err::create_dir_all(&env_dir)?;
    failpoint::hit("create:after-envdir");

    let w = plans.iter().map(|p| p.layer.len()).max().unwrap_or(0);
    let mut leased = IndexMap::new();
    for p in plans {
        check_interrupt()?;
        if let Some(range) = config.layers[&p.layer].ports {
            // A compose layer's port is published on its engine's host.
            let host = match config.layers[&p.layer].runner {
                crate::config::Runner::Compose(_) => env.engine_host.as_deref(),
                crate::config::Runner::Process => None,
            };
            let port = ports::lease(
                &mut ctx.store,
                env.key,
                &p.layer,
                range,
                None,
                host.unwrap_or("localhost"),
            )?;
            leased.insert(p.layer.clone(), port);
        }
    }
    failpoint::hit("create:after-lease");
    let marker = recover::branch_marker(env);
    // Layers whose worktree came from the pool: copied and prepared already.
    let mut claimed: IndexMap<String, crate::state::PoolRow> = IndexMap::new();
    for p in plans {
        check_interrupt()?;
        let how = if p.new_branch {
            "new branch"
        } else {
            "existing branch"
        };
        ui::info(format!(
            "  {:w$}  worktree on {how} `{}` from {}",
            p.layer, opts.name, p.base
        ));
        if p.new_branch {
            // Journaled first, made with grove's reflog message and only if absent: the undo
            // deletes it only if it is there, unmoved, and made by grove for this env; a
            // branch someone else made in the meantime is never what it deletes.
            let action = Action::Branch {
                repo: p.repo.dir.clone(),
                name: opts.name.clone(),
                sha: p.base_commit.clone(),
            };
            ctx.store.journal_push(env.key, &action)?;
            failpoint::hit("create:before-branch");
            if !p.repo.create_branch(&opts.name, &p.base_commit, &marker)? {
                return Err(Fail::new(format!(
                    "branch `{}` appeared in {} while the env was being made",
                    opts.name,
                    p.repo.dir.display()
                ))
                .hint("another grove or git made it; try again")
                .into());
            }
            failpoint::hit("create:after-branch");
        }
        ctx.store.journal_push(
            env.key,
            &Action::Worktree {
                repo: p.repo.dir.clone(),
                path: p.worktree.clone(),
            },
        )?;
        failpoint::hit("create:before-worktree");
        let layer = &config.layers[&p.layer];
        let entry = if layer.pool > 0 {
            let stale = crate::pool::discard_stale(ctx, layer, None)?;
            *pool_touched |= stale > 0;
            let entry = ctx.store.pool_claim(
                ctx.ws_id,
                &p.layer,
                &p.base,
                &crate::pool::fingerprint(layer),
                ctx.me,
            )?;
            *pool_touched |= entry.is_some();
            if stale > 0 {
                ui::info(format!(
                    "  {:w$}  removed {stale} pool worktree(s) prepared with another config (`copy`, `prepare` or `prepare_key` changed, or an older grove){}",
                    p.layer,
                    if entry.is_some() {
                        ""
                    } else {
                        "; making this one afresh"
                    }
                ));
            }
            entry
        } else {
            None
        };
        match entry {
            Some(row) => {
                failpoint::hit("create:after-claim");
                take_from_pool(ctx, p, &row, &opts.name)?;
                ui::info(format!(
                    "  {:w$}  took a prepared worktree from the pool{}",
                    p.layer,
                    if row.commit == p.base_commit {
                        String::new()
                    } else {
                        format!(" (made at {}, brought up to date)", short_id(&row.commit))
                    }
                ));
                claimed.insert(p.layer.clone(), row);
            }
            None => p.repo.worktree_add(&p.worktree, None, &opts.name)?,
        }
        failpoint::hit("create:after-worktree");
        ctx.store.insert_instance(
            env.key,
            &Instance {
                layer: p.layer.clone(),
                repo: p.repo.dir.clone(),
                worktree: p.worktree.clone(),
                branch: opts.name.clone(),
                base: p.base.clone(),
                base_commit: p.base_commit.clone(),
                base_ref: p.base_ref.clone(),
                branch_created: p.new_branch,
                port: leased.get(&p.layer).copied(),
            },
        )?;
        failpoint::hit("create:after-instance");
    }
    // Isolated infra before setup: setup (migrations) and servers use its URLs.
    for layer in isolated {
        check_interrupt()?;
        let cfg = config.layers[layer].clone();
        let row = crate::isolate::create(ctx, env, &cfg)?;
        ui::info(format!("  {layer:w$}  isolated: {}", row.url));
    }
    crate::manifest::write(ctx, env)?;
    let instances = ctx.store.instances(env.key)?;
    let all_vars = {
        let view = ctx.view(env, &instances);
        plans
            .iter()
            .map(|p| view.vars(&config.layers[&p.layer]))
            .collect::<Result<Vec<_>>>()?
    };
    let log = ctx.log_dir(&env.name).join("setup.log");
    // Before anything runs a process: if grove dies meanwhile, the undo stops it (and what
    // it started) by the env's token.
    ctx.store.journal_push(env.key, &Action::Processes)?;
    let mut timings: Vec<LayerTiming> = plans
        .iter()
        .map(|p| LayerTiming {
            layer: p.layer.clone(),
            pool: None,
            copies: Vec::new(),
            prepare_ms: None,
            setup_ms: None,
        })
        .collect();
    let copied = copy_all(ctx, env, plans, &claimed)?;
    for (t, c) in timings.iter_mut().zip(copied) {
        for done in &c {
            ui::info(format!("  {:w$}  {}", t.layer, describe_copy(done)));
        }
        t.copies = c;
    }
    failpoint::hit("create:after-copy");
    // A compose layer's file, as Compose reads it in the new worktree, names the layer's
    // services: checked before any setup step runs, so a wrong name undoes the env whole.
    for (p, vars) in plans.iter().zip(&all_vars) {
        if let crate::config::Runner::Compose(spec) = &config.layers[&p.layer].runner {
            let file = crate::compose::file_in(&p.worktree, spec)?;
            let project = crate::compose::project_name(&ctx.ws.key(), &env.ident, &p.layer);
            let env_vars = crate::compose::compose_env(vars, spec);
            crate::compose::model(
                &ctx.engine(env),
                &p.worktree,
                &file,
                spec,
                &project,
                &env_vars,
            )?;
        }
    }
    for ((p, vars), timing) in plans.iter().zip(all_vars).zip(timings.iter_mut()) {
        check_interrupt()?;
        let layer = &config.layers[&p.layer];
        for c in timing.copies.iter().filter(|c| c.done == "symlinked") {
            // A link is not a folder to git: `node_modules/` in .gitignore does not hide a
            // link named node_modules, and it would count as the env's uncommitted work.
            provision::keep_out_of_diff(&p.repo, &p.worktree, &c.path)?;
        }
        if let Some(dotenv) = &layer.dotenv {
            let (path, real) = provision::dotenv_target(&p.worktree, dotenv, &p.layer)?;
            provision::keep_out_of_diff(&p.repo, &p.worktree, &real)?;
            provision::write_dotenv(&path, &crate::vars::dotenv_lines(&vars))
                .with_context(|| format!("writing {dotenv} in the {} worktree", p.layer))?;
            failpoint::hit("create:after-dotenv");
        }
        let tag = Tag::new(&env.token, Role::Setup)
            .layer(&p.layer)
            .owned_by(ctx.me);
        let prepare = match claimed.get(&p.layer) {
            None => true,
            Some(row) => {
                let now = p.repo.blob_ids(&p.base_commit, &layer.prepare_key)?;
                timing.pool = Some(if now == row.prep_key {
                    "claimed"
                } else {
                    "claimed, prepared again"
                });
                if now != row.prep_key {
                    ui::info(format!(
                        "  {:w$}  {} changed since the worktree was prepared: preparing again",
                        p.layer,
                        layer.prepare_key.join(", ")
                    ));
                }
                now != row.prep_key
            }
        };
        for (what, steps) in [("prepare", &layer.prepare), ("setup", &layer.setup)] {
            if steps.is_empty() || (what == "prepare" && !prepare) {
                continue;
            }
            let t_steps = Instant::now();
            for (i, step) in steps.iter().enumerate() {
                check_interrupt()?;
                let t = Instant::now();
                ui::info(format!(
                    "  {:w$}  {what} {}/{}: {step}",
                    p.layer,
                    i + 1,
                    steps.len()
                ));
                provision::run_step(what, step, &p.worktree, &vars, &log, &tag)
                    .with_context(|| format!("setting up layer `{}`", p.layer))?;
                failpoint::hit("create:after-setup");
                ui::info(format!(
                    "  {:w$}  {what} {}/{} done in {:.1}s",
                    p.layer,
                    i + 1,
                    steps.len(),
                    t.elapsed().as_secs_f64()
                ));
            }
            let ms = Some(ms_since(t_steps));
            if what == "prepare" {
                timing.prepare_ms = ms;
            } else {
                timing.setup_ms = ms;
            }
        }
    }
    check_interrupt()?;
    Ok(timings)
}

/// What one layer's making took, for `create --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerTiming {
    pub layer: String,
    /// `claimed` when the worktree came from the warm pool (`claimed, prepared again` when a
    /// `prepare_key` file had changed), `null` when made afresh.
    pub pool: Option<&'static str>,
    pub copies: Vec<crate::copy::Copied>,
    pub prepare_ms: Option<u64>,
    pub setup_ms: Option<u64>,
}

/// Moves the pool entry `row` into the env as `p`'s worktree and checks out the env's
/// branch there: only files that differ from the entry's commit are rewritten. Once moved,
/// the worktree is the env's (journaled as such); the entry's row goes.
fn take_from_pool(
    ctx: &mut Ctx,
    p: &LayerPlan,
    row: &crate::state::PoolRow,
    branch: &str,
) -> Result<()> {
    if let Err(e) = p.repo.worktree_move(&row.path, &p.worktree) {
        crate::pool::undo(ctx, row);
        return Err(e);
    }
    failpoint::hit("create:after-move");
    ctx.store.pool_delete(row.id)?;
    p.repo.switch_fresh(&p.worktree, branch)?;
    p.repo.refresh_index(&p.worktree);
    Ok(())
}

fn short_id(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One line of the create report for a copy entry.
pub fn describe_copy(c: &crate::copy::Copied) -> String {
    let size = |b: u64| {
        if b >= 1 << 30 {
            format!("{:.1} GB", b as f64 / f64::from(1u32 << 30))
        } else {
            format!("{:.0} MB", b as f64 / f64::from(1u32 << 20))
        }
    };
    match c.done {
        "skipped" => format!("{}: skipped", c.path),
        "symlinked" => format!("{}: symlinked to the main checkout", c.path),
        done => format!(
            "{}: {done} {} files ({}) in {:.2}s",
            c.path,
            c.files,
            size(c.bytes),
            c.ms as f64 / 1000.0
        ),
    }
}

/// The `copy` entries of every layer, the layers at once (each a thread of its own: the work
/// is the disk's, and one layer's big folder need not wait for another's).
fn copy_all(
    ctx: &Ctx,
    env: &EnvRow,
    plans: &[LayerPlan],
    claimed: &IndexMap<String, crate::state::PoolRow>,
) -> Result<Vec<Vec<crate::copy::Copied>>> {
    let config = &ctx.ws.config;
    let me = ctx.me;
    std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                let layer = &config.layers[&p.layer];
                let tag = Tag::new(&env.token, Role::Setup)
                    .layer(&p.layer)
                    .owned_by(me);
                let from_pool = claimed.contains_key(&p.layer);
                s.spawn(move || {
                    if from_pool {
                        return Ok(Vec::new());
                    }
                    layer
                        .copy
                        .iter()
                        .map(|entry| {
                            crate::copy::materialise(
                                &p.repo.dir,
                                &p.worktree,
                                entry,
                                &p.layer,
                                &tag,
                            )
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a copy thread panicked"))?
            })
            .collect()
    })
}
