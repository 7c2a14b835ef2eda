//! Data safety: destroy never loses uncommitted work or unmerged commits without `--force`,
//! and never deletes a branch it did not create.

use crate::common::TestWorkspace;

#[test]
fn destroy_refuses_over_uncommitted_changes_and_untracked_files() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    let front = ws.worktree("feat-01", "front");
    std::fs::write(front.join("README.md"), "changed\n").unwrap();
    std::fs::write(ws.worktree("feat-01", "api").join("new file.txt"), "new\n").unwrap();
    // Ignored files are not work: they do not block.
    std::fs::write(front.join(".env"), "X=1\n").unwrap();
    let before = ws.snapshot(&["front", "api"]);

    let out = ws.grove(&["destroy", "feat-01"]).failure(1);
    assert!(
        out.stderr
            .contains("env `feat-01` has work that destroy would lose; nothing was removed"),
        "{out}"
    );
    assert!(
        out.stderr.contains("front: uncommitted: README.md"),
        "{out}"
    );
    assert!(
        out.stderr.contains("api: uncommitted: new file.txt"),
        "{out}"
    );
    assert!(
        out.stderr.contains("hint:") && out.stderr.contains("--force"),
        "{out}"
    );
    assert_eq!(ws.snapshot(&["front", "api"]), before);
    assert_eq!(
        std::fs::read_to_string(front.join("README.md")).unwrap(),
        "changed\n"
    );
    assert_eq!(ws.ps()[0]["status"], "stopped");

    let out = ws
        .grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(
        out.stderr
            .contains("discarding uncommitted work: README.md"),
        "{out}"
    );
    assert!(!front.exists());
    assert!(ws.ps().is_empty());
}

#[test]
fn destroy_keeps_a_branch_with_unmerged_commits_and_force_deletes_it() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    ws.commit(&wt, "a.txt", "a", "First");
    ws.commit(&wt, "b.txt", "b", "Second");
    let tip = ws.git(&wt, &["rev-parse", "HEAD"]);

    let out = ws.grove(&["destroy", "feat-01"]).success();
    assert!(
        out.stderr
            .contains("kept branch `feat-01`: 2 commit(s) not in main"),
        "{out}"
    );
    assert!(!wt.exists());
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "feat-01"]), tip);

    // The kept branch is reused by the next env of that name, and then --force deletes it...
    let out = ws.grove(&["create", "feat-01"]).success();
    assert!(out.stderr.contains("existing branch"), "{out}");
    let out = ws
        .grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    // ...no: a branch that existed before the env is never deleted, even with --force.
    assert!(
        out.stderr
            .contains("kept branch `feat-01`: it existed before the env"),
        "{out}"
    );
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "feat-01"]), tip);
}

#[test]
fn force_deletes_unmerged_branch_grove_created_and_lists_the_commits() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    ws.commit(&wt, "a.txt", "a", "Precious work");
    let out = ws
        .grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(
        out.stderr
            .contains("discarding 1 commit(s) that only `feat-01` held"),
        "{out}"
    );
    assert!(out.stderr.contains("Precious work"), "{out}");
    assert!(!ws.branches("front").contains(&"feat-01".to_string()));
}

#[test]
fn merged_or_pushed_branches_are_deleted() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "merged"]).success();
    ws.grove(&["create", "pushed"]).success();
    let merged = ws.worktree("merged", "front");
    ws.commit(&merged, "m.txt", "m", "Merged work");
    ws.git(
        &ws.repo("front"),
        &["merge", "--quiet", "--ff-only", "merged"],
    );

    let remote = ws.tmp.path().join("remote.git");
    ws.git(
        ws.tmp.path(),
        &["init", "--quiet", "--bare", remote.to_str().unwrap()],
    );
    let pushed = ws.worktree("pushed", "front");
    ws.commit(&pushed, "p.txt", "p", "Pushed work");
    ws.git(
        &pushed,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    ws.git(&pushed, &["push", "--quiet", "-u", "origin", "pushed"]);

    let out = ws.grove(&["destroy", "merged"]).success();
    assert!(out.stderr.contains("deleted branch `merged`"), "{out}");
    let out = ws.grove(&["destroy", "pushed"]).success();
    assert!(out.stderr.contains("deleted branch `pushed`"), "{out}");
    assert_eq!(ws.branches("front"), vec!["main"]);
}

#[test]
fn destroy_works_after_the_worktree_was_deleted_by_hand() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    std::fs::remove_dir_all(ws.worktree("feat-01", "front")).unwrap();
    let out = ws.grove(&["ps"]).success();
    assert!(out.stdout.contains("broken"), "{out}");
    assert!(
        out.stderr
            .contains("hint: feat-01: worktree of `front` is missing"),
        "{out}"
    );
    assert_eq!(ws.ps()[0]["status"], "broken");
    ws.grove(&["destroy", "feat-01"]).success();
    assert_eq!(ws.worktrees("front"), vec![ws.repo("front")]);
    assert_eq!(ws.branches("front"), vec!["main"]);
    assert!(ws.leased_ports().is_empty());
}

#[test]
fn a_folder_that_lost_its_git_file_is_not_thrown_away_without_force() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let wt = ws.worktree("feat-01", "front");
    std::fs::remove_file(wt.join(".git")).unwrap();
    std::fs::write(wt.join("notes.txt"), "mine").unwrap();
    let out = ws.grove(&["destroy", "feat-01"]).failure(1);
    assert!(out.stderr.contains("no longer a git worktree"), "{out}");
    assert!(wt.join("notes.txt").exists());
    ws.grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(!wt.exists());
}

#[test]
fn branch_checked_out_elsewhere_is_refused_naming_the_worktree() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let other = ws.tmp.path().join("elsewhere");
    ws.git(
        &ws.repo("front"),
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            "busy",
            other.to_str().unwrap(),
        ],
    );
    let before = ws.snapshot(&["front", "api"]);
    let out = ws.grove(&["create", "busy"]).failure(1);
    assert!(
        out.stderr
            .contains("branch `busy` of layer `front` is checked out at"),
        "{out}"
    );
    assert!(out.stderr.contains("elsewhere"), "{out}");
    assert_eq!(ws.snapshot(&["front", "api"]), before);
}

#[test]
fn destroy_without_a_tty_never_prompts() {
    // stdin is /dev/null in the harness: the destroy must proceed, not wait for an answer.
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let out = ws.grove(&["destroy", "feat-01"]).success();
    assert!(!out.stderr.contains("proceed?"), "{out}");
}

/// Runs `grove destroy feat-01` on a pseudo-terminal (util-linux `script`), answering `answer`.
fn destroy_on_a_tty(ws: &TestWorkspace, answer: &str) -> crate::common::Out {
    use std::io::Write;
    let grove = crate::common::grove_bin();
    let mut child = ws
        .command("script")
        .args(["-qec", &format!("{grove} destroy feat-01"), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    crate::common::finish(child)
}

#[test]
fn destroy_on_a_terminal_asks_first() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let out = destroy_on_a_tty(&ws, "n\n");
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("front: remove worktree, delete branch `feat-01`"),
        "{out}"
    );
    assert!(out.stdout.contains("proceed? [y/N]"), "{out}");
    assert!(out.stdout.contains("nothing was removed"), "{out}");
    assert_eq!(ws.ps().len(), 1);
    let out = destroy_on_a_tty(&ws, "y\n");
    assert_eq!(out.code, 0, "{out}");
    assert!(ws.ps().is_empty());
}

#[test]
fn a_base_named_like_the_branch_never_passes_for_it() {
    // feat/login exists only on the remote; the env's branch takes the same name from it. At
    // destroy, `feat/login` now also names the env's own branch: its new commit must not look
    // merged into itself.
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let upstream = ws.init_repo("upstream");
    ws.git(&upstream, &["branch", "feat/login"]);
    ws.git(
        &ws.repo("front"),
        &["remote", "add", "origin", upstream.to_str().unwrap()],
    );
    ws.git(&ws.repo("front"), &["fetch", "--quiet", "origin"]);
    ws.grove(&["create", "feat/login", "--base", "feat/login"])
        .success();
    let wt = ws.worktree("feat-login", "front");
    ws.commit(&wt, "mine.txt", "unpushed", "My unpushed work");
    let tip = ws.git(&wt, &["rev-parse", "HEAD"]);
    let out = ws.grove(&["destroy", "feat/login"]).success();
    assert!(
        out.stderr
            .contains("kept branch `feat/login`: 1 commit(s) not in feat/login"),
        "{out}"
    );
    assert_eq!(ws.git(&ws.repo("front"), &["rev-parse", "feat/login"]), tip);
    // And a base that is the env's own existing branch is refused outright.
    ws.git(&ws.repo("front"), &["branch", "solo"]);
    let out = ws.grove(&["create", "solo", "--base", "solo"]).failure(1);
    assert!(out.stderr.contains("is the env's own branch"), "{out}");
}

#[test]
fn files_in_the_env_folder_are_work_too() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    let notes = ws.env_dir("feat-01").join("NOTES.md");
    std::fs::write(&notes, "an agent's notes").unwrap();
    let out = ws.grove(&["destroy", "feat-01"]).failure(1);
    assert!(
        out.stderr.contains("env folder") && out.stderr.contains("NOTES.md"),
        "{out}"
    );
    assert!(notes.exists());
    assert_eq!(ws.worktrees("front").len(), 2, "nothing was removed");
    let out = ws
        .grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(
        out.stderr.contains("discarding from") && out.stderr.contains("NOTES.md"),
        "{out}"
    );
    assert!(!ws.env_dir("feat-01").exists());
}

#[test]
fn a_branch_checked_out_elsewhere_is_never_deleted() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01"]).success();
    // The user moved the worktree and kept working there.
    let moved = ws.tmp.path().join("moved-worktree");
    ws.git(
        &ws.repo("front"),
        &[
            "worktree",
            "move",
            ws.worktree("feat-01", "front").to_str().unwrap(),
            moved.to_str().unwrap(),
        ],
    );
    std::fs::write(moved.join("README.md"), "edited in the moved worktree\n").unwrap();
    let out = ws
        .grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(
        out.stderr
            .contains("kept branch `feat-01`: it is checked out at"),
        "{out}"
    );
    assert!(ws.branches("front").contains(&"feat-01".to_string()));
    assert_eq!(
        std::fs::read_to_string(moved.join("README.md")).unwrap(),
        "edited in the moved worktree\n"
    );
    assert_eq!(
        ws.git(&moved, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "feat-01"
    );
}
