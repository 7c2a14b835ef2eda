//! `grove review`, `grove diff`, `grove check`.

use std::time::Instant;

use anyhow::Result;

use crate::cli::{CheckArgs, DiffArgs, ReviewArgs};
use crate::ctx::Ctx;
use crate::error::{Exit, Fail};
use crate::git::Repo;
use crate::proc::{Role, Tag};
use crate::review::{self, Conflict, EnvReview, LayerReview, Review};
use crate::state::CheckRow;
use crate::{interrupt, logfile, provision, ui};

pub fn review(ctx: &mut Ctx, args: &ReviewArgs) -> Result<()> {
    if let Some(name) = &args.name {
        ctx.require_env(name)?;
    }
    let review = review::gather(ctx, args.fetch)?;
    if !review.merge_tree && !args.json {
        ui::warn(
            "conflicts are not predicted: that needs git 2.38 or newer (`git merge-tree --write-tree`)",
        );
    }
    match &args.name {
        Some(name) => {
            let name = name.replace('/', "-");
            let env = review
                .envs
                .iter()
                .find(|e| e.name == name)
                .expect("the env exists");
            if args.mark_reviewed {
                return mark(ctx, env);
            }
            if args.json {
                ui::out(serde_json::to_string_pretty(&serde_json::json!({
                    "version": review::JSON_VERSION,
                    "merge_tree": review.merge_tree,
                    "env": env,
                    "conflicts": review.conflicts.iter().filter(|c| c.envs.contains(&name)).collect::<Vec<_>>(),
                }))?);
            } else {
                show_env(env, &review);
            }
        }
        None if args.json => ui::out(serde_json::to_string_pretty(&review)?),
        None => show_queue(&review),
    }
    Ok(())
}

fn mark(ctx: &mut Ctx, env: &EnvReview) -> Result<()> {
    let row = ctx.require_env(&env.name)?;
    for l in &env.layers {
        if let Some(tip) = &l.tip {
            ctx.store.mark_reviewed(row.key, &l.layer, tip)?;
            ui::info(format!(
                "  {}  reviewed up to {}",
                l.layer,
                &tip[..tip.len().min(10)]
            ));
        }
    }
    ui::info(format!(
        "marked `{}` reviewed; a new commit puts it back in the queue",
        env.name
    ));
    Ok(())
}

/// `5s`, `3m`, `2h`, `4d`.
fn age(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let s = (now - unix).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn layer_line(l: &LayerReview) -> String {
    let mut parts = vec![format!("{} ← {}", l.branch, l.base)];
    if let Some(e) = &l.error {
        parts.push(format!("error: {e}"));
    }
    let mut counts = format!("{} ahead", l.ahead);
    if l.behind > 0 {
        counts.push_str(&format!(", {} behind", l.behind));
    }
    parts.push(counts);
    if !l.files.is_empty() {
        parts.push(format!(
            "{} file(s) +{} -{}",
            l.files.len(),
            l.insertions,
            l.deletions
        ));
    }
    if !l.uncommitted.is_empty() {
        parts.push(format!("{} uncommitted", l.uncommitted.len()));
    }
    if let (Some(t), Some(s)) = (l.last_commit_time, &l.last_commit_subject)
        && l.ahead > 0
    {
        parts.push(format!("{} ago \"{s}\"", age(t)));
    }
    if let Some(c) = &l.check {
        let res = if c.passed { "passed" } else { "FAILED" };
        let stale = if c.stale {
            ", before the last commit"
        } else {
            ""
        };
        parts.push(format!("check {res}{stale}"));
    }
    if let Some(files) = l.conflicts_with_base.as_ref().filter(|f| !f.is_empty()) {
        parts.push(format!("conflicts with {}: {}", l.base, files.join(", ")));
    }
    parts.join(" · ")
}

fn env_header(e: &EnvReview) -> String {
    let agent = match (&e.agent, e.agent_since) {
        (Some(a), Some(t)) => format!("agent {a} ({})", age(t / 1000)),
        (Some(a), None) => format!("agent {a}"),
        (None, _) => "no agent".into(),
    };
    format!("{} · {agent} · servers {}", e.reason, e.status)
}

fn conflict_line(c: &Conflict) -> String {
    let mut s = format!("{} ⟷ {}  {}  ", c.envs[0], c.envs[1], c.layer);
    match &c.conflict {
        Some(files) if !files.is_empty() => {
            s.push_str(&format!("conflict: {} · ", files.join(", ")))
        }
        Some(_) => s.push_str("merges cleanly · "),
        None => {}
    }
    s.push_str(&format!("overlap: {} file(s)", c.overlap.len()));
    s
}

fn show_queue(review: &Review) {
    if review.envs.is_empty() {
        ui::info("no envs in this workspace; create one with `grove create NAME`");
        return;
    }
    for (i, e) in review.envs.iter().enumerate() {
        ui::out(format!("{:>2}. {}  {}", i + 1, e.name, env_header(e)));
        let w = e.layers.iter().map(|l| l.layer.len()).max().unwrap_or(0);
        for l in &e.layers {
            ui::out(format!("      {:w$}  {}", l.layer, layer_line(l)));
        }
    }
    let base_conflicts: Vec<(&EnvReview, &LayerReview)> = review
        .envs
        .iter()
        .flat_map(|e| e.layers.iter().map(move |l| (e, l)))
        .filter(|(_, l)| {
            l.conflicts_with_base
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        })
        .collect();
    if review.conflicts.is_empty() && base_conflicts.is_empty() {
        ui::out("\nconflict radar: no two envs touch the same files");
        return;
    }
    ui::out("\nconflict radar:");
    for c in &review.conflicts {
        ui::out(format!("  {}", conflict_line(c)));
    }
    for (e, l) in base_conflicts {
        let files = l.conflicts_with_base.clone().unwrap_or_default();
        ui::out(format!(
            "  {} ⟷ {} (moved on)  {}  conflict: {}",
            e.name,
            l.base,
            l.layer,
            files.join(", ")
        ));
    }
}

fn show_env(e: &EnvReview, review: &Review) {
    ui::out(format!("{}  {}", e.name, env_header(e)));
    for l in &e.layers {
        let url = e
            .urls
            .iter()
            .find(|(n, _)| *n == l.layer)
            .and_then(|(_, u)| u.clone());
        ui::out(format!("\n{}  {}", l.layer, url.unwrap_or_default()));
        ui::out(format!("  {}", layer_line(l)));
        let (Some(base), Some(tip)) = (&l.base_tip, &l.tip) else {
            continue;
        };
        let repo = Repo::new(&l.repo);
        if let Ok(log) = repo.log_range(base, tip) {
            for c in log {
                ui::out(format!("  {c}"));
            }
        }
        if let Ok(out) = repo
            .cmd()
            .args(["diff", "--stat", &format!("{base}...{tip}"), "--"])
            .run()
        {
            for line in out.stdout.lines() {
                ui::out(format!("  {line}"));
            }
        }
        for f in &l.uncommitted {
            ui::out(format!("  uncommitted: {f}"));
        }
    }
    let mine: Vec<&Conflict> = review
        .conflicts
        .iter()
        .filter(|c| c.envs.contains(&e.name))
        .collect();
    if !mine.is_empty() {
        ui::out("\nwith other envs:");
        for c in mine {
            ui::out(format!("  {}", conflict_line(c)));
        }
    }
}

pub fn diff(ctx: &Ctx, args: &DiffArgs) -> Result<()> {
    let env = ctx.require_env(&args.name)?;
    let instances = ctx.store.instances(env.key)?;
    let chosen: Vec<_> = match &args.layer {
        Some(l) => {
            let i = instances.iter().find(|i| &i.layer == l).ok_or_else(|| {
                Fail::new(format!(
                    "env `{}` has no worktree for layer `{l}`",
                    env.name
                ))
            })?;
            vec![i]
        }
        None => instances.iter().collect(),
    };
    for inst in chosen {
        let repo = Repo::new(&inst.repo);
        let base = inst.current_base(&repo);
        let prefix = format!("--src-prefix=a/{}/", inst.layer);
        let dst = format!("--dst-prefix=b/{}/", inst.layer);
        let cmd = crate::git::git(&inst.worktree).args(["diff", &prefix, &dst]);
        // git pages its own output when stdout is a terminal (core.pager, $GIT_PAGER, $PAGER).
        let cmd = if args.dirty {
            let mb = repo
                .cmd()
                .args(["merge-base", &base, &inst.branch])
                .run()?
                .stdout
                .trim()
                .to_string();
            cmd.arg(mb)
        } else {
            cmd.arg(format!("{base}...{}", inst.branch))
        };
        let status = cmd.arg("--").status_inherit()?;
        if !status.success() {
            return Err(Exit(status.code().unwrap_or(1)).into());
        }
    }
    Ok(())
}

pub fn check(ctx: &mut Ctx, args: &CheckArgs) -> Result<()> {
    let env = ctx.require_env(&args.name)?;
    let instances = ctx.store.instances(env.key)?;
    let layers: Vec<_> = instances
        .iter()
        .filter(|i| {
            ctx.ws
                .config
                .layers
                .get(&i.layer)
                .is_some_and(|l| !l.check.is_empty())
        })
        .collect();
    if layers.is_empty() {
        return Err(Fail::new(format!(
            "no dedicated layer of `{}` has `check` commands",
            env.name
        ))
        .hint("add `check = [\"npm test\"]` to a code layer in grove.toml")
        .into());
    }
    interrupt::guard();
    let view = ctx.view(&env, &instances);
    let jobs: Vec<_> = layers
        .iter()
        .map(|i| {
            let cfg = &ctx.ws.config.layers[&i.layer];
            let vars = view.vars(cfg)?;
            let tip = Repo::new(&i.repo)
                .branch_tip(&i.branch)?
                .unwrap_or_default();
            let log = ctx
                .log_dir(&env.name)
                .join(format!("check-{}.log", i.layer));
            Ok((*i, cfg.check.clone(), vars, tip, log))
        })
        .collect::<Result<_>>()?;
    ui::info(format!(
        "checking `{}`: {}",
        env.name,
        jobs.iter()
            .map(|j| j.0.layer.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let me = ctx.me;
    let results = review::par_map(&jobs, |(inst, cmds, vars, _, log)| {
        let t0 = Instant::now();
        let _ = std::fs::remove_file(log);
        let tag = Tag::new(&env.token, Role::Exec)
            .layer(&inst.layer)
            .owned_by(me);
        let ok = cmds
            .iter()
            .all(|c| provision::run_step(c, &inst.worktree, vars, log, &tag).is_ok());
        (ok, t0.elapsed())
    });
    let mut failed = Vec::new();
    for ((inst, _, _, tip, log), (ok, took)) in jobs.iter().zip(results) {
        let row = CheckRow {
            passed: ok,
            commit: tip.clone(),
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            log: log.to_string_lossy().into_owned(),
            finished_at: crate::agent::now_ms() / 1000,
        };
        ctx.store.put_check(env.key, &inst.layer, &row)?;
        if ok {
            ui::info(format!(
                "  {}  passed in {:.1}s",
                inst.layer,
                took.as_secs_f64()
            ));
        } else {
            ui::info(format!(
                "  {}  FAILED in {:.1}s; last lines of {}:",
                inst.layer,
                took.as_secs_f64(),
                log.display()
            ));
            for l in logfile::tail(log, 10) {
                ui::info(format!("  | {}", logfile::split(&l).1));
            }
            failed.push(inst.layer.clone());
        }
    }
    if let Some(sig) = interrupt::received() {
        return Err(provision::Interrupted(sig).into());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Fail::new(format!("check failed in {}", failed.join(", "))).into())
    }
}
