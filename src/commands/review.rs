//! `grove review`, `grove diff`, `grove check`.

use anyhow::Result;

use crate::cli::{CheckArgs, DiffArgs, ReviewArgs};
use crate::ctx::Ctx;
use crate::error::{Exit, Fail};
use crate::git::Repo;
use crate::proc::Role;
use crate::review::{self, Conflict, EnvReview, LayerReview, Review};
use crate::ui::{self, Tone};
use crate::{interrupt, logfile, provision};

pub fn review(ctx: &mut Ctx, args: &ReviewArgs) -> Result<()> {
    let (name, text) = review_target(ctx, args)?;
    if let (Some(name), Some(at), Some(text)) = (&name, &args.comment, &text) {
        return super::gate::comment(ctx, name, at, text);
    }
    let review = review::gather(ctx, args.fetch)?;
    if args.plan {
        let plan = crate::plan::plan(&review);
        if args.json {
            ui::out(serde_json::to_string_pretty(&plan)?);
        } else {
            show_plan(&plan);
        }
        return Ok(());
    }
    if !review.merge_tree && !args.json {
        ui::warn(
            "conflicts are not predicted: that needs git 2.38 or newer (`git merge-tree --write-tree`)",
        );
    }
    match &name {
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

/// The env `review` is about (None: the queue) and the comment's text. Inside an env, NAME
/// defaults to it, unless `--all` or `--plan` asks for the queue; `--comment`'s lone
/// positional is then its TEXT, not a NAME.
fn review_target(ctx: &Ctx, args: &ReviewArgs) -> Result<(Option<String>, Option<String>)> {
    // `review --comment L:P:N TEXT` inside an env: the one word is the TEXT, unless it names
    // an env (then the TEXT is missing, and that is said below).
    let (name, text) = match (&args.comment, &args.name, &args.text) {
        (Some(_), Some(word), None)
            if ctx.store.env(ctx.ws_id, &word.replace('/', "-"))?.is_none() =>
        {
            (None, Some(word.clone()))
        }
        _ => (args.name.clone(), args.text.clone()),
    };
    if text.is_some() && args.comment.is_none() {
        return Err(
            Fail::usage("a comment's TEXT goes with `--comment LAYER:PATH:LINE`")
                .hint("`grove review NAME --comment front:src/app.ts:12 'TEXT'`")
                .into(),
        );
    }
    if args.comment.is_some() && text.is_none() {
        return Err(Fail::usage("`--comment` needs the comment's TEXT")
            .hint("`grove review NAME --comment front:src/app.ts:12 'TEXT'`")
            .into());
    }
    if let Some(name) = &name {
        return Ok((Some(ctx.require_env(name)?.name), text));
    }
    let needs_env = args.mark_reviewed || args.comment.is_some();
    if needs_env {
        let what = if args.mark_reviewed {
            "review --mark-reviewed"
        } else {
            "review --comment …"
        };
        return Ok((Some(ctx.require_target(None, what)?.name), text));
    }
    // `--json` is for scripts, which an env's folder (or an agent's `$GROVE_ENV`) must not
    // switch from the queue to one env: they name the env to get one.
    if args.all || args.plan || args.json {
        return Ok((None, text));
    }
    Ok((ctx.env_here()?.map(|e| e.name), text))
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
        let res = if c.passed {
            ui::paint(Tone::Good, "passed")
        } else {
            ui::paint(Tone::Bad, "FAILED")
        };
        let stale = if c.stale {
            ", before the last commit"
        } else {
            ""
        };
        parts.push(format!("check {res}{stale}"));
    }
    if let Some(files) = l.conflicts_with_base.as_ref().filter(|f| !f.is_empty()) {
        parts.push(format!(
            "{} {}: {}",
            ui::paint(Tone::Bad, "conflicts with"),
            l.base,
            files.join(", ")
        ));
    }
    parts.join(" · ")
}

fn env_header(e: &EnvReview) -> String {
    let agent = match (&e.agent, e.agent_since) {
        (Some(a), Some(t)) => format!("agent {a} ({})", age(t / 1000)),
        (Some(a), None) => format!("agent {a}"),
        (None, _) => "no agent".into(),
    };
    let mut s = format!(
        "[{}] {} · {agent} · servers {}",
        ui::paint(queue_tone(e.state), e.state),
        e.reason,
        ui::paint_status(e.status)
    );
    if let Some(c) = &e.criteria {
        match c.met {
            Some(m) => s.push_str(&format!(" · criteria {m}/{}", c.total)),
            None => s.push_str(&format!(" · {} criteria", c.total)),
        }
    }
    if e.feedback_queued > 0 {
        s.push_str(&format!(
            " · {} message(s) queued for the agent",
            e.feedback_queued
        ));
    }
    s
}

/// The colour of a queue state: what needs the human stands out.
fn queue_tone(state: &str) -> Tone {
    match state {
        "waiting" | "failed" | "changes" => Tone::Bad,
        "approved" => Tone::Good,
        "review" => Tone::Pending,
        _ => Tone::Dim,
    }
}

/// The gate's last word, in a line.
fn gate_line(e: &EnvReview) -> Option<String> {
    let g = e.gate.as_ref()?;
    let mut s = match (g.phase.as_str(), &g.result) {
        ("finished", Some(r)) => format!("gate: {}", r.summary()),
        ("finished", None) => "gate: no result".to_string(),
        (phase, _) => format!("gate {phase}"),
    };
    if g.stale {
        s.push_str(" (before the last commit)");
    }
    if g.auto_fix > 0 {
        s.push_str(&format!(" · auto-fix {}/{}", g.rounds, g.auto_fix));
    }
    Some(s)
}

fn conflict_line(c: &Conflict) -> String {
    let mut s = format!("{} ⟷ {}  {}  ", c.envs[0], c.envs[1], c.layer);
    match &c.conflict {
        Some(files) if !files.is_empty() => s.push_str(&format!(
            "{} {} · ",
            ui::paint(Tone::Bad, "conflict:"),
            files.join(", ")
        )),
        Some(_) => s.push_str(&format!("{} · ", ui::paint(Tone::Good, "merges cleanly"))),
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
        ui::out(format!(
            "{:>2}. {}  {}",
            i + 1,
            ui::paint(Tone::Strong, &e.name),
            env_header(e)
        ));
        if let Some(g) = gate_line(e) {
            ui::out(format!("      {g}"));
        }
        if !e.next.is_empty() {
            ui::out(format!("      next: {}", e.next));
        }
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
            "  {} ⟷ {} (moved on)  {}  {} {}",
            e.name,
            l.base,
            l.layer,
            ui::paint(Tone::Bad, "conflict:"),
            files.join(", ")
        ));
    }
}

fn show_env(e: &EnvReview, review: &Review) {
    ui::out(format!(
        "{}  {}",
        ui::paint(Tone::Strong, &e.name),
        env_header(e)
    ));
    if !e.next.is_empty() {
        ui::out(format!("next: {}", e.next));
    }
    if let Some(g) = gate_line(e) {
        ui::out(g);
    }
    if let Some(r) = e.gate.as_ref().and_then(|g| g.result.as_ref()) {
        for c in r.checks.iter().filter(|c| !c.passed) {
            ui::out(format!(
                "  check {} {}: {}",
                c.layer,
                ui::paint(Tone::Bad, "FAILED"),
                c.log
            ));
        }
        if let Some(v) = r.reviewer.as_ref().and_then(|x| x.verdict.as_ref()) {
            for f in &v.findings {
                let place = f.place();
                ui::out(format!(
                    "  [{}] {place} {}",
                    f.severity.as_deref().unwrap_or("finding"),
                    f.text
                ));
            }
        }
    }
    if let Some(c) = &e.criteria {
        ui::out("criteria:");
        for i in &c.items {
            let mark = match (i.met, i.checked) {
                (Some(true), _) => "met",
                (Some(false), _) => &ui::paint(Tone::Bad, "NOT MET"),
                (None, true) => "ticked",
                (None, false) => "?",
            };
            let ev = i
                .evidence
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default();
            ui::out(format!("  [{mark}] {}{ev}", i.text));
        }
    }
    for l in &e.layers {
        let url = e
            .urls
            .iter()
            .find(|(n, _)| *n == l.layer)
            .and_then(|(_, u)| u.clone());
        ui::out(format!(
            "\n{}  {}",
            ui::paint(Tone::Strong, &l.layer),
            url.map(|u| ui::paint(Tone::Link, u)).unwrap_or_default()
        ));
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
                .hint(format!(
                    "its layers: {}",
                    instances
                        .iter()
                        .map(|i| i.layer.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
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
        // Kept until git has run: the index it reads.
        let mut _index = None;
        // git pages its own output when stdout is a terminal (core.pager, $GIT_PAGER, $PAGER).
        let cmd = if args.dirty {
            let mb = repo
                .cmd()
                .args(["merge-base", &base, &inst.branch])
                .run()?
                .stdout
                .trim()
                .to_string();
            let cmd = match index_with_untracked(&inst.worktree)? {
                Some(index) => {
                    let cmd = cmd.env("GIT_INDEX_FILE", index.path());
                    _index = Some(index);
                    cmd
                }
                None => cmd,
            };
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

/// A copy of the worktree's index in which its untracked files (those `review` counts: not
/// ignored) are marked intent-to-add, so that one `git diff` shows them as new files, through
/// one pager; `None` when there are none. The worktree's own index is never written: `git
/// add -N` there would change what the user commits next.
fn index_with_untracked(worktree: &std::path::Path) -> Result<Option<TempIndex>> {
    let wt = || crate::git::git(worktree);
    let untracked = wt()
        .args(["ls-files", "--others", "--exclude-standard", "-z"])
        .run()?
        .stdout;
    if untracked.is_empty() {
        return Ok(None);
    }
    let index = wt()
        .args(["rev-parse", "--path-format=absolute", "--git-path", "index"])
        .run()?
        .stdout
        .trim()
        .to_string();
    let copy = TempIndex(std::env::temp_dir().join(format!(
        "grove-diff-index-{}-{}",
        std::process::id(),
        crate::agent::now_ms()
    )));
    // A name no one else has, opened exclusively: a file planted under it (a symlink to
    // somewhere) is never written through.
    let mut target = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(copy.path())?;
    if std::path::Path::new(&index).exists() {
        std::io::copy(&mut fs_err::File::open(&index)?, &mut target)?;
    }
    drop(target);
    // Names are names, not patterns: a file called `*.txt` adds only itself.
    wt().env("GIT_INDEX_FILE", copy.path())
        .env("GIT_LITERAL_PATHSPECS", "1")
        .args([
            "add",
            "--intent-to-add",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
        ])
        .stdin_bytes(untracked)
        .run()?;
    Ok(Some(copy))
}

/// A scratch index file, removed when dropped.
struct TempIndex(std::path::PathBuf);

impl TempIndex {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn check(ctx: &mut Ctx, args: &CheckArgs) -> Result<()> {
    let env = ctx.require_target(args.name.as_deref(), "check")?;
    let instances = ctx.store.instances(env.key)?;
    let layers = crate::gate::checked_layers(ctx, &instances);
    if layers.is_empty() {
        return Err(Fail::new(format!(
            "no dedicated layer of `{}` has `check` commands",
            env.name
        ))
        .hint("add `check = [\"npm test\"]` to a code layer in grove.toml")
        .into());
    }
    interrupt::guard();
    ui::info(format!(
        "checking `{}`: {}",
        env.name,
        layers
            .iter()
            .map(|i| i.layer.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let results = crate::gate::run_checks(ctx, &env, Role::Exec)?;
    let mut failed = Vec::new();
    for c in results {
        let took = c.duration_ms as f64 / 1000.0;
        if c.passed {
            ui::info(format!("  {}  passed in {took:.1}s", c.layer));
        } else {
            ui::info(format!(
                "  {}  FAILED in {took:.1}s; last lines of {}:",
                c.layer, c.log
            ));
            for l in logfile::tail(std::path::Path::new(&c.log), 10) {
                ui::info(format!("  | {}", logfile::split(&l).1));
            }
            failed.push(c.layer);
        }
    }
    if let Some(sig) = interrupt::received() {
        return Err(provision::Interrupted(sig).into());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        let n = crate::shq(&env.name);
        Err(Fail::new(format!("check failed in {}", failed.join(", ")))
            .hint(format!(
                "fix what failed, then `grove check {n}` again (each layer's whole log is named above)"
            ))
            .into())
    }
}

fn show_plan(plan: &crate::plan::Plan) {
    if plan.steps.is_empty() {
        ui::info("no env has commits to land");
    }
    for (i, s) in plan.steps.iter().enumerate() {
        ui::out(format!("{:>2}. {}  [{}]", i + 1, s.env, s.state));
        if !s.conflicts_with_base.is_empty() {
            ui::out(format!(
                "      conflicts with its base already: {}",
                s.conflicts_with_base.join(", ")
            ));
        }
        for r in &s.rebase_after {
            let what = if r.conflicts.is_empty() {
                format!(
                    "touches the same files ({}), merges cleanly",
                    r.overlap.join(", ")
                )
            } else {
                format!("CONFLICT to resolve in {}", r.conflicts.join(", "))
            };
            ui::out(format!(
                "      rebase after {} lands ({}): {what}",
                r.env, r.layer
            ));
        }
    }
    if !plan.nothing_to_land.is_empty() {
        ui::out(format!(
            "nothing to land: {}",
            plan.nothing_to_land.join(", ")
        ));
    }
}
