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
    let mut locks: Vec<std::fs::File> = std::fs::read_dir(ws.grove_home.join("locks"))
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
    // A destroy waits, says so, and stops waiting on Ctrl-C; another waits until the add is
    // done, then destroys.
    for interrupted in [true, false] {
        let mut child = ws
            .cmd()
            .args(["destroy", "feat-01"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Its stderr, line by line, from a thread: read with a deadline.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        let mut said = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !said.contains("waiting for another grove using the worktrees of") {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => said.push_str(&(line + "\n")),
                Err(_) => {
                    let _ = child.kill();
                    panic!("destroy never said it waits: {said}");
                }
            }
        }
        if interrupted {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .unwrap();
        } else {
            // The other grove's add completes.
            std::fs::remove_dir_all(&half).unwrap();
            locks.clear();
        }
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let rest: String = rx.try_iter().map(|l| l + "\n").collect();
        if interrupted {
            assert_eq!(status.code(), Some(130), "{said}{rest}");
            assert!(rest.contains("interrupted by SIGINT"), "{rest}");
            assert_eq!(ws.ps().len(), 1, "nothing was destroyed");
        } else {
            assert!(status.success(), "{said}{rest}");
        }
    }
    assert!(ws.ps().is_empty());
}
