//! The data-safety matrix of `grove destroy`: one case per way work can sit in an env's
//! worktree, acted out with real git. Work that only the worktree holds (commits on a detached
//! HEAD, edits hidden by `--skip-worktree` / `--assume-unchanged`, untracked files however
//! deep, a nested repository) makes destroy refuse, naming it, with nothing changed; `--force`
//! discards it and says what. What is safe elsewhere (a tag or branch holding the commits, a
//! stash, another branch, an upstream, ignored files, absent sparse files) does not block, and
//! branches whose commits are not in the base are kept.

use std::path::{Path, PathBuf};

use crate::common::{Out, TestWorkspace};

const REFUSED: &str = "env `feat-01` has work that destroy would lose; nothing was removed";

/// A workspace with env `feat-01`: `front` only, or with `api` dedicated too.
fn env(with_api: bool) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    if with_api {
        ws.grove(&["create", "feat-01", "--from-api=main"])
            .success();
    } else {
        ws.grove(&["create", "feat-01"]).success();
    }
    ws
}

fn front(ws: &TestWorkspace) -> PathBuf {
    ws.worktree("feat-01", "front")
}

/// `grove destroy feat-01` without `--force` must refuse, naming each of `lines`, and change
/// nothing that grove or git can see.
#[track_caller]
fn refused(ws: &TestWorkspace, lines: &[&str]) -> Out {
    let before = ws.snapshot(&["front", "api"]);
    let out = ws.grove(&["destroy", "feat-01"]).failure(1);
    assert!(out.stderr.contains(REFUSED), "{out}");
    for line in lines {
        assert!(out.stderr.contains(line), "missing {line:?}:\n{out}");
    }
    assert_eq!(ws.snapshot(&["front", "api"]), before, "{out}");
    assert_eq!(ws.ps().len(), 1, "the env is still there:\n{out}");
    out
}

/// `grove destroy feat-01` without `--force` must succeed and leave no env behind.
#[track_caller]
fn destroyed(ws: &TestWorkspace, args: &[&str]) -> Out {
    let mut argv = vec!["destroy", "feat-01"];
    argv.extend_from_slice(args);
    let out = ws.grove(&argv).success();
    assert!(!front(ws).exists(), "{out}");
    assert!(ws.ps().is_empty(), "{out}");
    assert_eq!(ws.worktrees("front"), vec![ws.repo("front")], "{out}");
    out
}

/// Commits `file` on a detached HEAD in `wt`; returns its full and short ids.
fn detached_commit(ws: &TestWorkspace, wt: &Path, msg: &str) -> (String, String) {
    ws.git(wt, &["checkout", "--quiet", "--detach"]);
    ws.commit(wt, "detached.txt", "detached", msg);
    (
        ws.git(wt, &["rev-parse", "HEAD"]),
        ws.git(wt, &["rev-parse", "--short", "HEAD"]),
    )
}

fn has_object(ws: &TestWorkspace, sha: &str) -> bool {
    ws.command("git")
        .arg("-C")
        .arg(ws.repo("front"))
        .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_commit_on_a_detached_head_blocks_destroy_and_force_names_it() {
    let ws = env(false);
    let wt = front(&ws);
    let (sha, short) = detached_commit(&ws, &wt, "Detached work");

    refused(
        &ws,
        &[&format!(
            "front: 1 commit(s) that no branch holds (on the worktree's detached HEAD): \
             {short} Detached work"
        )],
    );
    assert!(has_object(&ws, &sha));
    assert_eq!(ws.git(&wt, &["rev-parse", "HEAD"]), sha);

    let out = destroyed(&ws, &["--force", "--yes"]);
    assert!(
        out.stderr.contains(&format!(
            "front: discarding 1 commit(s) on the worktree's detached HEAD that no branch \
             holds: {short} Detached work"
        )),
        "{out}"
    );
}

#[test]
fn a_detached_commit_held_by_a_tag_does_not_block_destroy() {
    let ws = env(false);
    let wt = front(&ws);
    let (sha, _) = detached_commit(&ws, &wt, "Tagged work");
    ws.git(&wt, &["tag", "keep-me"]);

    let out = destroyed(&ws, &[]);
    assert!(!out.stderr.contains("discarding"), "{out}");
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "keep-me"]), sha);
}

#[test]
fn a_detached_commit_held_by_a_branch_does_not_block_destroy() {
    let ws = env(false);
    let wt = front(&ws);
    let (sha, _) = detached_commit(&ws, &wt, "Branched work");
    ws.git(&wt, &["branch", "saved"]);

    let out = destroyed(&ws, &[]);
    assert!(!out.stderr.contains("discarding"), "{out}");
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "saved"]), sha);
}

/// Flags README.md with `flag` (an `update-index` option), then edits it.
fn hidden_edit(ws: &TestWorkspace, flag: &str) {
    let wt = front(ws);
    ws.git(&wt, &["update-index", flag, "README.md"]);
    std::fs::write(wt.join("README.md"), "hidden edit\n").unwrap();
    assert_eq!(ws.git(&wt, &["status", "--porcelain"]), "", "git hides it");
}

#[track_caller]
fn hidden_edit_blocks_destroy(flag: &str) {
    let ws = env(false);
    hidden_edit(&ws, flag);
    refused(&ws, &["front: uncommitted: README.md"]);
    assert_eq!(
        std::fs::read_to_string(front(&ws).join("README.md")).unwrap(),
        "hidden edit\n"
    );
    let out = destroyed(&ws, &["--force", "--yes"]);
    assert!(
        out.stderr
            .contains("front: discarding uncommitted work: README.md"),
        "{out}"
    );
}

#[test]
fn an_edit_hidden_by_skip_worktree_blocks_destroy() {
    hidden_edit_blocks_destroy("--skip-worktree");
}

#[test]
fn an_edit_hidden_by_assume_unchanged_blocks_destroy() {
    hidden_edit_blocks_destroy("--assume-unchanged");
}

#[test]
fn a_skip_worktree_file_absent_from_disk_is_not_work() {
    // As a sparse checkout leaves files out.
    let ws = env(false);
    let wt = front(&ws);
    ws.git(&wt, &["update-index", "--skip-worktree", "README.md"]);
    std::fs::remove_file(wt.join("README.md")).unwrap();
    let out = destroyed(&ws, &[]);
    assert!(!out.stderr.contains("discarding"), "{out}");
}

#[test]
fn a_stash_survives_destroy_in_the_main_repo() {
    let ws = env(false);
    let wt = front(&ws);
    std::fs::write(wt.join("README.md"), "stashed change\n").unwrap();
    ws.git(&wt, &["stash", "--quiet"]);
    destroyed(&ws, &[]);
    let main = ws.repo("front");
    assert_ne!(ws.git(&main, &["stash", "list"]), "");
    assert!(
        ws.git(&main, &["stash", "show", "-p"])
            .contains("+stashed change")
    );
}

#[test]
fn unpushed_commits_on_a_branch_with_an_upstream_keep_the_branch() {
    let ws = env(false);
    let wt = front(&ws);
    let remote = ws.tmp.path().join("remote.git");
    ws.git(
        ws.tmp.path(),
        &["init", "--quiet", "--bare", remote.to_str().unwrap()],
    );
    ws.git(&wt, &["remote", "add", "origin", remote.to_str().unwrap()]);
    ws.git(&wt, &["push", "--quiet", "-u", "origin", "feat-01"]);
    ws.commit(&wt, "unpushed.txt", "u", "Unpushed work");
    let tip = ws.git(&wt, &["rev-parse", "HEAD"]);

    let out = destroyed(&ws, &[]);
    assert!(
        out.stderr
            .contains("kept branch `feat-01`: 1 commit(s) not in main"),
        "{out}"
    );
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "feat-01"]), tip);
}

#[test]
fn a_worktree_switched_to_another_branch_leaves_that_branch_alone() {
    let ws = env(false);
    let wt = front(&ws);
    ws.git(&wt, &["switch", "--quiet", "-c", "other"]);
    ws.commit(&wt, "other.txt", "o", "Other work");
    let tip = ws.git(&wt, &["rev-parse", "HEAD"]);

    let out = destroyed(&ws, &[]);
    assert!(
        out.stderr
            .contains("front  the worktree was on branch `other`, which stays"),
        "{out}"
    );
    assert!(out.stderr.contains("deleted branch `feat-01`"), "{out}");
    assert!(!out.stderr.contains("discarding"), "{out}");
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "other"]), tip);
    assert_eq!(ws.branches("front"), vec!["main", "other"]);
}

#[test]
fn a_commit_merged_then_reset_out_of_the_base_keeps_the_branch() {
    let ws = env(false);
    let wt = front(&ws);
    ws.commit(&wt, "a.txt", "a", "Merged, then reset away");
    let tip = ws.git(&wt, &["rev-parse", "HEAD"]);
    let main = ws.repo("front");
    ws.git(&main, &["merge", "--quiet", "--ff-only", "feat-01"]);
    ws.git(&main, &["reset", "--quiet", "--hard", "HEAD~1"]);

    let out = destroyed(&ws, &[]);
    assert!(
        out.stderr
            .contains("kept branch `feat-01`: 1 commit(s) not in main"),
        "{out}"
    );
    assert_eq!(ws.git(&main, &["rev-parse", "feat-01"]), tip);
}

#[test]
fn ignored_files_do_not_block_destroy() {
    let ws = env(false);
    let wt = front(&ws);
    std::fs::write(wt.join(".env"), "SECRET=1\n").unwrap();
    std::fs::create_dir_all(wt.join("node_modules")).unwrap();
    std::fs::write(wt.join("node_modules/x"), "dep").unwrap();
    let out = destroyed(&ws, &[]);
    assert!(!out.stderr.contains("discarding"), "{out}");
}

#[test]
fn a_deeply_nested_untracked_file_blocks_destroy_by_its_path() {
    let ws = env(false);
    let deep = front(&ws).join("dir/sub/deep.txt");
    std::fs::create_dir_all(deep.parent().unwrap()).unwrap();
    std::fs::write(&deep, "deep").unwrap();
    refused(&ws, &["front: uncommitted: dir/sub/deep.txt"]);
    assert!(deep.exists());
    let out = destroyed(&ws, &["--force", "--yes"]);
    assert!(
        out.stderr
            .contains("front: discarding uncommitted work: dir/sub/deep.txt"),
        "{out}"
    );
}

#[test]
fn a_nested_git_repository_blocks_destroy() {
    let ws = env(false);
    let nested = front(&ws).join("nested");
    std::fs::create_dir_all(&nested).unwrap();
    ws.git(&nested, &["init", "--quiet", "-b", "main"]);
    ws.commit(&nested, "inner.txt", "inner", "Nested work");
    let tip = ws.git(&nested, &["rev-parse", "HEAD"]);

    refused(&ws, &["front: uncommitted: nested/"]);
    assert_eq!(ws.git(&nested, &["rev-parse", "HEAD"]), tip);
    let out = destroyed(&ws, &["--force", "--yes"]);
    assert!(
        out.stderr
            .contains("front: discarding uncommitted work: nested/"),
        "{out}"
    );
}

#[test]
fn work_in_the_second_layer_only_blocks_the_whole_destroy() {
    let ws = env(true);
    let api = ws.worktree("feat-01", "api");
    std::fs::write(api.join("api-notes.txt"), "api work").unwrap();
    let out = refused(&ws, &["api: uncommitted: api-notes.txt"]);
    assert!(!out.stderr.contains("front:"), "{out}");
    // All or nothing: front, which had nothing to lose, was not removed either.
    assert!(front(&ws).join(".git").exists());
    assert!(api.join("api-notes.txt").exists());
    assert!(ws.branches("front").contains(&"feat-01".to_string()));
    assert!(ws.branches("api").contains(&"feat-01".to_string()));

    let out = destroyed(&ws, &["--force", "--yes"]);
    assert!(
        out.stderr
            .contains("api: discarding uncommitted work: api-notes.txt"),
        "{out}"
    );
    assert!(!api.exists());
}

#[test]
fn a_locked_worktree_is_refused_before_anything_is_removed() {
    // git refuses to remove a locked worktree: destroy must find it before it removes front's,
    // not stop half-way.
    let ws = env(true);
    let api = ws.worktree("feat-01", "api");
    ws.git(
        &ws.repo("api"),
        &[
            "worktree",
            "lock",
            "--reason",
            "on a usb disk",
            api.to_str().unwrap(),
        ],
    );
    refused(&ws, &["api: the worktree is locked (on a usb disk)"]);
    assert!(front(&ws).exists());
    let out = destroyed(&ws, &["--force", "--yes"]);
    assert!(!api.exists(), "{out}");
}

#[test]
fn force_lists_only_the_commits_no_other_ref_holds() {
    // One commit pushed, one not: `--force` loses only the unpushed one, and says so.
    let ws = env(false);
    let wt = front(&ws);
    let remote = ws.tmp.path().join("remote.git");
    ws.git(
        ws.tmp.path(),
        &["init", "--quiet", "--bare", remote.to_str().unwrap()],
    );
    ws.git(&wt, &["remote", "add", "origin", remote.to_str().unwrap()]);
    ws.commit(&wt, "p.txt", "p", "Pushed work");
    ws.git(&wt, &["push", "--quiet", "-u", "origin", "feat-01"]);
    ws.commit(&wt, "u.txt", "u", "Unpushed work");
    let out = destroyed(&ws, &["--force", "--yes"]);
    assert!(
        out.stderr
            .contains("discarding 1 commit(s) that only `feat-01` held"),
        "{out}"
    );
    assert!(out.stderr.contains("Unpushed work"), "{out}");
    assert!(!out.stderr.contains("Pushed work,"), "{out}");
}
