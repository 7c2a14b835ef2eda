//! An env as `ps`, `create` and `--json` show it: state from the store, checked against the
//! disk. Version 1 of the JSON schema is documented in the README; add fields freely, never
//! rename or remove one without bumping `version`.

use anyhow::Result;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::state::{EnvRow, Instance, Phase};

pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct EnvReport {
    pub name: String,
    pub env_id: String,
    pub status: &'static str,
    pub created_at: i64,
    pub layers: Vec<LayerReport>,
    /// What is wrong with the env, each with what to do about it.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct LayerReport {
    pub name: String,
    /// `dedicated` or `shared`.
    pub mode: &'static str,
    pub url: Option<String>,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub base: Option<String>,
    pub worktree: Option<String>,
    /// Whether grove created the branch (and so may delete it on destroy).
    pub branch_created: Option<bool>,
}

/// Builds the report of `env`, checking each worktree is still on disk.
pub fn env_report(ctx: &Ctx, env: &EnvRow, instances: &[Instance]) -> Result<EnvReport> {
    let view = ctx.view(env, instances);
    let mut layers = Vec::new();
    let mut problems = Vec::new();
    for layer in ctx.ws.config.layers.values() {
        // Infra layers get a column once they can be isolated; until then every env shares them.
        let inst = instances.iter().find(|i| i.layer == layer.name);
        if !layer.is_code() && inst.is_none() {
            continue;
        }
        let url = view.url(layer).ok().flatten();
        match inst {
            Some(i) => {
                if env.phase == Phase::Ready && !i.worktree.join(".git").exists() {
                    problems.push(format!(
                        "worktree of `{}` is missing ({}); run `grove destroy {}` to clean up",
                        i.layer,
                        i.worktree.display(),
                        crate::shq(&env.name)
                    ));
                }
                layers.push(LayerReport {
                    name: layer.name.clone(),
                    mode: "dedicated",
                    url,
                    port: i.port,
                    branch: Some(i.branch.clone()),
                    base: Some(i.base.clone()),
                    worktree: Some(i.worktree.to_string_lossy().into_owned()),
                    branch_created: Some(i.branch_created),
                });
            }
            None => layers.push(LayerReport {
                name: layer.name.clone(),
                mode: "shared",
                url,
                port: None,
                branch: None,
                base: None,
                worktree: None,
                branch_created: None,
            }),
        }
    }
    let status = match env.phase {
        Phase::Creating => "creating",
        Phase::Destroying => "destroying",
        Phase::Ready if !problems.is_empty() => "broken",
        // Servers are not supervised yet: a made env is a stopped one.
        Phase::Ready => "stopped",
    };
    Ok(EnvReport {
        name: env.name.clone(),
        env_id: env.ident.clone(),
        status,
        created_at: env.created_at,
        layers,
        problems,
    })
}

impl LayerReport {
    /// The ps cell: `URL [base]` for a dedicated layer, `shared` otherwise.
    pub fn cell(&self) -> String {
        match (self.mode, &self.url, &self.base) {
            ("dedicated", Some(url), Some(base)) => format!("{url} [{base}]"),
            ("dedicated", None, Some(base)) => format!("[{base}]"),
            _ => "shared".into(),
        }
    }
}
