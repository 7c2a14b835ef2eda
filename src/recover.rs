//! Undoing half-made envs. A create journals each step before it takes it; undoing replays the
//! journal backwards. The same code serves a create that failed, a create interrupted by
//! Ctrl-C, and (from the next grove command) a create whose process was killed with -9.
//!
//! Every undo step is idempotent and careful: a worktree is removed only under the envs folder,
//! a branch is deleted only while it still points at the commit the create gave it.

use std::path::Path;

use anyhow::Result;

use crate::ctx::Ctx;
use crate::git::Repo;
use crate::state::{Action, EnvKey, Phase};
use crate::ui;

/// Looks for operations whose process is gone. An interrupted create is rolled back (there is
/// no work in it to lose: it never finished); an interrupted destroy is reported, and
/// `grove destroy` finishes it after checking again for work to keep.
pub fn unfinished(ctx: &mut Ctx) -> Result<()> {
    for env in ctx.store.unfinished(ctx.ws_id)? {
        if env.owner.is_some_and(|o| o.alive()) {
            continue;
        }
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
            }
            Phase::Destroying => ui::warn(format!(
                "env `{}` is half-destroyed: a destroy did not finish; run `grove destroy {}` to finish it",
                env.name,
                crate::shq(&env.name)
            )),
            Phase::Ready => {}
        }
    }
    Ok(())
}

/// Undoes the journal of env `key`, newest step first, then forgets the env.
pub fn rollback(ctx: &mut Ctx, key: EnvKey) -> Result<()> {
    let journal = ctx.store.journal(key)?;
    let envs_dir = ctx.ws.config.envs_dir.clone();
    for action in journal.iter().rev() {
        match action {
            Action::Worktree { repo, path } => remove_worktree(&Repo::new(repo), path, &envs_dir),
            Action::Branch { repo, name, sha } => {
                let repo = Repo::new(repo);
                let tip = repo.branch_tip(name).ok().flatten();
                if tip.as_ref() == Some(sha) {
                    let deleted = repo.delete_branch_at(name, sha).unwrap_or(false);
                    if !deleted {
                        ui::warn(format!(
                            "could not delete branch `{name}` in {}",
                            repo.dir.display()
                        ));
                    }
                } else if tip.is_some() {
                    ui::warn(format!(
                        "kept branch `{name}` in {}: it has moved since grove created it",
                        repo.dir.display()
                    ));
                }
            }
            Action::Isolated { layer, resource } => {
                let env = ctx.store.env_by_key(key)?;
                if let Some(env) = env
                    && let Err(e) = crate::isolate::drop_resource(ctx, &env, layer, resource)
                {
                    ui::warn(format!(
                        "could not drop the isolated `{layer}` ({resource}): {e:#}"
                    ));
                }
            }
            Action::Process { leader } => {
                crate::provision::stop_orphan_group(*leader, std::time::Duration::from_secs(5));
            }
            Action::EnvDir { path } => {
                if path.starts_with(&envs_dir) && path.exists() {
                    let _ = fs_err::remove_dir_all(path);
                }
            }
        }
    }
    ctx.store.delete_env(key)?;
    Ok(())
}

/// Removes a worktree grove added, even one git no longer knows or that is half-written.
fn remove_worktree(repo: &Repo, path: &Path, envs_dir: &Path) {
    if path.exists() && repo.worktree_remove(path, true).is_err() && path.starts_with(envs_dir) {
        let _ = fs_err::remove_dir_all(path);
    }
    let _ = repo.worktree_prune();
}
