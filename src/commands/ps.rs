//! `grove ps`: one row per env. Reads the store and stats the disk; runs no git, so it stays
//! fast with many envs.

use anyhow::Result;
use serde::Serialize;

use crate::cli::PsArgs;
use crate::ctx::Ctx;
use crate::report::LayerReport;
use crate::report::{self, EnvReport, JSON_VERSION};
use crate::state::EnvRow;
use crate::ui::{self, Tone};

/// [`LayerReport::cell`] with its URL painted as a link.
fn painted_cell(l: &LayerReport) -> String {
    match (l.mode, &l.url) {
        ("dedicated" | "isolated", Some(url)) => {
            l.cell()
                .replacen(url.as_str(), &ui::paint(Tone::Link, url), 1)
        }
        ("dedicated" | "isolated", None) => l.cell(),
        _ => ui::paint(Tone::Dim, l.cell()),
    }
}

#[derive(Serialize)]
struct PsJson<'a> {
    version: u32,
    workspace: String,
    envs: &'a [EnvReport],
    /// With `--pool`: the warm pool (`grove pool status --json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<crate::pool::PoolReport>,
}

/// The containers of the envs' compose layers: one query per engine in use, whatever the
/// number of envs. An engine that does not answer is a problem of its envs, not an error.
fn add_containers(ctx: &Ctx, envs: &[EnvRow], reports: &mut [EnvReport]) {
    let mut engines: Vec<crate::config::Engine> = Vec::new();
    for env in envs {
        let e = ctx.engine(env);
        if !engines.contains(&e) && ctx.uses_docker(env).unwrap_or(false) {
            engines.push(e);
        }
    }
    for engine in engines {
        let found = crate::compose::containers(&engine, &ctx.ws.key());
        for (env, rep) in envs.iter().zip(reports.iter_mut()) {
            if ctx.engine(env) != engine {
                continue;
            }
            for l in &mut rep.layers {
                let compose = ctx
                    .ws
                    .config
                    .layers
                    .get(&l.name)
                    .is_some_and(crate::config::Layer::on_docker);
                if !compose || l.mode == "shared" {
                    continue;
                }
                match &found {
                    Ok(all) => {
                        l.containers = Some(
                            all.iter()
                                .filter(|c| c.token == env.token && c.layer == l.name)
                                .cloned()
                                .collect(),
                        );
                    }
                    Err(e) => rep.problems.push(format!(
                        "the Docker engine of `{}` does not answer ({e}); its containers are not shown",
                        l.name
                    )),
                }
            }
        }
    }
}

pub fn run(ctx: &mut Ctx, args: &PsArgs) -> Result<()> {
    let mut reports = Vec::new();
    let envs = ctx.store.envs(ctx.ws_id)?;
    for env in &envs {
        let instances = ctx.store.instances(env.key)?;
        reports.push(report::env_report(ctx, env, &instances)?);
    }
    if ctx.ws.config.has_compose() {
        add_containers(ctx, &envs, &mut reports);
    }
    let pool = if args.pool {
        Some(crate::pool::report(ctx)?)
    } else {
        None
    };
    if args.json {
        let json = PsJson {
            version: JSON_VERSION,
            workspace: ctx.ws.root.to_string_lossy().into_owned(),
            envs: &reports,
            pool,
        };
        ui::out(serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if let Some(pool) = &pool {
        super::pool::print(pool);
        ui::out("");
    }
    if reports.is_empty() {
        ui::info("no envs in this workspace; create one with `grove create NAME`");
        return Ok(());
    }
    // A column per code layer, and per infra layer that some env isolates.
    let mut code_layers = ctx.ws.config.code_layers();
    for l in ctx.ws.config.layers.values().filter(|l| !l.is_code()) {
        if reports.iter().any(|r| {
            r.layers
                .iter()
                .any(|x| x.name == l.name && x.mode == "isolated")
        }) {
            code_layers.push(&l.name);
        }
    }
    let mut rows = vec![
        std::iter::once("NAME".to_string())
            .chain(code_layers.iter().map(|l| l.to_ascii_uppercase()))
            .chain(["STATUS".to_string(), "AGENT".to_string()])
            .map(|h| ui::paint(Tone::Strong, h))
            .collect::<Vec<_>>(),
    ];
    for r in &reports {
        let mut row = vec![r.name.clone()];
        for layer in &code_layers {
            let cell = r.layers.iter().find(|l| l.name == *layer);
            row.push(cell.map_or_else(|| ui::paint(Tone::Dim, "shared"), painted_cell));
        }
        row.push(ui::paint_status(r.status));
        row.push(ui::paint_status(r.agent.as_ref().map_or("-", |a| &a.state)));
        rows.push(row);
    }
    for line in ui::table(&rows) {
        ui::out(line);
    }
    for r in &reports {
        for p in &r.problems {
            ui::hint(format!("{}: {p}", r.name));
        }
    }
    Ok(())
}
