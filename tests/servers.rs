//! Supervised servers, with real processes on real ports (the test server is
//! `tests/fixtures/server.py`). Processes are checked by session and process group, never by
//! name.

use std::process::{Child, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{TestWorkspace, fixture, group_members, http_get, listening, wait_until};

use crate::common::{env_json, layer, servers_ws as ws_with};

/// Session leaders (guards) of the env's running servers, from `ps --json`.
fn leaders(env: &Value) -> Vec<i32> {
    env["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["pid"].as_i64())
        .map(|p| i32::try_from(p).unwrap())
        .collect()
}

fn no_process_left(leaders: &[i32]) -> bool {
    leaders.iter().all(|l| group_members(*l).is_empty())
}

/// The main stack's API, run by the test: what `shared_url` points at.
struct SharedApi(Child);

impl SharedApi {
    fn start(ws: &TestWorkspace) -> Self {
        let port = ws.ports.port(99);
        let child = ws
            .command("python3")
            .arg(fixture("server.py"))
            .env("PORT", port.to_string())
            .env("GROVE_ENV", "main")
            .env("GROVE_LAYER", "api")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_until(20, || listening(port)));
        SharedApi(child)
    }
}

impl Drop for SharedApi {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reference_workflow_with_live_servers() {
    let ws = ws_with(
        "ready = { http = \"/health\" }",
        "ready = { http = \"/health\" }",
    );
    let _main = SharedApi::start(&ws);

    let out = ws.grove(&["create", "feat-01"]).success();
    assert!(out.stderr.contains("front  ready in"), "{out}");
    let out = ws
        .grove(&["create", "feat-02", "--from-api=main"])
        .success();
    // Both start at once (front only reads the api's URL, known before either starts).
    assert!(out.stderr.contains("api    ready"), "{out}");

    let (f1, f2, a2) = (ws.front_port(0), ws.front_port(1), ws.api_port(0));
    // feat-01's front reaches the shared API; feat-02's front reaches feat-02's API.
    let (_, body) = http_get(f1, "/api").unwrap();
    assert!(body.contains("\"env\": \"main\""), "{body}");
    let (_, body) = http_get(f2, "/api").unwrap();
    assert!(
        body.contains("\"env\": \"feat-02\"") && body.contains(&format!("\"port\": {a2}")),
        "{body}"
    );

    let env2 = env_json(&ws, "feat-02");
    assert_eq!(env2["status"], "running");
    assert_eq!(layer(&env2, "api")["state"], "ready");
    assert_eq!(layer(&env2, "api")["restarts"], 0);
    assert!(layer(&env2, "front")["ready_since"].as_i64().unwrap() > 0);
    let ps = ws.grove(&["ps"]).success();
    assert!(
        ps.stdout
            .lines()
            .all(|l| l.starts_with("NAME") || l.ends_with("running  -")),
        "{ps}"
    );

    // down: nothing listens any more, nothing of the env runs.
    let before = leaders(&env2);
    assert_eq!(before.len(), 2);
    ws.grove(&["down", "feat-02"]).success();
    assert!(!listening(f2) && !listening(a2));
    assert!(no_process_left(&before));
    assert_eq!(env_json(&ws, "feat-02")["status"], "stopped");
    assert_eq!(env_json(&ws, "feat-01")["status"], "running");

    // up: the same ports.
    ws.grove(&["up", "feat-02"]).success();
    assert!(listening(f2) && listening(a2));
    assert_eq!(http_get(f2, "/api").unwrap().0, 200);

    // destroy: no process of either env remains.
    let all: Vec<i32> = ws.ps().iter().flat_map(leaders).collect();
    assert_eq!(all.len(), 3);
    ws.grove(&["destroy", "feat-02"]).success();
    ws.grove(&["destroy", "feat-01"]).success();
    assert!(no_process_left(&all));
    assert!(!listening(f1) && !listening(f2) && !listening(a2));
}

#[test]
fn a_killed_server_is_restarted_and_ready_again() {
    let ws = ws_with("ready = { http = \"/health\" }", "");
    ws.grove(&["create", "feat-01"]).success();
    let first = ws.server_pid("feat-01", "front.pid");
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    assert!(wait_until(20, || {
        let env = env_json(&ws, "feat-01");
        let front = layer(&env, "front");
        front["restarts"] == 1 && front["state"] == "ready"
    }));
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "running");
    assert_eq!(layer(&env, "front")["last_exit"], "killed by SIGKILL");
    assert_eq!(http_get(ws.front_port(0), "/health").unwrap().0, 200);
    let logs = ws.grove(&["logs", "feat-01", "front"]).success().stdout;
    assert!(
        logs.contains("front exited (killed by SIGKILL)") && logs.contains("restarting in 0.5 s"),
        "{logs}"
    );
}

#[test]
fn a_server_that_always_crashes_fails_after_the_limit() {
    let ws = ws_with("env.CRASH = \"1\"", "");
    let out = ws.grove(&["create", "feat-01"]).failure(1);
    assert!(
        out.stderr
            .contains("layer `front` of `feat-01` failed: crashed 6 times within 60 s"),
        "{out}"
    );
    assert!(
        out.stderr.contains("| crashing at start"),
        "the log tail is shown: {out}"
    );
    assert!(out.stderr.contains("grove restart feat-01 front"), "{out}");
    // The env stays, to be fixed.
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "failed");
    let front = layer(&env, "front");
    assert_eq!(front["state"], "failed");
    assert_eq!(front["restarts"], 5);
    let tail = front["log_tail"].as_array().unwrap();
    assert!(tail.iter().any(|l| l == "crashing at start"), "{front}");
    let logs = ws.grove(&["logs", "feat-01"]).success().stdout;
    assert!(logs.contains("front | crashing at start"), "{logs}");

    // Fixed: restart brings it up.
    ws.write_config(&ws.servers_config("", ""));
    ws.grove(&["restart", "feat-01", "front"]).success();
    assert_eq!(env_json(&ws, "feat-01")["status"], "running");
}

#[test]
fn killing_the_supervisor_stops_its_servers_and_up_recovers() {
    let ws = ws_with("env.GRANDCHILD = \"1\"", "");
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    let env = env_json(&ws, "feat-01");
    let sup = i32::try_from(env["supervisor"].as_i64().unwrap()).unwrap();
    let guards = leaders(&env);
    let grandchild = ws.server_pid("feat-01", "front.grandchild.pid");
    kill(Pid::from_raw(sup), Signal::SIGKILL).unwrap();

    // ps tells at once that the supervisor is gone (its servers may still be stopping).
    let t0 = std::time::Instant::now();
    let env = env_json(&ws, "feat-01");
    assert!(t0.elapsed().as_millis() < 1000);
    assert!(
        env["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .contains(&format!("supervisor (pid {sup}) died"))),
        "{env}"
    );
    // Its servers, and the grandchild, do not run on unsupervised.
    assert!(
        wait_until(10, || no_process_left(&guards)),
        "orphans: {guards:?}"
    );
    assert!(group_members(grandchild).is_empty());
    assert!(!listening(ws.front_port(0)));
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "failed");
    assert_eq!(layer(&env, "front")["state"], "stopped");

    ws.grove(&["up", "feat-01"]).success();
    let env = env_json(&ws, "feat-01");
    assert_eq!(env["status"], "running");
    assert_eq!(layer(&env, "front")["port"], ws.front_port(0));
    let guards = leaders(&env);
    ws.grove(&["destroy", "feat-01"]).success();
    assert!(no_process_left(&guards));
}

#[test]
fn sigterm_ignored_is_killed_after_the_grace_and_grandchildren_go_too() {
    let ws = ws_with("env.IGNORE_TERM = \"1\"\nenv.GRANDCHILD = \"1\"", "");
    ws.grove(&["create", "feat-01"]).success();
    let env = env_json(&ws, "feat-01");
    let guards = leaders(&env);
    let server = ws.server_pid("feat-01", "front.pid");
    let grandchild = ws.server_pid("feat-01", "front.grandchild.pid");
    let t0 = std::time::Instant::now();
    ws.grove(&["down", "feat-01"]).success();
    // stop_timeout is 2 s: the server ignoring SIGTERM was killed after it, not before.
    assert!(t0.elapsed().as_secs_f64() >= 1.9, "{:?}", t0.elapsed());
    for pid in [server, grandchild] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || group_members(pid).is_empty()
        );
    }
    assert!(no_process_left(&guards));
    let logs = ws
        .grove(&["logs", "feat-01", "front", "-n", "5"])
        .success()
        .stdout;
    assert!(logs.contains("front exited (killed by SIG"), "{logs}");
}

#[test]
fn each_readiness_probe_and_its_timeout() {
    // log: the ready line comes late; tcp: the default; exec: a command that checks the port.
    let ws = ws_with(
        "ready = { log = \"listening on \\\\d+\" }\nenv.READY_DELAY = \"1\"",
        "ready = { exec = \"python3 -c 'import socket,os; socket.create_connection((\\\"127.0.0.1\\\", int(os.environ[\\\"PORT\\\"])))'\" }",
    );
    let out = ws.grove(&["create", "a", "--from-api=main"]).success();
    assert!(out.stderr.contains("front  ready in"), "{out}");
    let env = env_json(&ws, "a");
    assert_eq!(layer(&env, "front")["state"], "ready");
    assert_eq!(layer(&env, "api")["state"], "ready");
    // The log probe waited for the line, which comes after READY_DELAY.
    assert!(listening(ws.front_port(0)));

    // tcp (default) and http, and a timeout on each kind.
    let ws = ws_with("", "ready = { http = \"/health\", status = 200 }");
    ws.grove(&["create", "b", "--from-api=main"]).success();
    for (ready, what) in [
        (
            "ready = { tcp = true, timeout = 1 }",
            "nothing accepted connections on its port",
        ),
        (
            "ready = { http = \"/health\", timeout = 1 }",
            "GET /health never answered below 500",
        ),
        (
            "ready = { log = \"never printed\", timeout = 1 }",
            "no output line matched `never printed`",
        ),
        (
            "ready = { exec = \"false\", timeout = 1 }",
            "`false` never exited 0",
        ),
    ] {
        let hang = if ready.contains("log") {
            ""
        } else {
            "env.HANG = \"1\""
        };
        ws.write_config(&ws.servers_config(&format!("{ready}\n{hang}"), ""));
        let name = format!("t{}", what.len());
        let out = ws.grove(&["create", &name]).failure(1);
        assert!(
            out.stderr
                .contains(&format!("failed: not ready after 1 s ({what})")),
            "{out}"
        );
        // A server that listens but fails its probe holds its own port: it is not "taken".
        assert!(!out.stderr.contains("was taken by"), "{out}");
        let env = env_json(&ws, &name);
        assert_eq!(layer(&env, "front")["state"], "failed");
        // A server that never got ready is not left running.
        let l = leaders(&env);
        assert!(wait_until(10, || no_process_left(&l)));
    }
}

#[test]
fn a_port_taken_before_start_is_moved_and_dependents_follow() {
    let ws = ws_with(
        "ready = { http = \"/health\" }",
        "ready = { http = \"/health\" }",
    );
    ws.grove(&["create", "feat-01", "--from-api=main", "--no-start"])
        .success();
    let api_port = ws.api_port(0);
    // Another program takes the api's leased port between create and up.
    let thief = std::net::TcpListener::bind(("127.0.0.1", api_port)).unwrap();
    let out = ws.grove(&["up", "feat-01"]).success();
    let moved = format!("port {api_port} was taken by pid {} (", std::process::id());
    assert!(out.stderr.contains(&moved), "{out}");
    assert!(
        out.stderr
            .contains(&format!("moved `api` to port {}", ws.api_port(1))),
        "{out}"
    );
    let env = env_json(&ws, "feat-01");
    assert_eq!(layer(&env, "api")["port"], ws.api_port(1));
    // front was rendered with the api's new URL.
    let (_, body) = http_get(ws.front_port(0), "/api").unwrap();
    assert!(
        body.contains(&format!("\"port\": {}", ws.api_port(1))),
        "{body}"
    );
    assert!(
        out.stdout
            .contains(&format!("http://localhost:{}", ws.api_port(1))),
        "{out}"
    );
    drop(thief);
}

#[test]
fn ps_names_a_foreign_process_on_a_leased_port() {
    let ws = ws_with("", "");
    ws.grove(&["create", "feat-01", "--no-start"]).success();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", ws.front_port(0))).unwrap();
    let env = env_json(&ws, "feat-01");
    let problem = format!(
        "port {} of `front` is held by pid {}",
        ws.front_port(0),
        std::process::id()
    );
    assert!(
        env["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&problem)),
        "{env}"
    );
}

#[test]
fn shared_layer_down_is_a_warning_not_an_error() {
    let ws = ws_with("", "");
    let out = ws.grove(&["create", "feat-01"]).success();
    assert!(out.stderr.contains("warning: shared `api` at"), "{out}");
    assert!(out.stderr.contains("does not answer"), "{out}");
}

#[test]
fn logs_merge_layers_in_time_order_and_restart_changes_the_pid() {
    let ws = ws_with("after = [\"api\"]", "");
    ws.grove(&["create", "feat-01", "--from-api=main"])
        .success();
    let logs = ws.grove(&["logs", "feat-01"]).success().stdout;
    // api starts first (front is `after` it): its lines come first.
    let api = logs.find("api   | [grove] starting api").unwrap();
    let front = logs.find("front | [grove] starting front").unwrap();
    assert!(api < front, "{logs}");
    let two = ws
        .grove(&["logs", "feat-01", "api", "-n", "2"])
        .success()
        .stdout;
    assert_eq!(two.lines().count(), 2, "{two}");
    assert!(!two.contains(" | "), "one layer: no prefix: {two}");

    let before = layer(&env_json(&ws, "feat-01"), "api")["pid"].clone();
    ws.grove(&["restart", "feat-01", "api"]).success();
    let env = env_json(&ws, "feat-01");
    assert_ne!(layer(&env, "api")["pid"], before);
    assert_eq!(layer(&env, "api")["state"], "ready");
    assert_eq!(env["status"], "running");

    let out = ws.grove(&["logs", "feat-01", "nope"]).failure(1);
    assert!(out.stderr.contains("no server `nope`"), "{out}");
}

#[test]
fn logs_follow_prints_new_lines() {
    use std::io::{BufRead, BufReader};
    let ws = ws_with("ready = { http = \"/health\" }", "");
    ws.grove(&["create", "feat-01"]).success();
    let mut child = ws
        .cmd()
        .args(["logs", "feat-01", "front", "-f", "-n", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    // Requests until one is seen: the follower may start reading after the first one.
    let seen = wait_until(20, || {
        let _ = http_get(ws.front_port(0), "/followed");
        rx.try_iter().any(|l| l.contains("/followed"))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen, "`logs -f` never printed the request");
}

#[test]
fn down_sweeps_servers_whose_supervisor_and_guard_were_both_killed() {
    let ws = ws_with("", "");
    ws.grove(&["create", "feat-01"]).success();
    let env = env_json(&ws, "feat-01");
    let sup = i32::try_from(env["supervisor"].as_i64().unwrap()).unwrap();
    let guard = leaders(&env)[0];
    let server = ws.server_pid("feat-01", "front.pid");
    // Both die, the supervisor frozen first so that it cannot react to the guard's death:
    // nothing is left to stop the server but grove's sweep.
    kill(Pid::from_raw(sup), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(guard), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(sup), Signal::SIGKILL).unwrap();
    assert!(wait_until(5, || group_members(sup).is_empty()));
    assert!(
        !group_members(guard).is_empty(),
        "the server outlived its guard, as it can"
    );
    assert!(group_members(guard).contains(&server));
    let out = ws.grove(&["down", "feat-01"]).success();
    assert!(out.stderr.contains("stopped env `feat-01`"), "{out}");
    assert!(group_members(guard).is_empty());
    assert!(!listening(ws.front_port(0)));
}

#[test]
fn a_hanging_exec_probe_does_not_outlive_the_env() {
    let ws = ws_with("ready = { exec = \"sleep 2718.5\", timeout = 2 }", "");
    ws.grove(&["create", "feat-01"]).failure(1);
    ws.grove(&["down", "feat-01"]).success();
    let probes = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("2718.5"))
            })
            .count()
    };
    assert!(
        wait_until(5, || probes() == 0),
        "the probe is still running"
    );
}

#[test]
fn a_layer_that_reads_another_url_starts_at_once_unless_after_says_wait() {
    // api takes 2 s to listen; front reads its URL. Each server appends the time it starts
    // listening to a file of its own.
    let times = |ws: &TestWorkspace, env: &str| {
        let read = |l: &str| -> f64 {
            let path = ws.tmp.path().join(format!("{env}-{l}.listen"));
            std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} missing", path.display()))
                .trim()
                .parse()
                .unwrap()
        };
        (read("front"), read("api"))
    };
    let listen = |extra: &str| {
        format!(
            "env.LISTEN_FILE = \"{}/{{{{ env }}}}-{{{{ layer }}}}.listen\"\n{extra}",
            "TMP"
        )
    };
    for (case, front_extra, workspace, front_first) in [
        ("parallel", "", "", true),
        ("after", "after = [\"api\"]", "", false),
        ("ordered", "", "start = \"ordered\"\n", false),
    ] {
        let ws = TestWorkspace::with_repos(&["front", "api"]);
        let tmp = ws.tmp.path().display().to_string();
        let config = ws
            .servers_config(
                &listen(front_extra).replace("TMP", &tmp),
                &listen("env.READY_DELAY = \"2\"").replace("TMP", &tmp),
            )
            .replacen("[workspace]\n", &format!("[workspace]\n{workspace}"), 1);
        ws.write_config(&config);
        ws.grove(&["create", case, "--from-api=main"]).success();
        let (front, api) = times(&ws, case);
        assert_eq!(
            front < api,
            front_first,
            "{case}: front listened at {front}, api at {api}"
        );
        ws.grove(&["destroy", case, "--yes"]).success();
    }
}
