//! Landing an env: every dedicated layer's branch brought into its base, all or nothing across
//! the env's repos.
//!
//! The new base commits are all made before any ref moves (in memory: `merge-tree
//! --write-tree` and `commit-tree`, no worktree touched), so a conflict in the last repo stops
//! the land with nothing changed. Each base then moves by compare and swap, journaled before it
//! moves; if one fails, or grove dies half-way, the bases already moved are put back (compare
//! and swap again, so a commit someone made on top since is never thrown away). A `Landed`
//! entry is the point of no return: after it the land is done, and recovery only lets go of
//! the env.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::config::LandStrategy;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::git::Repo;
use crate::git::integrate::{Integrated, MergeTree, Swap};
use crate::state::{Action, EnvRow, Instance};
use crate::{failpoint, provision, ui};

/// What landing one layer does, decided before anything moves.
#[derive(Debug, Clone, Serialize)]
pub struct LayerLand {
    pub layer: String,
    pub repo: PathBuf,
    pub branch: String,
    /// The branch's tip being landed.
    pub tip: String,
    /// The base branch (short name) and its full ref.
    pub base: String,
    #[serde(skip)]
    pub refname: String,
    /// The base's commit before the land.
    pub old: String,
    /// The base's commit after it; `None` when the branch is in the base already.
    pub new: Option<String>,
    /// How the branch is in the base already, when it is.
    pub already: Option<&'static str>,
    /// Commits of the branch that the base did not have.
    pub commits: usize,
    /// The clean worktrees that have the base checked out (the main checkout, usually):
    /// updated with it.
    pub checkouts: Vec<PathBuf>,
    /// Where `--push` sends the base: remote and ref.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<(String, String)>,
}

/// Why a layer cannot land.
pub struct Refusal {
    pub layer: String,
    pub why: String,
}

pub struct Options<'a> {
    pub strategy: LandStrategy,
    pub message: Option<&'a str>,
    pub push: bool,
}

/// Decides what landing each dedicated layer of `env` does, making the new base commits (as
/// objects no ref holds yet). Returns the plans, or every reason some layer cannot land.
pub fn plan(
    ctx: &Ctx,
    env: &EnvRow,
    instances: &[Instance],
    opts: &Options<'_>,
) -> Result<std::result::Result<Vec<LayerLand>, Vec<Refusal>>> {
    let title = ctx.store.ticket(env.key)?.map(|(_, t, _)| t);
    let mut plans = Vec::new();
    let mut refusals = Vec::new();
    for inst in instances {
        match plan_layer(inst, env, title.as_deref(), opts) {
            Ok(Ok(p)) => plans.push(p),
            Ok(Err(why)) => refusals.push(Refusal {
                layer: inst.layer.clone(),
                why,
            }),
            Err(e) => refusals.push(Refusal {
                layer: inst.layer.clone(),
                why: format!("{e:#}"),
            }),
        }
    }
    Ok(if refusals.is_empty() {
        Ok(plans)
    } else {
        Err(refusals)
    })
}

fn plan_layer(
    inst: &Instance,
    env: &EnvRow,
    title: Option<&str>,
    opts: &Options<'_>,
) -> Result<std::result::Result<LayerLand, String>> {
    let repo = Repo::new(&inst.repo);
    let Some(refname) = inst
        .base_ref
        .clone()
        .filter(|r| r.starts_with("refs/heads/") && *r != format!("refs/heads/{}", inst.branch))
    else {
        return Ok(Err(format!(
            "its base `{}` is not a local branch, so there is nothing to move (make one: `git -C {} branch NAME {}`, and create envs from it)",
            inst.base,
            crate::shq(&inst.repo.to_string_lossy()),
            inst.base
        )));
    };
    let base = refname.trim_start_matches("refs/heads/").to_string();
    let Some(old) = repo.resolve_commit(&refname)? else {
        return Ok(Err(format!("its base branch `{base}` no longer exists")));
    };
    let Some(tip) = repo.branch_tip(&inst.branch)? else {
        return Ok(Err(format!(
            "its branch `{}` no longer exists",
            inst.branch
        )));
    };
    if inst.worktree.join(".git").exists()
        && Repo::branch_of(&inst.worktree)?.as_deref() != Some(inst.branch.as_str())
    {
        return Ok(Err(format!(
            "its worktree is not on branch `{}` any more (switch back, or land by hand)",
            inst.branch
        )));
    }
    let mut plan = LayerLand {
        layer: inst.layer.clone(),
        repo: inst.repo.clone(),
        branch: inst.branch.clone(),
        tip: tip.clone(),
        base: base.clone(),
        refname,
        old: old.clone(),
        new: None,
        already: None,
        commits: 0,
        checkouts: Vec::new(),
        push: None,
    };
    if opts.push {
        match repo.push_target(&base)? {
            Some(t) => plan.push = Some(t),
            None => {
                return Ok(Err(format!(
                    "--push: base `{base}` has no upstream (set one: `git -C {} branch --set-upstream-to=origin/{base} {base}`)",
                    crate::shq(&inst.repo.to_string_lossy())
                )));
            }
        }
    }
    if let Some(how) = repo.integrated(&old, &tip)? {
        plan.already = Some(how.as_str());
        return Ok(Ok(plan));
    }
    let (commits, has_merges) = repo.commits_between(&old, &tip)?;
    plan.commits = commits.len();
    let fast_forward = repo.is_ancestor(&old, &tip)?;
    let new = match opts.strategy {
        LandStrategy::Ff if fast_forward => tip.clone(),
        LandStrategy::Ff => {
            return Ok(Err(format!(
                "`{base}` moved since `{}` left it, so it cannot fast-forward (use --strategy merge, squash or rebase)",
                inst.branch
            )));
        }
        LandStrategy::Rebase if fast_forward => tip.clone(),
        LandStrategy::Rebase => {
            if has_merges {
                return Ok(Err(format!(
                    "`{}` has merge commits, which a rebase would flatten (use --strategy merge or squash)",
                    inst.branch
                )));
            }
            match replay(&repo, &old, &commits)? {
                Ok(new) => new,
                Err(why) => return Ok(Err(why)),
            }
        }
        LandStrategy::Merge | LandStrategy::Squash => {
            let tree = match repo.merge_tree(&old, &tip, None)? {
                MergeTree::Clean(tree) => tree,
                MergeTree::Conflicts(files) => {
                    return Ok(Err(format!(
                        "merging `{}` into `{base}` conflicts in {}",
                        inst.branch,
                        files.join(", ")
                    )));
                }
            };
            let message = message(&repo, opts, inst, &base, title, env, &old, &tip)?;
            if opts.strategy == LandStrategy::Merge {
                repo.commit_tree(&tree, &[&old, &tip], &message, None)?
            } else {
                repo.commit_tree(&tree, &[&old], &message, None)?
            }
        }
    };
    plan.new = Some(new);
    Ok(Ok(plan))
}

/// Replays `commits` on `onto` one by one, keeping each one's author and message.
fn replay(
    repo: &Repo,
    onto: &str,
    commits: &[String],
) -> Result<std::result::Result<String, String>> {
    let mut onto = onto.to_string();
    for c in commits {
        let parent = format!("{c}^");
        let tree = match repo.merge_tree(&onto, c, Some(&parent))? {
            MergeTree::Clean(tree) => tree,
            MergeTree::Conflicts(files) => {
                let subject = repo.log_range(&parent, c)?.into_iter().next();
                return Ok(Err(format!(
                    "replaying {} conflicts in {}",
                    subject.unwrap_or_else(|| c.clone()),
                    files.join(", ")
                )));
            }
        };
        // A commit whose change the base has already (cherry-picked there) would replay as
        // an empty commit: dropped, as `git rebase` does.
        if tree == repo.tree_of(&onto)? {
            continue;
        }
        let (author, msg) = repo.commit_meta(c)?;
        onto = repo.commit_tree(&tree, &[&onto], &msg, Some(&author))?;
    }
    Ok(Ok(onto))
}

#[allow(clippy::too_many_arguments)]
fn message(
    repo: &Repo,
    opts: &Options<'_>,
    inst: &Instance,
    base: &str,
    title: Option<&str>,
    env: &EnvRow,
    old: &str,
    tip: &str,
) -> Result<String> {
    if let Some(m) = opts.message {
        return Ok(format!("{}\n", m.trim_end()));
    }
    let title = title.map(str::trim).filter(|t| !t.is_empty());
    Ok(match opts.strategy {
        LandStrategy::Squash => {
            let mut m = title.unwrap_or(&inst.branch).to_string();
            m.push_str(&format!(
                "\n\nSquashed from branch `{}` (grove env {}):\n",
                inst.branch, env.name
            ));
            let mut log = repo.log_range(old, tip)?;
            log.reverse();
            for line in log {
                let subject = line.split_once(' ').map_or(line.as_str(), |(_, s)| s);
                m.push_str(&format!("* {subject}\n"));
            }
            m
        }
        _ => {
            let mut m = format!("Merge branch '{}' into {base}\n", inst.branch);
            if let Some(t) = title {
                m.push_str(&format!("\n{t}\n"));
            }
            m
        }
    })
}

/// The worktrees that have the base checked out, which must follow it; `Err` says why one
/// cannot (uncommitted changes, a file where the land writes one, a rebase or bisect of the
/// base under way).
pub fn checkouts_of(plan: &LayerLand) -> Result<std::result::Result<Vec<PathBuf>, String>> {
    let repo = Repo::new(&plan.repo);
    let mut out = Vec::new();
    for wt in repo.worktrees()?.into_iter().filter(|w| !w.prunable) {
        if let Some(why) = busy_with(&wt.path, &plan.base) {
            return Ok(Err(format!(
                "`{}` is being {why} at {}: finish or abort that first",
                plan.base,
                wt.path.display()
            )));
        }
        if wt.branch.as_deref() != Some(plan.base.as_str()) {
            continue;
        }
        let Some(new) = &plan.new else { continue };
        let tracked = crate::git::git(&wt.path)
            .args(["status", "--porcelain", "--untracked-files=no"])
            .run()?
            .stdout;
        if !tracked.trim().is_empty() {
            let files: Vec<&str> = tracked.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
            return Ok(Err(format!(
                "`{}` is checked out at {} with uncommitted changes ({}): commit or stash them first",
                plan.base,
                wt.path.display(),
                files.join(", ")
            )));
        }
        // A file the land adds, where the checkout has one git does not track (untracked or
        // ignored, like a local `.env`), or a folder it adds where the checkout has a file:
        // `read-tree -u` would overwrite the one or fail on the other.
        let added = repo.stdout(&[
            "diff",
            "--name-only",
            "-z",
            "--no-renames",
            "--diff-filter=A",
            &plan.old,
            new,
            "--",
        ])?;
        let mut in_the_way = Vec::new();
        for path in added.split('\0').filter(|p| !p.is_empty()) {
            let mut at = wt.path.clone();
            let parts: Vec<&str> = path.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                at.push(part);
                let Ok(meta) = std::fs::symlink_metadata(&at) else {
                    break;
                };
                if i + 1 == parts.len() || !meta.is_dir() {
                    in_the_way.push(parts[..=i].join("/"));
                    break;
                }
            }
        }
        in_the_way.dedup();
        if !in_the_way.is_empty() {
            return Ok(Err(format!(
                "`{}` is checked out at {} with files git does not track where the land writes: {} (move them away first)",
                plan.base,
                wt.path.display(),
                in_the_way.join(", ")
            )));
        }
        out.push(wt.path);
    }
    Ok(Ok(out))
}

/// What the worktree at `path` is doing to branch `base` that moving it would break: a
/// rebase or a bisect (git refuses to move such a branch itself).
fn busy_with(path: &Path, base: &str) -> Option<&'static str> {
    let out = crate::git::git(path)
        .args(["rev-parse", "--absolute-git-dir"])
        .run()
        .ok()?;
    let dir = PathBuf::from(out.stdout.trim());
    let refname = format!("refs/heads/{base}");
    let reads = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    for f in ["rebase-merge/head-name", "rebase-apply/head-name"] {
        if reads(f).is_some_and(|h| h.trim() == refname) {
            return Some("rebased");
        }
    }
    reads("BISECT_START")
        .is_some_and(|b| b.trim() == base || b.trim() == refname)
        .then_some("bisected")
}

/// Moves every base that has something to land, journaling each move first; on any failure
/// puts back those already moved. Returns once the land is done (journaled `Landed`).
pub fn apply(ctx: &mut Ctx, env: &EnvRow, plans: &[LayerLand]) -> Result<()> {
    let mut moved: Vec<Action> = Vec::new();
    let result = (|| -> Result<()> {
        for p in plans {
            let Some(new) = &p.new else { continue };
            let action = Action::BaseMove {
                repo: p.repo.clone(),
                refname: p.refname.clone(),
                old: p.old.clone(),
                new: new.clone(),
                checkouts: p.checkouts.clone(),
            };
            ctx.store.journal_push(env.key, &action)?;
            moved.push(action);
            failpoint::hit("land:after-journal");
            let repo = Repo::new(&p.repo);
            let why = format!("grove land: {} ({})", p.branch, env.name);
            let swapped = repo.swap_ref(&p.refname, new, &p.old, &why)?;
            // A git killed by Ctrl-C fails its swap: that is the interrupt, not a race.
            provision::check_interrupt()?;
            let n = crate::shq(&env.name);
            match swapped {
                Swap::Moved => {}
                Swap::Raced(now) => {
                    let what = match now {
                        Some(_) => "moved while landing (someone committed to it)",
                        None => "was deleted while landing",
                    };
                    return Err(Fail::new(format!("{}: `{}` {what}", p.layer, p.base))
                        .hint(format!("run `grove land {n}` again"))
                        .into());
                }
                Swap::Refused(git_says) => {
                    let git_says = if git_says.is_empty() {
                        "no reason given".to_string()
                    } else {
                        git_says.lines().collect::<Vec<_>>().join(" / ")
                    };
                    return Err(Fail::new(format!(
                        "{}: git refused to move `{}` in {}: {git_says}",
                        p.layer,
                        p.base,
                        p.repo.display()
                    ))
                    .hint(format!(
                        "git's reason says what stopped it (a `reference-transaction` hook; a `{}.lock` of another git at work, to remove only if no git runs): fix that, then `grove land {n}` again",
                        p.refname
                    ))
                    .into());
                }
            }
            failpoint::hit("land:after-move");
            for co in &p.checkouts {
                follow(co, &p.old, new).map_err(|e| {
                    anyhow!(
                        "{}: cannot update the checkout of `{}` at {}: {e:#}",
                        p.layer,
                        p.base,
                        co.display()
                    )
                })?;
                failpoint::hit("land:after-checkout");
            }
            if crate::interrupt::received().is_some() {
                return Err(Fail::new("interrupted: the land was undone").into());
            }
        }
        ctx.store.journal_push(env.key, &Action::Landed)?;
        Ok(())
    })();
    if let Err(e) = result {
        for action in moved.iter().rev() {
            undo(action);
        }
        ctx.store.finish_operation(env.key)?;
        return Err(e);
    }
    failpoint::hit("land:after-landed");
    ctx.store.finish_operation(env.key)?;
    Ok(())
}

/// Brings a clean checkout's index and files from `old` to `new` (its branch's ref already
/// moved): a two-tree merge, which refuses rather than overwrite a change.
fn follow(checkout: &Path, old: &str, new: &str) -> Result<()> {
    crate::git::git(checkout)
        .args(["read-tree", "-u", "-m", old, new])
        .run()?;
    Ok(())
}

/// Puts one journaled base move back, if the base is still where the land put it, with the
/// checkouts that followed it.
fn undo(action: &Action) {
    let Action::BaseMove {
        repo,
        refname,
        old,
        new,
        checkouts,
    } = action
    else {
        return;
    };
    let r = Repo::new(repo);
    let now = r.resolve_commit(refname).ok().flatten();
    if now.as_deref() == Some(old.as_str()) {
        return;
    }
    if now.as_deref() != Some(new.as_str()) {
        ui::warn(format!(
            "left `{refname}` of {} where it is: it moved since the land moved it",
            repo.display()
        ));
        return;
    }
    let base = refname.trim_start_matches("refs/heads/");
    let tree = |c: &str| r.tree_of(c).ok();
    for co in checkouts {
        if Repo::branch_of(co).ok().flatten().as_deref() != Some(base) {
            continue;
        }
        // The checkout followed the land when its index has the new tree; when it has the
        // old one, the land died before updating it.
        let index = crate::git::git(co)
            .args(["write-tree"])
            .run()
            .map(|o| o.stdout.trim().to_string())
            .ok();
        let back = if index.is_some() && index == tree(new) {
            follow(co, new, old).map_err(|e| format!("{e:#}"))
        } else if index.is_some() && index == tree(old) {
            Ok(())
        } else {
            Err("its index changed since".to_string())
        };
        if let Err(why) = back {
            ui::warn(format!(
                "left `{refname}` of {} at the land's commit: its checkout {} cannot follow ({why}); to undo by hand: `git -C {} reset --keep {old}`",
                repo.display(),
                co.display(),
                crate::shq(&co.to_string_lossy())
            ));
            return;
        }
    }
    match r.swap_ref(refname, old, new, "grove land: undone") {
        Ok(Swap::Moved) => ui::info(format!("  put `{refname}` of {} back", repo.display())),
        Ok(Swap::Refused(why)) => ui::warn(format!(
            "could not put `{refname}` of {} back to {old}: {why}",
            repo.display()
        )),
        _ => ui::warn(format!(
            "could not put `{refname}` of {} back to {old}",
            repo.display()
        )),
    }
}

/// Finishes lands whose grove died: before the point of no return, the bases are put back;
/// after it, the land stands and the env is let go (its destroy is left to the user).
pub fn recover(ctx: &mut Ctx) -> Result<()> {
    for env in ctx.store.landings(ctx.ws_id)? {
        if env.owner.is_some_and(|o| o.alive()) || !ctx.store.claim(env.key, env.owner, ctx.me)? {
            continue;
        }
        let journal = ctx.store.journal(env.key)?;
        let n = crate::shq(&env.name);
        if journal.contains(&Action::Landed) {
            ui::warn(format!(
                "env `{}` was landed by a grove that did not finish; run `grove destroy {n}` to remove it",
                env.name
            ));
        } else {
            ui::warn(format!(
                "env `{}` was half-landed by a grove that did not finish; putting its bases back",
                env.name
            ));
            for action in journal.iter().rev() {
                undo(action);
                failpoint::hit("land:rollback-step");
            }
        }
        ctx.store.finish_operation(env.key)?;
    }
    Ok(())
}

/// Whether each dedicated layer's branch is in its base, and how (for `prune`), comparing
/// with the base and with the base's upstream (fetched but not pulled).
pub fn integrated(inst: &Instance) -> Result<Option<Integrated>> {
    let repo = Repo::new(&inst.repo);
    let Some(tip) = repo.branch_tip(&inst.branch)? else {
        return Ok(None);
    };
    let base = inst.current_base(&repo);
    if let Some(how) = repo.integrated(&base, &tip)? {
        return Ok(Some(how));
    }
    let base_name = inst
        .base_ref
        .as_deref()
        .and_then(|r| r.strip_prefix("refs/heads/"));
    if let Some(up) = base_name
        .map(|b| repo.upstream_tip(b))
        .transpose()?
        .flatten()
        && up != base
    {
        return repo.integrated(&up, &tip);
    }
    Ok(None)
}
