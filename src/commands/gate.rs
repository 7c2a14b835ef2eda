//! `grove gate`, `grove feedback`, and `grove review NAME --comment`.

use std::io::Read;

use anyhow::Result;

use crate::cli::{FeedbackArgs, GateArgs};
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::feedback::{self, Delivery};
use crate::gate::{self, Outcome};
use crate::{interrupt, ui};

pub fn gate(ctx: &mut Ctx, args: &GateArgs) -> Result<()> {
    let env = ctx.require_env(&args.name)?;
    if args.background {
        // Detached from the hook that started it (in a session of its own since `dispatch`):
        // the agent's Ctrl-C or its end must not stop the gate halfway.
        gate::recover(ctx)?;
        return gate::run(ctx, &env, false).map(drop);
    }
    interrupt::guard();
    crate::recover::unfinished(ctx)?;
    ui::info(format!("gate of `{}`: checks, then the reviewer", env.name));
    let result = gate::run(ctx, &env, true)?;
    if args.json {
        ui::out(serde_json::to_string_pretty(&result)?);
    }
    for c in &result.checks {
        ui::info(format!(
            "  check {}  {} in {:.1}s",
            c.layer,
            if c.passed { "passed" } else { "FAILED" },
            c.duration_ms as f64 / 1000.0
        ));
    }
    if let Some(r) = &result.reviewer {
        match &r.verdict {
            Some(v) => {
                ui::info(format!(
                    "  reviewer  {} ({:.1}s){}",
                    match v.verdict {
                        gate::VerdictKind::Approve => "approve",
                        gate::VerdictKind::Changes => "changes",
                    },
                    r.duration_ms as f64 / 1000.0,
                    if v.summary.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", v.summary.lines().next().unwrap_or(""))
                    }
                ));
                for f in &v.findings {
                    let place = f.place();
                    ui::info(format!(
                        "    [{}] {place} {}",
                        f.severity.as_deref().unwrap_or("finding"),
                        f.text
                    ));
                }
            }
            // What went wrong ends the output, in the error.
            None => ui::info(format!(
                "  reviewer  no usable verdict ({}, {:.1}s)",
                r.ended,
                r.duration_ms as f64 / 1000.0
            )),
        }
    }
    if let Some(round) = result.auto_fix_round {
        ui::info(format!(
            "  sent back to the agent (auto-fix round {round} of {})",
            ctx.ws.config.review.auto_fix
        ));
    }
    if result.outcome == Outcome::Approved {
        ui::info(format!("gate of `{}`: approved", env.name));
        return Ok(());
    }
    let n = crate::shq(&env.name);
    let hint = if result.outcome.reviewer_failed() {
        format!(
            "the reviewer failed, not the agent: see why in `grove logs {n} gate`, then run it again with `grove gate {n}`"
        )
    } else if result.outcome == Outcome::Interrupted {
        format!(
            "the gate did not finish: see why in `grove logs {n} gate`, then run it again with `grove gate {n}`"
        )
    } else {
        format!("its log: `grove logs {n} gate`; answer the agent with `grove feedback {n} TEXT`")
    };
    Err(
        Fail::new(format!("gate of `{}`: {}", env.name, result.summary()))
            .hint(hint)
            .into(),
    )
}

pub fn feedback(ctx: &mut Ctx, args: &FeedbackArgs) -> Result<()> {
    let env = ctx.require_env(&args.name)?;
    if args.list {
        let rows = ctx.store.feedback(env.key, false)?;
        if args.json {
            let list: Vec<_> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "source": r.source, "text": r.text,
                        "created_at": r.created_at, "delivered_at": r.delivered_at, "via": r.via,
                    })
                })
                .collect();
            ui::out(serde_json::to_string_pretty(
                &serde_json::json!({ "version": 1, "messages": list }),
            )?);
            return Ok(());
        }
        if rows.is_empty() {
            ui::info(format!("no messages to the agent of `{}` yet", env.name));
        }
        for r in rows {
            let how = r.via.as_deref().unwrap_or("queued");
            ui::out(format!(
                "#{} {} ({how}): {}",
                r.id,
                r.source,
                first_line(&r.text)
            ));
        }
        return Ok(());
    }
    let text = match (&args.text, &args.file) {
        (Some(t), None) if t == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        (Some(t), None) => t.clone(),
        (None, Some(f)) => fs_err::read_to_string(f)
            .map_err(|e| Fail::new(format!("cannot read the message: {e}")))?,
        _ => unreachable!("clap requires exactly one of TEXT and --file"),
    };
    send(ctx, &env, "human", &text, args.json)
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

fn send(
    ctx: &mut Ctx,
    env: &crate::state::EnvRow,
    source: &str,
    text: &str,
    json: bool,
) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Fail::new("the message is empty")
            .hint("give the text as an argument, with --file FILE, or on stdin with `-`")
            .into());
    }
    interrupt::guard();
    let d = feedback::send(ctx, env, source, text)?;
    if json {
        ui::out(serde_json::to_string_pretty(&serde_json::json!({
            "version": 1,
            "delivered": d.via().is_some(),
            "via": d.via(),
            "queued_because": match &d { Delivery::Queued(w) => Some(w.as_str()), _ => None },
        }))?);
    }
    ui::info(format!("to the agent of `{}`: {}", env.name, d.describe()));
    Ok(())
}

/// `grove review NAME --comment LAYER:PATH:LINE TEXT`: the text, with the hunk of the env's
/// diff (committed or not) that holds the line, sent to the agent.
pub fn comment(ctx: &mut Ctx, name: &str, at: &str, text: &str) -> Result<()> {
    let env = ctx.require_env(name)?;
    let bad = || {
        Fail::new(format!("`{at}` is not LAYER:PATH:LINE"))
            .hint("e.g. `--comment api:src/app.py:42`")
    };
    let (layer, rest) = at.split_once(':').ok_or_else(bad)?;
    let (path, line) = rest.rsplit_once(':').ok_or_else(bad)?;
    let line: u32 = line.parse().ok().filter(|l| *l > 0).ok_or_else(bad)?;
    let instances = ctx.store.instances(env.key)?;
    let Some(inst) = instances.iter().find(|i| i.layer == layer) else {
        let has: Vec<&str> = instances.iter().map(|i| i.layer.as_str()).collect();
        return Err(Fail::new(format!(
            "env `{}` has no worktree for layer `{layer}`",
            env.name
        ))
        .hint(format!("its layers: {}", has.join(", ")))
        .into());
    };
    let rel = std::path::Path::new(path);
    if path.is_empty()
        || rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Fail::new(format!(
            "`{path}` is not a path inside the worktree of `{layer}`"
        ))
        .hint("give the path relative to the repo's top, as `grove diff` shows it")
        .into());
    }
    let quoted = hunk_at(inst, path, line)?.ok_or_else(|| {
        Fail::new(format!(
            "`{path}` has no line {line} in `{layer}` (neither in the env's diff nor in the file)"
        ))
        .hint(format!(
            "see the diff with `grove diff {} {layer}`",
            crate::shq(&env.name)
        ))
    })?;
    let msg = format!(
        "Review comment on {layer}:{path}:{line}\n\n```\n{}\n```\n\n{}",
        quoted.trim_end(),
        text.trim_end()
    );
    send(ctx, &env, "comment", &msg, false)
}

/// The hunk of the layer's changes since its merge base (uncommitted ones too) that holds new
/// line `line` of `path`; else the lines around it in the worktree; `None` when the file has
/// no such line.
fn hunk_at(inst: &crate::state::Instance, path: &str, line: u32) -> Result<Option<String>> {
    let repo = crate::git::Repo::new(&inst.repo);
    let base = inst.current_base(&repo);
    let wt = || crate::git::git(&inst.worktree);
    let mb = wt()
        .args(["merge-base", &base, "HEAD"])
        .run()
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or(base);
    // A literal pathspec: `pages/[id].vue` is that file, not a pattern matching others.
    let diff = wt()
        .args([
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-renames",
            &mb,
            "--",
        ])
        .arg(format!(":(literal){path}"))
        .run()?
        .stdout;
    let mut hunks: Vec<(u32, u32, Vec<&str>)> = Vec::new();
    let mut in_hunk = false;
    for l in diff.lines() {
        if let Some(h) = l.strip_prefix("@@ ") {
            // `@@ -a,b +c,d @@ context`
            let new = h
                .split_whitespace()
                .find(|w| w.starts_with('+'))
                .unwrap_or("+0");
            let mut parts = new[1..].split(',');
            let start: u32 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let count: u32 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(1);
            hunks.push((start, count, vec![l]));
            in_hunk = true;
        } else if l.starts_with("diff --git ") {
            in_hunk = false;
        } else if in_hunk && let Some((_, _, lines)) = hunks.last_mut() {
            lines.push(l);
        }
    }
    let found = hunks
        .into_iter()
        .find(|(s, n, _)| (*s..s + (*n).max(1)).contains(&line));
    if let Some((start, _, lines)) = found {
        // A long hunk is cut around the line (the agent has the file): its header, then up
        // to 30 lines either side of the one commented on.
        let at = lines[1..]
            .iter()
            .scan(start, |new_line, l| {
                let here = *new_line;
                if !l.starts_with('-') {
                    *new_line += 1;
                }
                Some(here)
            })
            .position(|n| n == line)
            .map_or(1, |p| p + 1);
        let text = if lines.len() > 61 {
            let from = at.saturating_sub(30).max(1);
            let to = (at + 31).min(lines.len());
            let mut kept = vec![lines[0].to_string()];
            if from > 1 {
                kept.push("[…]".into());
            }
            kept.extend(lines[from..to].iter().map(|l| (*l).to_string()));
            if to < lines.len() {
                kept.push("[…]".into());
            }
            kept.join("\n")
        } else {
            lines.join("\n")
        };
        return Ok(Some(text));
    }
    let Ok(content) = std::fs::read_to_string(inst.worktree.join(path)) else {
        return Ok(None);
    };
    let all: Vec<&str> = content.lines().collect();
    let i = usize::try_from(line).unwrap_or(usize::MAX) - 1;
    if i >= all.len() {
        return Ok(None);
    }
    let from = i.saturating_sub(3);
    let to = (i + 4).min(all.len());
    Ok(Some(
        (from..to)
            .map(|k| format!("{:>5}{} {}", k + 1, if k == i { ">" } else { ":" }, all[k]))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}
