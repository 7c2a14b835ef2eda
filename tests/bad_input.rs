//! Every bad input: a clear error, exit 1 (2 for usage), and nothing changed.

use crate::common::{TestWorkspace, list_dir};

const REPOS: &[&str] = &["front", "api"];

/// Runs grove with `args`, expects exit `code` and `needle` on stderr, and checks that git and
/// the store are exactly as before.
#[track_caller]
fn refused(ws: &TestWorkspace, args: &[&str], code: i32, needle: &str) -> String {
    let before = ws.snapshot(REPOS);
    let out = ws.grove(args).failure(code);
    assert!(
        out.stderr.contains(needle),
        "expected {needle:?} in:\n{out}"
    );
    assert!(
        out.stderr.starts_with("error: ") || out.stderr.contains("\nerror: "),
        "{out}"
    );
    assert_eq!(ws.snapshot(REPOS), before, "state changed after {args:?}");
    out.stderr
}

#[test]
fn bad_env_names() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.grove(&["create", "taken"]).success();
    let long = "x".repeat(65);
    let cases: &[(&str, &str)] = &[
        ("", "it is empty"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\u{1b}b", "control"),
        ("a..b", "contains `..`"),
        (&long, "longer than 64"),
        ("feat~1", "git does not accept it"),
        ("feat:x", "git does not accept it"),
        ("x.lock", "git does not accept it"),
        ("/x", "git does not accept it"),
        ("taken", "env `taken` already exists"),
    ];
    for (name, why) in cases {
        refused(&ws, &["create", name], 1, why);
    }
    // A leading dash is an option to clap; after `--` it reaches grove's own check.
    refused(&ws, &["create", "--", "-x"], 1, "starts with `-`");
    assert_eq!(ws.ps().len(), 1);
}

#[test]
fn hostile_branch_names_are_never_run_as_shell() {
    let ws = TestWorkspace::with_repos(REPOS);
    std::fs::write(ws.repo("front").join(".env"), "A=1\n").unwrap();
    std::fs::create_dir(ws.repo("front").join("node_modules")).unwrap();
    ws.write_config(&ws.standard_config(
        "copy = [\".env\", \"node_modules\"]\ndotenv = \".env.grove\"\nsetup = [\"printf '%s' \\\"$GROVE_BRANCH\\\" > node_modules/branch.txt\"]\nenv.BRANCH = \"{{ branch }}\"",
    ));
    for name in [
        "x$(touch${IFS}pwned)",
        "y;touch${IFS}pwned",
        "z`touch${IFS}pwned`",
    ] {
        ws.grove(&["create", name]).success();
        let env_name = name.replace('/', "-");
        let wt = ws.worktree(&env_name, "front");
        assert_eq!(
            std::fs::read_to_string(wt.join("node_modules/branch.txt")).unwrap(),
            name
        );
        let dotenv = std::fs::read_to_string(wt.join(".env.grove")).unwrap();
        assert!(dotenv.contains(&format!("BRANCH='{name}'")), "{dotenv}");
        ws.grove(&["exec", &env_name, "--", "true"]).success();
        ws.grove(&["destroy", &env_name]).success();
    }
    let pwned: Vec<_> = walk(&ws.root)
        .into_iter()
        .filter(|p| p.ends_with("pwned"))
        .collect();
    assert!(pwned.is_empty(), "a branch name ran as code: {pwned:?}");
    // A hostile *base* is looked up, never run.
    refused(
        &ws,
        &["create", "b", "--from-front=$(touch pwned)"],
        1,
        "base `$(touch pwned)` of layer `front` not found",
    );
    refused(
        &ws,
        &["create", "b", "--base=--output=/tmp/x"],
        1,
        "not found",
    );
    assert!(walk(&ws.root).iter().all(|p| !p.ends_with("pwned")));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !p.ends_with(".git") {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn malformed_config_names_line_and_column() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.write_config("[workspace]\ndefault_layers = [\"front\"\n");
    let err = refused(&ws, &["ps"], 1, "grove.toml:2:");
    assert!(
        err.contains(&*ws.root.join("grove.toml").to_string_lossy()),
        "{err}"
    );

    ws.write_config(&ws.standard_config("redy = { http = \"/\" }"));
    let err = refused(
        &ws,
        &["create", "a"],
        1,
        "grove.toml:9:1: unknown key `redy`",
    );
    assert!(err.contains("redy = { http"), "the line is shown: {err}");
    assert!(err.contains("hint:"), "{err}");

    ws.write_config(&ws.standard_config("ports = 3001"));
    refused(&ws, &["ps"], 1, "duplicate key");

    ws.write_config(&ws.standard_config("setup = \"npm ci\""));
    refused(
        &ws,
        &["ps"],
        1,
        "invalid type: string \"npm ci\", expected a sequence",
    );

    ws.write_config(&ws.standard_config("env.X = \"{{ layers.nope.url }}\""));
    refused(&ws, &["ps"], 1, "template names unknown layer `nope`");

    let overlapping = ws
        .standard_config("")
        .replace(&ws.ports.range(40, 40), &ws.ports.range(10, 40));
    ws.write_config(&overlapping);
    refused(&ws, &["ps"], 1, "overlap those of `front`");

    ws.write_config(
        &ws.standard_config("")
            .replace(&ws.ports.range(0, 40), "9000-8000"),
    );
    refused(&ws, &["ps"], 1, "bad port range");

    ws.write_config("[workspace]\ndefault_layers = [\"nope\"]\n[layers.front]\nrepo = \"front\"\n");
    refused(
        &ws,
        &["ps"],
        1,
        "grove.toml:2:19: default layer `nope` is not defined",
    );
}

#[test]
fn a_broken_config_is_reported_even_for_generated_flags() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.write_config("[layers.front\nrepo = 1\n");
    // Without a config, `--from-front` cannot be known: the config error is what matters.
    refused(
        &ws,
        &["create", "a", "--from-front=main"],
        1,
        "grove.toml:1:",
    );
}

#[test]
fn missing_or_non_git_repo() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.write_config(
        &ws.standard_config("")
            .replace("repo = \"api\"", "repo = \"apii\""),
    );
    refused(
        &ws,
        &["create", "a"],
        1,
        "repo `apii` of layer `api` not found at",
    );
    std::fs::create_dir(ws.root.join("plain")).unwrap();
    ws.write_config(
        &ws.standard_config("")
            .replace("repo = \"api\"", "repo = \"plain\""),
    );
    refused(
        &ws,
        &["create", "a"],
        1,
        "repo `plain` of layer `api` is not a git repository",
    );
}

#[test]
fn unknown_layer_is_a_usage_error_listing_the_known_ones() {
    let ws = TestWorkspace::with_repos(REPOS);
    let err = refused(
        &ws,
        &["create", "a", "--from-bogus=main"],
        2,
        "unknown layer `bogus`",
    );
    assert!(err.contains("front, api"), "{err}");
    let err = refused(
        &ws,
        &["create", "a", "--from", "bogus=main"],
        2,
        "unknown layer `bogus`",
    );
    assert!(err.contains("front, api"), "{err}");
    refused(
        &ws,
        &["create", "a", "--from", "nonsense"],
        2,
        "is not LAYER=BASE",
    );
}

#[test]
fn missing_base() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.grove(&["create", "a"]).success();
    let before_leases = ws.leased_ports();
    refused(
        &ws,
        &["create", "b", "--from-api=no-such-branch"],
        1,
        "base `no-such-branch` of layer `api` not found",
    );
    refused(
        &ws,
        &["create", "b", "--base", "nope"],
        1,
        "base `nope` of layer `front` not found",
    );
    assert_eq!(ws.leased_ports(), before_leases);
}

#[test]
fn port_range_exhausted_names_the_range_and_holders() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.write_config(
        &ws.standard_config("")
            .replace(&ws.ports.range(0, 40), &ws.ports.range(0, 2)),
    );
    ws.grove(&["create", "a"]).success();
    ws.grove(&["create", "b"]).success();
    let err = refused(&ws, &["create", "c"], 1, "no free port for layer `front`");
    assert!(err.contains(&ws.ports.range(0, 2)), "{err}");
    assert!(err.contains("a (front), b (front)"), "{err}");
    assert!(list_dir(&ws.root.join(".grove/envs")) == vec!["a", "b"]);
}

#[test]
fn grove_home_not_writable() {
    let ws = TestWorkspace::with_repos(REPOS);
    let blocker = ws.tmp.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let out = crate::common::run(
        ws.cmd()
            .env("GROVE_HOME", blocker.join("grove"))
            .args(["create", "a"]),
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("for grove's state"), "{out}");
    assert!(out.stderr.contains("hint: GROVE_HOME"), "{out}");
    assert_eq!(ws.worktrees("front"), vec![ws.repo("front")]);
}

#[test]
fn no_workspace_found() {
    let ws = TestWorkspace::empty();
    let out = ws.grove(&["ps"]).failure(1);
    assert!(out.stderr.contains("no grove.toml in"), "{out}");
    assert!(out.stderr.contains("grove init"), "{out}");
    let out = ws.grove(&["--workspace", "/nonexistent", "ps"]).failure(1);
    assert!(
        out.stderr.contains("no grove.toml in /nonexistent"),
        "{out}"
    );
}

#[test]
fn unknown_env() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.grove(&["create", "real"]).success();
    let err = refused(&ws, &["destroy", "ghost"], 1, "no env `ghost`");
    assert!(err.contains("envs of this workspace: real"), "{err}");
    refused(
        &ws,
        &["path", "real", "api"],
        1,
        "env `real` has no worktree for layer `api`",
    );
}

#[test]
fn env_folder_in_the_way() {
    let ws = TestWorkspace::with_repos(REPOS);
    std::fs::create_dir_all(ws.env_dir("a")).unwrap();
    std::fs::write(ws.env_dir("a").join("keep.txt"), "mine").unwrap();
    refused(
        &ws,
        &["create", "a"],
        1,
        "already exists, but no env `a` does",
    );
    assert!(ws.env_dir("a").join("keep.txt").exists());
}

#[test]
fn tracked_dotenv_file_is_refused() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.write_config(&ws.standard_config("dotenv = \"README.md\""));
    refused(&ws, &["create", "a"], 1, "is a file git tracks");
}

#[test]
fn template_with_no_url_in_this_env() {
    let ws = TestWorkspace::with_repos(REPOS);
    let config = ws.standard_config("").replace(
        &format!("shared_url = \"http://127.0.0.1:{}\"\n", ws.ports.port(99)),
        "",
    );
    ws.write_config(&config);
    let err = refused(
        &ws,
        &["create", "a"],
        1,
        "reads `layers.api.url`, but this env has no `api`",
    );
    assert!(err.contains("--from-api=BASE"), "{err}");
    ws.grove(&["create", "a", "--from-api=main"]).success();
}

#[test]
fn hints_quote_hostile_names_for_the_shell() {
    let ws = TestWorkspace::with_repos(REPOS);
    let name = "x;touch${IFS}pwned";
    ws.grove(&["create", name]).success();
    std::fs::write(ws.worktree(name, "front").join("dirty.txt"), "x").unwrap();
    let err = refused(&ws, &["destroy", name], 1, "work that destroy would lose");
    assert!(
        err.contains("`grove destroy 'x;touch${IFS}pwned' --force`"),
        "{err}"
    );
}
