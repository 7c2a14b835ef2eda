//! `grove doctor [--fix] [--json]`: what is out of line between the store, git, the disk and
//! the process table, and (with `--fix`) the safe repairs. See [`crate::doctor`].

use anyhow::Result;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::ctx::Ctx;
use crate::doctor::{Doctor, Problem};
use crate::error::{Exit, Fail};
use crate::state::{self, Store};
use crate::ui;
use crate::workspace::Workspace;

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    workspace: Option<String>,
    store: String,
    /// No problem left (after `--fix`, none that it could not fix).
    ok: bool,
    problems: &'a [Problem],
}

pub fn run(ws: Result<Workspace, Fail>, args: &DoctorArgs) -> Result<()> {
    let home = crate::paths::grove_home()?;
    let db = home.join("state.db");
    let mut problems = Vec::new();
    if let Err(e) = Store::open(&home) {
        let Some(corrupt) = state::corrupt_problem(&e) else {
            return Err(e);
        };
        let mut p = Problem::corrupt_store(corrupt);
        if args.fix {
            let aside = Store::set_aside(&home)?;
            p.fixed = Some(true);
            p.fix = format!("{} (kept as {})", p.fix, aside.display());
        }
        problems.push(p);
        if !args.fix {
            return finish(&problems, ws.as_ref().ok(), &db, args);
        }
    }
    let mut doctor = match &ws {
        Ok(ws) => Doctor {
            ctx: Some(Ctx::open(ws.clone())?),
            store: None,
            home: home.clone(),
        },
        Err(_) => Doctor {
            ctx: None,
            store: Some(Store::open(&home)?),
            home: home.clone(),
        },
    };
    problems.extend(doctor.examine()?);
    if args.fix {
        // A fix can make another possible (a folder removed frees the branch it had checked
        // out; a rolled-back env leaves its logs): look again until nothing new is fixable.
        for _ in 0..3 {
            let mut applied = false;
            for p in problems
                .iter_mut()
                .filter(|p| p.fixable && p.fixed.is_none())
            {
                doctor.apply(p);
                applied = true;
            }
            if !applied {
                break;
            }
            // Fixed or tried (and failed, said why): not again. What else is still wrong is
            // reported as it is now.
            let tried = |n: &Problem, ps: &[Problem]| {
                ps.iter()
                    .any(|p| p.fixed.is_some() && p.kind == n.kind && p.subject == n.subject)
            };
            let again = doctor.examine()?;
            let new: Vec<Problem> = again.into_iter().filter(|n| !tried(n, &problems)).collect();
            problems.retain(|p| p.fixed.is_some());
            problems.extend(new);
        }
    }
    finish(&problems, ws.as_ref().ok(), &db, args)
}

fn finish(
    problems: &[Problem],
    ws: Option<&Workspace>,
    db: &std::path::Path,
    args: &DoctorArgs,
) -> Result<()> {
    let left = problems.iter().filter(|p| p.fixed != Some(true)).count();
    if args.json {
        let report = Report {
            version: crate::report::JSON_VERSION,
            workspace: ws.map(|w| w.root.to_string_lossy().into_owned()),
            store: db.to_string_lossy().into_owned(),
            ok: left == 0,
            problems,
        };
        ui::out(serde_json::to_string_pretty(&report)?);
    } else {
        show(problems, ws, db, args.fix);
    }
    if left == 0 {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}

fn show(problems: &[Problem], ws: Option<&Workspace>, db: &std::path::Path, fixing: bool) {
    let place = ws.map_or("no workspace here: machine-wide checks only".into(), |w| {
        format!("workspace {}", crate::tilde(&w.root))
    });
    ui::info(format!("grove doctor: {place}; store {}", crate::tilde(db)));
    if problems.is_empty() {
        ui::out("no problems found");
        return;
    }
    let width = problems.iter().map(|p| p.kind.len()).max().unwrap_or(0);
    for p in problems {
        ui::out(format!("{:width$}  {}: {}", p.kind, p.subject, p.problem));
        let outcome = match (p.fixable, p.fixed, &p.error) {
            (_, Some(true), _) => format!("fixed: {}", p.fix),
            (_, Some(false), e) => {
                format!("NOT fixed ({}): {}", e.as_deref().unwrap_or("?"), p.fix)
            }
            (true, None, _) => format!("fix: {}", p.fix),
            (false, _, _) => format!("to do by hand: {}", p.fix),
        };
        ui::out(format!("{:width$}  {outcome}", ""));
    }
    let fixable = problems
        .iter()
        .filter(|p| p.fixable && p.fixed.is_none())
        .count();
    let fixed = problems.iter().filter(|p| p.fixed == Some(true)).count();
    let left = problems.len() - fixed;
    if fixing {
        ui::info(format!(
            "{} problem(s): fixed {fixed}, {left} left",
            problems.len()
        ));
    } else if fixable > 0 {
        ui::info(format!(
            "{} problem(s); `grove doctor --fix` fixes {fixable} of them",
            problems.len()
        ));
    } else {
        ui::info(format!("{} problem(s), to fix by hand", problems.len()));
    }
}
