//! `grove destroy`: look at every layer first and refuse before changing anything when work
//! would be lost; then remove worktrees, delete only the branches grove created whose commits
//! are safe elsewhere, and free the ports.
//!
//! Risk of data loss lives here. Uncommitted changes, untracked files, edits hidden from git
//! by index flags, files in the env folder and commits that only the worktree's HEAD holds
//! (a detached HEAD) block the destroy; unmerged commits keep their branch. Only `--force`
//! discards, and it says what.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::DestroyArgs;
use crate::ctx::Ctx;
use crate::error::{Exit, Fail};
use crate::git::Repo;
use crate::state::{EnvRow, Instance, Phase};
use crate::sweep::Scope;
use crate::{failpoint, interrupt, ui};

/// Commits listed at most, per layer, in messages.
const SHOW_COMMITS: usize = 10;

/// What destroying one layer would do, found before anything is changed.
struct LayerCheck {
    inst: Instance,
    /// The worktree is still on disk.
    present: bool,
    /// Uncommitted and untracked (not ignored) files.
    dirty: Vec<String>,
    /// The branch's tip now, if the branch exists.
    tip: Option<String>,
    /// Commits on the branch that are neither in the base nor on its upstream.
    unmerged: Vec<String>,
    /// Another worktree has the branch checked out (the env's moved, or someone else's).
    elsewhere: Option<std::path::PathBuf>,
    /// What the worktree has checked out when it is not the env's branch: another branch
    /// (switched by hand), or `None` for a detached HEAD.
    switched: Option<Option<String>>,
    /// Commits that only the worktree's HEAD holds: no ref keeps them once the worktree (and
    /// the branch, if it is deleted) is gone.
    orphans: Vec<String>,
    /// What makes git refuse to remove the worktree without `--force` (a lock, submodules):
    /// found before anything is removed, so that a destroy never stops half-way on it.
    blockers: Vec<String>,
    /// The branch's commits that no other ref holds: what deleting it would lose. Usually its
    /// unmerged commits; also its base's, when that base was deleted since.
    branch_only: Vec<String>,
    /// How the branch's work is in its base although its commits are not (squash-merged,
    /// rebased by a forge): deleting it loses no content of its tip, only the old commits.
    integrated: Option<crate::git::integrate::Integrated>,
    /// The caller cleans up integrated work (`land`, `prune`): an integrated branch goes.
    /// A plain destroy keeps it and says why: its commits are in no other ref.
    drop_integrated: bool,
}

impl LayerCheck {
    /// Only a branch grove created, not checked out anywhere else, whose commits are safe
    /// (or `--force`). A branch checked out elsewhere is kept even with `--force`: someone is
    /// working on it there.
    fn deletes_branch(&self, force: bool) -> bool {
        self.inst.branch_created
            && self.tip.is_some()
            && self.elsewhere.is_none()
            && ((self.unmerged.is_empty() && self.branch_only.is_empty())
                || (self.integrated.is_some() && self.drop_integrated)
                || force)
    }
}

pub fn run(ctx: &mut Ctx, args: &DestroyArgs) -> Result<()> {
    crate::git::require_version()?;
    interrupt::guard();
    let cleaned = crate::recover::unfinished(ctx)?;
    if cleaned.contains(&args.name.replace('/', "-")) {
        // It was half-made: undoing that was destroying it.
        return Ok(());
    }
    let env = ctx.require_env(&args.name)?;
    ctx.require_idle(&env)?;
    if args.keep_data {
        data_can_be_kept(ctx, &env, "destroy")?;
    }
    let pre = preflight(ctx, &env, args.force, false)?;
    if let Some(refusal) = pre.refusal(ctx, &env)
        && !args.force
    {
        return Err(refusal.into());
    }
    // Agents script grove: with nobody to ask, `--force` alone must not throw work away at
    // once; `--yes` says someone meant it.
    let mut discarded = pre.work_lines(ctx, &env, true);
    for c in pre
        .checks
        .iter()
        .filter(|c| c.deletes_branch(true) && !c.deletes_branch(false))
    {
        let commits = if c.branch_only.is_empty() {
            &c.unmerged
        } else {
            &c.branch_only
        };
        discarded.push(format!(
            "{}: branch `{}` with {} commit(s) in no other branch: {}",
            c.inst.layer,
            c.inst.branch,
            commits.len(),
            list(commits, SHOW_COMMITS)
        ));
    }
    if args.force && !discarded.is_empty() && !args.yes && !ui::interactive() {
        let msg = ui::listed(
            format!(
                "`--force` would throw away work of env `{}`, and there is no terminal to ask on; nothing was removed",
                env.name
            ),
            &discarded,
        );
        let n = crate::shq(&env.name);
        return Err(Fail::new(msg)
            .hint(format!(
                "`grove destroy {n} --force --yes` throws it away; `grove review {n}` shows it first"
            ))
            .into());
    }
    if ui::interactive() && !args.yes {
        ui::info(format!("destroy env `{}`:", env.name));
        for c in &pre.checks {
            ui::info(format!("  {}", plan_line(c, args.force)));
        }
        if !ui::confirm("proceed?") {
            ui::info("nothing was removed");
            return Err(Exit(1).into());
        }
    }
    execute(ctx, &env, &pre, args.force, args.keep_data)
}

/// What destroying an env would do and lose, found before anything changes.
pub(crate) struct Preflight {
    checks: Vec<LayerCheck>,
    strays: Vec<String>,
}

/// `drop_integrated`: branches whose work is in their bases are deleted with the env (what
/// `land` and `prune` are for); a plain destroy keeps them.
pub(crate) fn preflight(
    ctx: &Ctx,
    env: &EnvRow,
    force: bool,
    drop_integrated: bool,
) -> Result<Preflight> {
    // The env's containers go with it: with no engine to remove them, refuse before anything
    // changes (`--force` goes on; doctor finds them once the engine answers).
    if !force
        && ctx.uses_docker(env)?
        && let Err(e) = crate::compose::ping(&ctx.engine(env))
    {
        let n = crate::shq(&env.name);
        return Err(Fail::new(format!(
            "the Docker engine of `{}` does not answer ({e:#}); nothing was removed",
            env.name
        ))
        .hint(format!(
            "start it and run this again, or `grove destroy {n} --force` to go on without it (`grove doctor` removes what is left there once it answers)"
        ))
        .into());
    }
    let checks = check(ctx, env, force, drop_integrated)?;
    let strays = strays(ctx, env, &checks)?;
    Ok(Preflight { checks, strays })
}

impl Preflight {
    /// The work destroying the env would lose, one line each (`front: uncommitted: a.txt`);
    /// files in the env folder only with `strays`.
    pub(crate) fn work_lines(&self, ctx: &Ctx, env: &EnvRow, strays: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for c in &self.checks {
            if !c.dirty.is_empty() {
                lines.push(format!(
                    "{}: uncommitted: {}",
                    c.inst.layer,
                    list(&c.dirty, 10)
                ));
            }
            if !c.orphans.is_empty() {
                lines.push(format!(
                    "{}: {} commit(s) that no branch holds ({}): {}",
                    c.inst.layer,
                    c.orphans.len(),
                    describe_head(c),
                    list(&c.orphans, SHOW_COMMITS)
                ));
            }
            for b in &c.blockers {
                lines.push(format!("{}: {b}", c.inst.layer));
            }
        }
        if strays && !self.strays.is_empty() {
            lines.push(format!(
                "env folder {}: {}",
                ctx.ws.env_dir(&env.name).display(),
                list(&self.strays, 10)
            ));
        }
        lines
    }

    /// Why a destroy without `--force` must not go on: the work it would lose.
    pub(crate) fn refusal(&self, ctx: &Ctx, env: &EnvRow) -> Option<Fail> {
        let lines = self.work_lines(ctx, env, true);
        if lines.is_empty() {
            return None;
        }
        let msg = ui::listed(
            format!(
                "env `{}` has work that destroy would lose; nothing was removed",
                env.name
            ),
            &lines,
        );
        let n = crate::shq(&env.name);
        let keep = if self.checks.iter().any(|c| !c.orphans.is_empty()) {
            format!(
                "put commits on a branch (`grove exec {n} -- git branch NAME`), commit or stash changes"
            )
        } else {
            format!("commit or stash it (`grove exec {n} -- git status`)")
        };
        Some(Fail::new(msg).hint(format!(
            "{keep}, or `grove destroy {n} --force` to throw it away"
        )))
    }
}

/// Refuses `--keep-data` (of `command`, which removes the env) when an isolated layer runs in
/// a container of the env: its data is in the env's volumes, which go with the env.
pub(crate) fn data_can_be_kept(ctx: &Ctx, env: &EnvRow, command: &str) -> Result<()> {
    let Some(row) = ctx
        .store
        .isolated(env.key)?
        .into_iter()
        .find(|r| r.kind == crate::state::IsolateKind::Compose)
    else {
        return Ok(());
    };
    let nothing = if command == "land" {
        "landed"
    } else {
        "removed"
    };
    Err(Fail::new(format!(
        "`--keep-data` cannot keep the isolated `{}` of `{}`: it runs in a container of the env, whose volumes {command} removes; nothing was {nothing}",
        row.layer, env.name
    ))
    .hint(format!(
        "copy what you need out first (`grove exec {} --layer … -- …`, `docker cp`), then {command} without `--keep-data`",
        crate::shq(&env.name)
    ))
    .into())
}

/// Destroys the env as `pre` found it (the caller checked it may).
pub(crate) fn execute(
    ctx: &mut Ctx,
    env: &EnvRow,
    pre: &Preflight,
    force: bool,
    keep_data: bool,
) -> Result<()> {
    let env = env.clone();
    let checks = &pre.checks;
    let strays = &pre.strays;
    // Exactly one grove destroys an env: taken over only from the owner we looked at.
    if !ctx.store.begin_destroy(env.key, env.owner, ctx.me)? {
        return Err(Fail::new(format!(
            "env `{}` is being changed by another grove",
            env.name
        ))
        .hint("wait for it to finish, then try again")
        .into());
    }
    failpoint::hit("destroy:after-begin");
    // Nothing grove started outlives the env.
    if crate::supervisor::stop_env(ctx, &env, Scope::All)? {
        ui::info(format!("  stopped what ran in `{}`", env.name));
    }
    failpoint::hit("destroy:after-stop");
    // Containers, networks, volumes and images of the env's compose layers: found by its
    // token, after its servers stopped (so nothing restarts them).
    if ctx.uses_docker(&env)? {
        // A project per compose layer (and per isolated compose service) of the config; the
        // sweep by token catches the rest (a layer since removed from grove.toml).
        let projects: Vec<String> = ctx
            .ws
            .config
            .layers
            .values()
            .filter(|l| l.on_docker())
            .map(|l| crate::compose::project_name(&ctx.ws.key(), &env.ident, &l.name))
            .collect();
        let removed = match crate::compose::destroy(&ctx.engine(&env), &projects, &env.token) {
            Ok(r) => r,
            // The engine gone for good must not keep an env forever: `--force` goes on, and
            // doctor finds what is left once the engine answers again.
            Err(e) if force => {
                ui::warn(format!(
                    "{e:#}; going on (--force): `grove doctor` finds what is left on the engine once it answers"
                ));
                Vec::new()
            }
            Err(e) => {
                let n = crate::shq(&env.name);
                return Err(Fail::new(format!(
                    "cannot remove the containers of `{}`: {e:#}; the env is half-destroyed",
                    env.name
                ))
                .hint(format!(
                    "start the engine and run `grove destroy {n}` again, or `grove destroy {n} --force` to go on without it"
                ))
                .into());
            }
        };
        if !removed.is_empty() {
            ui::info(format!("  removed from Docker: {}", removed.join(", ")));
        }
    }
    for c in checks {
        destroy_layer(ctx, &env, c, force)?;
        failpoint::hit("destroy:after-layer");
        if interrupt::received().is_some() {
            ctx.store.set_phase(env.key, Phase::Destroying, None)?;
            return Err(
                Fail::new(format!("interrupted: env `{}` is half-destroyed", env.name))
                    .hint(format!(
                        "run `grove destroy {}` to finish",
                        crate::shq(&env.name)
                    ))
                    .into(),
            );
        }
    }
    // Isolated data last: dropped only once nothing of the env can fail to go any more.
    for row in ctx.store.isolated(env.key)? {
        if keep_data {
            crate::isolate::kept(&row, &row.layer);
        } else {
            crate::isolate::drop_resource(ctx, &env, &row.layer, &row.resource).map_err(|e| {
                Fail::new(format!(
                    "cannot drop the isolated `{}` of `{}`: {e:#}",
                    row.layer, env.name
                ))
                .hint(format!(
                    "the env is half-destroyed; fix the cause and run `grove destroy {}` again",
                    crate::shq(&env.name)
                ))
            })?;
            ui::info(format!("  {}  dropped {}", row.layer, row.url));
        }
        ctx.store.delete_isolated(env.key, &row.layer)?;
        failpoint::hit("destroy:after-isolated");
    }
    remove_env_dir(ctx, &env, strays, force)?;
    failpoint::hit("destroy:after-envdir");
    // A later env of the same name starts with logs of its own.
    let _ = fs_err::remove_dir_all(ctx.log_dir(&env.name));
    ctx.store.delete_env(env.key)?;
    ui::info(format!("destroyed env `{}`", env.name));
    // Run from inside the env (`grove land` in its worktree): the shell that ran it now sits
    // in a folder that is gone, where every command fails oddly.
    if std::env::current_dir().is_ok_and(|cwd| !cwd.exists()) || std::env::current_dir().is_err() {
        ui::hint(format!(
            "your shell's folder went with the env: `cd {}` (or `grove cd` with grove's shell function)",
            crate::shq(&ctx.ws.root.to_string_lossy())
        ));
    }
    Ok(())
}

/// One line per piece of work destroying would lose: uncommitted files, commits no branch
/// holds, what stops git removing a worktree, files in the env folder.
fn describe_head(c: &LayerCheck) -> String {
    match &c.switched {
        Some(None) => "on the worktree's detached HEAD".into(),
        Some(Some(b)) => format!("on branch `{b}`, checked out in the worktree"),
        None => format!("on branch `{}`", c.inst.branch),
    }
}

fn check(ctx: &Ctx, env: &EnvRow, force: bool, drop_integrated: bool) -> Result<Vec<LayerCheck>> {
    let mut checks = Vec::new();
    for inst in ctx.store.instances(env.key)? {
        let repo = Repo::new(&inst.repo);
        let present = inst.worktree.join(".git").exists();
        let dirty = if present {
            Repo::dirty_paths(&inst.worktree).with_context(|| {
                format!("checking {} for uncommitted work", inst.worktree.display())
            })?
        } else if inst.worktree.exists() {
            // Its `.git` file is gone, so git cannot say what in it is work: keep it unless forced.
            vec![format!(
                "{} (no longer a git worktree)",
                inst.worktree.display()
            )]
        } else {
            Vec::new()
        };
        let tip = repo.branch_tip(&inst.branch)?;
        let worktrees = repo.worktrees()?;
        let mut blockers = Vec::new();
        if let Some(reason) = worktrees
            .iter()
            .find(|w| w.path == inst.worktree)
            .and_then(|w| w.locked.clone())
        {
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            blockers.push(format!(
                "the worktree is locked{why}: `git worktree unlock {}`",
                crate::shq(&inst.worktree.to_string_lossy())
            ));
        }
        if present && inst.worktree.join(".gitmodules").is_file() && has_submodules(&inst.worktree)?
        {
            blockers.push(
                "it holds checked-out submodules, which grove does not check for work: look at them (`git submodule foreach git status`)".into(),
            );
        }
        let elsewhere = worktrees
            .into_iter()
            .find(|w| {
                w.branch.as_deref() == Some(inst.branch.as_str())
                    && w.path != inst.worktree
                    && !w.prunable
            })
            .map(|w| w.path);
        let unmerged = match &tip {
            Some(tip) => unmerged(&repo, &inst, tip)?,
            None => Vec::new(),
        };
        let (head, switched) = if present {
            let on = Repo::branch_of(&inst.worktree)?;
            let switched = (on.as_deref() != Some(inst.branch.as_str())).then_some(on);
            (Repo::head_of(&inst.worktree)?, switched)
        } else {
            (None, None)
        };
        let mut c = LayerCheck {
            inst,
            present,
            dirty,
            tip,
            unmerged,
            elsewhere,
            switched,
            orphans: Vec::new(),
            blockers,
            branch_only: Vec::new(),
            integrated: None,
            drop_integrated,
        };
        if let (Some(tip), true, None) = (&c.tip, c.inst.branch_created, &c.elsewhere) {
            let me = [format!("refs/heads/{}", c.inst.branch)];
            c.branch_only = repo.unreferenced(&[tip.as_str()], &me, 200)?;
            // Under --force the branch goes anyway; otherwise a failure to tell keeps it.
            if !force && !c.unmerged.is_empty() && crate::git::has_merge_tree() {
                c.integrated = crate::land::integrated(&c.inst).ok().flatten();
            }
        }
        // What no ref will hold once the worktree and the branch (if it goes) are gone: the
        // HEAD's own commits, and with `--force` the branch's own.
        let dropped: Vec<String> = if c.deletes_branch(force) {
            vec![format!("refs/heads/{}", c.inst.branch)]
        } else {
            Vec::new()
        };

        if let Some(head) = head {
            let mut lost = repo.unreferenced(&[head.as_str()], &dropped, 200)?;
            // With `--force`, the branch's own commits are listed as such, not twice.
            lost.retain(|l| !c.branch_only.contains(l));
            c.orphans = lost;
        }
        checks.push(c);
    }
    Ok(checks)
}

/// Commits of the branch that would be lost with it: not in the base (as it is now, else as it
/// was at create) and not on the branch's upstream.
fn unmerged(repo: &Repo, inst: &Instance, tip: &str) -> Result<Vec<String>> {
    let base = inst.current_base(repo);
    if tip == base || repo.is_ancestor(tip, &base)? {
        return Ok(Vec::new());
    }
    if let Some(up) = repo.upstream_tip(&inst.branch)?
        && repo.is_ancestor(tip, &up)?
    {
        return Ok(Vec::new());
    }
    repo.log_range(&base, tip)
}

fn plan_line(c: &LayerCheck, force: bool) -> String {
    let wt = if c.present {
        "remove worktree"
    } else {
        "forget missing worktree"
    };
    let branch = if c.deletes_branch(force) && c.integrated.is_some() {
        format!(
            "delete branch `{}` (its work is in the base)",
            c.inst.branch
        )
    } else if c.deletes_branch(force) {
        format!("delete branch `{}`", c.inst.branch)
    } else {
        format!("keep branch `{}`", c.inst.branch)
    };
    let mut line = format!("{}: {wt}, {branch}", c.inst.layer);
    if force && !c.dirty.is_empty() {
        line.push_str(&format!(", discard {} changed files", c.dirty.len()));
    }
    if force && !c.orphans.is_empty() {
        line.push_str(&format!(
            ", discard {} commit(s) no branch holds",
            c.orphans.len()
        ));
    }
    line
}

fn destroy_layer(ctx: &mut Ctx, env: &EnvRow, c: &LayerCheck, force: bool) -> Result<()> {
    let repo = Repo::new(&c.inst.repo);
    let layer = &c.inst.layer;
    if force && !c.dirty.is_empty() {
        ui::warn(format!(
            "{layer}: discarding uncommitted work: {}",
            list(&c.dirty, 20)
        ));
    }
    if force && !c.orphans.is_empty() {
        ui::warn(format!(
            "{layer}: discarding {} commit(s) {} that no branch holds: {}",
            c.orphans.len(),
            describe_head(c),
            list(&c.orphans, SHOW_COMMITS)
        ));
    }
    if c.present {
        // Without --force git itself refuses if work appeared since the check.
        repo.worktree_remove(&c.inst.worktree, force).map_err(|e| {
            let why = match e.downcast_ref::<crate::exec::CmdError>() {
                Some(cmd) => cmd.stderr().to_string(),
                None => format!("{e:#}"),
            };
            Fail::new(format!(
                "cannot remove the {layer} worktree of `{}`: {why}",
                env.name
            ))
            .hint(format!(
                "the env is half-destroyed; fix the cause and run `grove destroy {}` again",
                crate::shq(&env.name)
            ))
        })?;
    } else {
        remove_stray_folder(&c.inst.worktree, &ctx.ws.config.envs_dir)?;
        repo.worktree_prune()?;
    }
    failpoint::hit("destroy:after-worktree");
    let branch = &c.inst.branch;
    match (&c.tip, c.deletes_branch(force)) {
        (Some(tip), true) => {
            if let (Some(how), false) = (c.integrated, c.branch_only.is_empty()) {
                ui::info(format!(
                    "  {layer}  `{branch}` is in {}: {} (its tip was {})",
                    c.inst.base,
                    how.as_str(),
                    &tip[..tip.len().min(12)]
                ));
            } else if !c.branch_only.is_empty() {
                ui::warn(format!(
                    "{layer}: discarding {} commit(s) that only `{branch}` held: {}",
                    c.branch_only.len(),
                    list(&c.branch_only, SHOW_COMMITS)
                ));
            }
            if repo.delete_branch_at(branch, tip)? {
                ui::info(format!("  {layer}  deleted branch `{branch}`"));
            } else {
                ui::warn(format!(
                    "{layer}: kept branch `{branch}`: it moved while destroying"
                ));
            }
        }
        (Some(_), false) if c.elsewhere.is_some() => ui::info(format!(
            "  {layer}  kept branch `{branch}`: it is checked out at {}",
            c.elsewhere
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        )),
        (Some(_), false) if !c.inst.branch_created => {
            ui::info(format!(
                "  {layer}  kept branch `{branch}`: it existed before the env"
            ));
        }
        (Some(_), false) if c.integrated.is_some() => ui::info(format!(
            "  {layer}  kept branch `{branch}`: its work is in {} ({}), but no other branch holds its {} commit(s); `git -C {} branch -D {}` when you are sure (or `grove prune` next time)",
            c.inst.base,
            c.integrated.map_or("", |i| i.as_str()),
            c.unmerged.len(),
            crate::shq(&c.inst.repo.to_string_lossy()),
            crate::shq(branch)
        )),
        (Some(_), false) if c.unmerged.is_empty() => ui::info(format!(
            "  {layer}  kept branch `{branch}`: no other branch holds its {} commit(s) (was its base `{}` deleted?)",
            c.branch_only.len(),
            c.inst.base
        )),
        (Some(_), false) => ui::info(format!(
            "  {layer}  kept branch `{branch}`: {} commit(s) not in {}",
            c.unmerged.len(),
            c.inst.base
        )),
        (None, _) => {}
    }
    if let Some(Some(other)) = &c.switched {
        ui::info(format!(
            "  {layer}  the worktree was on branch `{other}`, which stays"
        ));
    }
    failpoint::hit("destroy:after-branch");
    ctx.store.delete_instance(env.key, layer)?;
    Ok(())
}

/// Whether `worktree` has submodules checked out (`git submodule status` lines not marked `-`).
fn has_submodules(worktree: &Path) -> Result<bool> {
    let out = crate::git::git(worktree)
        .args(["submodule", "status"])
        .output()?;
    Ok(out
        .stdout
        .lines()
        .any(|l| !l.is_empty() && !l.starts_with('-')))
}

/// What the env folder holds that grove did not put there (an agent working with `cwd =
/// "env"` writes there): work, as far as grove can tell.
fn strays(ctx: &Ctx, env: &EnvRow, checks: &[LayerCheck]) -> Result<Vec<String>> {
    let dir = ctx.ws.env_dir(&env.name);
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = crate::manifest::is_grove_entry(&name)
            || checks.iter().any(|c| c.inst.worktree == e.path());
        if !ours {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Removes the env folder: grove's own files, then the folder if empty; with `--force`,
/// whatever else is in it too (listed first).
fn remove_env_dir(ctx: &Ctx, env: &EnvRow, strays: &[String], force: bool) -> Result<()> {
    let dir = ctx.ws.env_dir(&env.name);
    if !dir.starts_with(&ctx.ws.config.envs_dir) || !dir.exists() {
        return Ok(());
    }
    if force && !strays.is_empty() {
        ui::warn(format!(
            "discarding from {}: {}",
            dir.display(),
            list(strays, 20)
        ));
        fs_err::remove_dir_all(&dir)?;
        return Ok(());
    }
    crate::manifest::remove_grove_entries(&dir);
    if let Err(e) = std::fs::remove_dir(&dir) {
        ui::warn(format!("kept {}: {e}", dir.display()));
    }
    Ok(())
}

/// A worktree folder that git no longer knows but that is still on disk (its `.git` file was
/// deleted): only removed when it lies inside grove's envs folder.
fn remove_stray_folder(path: &Path, envs_dir: &Path) -> Result<()> {
    if path.exists() && path.starts_with(envs_dir) {
        fs_err::remove_dir_all(path)?;
    }
    Ok(())
}

fn list(items: &[String], max: usize) -> String {
    let mut s = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        s.push_str(&format!(" (+{} more)", items.len() - max));
    }
    s
}
