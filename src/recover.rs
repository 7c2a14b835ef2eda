//! Undoing half-made envs. A create journals each step's intent before it takes it; undoing
//! replays the journal backwards. The same code serves a create that failed, a create
//! interrupted by Ctrl-C, and (from the next command that changes state, or `grove doctor`) a
//! create whose process was killed with -9.
//!
//! The journal says what *may* exist; every undo step checks what does, and removes only what
//! grove provably made: a worktree only under the envs folder, a branch only while it still
//! points where the create put it and its reflog says grove made it for this env, a database
//! only if its comment names this env. Every step is idempotent, so a crash during the undo is
//! undone by the next one.
//!
//! Processes come first: the env's tagged processes (a setup step, a `psql` still creating a
//! database) are waited for or stopped before anything they may be making is undone.
//!
//! Recovery runs from the commands that change state and from `doctor`, never as a side effect
//! of a read-only command, an agent hook or the supervisor.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::ctx::Ctx;
use crate::git::Repo;
use crate::proc::Role;
use crate::state::{Action, EnvKey, EnvRow, Phase};
use crate::{failpoint, sweep, ui};

/// How long an undo waits for an isolate command (`CREATE DATABASE`) to finish on its own.
const ISOLATE_WAIT: Duration = Duration::from_secs(30);

/// The reflog message of a branch grove creates for an env: recovery and `doctor` read it to
/// tell grove's branches from the user's.
pub fn branch_marker(env: &EnvRow) -> String {
    format!(
        "grove: created for env {} [grove-env:{}]",
        env.name, env.token
    )
}

/// The env token a branch's first reflog message names, if grove made it.
pub fn marker_token(origin: &str) -> Option<&str> {
    let rest = origin.split("[grove-env:").nth(1)?;
    rest.strip_suffix(']').filter(|t| !t.is_empty())
}

/// Envs of the workspace in the middle of an operation whose process is gone.
pub fn abandoned(ctx: &Ctx) -> Result<Vec<EnvRow>> {
    Ok(ctx
        .store
        .unfinished(ctx.ws_id)?
        .into_iter()
        .filter(|e| !e.owner.is_some_and(|o| o.alive()))
        .collect())
}

/// Cleans up after operations that died: a half-made env is rolled back (there is no work in
/// it to lose: it never finished); a half-destroyed one is reported, and `grove destroy`
/// finishes it after checking again for work to keep.
/// Returns the names of the envs it rolled back.
pub fn unfinished(ctx: &mut Ctx) -> Result<Vec<String>> {
    crate::pool::recover(ctx)?;
    crate::gate::recover(ctx)?;
    crate::land::recover(ctx)?;
    let mut cleaned = Vec::new();
    for env in abandoned(ctx)? {
        match env.phase {
            Phase::Creating => {
                // Exactly one of several grove processes noticing this gets to clean it up.
                if !ctx.store.claim(env.key, env.owner, ctx.me)? {
                    continue;
                }
                let who = env
                    .owner
                    .map_or(String::new(), |o| format!(" (pid {})", o.pid));
                ui::warn(format!(
                    "env `{}` was left half-made by a create that did not finish{who}; cleaning it up",
                    env.name
                ));
                rollback(ctx, env.key)?;
                ui::info(format!("cleaned up half-made env `{}`", env.name));
                cleaned.push(env.name);
            }
            Phase::Destroying => ui::warn(format!(
                "env `{}` is half-destroyed: a destroy did not finish; run `grove destroy {}` to finish it",
                env.name,
                crate::shq(&env.name)
            )),
            Phase::Ready => {}
        }
    }
    Ok(cleaned)
}

/// Undoes the journal of env `key`, newest step first, then forgets the env.
pub fn rollback(ctx: &mut Ctx, key: EnvKey) -> Result<()> {
    let Some(env) = ctx.store.env_by_key(key)? else {
        return Ok(());
    };
    let journal = ctx.store.journal(key)?;
    // What a step started may still be at work. An isolate command is let finish (a database
    // half-created is worse than one made and dropped); everything else is stopped.
    if journal
        .iter()
        .any(|a| matches!(a, Action::Processes | Action::Isolated { .. }))
    {
        sweep::wait_for(&env.token, Role::Isolate, ISOLATE_WAIT);
    }
    sweep::stop(
        &env.name,
        &env.token,
        sweep::Scope::All,
        Duration::from_secs(5),
    );
    failpoint::hit("rollback:after-processes");
    let envs_dir = ctx.ws.config.envs_dir.clone();
    for action in journal.iter().rev() {
        match action {
            Action::Worktree { repo, path } => remove_worktree(&Repo::new(repo), path, &envs_dir),
            Action::Branch { repo, name, sha } => undo_branch(&Repo::new(repo), name, sha, &env),
            Action::Isolated { layer, resource } => {
                if let Err(e) = crate::isolate::undo(ctx, &env, layer, resource) {
                    ui::warn(format!(
                        "could not drop the isolated `{layer}` ({resource}): {e:#}"
                    ));
                }
            }
            Action::Process { leader } => {
                crate::provision::stop_orphan_group(*leader, Duration::from_secs(5));
            }
            // Only a land journals these, and a land is recovered by `land::recover`.
            Action::Processes | Action::BaseMove { .. } | Action::Landed => {}
            Action::EnvDir { path } => {
                if path.starts_with(&envs_dir) && path.exists() {
                    let _ = fs_err::remove_dir_all(path);
                }
            }
        }
        failpoint::hit("rollback:after-step");
    }
    failpoint::hit("rollback:before-forget");
    ctx.store.delete_env(key)?;
    Ok(())
}

/// Deletes a branch the create journaled, if it is there, still where the create put it, and
/// made by grove for this env: a branch of the same name someone else made in the meantime
/// is never what an undo deletes.
fn undo_branch(repo: &Repo, name: &str, sha: &str, env: &EnvRow) {
    let tip = repo.branch_tip(name).ok().flatten();
    let Some(tip) = tip else { return };
    let ours = repo
        .branch_origin(name)
        .ok()
        .flatten()
        .is_some_and(|o| marker_token(&o) == Some(env.token.as_str()));
    // Made at the base's commit: if the base was deleted since, it is the only ref left
    // holding the base's commits, and it stays.
    let sole_holder = || {
        repo.unreferenced(&[sha], &[format!("refs/heads/{name}")], 1)
            .map_or(true, |l| !l.is_empty())
    };
    let why = if !ours {
        "grove did not create it"
    } else if tip != sha {
        "it has moved since grove created it"
    } else if sole_holder() {
        "no other ref holds its commits (was its base deleted?)"
    } else {
        ""
    };
    if !why.is_empty() {
        ui::warn(format!(
            "kept branch `{name}` in {}: {why}",
            repo.dir.display()
        ));
        return;
    }
    if !repo.delete_branch_at(name, sha).unwrap_or(false) {
        ui::warn(format!(
            "could not delete branch `{name}` in {}",
            repo.dir.display()
        ));
    }
}

/// Removes a worktree grove added, even one git no longer knows or that is half-written.
pub(crate) fn remove_worktree(repo: &Repo, path: &Path, envs_dir: &Path) {
    if path.exists() && repo.worktree_remove(path, true).is_err() && path.starts_with(envs_dir) {
        let _ = fs_err::remove_dir_all(path);
    }
    let _ = repo.worktree_prune();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_markers_name_their_env() {
        let env = EnvRow {
            key: 1,
            name: "feat/x".into(),
            ident: "feat_x".into(),
            token: "0123abcd".into(),
            phase: Phase::Creating,
            owner: None,
            created_at: 0,
            engine: None,
            engine_host: None,
        };
        assert_eq!(marker_token(&branch_marker(&env)), Some("0123abcd"));
        assert_eq!(marker_token("branch: Created from main"), None);
        assert_eq!(marker_token("grove: created for env x [grove-env:]"), None);
    }
}
