//! Regression tests for what an adversarial review found in an older grove, one test per
//! problem, each failing against that grove and passing now:
//!
//! - item 3: re-running `grove demo` threw away the work in an earlier demo (untracked files,
//!   commits in an env's worktree, an edited grove.toml, folders of one's own);
//! - item 7: processes that leave the server's session (a daemon, what `grove exec` leaves in
//!   the background) outlived `down`, `restart` and `destroy`; a `grove exec` still running was
//!   not stopped by `destroy`;
//! - item 8: servers whose supervisor and guards were killed together ran on unseen;
//! - item 9: a foreign program answering on a leased port passed the readiness probe;
//! - item 11: read-only commands and agent hooks rolled back a half-made env (and its setup);
//! - item 12: old logs shown for a new env of the same name, `up` not restarting a failed
//!   server, `up`/`restart` starting a broken env, `ps` silent about failed, frozen and
//!   unhealthy servers, a locked store waited on without a word, Ctrl-C reported as a git
//!   failure, `destroy` racing the create that is still making or starting the env;
//! - item 13: an unknown server state in the store shown as a status;
//! - item 14: a headless agent's secrets written to the store, and a store readable by others.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{Out, TestWorkspace, finish, http_get, list_dir, listening, run, wait_until};

const REPOS: &[&str] = &["front", "api"];

use crate::common::{env_json, layer, servers_ws as ws_with};

fn problems(env: &Value) -> Vec<String> {
    env["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn pid_of(v: &Value) -> i32 {
    i32::try_from(v.as_i64().unwrap_or_else(|| panic!("no pid: {v}"))).unwrap()
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

/// Live children of `parent`, from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rfind(')')
            .map_or(Vec::new(), |i| stat[i + 1..].split_whitespace().collect());
        if fields.len() > 1 && fields[0] != "Z" && fields[1] == parent.to_string() {
            out.push(pid);
        }
    }
    out
}

fn gone_within(secs: u64, pid: i32) -> bool {
    wait_until(secs, || !alive(pid))
}

/// A child this test started: killed (with its children, and its process group when it leads
/// one) when the test ends, even by a panic, unless collected with [`Kid::finish`].
struct Kid {
    child: Option<Child>,
    group: bool,
}

impl Kid {
    fn new(child: Child) -> Self {
        Kid {
            child: Some(child),
            group: false,
        }
    }

    fn leading_its_group(child: Child) -> Self {
        Kid {
            child: Some(child),
            group: true,
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().unwrap().id()).unwrap()
    }

    fn exits_within(&mut self, secs: u64) -> bool {
        let child = self.child.as_mut().unwrap();
        wait_until(secs, || child.try_wait().unwrap().is_some())
    }

    /// Waits for it and collects its output.
    fn finish(mut self) -> Out {
        finish(self.child.take().unwrap())
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = i32::try_from(child.id()).unwrap();
            if self.group {
                // A group outlives its leader while a member lives: its id is not reused.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            // Not reaped yet, so the pid is still its own.
            if matches!(child.try_wait(), Ok(None)) {
                // Its children would outlive it (the command of a `grove exec`).
                for c in children_of(pid) {
                    let _ = kill(Pid::from_raw(c), Signal::SIGKILL);
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Processes of this test that are not its children (a server's daemon, what `grove exec`
/// left behind, a server stopped with SIGSTOP): resumed, then killed when the test ends, each
/// only while it still carries this test's grove home (a reused pid is never hit).
struct Strays {
    home: String,
    pids: Vec<i32>,
}

impl Strays {
    fn new(ws: &TestWorkspace) -> Self {
        Strays {
            home: format!("GROVE_HOME={}", ws.grove_home.display()),
            pids: Vec::new(),
        }
    }

    fn add(&mut self, pid: i32) {
        self.pids.push(pid);
    }
}

impl Drop for Strays {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let ours = std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == self.home.as_bytes()));
            if ours {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// item 3: demo re-run

#[test]
fn demo_rerun_keeps_work_in_the_old_demo_unless_forced() {
    let ws = TestWorkspace::empty();
    let d = ws.root.join("d");
    // Its envs are stopped at the end, even by a failed assertion.
    struct DemoEnvs<'a>(&'a TestWorkspace, PathBuf);
    impl Drop for DemoEnvs<'_> {
        fn drop(&mut self) {
            for env in ["feat-01", "feat-02"] {
                let _ = run(self
                    .0
                    .cmd()
                    .current_dir(&self.1)
                    .args(["destroy", env, "--force", "--yes"]));
            }
        }
    }
    let _envs = DemoEnvs(&ws, d.clone());
    let demo_envs = || -> Vec<String> {
        let json = run(ws.cmd().current_dir(&d).args(["ps", "--json"]))
            .success()
            .json();
        json["envs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };

    ws.grove(&["demo", "d"]).success();
    // An untouched demo is replaced without asking.
    let out = ws.grove(&["demo", "d"]).success();
    assert!(!out.stderr.contains("throw"), "{out}");
    assert_eq!(demo_envs(), ["feat-01", "feat-02"]);

    // (a) An untracked file: listed, and nothing is touched.
    let notes = d.join("front/notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    let out = ws.grove(&["demo", "d"]).failure(1);
    assert!(
        out.stderr
            .contains("holds work that replacing it would throw away; nothing was changed"),
        "{out}"
    );
    assert!(
        out.stderr.contains("\n  front: uncommitted: notes.txt"),
        "{out}"
    );
    assert!(out.stderr.contains("--force"), "{out}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    assert_eq!(demo_envs(), ["feat-01", "feat-02"]);

    // (b) A commit in an env's worktree, an edited grove.toml, a folder of one's own: each
    // listed, none touched.
    let wt = d.join(".grove/envs/feat-01/front");
    ws.commit(&wt, "mine.txt", "mine\n", "My own work");
    let toml = std::fs::read_to_string(d.join("grove.toml")).unwrap() + "# my edit\n";
    std::fs::write(d.join("grove.toml"), &toml).unwrap();
    std::fs::create_dir_all(d.join("tickets")).unwrap();
    std::fs::write(d.join("tickets/T-1.md"), "the ticket\n").unwrap();
    let out = ws.grove(&["demo", "d"]).failure(1);
    for item in [
        "\n  front: uncommitted: notes.txt",
        "\n  grove.toml: edited",
        "\n  tickets: not made by the demo",
        "\n  front: commit ",
        " My own work",
    ] {
        assert!(out.stderr.contains(item), "`{item}` not listed: {out}");
    }
    assert!(notes.exists());
    assert_eq!(std::fs::read_to_string(d.join("grove.toml")).unwrap(), toml);
    assert!(d.join("tickets/T-1.md").exists());
    assert_eq!(
        ws.git(&wt, &["log", "-1", "--format=%s"]),
        "My own work",
        "the commit is gone"
    );
    assert_eq!(demo_envs(), ["feat-01", "feat-02"]);

    // (c) On a terminal it asks; "no" changes nothing.
    let out = {
        use std::io::Write;
        let grove = crate::common::grove_bin();
        let mut child = ws
            .command("script")
            .current_dir(&ws.root)
            .args(["-qec", &format!("{grove} demo d"), "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"n\n").unwrap();
        finish(child)
    };
    assert_eq!(out.code, 1, "{out}");
    for item in [
        "holds work that replacing it would throw away:",
        "\n  grove.toml: edited",
        "replace it anyway? [y/N]",
        "nothing was changed",
    ] {
        assert!(out.stdout.contains(item), "`{item}` not shown: {out}");
    }
    assert!(notes.exists());
    assert_eq!(std::fs::read_to_string(d.join("grove.toml")).unwrap(), toml);
    assert_eq!(demo_envs(), ["feat-01", "feat-02"]);

    // (d) --force replaces it, saying what it throws away.
    let out = ws.grove(&["demo", "d", "--force"]).success();
    assert!(
        out.stderr.contains("warning: replacing the demo in"),
        "{out}"
    );
    for item in [
        "\n  front: uncommitted: notes.txt",
        "\n  grove.toml: edited",
        "\n  tickets: not made by the demo",
        " My own work",
    ] {
        assert!(out.stderr.contains(item), "`{item}` not listed: {out}");
    }
    assert!(!notes.exists() && !d.join("tickets").exists());
    assert!(
        !std::fs::read_to_string(d.join("grove.toml"))
            .unwrap()
            .contains("# my edit")
    );
    assert_eq!(demo_envs(), ["feat-01", "feat-02"]);
}

// ---------------------------------------------------------------------------------------------
// item 7: processes that leave the session

/// The daemon pid `front` of `env` wrote, once it differs from `not`.
fn new_daemon(ws: &TestWorkspace, env: &str, not: Option<i32>) -> i32 {
    let path = ws.pid_dir().join(env).join("front.daemon.pid");
    let read = || -> Option<i32> { std::fs::read_to_string(&path).ok()?.trim().parse().ok() };
    assert!(
        wait_until(30, || read().is_some_and(|p| Some(p) != not)),
        "no new daemon (last {not:?})"
    );
    read().unwrap()
}

#[test]
fn a_daemon_that_left_its_session_is_stopped_by_down_restart_and_destroy() {
    let ws = ws_with("env.DAEMON = \"1\"", "");
    let mut strays = Strays::new(&ws);
    ws.grove(&["create", "feat-01"]).success();
    let d1 = new_daemon(&ws, "feat-01", None);
    strays.add(d1);
    assert!(alive(d1));

    let out = ws.grove(&["down", "feat-01"]).success();
    assert!(
        gone_within(10, d1),
        "down left the daemon {d1} running: {out}"
    );
    assert!(
        out.stderr.contains("process(es) of `feat-01` left running")
            && out.stderr.contains(&format!("{d1} (")),
        "down does not say it stopped the daemon: {out}"
    );

    ws.grove(&["up", "feat-01"]).success();
    let d2 = new_daemon(&ws, "feat-01", Some(d1));
    strays.add(d2);
    let out = ws.grove(&["up", "feat-01"]).success();
    assert!(out.stderr.contains("env `feat-01` is already up"), "{out}");

    ws.grove(&["restart", "feat-01"]).success();
    let d3 = new_daemon(&ws, "feat-01", Some(d2));
    strays.add(d3);
    // No accumulation: the daemon of the first run is gone, only the new one runs.
    assert!(gone_within(10, d2), "restart left the old daemon {d2}");
    let daemons: Vec<i32> = [d1, d2, d3].into_iter().filter(|p| alive(*p)).collect();
    assert_eq!(daemons, [d3]);

    ws.grove(&["destroy", "feat-01"]).success();
    assert!(gone_within(10, d3), "destroy left the daemon {d3}");
    assert!(
        wait_until(10, || ws.tagged_processes().is_empty()),
        "{:?}",
        ws.tagged_processes()
    );
}

#[test]
fn what_grove_exec_left_in_the_background_is_stopped_by_down() {
    let ws = TestWorkspace::with_repos(REPOS);
    let mut strays = Strays::new(&ws);
    ws.grove(&["create", "feat-01"]).success();
    let file = ws.tmp.path().join("sleep.pid");
    // The sleep's output goes elsewhere: it must not hold grove's (and this test's) pipes.
    let script = format!("sleep 1000 >/dev/null 2>&1 & echo $! > {}", file.display());
    ws.grove(&["exec", "feat-01", "--", "sh", "-c", &script])
        .success();
    let pid: i32 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    strays.add(pid);
    assert!(alive(pid), "the background sleep is not running");

    let out = ws.grove(&["down", "feat-01"]).success();
    assert!(gone_within(10, pid), "down left {pid} running: {out}");
    assert!(
        out.stderr.contains(&format!(
            "stopped 1 process(es) of `feat-01` left running: {pid} (sleep, `grove exec`)"
        )),
        "{out}"
    );
    ws.grove(&["destroy", "feat-01"]).success();
}

#[test]
fn a_running_grove_exec_survives_down_but_not_destroy() {
    let ws = TestWorkspace::with_repos(REPOS);
    let mut strays = Strays::new(&ws);
    ws.grove(&["create", "feat-01"]).success();
    let mut exec = Kid::new(
        ws.cmd()
            .args(["exec", "feat-01", "--", "sleep", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sleep_of_exec = || children_of(exec.pid()).first().copied();
    assert!(wait_until(20, || sleep_of_exec().is_some()));
    let sleep = sleep_of_exec().unwrap();
    strays.add(sleep);

    ws.grove(&["down", "feat-01"]).success();
    assert!(
        alive(sleep),
        "down stopped a `grove exec` that was still running"
    );
    assert!(!exec.exits_within(0), "`grove exec` ended with down");

    let out = ws.grove(&["destroy", "feat-01"]).success();
    assert!(
        gone_within(10, sleep),
        "destroy left {sleep} running: {out}"
    );
    assert!(exec.exits_within(10), "`grove exec` still runs");
}

// ---------------------------------------------------------------------------------------------
// item 8: supervisor and guards killed together

#[test]
fn servers_whose_supervisor_and_guards_were_killed_are_shown_orphaned_and_replaced_by_up() {
    let ws = ws_with(
        "ready = { http = \"/health\" }",
        "ready = { http = \"/health\" }",
    );
    let mut strays = Strays::new(&ws);
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    let (front_port, api_port) = (ws.front_port(0), ws.api_port(0));
    let env = env_json(&ws, "feat-01");
    let sup = pid_of(&env["supervisor"]);
    let guards = [
        pid_of(&layer(&env, "front")["pid"]),
        pid_of(&layer(&env, "api")["pid"]),
    ];
    let servers = [
        ws.server_pid("feat-01", "front.pid"),
        ws.server_pid("feat-01", "api.pid"),
    ];
    for s in servers {
        strays.add(s);
    }
    // All die at once: the supervisor frozen first, so it cannot react to its guards' deaths.
    kill(Pid::from_raw(sup), Signal::SIGSTOP).unwrap();
    for g in guards {
        kill(Pid::from_raw(g), Signal::SIGKILL).unwrap();
    }
    kill(Pid::from_raw(sup), Signal::SIGKILL).unwrap();
    assert!(gone_within(10, sup));
    for g in guards {
        assert!(gone_within(10, g));
    }
    // The python servers live on, holding their ports.
    for s in servers {
        assert!(alive(s), "server {s} died");
    }
    assert!(listening(front_port) && listening(api_port));

    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "orphaned", "{env}");
    for (name, port) in [("front", front_port), ("api", api_port)] {
        let l = layer(&env, name);
        assert_eq!(l["state"], "orphaned", "{env}");
        assert!(l["pid"].as_i64().is_some(), "{env}");
        assert!(
            problems(&env).iter().any(|p| p
                .contains(&format!("`{name}` still runs without a supervisor"))
                && p.contains(&format!("holding port {port}"))),
            "{env}"
        );
    }
    assert!(
        problems(&env)
            .iter()
            .any(|p| p.contains("`grove up feat-01`") && p.contains("`grove down feat-01`")),
        "{env}"
    );

    ws.grove(&["up", "feat-01"]).success();
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "running", "{env}");
    assert_eq!(layer(&env, "front")["port"], front_port);
    assert_eq!(layer(&env, "api")["port"], api_port);
    for s in servers {
        assert!(gone_within(10, s), "the unsupervised server {s} still runs");
    }
    let (_, body) = http_get(front_port, "/api").unwrap();
    assert!(body.contains(&format!("\"port\": {api_port}")), "{body}");

    ws.grove(&["destroy", "feat-01"]).success();
    assert!(wait_until(10, || ws.tagged_processes().is_empty()));
    assert!(!listening(front_port) && !listening(api_port));
}

// ---------------------------------------------------------------------------------------------
// item 9: a foreign listener answers the readiness probe

/// Another program on a port: answers 200 to everything, from a thread of this test.
struct Impostor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Impostor {
    fn start(port: u16) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nimpostor");
            }
        });
        Impostor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_foreign_server_answering_on_the_leased_port_is_not_taken_for_the_env() {
    let ws = ws_with("ready = { http = \"/health\" }", "");
    ws.grove(&["create", "feat-01"]).success();
    ws.grove(&["down", "feat-01"]).success();
    let (n, m) = (ws.front_port(0), ws.front_port(1));
    let _impostor = Impostor::start(n);
    assert_eq!(http_get(n, "/health").unwrap(), (200, "impostor".into()));

    let out = ws.grove(&["up", "feat-01"]).success();
    assert!(
        out.stderr.contains(&format!(
            "port {n} was taken by pid {} (",
            std::process::id()
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!("moved `front` to port {m}")),
        "{out}"
    );
    let (status, body) = http_get(m, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"env\": \"feat-01\""), "{body}");
    // The other program is left alone.
    assert_eq!(http_get(n, "/").unwrap(), (200, "impostor".into()));
    let env = env_json(&ws, "feat-01");
    assert_eq!(layer(&env, "front")["port"], m, "{env}");
    assert_eq!(layer(&env, "front")["state"], "ready", "{env}");
    ws.grove(&["destroy", "feat-01"]).success();
}

// ---------------------------------------------------------------------------------------------
// item 11: recovery runs only where it should

#[test]
fn read_only_commands_and_agent_hooks_leave_a_half_made_env_alone() {
    let ws = TestWorkspace::with_repos(REPOS);
    let setup = "echo $$ > \"$MARKER.tmp\" && mv \"$MARKER.tmp\" \"$MARKER\"; sleep 60";
    ws.write_config(
        &(ws.standard_config("") + &format!("setup = [{}]\n", toml::Value::String(setup.into()))),
    );
    let mut strays = Strays::new(&ws);
    let marker = ws.tmp.path().join("setup.pid");
    let mut create = Kid::new(
        ws.cmd()
            .env("MARKER", &marker)
            .args(["create", "feat-01", "--from-api=main"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(20, || std::fs::read_to_string(&marker)
        .is_ok_and(|s| s.ends_with('\n'))));
    let setup_pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    strays.add(setup_pid);
    kill(Pid::from_raw(create.pid()), Signal::SIGKILL).unwrap();
    assert!(create.exits_within(10));
    let before = ws.snapshot(REPOS);
    assert_eq!(ws.worktrees("api").len(), 2, "{before}");

    let front = ws.worktree("feat-01", "front");
    let hook = format!(
        "{{\"hook_event_name\":\"Stop\",\"cwd\":{}}}",
        Value::String(front.to_string_lossy().into_owned())
    );
    let commands: [(&str, &[&str]); 4] = [
        ("ps", &["ps"]),
        ("logs", &["logs", "feat-01"]),
        (
            "agent-status",
            &["agent-status", "working", "--env", "feat-01"],
        ),
        ("agent-status --hook", &["agent-status", "--hook"]),
    ];
    for (what, args) in commands {
        let mut child = ws
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Only the hook reads it; the others may have exited already.
        let _ = child.stdin.take().unwrap().write_all(hook.as_bytes());
        let out = finish(child);
        assert_eq!(
            ws.snapshot(REPOS),
            before,
            "`grove {what}` changed things: {out}"
        );
        assert!(alive(setup_pid), "`grove {what}` stopped the setup: {out}");
    }
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "creating", "{env}");

    // A command meant to clean up does.
    ws.grove(&["doctor", "--fix"]).success();
    assert!(gone_within(10, setup_pid), "the setup still runs");
    assert_eq!(ws.worktrees("front"), vec![ws.repo("front")]);
    assert_eq!(ws.worktrees("api"), vec![ws.repo("api")]);
    assert_eq!(ws.branches("front"), ["main"]);
    assert_eq!(ws.branches("api"), ["main"]);
    assert!(ws.leased_ports().is_empty());
    assert!(ws.ps().is_empty());
}

// ---------------------------------------------------------------------------------------------
// item 12: smaller truths

#[test]
fn a_new_env_with_a_destroyed_envs_name_has_none_of_its_logs() {
    let ws = ws_with("ready = { http = \"/health\" }", "");
    ws.grove(&["create", "feat-01"]).success();
    let logs = || ws.grove(&["logs", "feat-01", "front"]).success().stdout;
    assert!(
        wait_until(10, || {
            let _ = http_get(ws.front_port(0), "/the-old-env-was-here");
            logs().contains("/the-old-env-was-here")
        }),
        "the request never reached the log"
    );
    ws.grove(&["destroy", "feat-01"]).success();
    ws.grove(&["create", "feat-01"]).success();
    let new = logs();
    assert!(new.contains("[grove] starting front"), "{new}");
    assert!(!new.contains("/the-old-env-was-here"), "old lines: {new}");
    ws.grove(&["destroy", "feat-01"]).success();
}

#[test]
fn up_restarts_a_failed_server() {
    let ws = ws_with("env.CRASH = \"1\"\nrestart = \"no\"", "");
    let out = ws.grove(&["create", "feat-01"]).failure(1);
    assert!(
        out.stderr.contains("layer `front` of `feat-01` failed"),
        "{out}"
    );
    assert_eq!(layer(&env_json(&ws, "feat-01"), "front")["state"], "failed");

    ws.write_config(&ws.servers_config("restart = \"no\"", ""));
    let out = ws.grove(&["up", "feat-01"]).success();
    assert!(!out.stderr.contains("already up"), "{out}");
    assert!(out.stderr.contains("front  ready in"), "{out}");
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "running", "{env}");
    assert_eq!(layer(&env, "front")["state"], "ready", "{env}");
    assert_eq!(http_get(ws.front_port(0), "/health").unwrap().0, 200);
    ws.grove(&["destroy", "feat-01"]).success();
}

#[test]
fn up_and_restart_refuse_a_broken_env_and_start_nothing() {
    let ws = ws_with("", "");
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    let wt = ws.worktree("feat-01", "front");
    std::fs::remove_dir_all(&wt).unwrap();
    for cmd in ["up", "restart"] {
        let out = ws.grove(&[cmd, "feat-01"]).failure(1);
        assert!(
            out.stderr.contains(&format!(
                "env `feat-01` is broken: the worktree of `front` is missing ({})",
                wt.display()
            )),
            "{cmd}: {out}"
        );
        assert!(
            out.stderr.contains("hint: `grove destroy feat-01`"),
            "{cmd}: {out}"
        );
        let env = env_json(&ws, "feat-01");
        assert!(
            env["supervisor"].is_null(),
            "{cmd} started a supervisor: {env}"
        );
        assert_eq!(env["status"], "broken", "{env}");
        assert!(
            ws.tagged_processes().is_empty(),
            "{cmd} started {:?}",
            ws.tagged_processes()
        );
        assert!(!listening(ws.front_port(0)));
    }
    ws.grove(&["destroy", "feat-01"]).success();
}

#[test]
fn ps_names_a_failed_server_and_what_to_do() {
    let ws = ws_with("env.CRASH = \"1\"\nrestart = \"no\"", "");
    ws.grove(&["create", "feat-01"]).failure(1);
    let out = ws.grove(&["ps"]).success();
    for part in [
        "hint: feat-01: `front` failed: ",
        "; see `grove logs feat-01 front`",
        "`grove restart feat-01 front`",
    ] {
        assert!(out.stderr.contains(part), "`{part}`: {out}");
    }
}

#[test]
fn ps_names_the_failed_server_of_a_partly_running_env() {
    // front serves, its own api crashed for good: the env is `partial`, not `running`, and
    // ps says which server failed and what to do.
    let ws = ws_with("", "env.CRASH = \"1\"\nrestart = \"no\"");
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .failure(1);
    // The create fails as soon as api does; front may still be starting then.
    assert!(
        wait_until(20, || layer(&env_json(&ws, "feat-01"), "front")["state"]
            == "ready"),
        "front never became ready: {}",
        env_json(&ws, "feat-01")
    );
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "partial", "{env}");
    assert_eq!(layer(&env, "front")["state"], "ready", "{env}");
    assert_eq!(layer(&env, "api")["state"], "failed", "{env}");
    assert!(
        problems(&env)
            .iter()
            .any(|p| p.starts_with("`api` failed: ") && p.contains("`grove restart feat-01 api`")),
        "{env}"
    );
    let out = ws.grove(&["ps"]).success();
    assert!(out.stdout.contains("partial"), "{out}");
    assert!(
        out.stderr.contains("hint: feat-01: `api` failed: "),
        "{out}"
    );
    ws.grove(&["destroy", "feat-01"]).success();
}

#[test]
fn ps_names_a_frozen_server_and_an_unhealthy_one() {
    let ws = ws_with("ready = { http = \"/health\" }", "");
    let mut strays = Strays::new(&ws);
    // The supervisor inherits the check interval from the create that starts it.
    run(ws
        .cmd()
        .env("GROVE_HEALTH_EVERY_MS", "200")
        .args(["create", "feat-01"]))
    .success();
    let server = ws.server_pid("feat-01", "front.pid");
    strays.add(server);
    kill(Pid::from_raw(server), Signal::SIGSTOP).unwrap();
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{server}/stat")).is_ok_and(|s| {
            s.rfind(')')
                .is_some_and(|i| s[i + 1..].trim_start().starts_with('T'))
        })
    };
    assert!(wait_until(5, stopped));

    let out = ws.grove(&["ps"]).success();
    assert!(
        out.stderr.contains(&format!(
            "hint: feat-01: `front` is frozen: pid {server} (python3) is stopped by a signal"
        )),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("`kill -CONT {server}` resumes it")),
        "{out}"
    );

    let unhealthy = |env: &Value| {
        layer(env, "front")["state"] == "unhealthy"
            && problems(env)
                .iter()
                .any(|p| p.starts_with("`front` is up but fails its health check"))
    };
    assert!(
        wait_until(15, || unhealthy(&env_json(&ws, "feat-01"))),
        "{}",
        env_json(&ws, "feat-01")
    );

    kill(Pid::from_raw(server), Signal::SIGCONT).unwrap();
    assert!(
        wait_until(15, || {
            let env = env_json(&ws, "feat-01");
            layer(&env, "front")["state"] == "ready" && problems(&env).is_empty()
        }),
        "{}",
        env_json(&ws, "feat-01")
    );
    ws.grove(&["destroy", "feat-01"]).success();
}

#[test]
fn a_store_locked_for_long_is_an_error_naming_its_holder() {
    let ws = TestWorkspace::with_repos(REPOS);
    ws.grove(&["ps"]).success();
    let before = ws.snapshot(REPOS);
    let conn = rusqlite::Connection::open(ws.grove_home.join("state.db")).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut create = Kid::new(
        ws.cmd()
            .env("GROVE_LOCK_TIMEOUT", "1")
            .args(["create", "x"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let gave_up = create.exits_within(20);
    // Released whatever happened: a grove that waits on must be able to finish.
    conn.execute_batch("ROLLBACK").unwrap();
    drop(conn);
    let out = create.finish();
    assert!(gave_up, "grove waited more than 20 s: {out}");
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "grove's state store stayed locked for 1 s: pid {} (",
            std::process::id()
        )),
        "{out}"
    );
    assert!(out.stderr.contains("GROVE_LOCK_TIMEOUT"), "{out}");
    assert_eq!(ws.snapshot(REPOS), before);
    assert!(ws.ps().is_empty());
}

#[test]
fn ctrl_c_to_the_process_group_exits_130_saying_so_and_leaves_nothing() {
    let ws = TestWorkspace::with_repos(REPOS);
    let marker = ws.tmp.path().join("checkout.started");
    let hook = ws.repo("front").join(".git/hooks/post-checkout");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ntouch {}\nsleep 30\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut create = Kid::leading_its_group(
        ws.cmd()
            .args(["create", "feat-01"])
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(20, || marker.exists()), "the hook never ran");
    // What a terminal's Ctrl-C does: SIGINT to the whole foreground group (grove, git, hook).
    killpg(Pid::from_raw(create.pid()), Signal::SIGINT).unwrap();
    assert!(create.exits_within(20), "grove did not stop");
    let out = create.finish();
    assert_eq!(out.code, 130, "{out}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "error: interrupted by SIGINT (Ctrl-C)"),
        "{out}"
    );
    assert_eq!(ws.worktrees("front"), vec![ws.repo("front")]);
    assert_eq!(ws.branches("front"), ["main"]);
    assert!(ws.leased_ports().is_empty());
    assert!(list_dir(&ws.root.join(".grove/envs")).is_empty());
    assert!(ws.ps().is_empty());
}

#[test]
fn destroy_is_refused_while_the_create_makes_or_starts_the_env() {
    let setup = "echo $$ > \"$MARKER.tmp\" && mv \"$MARKER.tmp\" \"$MARKER\"; \
                 while [ ! -e \"$GO\" ]; do sleep 0.05; done";
    let ws = ws_with(
        "env.READY_DELAY = \"3\"",
        &format!("setup = [{}]", toml::Value::String(setup.into())),
    );
    let marker = ws.tmp.path().join("setup.pid");
    let go = ws.tmp.path().join("go");
    let mut create = Kid::new(
        ws.cmd()
            .env("MARKER", &marker)
            .env("GO", &go)
            .args(["create", "feat-01", "--from-api=main"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(20, || std::fs::read_to_string(&marker)
        .is_ok_and(|s| s.ends_with('\n'))));

    // (a) While its setup runs.
    let out = ws.grove(&["destroy", "feat-01"]).failure(1);
    assert!(
        out.stderr.contains(&format!(
            "env `feat-01` is being created by another grove (pid {})",
            create.pid()
        )),
        "{out}"
    );
    assert_eq!(ws.worktrees("api").len(), 2);

    // (b) Made, while the create waits for its servers.
    std::fs::write(&go, "").unwrap();
    assert!(
        wait_until(20, || env_json(&ws, "feat-01")["status"] == "starting"),
        "{}",
        env_json(&ws, "feat-01")
    );
    let out = ws.grove(&["destroy", "feat-01"]).failure(1);
    assert!(
        out.stderr
            .contains("env `feat-01` is being started by the grove that created it"),
        "{out}"
    );
    assert!(create.exits_within(30));
    create.finish().success();
    assert_eq!(env_json(&ws, "feat-01")["status"], "running");

    ws.grove(&["destroy", "feat-01"]).success();
    assert!(ws.ps().is_empty());
}

// ---------------------------------------------------------------------------------------------
// item 13: typed states

#[test]
fn an_unknown_server_state_in_the_store_is_an_error_not_a_status() {
    let ws = ws_with("", "");
    ws.grove(&["create", "feat-01"]).success();
    let conn = rusqlite::Connection::open(ws.grove_home.join("state.db")).unwrap();
    let set = |state: &str| {
        conn.execute("UPDATE servers SET state = ?1", [state])
            .unwrap()
    };
    assert_eq!(set("exploded"), 1);
    for args in [&["ps"][..], &["ps", "--json"]] {
        let out = ws.grove(args).failure(1);
        assert!(
            out.stderr
                .contains("unknown ServerState `exploded` in the store"),
            "{out}"
        );
        assert!(!out.stdout.contains("feat-01"), "{out}");
    }
    set("ready");
    assert_eq!(env_json(&ws, "feat-01")["status"], "running");
    ws.grove(&["destroy", "feat-01"]).success();
    assert!(wait_until(10, || ws.tagged_processes().is_empty()));
}

// ---------------------------------------------------------------------------------------------
// item 14: secrets

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(files_under(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn a_headless_agents_secrets_reach_it_but_never_the_store() {
    const SECRET: &str = "sk-test-secret-123";
    let ws = TestWorkspace::with_repos(REPOS);
    ws.write_config(
        &(ws.servers_config("ready = { http = \"/health\" }", "")
            + &ws.agent_config("headless", "")),
    );
    ws.grove(&["create", "feat-01"]).success();
    run(ws
        .cmd()
        .env("ANTHROPIC_API_KEY", SECRET)
        .args(["agent", "feat-01"]))
    .success();
    let env = ws.agent_record("feat-01", "env");
    assert!(
        env.contains(&format!("ANTHROPIC_API_KEY={SECRET}\n")),
        "{env}"
    );
    let agent_runs = || env_json(&ws, "feat-01")["agent"]["pid"].is_i64();
    assert!(agent_runs());

    let files = files_under(&ws.grove_home);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "state.db"), "{names:?}");
    assert!(names.iter().any(|n| n == "state.db-wal"), "{names:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the secret",
            f.display()
        );
    }
    assert!(agent_runs(), "the agent ended before the check");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ws.grove_home), 0o700);
    assert_eq!(mode(&ws.grove_home.join("state.db")), 0o600);
    ws.grove(&["destroy", "feat-01"]).success();
}

/// A supervisor that dies after it registered but before it started anything: `up` saw it
/// start, and must not then take "no server rows, no supervisor" for an env with nothing to run.
#[test]
fn up_fails_when_the_supervisor_dies_before_starting_anything() {
    let ws = ws_with("", "");
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    let out = run(ws
        .cmd()
        .env("GROVE_CRASH_AT", "supervise:after-register")
        .env("GROVE_CRASH_DELAY_MS", "500")
        .args(["up", "feat-01"]));
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("the supervisor of `feat-01` died"),
        "{out}"
    );
    // Nothing runs, and a plain `up` starts the env.
    ws.grove(&["up", "feat-01"]).success();
    assert_eq!(env_json(&ws, "feat-01")["status"], "running");
    ws.grove(&["destroy", "feat-01"]).success();
}
