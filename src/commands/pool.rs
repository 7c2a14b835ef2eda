//! `grove pool status|fill|drain`.

use std::time::Duration;

use anyhow::Result;

use crate::cli::PoolCommand;
use crate::ctx::Ctx;
use crate::error::Fail;
use crate::{interrupt, pool, recover, ui};

pub fn run(ctx: &mut Ctx, cmd: &PoolCommand) -> Result<()> {
    match cmd {
        PoolCommand::Status { json } => status(ctx, *json),
        PoolCommand::Fill { background } => fill(ctx, *background),
        PoolCommand::Drain => {
            interrupt::guard();
            let n = pool::drain(ctx)?;
            ui::info(format!("removed {n} prepared worktree(s)"));
            Ok(())
        }
    }
}

fn status(ctx: &Ctx, json: bool) -> Result<()> {
    let report = pool::report(ctx)?;
    if json {
        ui::out(serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print(&report);
    Ok(())
}

/// The human view, shared with `ps --pool`.
pub fn print(report: &pool::PoolReport) {
    if report.layers.is_empty() {
        ui::info("no layer keeps a pool: add `pool = N` to a code layer (or to [workspace])");
        return;
    }
    let mut rows = vec![vec![
        "LAYER".to_string(),
        "BASE".into(),
        "READY".into(),
        "PREPARING".into(),
    ]];
    for l in &report.layers {
        rows.push(vec![
            l.layer.clone(),
            l.base.clone(),
            format!("{}/{}", l.ready, l.size),
            l.preparing.to_string(),
        ]);
    }
    for line in ui::table(&rows) {
        ui::out(line);
    }
    match report.filler {
        Some(pid) => ui::out(format!("filler: running (pid {pid})")),
        None => ui::out("filler: idle"),
    }
    for e in report.entries.iter().filter(|e| e.stale) {
        ui::hint(format!(
            "{}: an entry was prepared with another config (the next create or `grove pool fill` replaces it)",
            e.layer
        ));
    }
    for e in report.entries.iter().filter(|e| e.behind && !e.stale) {
        ui::hint(format!(
            "{}: an entry is behind {} (a claim checks out what changed)",
            e.layer, e.base
        ));
    }
}

fn fill(ctx: &mut Ctx, background: bool) -> Result<()> {
    interrupt::guard();
    if background {
        // Detached from the create that started it: a Ctrl-C in that terminal is not for it,
        // nor the descriptors its caller left open.
        let _ = nix::unistd::setsid();
        crate::proc::close_inherited_fds();
    }
    recover::unfinished(ctx)?;
    if pool::targets(ctx)?.is_empty() {
        if background {
            return Ok(());
        }
        return Err(Fail::new("no layer keeps a pool")
            .hint("add `pool = N` to a code layer of grove.toml (or `pool = N` to [workspace])")
            .into());
    }
    loop {
        match pool::fill(ctx, !background)? {
            Some(n) => {
                if !background {
                    ui::info(format!("pool full ({n} worktree(s) prepared)"));
                }
                return Ok(());
            }
            // Another filler is at work: the background one leaves it to it; `grove pool
            // fill` waits, then tops up whatever is still missing.
            None if background => return Ok(()),
            None => {
                if let Some(f) = pool::filler(ctx)? {
                    ui::info(format!("waiting for the pool filler (pid {})…", f.pid));
                    while f.alive() {
                        crate::provision::check_interrupt()?;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
    }
}
