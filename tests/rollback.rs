//! All or nothing: a create that fails, is interrupted or is killed leaves nothing behind.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{TestWorkspace, group_members, list_dir, run, wait_until};

/// A workspace whose `api` layer runs `api_setup`; creates use `--from-api` so both layers
/// are made, front first.
fn ws_with_api_setup(api_setup: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let config = ws.standard_config("setup = [\"echo front setup\"]")
        + &format!("setup = [{}]\n", toml::Value::String(api_setup.into()));
    ws.write_config(&config);
    ws
}

fn assert_nothing_left(ws: &TestWorkspace) {
    assert_eq!(ws.worktrees("front"), vec![ws.repo("front")]);
    assert_eq!(ws.worktrees("api"), vec![ws.repo("api")]);
    assert_eq!(ws.branches("front"), vec!["main"]);
    assert_eq!(ws.branches("api"), vec!["main"]);
    assert!(
        ws.leased_ports().is_empty(),
        "leases: {:?}",
        ws.leased_ports()
    );
    assert!(list_dir(&ws.root.join(".grove/envs")).is_empty());
    assert!(ws.ps().is_empty());
}

#[test]
fn failing_setup_in_second_layer_rolls_everything_back() {
    let ws = ws_with_api_setup("echo boom >&2; exit 3");
    let out = ws
        .grove(&["create", "feat-01", "--from-api=main"])
        .failure(1);
    assert!(
        out.stderr
            .contains("setup command `echo boom >&2; exit 3` failed (exit 3)"),
        "{out}"
    );
    assert!(out.stderr.contains("undoing the partial create"), "{out}");
    assert!(out.stderr.contains("setup.log"), "{out}");
    assert_nothing_left(&ws);
    // The same name works once the cause is fixed.
    ws.write_config(&ws.standard_config(""));
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
}

/// Starts a create whose api setup records its pid in `marker` and then sleeps; returns the
/// grove child and the setup's pid once it is running.
fn start_slow_create(ws: &TestWorkspace, marker: &Path) -> (std::process::Child, i32) {
    let child = ws
        .cmd()
        .env("MARKER", marker)
        .args(["create", "feat-01", "--from-api=main"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(20, || std::fs::read_to_string(marker)
        .is_ok_and(|s| s.ends_with('\n'))));
    let pid: i32 = std::fs::read_to_string(marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (child, pid)
}

#[test]
fn sigint_during_slow_setup_rolls_back_and_stops_the_step() {
    let ws =
        ws_with_api_setup("echo $$ > \"$MARKER.tmp\" && mv \"$MARKER.tmp\" \"$MARKER\"; sleep 60");
    let marker = ws.tmp.path().join("setup.pid");
    let (child, setup_pid) = start_slow_create(&ws, &marker);
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // The setup step ran in its own group: all of it is gone.
    assert!(wait_until(10, || group_members(setup_pid).is_empty()));
    assert_nothing_left(&ws);
}

#[test]
fn kill_9_during_create_is_noticed_and_cleaned_by_the_next_command() {
    let ws =
        ws_with_api_setup("echo $$ > \"$MARKER.tmp\" && mv \"$MARKER.tmp\" \"$MARKER\"; sleep 60");
    let marker = ws.tmp.path().join("setup.pid");
    let (mut child, setup_pid) = start_slow_create(&ws, &marker);
    child.kill().unwrap();
    child.wait().unwrap();
    // Half-made: worktrees and branches exist right now.
    assert_eq!(ws.worktrees("api").len(), 2);

    // `ps` tells, and changes nothing: recovery is for commands that change state.
    let out = ws.grove(&["ps"]).success();
    assert!(out.stdout.contains("creating"), "{out}");
    assert!(out.stderr.contains("a create died half-way"), "{out}");
    assert_eq!(ws.worktrees("api").len(), 2);
    assert!(!group_members(setup_pid).is_empty(), "ps stopped the setup");

    // Destroying the half-made env is undoing it.
    let out = ws.grove(&["destroy", "feat-01"]).success();
    assert!(
        out.stderr.contains("env `feat-01` was left half-made"),
        "{out}"
    );
    assert!(
        out.stderr.contains("cleaned up half-made env `feat-01`"),
        "{out}"
    );
    // Its setup process did not outlive the cleanup.
    assert!(wait_until(10, || group_members(setup_pid).is_empty()));
    assert_nothing_left(&ws);
}

#[test]
fn a_git_failure_after_the_branch_was_made_rolls_back_cleanly() {
    // A failing post-checkout hook makes `git worktree add` fail after it created the branch
    // and the worktree: the rollback must remove both, and say nothing alarming.
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let hook = ws.repo("front").join(".git/hooks/post-checkout");
    std::fs::write(&hook, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ws.grove(&["create", "feat-01"]).failure(1);
    assert!(out.stderr.contains("cannot add worktree"), "{out}");
    assert!(!out.stderr.contains("kept branch"), "{out}");
    assert!(!out.stderr.contains("warning"), "{out}");
    assert_nothing_left(&ws);
}

#[test]
fn what_a_setup_step_leaves_running_is_stopped() {
    // A step that fails (and is rolled back) and one that succeeds: neither leaves its sleep.
    for (step, code) in [
        ("sleep 3141 & echo $! > \"$MARKER\"; exit 1", 1),
        ("sleep 3142 & echo $! > \"$MARKER\"", 0),
    ] {
        let ws = ws_with_api_setup(step);
        let marker = ws.tmp.path().join("step.pid");
        let out =
            run(ws
                .cmd()
                .env("MARKER", &marker)
                .args(["create", "feat-01", "--from-api=main"]));
        assert_eq!(out.code, code, "{out}");
        let pid: u32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_until(5, || !Path::new(&format!("/proc/{pid}")).exists()),
            "`{step}` left its sleep running"
        );
    }
}
