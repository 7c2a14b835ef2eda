//! `<env folder>/grove-env.json`: what an env is (its name, token, worktrees, branches,
//! bases, isolated resources), written when it is made. The store is the truth while it
//! lives; this file is how `grove doctor --fix` rebuilds an env's rows when `state.db` was
//! deleted or corrupted, from the disk alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::state::{EnvRow, Instance, IsolatedRow};

pub const FILE: &str = "grove-env.json";

/// Every file grove keeps in an env folder besides the worktrees: anything else there is
/// someone's (destroy keeps it, doctor leaves it, a demo re-run refuses).
pub const GROVE_FILES: &[&str] = &[
    crate::agent::CONTEXT_FILE,
    crate::agent::PROMPT_FILE,
    crate::feedback::FEEDBACK_FILE,
    FILE,
];
/// Folders grove keeps in an env folder: the review gate's inputs and verdict.
pub const GROVE_DIRS: &[&str] = &[crate::gate::GATE_DIR, crate::compose::DIR];

/// Whether `name`, in an env folder, is grove's own.
pub fn is_grove_entry(name: &str) -> bool {
    GROVE_FILES.contains(&name) || GROVE_DIRS.contains(&name)
}

/// Removes grove's own files and folders from the env folder `dir` (a link in their place is
/// removed, never followed).
pub fn remove_grove_entries(dir: &std::path::Path) {
    for f in GROVE_FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for d in GROVE_DIRS {
        let p = dir.join(d);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&p);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&p);
            }
            Err(_) => {}
        }
    }
}
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub name: String,
    pub ident: String,
    pub token: String,
    pub workspace: PathBuf,
    pub created_at: i64,
    pub layers: Vec<Instance>,
    pub isolated: Vec<IsolatedRow>,
    /// The Docker engine of its compose layers, and the host it publishes on.
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub engine_host: Option<String>,
}

/// Writes the manifest of `env` from the store, into its folder.
pub fn write(ctx: &Ctx, env: &EnvRow) -> Result<()> {
    let m = Manifest {
        version: VERSION,
        name: env.name.clone(),
        ident: env.ident.clone(),
        token: env.token.clone(),
        workspace: ctx.ws.root.clone(),
        created_at: env.created_at,
        layers: ctx.store.instances(env.key)?,
        isolated: ctx.store.isolated(env.key)?,
        engine: env.engine.clone(),
        engine_host: env.engine_host.clone(),
    };
    let path = ctx.ws.env_dir(&env.name).join(FILE);
    crate::provision::write_atomic(&path, serde_json::to_string_pretty(&m)?.as_bytes())
}

/// The manifest in env folder `dir`, if there is one.
pub fn read(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(FILE);
    match fs_err::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
