//! Parallel grove processes: the store and the port registry keep them apart.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;

use crate::common::{TestWorkspace, finish};

#[test]
fn sixteen_creates_at_once() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let children: Vec<_> = (0..16)
        .map(|i| {
            let mut cmd = ws.cmd();
            cmd.args([
                "create",
                &format!("p{i:02}"),
                "--from-api=main",
                "--no-start",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        finish(child).success();
    }
    let envs = ws.ps();
    assert_eq!(envs.len(), 16);
    let mut ports = BTreeSet::new();
    for env in &envs {
        assert_eq!(env["status"], "stopped", "{env}");
        for layer in env["layers"].as_array().unwrap() {
            assert!(
                ports.insert(layer["port"].as_u64().unwrap()),
                "port leased twice: {env}"
            );
        }
    }
    assert_eq!(ports.len(), 32);
    // The lowest ports of each range, no gaps.
    let expected: BTreeSet<u64> = (0..16)
        .flat_map(|i| [u64::from(ws.front_port(i)), u64::from(ws.api_port(i))])
        .collect();
    assert_eq!(ports, expected);
    assert_eq!(ws.leased_ports().len(), 32);
    assert_eq!(ws.worktrees("front").len(), 17);
    assert_eq!(ws.worktrees("api").len(), 17);
    assert_eq!(ws.branches("api").len(), 17);
}

#[test]
fn two_creates_of_the_same_name_at_once_make_one_env() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = ws.cmd();
            cmd.args(["create", "same"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(ws.ps().len(), 1);
    assert_eq!(ws.worktrees("front").len(), 2);
}

/// While another grove adds a worktree (it holds the repository's worktree lock, and git's
/// admin folder for the new worktree is half written), a grove that lists the worktrees
/// (`destroy` does) waits for it, rather than fail on git's "failed to read …/commondir".
#[test]
fn listing_worktrees_waits_for_a_worktree_being_added() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    // What another grove's `git worktree add` looks like half-way: its lock held, an admin
    // folder whose `commondir` is made but not written yet.
    let locks: Vec<std::fs::File> = std::fs::read_dir(ws.grove_home.join("locks"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("worktrees-"))
        .map(|e| {
            let f = std::fs::File::options().write(true).open(e.path()).unwrap();
            f.lock().unwrap();
            f
        })
        .collect();
    assert_eq!(
        locks.len(),
        1,
        "the lock file of front, the one repo with a worktree"
    );
    let half = ws.repo("front").join(".git/worktrees/being-added");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("HEAD"), "ref: refs/heads/other\n").unwrap();
    std::fs::write(half.join("commondir"), "").unwrap();
    std::fs::write(
        half.join("gitdir"),
        format!("{}/being-added/.git\n", ws.tmp.path().display()),
    )
    .unwrap();
    let mut child = ws
        .cmd()
        .args(["destroy", "feat-01"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // It waits on the lock (a blocked request in /proc/locks), or it is done.
    let waiting = || {
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().any(|w| w == pid))
    };
    assert!(
        crate::common::wait_until(10, || waiting() || child.try_wait().unwrap().is_some()),
        "destroy neither waited nor finished"
    );
    // The other grove's add completes.
    std::fs::remove_dir_all(&half).unwrap();
    drop(locks);
    let out = finish(child).success();
    assert!(
        out.stderr
            .contains("waiting for another grove adding or removing a worktree of"),
        "{out}"
    );
    assert!(ws.ps().is_empty());
}
