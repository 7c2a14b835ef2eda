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
