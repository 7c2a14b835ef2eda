//! The crash suite. grove is killed (an abort: as abrupt as kill -9, no rollback, no
//! destructor) at every named step of `create`, `destroy`, `down`, `up`, the supervisor,
//! isolation and the undo of a half-made env (`GROVE_CRASH_AT`, debug builds); then the next
//! command runs, and the invariants are audited from the store, git, the disk and `/proc`:
//!
//! - the worktrees and branches of each repo are exactly the store's (no user-owned ones here);
//! - every port lease belongs to an env's layer, every env folder and isolated mark to an env;
//! - no journal is left, no env is half-made or half-destroyed;
//! - every process carrying this test's env tokens belongs to a live env part (a supervised
//!   server, an agent), none to a finished command;
//! - and once the env is destroyed, nothing at all is left: no process, worktree, branch,
//!   lease, folder, mark or log.
//!
//! `every_failpoint_is_exercised` fails when grove gains a failpoint this suite does not crash.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use crate::common::{Postgres, Redis, TestWorkspace, list_dir, wait_until};

const REPOS: &[&str] = &["front", "api"];
const CREATE: &[&str] = &["create", "feat-01", "--from-api=main", "--isolate-events"];

/// Two layers running supervised test servers (front forks a daemon that leaves its session),
/// with `copy`, `dotenv` and a `setup` step (slow on demand), and an infra layer isolated by
/// a recipe that leaves a mark (a folder per env).
fn workspace() -> TestWorkspace {
    workspace_with("")
}

/// [`workspace`] whose front keeps a warm pool of one worktree, prepared by a step that
/// leaves a marker in an ignored folder, like an install (slow on demand, with a child of
/// its own).
fn pool_workspace() -> TestWorkspace {
    workspace_with(
        r#"pool = 1
prepare = ["if [ -n \"$SLOW_PREPARE\" ]; then sleep 60 & wait; fi; mkdir -p node_modules; echo ok > node_modules/.prepared"]
prepare_key = ["README.md"]"#,
    )
}

fn workspace_with(front_extra: &str) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(REPOS);
    std::fs::write(ws.repo("front").join(".env"), "SECRET=1\n").unwrap();
    let front = format!(
        r#"copy = [".env"]
dotenv = ".env.grove"
setup = ["if [ -n \"$SLOW_SETUP\" ]; then sleep 60; fi; echo set up"]
env.DAEMON = "1"
{front_extra}"#
    );
    let mut toml = ws.servers_config(&front, "");
    toml.push_str(&format!(
        "\n[layers.events]\nshared_url = \"kafka://127.0.0.1:9\"\n\
         isolate.create = \"if [ -n \\\"$SLOW_ISOLATE\\\" ]; then sleep 2; fi; mkdir -p {m}/$GROVE_ENV_ID\"\n\
         isolate.destroy = \"rm -rf {m}/$GROVE_ENV_ID\"\n",
        m = marks(&ws).display()
    ));
    ws.write_config(&toml);
    ws
}

fn marks(ws: &TestWorkspace) -> PathBuf {
    ws.tmp.path().join("marks")
}

/// Runs grove with `args`, told to die at `failpoint`; checks that it did (or, for a failpoint
/// of the supervisor, that the supervisor did and the command said so).
#[track_caller]
fn crash(ws: &TestWorkspace, failpoint: &str, args: &[&str], env: &[(&str, &str)]) {
    let mut cmd = ws.cmd();
    cmd.env("GROVE_CRASH_AT", failpoint).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if failpoint.starts_with("supervise:") {
        assert_eq!(out.status.code(), Some(1), "{failpoint}: {stderr}");
        assert!(stderr.contains("supervisor"), "{failpoint}: {stderr}");
    } else {
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{failpoint} was not hit by `grove {}`: {:?}\n{stderr}",
            args.join(" "),
            out.status
        );
    }
}

/// The store's rows this suite audits, read with SQL (not through grove).
struct Rows {
    journal: usize,
    /// name → (phase, token, key)
    envs: HashMap<String, (String, String, i64)>,
    /// (env key, layer, worktree, branch, repo)
    instances: Vec<(i64, String, PathBuf, String, PathBuf)>,
    /// (port, env key, layer)
    leases: Vec<(u16, i64, String)>,
    /// (env key, layer, resource)
    isolated: Vec<(i64, String, String)>,
    /// env key → supervisor pid
    supervisors: HashMap<i64, i32>,
    /// (path, phase) of the warm pool's entries
    pool: Vec<(PathBuf, String)>,
    /// env key → (phase, owner pid) of its review gate
    gates: HashMap<i64, (String, Option<i32>)>,
}

fn rows(ws: &TestWorkspace) -> Rows {
    let conn = rusqlite::Connection::open(ws.grove_home.join("state.db")).unwrap();
    let all = |sql: &str| -> Vec<Vec<rusqlite::types::Value>> {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let text = |v: &rusqlite::types::Value| match v {
        rusqlite::types::Value::Text(t) => t.clone(),
        other => format!("{other:?}"),
    };
    let int = |v: &rusqlite::types::Value| match v {
        rusqlite::types::Value::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    };
    Rows {
        pool: all("SELECT path, phase FROM pool")
            .iter()
            .map(|r| (PathBuf::from(text(&r[0])), text(&r[1])))
            .collect(),
        journal: all("SELECT id FROM journal").len(),
        envs: all("SELECT name, phase, token, id FROM envs")
            .iter()
            .map(|r| (text(&r[0]), (text(&r[1]), text(&r[2]), int(&r[3]))))
            .collect(),
        instances: all("SELECT env, layer, worktree, branch, repo FROM instances")
            .iter()
            .map(|r| {
                (
                    int(&r[0]),
                    text(&r[1]),
                    PathBuf::from(text(&r[2])),
                    text(&r[3]),
                    PathBuf::from(text(&r[4])),
                )
            })
            .collect(),
        leases: all("SELECT port, env, layer FROM port_leases")
            .iter()
            .map(|r| (u16::try_from(int(&r[0])).unwrap(), int(&r[1]), text(&r[2])))
            .collect(),
        isolated: all("SELECT env, layer, resource FROM isolated")
            .iter()
            .map(|r| (int(&r[0]), text(&r[1]), text(&r[2])))
            .collect(),
        gates: all("SELECT env, phase, owner_pid FROM gates")
            .iter()
            .map(|r| {
                let pid = match &r[2] {
                    rusqlite::types::Value::Integer(p) => Some(i32::try_from(*p).unwrap()),
                    _ => None,
                };
                (int(&r[0]), (text(&r[1]), pid))
            })
            .collect(),
        supervisors: all("SELECT env, pid FROM supervisors")
            .iter()
            .map(|r| (int(&r[0]), i32::try_from(int(&r[1])).unwrap()))
            .collect(),
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

/// The invariants that must hold whenever no grove command is running. Returns violations.
fn violations(ws: &TestWorkspace) -> Vec<String> {
    let r = rows(ws);
    let mut v = Vec::new();
    if r.journal > 0 {
        v.push(format!("{} journal entries left", r.journal));
    }
    for (name, (phase, _, _)) in &r.envs {
        if phase != "ready" {
            v.push(format!("env {name} is {phase}"));
        }
    }
    let envs_dir = ws.root.join(".grove/envs");
    let pool_dir = envs_dir.join(".pool");
    // The pool: only whole entries, each a worktree of git's with its `prepare` done, and
    // nothing else in the pool's folder.
    for (path, phase) in &r.pool {
        if phase != "ready" {
            v.push(format!("pool entry {} is {phase}", path.display()));
        }
        if !path.join("node_modules/.prepared").is_file() {
            v.push(format!("pool entry {} is not prepared", path.display()));
        }
    }
    let entries: BTreeSet<PathBuf> = r.pool.iter().map(|p| p.0.clone()).collect();
    let in_git: BTreeSet<PathBuf> = REPOS
        .iter()
        .flat_map(|repo| ws.worktrees(repo))
        .filter(|p| p.starts_with(&pool_dir))
        .collect();
    let on_disk: BTreeSet<PathBuf> = list_dir(&pool_dir)
        .iter()
        .map(|n| pool_dir.join(n))
        .collect();
    if entries != in_git || entries != on_disk {
        v.push(format!(
            "pool entries {entries:?}, git's {in_git:?}, on disk {on_disk:?}"
        ));
    }
    for repo in REPOS {
        let known: BTreeSet<PathBuf> = r
            .instances
            .iter()
            .filter(|i| i.4 == ws.repo(repo))
            .map(|i| i.2.clone())
            .collect();
        let git: BTreeSet<PathBuf> = ws
            .worktrees(repo)
            .into_iter()
            .filter(|p| p.starts_with(&envs_dir) && !p.starts_with(&pool_dir))
            .collect();
        if known != git {
            v.push(format!("{repo}: store worktrees {known:?}, git's {git:?}"));
        }
        for wt in &known {
            if !wt.join(".git").is_file() {
                v.push(format!("{repo}: worktree {} missing on disk", wt.display()));
            }
        }
        let branches: BTreeSet<String> = ws
            .branches(repo)
            .into_iter()
            .filter(|b| b != "main")
            .collect();
        let expected: BTreeSet<String> = r
            .instances
            .iter()
            .filter(|i| i.4 == ws.repo(repo))
            .map(|i| i.3.clone())
            .collect();
        if branches != expected {
            v.push(format!(
                "{repo}: branches {branches:?}, store's {expected:?}"
            ));
        }
    }
    for (port, env, layer) in &r.leases {
        // An isolated infra service in a container is published on a leased port too.
        if !r.instances.iter().any(|i| i.0 == *env && &i.1 == layer)
            && !r.isolated.iter().any(|i| i.0 == *env && &i.1 == layer)
        {
            v.push(format!(
                "lease {port} of env {env} has neither a `{layer}` instance nor an isolated `{layer}`"
            ));
        }
    }
    let folders: BTreeSet<String> = list_dir(&envs_dir)
        .into_iter()
        .filter(|f| f != ".pool")
        .collect();
    let names: BTreeSet<String> = r.envs.keys().cloned().collect();
    if folders != names {
        v.push(format!("env folders {folders:?}, envs {names:?}"));
    }
    let made: BTreeSet<String> = list_dir(&marks(ws)).into_iter().collect();
    let recorded: BTreeSet<String> = r
        .isolated
        .iter()
        .filter(|i| i.1 == "events")
        .map(|i| i.2.clone())
        .collect();
    if made != recorded {
        v.push(format!("isolated marks {made:?}, store's {recorded:?}"));
    }
    for (key, (phase, owner)) in &r.gates {
        if phase == "running" && !owner.is_some_and(alive) {
            v.push(format!(
                "the gate of env {key} is running, its process gone"
            ));
        }
    }
    let by_token: HashMap<&str, i64> = r.envs.values().map(|(_, t, k)| (t.as_str(), *k)).collect();
    for (pid, tag) in ws.tagged_processes() {
        // `<home>.<token>:<role>…`
        let (head, rest) = tag.split_once(':').unwrap_or((&tag, ""));
        let token = head.split_once('.').map_or(head, |(_, t)| t);
        let role = rest.split([':', '@']).next().unwrap_or("");
        let Some(key) = by_token.get(token) else {
            v.push(format!("pid {pid} ({tag}) belongs to no env"));
            continue;
        };
        let supervised = r.supervisors.get(key).is_some_and(|p| alive(*p));
        let ok = match role {
            "server" | "probe" => supervised,
            "supervisor" => r.supervisors.get(key) == Some(&pid),
            "agent" => true,
            "gate" => r
                .gates
                .get(key)
                .is_some_and(|(phase, owner)| phase == "running" && owner.is_some_and(alive)),
            _ => false,
        };
        if !ok {
            v.push(format!("pid {pid} ({tag}) left running"));
        }
    }
    v
}

#[track_caller]
fn assert_consistent(ws: &TestWorkspace, when: &str) {
    let v = violations(ws);
    assert!(v.is_empty(), "{when}: {v:#?}");
}

/// Nothing at all is left of any env.
#[track_caller]
fn assert_nothing_left(ws: &TestWorkspace, when: &str) {
    // Stopped processes may take a moment to be reaped by their parent.
    wait_until(10, || ws.tagged_processes().is_empty());
    assert_consistent(ws, when);
    let r = rows(ws);
    assert!(r.envs.is_empty(), "{when}: envs {:?}", r.envs.keys());
    assert!(r.leases.is_empty(), "{when}: leases {:?}", r.leases);
    for repo in REPOS {
        assert_eq!(ws.branches(repo), vec!["main"], "{when}");
        assert_eq!(ws.worktrees(repo), vec![ws.repo(repo)], "{when}");
    }
    assert!(
        ws.tagged_processes().is_empty(),
        "{when}: {:?}",
        ws.tagged_processes()
    );
    assert!(list_dir(&marks(ws)).is_empty(), "{when}");
}

#[track_caller]
fn grove_ok(ws: &TestWorkspace, args: &[&str]) {
    ws.grove(args).success();
}

/// Crashes `create` at `failpoint`; the retry (which first undoes the half-made env) works.
fn crash_create(failpoint: &str) {
    let ws = workspace();
    let env: &[(&str, &str)] = match failpoint {
        "create:during-setup" => &[("SLOW_SETUP", "1")],
        "isolate:during-create" => &[("SLOW_ISOLATE", "1")],
        _ => &[],
    };
    crash(&ws, failpoint, CREATE, env);
    if failpoint == "isolate:during-create" {
        // The window is real: the recipe still runs, its mark not yet made, grove gone.
        assert!(
            !ws.tagged_processes().is_empty(),
            "the isolate recipe had already ended"
        );
        assert!(list_dir(&marks(&ws)).is_empty());
    }
    if matches!(failpoint, "create:after-finish" | "create:after-supervisor") {
        // The env was whole: it is used, not remade.
        grove_ok(&ws, &["up", "feat-01"]);
    } else {
        grove_ok(&ws, CREATE);
    }
    assert_consistent(&ws, &format!("after {failpoint} and the next command"));
    grove_ok(&ws, &["destroy", "feat-01"]);
    assert_nothing_left(&ws, &format!("{failpoint}, then destroy"));
}

/// Crashes the undo of a half-made env at `failpoint`; the next command finishes the undo.
fn crash_rollback(failpoint: &str) {
    let ws = workspace();
    crash(&ws, "create:after-setup", CREATE, &[]);
    crash(&ws, failpoint, CREATE, &[]);
    grove_ok(&ws, CREATE);
    assert_consistent(&ws, &format!("after {failpoint} and the next command"));
    grove_ok(&ws, &["destroy", "feat-01"]);
    assert_nothing_left(&ws, &format!("{failpoint}, then destroy"));
}

/// Crashes `destroy` at `failpoint`; running it again finishes it.
fn crash_destroy(failpoint: &str) {
    let ws = workspace();
    grove_ok(&ws, CREATE);
    crash(&ws, failpoint, &["destroy", "feat-01"], &[]);
    let out = ws.grove(&["destroy", "feat-01"]).success();
    assert!(out.stderr.contains("destroyed env `feat-01`"), "{out}");
    assert_nothing_left(&ws, &format!("{failpoint}, then destroy again"));
}

/// Crashes `down` at `failpoint` (with a `grove exec` leftover running too); running it again
/// stops everything, and the env starts again.
fn crash_down(failpoint: &str) {
    let ws = workspace();
    grove_ok(&ws, CREATE);
    grove_ok(
        &ws,
        &[
            "exec",
            "feat-01",
            "--",
            "sh",
            "-c",
            "sleep 300 >/dev/null 2>&1 &",
        ],
    );
    crash(&ws, failpoint, &["down", "feat-01"], &[]);
    grove_ok(&ws, &["down", "feat-01"]);
    assert!(
        wait_until(10, || ws.tagged_processes().is_empty()),
        "{failpoint}: left running after down: {:?}",
        ws.tagged_processes()
    );
    assert_consistent(&ws, &format!("after {failpoint} and down"));
    grove_ok(&ws, &["up", "feat-01"]);
    grove_ok(&ws, &["destroy", "feat-01"]);
    assert_nothing_left(&ws, &format!("{failpoint}, up, destroy"));
}

/// Crashes `up` (or the supervisor it starts) at `failpoint`; `up` again works.
fn crash_up(failpoint: &str) {
    let ws = workspace();
    grove_ok(
        &ws,
        &[
            "create",
            "feat-01",
            "--from-api=main",
            "--isolate-events",
            "--no-start",
        ],
    );
    crash(&ws, failpoint, &["up", "feat-01"], &[]);
    grove_ok(&ws, &["up", "feat-01"]);
    assert_consistent(&ws, &format!("after {failpoint} and up"));
    let env = &ws.ps()[0];
    assert_eq!(env["status"], "running", "{env}");
    grove_ok(&ws, &["destroy", "feat-01"]);
    assert_nothing_left(&ws, &format!("{failpoint}, up, destroy"));
}

/// What the recipe's prepare step wrote into an env's `front` worktree.
fn prepared_in(ws: &TestWorkspace, env: &str) -> String {
    std::fs::read_to_string(ws.worktree(env, "front").join("node_modules/.prepared")).unwrap()
}

/// The pool filler in the background (after a create) is done.
fn filler_done(ws: &TestWorkspace) {
    assert!(
        wait_until(60, || ws
            .grove(&["pool", "status", "--json"])
            .success()
            .json()["filler"]
            .is_null()),
        "the pool filler never finished"
    );
}

/// Crashes the pool filler at `failpoint` (a `prepare` step running, for `during`); the next
/// command removes the half-made entry and its processes, and a create never gets it: the
/// worktree it claims is whole.
fn crash_pool(failpoint: &str) {
    let ws = pool_workspace();
    let slow: &[(&str, &str)] = if failpoint == "pool:during-prepare" {
        &[("SLOW_PREPARE", "1")]
    } else {
        &[]
    };
    crash(&ws, failpoint, &["pool", "fill"], slow);
    let out = ws.grove(&["pool", "fill"]).success();
    if failpoint != "pool:after-ready" {
        assert!(
            out.stderr.contains("left half-prepared"),
            "{failpoint}: {out}"
        );
    }
    assert_consistent(&ws, &format!("after {failpoint} and pool fill"));
    let made = ws.grove(&["create", "feat-01", "--json"]).success().json();
    assert_eq!(made["made"]["layers"][0]["pool"], "claimed", "{made}");
    assert!(
        ws.worktree("feat-01", "front")
            .join("node_modules/.prepared")
            .is_file()
    );
    filler_done(&ws);
    assert_consistent(&ws, &format!("after {failpoint}, fill and create"));
    grove_ok(&ws, &["destroy", "feat-01"]);
    grove_ok(&ws, &["pool", "drain"]);
    assert_nothing_left(&ws, &format!("{failpoint}, create, destroy, drain"));
    assert!(list_dir(&ws.root.join(".grove/envs/.pool")).is_empty());
}

/// Crashes a create while it takes a worktree from the pool; the retry works, and the
/// entry it was taking is gone (moved into the env and undone with it, or removed).
fn crash_claim(failpoint: &str) {
    let ws = pool_workspace();
    grove_ok(&ws, &["pool", "fill"]);
    crash(&ws, failpoint, &["create", "feat-01"], &[]);
    grove_ok(&ws, &["create", "feat-01"]);
    filler_done(&ws);
    assert_consistent(&ws, &format!("after {failpoint} and the next create"));
    grove_ok(&ws, &["destroy", "feat-01"]);
    grove_ok(&ws, &["pool", "drain"]);
    assert_nothing_left(&ws, &format!("{failpoint}, create, destroy, drain"));
}

/// Crashes a create, then the filler, while each removes pool entries prepared with an older
/// `prepare`: the next command removes what was left, and no stale entry is ever handed out.
fn crash_stale(failpoint: &str) {
    let ws = pool_workspace();
    let prepared = |v: &str| {
        let toml = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap();
        let now = toml.replace("echo ok >", &format!("echo {v} >"));
        let now = now.replace("echo v1 >", &format!("echo {v} >"));
        ws.write_config(&now);
    };
    grove_ok(&ws, &["pool", "fill"]);
    prepared("v1");
    crash(&ws, failpoint, &["create", "feat-01"], &[]);
    let out = ws.grove(&["create", "feat-01", "--json"]).success();
    assert!(out.stderr.contains("left half-claimed"), "{out}");
    assert!(out.json()["made"]["layers"][0]["pool"].is_null(), "{out}");
    assert_eq!(prepared_in(&ws, "feat-01"), "v1\n");
    filler_done(&ws);
    assert_consistent(
        &ws,
        &format!("after {failpoint} in create and the next create"),
    );
    prepared("v2");
    crash(&ws, failpoint, &["pool", "fill"], &[]);
    let out = ws.grove(&["pool", "fill"]).success();
    assert!(out.stderr.contains("left half-claimed"), "{out}");
    assert_consistent(&ws, &format!("after {failpoint} in fill and the next fill"));
    grove_ok(&ws, &["destroy", "feat-01"]);
    let made = ws.grove(&["create", "feat-02", "--json"]).success().json();
    assert_eq!(made["made"]["layers"][0]["pool"], "claimed", "{made}");
    assert_eq!(prepared_in(&ws, "feat-02"), "v2\n");
    filler_done(&ws);
    grove_ok(&ws, &["destroy", "feat-02"]);
    grove_ok(&ws, &["pool", "drain"]);
    assert_nothing_left(&ws, &format!("{failpoint}, create, fill, destroy, drain"));
}

/// [`workspace`] with a gate: a check on front, and a reviewer that approves (after a minute
/// with a child of its own, on demand).
fn gate_workspace() -> TestWorkspace {
    let ws = workspace_with("check = [\"true\"]");
    let reviewer = ws.tmp.path().join("reviewer.sh");
    std::fs::write(
        &reviewer,
        "if [ -n \"$SLOW_REVIEW\" ]; then sleep 60 & wait; fi\n\
         echo '{\"verdict\": \"approve\"}' > \"$GROVE_VERDICT\"\n",
    )
    .unwrap();
    let toml = std::fs::read_to_string(ws.root.join("grove.toml")).unwrap()
        + &format!("\n[review]\ncommand = \"sh {}\"\n", reviewer.display());
    ws.write_config(&toml);
    ws
}

/// Crashes the review gate at `failpoint`: run by hand, or (`gate:after-request`) asked for
/// when the agent says it is done. The next `grove gate` closes the dead run, stops what it
/// left running (a reviewer with its child) and runs the gate to the end.
fn crash_gate(failpoint: &str) {
    let ws = gate_workspace();
    grove_ok(&ws, CREATE);
    if failpoint == "gate:after-request" {
        grove_ok(&ws, &["agent", "feat-01", "--command", "sleep 300"]);
        crash(
            &ws,
            failpoint,
            &["agent-status", "--env", "feat-01", "done"],
            &[],
        );
    } else {
        let slow: &[(&str, &str)] = if failpoint == "gate:during-review" {
            &[("SLOW_REVIEW", "1")]
        } else {
            &[]
        };
        crash(&ws, failpoint, &["gate", "feat-01"], slow);
    }
    let out = ws.grove(&["gate", "feat-01"]).success();
    assert!(out.stderr.contains("approved"), "{failpoint}: {out}");
    assert_consistent(&ws, &format!("after {failpoint} and the next gate"));
    grove_ok(&ws, &["destroy", "feat-01", "--force", "--yes"]);
    assert_nothing_left(&ws, &format!("{failpoint}, gate, destroy"));
}

/// Crashes `grove feedback` right after it queued the message: the message is kept (the queue
/// is its journal) and later ones go on after it.
fn crash_feedback(failpoint: &str) {
    let ws = workspace();
    grove_ok(&ws, CREATE);
    crash(
        &ws,
        failpoint,
        &["feedback", "feat-01", "fix the header"],
        &[],
    );
    grove_ok(&ws, &["feedback", "feat-01", "and the footer"]);
    let list = ws
        .grove(&["feedback", "feat-01", "--list", "--json"])
        .success()
        .json();
    let texts: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["fix the header", "and the footer"], "{list:#}");
    assert_consistent(&ws, &format!("after {failpoint} and the next feedback"));
    grove_ok(&ws, &["destroy", "feat-01"]);
    assert_nothing_left(&ws, &format!("{failpoint}, feedback, destroy"));
}

/// Crashes `land` at `failpoint` with both bases moved on since the env left them (so a land
/// makes merge commits and updates the main checkouts); `doctor --fix` then puts every base
/// back, both checkouts with it, unless the land had passed its point of no return; landing
/// again lands and leaves nothing of the env.
fn crash_land(failpoint: &str) {
    let ws = workspace();
    grove_ok(&ws, CREATE);
    for repo in REPOS {
        ws.commit(
            &ws.worktree("feat-01", repo),
            "feature.txt",
            "f\n",
            "Feature",
        );
        ws.commit(&ws.repo(repo), "other.txt", "o\n", "Other");
    }
    let mains = || -> Vec<String> {
        REPOS
            .iter()
            .map(|r| ws.git(&ws.repo(r), &["rev-parse", "main"]))
            .collect()
    };
    let before = mains();
    if failpoint == "land:rollback-step" {
        crash(&ws, "land:after-checkout", &["land", "feat-01"], &[]);
        crash(&ws, failpoint, &["land", "feat-01"], &[]);
    } else {
        crash(&ws, failpoint, &["land", "feat-01"], &[]);
    }
    let out = ws.grove(&["doctor", "--fix"]);
    assert!(
        !out.stdout.contains("half-landed") || out.stdout.contains("fixed"),
        "{out}"
    );
    if failpoint == "land:after-landed" {
        assert_ne!(mains(), before, "{failpoint}: the land stands");
    } else {
        assert_eq!(mains(), before, "{failpoint}: every base is put back");
    }
    for repo in REPOS {
        assert_eq!(
            ws.git(&ws.repo(repo), &["status", "--porcelain"]),
            "",
            "{failpoint}: the main checkout of {repo} matches its branch"
        );
    }
    assert_consistent(&ws, &format!("after {failpoint} and doctor --fix"));
    grove_ok(&ws, &["land", "feat-01"]);
    for repo in REPOS {
        assert_eq!(ws.git(&ws.repo(repo), &["show", "main:feature.txt"]), "f");
        assert!(ws.repo(repo).join("feature.txt").is_file());
    }
    assert_nothing_left(&ws, &format!("{failpoint}, then land again"));
}

/// Every failpoint, with the scenario that crashes there.
macro_rules! crash_tests {
    ($($name:ident: $fp:literal => $scenario:ident;)*) => {
        /// The failpoints this suite crashes at.
        pub const CRASHED: &[&str] = &[$($fp),*];
        $(
            #[test]
            fn $name() {
                $scenario($fp);
            }
        )*
    };
}

crash_tests! {
    create_after_insert: "create:after-insert" => crash_create;
    create_after_envdir: "create:after-envdir" => crash_create;
    create_after_lease: "create:after-lease" => crash_create;
    create_before_branch: "create:before-branch" => crash_create;
    create_after_branch: "create:after-branch" => crash_create;
    create_before_worktree: "create:before-worktree" => crash_create;
    create_after_claim: "create:after-claim" => crash_claim;
    create_after_move: "create:after-move" => crash_claim;
    create_after_worktree: "create:after-worktree" => crash_create;
    create_after_instance: "create:after-instance" => crash_create;
    create_after_copy: "create:after-copy" => crash_create;
    create_after_dotenv: "create:after-dotenv" => crash_create;
    create_during_setup: "create:during-setup" => crash_create;
    create_after_setup: "create:after-setup" => crash_create;
    create_after_finish: "create:after-finish" => crash_create;
    create_after_supervisor: "create:after-supervisor" => crash_create;
    isolate_before_create: "isolate:before-create" => crash_create;
    isolate_during_create: "isolate:during-create" => crash_create;
    isolate_after_create: "isolate:after-create" => crash_create;
    isolate_after_record: "isolate:after-record" => crash_create;
    pool_after_insert: "pool:after-insert" => crash_pool;
    pool_after_worktree: "pool:after-worktree" => crash_pool;
    pool_after_copy: "pool:after-copy" => crash_pool;
    pool_during_prepare: "pool:during-prepare" => crash_pool;
    pool_after_ready: "pool:after-ready" => crash_pool;
    pool_after_claim_stale: "pool:after-claim-stale" => crash_stale;
    rollback_after_processes: "rollback:after-processes" => crash_rollback;
    rollback_after_step: "rollback:after-step" => crash_rollback;
    rollback_before_forget: "rollback:before-forget" => crash_rollback;
    destroy_after_begin: "destroy:after-begin" => crash_destroy;
    destroy_after_stop: "destroy:after-stop" => crash_destroy;
    destroy_after_worktree: "destroy:after-worktree" => crash_destroy;
    destroy_after_branch: "destroy:after-branch" => crash_destroy;
    destroy_after_layer: "destroy:after-layer" => crash_destroy;
    destroy_during_isolate: "destroy:during-isolate" => crash_destroy;
    destroy_after_isolated: "destroy:after-isolated" => crash_destroy;
    destroy_after_envdir: "destroy:after-envdir" => crash_destroy;
    down_after_agent: "down:after-agent" => crash_down;
    down_after_supervisor: "down:after-supervisor" => crash_down;
    down_after_sweep: "down:after-sweep" => crash_down;
    up_after_sweep: "up:after-sweep" => crash_up;
    up_after_spawn: "up:after-spawn" => crash_up;
    supervise_after_register: "supervise:after-register" => crash_up;
    supervise_after_start: "supervise:after-start" => crash_up;
    gate_after_request: "gate:after-request" => crash_gate;
    gate_after_claim: "gate:after-claim" => crash_gate;
    gate_after_checks: "gate:after-checks" => crash_gate;
    gate_during_review: "gate:during-review" => crash_gate;
    feedback_after_queue: "feedback:after-queue" => crash_feedback;
    land_after_claim: "land:after-claim" => crash_land;
    land_after_journal: "land:after-journal" => crash_land;
    land_after_move: "land:after-move" => crash_land;
    land_after_checkout: "land:after-checkout" => crash_land;
    land_after_landed: "land:after-landed" => crash_land;
    land_rollback_step: "land:rollback-step" => crash_land;
    supervise_after_network: "supervise:after-network" => crash_compose;
    destroy_after_compose_down: "destroy:after-compose-down" => crash_compose;
}

/// A compose service `service` in `repo`'s `compose.yaml`: busybox httpd serving the
/// worktree's `www` on container port `port`.
fn compose_repo(
    ws: &TestWorkspace,
    d: &crate::common::Docker,
    repo: &str,
    service: &str,
    port: u16,
) {
    let dir = ws.repo(repo);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    ws.commit(&dir, "www/index.html", &format!("{repo}\n"), "Page");
    ws.commit(
        &dir,
        "compose.yaml",
        &format!(
            "services:\n  {service}:\n    image: {}\n    command: [\"httpd\", \"-f\", \"-p\", \"{port}\", \"-h\", \"/www\"]\n    volumes: [\"./www:/www\"]\n",
            d.busybox()
        ),
        "Compose file",
    );
}

/// [`REPOS`] as two compose layers on the test's Docker engine, front (`web`, 8080) and api
/// (`api`, 8081): two compose parts, so each env has a network of its own where they meet
/// (a workspace with one compose part makes none, and would leave `supervise:after-network`
/// with nothing to recover).
fn compose_workspace(d: &crate::common::Docker) -> TestWorkspace {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.use_docker(d);
    compose_repo(&ws, d, "front", "web", 8080);
    compose_repo(&ws, d, "api", "api", 8081);
    let mut toml = ws.standard_config(
        "compose = { service = \"web\", port = 8080 }\nready = { http = \"/index.html\" }",
    );
    // The standard config ends with the api layer's table.
    toml.push_str(
        "compose = { service = \"api\", port = 8081 }\nready = { http = \"/index.html\" }\n",
    );
    ws.write_config(&toml);
    ws
}

/// The env's own network on the engine (labelled with its token, but with no layer: the
/// layers' project networks carry theirs).
fn env_networks(d: &crate::common::Docker, token: &str) -> Vec<String> {
    d.cli(&[
        "network",
        "ls",
        "--filter",
        &format!("label=dev.grove.token={token}"),
        "--format",
        "{{.Name}} {{.Label \"dev.grove.layer\"}}",
    ])
    .stdout
    .lines()
    .filter(|l| l.split_whitespace().nth(1).is_none())
    .map(|l| l.trim().to_string())
    .collect()
}

/// A compose env crashed at `failpoint` (grove's own, or one of create, the supervisor,
/// down and destroy met by a compose layer), in a workspace of its own.
fn crash_compose(failpoint: &str) {
    let Some(d) = crate::common::docker(&format!("crash::compose {failpoint}"), false) else {
        return;
    };
    crash_compose_in(&compose_workspace(&d), &d, failpoint);
}

/// A compose env of `ws` (from [`compose_workspace`], with no env) crashed at `failpoint`;
/// the next command recovers (both layers serve, front reaches api by its name on the env's
/// network), and once the env is destroyed the engine holds nothing with its label: no
/// container, network, volume or image. Leaves `ws` without an env, for the next failpoint.
fn crash_compose_in(ws: &TestWorkspace, d: &crate::common::Docker, failpoint: &str) {
    let create = ["create", "feat-01", "--from-api=main"];
    let served = |layer: &str| {
        let env = &ws.ps()[0];
        let port = crate::common::layer(env, layer)["port"].as_u64().unwrap();
        crate::common::http_get(u16::try_from(port).unwrap(), "/index.html").map(|r| r.0)
    };
    let running = |token: &str| {
        d.cli(&[
            "ps",
            "--quiet",
            "--filter",
            &format!("label=dev.grove.token={token}"),
        ])
        .stdout
        .split_whitespace()
        .count()
    };
    match failpoint {
        "supervise:after-network" | "supervise:after-start" | "create:after-supervisor" => {
            crash(ws, failpoint, &create, &[]);
            if failpoint == "supervise:after-network" {
                // The window this failpoint is for: the env's network made, no `compose up`.
                let token = ws.env_token("feat-01");
                assert_eq!(
                    env_networks(d, &token).len(),
                    1,
                    "{failpoint}: the env's network exists at the crash"
                );
                assert_eq!(running(&token), 0, "{failpoint}: no container yet");
            }
            // The env was whole (a dead supervisor is said and the env kept): `up` starts it.
            grove_ok(ws, &["up", "feat-01"]);
        }
        "up:after-spawn" | "supervise:after-register" => {
            let no_start = [&create[..], &["--no-start"]].concat();
            grove_ok(ws, &no_start);
            crash(ws, failpoint, &["up", "feat-01"], &[]);
            grove_ok(ws, &["up", "feat-01"]);
        }
        "down:after-supervisor" | "down:after-sweep" => {
            grove_ok(ws, &create);
            crash(ws, failpoint, &["down", "feat-01"], &[]);
            grove_ok(ws, &["down", "feat-01"]);
            assert_eq!(running(&ws.env_token("feat-01")), 0, "{failpoint}: stopped");
            grove_ok(ws, &["up", "feat-01"]);
        }
        _ => {
            grove_ok(ws, &create);
            crash(ws, failpoint, &["destroy", "feat-01"], &[]);
        }
    }
    let token = ws.env_token("feat-01");
    if !failpoint.starts_with("destroy:") {
        for layer in ["front", "api"] {
            assert_eq!(served(layer), Some(200), "{failpoint}: {layer}");
        }
        assert_eq!(running(&token), 2, "{failpoint}: a container per layer");
        assert_eq!(env_networks(d, &token).len(), 1, "{failpoint}");
        let reached = fetched_by_front(ws, "http://api:8081/index.html");
        assert_eq!(reached.stdout, "api\n", "{failpoint}: api by its name");
        assert_consistent(ws, &format!("after {failpoint} and the next command"));
    }
    // For a crashed destroy, this is the next command, which finishes it.
    grove_ok(ws, &["destroy", "feat-01"]);
    assert_nothing_left(ws, &format!("{failpoint}, then destroy"));
    assert_eq!(
        d.labelled(&format!("dev.grove.token={token}")),
        Vec::<String>::new(),
        "{failpoint}: left on the engine"
    );
}

/// Failpoints of create, up, the supervisor, down and destroy that a compose layer meets
/// with work of its own on the engine (a `compose up` started, containers to stop or
/// remove), one after the other in one workspace.
#[test]
fn compose_layers_recover_from_the_shared_failpoints() {
    let Some(d) = crate::common::docker(
        "crash::compose_layers_recover_from_the_shared_failpoints",
        false,
    ) else {
        return;
    };
    let ws = compose_workspace(&d);
    for fp in [
        "create:after-supervisor",
        "up:after-spawn",
        "supervise:after-register",
        "supervise:after-start",
        "down:after-supervisor",
        "down:after-sweep",
        "destroy:after-begin",
        "destroy:after-stop",
        "destroy:after-layer",
    ] {
        crash_compose_in(&ws, &d, fp);
    }
}

#[test]
fn every_failpoint_is_exercised() {
    let out = crate::common::run(
        std::process::Command::new(crate::common::grove_bin()).arg("__failpoints"),
    );
    let listed: BTreeSet<&str> = out.stdout.lines().collect();
    let crashed: BTreeSet<&str> = CRASHED.iter().copied().collect();
    assert!(!listed.is_empty(), "{out}");
    assert_eq!(
        listed, crashed,
        "failpoints of grove vs. those this suite crashes at"
    );
}

/// The isolation failpoints again, with real databases: a PostgreSQL database made from a
/// template and a Redis index. After each crash and the retry, every database of the env is
/// the store's; a database of the same name made by someone else is never dropped.
fn crash_isolated_databases(kind: &str) {
    let ws = TestWorkspace::with_repos(REPOS);
    let pg = Postgres::start(ws.ports.port(90));
    let redis = Redis::start(ws.ports.port(91));
    let mut toml = ws.standard_config("");
    toml.push_str(&format!(
        "\n[layers.db]\nshared_url = \"{}\"\nisolate = {{ kind = \"postgres\", template = \"app\" }}\n\
         \n[layers.cache]\nshared_url = \"{}\"\nisolate = {{ kind = \"redis\" }}\n",
        pg.url("app"),
        redis.url(0)
    ));
    ws.write_config(&toml);
    // Someone's own data, which no crash or cleanup may touch.
    pg.psql("postgres", "CREATE DATABASE mine");
    redis.cli(5, &["SET", "user-key", "precious"]);
    let flag = format!("--isolate-{kind}");
    let create = ["create", "feat-01", flag.as_str()];
    let dbs = || -> BTreeSet<String> {
        pg.databases()
            .into_iter()
            .filter(|d| d.starts_with("app_"))
            .collect()
    };
    let marked = || -> Vec<u32> {
        (1..=15)
            .filter(|d| !redis.cli(*d, &["GET", "__grove_env__"]).is_empty())
            .collect()
    };
    // Redis is spoken to directly: only psql is a child grove can die in the middle of.
    let during: &[&str] = if kind == "db" {
        &["isolate:during-create"]
    } else {
        &[]
    };
    // A psql slow to start: grove dies while `CREATE DATABASE` is still to come, and the
    // orphaned psql makes the database after grove is gone (as observed on a loaded machine).
    let slow_path = slow_psql(&ws);
    for &fp in [
        "isolate:before-create",
        "isolate:after-create",
        "isolate:after-record",
    ]
    .iter()
    .chain(during)
    {
        if fp == "isolate:during-create" {
            crash(&ws, fp, &create, &[("PATH", slow_path.as_str())]);
            assert!(!ws.tagged_processes().is_empty(), "psql had already ended");
        } else {
            crash(&ws, fp, &create, &[]);
        }
        ws.grove(&create).success();
        let r = rows(&ws);
        let recorded: Vec<&str> = r.isolated.iter().map(|i| i.2.as_str()).collect();
        match kind {
            "db" => assert_eq!(dbs(), BTreeSet::from(["app_feat_01".to_string()]), "{fp}"),
            _ => assert_eq!(marked().len(), 1, "{fp}: marked {:?}", marked()),
        }
        assert_eq!(recorded.len(), 1, "{fp}: {recorded:?}");
        assert_consistent(&ws, fp);
        ws.grove(&["destroy", "feat-01"]).success();
        assert!(dbs().is_empty(), "{fp}: {:?}", dbs());
        assert!(marked().is_empty(), "{fp}: {:?}", marked());
    }
    assert!(pg.databases().contains(&"mine".to_string()));
    assert_eq!(redis.cli(5, &["GET", "user-key"]), "precious");
}

/// A PATH whose `psql` waits 2 s before running the real one.
fn slow_psql(ws: &TestWorkspace) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let real = std::env::split_paths(&path)
        .map(|d| d.join("psql"))
        .find(|p| p.is_file())
        .expect("psql is on PATH");
    let dir = ws.tmp.path().join("slow-psql");
    std::fs::create_dir_all(&dir).unwrap();
    let shim = dir.join("psql");
    std::fs::write(
        &shim,
        format!("#!/bin/sh\nsleep 2\nexec '{}' \"$@\"\n", real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = std::path::Path::new(crate::common::grove_bin())
        .parent()
        .unwrap();
    format!("{}:{}:{path}", dir.display(), bin.display())
}

#[test]
fn isolate_failpoints_with_a_postgres_database() {
    crash_isolated_databases("db");
}

#[test]
fn isolate_failpoints_with_a_redis_index() {
    crash_isolated_databases("cache");
}

/// What the crash suite and the hostile-input suite cover, printed on every run (nextest shows
/// this test's output: see `.config/nextest.toml`) and quoted in the README.
#[test]
// Printing is this test's purpose: nextest shows it on every run (see .config/nextest.toml).
#[allow(clippy::print_stdout)]
fn suite_summary() {
    let out = crate::common::run(
        std::process::Command::new(crate::common::grove_bin()).arg("__failpoints"),
    );
    let listed = out.stdout.lines().count();
    let commands: BTreeSet<&str> = CRASHED.iter().filter_map(|f| f.split(':').next()).collect();
    let summary = format!(
        "crash suite: {} failpoints in {} ({}), each crashed then audited; hostile inputs: {}",
        CRASHED.len(),
        commands.len(),
        commands.iter().copied().collect::<Vec<_>>().join(", "),
        crate::hostile::hostile_input_count()
    );
    println!("{summary}");
    assert_eq!(listed, CRASHED.len(), "{summary}");
    // The README quotes these numbers: they must not drift from what the suite runs.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for quoted in [
        format!("each of its {} failpoints", CRASHED.len()),
        format!("{} hostile inputs", crate::hostile::hostile_input_count()),
    ] {
        assert!(
            readme.contains(&quoted),
            "README.md does not say \"{quoted}\": {summary}"
        );
    }
    assert!(crate::hostile::hostile_input_count() >= 50, "{summary}");
}

/// The isolation failpoints with `kind = "compose"`, in a workspace whose front is a compose
/// layer too (two compose parts: the env's network is made before the database container,
/// and is there at the crash): after each crash and the retry the env has exactly one
/// database container and one env network, on which front reaches the database by its
/// layer's name; once destroyed nothing of the env is on the engine.
#[test]
fn isolate_failpoints_with_a_compose_service() {
    let Some(d) = crate::common::docker("crash::isolate_failpoints_with_a_compose_service", false)
    else {
        return;
    };
    let ws = TestWorkspace::with_repos(REPOS);
    ws.use_docker(&d);
    compose_repo(&ws, &d, "front", "web", 8080);
    std::fs::write(
        ws.root.join("compose.yaml"),
        format!(
            "services:\n  db:\n    image: {}\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/data\"]\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {{}}\n",
            d.busybox()
        ),
    )
    .unwrap();
    let mut toml = ws.standard_config(
        "compose = { service = \"web\", port = 8080 }\nready = { http = \"/index.html\" }",
    );
    toml.push_str(&format!(
        "\n[layers.db]\nshared_url = \"http://localhost:80\"\nports = \"{}\"\nisolate = {{ kind = \"compose\", service = \"db\" }}\n",
        ws.ports.range(80, 10)
    ));
    ws.write_config(&toml);
    let create = ["create", "feat-01", "--isolate-db"];
    for fp in [
        "isolate:before-create",
        "isolate:after-create",
        "isolate:after-record",
    ] {
        crash(&ws, fp, &create, &[]);
        if fp != "isolate:before-create" {
            // The crash window with the env's network made (for the database container).
            assert_eq!(
                env_networks(&d, &ws.env_token("feat-01")).len(),
                1,
                "{fp}: the env's network exists at the crash"
            );
        }
        ws.grove(&create).success();
        let token = ws.env_token("feat-01");
        let label = format!("dev.grove.token={token}");
        let containers = d.cli(&[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label={label}"),
        ]);
        assert_eq!(
            containers.stdout.split_whitespace().count(),
            2,
            "{fp}: front's and the database's"
        );
        let db = d.cli(&[
            "ps",
            "--quiet",
            "--filter",
            &format!("label={label}"),
            "--filter",
            "label=dev.grove.role=isolate",
        ]);
        let db = db.stdout.trim();
        assert_eq!(db.lines().count(), 1, "{fp}: one database container");
        assert_eq!(env_networks(&d, &token).len(), 1, "{fp}");
        d.cli(&["exec", db, "sh", "-c", "echo db > /data/index.html"])
            .success();
        let reached = fetched_by_front(&ws, "http://db/index.html");
        assert_eq!(
            reached.stdout, "db\n",
            "{fp}: the database by its layer's name"
        );
        assert_eq!(rows(&ws).isolated.len(), 1, "{fp}");
        assert_consistent(&ws, fp);
        ws.grove(&["destroy", "feat-01"]).success();
        assert_eq!(d.labelled(&label), Vec::<String>::new(), "{fp}");
    }
}

/// What env `feat-01`'s compose layer `front` gets for `url`, fetched from inside its container.
fn fetched_by_front(ws: &TestWorkspace, url: &str) -> crate::common::Out {
    ws.grove(&[
        "exec", "feat-01", "--layer", "front", "--", "wget", "-qO-", url,
    ])
    .success()
}
