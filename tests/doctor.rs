//! `grove doctor [--fix] [--json]`: each leftover is made with real commands (a crash at a
//! failpoint, a deleted or corrupt `state.db`, a process left running, a folder or a lease
//! nobody owns); doctor must list it and change nothing, `--fix` must repair it and report it
//! fixed, the next doctor must find nothing, and the user's own work must never be touched.
//!
//! Doctor reads the whole process table, but judges only the processes tagged with its own
//! grove home: other tests' envs (and a developer's) are never its business, which
//! `processes_of_another_grove_home_are_left_alone` checks.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::common::{Out, Postgres, Redis, TestWorkspace, list_dir, run, wait_until};

/// How the tests run commands and look at processes.
struct Sandbox;

impl Sandbox {
    /// A copy of `cmd` (program, arguments, environment, folder), to run or spawn.
    fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new(cmd.get_program());
        c.args(cmd.get_args()).env_clear().stdin(Stdio::null());
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    }

    fn inside(&self, argv: &[&str]) -> Out {
        run(Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null()))
    }

    /// Whether process `pid` is alive (a zombie is not).
    fn alive(&self, pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    }
}

/// A test workspace, and how its commands run.
struct Doc {
    sb: Sandbox,
    ws: TestWorkspace,
}

impl Doc {
    fn new(ws: TestWorkspace) -> Self {
        Doc { sb: Sandbox, ws }
    }

    /// The standard front/api workspace; `front_extra` is added to front's table.
    fn standard(front_extra: &str) -> Self {
        let ws = TestWorkspace::with_repos(&["front", "api"]);
        ws.write_config(&ws.standard_config(front_extra));
        Self::new(ws)
    }

    /// Runs a command built on `ws.cmd()` / `ws.command(..)` in the sandbox.
    fn run(&self, cmd: &Command) -> Out {
        run(&mut self.sb.wrap(cmd))
    }

    #[must_use = "check the outcome with .success() or .failure(code)"]
    fn grove(&self, args: &[&str]) -> Out {
        self.run(self.ws.cmd().args(args))
    }

    /// `grove` aborted at failpoint `at`: it must not have exited 0.
    fn crash(&self, at: &str, args: &[&str]) {
        let out = self.run(self.ws.cmd().env("GROVE_CRASH_AT", at).args(args));
        assert_ne!(out.code, 0, "grove did not abort at {at}:\n{out}");
    }

    fn ps(&self) -> Vec<Value> {
        let json = self.grove(&["ps", "--json"]).success().json();
        json["envs"].as_array().unwrap().clone()
    }

    /// The harness's snapshot (git, leases, envs folder); git and the envs folder alone when
    /// the store is not SQLite (the corrupt-store test).
    fn snapshot(&self) -> String {
        let db = std::fs::read(self.ws.grove_home.join("state.db")).unwrap_or_default();
        if db.is_empty() || db.starts_with(b"SQLite format 3\0") {
            return self.ws.snapshot(&["front", "api"]);
        }
        let mut s = String::new();
        for repo in ["front", "api"] {
            s.push_str(&format!("{repo} branches: {:?}\n", self.ws.branches(repo)));
            s.push_str(&format!(
                "{repo} worktrees: {:?}\n",
                self.ws.worktrees(repo)
            ));
        }
        s + &format!(
            "envs dir: {:?}",
            list_dir(&self.ws.root.join(".grove/envs"))
        )
    }

    /// `grove doctor --json` (exit 1) lists a problem of `kind` whose text holds `text`, and
    /// changes nothing; the human form lists it too. Returns the problem.
    #[track_caller]
    fn diagnose(&self, kind: &str, text: &str) -> Value {
        let before = self.snapshot();
        let out = self.grove(&["doctor", "--json"]).failure(1);
        let json = out.json();
        assert_eq!(json["version"], 1, "{out}");
        assert_eq!(json["ok"], false, "{out}");
        let p = find(&json, kind, text)
            .unwrap_or_else(|| panic!("no {kind} ({text}):\n{out}"))
            .clone();
        assert_eq!(p["fixed"], Value::Null, "{out}");
        let human = self.grove(&["doctor"]).failure(1);
        assert!(
            human.stdout.contains(kind) && human.stdout.contains(text),
            "{human}"
        );
        assert_eq!(
            before,
            self.snapshot(),
            "doctor without --fix changed something"
        );
        p
    }

    /// `grove doctor --fix --json` exits `code` and reports the `kind` problem about `text`
    /// fixed.
    #[track_caller]
    fn fix(&self, kind: &str, text: &str, code: i32) -> Value {
        let out = self.grove(&["doctor", "--fix", "--json"]).failure(code);
        let json = out.json();
        let p = find(&json, kind, text).unwrap_or_else(|| panic!("no {kind} ({text}):\n{out}"));
        assert_eq!(p["fixed"], true, "{out}");
        assert_eq!(p["error"], Value::Null, "{out}");
        json
    }

    /// `grove doctor` finds nothing, in words and in JSON.
    #[track_caller]
    fn assert_clean(&self) {
        let out = self.grove(&["doctor"]).success();
        assert_eq!(out.stdout.trim(), "no problems found", "{out}");
        let json = self.grove(&["doctor", "--json"]).success().json();
        assert_eq!(json["ok"], true, "{json}");
        assert_eq!(json["problems"], serde_json::json!([]), "{json}");
    }

    /// The user's own work in the main checkout of front: a branch with a commit, a file
    /// nobody committed. Doctor must never touch either.
    fn user_work(&self) {
        self.ws.branch_with_commit("front", "mine");
        std::fs::write(self.ws.repo("front").join("draft.txt"), "draft").unwrap();
    }

    #[track_caller]
    fn assert_user_work(&self) {
        let front = self.ws.repo("front");
        assert!(self.ws.branches("front").contains(&"mine".to_string()));
        let log = self.ws.git(&front, &["log", "--format=%s", "mine"]);
        assert!(log.starts_with("Work on mine"), "{log}");
        assert_eq!(
            std::fs::read_to_string(front.join("draft.txt")).unwrap(),
            "draft"
        );
    }

    /// Deletes the store and its WAL files.
    fn delete_store(&self) {
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let _ = std::fs::remove_file(self.ws.grove_home.join(f));
        }
    }

    fn log_key(&self) -> String {
        let logs = list_dir(&self.ws.grove_home.join("logs"));
        assert_eq!(logs.len(), 1, "one workspace's logs: {logs:?}");
        logs[0].clone()
    }
}

/// The problem of `kind` whose subject or text holds `text`.
fn find<'a>(json: &'a Value, kind: &str, text: &str) -> Option<&'a Value> {
    json["problems"].as_array()?.iter().find(|p| {
        p["kind"] == kind
            && (p["problem"].as_str().unwrap_or("").contains(text)
                || p["subject"].as_str().unwrap_or("").contains(text))
    })
}

fn kinds(json: &Value) -> Vec<String> {
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

fn read_pid(path: &Path) -> u32 {
    assert!(wait_until(10, || std::fs::read_to_string(path)
        .is_ok_and(|s| s.ends_with('\n'))));
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_clean_workspace_has_no_problems() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let out = d.grove(&["doctor"]).success();
    assert_eq!(out.stdout.trim(), "no problems found", "{out}");
    assert!(
        out.stderr.contains("grove doctor: workspace"),
        "the header names the workspace: {out}"
    );
    let json = d.grove(&["doctor", "--json"]).success().json();
    assert_eq!(json["version"], 1);
    assert_eq!(json["ok"], true);
    assert_eq!(json["problems"], serde_json::json!([]));
    assert_eq!(json["workspace"], d.ws.root.to_string_lossy().as_ref());
    assert_eq!(
        json["store"],
        d.ws.grove_home.join("state.db").to_string_lossy().as_ref()
    );
    // --fix on a clean workspace is a no-op that succeeds.
    let before = d.snapshot();
    let out = d.grove(&["doctor", "--fix"]).success();
    assert_eq!(out.stdout.trim(), "no problems found", "{out}");
    assert_eq!(before, d.snapshot());
}

#[test]
fn a_half_made_env_is_rolled_back() {
    let d = Doc::standard("");
    d.user_work();
    d.crash("create:after-worktree", &["create", "feat-01"]);
    assert!(d.ws.worktree("feat-01", "front").join(".git").exists());
    let p = d.diagnose("half-made", "a create died half-way");
    assert_eq!(p["subject"], "feat-01");
    assert_eq!(p["fixable"], true);
    // Listing is not cleaning: the worktree and the branch are still there.
    assert!(d.ws.worktree("feat-01", "front").exists());
    assert!(d.ws.branches("front").contains(&"feat-01".to_string()));

    d.fix("half-made", "feat-01", 0);
    assert_eq!(d.ws.branches("front"), ["main", "mine"]);
    assert_eq!(d.ws.worktrees("front"), [d.ws.repo("front")]);
    assert_eq!(d.ws.leased_ports(), Vec::<u16>::new());
    assert!(!d.ws.env_dir("feat-01").exists());
    assert!(d.ps().is_empty());
    d.assert_clean();
    d.assert_user_work();
}

#[test]
fn a_half_destroyed_env_is_finished() {
    let d = Doc::standard("");
    d.user_work();
    d.grove(&["create", "feat-01"]).success();
    d.crash("destroy:after-worktree", &["destroy", "feat-01"]);
    let p = d.diagnose("half-destroyed", "a destroy did not finish");
    assert_eq!(p["subject"], "feat-01");
    assert_eq!(d.ps()[0]["status"], "destroying");

    d.fix("half-destroyed", "feat-01", 0);
    assert_eq!(d.ws.branches("front"), ["main", "mine"]);
    assert_eq!(d.ws.worktrees("front"), [d.ws.repo("front")]);
    assert_eq!(d.ws.leased_ports(), Vec::<u16>::new());
    assert!(!d.ws.env_dir("feat-01").exists());
    assert!(d.ps().is_empty());
    d.assert_clean();
    d.assert_user_work();
}

#[test]
fn processes_left_by_grove_exec_or_of_no_env_are_stopped() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let pidfile = d.ws.tmp.path().join("bg.pid");

    // While `grove exec` runs, its processes are its own business.
    let exec =
        d.sb.wrap(
            d.ws.cmd()
                .args(["exec", "feat-01", "--", "sh", "-c"])
                .arg(format!("echo $$ > {}; exec sleep 300", pidfile.display())),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut exec = KillOnDrop(exec);
    let running = read_pid(&pidfile);
    d.assert_clean();
    d.sb.inside(&["kill", &running.to_string()]).success();
    assert!(wait_until(10, || exec.0.try_wait().unwrap().is_some()));
    std::fs::remove_file(&pidfile).unwrap();

    // A background job outlives the `grove exec` that started it.
    d.grove(&[
        "exec",
        "feat-01",
        "--",
        "sh",
        "-c",
        &format!(
            "sleep 300 >/dev/null 2>&1 & echo $! > {}",
            pidfile.display()
        ),
    ])
    .success();
    let bg = read_pid(&pidfile);
    assert!(d.sb.alive(bg));
    let p = d.diagnose("stray-process", &format!("pid {bg} (sleep)"));
    assert_eq!(p["subject"], bg.to_string());
    assert!(
        p["problem"]
            .as_str()
            .unwrap()
            .contains("the `grove exec` that started it is over"),
        "{p}"
    );
    assert!(d.sb.alive(bg), "doctor without --fix stopped it");
    d.fix("stray-process", &format!("pid {bg}"), 0);
    assert!(wait_until(10, || !d.sb.alive(bg)), "pid {bg} still runs");
    d.assert_clean();

    // A process tagged for an env that never existed, in this grove home (whose id a real
    // tag gives).
    let tagfile = d.ws.tmp.path().join("tag");
    d.grove(&[
        "exec",
        "feat-01",
        "--",
        "sh",
        "-c",
        &format!("echo \"$GROVE_TOKEN\" > {}", tagfile.display()),
    ])
    .success();
    let tag = std::fs::read_to_string(&tagfile).unwrap();
    let home = tag.split('.').next().unwrap();
    let orphan_pid = d.ws.tmp.path().join("orphan.pid");
    let orphan =
        d.sb.wrap(
            d.ws.command("sh")
                .args([
                    "-c",
                    &format!("echo $$ > {}; exec sleep 300", orphan_pid.display()),
                ])
                .env(
                    "GROVE_TOKEN",
                    format!("{home}.0123456789abcdef01234567:exec"),
                ),
        )
        .spawn()
        .unwrap();
    let mut orphan = KillOnDrop(orphan);
    let pid = read_pid(&orphan_pid);
    let p = d.diagnose("stray-process", &format!("pid {pid} (sleep)"));
    assert!(
        p["problem"]
            .as_str()
            .unwrap()
            .contains("its env no longer exists"),
        "{p}"
    );
    assert!(d.sb.alive(pid));
    d.fix("stray-process", &format!("pid {pid}"), 0);
    assert!(
        wait_until(10, || orphan.0.try_wait().unwrap().is_some()),
        "pid {pid} still runs"
    );
    d.assert_clean();
    assert_eq!(d.ps().len(), 1, "the env itself is untouched");
}

/// Kills a child the test started, whatever happens to the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An env of a deleted store is taken back from its folder: same worktree, branch and port,
/// and its branch is still known as grove's.
#[test]
fn envs_of_a_deleted_store_are_taken_back() {
    // A setup step writes logs: grove then knows it ran here before.
    let d = Doc::standard("setup = [\"true\"]");
    d.user_work();
    d.grove(&["create", "feat-01"]).success();
    let wt = d.ws.worktree("feat-01", "front");
    d.ws.commit(&wt, "work.txt", "work", "Work on feat-01");
    let layer = |env: &Value| {
        let l = env["layers"][0].clone();
        assert_eq!(l["name"], "front");
        (
            l["worktree"].clone(),
            l["branch"].clone(),
            l["port"].clone(),
        )
    };
    let before = layer(&d.ps()[0]);

    d.delete_store();
    let out = d.grove(&["ps"]).success();
    assert!(
        out.stderr.contains("was missing (deleted?)") && out.stderr.contains("grove doctor"),
        "{out}"
    );
    assert!(d.ps().is_empty());
    let p = d.diagnose("unknown-env", "which the store does not know");
    assert_eq!(p["subject"], "feat-01");
    assert!(d.ps().is_empty());

    let logs =
        d.ws.grove_home
            .join("logs")
            .join(d.log_key())
            .join("feat-01");
    assert!(logs.is_dir(), "the setup step wrote no logs");
    let json = d.fix("unknown-env", "feat-01", 0);
    // The env taken back keeps its logs: they are not those of a gone env.
    assert!(find(&json, "stale-logs", "feat-01").is_none(), "{json}");
    assert!(logs.is_dir(), "the logs of the env taken back were removed");
    let envs = d.ps();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0]["name"], "feat-01");
    assert_eq!(layer(&envs[0]), before);
    assert_eq!(d.ws.leased_ports(), [d.ws.front_port(0)]);
    d.assert_clean();
    d.assert_user_work();

    // The branch is still grove's: destroy --force deletes it, with its commit.
    let out = d
        .grove(&["destroy", "feat-01", "--force", "--yes"])
        .success();
    assert!(out.stderr.contains("deleted branch `feat-01`"), "{out}");
    assert_eq!(d.ws.branches("front"), ["main", "mine"]);
    d.assert_clean();
    d.assert_user_work();
}

#[test]
fn a_corrupt_store_is_set_aside_and_its_envs_taken_back() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let db = d.ws.grove_home.join("state.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    for f in ["state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(d.ws.grove_home.join(f));
    }

    let out = d.grove(&["ps"]).failure(1);
    assert!(
        out.stderr.contains("state store") && out.stderr.contains("is corrupt"),
        "{out}"
    );
    let p = d.diagnose("store-corrupt", "file is not a database");
    assert_eq!(p["subject"], db.to_string_lossy().as_ref());
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "doctor touched it");

    let json = d.fix("store-corrupt", "not a database", 0);
    assert!(find(&json, "unknown-env", "feat-01").is_some(), "{json}");
    let aside: Vec<String> = list_dir(&d.ws.grove_home)
        .into_iter()
        .filter(|f| f.starts_with("state.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(d.ws.grove_home.join(&aside[0])).unwrap(),
        garbage,
        "set aside as it was"
    );
    let envs = d.ps();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0]["name"], "feat-01");
    assert_eq!(envs[0]["layers"][0]["port"], d.ws.front_port(0));
    d.assert_clean();
}

#[test]
fn a_branch_grove_made_for_a_lost_env_is_deleted() {
    let d = Doc::standard("");
    d.user_work();
    d.crash("create:after-branch", &["create", "feat-01"]);
    // No store, no rollback: only the branch's reflog says whose it is.
    d.delete_store();
    let p = d.diagnose("stray-branch", "branch `feat-01` was left by grove");
    assert!(
        p["subject"].as_str().unwrap().ends_with("front feat-01"),
        "{p}"
    );
    assert_eq!(p["fixable"], true);
    assert!(d.ws.branches("front").contains(&"feat-01".to_string()));

    d.fix("stray-branch", "feat-01", 0);
    assert_eq!(d.ws.branches("front"), ["main", "mine"]);
    d.assert_clean();
    d.assert_user_work();
}

#[test]
fn a_stray_branch_with_commits_of_its_own_is_the_users() {
    let d = Doc::standard("");
    d.crash("create:after-branch", &["create", "feat-01"]);
    d.delete_store();
    let front = d.ws.repo("front");
    let own = d.ws.git(
        &front,
        &["commit-tree", "main^{tree}", "-p", "main", "-m", "own work"],
    );
    d.ws.git(&front, &["update-ref", "refs/heads/feat-01", &own]);
    // It moved since grove made it: someone's work, not a leftover. Only the empty env folder
    // the crash left is a problem, and `--fix` keeps the branch.
    let json = d.grove(&["doctor", "--json"]).failure(1).json();
    assert_eq!(kinds(&json), ["unknown-folder"], "{json}");
    d.grove(&["doctor", "--fix"]).success();
    assert_eq!(d.ws.git(&front, &["rev-parse", "feat-01"]), own);
    d.assert_clean();
}

#[test]
fn unknown_folders_are_removed_unless_they_hold_work() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let envs = d.ws.root.join(".grove/envs");
    std::fs::create_dir(envs.join("ghost")).unwrap();
    std::fs::create_dir(envs.join("mine")).unwrap();
    std::fs::write(envs.join("mine/notes.txt"), "my notes").unwrap();

    let p = d.diagnose("unknown-folder", "envs/ghost");
    assert_eq!(p["subject"], "ghost");
    assert_eq!(p["fixable"], true);
    let p = d.diagnose("unknown-folder", "envs/mine");
    assert_eq!(p["fixable"], false, "{p}");
    assert!(p["fix"].as_str().unwrap().contains("notes.txt"), "{p}");

    let json = d.fix("unknown-folder", "envs/ghost", 1);
    assert_eq!(json["ok"], false);
    let mine = find(&json, "unknown-folder", "envs/mine").unwrap();
    assert_eq!(mine["fixed"], Value::Null, "{json}");
    assert!(!envs.join("ghost").exists());
    assert_eq!(
        std::fs::read_to_string(envs.join("mine/notes.txt")).unwrap(),
        "my notes"
    );
    assert_eq!(d.ps().len(), 1, "the real env is untouched");
    assert!(d.ws.worktree("feat-01", "front").join(".git").exists());

    // Once the user has moved their notes away, nothing is left.
    std::fs::remove_dir_all(envs.join("mine")).unwrap();
    d.assert_clean();
}

#[test]
fn logs_of_a_gone_env_are_removed() {
    let d = Doc::standard("setup = [\"true\"]");
    d.grove(&["create", "feat-01"]).success();
    d.grove(&["create", "feat-02"]).success();
    let key = d.log_key();
    let logs = d.ws.grove_home.join("logs").join(&key);
    assert!(logs.join("feat-01/setup.log").exists());
    d.grove(&["destroy", "feat-01"]).success();
    assert!(!logs.join("feat-01").exists(), "destroy removes its logs");
    d.assert_clean();

    std::fs::create_dir_all(logs.join("feat-01")).unwrap();
    std::fs::write(logs.join("feat-01/x.log"), "old").unwrap();
    let p = d.diagnose(
        "stale-logs",
        "logs of env `feat-01`, which no longer exists",
    );
    assert!(p["subject"].as_str().unwrap().ends_with("/feat-01"), "{p}");
    assert!(logs.join("feat-01/x.log").exists());

    d.fix("stale-logs", "feat-01", 0);
    assert!(!logs.join("feat-01").exists());
    assert!(
        logs.join("feat-02/setup.log").exists(),
        "a live env's logs are kept"
    );
    d.assert_clean();
}

#[test]
fn a_lease_for_a_layer_the_env_does_not_have_is_freed() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let stray = d.ws.api_port(5);
    {
        let conn = rusqlite::Connection::open(d.ws.grove_home.join("state.db")).unwrap();
        conn.execute(
            "INSERT INTO port_leases (port, env, layer, leased_at) \
             SELECT ?1, id, 'api', 0 FROM envs WHERE name = 'feat-01'",
            [stray],
        )
        .unwrap();
    }
    assert_eq!(d.ws.leased_ports(), [d.ws.front_port(0), stray]);
    let p = d.diagnose("stray-lease", &format!("port {stray} is leased to `api`"));
    assert_eq!(p["subject"], stray.to_string());

    d.fix("stray-lease", &stray.to_string(), 0);
    assert_eq!(d.ws.leased_ports(), [d.ws.front_port(0)]);
    assert_eq!(d.ps().len(), 1);
    d.assert_clean();
}

/// A second workspace, `other`, beside the test's: one repo `app`, ports 80-89 of the
/// test's block. Returns its folder.
fn other_workspace(d: &Doc, extra: &str) -> PathBuf {
    let root = d.ws.tmp.path().canonicalize().unwrap().join("other");
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    d.ws.git(&app, &["init", "--quiet", "-b", "main"]);
    d.ws.commit(&app, "README.md", "# app\n", "Initial commit");
    std::fs::write(
        root.join("grove.toml"),
        format!(
            "[layers.app]\nrepo = \"app\"\nports = \"{}\"\n{extra}",
            d.ws.ports.range(80, 10)
        ),
    )
    .unwrap();
    d.run(d.ws.cmd().current_dir(&root).args(["create", "w-01"]))
        .success();
    root
}

#[test]
fn a_gone_workspace_is_forgotten_and_its_ports_freed() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let other = other_workspace(&d, "");
    assert_eq!(
        d.ws.leased_ports(),
        [d.ws.front_port(0), d.ws.ports.port(80)]
    );
    d.assert_clean();

    std::fs::remove_dir_all(&other).unwrap();
    let p = d.diagnose("workspace-gone", "(1 env(s)) is gone");
    assert_eq!(p["subject"], other.to_string_lossy().as_ref());
    assert_eq!(
        d.ws.leased_ports(),
        [d.ws.front_port(0), d.ws.ports.port(80)]
    );

    d.fix("workspace-gone", "other", 0);
    assert_eq!(d.ws.leased_ports(), [d.ws.front_port(0)]);
    assert_eq!(d.ps().len(), 1, "this workspace's env is untouched");
    d.assert_clean();
}

/// Databases and Redis indexes a create made before it died with its store: dropped and
/// flushed; the user's own never listed.
#[test]
fn databases_and_redis_indexes_of_lost_envs_are_dropped() {
    let ws = TestWorkspace::with_repos(&["front", "api"]);
    let pg = Postgres::start(ws.ports.port(90));
    let redis = Redis::start(ws.ports.port(91));
    let config = ws.standard_config("")
        + &format!(
            "\n[layers.db]\nshared_url = \"{}\"\nisolate = {{ kind = \"postgres\", template = \"app\" }}\n\
             \n[layers.redis]\nshared_url = \"{}\"\nisolate = {{ kind = \"redis\" }}\n",
            pg.url("app"),
            redis.url(0)
        );
    ws.write_config(&config);
    let d = Doc::new(ws);
    pg.psql("postgres", "CREATE DATABASE mine");
    redis.cli(1, &["SET", "user-key", "user data"]);

    d.crash(
        "isolate:after-create",
        &["create", "feat-01", "--isolate-db"],
    );
    d.delete_store();
    d.crash(
        "isolate:after-create",
        &["create", "feat-02", "--isolate-redis"],
    );
    d.delete_store();
    assert!(pg.databases().contains(&"app_feat_01".to_string()));
    // Index 1 holds the user's data: grove took 2.
    assert_eq!(redis.cli(2, &["DBSIZE"]), "1");

    let p = d.diagnose("stray-database", "database `app_feat_01` was made by grove");
    assert_eq!(p["subject"], "app_feat_01");
    let p = d.diagnose("stray-redis", "Redis database 2 of");
    assert_eq!(p["fixable"], true);
    let json = d.grove(&["doctor", "--json"]).failure(1).json();
    assert!(find(&json, "stray-database", "mine").is_none(), "{json}");
    assert!(
        find(&json, "stray-redis", "database 1 ").is_none(),
        "{json}"
    );
    assert!(pg.databases().contains(&"app_feat_01".to_string()));
    assert_eq!(redis.cli(2, &["DBSIZE"]), "1");

    let json = d.fix("stray-database", "app_feat_01", 0);
    assert!(
        find(&json, "stray-redis", "database 2 ").is_some_and(|p| p["fixed"] == true),
        "{json}"
    );
    assert!(!pg.databases().contains(&"app_feat_01".to_string()));
    assert!(pg.databases().contains(&"mine".to_string()));
    assert!(pg.databases().contains(&"app".to_string()));
    assert_eq!(redis.cli(2, &["DBSIZE"]), "0");
    assert_eq!(redis.cli(1, &["GET", "user-key"]), "user data");
    // Nothing of the kind is left.
    let json = d.grove(&["doctor", "--json"]).json();
    let left = kinds(&json);
    assert!(
        !left
            .iter()
            .any(|k| k == "stray-database" || k == "stray-redis"),
        "{json}"
    );
    // The crashes also left two worktrees on grove's branches: the same --fix removed the
    // worktrees, then the branches they had checked out.
    d.assert_clean();
    assert_eq!(d.ws.branches("front"), ["main"]);
    assert!(pg.databases().contains(&"mine".to_string()));
    assert_eq!(redis.cli(1, &["GET", "user-key"]), "user data");
}

#[test]
fn outside_a_workspace_doctor_checks_the_machine() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let elsewhere = d.ws.tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let doctor = |args: &[&str]| d.run(d.ws.cmd().current_dir(&elsewhere).args(args));

    let out = doctor(&["doctor"]).success();
    assert_eq!(out.stdout.trim(), "no problems found", "{out}");
    assert!(out.stderr.contains("machine-wide checks only"), "{out}");
    let json = doctor(&["doctor", "--json"]).success().json();
    assert_eq!(json["workspace"], Value::Null);
    assert_eq!(json["ok"], true);
    assert_eq!(json["problems"], serde_json::json!([]));

    // The machine-wide checks do run from here.
    let other = other_workspace(&d, "");
    std::fs::remove_dir_all(&other).unwrap();
    let json = doctor(&["doctor", "--json"]).failure(1).json();
    assert_eq!(kinds(&json), ["workspace-gone"], "{json}");
    doctor(&["doctor", "--fix"]).success();
    doctor(&["doctor"]).success();
    assert_eq!(d.ps().len(), 1);
}

// ---- found by this suite's first run: each was a grove bug ----

#[test]
fn processes_of_another_grove_home_are_left_alone() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    // A second, unrelated grove home with an env whose `grove exec` is running right now.
    let b = TestWorkspace::with_repos(&["front", "api"]);
    b.write_config(&b.standard_config(""));
    d.run(b.cmd().args(["create", "feat-01"])).success();
    let pidfile = b.tmp.path().join("b.pid");
    let exec =
        d.sb.wrap(
            b.cmd()
                .args(["exec", "feat-01", "--", "sh", "-c"])
                .arg(format!("echo $$ > {}; exec sleep 300", pidfile.display())),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _exec = KillOnDrop(exec);
    let pid = read_pid(&pidfile);

    d.assert_clean();
    d.grove(&["doctor", "--fix"]).success();
    assert!(
        d.sb.alive(pid),
        "doctor --fix stopped another grove's process"
    );
}

#[test]
fn a_deleted_store_is_noticed_even_without_logs() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    d.delete_store();
    let out = d.grove(&["ps"]).success();
    assert!(out.stderr.contains("was missing (deleted?)"), "{out}");
}

#[test]
fn a_corrupt_store_error_says_how_to_fix_it() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    std::fs::write(d.ws.grove_home.join("state.db"), vec![b'x'; 8192]).unwrap();
    for f in ["state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(d.ws.grove_home.join(f));
    }
    let out = d.grove(&["ps"]).failure(1);
    assert!(out.stderr.contains("is corrupt"), "{out}");
    assert!(out.stderr.contains("grove doctor --fix"), "{out}");
}

#[test]
fn a_gone_workspace_is_forgotten_with_its_logs_in_one_fix() {
    let d = Doc::standard("");
    let other = other_workspace(&d, "setup = [\"true\"]\n");
    assert_eq!(list_dir(&d.ws.grove_home.join("logs")).len(), 1);
    std::fs::remove_dir_all(&other).unwrap();
    d.diagnose("workspace-gone", "is gone");
    d.fix("workspace-gone", "other", 0);
    d.assert_clean();
}

#[test]
fn one_fix_clears_a_half_made_env_whose_store_was_lost() {
    let d = Doc::standard("");
    d.user_work();
    d.crash("create:after-worktree", &["create", "feat-01"]);
    d.delete_store();
    // The branch is checked out by the folder's worktree: only the folder is a problem yet.
    d.diagnose("unknown-folder", "envs/feat-01");
    let json = d.fix("unknown-folder", "envs/feat-01", 0);
    assert!(
        find(&json, "stray-branch", "feat-01").is_some_and(|p| p["fixed"] == true),
        "{json}"
    );
    assert_eq!(d.ws.branches("front"), ["main", "mine"]);
    assert_eq!(d.ws.worktrees("front"), [d.ws.repo("front")]);
    d.assert_clean();
    d.assert_user_work();
}

#[test]
fn one_fix_clears_a_half_made_env_that_wrote_logs() {
    let d = Doc::standard("setup = [\"true\"]");
    d.crash("create:after-setup", &["create", "feat-01"]);
    let logs =
        d.ws.grove_home
            .join("logs")
            .join(d.log_key())
            .join("feat-01");
    assert!(logs.join("setup.log").exists());
    d.diagnose("half-made", "feat-01");
    d.fix("half-made", "feat-01", 0);
    d.assert_clean();
}

#[test]
fn a_stray_branch_holding_the_only_copy_of_commits_is_kept() {
    let d = Doc::standard("");
    d.ws.branch_with_commit("front", "feature-x");
    let front = d.ws.repo("front");
    let work = d.ws.git(&front, &["rev-parse", "feature-x"]);
    d.crash(
        "create:after-branch",
        &["create", "feat-01", "--from-front", "feature-x"],
    );
    d.delete_store();
    // The base goes (merged and pruned, say): feat-01 is now all that holds its commit.
    d.ws.git(&front, &["branch", "--quiet", "-D", "feature-x"]);
    assert_eq!(d.ws.git(&front, &["rev-parse", "feat-01"]), work);

    // The only ref holding the commit is the user's, not a leftover: never listed, never
    // deleted (the empty env folder the crash left is the one problem).
    let json = d.grove(&["doctor", "--json"]).failure(1).json();
    assert_eq!(kinds(&json), ["unknown-folder"], "{json}");
    d.grove(&["doctor", "--fix"]).success();
    assert_eq!(d.ws.git(&front, &["rev-parse", "feat-01"]), work);
    d.assert_clean();
}

#[test]
fn a_branch_destroy_kept_for_its_work_is_not_a_problem() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let wt = d.ws.worktree("feat-01", "front");
    d.ws.commit(&wt, "work.txt", "work", "Work on feat-01");
    let out = d.grove(&["destroy", "feat-01"]).success();
    assert!(out.stderr.contains("kept branch `feat-01`"), "{out}");
    d.assert_clean();
}

#[test]
fn a_worktree_or_branch_deleted_by_hand_is_reported_for_a_person_to_decide() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    d.grove(&["create", "feat-02"]).success();
    // feat-01 loses its worktree, feat-02 its branch (git refuses `branch -D` of a checked-out
    // branch; update-ref does not ask).
    std::fs::remove_dir_all(d.ws.worktree("feat-01", "front")).unwrap();
    d.ws.git(
        &d.ws.repo("front"),
        &["update-ref", "-d", "refs/heads/feat-02"],
    );
    let p = d.diagnose("missing-worktree", "the worktree of `front` is gone");
    assert_eq!(p["fixable"], false, "{p}");
    assert!(
        p["fix"].as_str().unwrap().contains("grove destroy feat-01"),
        "{p}"
    );
    let p = d.diagnose("missing-branch", "branch `feat-02` of `front` is gone");
    assert_eq!(p["fixable"], false, "{p}");
    // git's record of the deleted worktree is grove's to prune.
    let p = d.diagnose("stale-worktree", "gone");
    assert_eq!(p["fixable"], true, "{p}");
    for env in d.ps() {
        assert_eq!(env["status"], "broken", "{env}");
    }
    // `--fix` prunes git's record, and leaves both envs to a person: still exit 1.
    let json = d.grove(&["doctor", "--fix", "--json"]).failure(1).json();
    assert!(
        find(&json, "stale-worktree", "gone").is_some_and(|p| p["fixed"] == true),
        "{json}"
    );
    assert_eq!(
        kinds(&json)
            .iter()
            .filter(|k| k.starts_with("missing-"))
            .count(),
        2,
        "{json}"
    );
    assert_eq!(d.ps().len(), 2);
    // What a person does: destroy them.
    d.grove(&["destroy", "feat-01"]).success();
    d.grove(&["destroy", "feat-02", "--force", "--yes"])
        .success();
    d.assert_clean();
}

#[test]
fn a_saved_agent_environment_that_will_never_be_used_is_removed() {
    let d = Doc::standard("");
    d.grove(&["create", "feat-01"]).success();
    let run = d.ws.grove_home.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let stale = run.join("agent-0123456789abcdef01234567.env");
    std::fs::write(&stale, "[[\"ANTHROPIC_API_KEY\",\"sk-left-behind\"]]").unwrap();
    d.diagnose("stale-file", "agent-0123456789abcdef01234567.env");
    assert!(stale.exists());
    d.fix("stale-file", "agent-0123456789abcdef01234567.env", 0);
    assert!(!stale.exists());
    d.assert_clean();
}

#[test]
fn running_envs_of_a_lost_store_are_stopped_and_taken_back() {
    // state.db deleted while an env runs: its supervisor, registered in the lost store only,
    // must not go on restarting servers nobody sees.
    let ws = crate::common::servers_ws("", "");
    let d = Doc::new(ws);
    d.grove(&["create", "feat-01"]).success();
    let sup = d.ps()[0]["supervisor"].as_u64().unwrap() as u32;
    d.delete_store();
    let p = d.diagnose("stray-process", &format!("pid {sup} (grove)"));
    assert!(
        p["problem"].as_str().unwrap().contains("its supervisor"),
        "{p}"
    );
    d.fix("stray-process", &format!("pid {sup}"), 0);
    assert!(
        wait_until(10, || !d.sb.alive(sup)),
        "the supervisor still runs"
    );
    assert!(
        wait_until(10, || d.ws.tagged_processes().is_empty()),
        "{:?}",
        d.ws.tagged_processes()
    );
    // Taken back, stopped: it starts again under a supervisor the store knows.
    assert_eq!(d.ps()[0]["status"], "stopped");
    d.grove(&["up", "feat-01"]).success();
    assert_eq!(d.ps()[0]["status"], "running");
    d.grove(&["destroy", "feat-01"]).success();
    assert!(wait_until(10, || d.ws.tagged_processes().is_empty()));
    d.assert_clean();
}
