//! Which env a command is about when NAME is left out: the one whose folder you are in.
//!
//! `exec`, `path`, `env`, `logs`, `check`, `review` (and any command taking an env NAME) call
//! [`Ctx::require_target`] or [`Ctx::require_target_layer`] instead of [`Ctx::require_env`]. An
//! explicit NAME always wins; without one, the env whose folder (or one of whose worktrees,
//! wherever they are) holds the current folder; else `$GROVE_ENV`, set in every process grove
//! starts for an env (`grove exec NAME -- sh`, an agent).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::ctx::Ctx;
use crate::error::Fail;
use crate::state::EnvRow;
use crate::ui;

impl Ctx {
    /// The env whose folder or worktree holds `dir`. The deepest match wins, in case one env's
    /// folder sits inside another's worktree.
    pub fn env_at(&self, dir: &Path) -> Result<Option<EnvRow>> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut best: Option<(usize, EnvRow)> = None;
        for env in self.store.envs(self.ws_id)? {
            let mut roots: Vec<PathBuf> = vec![self.ws.env_dir(&env.name)];
            roots.extend(
                self.store
                    .instances(env.key)?
                    .into_iter()
                    .map(|i| i.worktree),
            );
            let depth = roots
                .iter()
                .filter(|r| dir.starts_with(r))
                .map(|r| r.components().count())
                .max();
            if let Some(d) = depth
                && best.as_ref().is_none_or(|(b, _)| d > *b)
            {
                best = Some((d, env));
            }
        }
        Ok(best.map(|(_, env)| env))
    }

    /// The env the current folder stands for (see the module docs), if any.
    pub fn env_here(&self) -> Result<Option<EnvRow>> {
        if let Ok(cwd) = std::env::current_dir()
            && let Some(env) = self.env_at(&cwd)?
        {
            return Ok(Some(env));
        }
        match std::env::var("GROVE_ENV") {
            Ok(name) if !name.is_empty() => self.store.env(self.ws_id, &name),
            _ => Ok(None),
        }
    }

    /// The env NAME names, or the one the current folder stands for. `command` is how the
    /// user calls it (`logs`), for the error when there is neither.
    pub fn require_target(&self, name: Option<&str>, command: &str) -> Result<EnvRow> {
        if let Some(name) = name {
            return self.require_env(name);
        }
        self.env_here()?
            .ok_or_else(|| self.no_target(command).into())
    }

    /// The envs of the workspace, for a hint.
    fn known_envs(&self) -> String {
        let known: Vec<String> = self
            .store
            .envs(self.ws_id)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .collect();
        if known.is_empty() {
            "this workspace has no envs yet".to_string()
        } else {
            format!("envs of this workspace: {}", known.join(", "))
        }
    }

    /// For `NAME [LAYER]` commands: inside an env, a lone word that names no env of the
    /// workspace but a layer (`is_layer`) is the LAYER of the env you are in, so `grove logs
    /// api` in a worktree means that env's `api`. Returns the env and the layer.
    pub fn require_target_layer(
        &self,
        name: Option<&str>,
        layer: Option<&str>,
        is_layer: impl Fn(&str) -> bool,
        command: &str,
    ) -> Result<(EnvRow, Option<String>)> {
        if let (Some(word), None) = (name, layer)
            && is_layer(word)
            && let Some(here) = self.env_here()?
        {
            if self
                .store
                .env(self.ws_id, &word.replace('/', "-"))?
                .is_none()
            {
                return Ok((here, Some(word.to_string())));
            }
            // Both an env and a layer: the env, as NAME always was; said, since inside an env
            // the layer was as likely meant.
            ui::warn(format!(
                "`{word}` is an env and a layer: showing env `{word}`; for the layer of this env, `grove {command} {} {word}`",
                crate::shq(&here.name)
            ));
        }
        let env = self.require_target(name, command)?;
        Ok((env, layer.map(str::to_string)))
    }

    fn no_target(&self, command: &str) -> Fail {
        let envs = self.known_envs();
        // A shell `grove exec` or an agent opened keeps its env's name after a destroy: say
        // so, rather than that no env was given.
        if let Ok(name) = std::env::var("GROVE_ENV")
            && !name.is_empty()
        {
            return Fail::new(format!(
                "no env `{name}` in this workspace: `$GROVE_ENV` names it, set when this shell or agent was started in that env, which was destroyed since or is of another workspace"
            ))
            .hint(format!("name one (`grove {command} NAME`); {envs}"));
        }
        let here = std::env::current_dir()
            .map(|d| crate::tilde(&d))
            .unwrap_or_else(|_| "the current folder".into());
        Fail::usage(format!(
            "which env? {here} is in no env's folder, and no NAME was given"
        ))
        .hint(format!(
            "name it (`grove {command} NAME`), or run it inside the env's folder; {envs}"
        ))
    }
}
