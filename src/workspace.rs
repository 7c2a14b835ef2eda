//! Finding the workspace (the folder holding grove.toml) and where grove keeps its own files.

use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::error::Fail;

#[derive(Debug, Clone)]
pub struct Workspace {
    /// Canonical path of the folder holding grove.toml.
    pub root: PathBuf,
    pub config: Config,
}

impl Workspace {
    /// `explicit` (`--workspace` / `GROVE_WORKSPACE`) or the nearest grove.toml above `cwd`.
    pub fn discover(explicit: Option<&Path>, cwd: &Path) -> Result<Self, Fail> {
        let root = match explicit {
            Some(dir) => {
                let dir = cwd.join(dir);
                if !dir.join(config::FILE_NAME).is_file() {
                    return Err(Fail::new(format!("no grove.toml in {}", dir.display()))
                        .hint("`--workspace` and GROVE_WORKSPACE name the folder holding grove.toml"));
                }
                dir
            }
            None => find_root(cwd).ok_or_else(|| {
                Fail::new(format!("no grove.toml in {} or any folder above it", cwd.display()))
                    .hint("run `grove init` in the folder holding your repos, or `grove demo` to try grove on a demo workspace")
            })?,
        };
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        let config = config::load(&root.join(config::FILE_NAME), &root)?;
        Ok(Self { root, config })
    }

    /// A stable, readable identifier of this workspace for file and session names: its name
    /// plus a hash of its path, so two checkouts both called `app` never share logs.
    pub fn key(&self) -> String {
        let name: String = self
            .config
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        format!(
            "{name}-{:06x}",
            crate::paths::fnv1a(self.root.as_os_str().as_encoded_bytes()) & 0xff_ffff
        )
    }

    pub fn env_dir(&self, env: &str) -> PathBuf {
        self.config.envs_dir.join(env)
    }
}

/// Walks up from `start` to the nearest folder holding grove.toml. A grove.toml found in a
/// linked worktree (an env's checkout of a repo that carries grove.toml) defers to the one in
/// the main checkout: commands run inside an env act on the workspace that made it.
fn find_root(start: &Path) -> Option<PathBuf> {
    let dir = start
        .ancestors()
        .find(|d| d.join(config::FILE_NAME).is_file())?;
    if let Some(main) = main_checkout_of(dir)
        && main.join(config::FILE_NAME).is_file()
    {
        return Some(main);
    }
    Some(dir.to_path_buf())
}

/// For a linked worktree (`.git` is a file `gitdir: <common>/worktrees/<id>`), the main
/// checkout that owns it. Read from files so discovery spawns no git.
fn main_checkout_of(dir: &Path) -> Option<PathBuf> {
    let dotgit = std::fs::read_to_string(dir.join(".git")).ok()?;
    let gitdir = PathBuf::from(dotgit.strip_prefix("gitdir:")?.trim());
    let gitdir = if gitdir.is_absolute() {
        gitdir
    } else {
        dir.join(gitdir)
    };
    let common = std::fs::read_to_string(gitdir.join("commondir")).ok()?;
    let common = gitdir.join(common.trim());
    let common = std::fs::canonicalize(common).ok()?;
    (common.file_name()? == ".git").then(|| common.parent().map(Path::to_path_buf))?
}
