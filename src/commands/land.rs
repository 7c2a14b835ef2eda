//! `grove land` and `grove prune`: the end of a ticket's life, in every repo of the env.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::destroy;
use crate::cli::{LandArgs, PruneArgs};
use crate::ctx::Ctx;
use crate::error::{Exit, Fail};
use crate::git::Repo;
use crate::land::{self, LayerLand, Options};
use crate::proc::Role;
use crate::state::{EnvRow, Instance, Phase};
use crate::{interrupt, provision, ui};

fn require_merge_tree() -> Result<()> {
    crate::git::require_version()?;
    if !crate::git::has_merge_tree() {
        return Err(Fail::new(
            "landing and pruning need git 2.38 or newer (`git merge-tree --write-tree`)",
        )
        .hint("upgrade git")
        .into());
    }
    Ok(())
}

#[derive(Serialize)]
struct LandReport<'a> {
    env: &'a str,
    strategy: &'static str,
    layers: &'a [LayerLand],
    pushed: bool,
    destroyed: bool,
}

pub fn land(ctx: &mut Ctx, args: &LandArgs) -> Result<()> {
    require_merge_tree()?;
    interrupt::guard();
    crate::recover::unfinished(ctx)?;
    let env = ctx.require_target(args.name.as_deref(), "land")?;
    ctx.require_idle(&env)?;
    if env.phase != Phase::Ready {
        return Err(
            Fail::new(format!("env `{}` is half-made or half-destroyed", env.name))
                .hint(format!(
                    "finish it first: `grove destroy {}`",
                    crate::shq(&env.name)
                ))
                .into(),
        );
    }
    let n = crate::shq(&env.name);
    let instances = ctx.store.instances(env.key)?;
    if instances.is_empty() {
        return Err(Fail::new(format!(
            "env `{}` has no dedicated layer: nothing to land",
            env.name
        ))
        .into());
    }
    let strategy = args.strategy.unwrap_or(ctx.ws.config.land);
    if strategy == crate::config::LandStrategy::Rebase
        && crate::git::version_text()
            .as_deref()
            .and_then(crate::git::parse::version)
            .is_none_or(|v| v < (2, 40))
    {
        return Err(Fail::new(
            "--strategy rebase needs git 2.40 or newer (`git merge-tree --merge-base`)",
        )
        .hint("use --strategy merge or squash, or upgrade git")
        .into());
    }
    // An agent at work is about to change what would land.
    if let Some(row) = ctx.store.agent(env.key)? {
        let (state, _) = crate::agent::state(&row);
        if matches!(state.as_str(), "working" | "running" | "waiting") {
            return Err(Fail::new(format!(
                "the agent of `{}` is {state}; nothing was landed",
                env.name
            ))
            .hint(format!(
                "wait until it is done (`grove review`), or stop it (`grove down {n}`)"
            ))
            .into());
        }
    }
    if args.keep_data {
        destroy::data_can_be_kept(ctx, &env, "land")?;
    }
    // Work not committed stays out of the land, and would be lost by the destroy after it.
    let pre = destroy::preflight(ctx, &env, false, true)?;
    let work = pre.work_lines(ctx, &env, !args.keep);
    if !work.is_empty() {
        let head = format!(
            "env `{}` has work that is not committed; nothing was landed",
            env.name
        );
        return Err(Fail::new(ui::listed(head, &work))
            .hint(format!(
                "commit it (`grove exec {n} -- git status`), then land again"
            ))
            .into());
    }
    // Before the checks, which take long: an env nobody committed to has nothing to land.
    let untouched = instances.iter().all(|i| {
        Repo::new(&i.repo)
            .branch_tip(&i.branch)
            .ok()
            .flatten()
            .as_deref()
            == Some(i.base_commit.as_str())
    });
    if untouched && !args.push {
        return Err(Fail::new(format!(
            "env `{}` has no commits of its own: nothing to land",
            env.name
        ))
        .hint(format!(
            "commit the work first; to remove the env without landing: `grove destroy {n}`"
        ))
        .into());
    }
    if !args.no_check {
        let red = red_gate(ctx, &env, &instances)?;
        if !red.is_empty() {
            let head = format!("env `{}` is not green; nothing was landed", env.name);
            return Err(Fail::new(ui::listed(head, &red))
                .hint(format!(
                    "fix it (`grove review {n}`, `grove feedback {n} ...`), or land anyway with `grove land {n} --no-check`"
                ))
                .into());
        }
    }
    let opts = Options {
        strategy,
        message: args.message.as_deref(),
        push: args.push,
    };
    let mut plans = match land::plan(ctx, &env, &instances, &opts)? {
        Ok(p) => p,
        Err(refusals) => {
            let lines: Vec<String> = refusals
                .iter()
                .map(|r| format!("{}: {}", r.layer, r.why))
                .collect();
            let msg = ui::listed(
                format!("env `{}` cannot land; nothing was changed", env.name),
                &lines,
            );
            let hint = if refusals.iter().any(|r| r.why.contains("conflicts")) {
                format!(
                    "bring the base into the branch and resolve the conflicts there (`grove exec {n} -l LAYER -- git merge BASE`), then land again"
                )
            } else {
                "fix what is listed, then land again".to_string()
            };
            return Err(Fail::new(msg).hint(hint).into());
        }
    };
    let mut blocked = Vec::new();
    for p in &mut plans {
        match land::checkouts_of(p)? {
            Ok(co) => p.checkouts = co,
            Err(why) => blocked.push(format!("{}: {why}", p.layer)),
        }
    }
    if args.push {
        for p in &plans {
            if let Err(why) = push(p, true) {
                blocked.push(format!("{}: {why}", p.layer));
            }
        }
    }
    if !blocked.is_empty() {
        let head = format!("env `{}` cannot land; nothing was changed", env.name);
        return Err(Fail::new(ui::listed(head, &blocked))
            .hint("fix what is listed, then land again")
            .into());
    }
    let moving = plans.iter().filter(|p| p.new.is_some()).count();
    ui::info(format!("land `{}` ({}):", env.name, strategy.as_str()));
    for p in &plans {
        ui::info(format!("  {}", plan_line(p)));
    }
    if !args.keep {
        ui::info("  then destroy the env (its branches are in their bases)");
    }
    if ui::interactive() && !args.yes && !ui::confirm("proceed?") {
        ui::info("nothing was landed");
        return Err(Exit(1).into());
    }
    provision::check_interrupt()?;
    // Exactly one grove changes the env: taken over only from the owner we looked at.
    if !ctx.store.claim(env.key, env.owner, ctx.me)? {
        return Err(Fail::new(format!(
            "env `{}` is being changed by another grove",
            env.name
        ))
        .hint("wait for it to finish, then try again")
        .into());
    }
    crate::failpoint::hit("land:after-claim");
    land::apply(ctx, &env, &plans)?;
    if moving > 0 {
        ui::info(format!("landed `{}`", env.name));
    } else {
        ui::info(format!("`{}` was in its bases already", env.name));
    }
    let mut pushed = false;
    if args.push {
        // Every base is tried: one remote refusing says nothing about the others.
        let mut failed = Vec::new();
        for p in &plans {
            match push(p, false) {
                Ok(()) => {
                    if let Some((remote, to)) = &p.push {
                        ui::info(format!(
                            "  {}  pushed `{}` to {remote} {to}",
                            p.layer, p.base
                        ));
                    }
                }
                Err(why) => failed.push(format!("{}: {why}", p.layer)),
            }
        }
        if !failed.is_empty() {
            let msg = ui::listed(
                "landed, but not every base was pushed; the env is kept",
                &failed,
            );
            return Err(Fail::new(msg)
                .hint(format!(
                    "fix the cause, then `grove land {n} --push{keep}` pushes what is left and removes the env",
                    keep = if args.keep_data { " --keep-data" } else { "" }
                ))
                .into());
        }
        pushed = true;
    }
    let mut destroyed = false;
    if !args.keep {
        // Looked at again: the branches are in their bases now, so the destroy deletes them.
        let env = ctx.require_env(&env.name)?;
        let pre = destroy::preflight(ctx, &env, false, true)?;
        if let Some(refusal) = pre.refusal(ctx, &env) {
            let mut hint = refusal.hint.unwrap_or_default();
            if args.keep_data {
                // Whatever removes the env later must keep what this land was to keep.
                hint.push_str("; add `--keep-data` to the destroy to keep its isolated data");
            }
            return Err(
                Fail::new(format!("landed, but the env was kept: {}", refusal.msg))
                    .hint(hint)
                    .into(),
            );
        }
        destroy::execute(ctx, &env, &pre, false, args.keep_data)?;
        destroyed = true;
    }
    if args.json {
        let report = LandReport {
            env: &env.name,
            strategy: strategy.as_str(),
            layers: &plans,
            pushed,
            destroyed,
        };
        ui::out(serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(9)]
}

fn plan_line(p: &LayerLand) -> String {
    match (&p.new, p.already) {
        (Some(new), _) => {
            let mut s = format!(
                "{}: `{}` {} -> {}, with {} commit(s) of `{}`",
                p.layer,
                p.base,
                short(&p.old),
                short(new),
                p.commits,
                p.branch
            );
            for co in &p.checkouts {
                s.push_str(&format!("; updates the checkout at {}", co.display()));
            }
            s
        }
        (None, Some(how)) => format!("{}: nothing to land, `{}` is {how}", p.layer, p.branch),
        (None, None) => format!("{}: nothing to land", p.layer),
    }
}

/// Pushes the layer's base to its upstream (or only checks that the remote would take it):
/// the landed commit, else the base as it is (a land re-run after a failed push).
fn push(p: &LayerLand, dry_run: bool) -> std::result::Result<(), String> {
    let Some((remote, to)) = &p.push else {
        return Ok(());
    };
    let commit = p.new.as_ref().unwrap_or(&p.old);
    let repo = Repo::new(&p.repo);
    let mut cmd = repo.cmd().args(["push", "--porcelain"]);
    if dry_run {
        cmd = cmd.arg("--dry-run");
    }
    let out = cmd
        .args([remote.as_str(), &format!("{commit}:{to}")])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let why = text
        .lines()
        .find(|l| l.contains("rejected") || l.starts_with("fatal") || l.starts_with("error"))
        .unwrap_or("git push failed")
        .trim()
        .to_string();
    let behind = text.contains("non-fast-forward") || text.contains("fetch first");
    let mut msg = format!("{remote} refused `{}`: {why}", p.base);
    if behind {
        msg.push_str(&format!(
            " (it has commits `{}` lacks: pull them first, `git -C {} pull`)",
            p.base,
            crate::shq(&p.repo.to_string_lossy())
        ));
    }
    Err(msg)
}

/// What is red about the env: the gate's verdict on its current commits, and `check`s that
/// failed on them (checks not run on the current commits run now).
fn red_gate(ctx: &mut Ctx, env: &EnvRow, instances: &[Instance]) -> Result<Vec<String>> {
    let mut red = Vec::new();
    let tips: BTreeMap<String, String> = instances
        .iter()
        .filter_map(|i| {
            Repo::new(&i.repo)
                .branch_tip(&i.branch)
                .ok()
                .flatten()
                .map(|t| (i.layer.clone(), t))
        })
        .collect();
    if let Some(row) = ctx.store.gate(env.key)? {
        if row.phase != "finished" && row.owner.is_some_and(|o| o.alive()) {
            red.push("its gate is running: wait for its verdict (`grove review`)".to_string());
        } else if let Some(res) = row
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<crate::gate::GateResult>(r).ok())
            && res.outcome != crate::gate::Outcome::Approved
            && res.commits == tips
        {
            red.push(format!("the gate: {}", res.summary()));
        }
    }
    let checks = ctx.store.checks(env.key)?;
    let mut stale = false;
    for i in crate::gate::checked_layers(ctx, instances) {
        match (checks.get(&i.layer), tips.get(&i.layer)) {
            (Some(c), Some(tip)) if &c.commit == tip => {
                if !c.passed {
                    red.push(format!("{}: its check failed (log: {})", i.layer, c.log));
                }
            }
            _ => stale = true,
        }
    }
    if stale && red.is_empty() {
        ui::info(format!(
            "checking `{}` first (its checks did not run on its current commits)",
            env.name
        ));
        for c in crate::gate::run_checks(ctx, env, Role::Exec)? {
            if c.passed {
                ui::info(format!("  {}  check passed", c.layer));
            } else {
                red.push(format!("{}: its check failed (log: {})", c.layer, c.log));
            }
        }
        provision::check_interrupt()?;
    }
    Ok(red)
}

/// One env's verdict in `prune`.
#[derive(Serialize)]
struct Verdict {
    env: String,
    prune: bool,
    /// Per layer: why it counts as done, or why the env stays.
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    removed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn prune(ctx: &mut Ctx, args: &PruneArgs) -> Result<()> {
    require_merge_tree()?;
    interrupt::guard();
    if !args.dry_run {
        crate::recover::unfinished(ctx)?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut verdicts = Vec::new();
    let envs = ctx.store.envs(ctx.ws_id)?;
    // The costly question (a dozen git processes per layer) is asked of every layer at once.
    let mut layers = Vec::new();
    for env in &envs {
        layers.extend(ctx.store.instances(env.key)?);
    }
    let answers = crate::review::par_map(&layers, |i| land::integrated(i).ok().flatten());
    let known: Known = layers
        .iter()
        .zip(answers)
        .map(|(i, a)| ((i.repo.clone(), i.branch.clone()), a))
        .collect();
    for env in envs {
        // One env grove cannot judge keeps its own place; it stops no other.
        verdicts.push(
            judge(ctx, &env, args, now, Some(&known)).unwrap_or_else(|e| Verdict {
                env: env.name.clone(),
                prune: false,
                reasons: vec![format!(
                    "cannot tell whether its work is in its bases: {e:#}"
                )],
                removed: None,
                error: None,
            }),
        );
    }
    let (go, stay): (Vec<&mut Verdict>, Vec<&mut Verdict>) =
        verdicts.iter_mut().partition(|v| v.prune);
    if !args.json {
        if go.is_empty() {
            ui::info("no env to prune");
        } else {
            let what = if args.dry_run {
                "would remove"
            } else {
                "removes"
            };
            ui::info(format!("prune {what} {} env(s):", go.len()));
            for v in &go {
                ui::info(format!("  {}: {}", v.env, v.reasons.join("; ")));
            }
        }
        if !stay.is_empty() {
            ui::info(format!("kept {} env(s):", stay.len()));
            for v in &stay {
                ui::info(format!("  {}: {}", v.env, v.reasons.join("; ")));
            }
        }
    }
    let mut failed = 0;
    if !args.dry_run && !go.is_empty() {
        if ui::interactive() && !args.yes && !ui::confirm("proceed?") {
            ui::info("nothing was removed");
            return Err(Exit(1).into());
        }
        provision::check_interrupt()?;
        for v in go {
            let res = (|| -> Result<()> {
                let env = ctx.require_env(&v.env)?;
                ctx.require_idle(&env)?;
                // Judged again right before: work or an agent may have started since the list.
                let again = judge(ctx, &env, args, now, None)?;
                if !again.prune {
                    return Err(Fail::new(format!(
                        "it changed since the list: {}",
                        again.reasons.join("; ")
                    ))
                    .into());
                }
                let pre = destroy::preflight(ctx, &env, false, true)?;
                if let Some(refusal) = pre.refusal(ctx, &env) {
                    return Err(refusal.into());
                }
                destroy::execute(ctx, &env, &pre, false, false)
            })();
            v.removed = Some(res.is_ok());
            if let Err(e) = res {
                failed += 1;
                let msg = e
                    .downcast_ref::<Fail>()
                    .map_or_else(|| format!("{e:#}"), |f| f.msg.clone());
                ui::warn(format!("kept `{}`: {msg}", v.env));
                v.error = Some(msg);
            }
            if interrupt::received().is_some() {
                break;
            }
        }
    }
    if args.json {
        ui::out(serde_json::to_string_pretty(&verdicts)?);
    }
    provision::check_interrupt()?;
    if failed > 0 {
        return Err(Exit(1).into());
    }
    Ok(())
}

/// Whether `env` is done with, and why (or why not).
/// Whether each layer's branch is in its base, asked ahead for every env, by (repo, branch).
type Known = std::collections::HashMap<
    (std::path::PathBuf, String),
    Option<crate::git::integrate::Integrated>,
>;

/// `known`: the answers asked ahead, if any (else asked now).
fn judge(
    ctx: &Ctx,
    env: &EnvRow,
    args: &PruneArgs,
    now: u64,
    known: Option<&Known>,
) -> Result<Verdict> {
    let stay = |why: String| Verdict {
        env: env.name.clone(),
        prune: false,
        reasons: vec![why],
        removed: None,
        error: None,
    };
    if env.phase != Phase::Ready || env.owner.is_some_and(|o| o.alive()) {
        return Ok(stay("an operation is under way on it".into()));
    }
    let age = now.saturating_sub(u64::try_from(env.created_at).unwrap_or(0));
    if let Some(min) = args.older_than
        && age < min
    {
        return Ok(stay(format!("created {} ago", human_age(age))));
    }
    let instances = ctx.store.instances(env.key)?;
    if instances.is_empty() {
        return Ok(stay("no dedicated layer".into()));
    }
    let mut reasons = Vec::new();
    // Layers whose branch has commits of its own (all of them integrated, or the env stays).
    let mut worked = 0;
    for inst in &instances {
        let repo = Repo::new(&inst.repo);
        let Some(tip) = repo.branch_tip(&inst.branch)? else {
            return Ok(stay(format!(
                "{}: its branch `{}` is gone",
                inst.layer, inst.branch
            )));
        };
        // A branch with no commits of its own has nothing to lose (its uncommitted work is
        // looked at below); it decides nothing either way.
        if tip == inst.base_commit {
            reasons.push(format!(
                "{}: `{}` has no commits (nothing to lose)",
                inst.layer, inst.branch
            ));
            continue;
        }
        let how = match known.and_then(|k| k.get(&(inst.repo.clone(), inst.branch.clone()))) {
            Some(how) => *how,
            None => land::integrated(inst)?,
        };
        // A branch that moved only with its base (`git pull`, `merge --ff-only main`, a reset)
        // is "merged" by the commit graph, yet nobody worked on it: its reflog, which grove
        // made with the branch, says whether a commit was ever made on it. Without a reflog,
        // the graph decides, as before. (Asked only of an integrated branch: any other keeps
        // the env anyway.)
        if how.is_some() && repo.branch_made_commits(&inst.branch)? == Some(false) {
            reasons.push(format!(
                "{}: `{}` only followed its base (no commits of its own)",
                inst.layer, inst.branch
            ));
            continue;
        }
        worked += 1;
        if let Some(how) = how {
            reasons.push(format!(
                "{}: `{}` {}",
                inst.layer,
                inst.branch,
                how.as_str()
            ));
        } else if args.gone && repo.upstream_gone(&inst.branch)? {
            reasons.push(format!("{}: `{}` upstream gone", inst.layer, inst.branch));
        } else {
            let base = inst.current_base(&repo);
            let ahead = repo.log_range(&base, &tip)?.len();
            return Ok(stay(format!(
                "{}: {ahead} commit(s) not in `{}`",
                inst.layer, inst.base
            )));
        }
    }
    // Nobody has worked in the env yet: it is new, not done.
    if worked == 0 {
        reasons.insert(0, "no commits yet".into());
        return Ok(Verdict {
            reasons,
            ..stay(String::new())
        });
    }
    if let Some(row) = ctx.store.agent(env.key)? {
        let (state, _) = crate::agent::state(&row);
        if matches!(state.as_str(), "working" | "waiting" | "running") {
            return Ok(stay(format!("its agent is {state}")));
        }
    }
    let pre = destroy::preflight(ctx, env, false, true)?;
    let work = pre.work_lines(ctx, env, true);
    if !work.is_empty() {
        return Ok(stay(format!("has work: {}", work.join("; "))));
    }
    Ok(Verdict {
        env: env.name.clone(),
        prune: true,
        reasons,
        removed: None,
        error: None,
    })
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
